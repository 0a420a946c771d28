"""ToyBirds: procedurally drawn, captioned birds in the CUB + AttnGAN layout (DESIGN.md §3).

A dataset a CPU can learn text-to-image from in minutes, with ground truth that real CUB
lacks. Each image is a cartoon bird made of parts (tail, legs, body, wing, head with a
crown patch, beak, eye) drawn on a background (sky, grass, water or sand gradient with a
little clutter). Its attributes are drawn **independently and uniformly** from
:data:`ATTRIBUTES`:

.. math:: a = (\\text{body}, \\text{wing}, \\text{crown}, \\text{beak colour}, \\text{beak length},
          \\text{size}, \\text{facing}, \\text{background}) \\sim \\prod_k \\mathcal{U}(A_k),
          \\quad \\text{position} \\sim \\mathcal{U}[0, 1]^2

so a caption carries information the generator can only get from the text. Every caption
names a random non-empty subset of the six :data:`CAPTIONED` attributes, in CUB style
("this small bird has a red belly, blue wings and a short black beak"). Facing, position and
background are never named: they are the free "style" of an image, and a horizontal flip
(the training augmentation) keeps every caption true.

Legibility: at 64 px the smallest bird's head has a radius of about 4 px, its crown patch is
the upper half of the head, and its beak is at least 4 px long and 4 px deep (a long beak is
2.2x longer, with a blunt tip), so a classifier can read every attribute (metrics_data.md
§5.3: at 32 px the beak was 1-2 px and unreadable). JPEGs are written at quality 95 without
chroma subsampling so that small coloured parts keep their colour.

Files written beside the CUB layout (see :mod:`t2ilib.data.cub`)::

    toybirds.json                  parameters; written last, so it marks a complete set
    groundtruth/attributes.json    per image: attributes, position, tight bird box, and
                                   which attributes each of its 10 captions mentions
    groundtruth/masks.npy          bird masks, bit-packed (N, H, ceil(W/8)) uint8, in
                                   images.txt order (np.unpackbits(..., axis=-1))

``bounding_boxes.txt`` holds the **whole frame** for every image, so AttnGAN's bbox crop
leaves ToyBirds untouched (a crop around the bird would erase its size and position); the
tight bird box is in the ground truth.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from t2ilib.runtime import data_root, progress
from t2ilib.text.vocab import Vocabulary, tokenize, write_captions_pickle

__all__ = [
    "COLORS", "BEAK_COLORS", "ATTRIBUTES", "CAPTIONED", "RGB", "TOYBIRDS_VERSION",
    "sample_attributes", "render_bird", "make_caption", "class_of", "class_name",
    "write_toybirds", "ensure_toybirds", "ToyBirdsTruth", "load_groundtruth",
]

TOYBIRDS_VERSION = 1  # bump whenever the drawing or the captions change (ensure_toybirds rebuilds)

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white",
          "grey")
BEAK_COLORS = ("black", "orange", "yellow", "red")

#: The attribute schema: name -> possible values. Attributes are independent and uniform.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "body_color": COLORS,
    "wing_color": COLORS,
    "crown_color": COLORS,
    "beak_color": BEAK_COLORS,
    "beak_length": ("short", "long"),
    "size": ("small", "large"),
    "facing": ("left", "right"),
    "background": ("sky", "grass", "water", "sand"),
}

#: Attributes that captions may mention (facing, background and position never are).
CAPTIONED = ("body_color", "wing_color", "crown_color", "beak_color", "beak_length", "size")

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
MAX_CAPTION_WORDS = 18                            # AttnGAN's WORDS_NUM


# ------------------------------------------------------------------------- attributes

def sample_attributes(rng: np.random.Generator) -> dict[str, Any]:
    """One bird: each attribute of :data:`ATTRIBUTES` uniformly and independently, plus
    ``position`` ``[u, v]`` in [0, 1]^2 (where the bird sits within the free area)."""
    attrs: dict[str, Any] = {name: values[int(rng.integers(len(values)))]
                             for name, values in ATTRIBUTES.items()}
    attrs["position"] = [round(float(rng.random()), 4), round(float(rng.random()), 4)]
    return attrs


def class_of(attrs: dict[str, Any]) -> int:
    """The CUB-style class id (1..100): the body/wing colour combination."""
    return COLORS.index(attrs["body_color"]) * len(COLORS) + COLORS.index(attrs["wing_color"]) + 1


def class_name(class_id: int) -> str:
    """Folder name of a class, CUB style: ``"013.Red_bodied_Yellow_winged_Toybird"``."""
    body, wing = COLORS[(class_id - 1) // len(COLORS)], COLORS[(class_id - 1) % len(COLORS)]
    return f"{class_id:03d}.{body.capitalize()}_bodied_{wing.capitalize()}_winged_Toybird"


# -------------------------------------------------------------------------- rendering

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
    """Draw the bird ``attrs`` describes (see :func:`sample_attributes`).

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


