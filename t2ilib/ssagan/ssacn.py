r"""SSA-GAN's Semantic-Spatial Aware Convolution (SSACN) block and its mask predictor.

Liao et al., "Text to Image Generation with Semantic-Spatial Aware GAN", CVPR 2022, the
"Semantic-Spatial Aware Convolution Network" of the method section, as written in the
official code (``wtliao/text2image`` ``model.py``).
Taught in ``notebooks/04_ssacn``.

**Semantic-spatial aware batch norm.** DF-GAN's affine fusion (:mod:`t2ilib.ssagan.blocks`)
modulates every pixel alike. SSA-GAN normalises first and lets a predicted mask
$m \in (0, 1)^{B \times 1 \times H \times W}$ decide *where* the text acts:

$$y = \big(1 + m \odot \gamma(s)\big) \odot \mathrm{BN}(x) + m \odot \beta(s),$$

BN without a learned affine, $\gamma, \beta$ MLPs ``256 -> 256 -> C`` whose last layer
starts at zero. Equivalently $y = (1 - m) \odot \hat x + m \odot \mathrm{Affine}(\hat x \mid s)$
with DF-GAN's affine ($\gamma_\text{DF} = 1 + \gamma$): the mask blends an unconditional BN
(where $m \approx 0$) with a fully text-conditioned one (where $m \approx 1$). With
$m \equiv 1$ the block is DF-GAN's block with BN in front of each affine and one affine per
conv (``notebooks/04_ssacn`` checks this numerically).

**SSACN block.** Given features $x$, sentence $s$ and mask $m$ (both modulations use the
same $m$):

$$h = \mathrm{conv}_2\,\mathrm{ReLU}\,A_1\big(\mathrm{conv}_1\,\mathrm{ReLU}\,A_0(x; s, m);
  s, m\big), \qquad \mathrm{out} = \mathrm{sc}(x) + g \cdot h,$$

3x3 convolutions, a 1x1 shortcut when channels change, a scalar gate $g$ that starts at 0.

**Mask predictor.** ``conv3x3(C -> 100) -> BN -> ReLU -> conv1x1(100 -> 1)`` applied to the
block's *output*; it returns logits. The generator upsamples those logits bilinearly
(``align_corners=True``) to the next resolution and takes the sigmoid there.

At initialisation (gate 0, zero last layers) a block is exactly its shortcut, whatever
$s$ and $m$ are. There is no loss on the mask: it learns only through the GAN and DAMSM
gradients, the paper's "weak supervision".

Where this follows the code and not the paper figure: the figure draws the mask predictor
inside the block, on the upsampled input; the code (and this module) predicts it from the
previous block's output before upsampling and upsamples the logits. The official code uses
synchronised BN (multi-GPU DataParallel); on one device that is ordinary BN, used here.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.ssagan.blocks import check_condition, condition_mlp

__all__ = ["check_mask", "SemanticSpatialAffine", "MaskPredictor", "SSACNBlock"]


def check_mask(mask: Tensor, x: Tensor) -> None:
    """Raise ``ValueError`` unless ``mask`` is ``(B, 1, H, W)`` for ``x`` ``(B, C, H, W)``."""
    b, _, h, w = x.shape
    if mask.shape != (b, 1, h, w):
        raise ValueError(f"the mask must have shape ({b}, 1, {h}, {w}) for features of shape "
                         f"{tuple(x.shape)}, got {tuple(mask.shape)}")


class SemanticSpatialAffine(nn.Module):
    r"""Masked conditional BN: $(1 + m \odot \gamma(s)) \odot \mathrm{BN}(x) + m \odot \beta(s)$.

    ``forward(x, s, mask)``: ``(B, C, H, W), (B, D), (B, 1, H, W) -> (B, C, H, W)``;
    ``mask=None`` means $m \equiv 1$. $\gamma, \beta$: ``D -> hidden_dim -> C`` MLPs with the
    last layer initialised to zero, so the layer starts as ``BN(x)`` (no learned affine).
    """

    def __init__(self, num_features: int, cond_dim: int = 256, hidden_dim: int = 256):
        super().__init__()
        self.num_features, self.cond_dim = num_features, cond_dim
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = condition_mlp(cond_dim, hidden_dim, num_features)
        self.beta = condition_mlp(cond_dim, hidden_dim, num_features)
        for mlp in (self.gamma, self.beta):
            nn.init.zeros_(mlp[-1].weight)
            nn.init.zeros_(mlp[-1].bias)

    def forward(self, x: Tensor, s: Tensor, mask: Tensor | None = None) -> Tensor:
        """``(B, C, H, W), (B, D), (B, 1, H, W) or None -> (B, C, H, W)``."""
        check_condition(x, s, self.num_features, self.cond_dim)
        # BEGIN EXERCISE 04:nb04_semantic_spatial_affine
        gamma = self.gamma(s)[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        beta = self.beta(s)[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        if mask is not None:
            check_mask(mask, x)
            gamma = mask * gamma  # (B, 1, H, W) * (B, C, 1, 1) -> (B, C, H, W)
            beta = mask * beta  # (B, 1, H, W) * (B, C, 1, 1) -> (B, C, H, W)
        return (1 + gamma) * self.norm(x) + beta
        # END EXERCISE


class MaskPredictor(nn.Module):
    """Mask logits from features: conv3x3(C -> hidden) -> BN -> ReLU -> conv1x1(hidden -> 1).

    ``forward(x)``: ``(B, C, H, W) -> (B, 1, H, W)`` raw logits (take the sigmoid for a mask).
    """

    def __init__(self, in_ch: int, hidden: int = 100):
        super().__init__()
        # BEGIN EXERCISE 04:nb04_mask_predictor
        self.net = nn.Sequential(
            nn.Conv2d(in_ch, hidden, 3, padding=1),
            nn.BatchNorm2d(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, 1, 1),
        )
        # END EXERCISE

    def forward(self, x: Tensor) -> Tensor:
        """``(B, C, H, W) -> (B, 1, H, W)`` logits."""
        return self.net(x)


class SSACNBlock(nn.Module):
    r"""SSACN block: (masked affine -> ReLU -> conv3x3) x 2 on a gated residual branch.

    ``forward(x, s, mask)``: ``(B, in_ch, H, W), (B, D), (B, 1, H, W) or None ->
    (out (B, out_ch, H, W), logits (B, 1, H, W) or None)``. ``out = shortcut(x) + gate *
    residual``; ``logits`` are the next block's mask logits, predicted from ``out``
    (``None`` when ``predict_mask=False``, the last block of the generator). No resampling.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int = 256, hidden_dim: int = 256,
                 predict_mask: bool = True, mask_hidden: int = 100):
        super().__init__()
        self.affine0 = SemanticSpatialAffine(in_ch, cond_dim, hidden_dim)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.affine1 = SemanticSpatialAffine(out_ch, cond_dim, hidden_dim)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.gate = nn.Parameter(torch.zeros(1))  # `gamma` in the official code
        self.mask_predictor = MaskPredictor(out_ch, mask_hidden) if predict_mask else None

    def residual(self, x: Tensor, s: Tensor, mask: Tensor | None = None) -> Tensor:
        """The text-fusing branch: ``(B, in_ch, H, W), (B, D), mask -> (B, out_ch, H, W)``."""
        h = self.conv1(F.relu(self.affine0(x, s, mask)))
        return self.conv2(F.relu(self.affine1(h, s, mask)))

    def forward(self, x: Tensor, s: Tensor,
                mask: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        """``(B, in_ch, H, W), (B, D), (B, 1, H, W) -> ((B, out_ch, H, W), (B, 1, H, W)|None)``."""
        out = self.shortcut(x) + self.gate * self.residual(x, s, mask)
        logits = self.mask_predictor(out) if self.mask_predictor is not None else None
        return out, logits
