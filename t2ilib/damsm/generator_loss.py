r"""The DAMSM loss of generated images: how a generator learns to match its caption.

SSA-GAN adds $\lambda\,L_\text{DAMSM}(\hat x, w, s)$ to G's loss (AttnGAN's word- and
sentence-level matching of :mod:`t2ilib.damsm.losses`, between the image encoder's view of
the fakes $\hat x$ and the caption's words $w$ and sentence $s$); the course's SISGAN recipe
does the same for its edits. The image encoder runs under the caller's autocast; the loss
itself is computed in float32.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.damsm.losses import SSAGAN_GAMMAS, DAMSMGammas, damsm_loss

__all__ = ["resize_for_encoder", "damsm_image_loss"]


def resize_for_encoder(images: Tensor, size: int | None) -> Tensor:
    """``(B, 3, H, W) -> (B, 3, size, size)`` bilinearly, for an image encoder trained at
    ``size`` px (``None`` or an equal size: unchanged). Differentiable, so a generator's
    DAMSM loss reaches its images through it."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def damsm_image_loss(image_encoder: nn.Module, images: Tensor, words: Tensor, sentence: Tensor,
                     lengths: Tensor, class_ids: Tensor, gammas: DAMSMGammas = SSAGAN_GAMMAS,
                     encoder_size: int | None = None) -> Tensor:
    """$L_\\text{DAMSM}$ of ``images`` ``(B, 3, H, W)`` against their captions' ``words``
    ``(B, D, T)``, ``sentence`` ``(B, D)``, ``lengths`` ``(B,)``; ``class_ids`` ``(B,)``
    (same-class pairs are no negatives). A scalar; gradients reach ``images`` and the
    encoders that require them."""
    regions, codes = image_encoder(resize_for_encoder(images, encoder_size))
    with torch.autocast(images.device.type, enabled=False):
        return damsm_loss(regions.float(), codes.float(), words.float(), sentence.float(),
                          lengths.to(images.device), class_ids, gammas).total
