r"""The ToyBirds oracle: a judge trained on real ToyBirds that scores generated birds.

Real CUB has no ground truth to check "does this image show what the caption says?". ToyBirds
does: every image comes with the attributes it was drawn with and the bird's mask. Following
the honest recipe of GeNeVA and DALL-Eval (metrics_data.md §5.2, §5.4), we train a small
network **only on real ToyBirds images** to read every attribute and to segment the bird,
freeze it, and use it as the judge:

* **text alignment**: the share of generated images whose attribute, as the oracle reads it,
  equals the value the caption asked for, counted only over attributes the caption mentions
  (:func:`alignment`);
* **toy FID**: the Fréchet distance between real and generated images in the oracle's
  feature space (:func:`frechet_distance`),
  $d^2 = \lVert\mu_r-\mu_g\rVert^2
  + \operatorname{tr}\big(\Sigma_r+\Sigma_g-2(\Sigma_r\Sigma_g)^{1/2}\big)$;
* **mask IoU**: the oracle's segmentation of a generated image compared with the mask SSA-GAN
  predicted for it (:func:`mask_iou`).

Its trustworthiness is measured, not assumed: :class:`OracleReport` holds its accuracy per
attribute and its segmentation IoU on the *test* split of real images. An attribute it reads
with less than 95 % accuracy is not scored (:meth:`OracleReport.judged`).

The architecture is deliberately unlike the GAN's discriminator and the DAMSM image encoder
(GroupNorm + SiLU residual blocks and a U-Net-style decoder, instead of BatchNorm/LeakyReLU
stacks), so the judge does not share the generator's blind spots by construction.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.data.toybirds import ATTRIBUTES, load_groundtruth
from t2ilib.engine.checkpoint import (
    checkpoint_file,
    config_from,
    load_weights,
    read_checkpoint,
    write_checkpoint,
)
from t2ilib.io import BadFileError
from t2ilib.runtime import progress

__all__ = [
    "OracleConfig", "OracleOutput", "ToyOracle", "OracleReport", "ToyBirdsArrays",
    "load_toybirds_arrays", "evaluate_oracle", "save_oracle", "load_oracle",
    "predict_attributes", "alignment", "shuffled", "oracle_features", "frechet_distance",
    "segment", "mask_iou", "centred_blob", "JUDGE_THRESHOLD", "KIND",
]

#: An attribute the oracle reads with less accuracy than this on real test images is not scored.
JUDGE_THRESHOLD = 0.95
KIND = "toy_oracle"  # the kind of its checkpoints (t2ilib.engine.checkpoint)


# ----------------------------------------------------------------------------- network

@dataclass(frozen=True)
class OracleConfig:
    """Sizes of :class:`ToyOracle`."""

    widths: tuple[int, int, int, int] = (24, 48, 96, 128)  # stem, then three stride-2 stages
    groups: int = 8  # GroupNorm groups


class ResBlock(nn.Module):
    """``(B, c_in, H, W) -> (B, c_out, H/s, W/s)``: two 3x3 convs (GroupNorm, SiLU) + shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int, groups: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.norm1 = nn.GroupNorm(groups, c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = F.silu(self.norm1(self.conv1(x)))
        return F.silu(self.norm2(self.conv2(h)) + self.shortcut(x))


@dataclass
class OracleOutput:
    """What :class:`ToyOracle` returns for ``B`` images of side ``S``."""

    logits: dict[str, Tensor]  # attribute -> (B, number of values)
    features: Tensor  # (B, F) pooled features, for the toy FID
    mask_logits: Tensor  # (B, 1, S, S) bird-vs-background logits


class ToyOracle(nn.Module):
    """Attribute classifier + bird segmenter for ToyBirds.

    ``(B, 3, S, S)`` in ``[-1, 1]`` (S a multiple of 16) -> :class:`OracleOutput`. A
    stride-2 stem and three residual stages (S/2 ... S/16); one linear head per attribute of
    :data:`t2ilib.data.toybirds.ATTRIBUTES` on pooled S/8 and S/16 features; a U-Net-style
    decoder back to S/2, then one 3x3 conv at full resolution that also sees the image, so
    mask edges are drawn at pixel precision.
    """

    def __init__(self, config: OracleConfig = OracleConfig()):
        super().__init__()
        self.config = config
        w0, w1, w2, w3 = config.widths
        g = config.groups
        self.stem = nn.Sequential(nn.Conv2d(3, w0, 3, 2, 1, bias=False), nn.GroupNorm(g, w0),
                                  nn.SiLU())  # S/2
        self.down1 = ResBlock(w0, w1, 2, g)  # S/4
        self.down2 = ResBlock(w1, w2, 2, g)  # S/8
        self.down3 = ResBlock(w2, w3, 2, g)  # S/16
        self.heads = nn.ModuleDict({name: nn.Linear(w2 + w3, len(values))
                                    for name, values in ATTRIBUTES.items()})
        self.up3 = ResBlock(w3 + w2, w2, 1, g)  # S/8
        self.up2 = ResBlock(w2 + w1, w1, 1, g)  # S/4
        self.up1 = ResBlock(w1 + w0, w0, 1, g)  # S/2
        self.to_mask = nn.Sequential(nn.Conv2d(w0 + 3, w0, 3, 1, 1), nn.SiLU(),
                                     nn.Conv2d(w0, 1, 1))  # S

    @property
    def feature_dim(self) -> int:
        return self.config.widths[2] + self.config.widths[3]

    def forward(self, images: Tensor) -> OracleOutput:
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] % 16:
            raise ValueError(f"images must be (B, 3, S, S) with S a multiple of 16, got "
                             f"{tuple(images.shape)}")
        s0 = self.stem(images)  # (B, w0, S/2, S/2)
        s1 = self.down1(s0)  # (B, w1, S/4, S/4)
        s2 = self.down2(s1)  # (B, w2, S/8, S/8)
        s3 = self.down3(s2)  # (B, w3, S/16, S/16)
        features = torch.cat([s2.mean((2, 3)), s3.mean((2, 3))], dim=1)  # (B, w2 + w3)
        logits = {name: head(features) for name, head in self.heads.items()}

        def up(x: Tensor, skip: Tensor) -> Tensor:
            return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1)

        d = self.up3(up(s3, s2))  # (B, w2, S/8, S/8)
        d = self.up2(up(d, s1))  # (B, w1, S/4, S/4)
        d = self.up1(up(d, s0))  # (B, w0, S/2, S/2)
        d = F.interpolate(d, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return OracleOutput(logits, features, self.to_mask(torch.cat([d, images], 1)))


# -------------------------------------------------------------------------------- data

@dataclass
class ToyBirdsArrays:
    """One split of a ToyBirds folder in memory.

    ``images`` uint8 ``(N, 3, S, S)``; ``labels`` attribute -> long ``(N,)`` value indices
    into ``ATTRIBUTES[attribute]``; ``masks`` bool ``(N, S, S)``; ``keys`` in the same order.
    """

    images: Tensor
    labels: dict[str, Tensor]
    masks: Tensor
    keys: list[str]

    def __len__(self) -> int:
        return len(self.keys)


def load_toybirds_arrays(root: str | os.PathLike[str], split: str) -> ToyBirdsArrays:
    """Decode the images of one split of a ToyBirds folder, with labels and masks."""
    from PIL import Image

    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    root = Path(root)
    truth = load_groundtruth(root)
    rows = [i for i, k in enumerate(truth.keys) if truth.splits[k] == split]
    keys = [truth.keys[i] for i in rows]
    images = np.stack([np.asarray(Image.open(root / "CUB_200_2011" / "images" / f"{k}.jpg")
                                  .convert("RGB")) for k in progress(keys, desc=f"{split} images",
                                                                     leave=False)])
    labels = {name: torch.tensor([values.index(truth.attributes[k][name]) for k in keys])
              for name, values in ATTRIBUTES.items()}
    masks = torch.from_numpy(truth.masks()[rows])
    return ToyBirdsArrays(torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), labels,
                          masks, keys)


