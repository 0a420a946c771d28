r"""DAMSM image encoders: local region features and one global code per image (AttnGAN, §3.3).

The Deep Attentional Multimodal Similarity Model (DAMSM) scores how well a caption matches
an image. Its image side maps an image to

* region features :math:`v \in \mathbb{R}^{D \times h \times w}`, one :math:`D`-vector per
  image region, which words attend to (``(B, D, h, w)``), and
* a global code :math:`\bar v \in \mathbb{R}^{D}`, compared with the sentence vector
  (``(B, D)``),

with :math:`D = 256` so both live in the text encoder's space.

Two encoders share this interface (``forward(images) -> (regions, global_code)``, images
``(B, 3, H, W)`` in ``[-1, 1]``):

:class:`InceptionEncoder`
    AttnGAN's ``CNN_ENCODER``, used unchanged by SSA-GAN: a frozen ImageNet Inception-v3
    trunk. The input is bilinearly resized to 299 x 299 and kept in ``[-1, 1]`` (no ImageNet
    mean/std: that is how DAMSM was trained). ``Mixed_6e`` (768 x 17 x 17) goes through a
    1x1 conv without bias to give :math:`v` (256 x 17 x 17); ``Mixed_7c`` (2048 x 8 x 8) is
    averaged over space and goes through a linear layer to give :math:`\bar v`. Only these
    two projections train.
:class:`SmallCNNEncoder`
    A small CNN trained from scratch for 64 px ToyBirds on a CPU: four stride-2 stages; the
    third (H/8) gives the regions, the fourth (H/16), averaged, the global code.

Weights are never downloaded here. ImageNet weights for the Inception trunk come from
torchvision's cache folder or from a file path (see :func:`find_inception_weights`);
AttnGAN's released ``image_encoder200.pth`` loads after
:func:`convert_attngan_image_state_dict`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from t2ilib.io import MissingWeightsError, load_torch

__all__ = [
    "check_images",
    "SmallCNNConfig",
    "SmallCNNEncoder",
    "InceptionEncoderConfig",
    "InceptionEncoder",
    "MissingWeightsError",
    "find_inception_weights",
    "inception_weights_path",
    "INCEPTION_IMAGENET_FILE",
    "INCEPTION_IMAGENET_URL",
    "convert_inception_state_dict",
    "convert_attngan_image_state_dict",
    "load_state_dict_allow_missing_bn_counters",
]


def check_images(images: torch.Tensor, multiple: int = 1) -> None:
    """Refuse anything but ``(B, 3, H, W)`` images with ``H`` and ``W`` divisible by
    ``multiple`` (``ValueError``)."""
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if images.shape[-2] % multiple or images.shape[-1] % multiple:
        raise ValueError(f"this encoder needs H and W divisible by {multiple}, "
                         f"got {tuple(images.shape[-2:])}")


# --- A small CNN for ToyBirds ----------------------------------------------------------------


@dataclass(frozen=True)
class SmallCNNConfig:
    """Sizes of :class:`SmallCNNEncoder`."""

    embed_dim: int = 256  # D, the shared text-image feature size
    width: int = 32  # channels of the first stage; doubled at every stage


def conv_stage(c_in: int, c_out: int) -> nn.Sequential:
    """Halve the resolution: ``(B, c_in, H, W) -> (B, c_out, H/2, W/2)``.

    Conv3x3 stride 2 -> BN -> LeakyReLU(0.2) -> Conv3x3 -> BN -> LeakyReLU(0.2).
    """
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(c_out, c_out, 3, stride=1, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(0.2, inplace=True),
    )


class SmallCNNEncoder(nn.Module):
    """DAMSM image encoder for small images, trained from scratch.

    ``(B, 3, H, W)`` in ``[-1, 1]`` (H, W multiples of 16) -> regions ``(B, D, H/8, W/8)``,
    global code ``(B, D)``. At 64 px: 8 x 8 = 64 regions, the role of Inception's 17 x 17.
    """

    def __init__(self, config: SmallCNNConfig = SmallCNNConfig()):
        super().__init__()
        self.config = config
        w = config.width
        self.to_regions = nn.Sequential(
            conv_stage(3, w), conv_stage(w, 2 * w), conv_stage(2 * w, 4 * w)
        )
        self.to_global = conv_stage(4 * w, 8 * w)
        self.region_proj = nn.Conv2d(4 * w, config.embed_dim, 1, bias=False)
        self.global_proj = nn.Linear(8 * w, config.embed_dim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` -> regions ``(B, D, H/8, W/8)``, global code ``(B, D)``."""
        check_images(images, multiple=16)
        x = self.to_regions(images)  # (B, 4w, H/8, W/8)
        regions = self.region_proj(x)  # (B, D, H/8, W/8)
        g = self.to_global(x).mean(dim=(2, 3))  # (B, 8w, H/16, W/16) -> (B, 8w)
        return regions, self.global_proj(g)