# --------------------------------------------------------------------------- captions

_PART_NOUNS = {  # attribute -> ((noun, is_plural), ...)
    "body_color": (("belly", False), ("breast", False), ("body", False), ("chest", False),
                   ("underbelly", False), ("abdomen", False), ("throat and belly", True)),
    "wing_color": (("wings", True), ("wing feathers", True), ("wings and tail", True),
                   ("secondaries", True), ("coverts", True), ("primaries", True),
                   ("flight feathers", True)),
    "crown_color": (("crown", False), ("head", False), ("cap", False),
                    ("crown feathers", True), ("forehead and crown", True)),
}
_BEAK_NOUNS = ("beak", "bill")
_LENGTH_WORDS = {"short": ("short", "stubby", "short pointed", "small"),
                 "long": ("long", "long pointed", "elongated", "very long")}
_SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "very large")}
_SHADES = {"red": "bright", "orange": "bright", "yellow": "bright", "green": "dark",
           "blue": "dark", "purple": "dark", "brown": "dark", "grey": "light"}
_OPENERS = ("this bird has", "a bird with", "this is a bird with", "the bird has",
            "this particular bird has", "this bird features", "here is a bird with",
            "this bird is mostly covered in feathers and has")
_SIZE_OPENERS = ("this {} bird has", "a {} bird with", "this is a {} bird with",
                 "the {} bird has", "this {} bird features", "this bird is {} and has")
_SIZE_ONLY = ("this bird is {}", "a {} bird", "this is a {} bird", "the bird is {}",
              "a {} bird sitting quietly")


def _color_word(color: str, rng: np.random.Generator) -> str:
    """The colour's name, sometimes with a shade ("bright red") or a synonym ("gray")."""
    word = "gray" if color == "grey" and rng.random() < 0.4 else color
    if color in _SHADES and rng.random() < 0.15:
        word = f"{_SHADES[color]} {word}"
    return word


def _article(word: str) -> str:
    return "an " if word[0] in "aeiou" else "a "


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _phrases(attrs: dict[str, Any], names: list[str], rng: np.random.Generator
             ) -> list[tuple[str, str]]:
    """Each mentioned part as ``(noun phrase, clause)``: ("a red belly", "its belly is red")."""
    out = []
    for name in names:
        if name in _PART_NOUNS:
            nouns = _PART_NOUNS[name]
            noun, plural = nouns[int(rng.integers(len(nouns)))]
            color = _color_word(attrs[name], rng)
            article = "" if plural else _article(color)
            verb = "are" if plural else "is"
            out.append((f"{article}{color} {noun}",
                        f"{_pick(('its', 'the'), rng)} {noun} {verb} {color}"))
    beak_color, beak_length = "beak_color" in names, "beak_length" in names
    if beak_color or beak_length:
        noun = _pick(_BEAK_NOUNS, rng)
        words = []
        if beak_length:
            words.append(_pick(_LENGTH_WORDS[attrs["beak_length"]], rng))
        if beak_color:
            words.append(_color_word(attrs["beak_color"], rng))
        out.append((f"{_article(words[0])}{' '.join(words)} {noun}",
                    f"{_pick(('its', 'the'), rng)} {noun} is {' and '.join(words)}"))
    return out


def _join(items: list[str], rng: np.random.Generator) -> str:
    if len(items) == 1:
        return items[0]
    comma = "," if len(items) > 2 and rng.random() < 0.3 else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def _phrase(attrs: dict[str, Any], mentioned: tuple[str, ...], rng: np.random.Generator) -> str:
    """One random wording of a caption that names exactly the ``mentioned`` attributes."""
    parts = [n for n in mentioned if n != "size"]
    order = rng.permutation(len(parts)).tolist()
    phrases = _phrases(attrs, [parts[i] for i in order], rng)
    size_word = _pick(_SIZE_WORDS[attrs["size"]], rng) if "size" in mentioned else None
    if not phrases:  # only the size
        return _pick(_SIZE_ONLY, rng).format(size_word)
    n_clauses = int(rng.integers(0, len(phrases) + 1)) if rng.random() < 0.35 else 0
    nps = [np_ for np_, _ in phrases[:len(phrases) - n_clauses]]
    clauses = [cl for _, cl in phrases[len(phrases) - n_clauses:]]
    if nps:
        opener = (_pick(_SIZE_OPENERS, rng).format(size_word) if size_word
                  else _pick(_OPENERS, rng))
        caption = f"{opener} {_join(nps, rng)}"
        if clauses:
            caption += ", and " + _join(clauses, rng)
        return caption
    caption = _join(clauses, rng)
    if size_word:
        caption = f"{_pick(('this bird is', 'the bird is'), rng)} {size_word}, {caption}"
    return caption


