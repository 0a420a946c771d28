r"""SISGAN's generator and discriminator (Dong et al., ICCV 2017, *Semantic Image Synthesis via
Adversarial Learning*), rebuilt after the reference
re-implementation ``woozzu/dong_iccv_2017`` (``model.py``).

The task is **text-guided manipulation**: given an image $x$ and a sentence embedding
$\varphi(t)$ of a caption $t$, produce $G(x, \varphi(t))$ that looks real, matches $t$ and
keeps what $t$ does not talk about (pose, position, background).

**Generator** (64 px in, 64 px out; ``ngf = 128`` is the paper's width)::

    x (B, 3, S, S)
      -> image encoder           -> (B, 4 ngf, S/4, S/4)   plain: conv3x3, conv4x4/2, conv4x4/2
                                                         (vgg: frozen VGG-16-BN to conv4_3, 512)
    phi (B, D) -> conditioning augmentation -> c (B, C)
      -> tile c to S/4 x S/4, concatenate       (B, 4 ngf + C, S/4, S/4)
      -> conv3x3 + BN, then 4 residual blocks   (B, 4 ngf, S/4, S/4)
      -> decoder: [up x2, conv3x3, BN, ReLU] x 2, conv3x3, tanh -> (B, 3, S, S) in [-1, 1]

Conditioning augmentation (StackGAN's; SISGAN's "text embedding augmentation"):

$$\mu = \mathrm{LReLU}_{0.2}(W_\mu \varphi),\quad
\log\sigma = \mathrm{LReLU}_{0.2}(W_\sigma\varphi),\quad
c = \mu + \sigma \odot \epsilon,\ \epsilon \sim \mathcal N(0, I_C),$$

with the KL term $\mathrm{KL} = \mathrm{mean}\big(-\log\sigma + \tfrac12(\sigma^2 + \mu^2 - 1)\big)$
(:func:`kl_loss`). A residual block is
$\mathrm{ReLU}(h + \mathrm{BN}\,\mathrm{conv}\,\mathrm{ReLU}\,\mathrm{BN}\,\mathrm{conv}\,h)$.

**Discriminator** (matching-aware, GAN-CLS style): stride-2 4x4 convs
$3 \to n_{df} \to 2n_{df} \to 4n_{df} \to 8n_{df}$ down to $4\times4$ (BN except on the first,
LReLU 0.2 except after the last), a residual branch on the $8n_{df}\times4\times4$ features
(1x1 to $2n_{df}$, 3x3, 3x3 back to $8n_{df}$), added and passed through LReLU; the sentence
compressed by a linear layer (+ LReLU) to 128, tiled to $4\times4$ and concatenated; then a
1x1 conv (+ BN + LReLU) and a valid 4x4 conv give **one logit** per image.

Deviations from the reference code, on purpose: every width is a config field (``ngf``,
``ndf``; the CPU course runs use small ones); ``skip=True`` adds TAGAN's encoder-to-decoder
skip (decoder input = encoder features + residual output; off in SISGAN); the logit is
reshaped with ``view(-1)``, not ``squeeze()``, so batch size 1 works; the image size may be
any multiple of 4 with $S/4 \ge 4$ (D adds one stride-2 conv per octave above 64 px).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.damsm.image_encoder import MissingWeightsError

__all__ = ["ENCODERS", "SISGANConfig", "ConditioningAugmentation", "kl_loss", "standard_normal",
           "ResidualBlock", "PlainEncoder", "VGGEncoder", "find_vgg16_bn_weights",
           "vgg16_bn_weights_path", "Generator", "Discriminator", "init_weights",
           "check_image_batch", "check_sentences"]

ENCODERS = ("plain", "vgg")  # the generator's image encoder
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SISGANConfig:
    """Sizes of SISGAN's G and D (defaults: the paper's 64 px model with DAMSM's 256-d text)."""

    image_size: int = 64  # side S of input and output images (multiple of 4, >= 16)
    sentence_dim: int = 256  # size of phi(t): the DAMSM sentence vector
    condition_dim: int = 128  # size of the conditioning-augmentation code c
    ngf: int = 128  # G width: encoder channels ngf, 2 ngf, 4 ngf (paper: 128 -> 512 at S/4)
    ndf: int = 64  # D width: channels ndf, 2 ndf, 4 ndf, 8 ndf (paper: 64 -> 512 at 4x4)
    n_residual: int = 4  # residual blocks between encoder and decoder
    d_text_dim: int = 128  # D's compressed sentence
    encoder: str = "plain"  # "plain" (trained) or "vgg" (frozen VGG-16-BN trunk)
    skip: bool = False  # TAGAN's skip: the decoder gets encoder features + residual output

    def __post_init__(self) -> None:
        if self.image_size % 4 or self.image_size < 16:
            raise ValueError(f"image_size must be a multiple of 4 and >= 16, got {self.image_size}")
        if math.log2(self.image_size / 4) % 1:
            raise ValueError(f"image_size / 4 must be a power of two (D halves down to 4x4), "
                             f"got {self.image_size}")
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        for name in ("sentence_dim", "condition_dim", "ngf", "ndf", "d_text_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.n_residual < 0:
            raise ValueError(f"n_residual must be >= 0, got {self.n_residual}")


def init_weights(module: nn.Module) -> None:
    """DCGAN init of the reference code: conv/linear weights N(0, 0.02), biases 0, BN gamma
    N(1, 0.02), beta 0. Only modules with trainable weights are touched (frozen VGG is not)."""
    for m in module.modules():
        weight = getattr(m, "weight", None)
        if not isinstance(weight, nn.Parameter) or not weight.requires_grad:
            continue
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def standard_normal(shape: tuple[int, ...], like: Tensor,
                    generator: torch.Generator | None = None) -> Tensor:
    """``N(0, 1)`` noise of ``shape`` with ``like``'s dtype, on ``like``'s device.

    Drawn from ``generator`` (a CPU generator: the draw is made on the CPU and moved, so a seed
    gives the same noise on every device) or from the global RNG of ``like``'s device.
    """
    device = torch.device("cpu") if generator is not None else like.device
    noise = torch.randn(shape, generator=generator, device=device, dtype=like.dtype)
    return noise.to(like.device)


class ConditioningAugmentation(nn.Module):
    r"""StackGAN's conditioning augmentation (SISGAN's "text embedding augmentation").

    ``phi (B, D) -> (c (B, C), mu (B, C), log_sigma (B, C))`` with
    $\mu = \mathrm{LReLU}_{0.2}(W_\mu\varphi)$, $\log\sigma = \mathrm{LReLU}_{0.2}(W_\sigma\varphi)$
    (bias-free linear layers ``self.mu`` and ``self.log_sigma``) and the reparameterised sample
    $c = \mu + \sigma\odot\epsilon$, $\sigma = e^{\log\sigma}$. ``eps (B, C)`` is drawn from
    ``generator`` (or the global RNG) unless given; ``eps = 0`` gives ``c = mu``.
    """

    def __init__(self, sentence_dim: int, condition_dim: int):
        super().__init__()
        self.mu = nn.Linear(sentence_dim, condition_dim, bias=False)
        self.log_sigma = nn.Linear(sentence_dim, condition_dim, bias=False)

    def forward(self, phi: Tensor, eps: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        if eps is None:
            eps = standard_normal((phi.shape[0], self.mu.out_features), phi, generator)  # (B, C)
        # BEGIN EXERCISE 09:nb09_conditioning_augmentation
        mu = F.leaky_relu(self.mu(phi), 0.2)  # (B, C)
        log_sigma = F.leaky_relu(self.log_sigma(phi), 0.2)  # (B, C)
        return mu + log_sigma.exp() * eps, mu, log_sigma
        # END EXERCISE


def kl_loss(mu: Tensor, log_sigma: Tensor) -> Tensor:
    r"""$\operatorname{mean}\big(-\log\sigma + \tfrac12(\sigma^2 + \mu^2 - 1)\big)$: the KL
    divergence $\mathrm{KL}(\mathcal N(\mu, \sigma^2)\,\|\,\mathcal N(0, 1))$ of each code
    dimension, averaged over all elements of the ``(B, C)`` codes -> ``()``.
    """
    # BEGIN EXERCISE 09:nb09_conditioning_augmentation
    return (-log_sigma + 0.5 * (torch.exp(2 * log_sigma) + mu.square() - 1)).mean()
    # END EXERCISE


def check_image_batch(x: Tensor, size: int) -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, 3, size, size)`` batch."""
    if x.dim() != 4 or x.shape[1:] != (3, size, size):
        raise ValueError(f"images must be (B, 3, {size}, {size}), got {tuple(x.shape)}")


def check_sentences(phi: Tensor, batch: int, dim: int) -> None:
    """Raise ``ValueError`` unless ``phi`` is a ``(batch, dim)`` batch of sentence vectors."""
    if phi.shape != (batch, dim):
        raise ValueError(f"sentences must be ({batch}, {dim}), got {tuple(phi.shape)}")


class ResidualBlock(nn.Module):
    """``(B, C, H, W) -> (B, C, H, W)``: ``ReLU(h + BN(conv(ReLU(BN(conv(h))))))``, no biases."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, 1, 1, bias=False), nn.BatchNorm2d(channels))

    def forward(self, h: Tensor) -> Tensor:
        return F.relu(h + self.body(h))


class PlainEncoder(nn.Module):
    """``(B, 3, S, S) -> (B, 4 ngf, S/4, S/4)``: conv3x3 + ReLU, two conv4x4/2 + BN + ReLU."""

    def __init__(self, ngf: int):
        super().__init__()
        self.out_channels = 4 * ngf
        self.net = nn.Sequential(
            nn.Conv2d(3, ngf, 3, 1, 1), nn.ReLU(inplace=True),
            nn.Conv2d(ngf, 2 * ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * ngf),
            nn.ReLU(inplace=True),
            nn.Conv2d(2 * ngf, 4 * ngf, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * ngf),
            nn.ReLU(inplace=True))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def vgg16_bn_weights_path() -> Path:
    """Where :func:`find_vgg16_bn_weights` looks by default: torchvision's cache file
    ``<torch hub dir>/checkpoints/vgg16_bn-6c64b313.pth`` (it may not exist)."""
    from torchvision.models import VGG16_BN_Weights

    url = VGG16_BN_Weights.IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def find_vgg16_bn_weights(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """Locate ImageNet VGG-16-BN weights without touching the network.

    ``weights_path`` if given, else torchvision's cache
    ``<torch hub dir>/checkpoints/vgg16_bn-6c64b313.pth``. Raises
    :class:`~t2ilib.damsm.image_encoder.MissingWeightsError` saying which file to put where.
    """
    from torchvision.models import VGG16_BN_Weights

    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"VGG-16-BN weights file not found: {path}")
        return path
    url = VGG16_BN_Weights.IMAGENET1K_V1.url
    path = vgg16_bn_weights_path()
    cache_dir = path.parent
    if path.is_file():
        return path
    raise MissingWeightsError(
        f"ImageNet weights for VGG-16-BN are not on this machine, and t2ilib never downloads.\n"
        f"  Put {path.name} (from {url}) into {cache_dir}/ (torchvision's cache;\n"
        f"  $TORCH_HOME moves it), pass its path, or use the plain encoder (encoder='plain').")


class VGGEncoder(nn.Module):
    """The paper's image encoder: frozen VGG-16-BN from conv1_1 to conv4_3 (+BN+ReLU), with
    pool3 skipped and conv4_x dilated by 2, so ``(B, 3, S, S) -> (B, 512, S/4, S/4)``.

    Inputs in [-1, 1] are mapped to ImageNet normalisation inside. ``pretrained=True`` loads
    torchvision's ImageNet weights from ``weights_path`` or torchvision's cache (see
    :func:`find_vgg16_bn_weights`); ``pretrained=False`` keeps random weights (shape tests, or
    before loading a SISGAN checkpoint, which holds the trunk). The trunk stays in eval mode
    and never requires gradients.
    """

    out_channels = 512

    def __init__(self, pretrained: bool = True,
                 weights_path: str | os.PathLike[str] | None = None):
        super().__init__()
        from torchvision.models.vgg import cfgs, make_layers

        path = find_vgg16_bn_weights(weights_path) if pretrained else None  # fail before building
        features = make_layers(cfgs["D"], batch_norm=True)  # VGG-16-BN's conv part, no classifier
        if path is not None:
            state = torch.load(path, map_location="cpu", weights_only=True)
            features.load_state_dict({k[len("features."):]: v for k, v in state.items()
                                      if k.startswith("features.")})
        layers = list(features.children())
        trunk = layers[:23] + layers[24:33]  # conv1_1 .. conv3_3 (+ pools 1, 2), conv4_1 .. 4_3
        for layer in layers[24:33]:
            if isinstance(layer, nn.Conv2d):
                layer.dilation, layer.padding = (2, 2), (2, 2)
        self.trunk = nn.Sequential(*trunk)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGEncoder:
        return super().train(False)  # frozen: batch-norm statistics never change

    def forward(self, x: Tensor) -> Tensor:
        return self.trunk(((x + 1) / 2 - self.mean) / self.std)


class Generator(nn.Module):
    """SISGAN's G: ``(x (B, 3, S, S), phi (B, D)) -> (image (B, 3, S, S), mu, log_sigma)``.

    ``mu`` and ``log_sigma`` ``(B, C)`` are the conditioning augmentation's, for the KL term.
    ``eps (B, C)`` fixes the augmentation noise (default: drawn from ``generator`` or the
    global RNG). ``pretrained`` and ``vgg_weights`` matter only with ``encoder == "vgg"``
    (see :class:`VGGEncoder`).
    """

    def __init__(self, config: SISGANConfig = SISGANConfig(), pretrained: bool = True,
                 vgg_weights: str | os.PathLike[str] | None = None):
        super().__init__()
        self.config = config
        ngf = config.ngf
        self.encoder = (VGGEncoder(pretrained, vgg_weights) if config.encoder == "vgg"
                        else PlainEncoder(ngf))
        self.ca = ConditioningAugmentation(config.sentence_dim, config.condition_dim)
        self.fuse = nn.Sequential(
            nn.Conv2d(self.encoder.out_channels + config.condition_dim, 4 * ngf, 3, 1, 1,
                      bias=False),
            nn.BatchNorm2d(4 * ngf))
        self.residual = nn.Sequential(*[ResidualBlock(4 * ngf) for _ in range(config.n_residual)])
        if config.skip and self.encoder.out_channels != 4 * ngf:
            raise ValueError(f"skip needs encoder channels ({self.encoder.out_channels}) == "
                             f"4 ngf ({4 * ngf})")
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(4 * ngf, 2 * ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * ngf),
            nn.ReLU(inplace=True),
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(2 * ngf, ngf, 3, 1, 1, bias=False), nn.BatchNorm2d(ngf),
            nn.ReLU(inplace=True),
            nn.Conv2d(ngf, 3, 3, 1, 1), nn.Tanh())
        init_weights(self)

    def forward(self, x: Tensor, phi: Tensor, eps: Tensor | None = None,
                generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
        check_image_batch(x, self.config.image_size)
        check_sentences(phi, x.shape[0], self.config.sentence_dim)
        features = self.encoder(x)  # (B, E, S/4, S/4)
        c, mu, log_sigma = self.ca(phi, eps, generator)  # (B, C) each
        tiled = c[:, :, None, None].expand(-1, -1, *features.shape[-2:])  # (B, C, S/4, S/4)
        h = self.fuse(torch.cat([features, tiled], 1))  # (B, 4 ngf, S/4, S/4)
        h = self.residual(h)  # (B, 4 ngf, S/4, S/4)
        if self.config.skip:
            h = h + features
        return self.decoder(h), mu, log_sigma  # (B, 3, S, S) in [-1, 1]


class Discriminator(nn.Module):
    """SISGAN's matching-aware D: ``(x (B, 3, S, S), phi (B, D)) -> logits (B,)``.

    ``features(x)`` ``(B, 8 ndf, 4, 4)`` and ``logits(features, phi)`` are exposed so a
    training step encodes each real batch once for its matching and mismatching pairs.
    """

    def __init__(self, config: SISGANConfig = SISGANConfig()):
        super().__init__()
        self.config = config
        ndf = config.ndf
        n_down = int(math.log2(config.image_size // 4))  # 4 at 64 px
        widths = [min(ndf * 2 ** i, 8 * ndf) for i in range(n_down - 1)] + [8 * ndf]
        layers: list[nn.Module] = []
        c_in = 3
        for i, c_out in enumerate(widths):
            layers.append(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(c_out))
            if i < len(widths) - 1:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            c_in = c_out
        self.trunk = nn.Sequential(*layers)  # (B, 8 ndf, 4, 4), no activation at the end
        self.residual = nn.Sequential(
            nn.Conv2d(8 * ndf, 2 * ndf, 1, 1, 0, bias=False), nn.BatchNorm2d(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 2 * ndf, 3, 1, 1, bias=False), nn.BatchNorm2d(2 * ndf),
            nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(2 * ndf, 8 * ndf, 3, 1, 1, bias=False), nn.BatchNorm2d(8 * ndf))
        self.text = nn.Linear(config.sentence_dim, config.d_text_dim)
        self.head = nn.Sequential(
            nn.Conv2d(8 * ndf + config.d_text_dim, 8 * ndf, 1, 1, 0, bias=False),
            nn.BatchNorm2d(8 * ndf), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(8 * ndf, 1, 4, 1, 0))
        init_weights(self)

    def features(self, x: Tensor) -> Tensor:
        """``(B, 3, S, S) -> (B, 8 ndf, 4, 4)``: the trunk plus its residual branch."""
        check_image_batch(x, self.config.image_size)
        h = self.trunk(x)
        return F.leaky_relu(h + self.residual(h), 0.2)

    def logits(self, features: Tensor, phi: Tensor) -> Tensor:
        """``(B, 8 ndf, 4, 4)`` features and ``(B, D)`` sentences -> ``(B,)`` logits."""
        t = F.leaky_relu(self.text(phi), 0.2)  # (B, 128)
        tiled = t[:, :, None, None].expand(-1, -1, *features.shape[-2:])  # (B, 128, 4, 4)
        return self.head(torch.cat([features, tiled], 1)).view(-1)  # (B,)

    def forward(self, x: Tensor, phi: Tensor) -> Tensor:
        return self.logits(self.features(x), phi)
