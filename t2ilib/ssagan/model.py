r"""SSA-GAN's generator and discriminator (Liao et al., CVPR 2022) and a DF-GAN generator variant.

Built as in the official code (``wtliao/text2image`` ``model.py``: ``NetG``, ``G_Block``,
``NetD``, ``resD``, ``D_GET_LOGITS``). Taught in
``notebooks/05_generator_discriminator``.

**Generator** $G(z, s)$, $z \sim \mathcal{N}(0, I_{n_z})$, sentence $s \in \mathbb{R}^{256}$.
Start from $h_0 = \mathrm{reshape}(W z + b) \in \mathbb{R}^{8 n_{gf} \times 4 \times 4}$ and
mask logits $\ell_0 = P_0(h_0)$ (a stand-alone mask predictor: the first mask depends on
$z$ only); then for the blocks $k = 1, \dots, K$

$$m_k = \sigma\big(v_k(\ell_{k-1})\big), \qquad
(h_k, \ell_k) = \mathrm{SSACN}_k\big(u_k(h_{k-1});\ s,\ m_k\big),$$

$$\hat x = \tanh\,\mathrm{conv}_{3\times3}\,\mathrm{LReLU}_{0.2}\,\mathrm{BN}(h_K),$$

where $u_1, v_1$ are identities and, for $k \geq 2$, $u_k$ is nearest-neighbour x2
upsampling of the features and $v_k$ bilinear x2 upsampling (``align_corners=True``) of
the logits; $\ell_k$ are the logits block $k$ predicts from its output (none for the last
block). Channel multipliers of ``ngf``: 8, 8, 8, 8, 4, 2, 1 at 4, 8, ..., 256 px. A
smaller output drops the *first* blocks (at 64 px: 8, 8, 4, 2, 1 at 4...64 px), so the
fine end, where the channel count falls, is the same at every size. ``forward`` returns
the image and the list of the masks $m_k$ the blocks used (post-sigmoid).

**DF-GAN variant** (``block="df"``): the same skeleton with DF-GAN v1's
:class:`~t2ilib.ssagan.blocks.DFBlock` (four plain affines, LeakyReLU) and no masks; its
to-RGB head has no BN (``LReLU -> conv3x3 -> tanh``), as in DF-GAN v1. ``forward`` returns
an empty mask list. At 256 px, ``ngf=64`` it is DF-GAN v1's ``NetG`` (31,480,074 parameters).

**Discriminator** $D(x, s)$: a 3x3 conv, then residual down blocks

$$\mathrm{down}(x) = \mathrm{avgpool}_2(\mathrm{sc}(x)) + g \cdot
\mathrm{LReLU}\,\mathrm{conv}_{3\times3}\,\mathrm{LReLU}\,\mathrm{conv}_{4\times4,\,/2}(x)$$

(1x1 shortcut ``sc`` when channels change, scalar gate $g$ starting at 0, no normalisation)
to $16 n_{df} \times 4 \times 4$ features $f$; then the sentence is tiled to 4x4 and
concatenated: $D(x, s) = \mathrm{conv}_{4\times4}\,\mathrm{LReLU}\,\mathrm{conv}_{3\times3}
[f; \mathrm{tile}(s)] \in \mathbb{R}$. Channel multipliers of ``ndf`` after the stem and each
down block at 256 px: 1, 2, 4, 8, 16, 16, 16. A smaller input drops the *last* entries and
keeps the final 16, so ``features`` is always $16 n_{df} \times 4 \times 4$ (at 32 px:
1, 2, 4, 16). ``D.features`` and ``D.logits`` are exposed separately so the training loop
reuses real-image features for the mismatched pairs; nothing is detached, so MA-GP can
differentiate $D$ with respect to both image and sentence.

Parameter counts at 256 px, ``ngf = ndf = 64``, $n_z = 100$, 256-d sentence: **G
29,494,273**, the official generator's count; **D 78,280,326**. Deviation: the official
``resD`` creates a 1x1 shortcut conv even where it is never used (equal channels, the
1024 -> 1024 blocks at 8 and 4 px); this one does not. The official discriminator module
therefore holds 80,379,526 parameters (about 80.4 M), 2,099,200 (2.1 M) of them unused by
its forward pass; the parameters its forward pass uses are the 78,280,326 here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.ssagan.blocks import DFBlock
from t2ilib.ssagan.ssacn import MaskPredictor, SSACNBlock

__all__ = ["RESOLUTIONS", "BLOCKS", "G_MULTIPLIERS", "D_MULTIPLIERS", "SSAGANConfig",
           "generator_channels", "discriminator_channels", "check_generator_inputs",
           "check_discriminator_images", "check_head_inputs", "Generator", "DownBlock",
           "Discriminator"]

RESOLUTIONS = (32, 64, 128, 256)  # output sizes the generator and discriminator support
BLOCKS = ("ssacn", "df")  # generator block types: SSA-GAN's SSACN or DF-GAN v1's DFBlock
G_MULTIPLIERS = (8, 8, 8, 8, 4, 2, 1)  # G channels / ngf at 4, 8, 16, ..., 256 px
D_MULTIPLIERS = (1, 2, 4, 8, 16, 16, 16)  # D channels / ndf at 256, 128, ..., 4 px


@dataclass(frozen=True)
class SSAGANConfig:
    """Sizes of SSA-GAN's generator and discriminator (defaults: the official CUB model)."""

    resolution: int = 256  # image side, one of RESOLUTIONS
    ngf: int = 64  # generator width: channels at the output resolution
    ndf: int = 64  # discriminator width: channels of its first conv
    nz: int = 100  # noise dimension
    sentence_dim: int = 256  # size of the sentence embedding
    block: str = "ssacn"  # "ssacn" (SSA-GAN) or "df" (DF-GAN v1 generator blocks, no masks)

    def __post_init__(self) -> None:
        if self.resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {RESOLUTIONS}, got {self.resolution}")
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {BLOCKS}, got {self.block!r}")
        for name in ("ngf", "ndf", "nz", "sentence_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")


