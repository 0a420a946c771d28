"""ToyBirds rendering: one cartoon bird on a background, drawn from its attributes.

:func:`render_bird` draws the bird that an attribute dict of :mod:`t2ilib.data.toybirds`
describes, and its mask. The bird is made of parts (tail, legs, body, wing, head with a crown
patch, beak, eye), given below in units of the bird's length; the background is a sky, grass,
water or sand gradient with a little clutter. :data:`RGB` maps each colour name to its pixel
value. Any change to the drawing must bump ``TOYBIRDS_VERSION`` in :mod:`t2ilib.data.toybirds`
(so that :func:`~t2ilib.data.toybirds.ensure_toybirds` rebuilds).

Legibility: at 64 px the smallest bird's head has a radius of about 4 px, its crown patch is
the upper half of the head, and its beak is at least 4 px long and 4 px deep (a long beak is
2.2x longer, with a blunt tip), so a classifier can read every attribute (metrics_data.md
§5.3: at 32 px the beak was 1-2 px and unreadable). :mod:`t2ilib.data.toybirds` writes the JPEGs
at quality 95 without chroma subsampling so that small coloured parts keep their colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["RGB", "render_bird"]

RGB: dict[str, tuple[int, int, int]] = {
    "red": (210, 30, 30), "orange": (250, 135, 15), "yellow": (250, 220, 30),
    "green": (40, 165, 55), "blue": (35, 75, 215), "purple": (130, 45, 175),
    "brown": (120, 72, 32), "black": (22, 22, 22), "white": (248, 248, 244),
    "grey": (138, 138, 138),
}
OUTLINE, LEG, EYE, PUPIL = (30, 26, 24), (90, 80, 70), (250, 250, 250), (10, 10, 10)

# Bird geometry in units of the bird's length L (beak excluded), facing right, y down,
# origin at the body centre.
BODY_AXES = (0.27, 0.175)
WING_CENTER, WING_AXES, WING_TILT = (-0.05, -0.035), (0.2, 0.1), -12.0
HEAD_CENTER, HEAD_RADIUS = (0.26, -0.18), 0.15
TAIL = ((-0.2, -0.06), (-0.53, -0.16), (-0.5, 0.03), (-0.2, 0.05))
BEAK_DEPTH = 0.55                                 # half-depth at the base, in head radii
BEAK_LENGTH = {"short": 1.1, "long": 2.4}         # in head radii
SIZE_RANGE = {"small": (0.40, 0.44), "large": (0.56, 0.60)}  # L as a fraction of the image
MARGIN = 0.125                                    # fraction of the image kept free at each side


def _ellipse(center: Sequence[float], axes: Sequence[float], tilt_deg: float = 0.0,
             n: int = 28, start: float = 0.0, stop: float = 2 * np.pi) -> np.ndarray:
    """Points ``(n, 2)`` on an ellipse arc (a full ellipse by default)."""
    t = np.linspace(start, stop, n, endpoint=stop - start < 2 * np.pi)
    pts = np.stack([axes[0] * np.cos(t), axes[1] * np.sin(t)], axis=1)  # (n, 2)
    a = np.deg2rad(tilt_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rot.T + np.asarray(center)


def _bird_parts(attrs: dict[str, Any], colors: dict[str, tuple[int, int, int]]
                ) -> list[tuple[np.ndarray, tuple[int, int, int], bool]]:
    """The bird as ``(polygon (n, 2) in units of L, fill colour, outlined)``, back to front."""
    r = HEAD_RADIUS
    hx, hy = HEAD_CENTER
    length = BEAK_LENGTH[attrs["beak_length"]] * r
    d = BEAK_DEPTH * r
    base, tip = hx + 0.78 * r, hy + 0.12 * r
    beak = np.array([(base, hy - d), (base + length, tip - 0.25 * d),   # blunt tip: still
                     (base + length, tip + 0.25 * d), (base, hy + d)])   # visible at 64 px
    legs = [np.array([(x - 0.012, 0.12), (x + 0.012, 0.12), (x + 0.012 + 0.03, 0.3),
                      (x - 0.012 + 0.03, 0.3)]) for x in (-0.05, 0.05)]
    return [
        (np.array(TAIL), colors["wing"], True),
        *[(leg, LEG, False) for leg in legs],
        (_ellipse((0.0, 0.0), BODY_AXES, -8.0), colors["body"], True),
        (_ellipse(WING_CENTER, WING_AXES, WING_TILT), colors["wing"], True),
        (_ellipse(HEAD_CENTER, (r, r)), colors["body"], True),              # face / throat
        (_ellipse(HEAD_CENTER, (r, r), 0.0, 16, np.pi, 2 * np.pi), colors["crown"], True),
        (beak, colors["beak"], False),
        (_ellipse((hx + 0.42 * r, hy + 0.12 * r), (0.26 * r, 0.26 * r), n=10), EYE, False),
        (_ellipse((hx + 0.48 * r, hy + 0.12 * r), (0.14 * r, 0.14 * r), n=8), PUPIL, False),
    ]


def _jitter(rgb: tuple[int, int, int], rng: np.random.Generator, amount: int = 12
            ) -> tuple[int, int, int]:
    c = np.clip(np.asarray(rgb) + rng.integers(-amount, amount + 1, 3), 0, 255)
    return int(c[0]), int(c[1]), int(c[2])


def _background(kind: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A vertical colour gradient with a little clutter, drawn at ``size`` x ``size``."""
    tops = {"sky": (110, 165, 235), "grass": (150, 200, 120), "water": (60, 140, 175),
            "sand": (225, 205, 160)}
    bottoms = {"sky": (215, 232, 248), "grass": (45, 120, 45), "water": (20, 70, 120),
               "sand": (185, 155, 100)}
    top = np.asarray(_jitter(tops[kind], rng, 20), dtype=np.float32)
    bottom = np.asarray(_jitter(bottoms[kind], rng, 20), dtype=np.float32)
    t = np.linspace(0.0, 1.0, size, dtype=np.float32)[:, None, None]           # (H, 1, 1)
    grad = ((1 - t) * top + t * bottom).round().astype(np.uint8)               # (H, 1, 3)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(grad, (size, size, 3))))
    draw = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 5))):
        x, y = rng.random(2) * size
        if kind == "sky":     # clouds
            w, h = size * (0.12 + 0.1 * rng.random()), size * (0.04 + 0.03 * rng.random())
            draw.ellipse((x - w, y - h, x + w, y + h), fill=_jitter((250, 250, 252), rng, 4))
        elif kind == "grass":  # tufts
            y = size * (0.55 + 0.45 * rng.random())
            for k in range(5):
                dx = (k - 2) * size * 0.012
                draw.line((x + dx, y, x + 2 * dx, y - size * 0.06), fill=(30, 95, 35),
                          width=max(1, size // 128))
        elif kind == "water":  # ripples
            w = size * (0.08 + 0.1 * rng.random())
            draw.line((x - w, y, x + w, y), fill=(150, 200, 225), width=max(1, size // 128))
        else:                  # pebbles
            rad = size * (0.01 + 0.015 * rng.random())
            draw.ellipse((x - rad, y - rad, x + rad, y + rad), fill=_jitter((140, 125, 105), rng))
    return img


def render_bird(attrs: dict[str, Any], size: int = 64, rng: np.random.Generator | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """Draw the bird ``attrs`` describes (see :func:`~t2ilib.data.toybirds.sample_attributes`).

    ``rng`` draws the nuisance details: colour jitter, tilt, exact length, clutter, noise.
    Parts are drawn at 4x (2x above 64 px) and averaged down (anti-aliasing).
    Returns ``(image (size, size, 3) uint8, mask (size, size) bool)``; the mask covers the
    bird with its outline, beak and legs.
    """
    if size < 32:
        raise ValueError(f"ToyBirds needs at least 32 px (got {size}); 64 is the default")
    rng = np.random.default_rng(0) if rng is None else rng
    ss = 4 if size <= 64 else 2
    big = size * ss
    colors = {"body": _jitter(RGB[attrs["body_color"]], rng),
              "wing": _jitter(RGB[attrs["wing_color"]], rng),
              "crown": _jitter(RGB[attrs["crown_color"]], rng),
              "beak": _jitter(RGB[attrs["beak_color"]], rng, 8)}
    lo, hi = SIZE_RANGE[attrs["size"]]
    length = (lo + (hi - lo) * rng.random()) * big              # bird length L in pixels
    tilt = np.deg2rad(rng.uniform(-12.0, 12.0))
    sign = 1.0 if attrs["facing"] == "right" else -1.0
    rot = np.array([[np.cos(tilt), -np.sin(tilt)], [np.sin(tilt), np.cos(tilt)]])
    parts = [((pts * [sign, 1.0]) @ rot.T * length, fill, outlined)
             for pts, fill, outlined in _bird_parts(attrs, colors)]
    every = np.concatenate([p for p, _, _ in parts])                          # (P, 2)
    lo_xy, hi_xy = every.min(0), every.max(0)
    free_lo = MARGIN * big - lo_xy
    free_hi = (1 - MARGIN) * big - hi_xy
    u = np.asarray(attrs["position"], dtype=np.float64)
    offset = np.where(free_hi > free_lo, free_lo + u * (free_hi - free_lo), (free_lo + free_hi) / 2)

    canvas = _background(attrs["background"], big, rng)
    mask = Image.new("L", (big, big), 0)
    draw, mdraw = ImageDraw.Draw(canvas), ImageDraw.Draw(mask)
    if rng.random() < 0.5:  # a perch under the feet, part of the background
        feet = offset[1] + max(p[:, 1].max() for p, _, _ in parts[1:3])
        half = length * rng.uniform(0.5, 0.9)
        slope = rng.uniform(-0.15, 0.15) * half
        draw.line((offset[0] - half, feet - slope, offset[0] + half, feet + slope),
                  fill=_jitter((95, 65, 35), rng), width=max(2, int(0.03 * big)))
    width = max(1, round(0.7 * ss))
    for pts, fill, outlined in parts:
        xy = [tuple(p) for p in (pts + offset).tolist()]
        draw.polygon(xy, fill=fill, outline=OUTLINE if outlined else None,
                     width=width if outlined else 1)
        mdraw.polygon(xy, fill=255, outline=255, width=width if outlined else 1)
    image = np.asarray(canvas.reduce(ss), dtype=np.float32)                   # (H, W, 3)
    image = image + rng.normal(0.0, 3.0, image.shape).astype(np.float32)      # sensor noise
    bird_mask = np.asarray(mask.reduce(ss)) >= 128                             # (H, W)
    return np.clip(image.round(), 0, 255).astype(np.uint8), bird_mask

