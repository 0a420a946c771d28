r"""Scoring text-guided manipulation on ToyBirds: did the edit happen, and did the rest stay?

A manipulation model gets a source bird $x$ and a *new* caption $t$ (here: a caption of
another ToyBirds image) and returns $y = G(x, t)$. ToyBirds knows what $x$ is (attributes,
position, the bird's mask) and what $t$ asks for (the attributes it names), and the frozen
ToyBirds oracle (:mod:`t2ilib.metrics.toy_oracle`) reads attributes and segments birds in
any image. So (ToyBirds, notebook 01):

* **target accuracy**: the share of attributes named by $t$ that the oracle reads in $y$
  with the asked value, over the named attributes whose value *differs* from the source's
  (the real edits; an unchanged output scores 0 there) and over all named ones;
* **preservation**: for facing, size and background, when $t$ does not name them, the share
  of outputs where the oracle reads the source's value;
* **position**: the IoU between the oracle's segmentation of $y$ and the source's
  ground-truth mask $M$ (the bird should stay where it was);
* **background error**: $\frac{1}{|\bar M|}\sum_{p \notin M} \lvert y_p - x_p\rvert$ per image
  (mean over channels, on the 0-255 scale), then averaged; and the same inside $M$ (where the
  change should happen).

Only attributes the oracle reads with at least 95 % accuracy on real test images are scored
(:meth:`~t2ilib.metrics.toy_oracle.OracleReport.judged`). Two reference rows make the numbers
readable: the **identity** ($y = x$: perfect preservation, target accuracy 0 on the edits)
and the oracle's own accuracy on the real sources.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t2ilib.data.caption_files import read_caption_lines
from t2ilib.data.toybirds import ATTRIBUTES, COLORS, load_groundtruth
from t2ilib.metrics.toy_oracle import (
    JUDGE_THRESHOLD,
    OracleReport,
    ToyOracle,
    mask_iou,
    predict_attributes,
    segment,
)

__all__ = ["PRESERVED", "ManipulationPairs", "make_pairs", "ManipulationScores",
           "score_manipulation", "region_errors", "to_unit"]

#: Attributes that must survive an edit when the caption does not name them.
PRESERVED = ("facing", "size", "background")
_COLOUR_ATTRIBUTES = tuple(a for a, v in ATTRIBUTES.items() if set(v) <= set(COLORS))


@dataclass
class ManipulationPairs:
    """Source birds and the new captions to apply to them (see :func:`make_pairs`).

    ``images`` uint8 ``(N, 3, S, S)`` at the drawn size; ``masks`` bool ``(N, S, S)``;
    ``sources[i]`` the source's attributes; ``targets[i]`` ``{attribute: value}`` named by
    ``captions[i]``, a caption of image ``target_keys[i]``.
    """

    keys: list[str]
    images: Tensor
    masks: Tensor
    sources: list[dict[str, Any]]
    captions: list[str]
    target_keys: list[str]
    targets: list[dict[str, str]]

    def __len__(self) -> int:
        return len(self.keys)


def to_unit(images: Tensor) -> Tensor:
    """uint8 ``(N, 3, S, S)`` -> float in [-1, 1] (float input is returned as float32)."""
    return images.float().div(127.5).sub(1.0) if images.dtype == torch.uint8 else images.float()


def make_pairs(root: str | os.PathLike[str], split: str = "test", n: int = 200,
               seed: int = 0) -> ManipulationPairs:
    """``n`` source birds of ``split`` (a random subset), each with a caption of another bird
    of the split that asks for at least one value the source does not have.

    Deterministic in ``seed``. Captions are read from ``text/<key>.txt`` and their named
    attributes from the ground truth (``mentions``).
    """
    from PIL import Image

    root = Path(root)
    truth = load_groundtruth(root)
    keys = [k for k in truth.keys if truth.splits[k] == split]
    if len(keys) < 2:
        raise ValueError(f"the {split} split of {root} has {len(keys)} images; need 2")
    rng = np.random.default_rng(seed)
    chosen = [keys[i] for i in sorted(rng.permutation(len(keys))[:min(n, len(keys))])]
    captions, target_keys, targets = [], [], []
    for key in chosen:
        source = truth.attributes[key]
        for _ in range(1000):
            other = keys[int(rng.integers(len(keys)))]
            j = int(rng.integers(len(truth.mentions[other])))
            named = {a: truth.attributes[other][a] for a in truth.mentions[other][j]}
            if other != key and any(source[a] != v for a, v in named.items()):
                break
        else:  # pragma: no cover - ToyBirds always has such a caption
            raise RuntimeError(f"no caption asks {key} for a change")
        captions.append(read_caption_lines(root / "text" / f"{other}.txt")[j])
        target_keys.append(other)
        targets.append(named)
    arrays = []
    for key in chosen:
        with Image.open(root / "CUB_200_2011" / "images" / f"{key}.jpg") as im:
            arrays.append(np.asarray(im.convert("RGB")))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    masks = torch.from_numpy(np.stack([truth.mask(k) for k in chosen]))
    return ManipulationPairs(chosen, images, masks, [dict(truth.attributes[k]) for k in chosen],
                             captions, target_keys, targets)


def region_errors(outputs: Tensor, sources: Tensor, masks: Tensor) -> tuple[Tensor, Tensor]:
    """Mean absolute difference on the 0-255 scale outside and inside each mask.

    ``outputs``, ``sources`` ``(N, 3, S, S)`` (uint8, or float in [-1, 1]); ``masks`` bool
    ``(N, S, S)``. Returns ``(outside (N,), inside (N,))``; an empty region gives 0.
    """
    diff = (to_unit(outputs) - to_unit(sources)).abs().mean(1) * 127.5  # (N, S, S)
    m = masks.bool().float()
    outside = (diff * (1 - m)).flatten(1).sum(1) / (1 - m).flatten(1).sum(1).clamp(min=1)
    inside = (diff * m).flatten(1).sum(1) / m.flatten(1).sum(1).clamp(min=1)
    return outside, inside


@dataclass
class ManipulationScores:
    """The figures of :func:`score_manipulation` (counts as ``(correct, counted)``)."""

    n: int
    target: dict[str, tuple[int, int]]  # attribute -> over named attributes that change
    target_all: dict[str, tuple[int, int]]  # attribute -> over all named attributes
    preserved: dict[str, tuple[int, int]]  # PRESERVED attribute -> when not named
    unnamed_colours: tuple[int, int]  # colour attributes not named, kept
    mask_iou: float  # oracle segmentation of the output vs the source's true mask
    background_error: float  # mean |y - x| outside the source mask, 0-255 scale
    bird_change: float  # the same inside the mask
    judged: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def _rate(counts: dict[str, tuple[int, int]] | tuple[int, int]) -> float:
        c, t = ((sum(v[0] for v in counts.values()), sum(v[1] for v in counts.values()))
                if isinstance(counts, dict) else counts)
        return c / t if t else float("nan")

    @property
    def target_accuracy(self) -> float:
        """Share of the requested changes the oracle sees in the outputs."""
        return self._rate(self.target)

    @property
    def target_accuracy_all(self) -> float:
        return self._rate(self.target_all)

    @property
    def preservation(self) -> float:
        """Share of unnamed facing/size/background values kept."""
        return self._rate(self.preserved)

    def row(self) -> dict[str, float]:
        """The headline figures, for a table."""
        return {"target acc. (edits)": self.target_accuracy,
                "target acc. (all named)": self.target_accuracy_all,
                "kept facing/size/bg": self.preservation,
                "kept unnamed colours": self._rate(self.unnamed_colours),
                "mask IoU": self.mask_iou, "bg error": self.background_error,
                "bird change": self.bird_change}

    def __str__(self) -> str:
        lines = [f"{self.n} manipulations (oracle-judged attributes: {', '.join(self.judged)})"]
        lines += [f"  {k:<24} {v:8.3f}" for k, v in self.row().items()]
        lines.append("  target accuracy per attribute (edits): " + ", ".join(
            f"{a} {c}/{t}" for a, (c, t) in self.target.items() if t))
        lines.append("  kept per attribute: " + ", ".join(
            f"{a} {c}/{t}" for a, (c, t) in self.preserved.items() if t))
        return "\n".join(lines)


def score_manipulation(oracle: ToyOracle, report: OracleReport, pairs: ManipulationPairs,
                       outputs: Tensor, threshold: float = JUDGE_THRESHOLD) -> ManipulationScores:
    """Score ``outputs`` ``(N, 3, S, S)`` (float in [-1, 1] or uint8), the edits of ``pairs``.

    ``report`` decides which attributes are judged (oracle accuracy >= ``threshold``).
    """
    if outputs.shape != pairs.images.shape:
        raise ValueError(f"outputs {tuple(outputs.shape)} do not match the sources "
                         f"{tuple(pairs.images.shape)}")
    judged = report.judged(threshold)
    predicted = predict_attributes(oracle, to_unit(outputs))
    read = [{a: ATTRIBUTES[a][int(predicted[a][i])] for a in judged} for i in range(len(pairs))]
    target = {a: [0, 0] for a in ATTRIBUTES if a in judged}
    target_all = {a: [0, 0] for a in target}
    preserved = {a: [0, 0] for a in PRESERVED if a in judged}
    colours = [0, 0]
    for i, (source, named) in enumerate(zip(pairs.sources, pairs.targets)):
        for a, value in named.items():
            if a not in target:
                continue
            hit = int(read[i][a] == value)
            target_all[a][0] += hit
            target_all[a][1] += 1
            if source[a] != value:
                target[a][0] += hit
                target[a][1] += 1
        for a in preserved:
            if a not in named:
                preserved[a][0] += int(read[i][a] == source[a])
                preserved[a][1] += 1
        for a in _COLOUR_ATTRIBUTES:
            if a in judged and a not in named:
                colours[0] += int(read[i][a] == source[a])
                colours[1] += 1
    iou = float(mask_iou(segment(oracle, to_unit(outputs)), pairs.masks).mean())
    outside, inside = region_errors(outputs, pairs.images, pairs.masks)
    return ManipulationScores(
        n=len(pairs), target={a: (c, t) for a, (c, t) in target.items()},
        target_all={a: (c, t) for a, (c, t) in target_all.items()},
        preserved={a: (c, t) for a, (c, t) in preserved.items()},
        unnamed_colours=(colours[0], colours[1]), mask_iou=iou,
        background_error=float(outside.mean()), bird_change=float(inside.mean()),
        judged=judged)