def generator_channels(resolution: int, ngf: int) -> list[tuple[int, int]]:
    """``(in_ch, out_ch)`` of each generator block, from 4 px up to ``resolution``.

    >>> generator_channels(32, 1)
    [(8, 8), (8, 4), (4, 2), (2, 1)]
    """
    n_blocks = int(math.log2(resolution // 4)) + 1  # 4 px, 8 px, ..., resolution
    mults = G_MULTIPLIERS[-n_blocks:]
    return [(ngf * mults[max(i - 1, 0)], ngf * mults[i]) for i in range(n_blocks)]


def discriminator_channels(resolution: int, ndf: int) -> list[int]:
    """Channels after the stem and after each down block, from ``resolution`` down to 4 px.

    >>> discriminator_channels(32, 1)
    [1, 2, 4, 16]
    """
    n_down = int(math.log2(resolution // 4))  # halvings from resolution to 4 px
    return [ndf * m for m in D_MULTIPLIERS[:n_down] + D_MULTIPLIERS[-1:]]


def check_generator_inputs(config: SSAGANConfig, z: Tensor, sentence: Tensor) -> None:
    """Raise ``ValueError`` unless ``z`` is ``(B, nz)`` and ``sentence`` ``(B, sentence_dim)``."""
    if z.ndim != 2 or z.shape[1] != config.nz:
        raise ValueError(f"z must have shape (B, {config.nz}), got {tuple(z.shape)}")
    if sentence.ndim != 2 or sentence.shape[1] != config.sentence_dim:
        raise ValueError(f"sentence must have shape (B, {config.sentence_dim}), "
                         f"got {tuple(sentence.shape)}")
    if z.shape[0] != sentence.shape[0]:
        raise ValueError(f"z and sentence disagree on the batch size: "
                         f"{z.shape[0]} vs {sentence.shape[0]}")


def check_discriminator_images(config: SSAGANConfig, images: Tensor) -> None:
    """Raise ``ValueError`` unless ``images`` is ``(B, 3, R, R)`` with ``R = resolution``."""
    r = config.resolution
    if images.ndim != 4 or images.shape[1:] != (3, r, r):
        raise ValueError(f"images must have shape (B, 3, {r}, {r}), got {tuple(images.shape)}")


def check_head_inputs(config: SSAGANConfig, features: Tensor, sentence: Tensor) -> None:
    """Raise ``ValueError`` unless ``features`` is ``(B, 16 ndf, 4, 4)`` and ``sentence``
    ``(B, sentence_dim)``."""
    c, d = 16 * config.ndf, config.sentence_dim
    if features.ndim != 4 or features.shape[1:] != (c, 4, 4):
        raise ValueError(f"features must have shape (B, {c}, 4, 4), "
                         f"got {tuple(features.shape)}")
    if sentence.ndim != 2 or sentence.shape[1] != d:
        raise ValueError(f"sentence must have shape (B, {d}), got {tuple(sentence.shape)}")
    if sentence.shape[0] != features.shape[0]:
        raise ValueError(f"features and sentence disagree on the batch size: "
                         f"{features.shape[0]} vs {sentence.shape[0]}")


class Generator(nn.Module):
    r"""SSA-GAN's generator: ``(z (B, nz), sentence (B, D)) -> (images (B, 3, R, R), masks)``.

    ``images`` lie in $[-1, 1]$ (tanh). ``masks`` is a list with one ``(B, 1, r, r)`` tensor
    in $[0, 1]$ per SSACN block, ``r = 4, 8, ..., R``: the sigmoid masks the blocks used.
    With ``config.block == "df"`` the blocks are DF-GAN v1's and ``masks`` is ``[]``.
    """

    def __init__(self, config: SSAGANConfig):
        super().__init__()
        self.config = config
        channels = generator_channels(config.resolution, config.ngf)
        top = channels[0][0]  # 8 * ngf channels at 4x4
        self.fc = nn.Linear(config.nz, top * 4 * 4)
        if config.block == "ssacn":
            self.mask_predictor = MaskPredictor(top)  # mask of the first block, from fc features
            self.blocks = nn.ModuleList(
                SSACNBlock(c_in, c_out, config.sentence_dim, predict_mask=i < len(channels) - 1)
                for i, (c_in, c_out) in enumerate(channels))
            self.to_rgb = nn.Sequential(nn.BatchNorm2d(config.ngf), nn.LeakyReLU(0.2),
                                        nn.Conv2d(config.ngf, 3, 3, padding=1), nn.Tanh())
        else:
            self.mask_predictor = None
            self.blocks = nn.ModuleList(DFBlock(c_in, c_out, config.sentence_dim)
                                        for c_in, c_out in channels)
            self.to_rgb = nn.Sequential(nn.LeakyReLU(0.2),
                                        nn.Conv2d(config.ngf, 3, 3, padding=1), nn.Tanh())

    def forward(self, z: Tensor, sentence: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``(B, nz), (B, D) -> ((B, 3, R, R), [(B, 1, 4, 4), (B, 1, 8, 8), ..., (B, 1, R, R)])``.

        The mask list is empty for the DF-GAN variant.
        """
        check_generator_inputs(self.config, z, sentence)
        x = self.fc(z).view(z.shape[0], -1, 4, 4)  # (B, nz) -> (B, 8 ngf, 4, 4)
        logits = self.mask_predictor(x) if self.mask_predictor is not None else None
        masks: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")  # (B, C, r, r) -> 2r x 2r
            if logits is None:  # DF-GAN block
                x = block(x, sentence)
                continue
            if i > 0:
                logits = F.interpolate(logits, scale_factor=2, mode="bilinear", align_corners=True)
            mask = torch.sigmoid(logits)  # (B, 1, r, r)
            masks.append(mask)
            x, logits = block(x, sentence, mask)
        return self.to_rgb(x), masks


class DownBlock(nn.Module):
    """The discriminator's residual down block (``resD`` in the official code).

    ``(B, in_ch, H, W) -> (B, out_ch, H/2, W/2)``: ``avgpool2(shortcut(x)) + gate * residual(x)``
    with residual conv4x4 stride 2 -> LReLU(0.2) -> conv3x3 -> LReLU(0.2) (no biases),
    shortcut a 1x1 conv (with bias) only when ``in_ch != out_ch``, and ``gate`` a scalar
    that starts at 0.
    """

    def __init__(self, in_ch: int, out_ch: int):
        super().__init__()
        self.residual = nn.Sequential(
            nn.Conv2d(in_ch, out_ch, 4, stride=2, padding=1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
            nn.LeakyReLU(0.2),
        )
        self.shortcut = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        self.gate = nn.Parameter(torch.zeros(1))  # `gamma` in the official code

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_ch, H, W) -> (B, out_ch, H/2, W/2)``."""
        return F.avg_pool2d(self.shortcut(x), 2) + self.gate * self.residual(x)


class Discriminator(nn.Module):
    """SSA-GAN's conditional discriminator: ``(images (B, 3, R, R), sentence (B, D)) -> (B,)``.

    Split in two for the training loop: ``features(images) -> (B, 16 ndf, 4, 4)`` and
    ``logits(features, sentence) -> (B,)``; ``forward`` chains them.
    """

    def __init__(self, config: SSAGANConfig):
        super().__init__()
        self.config = config
        channels = discriminator_channels(config.resolution, config.ndf)
        self.stem = nn.Conv2d(3, channels[0], 3, padding=1)
        self.blocks = nn.Sequential(*(DownBlock(c_in, c_out)
                                      for c_in, c_out in zip(channels[:-1], channels[1:])))
        self.head = nn.Sequential(
            nn.Conv2d(channels[-1] + config.sentence_dim, 2 * config.ndf, 3, padding=1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * config.ndf, 1, 4, bias=False),
        )

    def features(self, images: Tensor) -> Tensor:
        """The image trunk: ``(B, 3, R, R) -> (B, 16 ndf, 4, 4)``."""
        check_discriminator_images(self.config, images)
        return self.blocks(self.stem(images))

    def logits(self, features: Tensor, sentence: Tensor) -> Tensor:
        """The conditional head: ``(B, 16 ndf, 4, 4), (B, D) -> (B,)``."""
        check_head_inputs(self.config, features, sentence)
        # BEGIN EXERCISE 05:nb05_discriminator_head
        tiled = sentence[:, :, None, None].expand(-1, -1, 4, 4)  # (B, D) -> (B, D, 4, 4)
        joint = torch.cat([features, tiled], dim=1)  # (B, 16 ndf + D, 4, 4)
        return self.head(joint).view(-1)  # (B, 1, 1, 1) -> (B,)
        # END EXERCISE

    def forward(self, images: Tensor, sentence: Tensor) -> Tensor:
        """``(B, 3, R, R), (B, D) -> (B,)``."""
        return self.logits(self.features(images), sentence)
