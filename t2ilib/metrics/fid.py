r"""Fréchet Inception Distance (FID), streamed over batches, through torchmetrics.

FID (Heusel et al., 2017) fits a Gaussian to the features of real images,
:math:`\mathcal N(\mu_r, \Sigma_r)`, and one to the features of generated images,
:math:`\mathcal N(\mu_g, \Sigma_g)`, and reports the Fréchet distance between them:

.. math:: \mathrm{FID} = \lVert \mu_r - \mu_g \rVert^2
          + \operatorname{tr}\big(\Sigma_r + \Sigma_g - 2 (\Sigma_r \Sigma_g)^{1/2}\big).

"The" FID of every paper since then uses the 2048-d pool3 features of one network: the
TensorFlow Inception graph ``inception-2015-12-05``, ported to PyTorch as
``pt_inception-2015-12-05-6726825d.pth`` (95,628,359 bytes, SHA-256 ``6726825d...9129b2``;
``pytorch-fid``'s ``FID_WEIGHTS_URL``). torchvision's ImageNet Inception-v3 is a
*different* network: numbers made with it (DM-GAN's and DF-GAN's "FID") are not comparable
with TF-FID numbers (AttnGAN on CUB: 23.98 vs 14.01; ``ssagan.md`` §5.2).

**Why torchmetrics.** Its ``FrechetInceptionDistance`` (1) accumulates the running sums
:math:`\sum x` and :math:`\sum x x^\top` in float64, so 30,000 samples need memory for a
2048 x 2048 matrix, not for the images or their features; (2) uses torch-fidelity's port of
the TF graph, including TF1's bilinear resize to 299 px (``antialias=False``), which agrees
with the TensorFlow reference "epsilon-exactly"; (3) takes any ``nn.Module`` as the feature
extractor, which is how the tests run it on a tiny random network and how a FID on other
features (the ToyBirds oracle's) can run; and (4) syncs its state under DDP. pytorch-fid has
no local-path argument and computes on whole feature arrays; clean-fid hard-codes a download
location; torch-fidelity alone works on files, not on a stream of generated batches.

**Weights, offline.** Nothing is ever downloaded here. The file is looked up (in this order)
at the ``weights`` argument, ``$T2I_FID_WEIGHTS``, the torch hub cache under either of the
two names it is published with, and ``checkpoint_root()``; its size and SHA-256 are checked
before torch-fidelity unpickles it (it loads with ``weights_only=False``, so only the known
bytes are handed to it). Missing, it raises :class:`MissingWeightsError`, whose message
names the file, the URL and the folder to put it in.

**Inputs.** Batches of uint8 images ``(B, 3, H, W)`` in ``[0, 255]`` or float images in
``[-1, 1]`` (generator outputs), which are quantised to uint8 by *rounding*, exactly like
saving them as PNG would (never by truncation, never through JPEG).

Sample counts matter: FID is biased upwards for small N, and with fewer samples than feature
dimensions the covariance is rank-deficient. Compare FIDs only at equal N, equal reference set,
equal network and equal resize (:class:`FIDResult` records all four).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.io import MissingWeightsError, file_sha256
from t2ilib.runtime import checkpoint_root

__all__ = [
    "FID_WEIGHTS_FILE", "FID_WEIGHTS_URL", "FID_WEIGHTS_SHA256", "FID_WEIGHTS_BYTES",
    "FIDELITY_WEIGHTS_FILE", "WEIGHTS_ENV", "MissingWeightsError", "as_uint8",
    "fid_weights_candidates", "find_fid_weights", "verify_fid_weights", "load_fid_inception",
    "FIDResult", "StreamingFID", "frechet_inception_distance",
]

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = ("https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/"
                   + FID_WEIGHTS_FILE)
FID_WEIGHTS_SHA256 = "6726825d0af5f729cebd5821db510b11b1cfad8faad88a03f1befd49fb9129b2"
FID_WEIGHTS_BYTES = 95_628_359
#: torch-fidelity publishes the same bytes under this name.
FIDELITY_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
#: Environment variable naming the weights file.
WEIGHTS_ENV = "T2I_FID_WEIGHTS"


def as_uint8(images: Tensor) -> Tensor:
    """uint8 ``(B, 3, H, W)`` unchanged; float in ``[-1, 1]`` -> uint8 by rounding (same device)."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W), got {tuple(images.shape)}")
    if images.dtype == torch.uint8:
        return images
    if not images.is_floating_point():
        raise ValueError(f"images must be uint8 or float in [-1, 1], got {images.dtype}")
    return ((images.detach().float() + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8)


# ------------------------------------------------------------------------------ weights

def fid_weights_candidates(weights: str | os.PathLike[str] | None = None) -> list[Path]:
    """Where the weights file is looked for, in order (see the module docstring)."""
    if weights is not None:
        return [Path(weights).expanduser()]
    found = []
    if os.environ.get(WEIGHTS_ENV):
        found.append(Path(os.environ[WEIGHTS_ENV]).expanduser())
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    found += [hub / FID_WEIGHTS_FILE, hub / FIDELITY_WEIGHTS_FILE,
              checkpoint_root() / FID_WEIGHTS_FILE]
    return found


def find_fid_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The first existing candidate; else :class:`MissingWeightsError` saying what to fetch."""
    candidates = fid_weights_candidates(weights)
    for path in candidates:
        if path.is_file():
            return path
    target = candidates[0] if weights is not None else Path(torch.hub.get_dir()) / "checkpoints"
    raise MissingWeightsError(
        f"the FID Inception weights {FID_WEIGHTS_FILE} are not on this machine (looked at: "
        f"{', '.join(str(p) for p in candidates)}). Nothing is downloaded automatically: fetch "
        f"{FID_WEIGHTS_URL} ({FID_WEIGHTS_BYTES:,} bytes, SHA-256 {FID_WEIGHTS_SHA256}) on a "
        f"machine with internet access and put it into {target}, or pass its path "
        f"(--fid-weights / ${WEIGHTS_ENV}).")


def verify_fid_weights(path: str | os.PathLike[str]) -> str:
    """Check the file's size and SHA-256 against the published ones; returns the SHA-256."""
    path = Path(path)
    size = path.stat().st_size
    if size != FID_WEIGHTS_BYTES:
        raise ValueError(f"{path} has {size:,} bytes, not the {FID_WEIGHTS_BYTES:,} of "
                         f"{FID_WEIGHTS_FILE} (truncated or another file); fetch it again from "
                         f"{FID_WEIGHTS_URL}")
    sha = file_sha256(path)
    if sha != FID_WEIGHTS_SHA256:
        raise ValueError(f"{path} has SHA-256 {sha}, not {FID_WEIGHTS_SHA256} of "
                         f"{FID_WEIGHTS_FILE}; refusing to load it")
    return sha


def load_fid_inception(weights: str | os.PathLike[str] | None = None, feature: str = "2048",
                       tf_resize: bool = True, verify: bool = True) -> nn.Module:
    """The FID Inception (torchmetrics' never-training wrapper of torch-fidelity's TF port).

    ``feature``: ``"2048"`` (pool3, FID), ``"64"``/``"192"``/``"768"`` (smaller, not
    comparable FIDs) or ``"logits_unbiased"`` (1008 ImageNet logits, the Inception Score's).
    The module maps uint8 ``(B, 3, H, W)`` -> ``(B, F)``; images are resized to 299 px with
    TF1's bilinear rule (``tf_resize``) or torch's antialiased bilinear.
    ``verify=False`` skips the SHA-256 check (only for test files made on the spot).
    """
    from torchmetrics.image.fid import NoTrainInceptionV3

    path = find_fid_weights(weights)
    if verify:
        verify_fid_weights(path)
    model = NoTrainInceptionV3(name="inception-v3-compat", features_list=[feature],
                               feature_extractor_weights_path=str(path),
                               antialias=not tf_resize)
    model.weights_path = str(path)
    return model


# ---------------------------------------------------------------------------------- FID

@dataclass
class FIDResult:
    """A FID and everything needed to know what it may be compared with."""

    value: float
    n_real: int
    n_fake: int
    feature_dim: int
    extractor: str  # which network gave the features
    weights: str | None = None  # the weights file (None: an injected extractor)
    resize: str = ""  # how images reached the extractor's input size
    note: str = ""  # e.g. fewer samples than feature dimensions

    def __str__(self) -> str:
        resize = f", {self.resize}" if self.resize else ""
        text = (f"FID {self.value:.3f} ({self.n_fake} generated vs {self.n_real} real, "
                f"{self.feature_dim}-d {self.extractor}{resize})")
        return text + (f"\nnote: {self.note}" if self.note else "")


class _Float64Features(nn.Module):
    """Wraps an extractor so the metric sees ``(B, F)`` float64 features and knows ``F``."""

    def __init__(self, extractor: nn.Module, num_features: int):
        super().__init__()
        self.extractor = extractor
        self.num_features = num_features

    def forward(self, images: Tensor) -> Tensor:
        return self.extractor(images).reshape(images.shape[0], -1).double()


def _num_features(extractor: nn.Module, probe_size: int) -> int:
    n = getattr(extractor, "num_features", None)
    if isinstance(n, int):
        return n
    device = next((p.device for p in extractor.parameters()), torch.device("cpu"))
    with torch.no_grad():
        probe = torch.zeros(2, 3, probe_size, probe_size, dtype=torch.uint8, device=device)
        return int(extractor(probe).reshape(2, -1).shape[1])


class StreamingFID:
    """FID accumulated batch by batch (torchmetrics' running float64 sums).

    Args:
        extractor: ``nn.Module`` mapping uint8 ``(B, 3, H, W)`` to ``(B, F)`` features
            (e.g. a tiny random network in tests, or the ToyBirds oracle's features);
            ``None`` loads the FID Inception (:func:`load_fid_inception`).
        weights: the Inception weights file (when ``extractor`` is None).
        device: where features are computed.
        probe_size: image side of the dummy batch that finds an injected extractor's
            feature size when it has no ``num_features`` attribute.
        name: how the result names the extractor.
    """

    def __init__(self, extractor: nn.Module | None = None, *,
                 weights: str | os.PathLike[str] | None = None,
                 device: str | torch.device = "cpu", probe_size: int = 64,
                 name: str | None = None):
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.device = torch.device(device)
        if extractor is None:
            extractor = load_fid_inception(weights)
            self.weights: str | None = extractor.weights_path
            self.name = name or "FID Inception pool3 (TF inception-2015-12-05)"
            self.resize = "TF1 bilinear to 299 px"
        else:
            self.weights = None
            self.name = name or type(extractor).__name__
            self.resize = ""
        extractor = extractor.to(self.device).eval()
        self.feature_dim = _num_features(extractor, probe_size)
        self.metric = FrechetInceptionDistance(
            feature=_Float64Features(extractor, self.feature_dim), normalize=False,
            reset_real_features=True).to(self.device)

    @torch.no_grad()
    def update(self, images: Tensor, real: bool) -> None:
        """Add a batch: uint8 or [-1, 1] float ``(B, 3, H, W)``."""
        self.metric.update(as_uint8(images).to(self.device), real=real)

    def add(self, batches: Iterable[Tensor], real: bool) -> None:
        """Add every batch of an iterable (e.g. a generator of generated batches)."""
        for batch in batches:
            self.update(batch, real)

    @property
    def n_real(self) -> int:
        return int(self.metric.real_features_num_samples)

    @property
    def n_fake(self) -> int:
        return int(self.metric.fake_features_num_samples)

    def compute(self) -> FIDResult:
        """The FID of everything added so far (needs at least 2 images on each side)."""
        if min(self.n_real, self.n_fake) < 2:
            raise ValueError(f"FID needs at least 2 real and 2 generated images, got "
                             f"{self.n_real} and {self.n_fake}")
        note = ""
        if min(self.n_real, self.n_fake) <= self.feature_dim:
            note = (f"fewer samples than the {self.feature_dim} feature dimensions: the "
                    "covariance is rank-deficient and the FID is biased upwards; compare only "
                    "at equal N")
            warnings.warn(f"FID: {note}", stacklevel=2)
        value = float(self.metric.compute())
        return FIDResult(value, self.n_real, self.n_fake, self.feature_dim, self.name,
                         self.weights, self.resize, note)


def frechet_inception_distance(real: Iterable[Tensor], fake: Iterable[Tensor],
                               extractor: nn.Module | None = None, *,
                               weights: str | os.PathLike[str] | None = None,
                               device: str | torch.device = "cpu") -> FIDResult:
    """FID between two iterables of image batches (uint8 or [-1, 1] float ``(B, 3, H, W)``)."""
    fid = StreamingFID(extractor, weights=weights, device=device)
    fid.add(real, real=True)
    fid.add(fake, real=False)
    return fid.compute()
