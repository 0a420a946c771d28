"""Image augmentation on uint8 tensors: AttnGAN's random crop + horizontal flip, batched.

AttnGAN/DF-GAN/SSA-GAN resize the bird crop to :math:`S = \\lfloor 76/64 \\cdot s\\rfloor` and then
take a random :math:`s \\times s` crop and a random horizontal flip (for training), and
normalise to :math:`[-1, 1]` with :math:`x \\mapsto x/127.5 - 1` (``Normalize(0.5, 0.5)``).

Here the crop and flip act on a *batch* of uint8 tensors ``(B, 3, S, S)``: the same code
augments one dataset item (``B = 1``) on the CPU or a whole batch on the GPU, after the cached
images were moved there once. Offsets and flips are drawn per image with the given
``torch.Generator`` (or the global RNG), so two pipelines with equal seeds agree exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["cache_size_for", "draw_crop_params", "crop_flip", "random_crop_flip",
           "center_crop", "to_unit_range"]


def cache_size_for(image_size: int) -> int:
    """The side AttnGAN resizes to before cropping: ``int(image_size * 76 / 64)`` (64 -> 76)."""
    if image_size < 1:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return int(image_size * 76 / 64)


def to_unit_range(images: Tensor) -> Tensor:
    """uint8 ``(..., 3, H, W)`` in [0, 255] -> float32 in [-1, 1] (``x / 127.5 - 1``)."""
    if images.dtype != torch.uint8:
        raise ValueError(f"expected uint8 images, got {images.dtype}")
    return images.float().div_(127.5).sub_(1.0)


def draw_crop_params(batch: int, source: int, size: int, flip: bool = True,
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Random ``(top (B,), left (B,), flip (B,) bool)`` for crops of ``size`` from ``source``.

    Offsets are uniform in ``0 .. source - size``; ``flip`` is a fair coin (all False when
    ``flip=False``). Draw order: top, left, flip.
    """
    if not 0 < size <= source:
        raise ValueError(f"crop size {size} must be in 1..{source}")
    top = torch.randint(0, source - size + 1, (batch,), generator=generator)
    left = torch.randint(0, source - size + 1, (batch,), generator=generator)
    flips = torch.rand(batch, generator=generator) < 0.5
    if not flip:
        flips = torch.zeros_like(flips)
    return top, left, flips


def crop_flip(images: Tensor, top: Tensor, left: Tensor, flips: Tensor, size: int) -> Tensor:
    """Crop image ``b`` at ``(top[b], left[b])`` to ``size`` x ``size``; mirror it if ``flips[b]``.

    ``(B, C, H, W) -> (B, C, size, size)``, same dtype and device: one ``gather`` over the
    flattened pixels, no Python loop (so it runs as one kernel on a GPU).
    """
    if images.ndim != 4:
        raise ValueError(f"expected (B, C, H, W), got shape {tuple(images.shape)}")
    b, c, h, w = images.shape
    if (int(top.max()) + size > h or int(left.max()) + size > w
            or int(min(top.min(), left.min())) < 0):
        raise ValueError("crop window outside the image")
    dev = images.device
    steps = torch.arange(size, device=dev)
    # non_blocking: parameters drawn on the CPU reach a GPU without stalling it
    rows = top.to(dev, non_blocking=True)[:, None] + steps                # (B, size)
    cols = left.to(dev, non_blocking=True)[:, None] + steps               # (B, size)
    cols = torch.where(flips.to(dev, non_blocking=True)[:, None], cols.flip(1), cols)  # mirror
    pixel = (rows[:, :, None] * w + cols[:, None, :]).reshape(b, 1, -1)   # (B, 1, size*size)
    out = images.reshape(b, c, h * w).gather(2, pixel.expand(b, c, -1))   # (B, C, size*size)
    return out.reshape(b, c, size, size)


def random_crop_flip(images: Tensor, size: int, flip: bool = True,
                     generator: torch.Generator | None = None) -> Tensor:
    """Training augmentation of a uint8 batch: random crop + flip, then scale to [-1, 1].

    ``(B, 3, S, S) uint8 -> (B, 3, size, size) float32``. ``generator`` must live on the CPU
    (the parameters are drawn there and moved to the images' device).
    """
    top, left, flips = draw_crop_params(images.shape[0], images.shape[-1], size, flip, generator)
    return to_unit_range(crop_flip(images, top, left, flips, size))


def center_crop(images: Tensor, size: int) -> Tensor:
    """Test-time view: the centre ``size`` x ``size`` crop, scaled to [-1, 1].

    ``(B, 3, S, S) uint8 -> (B, 3, size, size) float32``; offset ``(S - size) // 2``.
    """
    s = images.shape[-1]
    if not 0 < size <= s:
        raise ValueError(f"crop size {size} must be in 1..{s}")
    o = (s - size) // 2
    return to_unit_range(images[..., o:o + size, o:o + size].contiguous())