def to_float(images: Tensor) -> Tensor:
    """uint8 ``(B, 3, S, S)`` -> float in ``[-1, 1]``."""
    return images.float().div(127.5).sub(1.0)


# -------------------------------------------------------------------------- prediction

@torch.no_grad()
def _run(oracle: ToyOracle, images: Tensor, batch_size: int = 256) -> list[OracleOutput]:
    """Run the oracle over uint8 or float ``(N, 3, S, S)`` images in batches."""
    device = next(oracle.parameters()).device
    outs = []
    for start in range(0, len(images), batch_size):
        chunk = images[start:start + batch_size]
        chunk = to_float(chunk) if chunk.dtype == torch.uint8 else chunk.float()
        out = oracle(chunk.to(device))
        outs.append(OracleOutput({k: v.cpu() for k, v in out.logits.items()},
                                 out.features.cpu(), out.mask_logits.cpu()))
    return outs


def predict_attributes(oracle: ToyOracle, images: Tensor) -> dict[str, Tensor]:
    """attribute -> predicted value index ``(N,)`` for uint8 or [-1, 1] images ``(N, 3, S, S)``."""
    outs = _run(oracle, images)
    return {name: torch.cat([o.logits[name].argmax(1) for o in outs]) for name in ATTRIBUTES}


