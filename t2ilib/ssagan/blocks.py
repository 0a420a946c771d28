r"""Text conditioning in a generator: conditional BN, DF-GAN's affine fusion, the DFBlock.

A text-to-image generator must let a sentence vector $s \in \mathbb{R}^{D}$ steer feature
maps $x \in \mathbb{R}^{B \times C \times H \times W}$. The three pieces here are the
steps from the classic answer to the one SSA-GAN builds on (``notebooks/03_conditioning``).

**Conditional batch normalisation** (de Vries et al., NeurIPS 2017, "Modulating early
visual processing by language"; Dumoulin et al., ICLR 2017): normalise with batch
statistics, then scale and shift per channel with values *predicted from the condition*,

$$\mathrm{CBN}(x \mid s) = \big(1 + \Delta\gamma(s)\big) \odot \hat x + \beta(s), \qquad
\hat x = \frac{x - \mu_\mathcal{B}}{\sqrt{\sigma^2_\mathcal{B} + \epsilon}},$$

with $\Delta\gamma, \beta$ linear maps of $s$ that start at zero (so CBN starts as plain BN).

**DF-GAN's affine fusion** (Tao et al., "Deep Fusion Generative Adversarial Networks for
Text-to-Image Synthesis", arXiv:2008.05865 v1, 2020, the code SSA-GAN was forked from,
``tobran/DF-GAN``): drop the normalisation and use deeper predictors,

$$\mathrm{Affine}(x \mid s) = \gamma(s) \odot x + \beta(s), \qquad
\gamma, \beta:\ \mathrm{Linear}(D \to 256) \to \mathrm{ReLU} \to \mathrm{Linear}(256 \to C).$$

The last layer of $\gamma$ starts at weight 0, bias 1 and that of $\beta$ at 0, so each
affine starts as the identity.

**DFBlock** (DF-GAN v1 ``G_Block``): a residual block that fuses text four times,

$$h = \mathrm{conv}_2\,\phi\,A_3\,\phi\,A_2\;\mathrm{conv}_1\,\phi\,A_1\,\phi\,A_0(x), \qquad
\mathrm{out} = \mathrm{sc}(x) + g \cdot h,$$

with $A_i$ affines conditioned on $s$, $\phi$ = LeakyReLU(0.2), 3x3 convolutions, a 1x1
shortcut $\mathrm{sc}$ when the channel count changes, and a learnable scalar gate $g$
that starts at 0 (so the block starts as its shortcut). Upsampling happens outside.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["check_condition", "condition_mlp", "ConditionalBatchNorm2d", "Affine", "DFBlock"]


def check_condition(x: Tensor, s: Tensor, channels: int, cond_dim: int) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, channels, H, W)`` and ``s`` ``(B, cond_dim)``."""
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"features must have shape (B, {channels}, H, W), got {tuple(x.shape)}")
    if s.ndim != 2 or s.shape[1] != cond_dim:
        raise ValueError(f"the condition must have shape (B, {cond_dim}), got {tuple(s.shape)}")
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"features and condition disagree on the batch size: "
                         f"{x.shape[0]} vs {s.shape[0]}")


def condition_mlp(cond_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """``Linear(cond_dim -> hidden_dim) -> ReLU -> Linear(hidden_dim -> out_dim)``.

    ``(B, D) -> (B, C)``: the predictor of one modulation vector (gamma or beta) in DF-GAN
    and SSA-GAN.
    """
    return nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.ReLU(), nn.Linear(hidden_dim, out_dim))


