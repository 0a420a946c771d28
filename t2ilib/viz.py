r"""Pictures of what the models do: image grids with captions, mask overlays, loss curves.

Small and general on purpose; every notebook that shows images uses these. Images are
tensors in the models' range $[-1, 1]$ (``(B, 3, H, W)``), converted with
$u = \mathrm{round}(127.5\,(x + 1))$ clipped to $[0, 255]$. Masks are ``(B, 1, h, w)`` in
$[0, 1]$ (SSACN's masks, ground-truth bird masks) and are shown as a red tint
$\tilde x = (1 - \alpha m)\,x + \alpha m\,c$ over the image, upsampled to its size.
Loss logs are the CSV files the training loops write (one row per logging interval).
"""

from __future__ import annotations

import csv
import os
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_uint8", "make_grid", "save_grid", "mask_overlay", "show_images",
           "read_loss_csv", "plot_losses"]


def to_uint8(images: Tensor) -> Tensor:
    """``(B, 3, H, W)`` float in [-1, 1] -> uint8 in [0, 255] on the CPU (same shape); uint8
    images come back as they are (on the CPU)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, 1|3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images.cpu()
    x = images.detach().float().cpu()
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


def make_grid(images: Tensor, ncol: int = 8, pad: int = 2) -> Tensor:
    """Tile ``(B, 3, H, W)`` images in [-1, 1] (or uint8) into one uint8 ``(3, H', W')``
    picture.

    Rows of ``ncol`` images separated by ``pad`` white pixels; a short last row is padded
    with white cells.
    """
    if ncol < 1:
        raise ValueError(f"ncol must be >= 1, got {ncol}")
    u = to_uint8(images)                                                  # (B, C, H, W)
    b, c, h, w = u.shape
    ncol = min(ncol, b)
    nrow = -(-b // ncol)                                                  # ceil(B / ncol)
    grid = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(b):
        r, q = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + q * (w + pad)
        grid[:, top:top + h, left:left + w] = u[i]
    return grid


def save_grid(images: Tensor, path: str | os.PathLike[str], ncol: int = 8) -> Path:
    """Write :func:`make_grid` of ``images`` as a PNG (atomically); returns the path."""
    from PIL import Image

    from t2ilib.io import atomic_write

    grid = make_grid(images, ncol)                                        # (C, H', W')
    array = grid.permute(1, 2, 0).squeeze(-1).numpy()                     # (H', W', C)
    with atomic_write(path, "wb") as f:
        Image.fromarray(array).save(f, format="PNG")
    return Path(path)


def mask_overlay(images: Tensor, masks: Tensor, alpha: float = 0.6,
                 color: Sequence[float] = (1.0, -1.0, -1.0)) -> Tensor:
    """Tint ``images`` ``(B, 3, H, W)`` in [-1, 1] where ``masks`` ``(B, 1, h, w)`` are high.

    Returns ``(B, 3, H, W)`` in [-1, 1]: $(1 - \\alpha m) x + \\alpha m c$ with the mask
    bilinearly resized to ``(H, W)`` and ``c`` the colour (red by default).
    """
    if masks.ndim != 4 or masks.shape[1] != 1 or masks.shape[0] != images.shape[0]:
        raise ValueError(f"masks must be (B, 1, h, w) with B = {images.shape[0]}, "
                         f"got {tuple(masks.shape)}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    x = images.detach().float().cpu()
    m = F.interpolate(masks.detach().float().cpu(), size=x.shape[-2:], mode="bilinear",
                      align_corners=False).clamp(0, 1)                    # (B, 1, H, W)
    c = torch.tensor(color, dtype=x.dtype).view(1, 3, 1, 1)
    return (1 - alpha * m) * x + alpha * m * c


def show_images(images: Tensor, captions: Sequence[str] | None = None, ncol: int = 8,
                title: str | None = None, width: int = 28, scale: float = 1.6):
    """A matplotlib figure of ``(B, 3, H, W)`` images in [-1, 1], each with its caption below.

    Returns the figure (call ``plt.show()`` in a notebook). Captions are wrapped at
    ``width`` characters.
    """
    import matplotlib.pyplot as plt

    u = to_uint8(images)
    b = u.shape[0]
    if captions is not None and len(captions) != b:
        raise ValueError(f"{len(captions)} captions for {b} images")
    ncol = max(1, min(ncol, b))
    nrow = -(-b // ncol)
    lines = 0 if captions is None else max(len(textwrap.wrap(c, width)) for c in captions)
    fig, axes = plt.subplots(nrow, ncol, squeeze=False,
                             figsize=(scale * ncol, scale * nrow * (1 + 0.18 * lines)))
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= b:
            continue
        cmap = "gray" if u.shape[1] == 1 else None
        ax.imshow(u[i].permute(1, 2, 0).squeeze(-1).numpy(), cmap=cmap, interpolation="nearest")
        if captions is not None:
            ax.set_title("\n".join(textwrap.wrap(captions[i], width)), fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def read_loss_csv(path: str | os.PathLike[str]) -> dict[str, list[float]]:
    """Columns of a training loss log: ``{column: [value per row]}`` (all parsed as float).

    Read as tolerantly as a resume reads it: a row a kill cut short (missing or unreadable
    values) or a line that is not UTF-8 is left out, not a traceback."""
    with open(path, newline="", errors="replace") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        rows = [r for r in reader if header is not None and len(r) == len(header)]
    columns: dict[str, list[float]] = {k: [] for k in header or []}
    for row in rows:
        try:
            values = [float(v) for v in row]
        except ValueError:
            continue
        for k, v in zip(columns, values):
            columns[k].append(v)
    return columns if any(columns.values()) else {}


def plot_losses(log: Mapping[str, Sequence[float]] | str | os.PathLike[str],
                keys: Sequence[str] | None = None, x: str = "step", smooth: int = 1,
                title: str | None = None):
    """Loss curves from a log (a column dict or a CSV path) against column ``x``.

    ``smooth > 1`` draws a moving average over that many rows. One panel per key
    (default: every column except ``x`` and ``epoch``). Returns the figure.
    """
    import matplotlib.pyplot as plt

    cols = read_loss_csv(log) if isinstance(log, (str, os.PathLike)) else dict(log)
    if x not in cols:
        raise ValueError(f"the log has no column {x!r}; columns: {sorted(cols)}")
    keys = [k for k in cols if k not in (x, "epoch")] if keys is None else list(keys)
    missing = [k for k in keys if k not in cols]
    if missing:
        raise ValueError(f"the log has no columns {missing}; columns: {sorted(cols)}")
    fig, axes = plt.subplots(1, len(keys), figsize=(2.6 * len(keys), 2.4), squeeze=False)
    xs = torch.tensor(cols[x], dtype=torch.float64)
    for ax, key in zip(axes.flat, keys):
        ys = torch.tensor(cols[key], dtype=torch.float64)
        ax.plot(xs.numpy(), ys.numpy(), alpha=0.35 if smooth > 1 else 1.0, lw=1)
        if smooth > 1 and len(ys) >= smooth:
            kernel = torch.full((1, 1, smooth), 1.0 / smooth, dtype=torch.float64)
            avg = F.conv1d(ys.view(1, 1, -1), kernel).view(-1)           # valid moving average
            ax.plot(xs[smooth - 1:].numpy(), avg.numpy(), lw=1.5)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel(x, fontsize=8)
        ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