def oracle_features(oracle: ToyOracle, images: Tensor) -> Tensor:
    """Pooled oracle features ``(N, F)`` (float64) of ``(N, 3, S, S)`` images."""
    return torch.cat([o.features for o in _run(oracle, images)]).double()


def segment(oracle: ToyOracle, images: Tensor) -> Tensor:
    """The oracle's bird masks, bool ``(N, S, S)``."""
    return torch.cat([o.mask_logits[:, 0] > 0 for o in _run(oracle, images)])


def mask_iou(pred: Tensor, target: Tensor) -> Tensor:
    """Intersection over union per image of bool masks ``(N, H, W)`` -> ``(N,)``.

    Two empty masks count as IoU 1 (they agree perfectly).
    """
    if pred.shape != target.shape:
        raise ValueError(f"mask shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    pred, target = pred.bool(), target.bool()
    inter = (pred & target).flatten(1).sum(1).double()
    union = (pred | target).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))


def centred_blob(n: int, size: int, radius: float = 0.3) -> Tensor:
    """A text-free baseline mask: a centred disc of ``radius * size``, bool ``(n, size, size)``."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    centre = (size - 1) / 2
    disc = (yy - centre) ** 2 + (xx - centre) ** 2 <= (radius * size) ** 2
    return disc.expand(n, size, size).clone()


# ----------------------------------------------------------------------------- metrics

def alignment(predicted: dict[str, Tensor], targets: list[dict[str, str]],
              attributes: tuple[str, ...] | None = None) -> dict[str, tuple[int, int]]:
    """Per attribute, ``(correct, counted)`` over images whose caption mentions it.

    ``predicted``: attribute -> value indices ``(N,)`` (see :func:`predict_attributes`);
    ``targets``: for each of the N images, the values its caption asked for, e.g.
    ``{"body_color": "red", "size": "small"}``. ``attributes`` restricts the scoring (the
    judged ones).
    """
    names = attributes if attributes is not None else tuple(ATTRIBUTES)
    n = len(next(iter(predicted.values())))
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} predictions")
    counts = {name: [0, 0] for name in names}
    for i, wanted in enumerate(targets):
        for name, value in wanted.items():
            if name in counts:
                counts[name][1] += 1
                counts[name][0] += int(ATTRIBUTES[name][int(predicted[name][i])] == value)
    return {name: (c, t) for name, (c, t) in counts.items()}


def shuffled(targets: list[dict[str, str]], seed: int = 0) -> list[dict[str, str]]:
    """The same targets in a random order: scoring against them must give about chance."""
    order = np.random.default_rng(seed).permutation(len(targets))
    return [targets[i] for i in order]


def frechet_distance(a: Tensor, b: Tensor) -> float:
    r"""Fréchet distance between Gaussians fitted to features ``a (N, F)`` and ``b (M, F)``.

    $d^2 = \lVert\mu_a-\mu_b\rVert^2 + \operatorname{tr}\Sigma_a + \operatorname{tr}\Sigma_b
    - 2\operatorname{tr}(\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2})^{1/2}$, computed in float64 with
    symmetric eigendecompositions (the trace of the square root of $\Sigma_a\Sigma_b$ equals
    that of the symmetric matrix $\Sigma_a^{1/2}\Sigma_b\Sigma_a^{1/2}$).
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (N, F) feature sets with N >= 2, got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}")
    a, b = a.double(), b.double()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    evals, evecs = torch.linalg.eigh(cov_a)
    sqrt_a = evecs @ torch.diag(evals.clamp(min=0).sqrt()) @ evecs.T
    middle = sqrt_a @ cov_b @ sqrt_a
    tr_sqrt = torch.linalg.eigvalsh((middle + middle.T) / 2).clamp(min=0).sqrt().sum()
    d2 = (mu_a - mu_b).square().sum() + cov_a.trace() + cov_b.trace() - 2 * tr_sqrt
    return float(d2.clamp(min=0))