# --- AttnGAN's Inception-v3 encoder ---------------------------------------------------------

#: torchvision's ImageNet Inception-v3 weights (``Inception_V3_Weights.IMAGENET1K_V1``).
INCEPTION_IMAGENET_FILE = "inception_v3_google-0cc3c7bd.pth"
INCEPTION_IMAGENET_URL = "https://download.pytorch.org/models/" + INCEPTION_IMAGENET_FILE

# Inception-v3 blocks up to Mixed_6e (17 x 17 at 299 px) and from Mixed_7a (8 x 8).
_REGION_BLOCKS = (
    "Conv2d_1a_3x3",
    "Conv2d_2a_3x3",
    "Conv2d_2b_3x3",
    "maxpool1",
    "Conv2d_3b_1x1",
    "Conv2d_4a_3x3",
    "maxpool2",
    "Mixed_5b",
    "Mixed_5c",
    "Mixed_5d",
    "Mixed_6a",
    "Mixed_6b",
    "Mixed_6c",
    "Mixed_6d",
    "Mixed_6e",
)
_GLOBAL_BLOCKS = ("Mixed_7a", "Mixed_7b", "Mixed_7c")


@dataclass(frozen=True)
class InceptionEncoderConfig:
    """Sizes of :class:`InceptionEncoder` (defaults: AttnGAN / SSA-GAN)."""

    embed_dim: int = 256  # D
    image_size: int = 299  # inputs are bilinearly resized to image_size x image_size