class ConditionalBatchNorm2d(nn.Module):
    r"""Conditional BN: $(1 + \Delta\gamma(s)) \odot \mathrm{BN}(x) + \beta(s)$.

    ``forward(x, s)``: ``(B, C, H, W), (B, D) -> (B, C, H, W)``. BN has no learned affine of
    its own; $\Delta\gamma$ and $\beta$ are ``Linear(D -> C)`` maps initialised to zero, so
    the layer starts as an unconditional BN and learns how far the condition moves it.
    """

    def __init__(self, num_features: int, cond_dim: int = 256):
        super().__init__()
        self.num_features, self.cond_dim = num_features, cond_dim
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.gamma = nn.Linear(cond_dim, num_features)
        self.beta = nn.Linear(cond_dim, num_features)
        for layer in (self.gamma, self.beta):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """``(B, C, H, W), (B, D) -> (B, C, H, W)``."""
        check_condition(x, s, self.num_features, self.cond_dim)
        # BEGIN EXERCISE 03:nb03_conditional_bn
        gamma = self.gamma(s)[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        beta = self.beta(s)[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        return (1 + gamma) * self.norm(x) + beta
        # END EXERCISE


class Affine(nn.Module):
    r"""DF-GAN's text-image affine fusion: $\gamma(s) \odot x + \beta(s)$, no normalisation.

    ``forward(x, s)``: ``(B, C, H, W), (B, D) -> (B, C, H, W)``. $\gamma$ and $\beta$ are
    :func:`condition_mlp` predictors ``D -> hidden_dim -> C``; the last layer of $\gamma$
    starts at weight 0 and bias 1, that of $\beta$ at 0, so the layer starts as the identity.
    """

    def __init__(self, num_features: int, cond_dim: int = 256, hidden_dim: int = 256):
        super().__init__()
        self.num_features, self.cond_dim = num_features, cond_dim
        self.gamma = condition_mlp(cond_dim, hidden_dim, num_features)
        self.beta = condition_mlp(cond_dim, hidden_dim, num_features)
        nn.init.zeros_(self.gamma[-1].weight)
        nn.init.ones_(self.gamma[-1].bias)
        nn.init.zeros_(self.beta[-1].weight)
        nn.init.zeros_(self.beta[-1].bias)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """``(B, C, H, W), (B, D) -> (B, C, H, W)``."""
        check_condition(x, s, self.num_features, self.cond_dim)
        gamma = self.gamma(s)[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        beta = self.beta(s)[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        return gamma * x + beta


class DFBlock(nn.Module):
    r"""DF-GAN v1's generator block: four text affines, two 3x3 convs, a gated residual.

    ``forward(x, s)``: ``(B, in_ch, H, W), (B, D) -> (B, out_ch, H, W)`` (no resampling).
    Residual branch: Affine -> LReLU -> Affine -> LReLU -> conv3x3 -> Affine -> LReLU ->
    Affine -> LReLU -> conv3x3; output ``shortcut(x) + gate * residual`` with ``gate``
    a scalar that starts at 0 and ``shortcut`` a 1x1 conv when ``in_ch != out_ch``.
    """

    def __init__(self, in_ch: int, out_ch: int, cond_dim: int = 256, hidden_dim: int = 256):
        super().__init__()
        self.affine0 = Affine(in_ch, cond_dim, hidden_dim)
        self.affine1 = Affine(in_ch, cond_dim, hidden_dim)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.affine2 = Affine(out_ch, cond_dim, hidden_dim)
        self.affine3 = Affine(out_ch, cond_dim, hidden_dim)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.gate = nn.Parameter(torch.zeros(1))  # `gamma` in the official code

    def residual(self, x: Tensor, s: Tensor) -> Tensor:
        """The text-fusing branch: ``(B, in_ch, H, W), (B, D) -> (B, out_ch, H, W)``."""
        h = F.leaky_relu(self.affine0(x, s), 0.2)
        h = F.leaky_relu(self.affine1(h, s), 0.2)
        h = self.conv1(h)
        h = F.leaky_relu(self.affine2(h, s), 0.2)
        h = F.leaky_relu(self.affine3(h, s), 0.2)
        return self.conv2(h)

    def forward(self, x: Tensor, s: Tensor) -> Tensor:
        """``(B, in_ch, H, W), (B, D) -> (B, out_ch, H, W)``."""
        return self.shortcut(x) + self.gate * self.residual(x, s)