# -------------------------------------------------------------------- report, persistence

@dataclass
class OracleReport:
    """The oracle's own quality on real **test** images."""

    accuracy: dict[str, float]  # attribute -> accuracy
    mask_iou: float  # mean IoU of its segmentation with the true masks
    n_test: int
    train_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_accuracy(self) -> float:
        return float(np.mean(list(self.accuracy.values())))

    def judged(self, threshold: float = JUDGE_THRESHOLD) -> tuple[str, ...]:
        """Attributes read well enough to be scored."""
        return tuple(k for k, v in self.accuracy.items() if v >= threshold)

    def __str__(self) -> str:
        lines = [f"ToyBirds oracle on {self.n_test} real test images:"]
        lines += [f"  {k:<12} {v:6.1%}" + ("" if v >= JUDGE_THRESHOLD else "  (not judged)")
                  for k, v in self.accuracy.items()]
        lines.append(f"  {'mean':<12} {self.mean_accuracy:6.1%}")
        lines.append(f"  {'mask IoU':<12} {self.mask_iou:6.3f}")
        return "\n".join(lines)


def evaluate_oracle(oracle: ToyOracle, test: ToyBirdsArrays) -> OracleReport:
    """Accuracy per attribute and mean segmentation IoU on real images."""
    predicted = predict_attributes(oracle, test.images)
    accuracy = {name: float((predicted[name] == test.labels[name]).double().mean())
                for name in ATTRIBUTES}
    iou = float(mask_iou(segment(oracle, test.images), test.masks).mean())
    return OracleReport(accuracy, iou, len(test))


def save_oracle(path: str | os.PathLike[str], oracle: ToyOracle, report: OracleReport,
                fingerprint: dict[str, Any] | None = None) -> Path:
    """Write the oracle and its report atomically: the course's checkpoint format, kind
    ``"toy_oracle"``, weights only (loads with ``weights_only=True``)."""
    return write_checkpoint(path, kind=KIND, state={"oracle": oracle},
                            fingerprint=fingerprint or {}, rng=False,
                            meta={"config": asdict(oracle.config), "report": asdict(report)})


def load_oracle(path: str | os.PathLike[str], device: str | torch.device = "cpu"
                ) -> tuple[ToyOracle, OracleReport, dict[str, Any]]:
    """Read an oracle: a file of :func:`save_oracle` or a training run's folder or checkpoint
    (:func:`~t2ilib.metrics.toy_oracle_train.load_or_train_oracle`). Returns ``(oracle, report,
    fingerprint)``. Raises :class:`~t2ilib.engine.checkpoint.CheckpointMismatch` for a file of
    another format (e.g. ``t2ilib.toy_oracle.v1``: train it again) or kind."""
    file = checkpoint_file(path)
    payload = read_checkpoint(file, KIND)
    meta = payload["meta"]
    if meta.get("report") is None:  # the schema lets a run in progress lack it
        raise BadFileError(path, "it holds an unfinished oracle training run (no test report)",
                           "Finish it with load_or_train_oracle")
    config = dict(meta.get("config") or {})
    config["widths"] = tuple(config.get("widths") or ())
    oracle = ToyOracle(config_from(OracleConfig, config, file, "oracle config"))
    load_weights(oracle, payload["state"].get("oracle"), file, "oracle")
    report = config_from(OracleReport, meta["report"], file, "oracle test report")
    return oracle.to(device).eval(), report, payload["fingerprint"]