def make_caption(attrs: dict[str, Any], rng: np.random.Generator,
                 max_words: int = MAX_CAPTION_WORDS) -> tuple[str, tuple[str, ...]]:
    """A CUB-style caption naming a random non-empty subset of :data:`CAPTIONED` attributes.

    Returns ``(caption, mentioned)`` with ``mentioned`` in :data:`CAPTIONED` order. The
    caption has at most ``max_words`` tokens (wordings that are too long are redrawn, the
    subset is kept), so AttnGAN's 18-word subsampling never drops a mentioned attribute.
    """
    k = int(rng.choice(np.arange(1, 7), p=[0.12, 0.26, 0.28, 0.2, 0.1, 0.04]))
    chosen = set(rng.choice(len(CAPTIONED), size=k, replace=False).tolist())
    mentioned = tuple(name for i, name in enumerate(CAPTIONED) if i in chosen)
    for _ in range(100):
        caption = _phrase(attrs, mentioned, rng)
        if len(tokenize(caption)) <= max_words:
            return caption, mentioned
    raise RuntimeError(f"no wording of {mentioned} fits in {max_words} words")


# ----------------------------------------------------------------------------- writing

def _write_pickle(path: Path, obj: list) -> None:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Every image has its own stream: image i of a split does not depend on the set size."""
    return np.random.default_rng([seed, 0 if split == "train" else 1, index])


def _write_tree(out: Path, n_train: int, n_test: int, size: int, seed: int) -> None:
    cub = out / "CUB_200_2011"
    entries = []   # (split, key, attrs, captions, mentions, box)
    masks = []
    total = n_train + n_test
    splits = [("train", i) for i in range(n_train)] + [("test", i) for i in range(n_test)]
    for number, (split, i) in enumerate(progress(splits, total=total, desc="ToyBirds",
                                                 unit="img"), start=1):
        rng = _image_rng(seed, split, i)
        attrs = sample_attributes(rng)
        image, mask = render_bird(attrs, size, rng)
        captions, mentions = zip(*(make_caption(attrs, rng) for _ in range(10)))
        key = f"{class_name(class_of(attrs))}/Toybird_{number:05d}"
        path = cub / "images" / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=95, subsampling=0)
        text = out / "text" / f"{key}.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text("\n".join(captions) + "\n", encoding="utf-8")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
        entries.append((split, key, attrs, list(captions), [list(m) for m in mentions], box))
        masks.append(np.packbits(mask, axis=-1))                                # (H, ceil(W/8))
    lines = [f"{n} {key}.jpg" for n, (_, key, *_rest) in enumerate(entries, start=1)]
    (cub / "images.txt").write_text("\n".join(lines) + "\n")
    (cub / "bounding_boxes.txt").write_text(
        "".join(f"{n} 0.0 0.0 {size:.1f} {size:.1f}\n" for n in range(1, total + 1)))
    (cub / "image_class_labels.txt").write_text(
        "".join(f"{n} {class_of(e[2])}\n" for n, e in enumerate(entries, start=1)))
    (cub / "train_test_split.txt").write_text(
        "".join(f"{n} {int(e[0] == 'train')}\n" for n, e in enumerate(entries, start=1)))
    n_classes = len(COLORS) ** 2
    (cub / "classes.txt").write_text(
        "".join(f"{c} {class_name(c)}\n" for c in range(1, n_classes + 1)))
    tokens = {"train": [], "test": []}
    for split in ("train", "test"):
        rows = [e for e in entries if e[0] == split]
        _write_pickle(out / split / "filenames.pickle", [e[1] for e in rows])
        _write_pickle(out / split / "class_info.pickle", [class_of(e[2]) for e in rows])
        tokens[split] = [tokenize(c) for e in rows for c in e[3]]
    vocab = Vocabulary.build(tokens["train"] + tokens["test"])
    write_captions_pickle(out / "captions.pickle", [vocab.ids(t) for t in tokens["train"]],
                          [vocab.ids(t) for t in tokens["test"]], vocab)
    gt = out / "groundtruth"
    gt.mkdir(exist_ok=True)
    truth = {
        "version": TOYBIRDS_VERSION, "size": size,
        "schema": {k: list(v) for k, v in ATTRIBUTES.items()}, "captioned": list(CAPTIONED),
        "keys": [e[1] for e in entries],
        "images": {key: {"split": split, "attributes": attrs, "bird_box": box,
                         "mentions": mentions}
                   for split, key, attrs, _caps, mentions, box in entries},
    }
    (gt / "attributes.json").write_text(json.dumps(truth, indent=0, sort_keys=True))
    np.save(gt / "masks.npy", np.stack(masks))                                 # (N, H, W/8)
    manifest = {"generator": "t2ilib.data.toybirds", "version": TOYBIRDS_VERSION, "seed": seed,
                "n_train": n_train, "n_test": n_test, "size": size}
    (out / "toybirds.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _manifest(root: Path) -> dict[str, Any] | None:
    path = root / "toybirds.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_toybirds(out_dir: str | os.PathLike[str], n_train: int = 4000, n_test: int = 1000,
                   size: int = 64, seed: int = 0, overwrite: bool = False) -> Path:
    """Render a ToyBirds set into ``out_dir`` (CUB + AttnGAN layout + ground truth).

    The set is built in a temporary sibling folder and renamed into place when complete.
    An existing ToyBirds folder is replaced only with ``overwrite=True``; any other
    non-empty folder is refused. Deterministic: equal arguments give identical bytes.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need at least one train and one test image, got {n_train}/{n_test}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if _manifest(out) is None:
            raise FileExistsError(f"{out} exists, is not empty and is not a ToyBirds folder")
        if not overwrite:
            raise FileExistsError(f"{out} already holds a ToyBirds set (pass overwrite=True)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_tree(tmp, n_train, n_test, size, seed)
        if overwrite and out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)  # fails if another process has meanwhile filled `out`
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_toybirds(root: str | os.PathLike[str] | None = None, size: int = 64,
                    n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> Path:
    """The ToyBirds folder for these parameters, made on first use.

    ``root`` defaults to ``data_root()/"toybirds"`` (``"toybirds_<size>"`` for other sizes).
    A folder made with other parameters raises ``ValueError`` (choose another root).
    """
    if root is None:
        root = data_root() / ("toybirds" if size == 64 else f"toybirds_{size}")
    root = Path(root)
    wanted = {"generator": "t2ilib.data.toybirds", "version": TOYBIRDS_VERSION, "seed": seed,
              "n_train": n_train, "n_test": n_test, "size": size}
    found = _manifest(root)
    if found is None:
        try:
            write_toybirds(root, n_train, n_test, size, seed)
        except (FileExistsError, OSError):
            found = _manifest(root)  # another process may have finished it first
            if found is None:
                raise
        else:
            return root
    if found != wanted:
        raise ValueError(f"{root} holds ToyBirds {found}, not {wanted}; pass another root "
                         "or remove the folder")
    return root


# ------------------------------------------------------------------------ ground truth

@dataclass
class ToyBirdsTruth:
    """Ground truth of a ToyBirds folder (see :func:`load_groundtruth`).

    Attributes:
        keys: image keys in ``images.txt`` order (the row order of ``packed_masks``).
        attributes: ``{key: {attribute: value, ..., "position": [u, v]}}``.
        mentions: ``{key: [[attribute names of caption j] for j in 0..9]}``.
        boxes: ``{key: [x, y, w, h]}``, the tight box around the bird mask.
        splits: ``{key: "train" | "test"}``.
        packed_masks: ``(N, H, ceil(W/8))`` uint8, ``np.packbits`` of the masks along W.
        size: image side H = W.
    """

    keys: list[str]
    attributes: dict[str, dict[str, Any]]
    mentions: dict[str, list[list[str]]]
    boxes: dict[str, list[int]]
    splits: dict[str, str]
    packed_masks: np.ndarray
    size: int

    def mask(self, key: str) -> np.ndarray:
        """The bird mask of ``key``: bool ``(H, W)``."""
        row = self.packed_masks[self.keys.index(key)]
        return np.unpackbits(row, axis=-1, count=self.size).astype(bool)

    def masks(self) -> np.ndarray:
        """All masks: bool ``(N, H, W)`` in :attr:`keys` order."""
        return np.unpackbits(self.packed_masks, axis=-1, count=self.size).astype(bool)


def load_groundtruth(root: str | os.PathLike[str]) -> ToyBirdsTruth:
    """Read ``groundtruth/attributes.json`` and ``groundtruth/masks.npy`` of a ToyBirds folder."""
    gt = Path(root) / "groundtruth"
    truth = json.loads((gt / "attributes.json").read_text())
    images = truth["images"]
    keys = truth["keys"]
    packed = np.load(gt / "masks.npy", allow_pickle=False)
    if packed.shape[0] != len(keys):
        raise ValueError(f"{gt}: {packed.shape[0]} masks for {len(keys)} images")
    return ToyBirdsTruth(keys=keys,
                         attributes={k: images[k]["attributes"] for k in keys},
                         mentions={k: images[k]["mentions"] for k in keys},
                         boxes={k: images[k]["bird_box"] for k in keys},
                         splits={k: images[k]["split"] for k in keys},
                         packed_masks=packed, size=int(truth["size"]))
