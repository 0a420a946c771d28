"""How the demo draws: rows of pictures with labels as one PNG, and coloured messages.

Used by :mod:`t2ilib.apps.demo` (notebook 10's app); nothing here knows about models.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from t2ilib.viz import make_grid

__all__ = ["CELL", "render_rows", "message_html", "plain_text"]

#: Side of one picture in the rendered PNG (pixels); smaller models are upscaled to it.
CELL = 96


def render_rows(rows: Sequence[Tensor], labels: Sequence[str], cell: int = CELL,
                label_width: int = 84) -> bytes:
    """One PNG: each row ``(B, 3, H, W)`` in [-1, 1] resized to ``cell`` px, label on its left.

    Images smaller than ``cell`` are enlarged with nearest-neighbour (pixels stay visible),
    larger ones shrunk with antialiasing. Rows must hold the same number of images.
    """
    from PIL import Image, ImageDraw, ImageFont

    if len(rows) != len(labels) or not rows:
        raise ValueError(f"{len(rows)} rows and {len(labels)} labels")
    b = rows[0].shape[0]
    if any(r.shape[0] != b for r in rows):
        raise ValueError(f"rows hold different numbers of images: {[r.shape[0] for r in rows]}")
    resized = []
    for r in rows:
        r = r.detach().float().cpu()
        up = r.shape[-1] < cell
        resized.append(F.interpolate(r, size=(cell, cell), mode="nearest" if up else "bilinear",
                                     antialias=not up, align_corners=None if up else False))
    pad = 2
    grid = make_grid(torch.cat(resized), ncol=b, pad=pad)                    # (3, H', W')
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    canvas = Image.new("RGB", (picture.width + label_width, picture.height), "white")
    canvas.paste(picture, (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, label in enumerate(labels):
        top = pad + i * (cell + pad)
        lines = label.count("\n") + 1
        draw.multiline_text((4, top + cell // 2 - 6 * lines), label, fill=(40, 40, 40),
                            font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------------- messages

_STYLES = {
    "ok": "color:#1e4620;background:#edf7ed;border:1px solid #b7dfb9",
    "warning": "color:#663c00;background:#fff4e5;border:1px solid #ffb74d",
    "error": "color:#5f2120;background:#fdeded;border:1px solid #ef9a9a",
}


def message_html(kind: str, text: str) -> str:
    """A coloured box (``kind``: ok, warning or error) around ``text`` (HTML, already escaped)."""
    if kind not in _STYLES:
        raise ValueError(f"kind must be one of {sorted(_STYLES)}, got {kind!r}")
    icon = {"ok": "&#10003;", "warning": "&#9888;", "error": "&#10007;"}[kind]
    return (f'<div class="t2i-{kind}" style="{_STYLES[kind]};padding:4px 8px;'
            f'border-radius:4px;margin:2px 0">{icon} {text}</div>')


def plain_text(markup: str) -> str:
    """The text of an HTML message, one line per box, tags removed and entities decoded."""
    lines = re.sub(r"<[^>]+>", "", re.sub(r"</div>\s*", "\n", markup))
    return html.unescape(lines).strip()