def inception_weights_path() -> Path:
    """Where :func:`find_inception_weights` looks by default: torchvision's cache file
    ``<torch hub dir>/checkpoints/inception_v3_google-0cc3c7bd.pth`` (it may not exist)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_IMAGENET_FILE


def find_inception_weights(weights_path: str | os.PathLike[str] | None = None) -> Path:
    """Locate the ImageNet Inception-v3 weights without touching the network.

    ``weights_path`` if given, else ``<torch hub dir>/checkpoints/inception_v3_google-0cc3c7bd.pth``
    (torchvision's cache; ``$TORCH_HOME`` moves it). Raises :class:`MissingWeightsError`
    saying which file to put where.
    """
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise MissingWeightsError(f"Inception-v3 weights file not found: {path}")
        return path
    path = inception_weights_path()
    cache_dir = path.parent
    if path.is_file():
        return path
    raise MissingWeightsError(
        f"ImageNet weights for Inception-v3 are not on this machine, and t2ilib never downloads.\n"
        f"  Put {INCEPTION_IMAGENET_FILE} (from {INCEPTION_IMAGENET_URL})\n"
        f"  into {cache_dir}/ (torchvision's cache; set $TORCH_HOME to move it),\n"
        f"  or pass weights_path='/path/to/{INCEPTION_IMAGENET_FILE}'.\n"
        f"  For random weights instead (e.g. before loading AttnGAN's image_encoder200.pth,\n"
        f"  which holds the trunk too), use InceptionEncoder(pretrained=False).\n"
        f"  On the command line: --damsm FILE (e.g. AttnGAN's DAMSM, python -m t2ilib "
        f"convert-damsm) or --image-encoder small_cnn."
    )


def load_state_dict_allow_missing_bn_counters(
    module: nn.Module, state_dict: dict[str, torch.Tensor]
) -> None:
    """``module.load_state_dict(state_dict)``, strict except for BN's ``num_batches_tracked``.

    Checkpoints saved before PyTorch 0.4.1 (AttnGAN's, torchvision's Inception) lack that
    counter; it is unused in eval mode and with a momentum. Raises ``ValueError`` listing any
    other missing or unexpected key.
    """
    missing, unexpected = module.load_state_dict(state_dict, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(
            f"state dict does not fit {type(module).__name__}: "
            f"missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )


def _trunk_key(key: str) -> str | None:
    """``Mixed_6e.branch1x1.conv.weight`` -> ``to_regions.Mixed_6e.branch1x1.conv.weight``."""
    block = key.split(".", 1)[0]
    if block in _REGION_BLOCKS:
        return "to_regions." + key
    if block in _GLOBAL_BLOCKS:
        return "to_global." + key
    return None


def convert_inception_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """torchvision's ImageNet Inception-v3 state dict -> :class:`InceptionEncoder`'s trunk part.

    The classifier (``fc.*``) and the auxiliary head (``AuxLogits.*``) are dropped; any other
    unknown key raises ``ValueError``.
    """
    out = {}
    for key, value in state_dict.items():
        ours = _trunk_key(key)
        if ours is not None:
            out[ours] = value
        elif not key.startswith(("fc.", "AuxLogits.")):
            raise ValueError(f"unexpected key {key!r} in an Inception-v3 state dict")
    return out


def convert_attngan_image_state_dict(
    state_dict: dict[str, torch.Tensor],
) -> dict[str, torch.Tensor]:
    """AttnGAN ``CNN_ENCODER`` state dict (``image_encoder200.pth``) -> :class:`InceptionEncoder`'s.

    AttnGAN keeps the trunk blocks under their torchvision names and calls the two
    projections ``emb_features`` (regions) and ``emb_cnn_code`` (global).
    """
    out = {}
    for key, value in state_dict.items():
        if key.startswith("emb_features."):
            out["region_proj." + key[len("emb_features.") :]] = value
        elif key.startswith("emb_cnn_code."):
            out["global_proj." + key[len("emb_cnn_code.") :]] = value
        elif (ours := _trunk_key(key)) is not None:
            out[ours] = value
        else:
            raise ValueError(f"unexpected key {key!r} in an AttnGAN image-encoder state dict")
    return out


class InceptionEncoder(nn.Module):
    """AttnGAN's DAMSM image encoder: frozen Inception-v3 trunk + two trainable projections.

    ``(B, 3, H, W)`` in ``[-1, 1]`` -> regions ``(B, D, 17, 17)``, global code ``(B, D)``
    (at the default 299 px working size).

    ``pretrained=True`` loads ImageNet weights into the trunk from ``weights_path`` or
    torchvision's cache, and raises :class:`MissingWeightsError` when neither has them;
    ``pretrained=False`` keeps random weights (tests, or before loading a full DAMSM
    checkpoint). The trunk's parameters never require gradients and its BatchNorm layers
    stay in eval mode even under ``.train()`` (AttnGAN let their running statistics drift
    during DAMSM pretraining; we keep ImageNet's).
    """

    def __init__(
        self,
        config: InceptionEncoderConfig = InceptionEncoderConfig(),
        pretrained: bool = True,
        weights_path: str | os.PathLike[str] | None = None,
    ):
        super().__init__()
        from torchvision.models import inception_v3

        self.config = config
        path = find_inception_weights(weights_path) if pretrained else None  # fail before building
        net = inception_v3(weights=None, aux_logits=False, init_weights=False)
        self.to_regions = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in _REGION_BLOCKS))
        self.to_global = nn.Sequential(OrderedDict((n, getattr(net, n)) for n in _GLOBAL_BLOCKS))
        self.region_proj = nn.Conv2d(768, config.embed_dim, 1, bias=False)  # AttnGAN's emb_features
        self.global_proj = nn.Linear(2048, config.embed_dim)  # AttnGAN's emb_cnn_code
        nn.init.uniform_(self.region_proj.weight, -0.1, 0.1)  # AttnGAN's init_trainable_weights
        nn.init.uniform_(self.global_proj.weight, -0.1, 0.1)
        if path is not None:
            trunk = convert_inception_state_dict(load_torch(path))
            trunk.update(
                {
                    f"{name}.{k}": v
                    for name in ("region_proj", "global_proj")
                    for k, v in getattr(self, name).state_dict().items()
                }
            )
            load_state_dict_allow_missing_bn_counters(self, trunk)
        for p in [*self.to_regions.parameters(), *self.to_global.parameters()]:
            p.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> InceptionEncoder:
        """Set the projections' mode; the frozen trunk always stays in eval mode."""
        super().train(mode)
        self.to_regions.eval()
        self.to_global.eval()
        return self

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(B, 3, H, W)`` in ``[-1, 1]`` -> regions ``(B, D, 17, 17)``, global ``(B, D)``."""
        check_images(images)
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        x = self.to_regions(images)  # (B, 768, 17, 17)
        regions = self.region_proj(x)  # (B, D, 17, 17)
        g = self.to_global(x).mean(dim=(2, 3))  # (B, 2048, 8, 8) -> (B, 2048)
        return regions, self.global_proj(g)
