r"""Inception Score (IS), streamed over batches, through torchmetrics' ``InceptionScore``.

For a classifier with class posteriors :math:`p(y \mid x)` and their average over the images
:math:`p(y) = \mathbb E_x\, p(y \mid x)`,

.. math:: \mathrm{IS} = \exp\Big(\mathbb E_x\, \mathrm{KL}\big(p(y \mid x)\,\Vert\, p(y)\big)\Big),

computed on each of ``splits`` random subsets and reported as mean :math:`\pm` std. It is 1
when every image gets the same posterior and :math:`K` when the images are confidently and
evenly spread over :math:`K` classes.

**Which classifier? The number depends on it, and the text-to-image papers differ.**

* AttnGAN, DM-GAN, DF-GAN and SSA-GAN report a CUB IS computed with the *StackGAN birds
  Inception*: a TensorFlow-1 Inception-v3 fine-tuned on the 50 CUB test classes (a
  Google-Drive checkpoint, never on PyPI), 10 splits, about 30,000 images
  (the StackGAN / AttnGAN evaluation code). That network cannot be obtained on the course's
  machines, so **the course cannot reproduce the papers' CUB IS**.
* The default classifier here is the ImageNet FID Inception (1008 classes,
  ``logits_unbiased``; the same file as FID, :mod:`t2ilib.metrics.fid`), as in torchmetrics
  and torch-fidelity. **Its numbers are not comparable with the papers' CUB IS** (for example
  SSA-GAN's 5.17); SSA-GAN's own ``IS.py`` differs again (ImageNet network, 3 splits, 128 px).
* Any other classifier (``nn.Module`` mapping uint8 images to logits) can be injected, e.g.
  the ToyBirds oracle's body-colour head for a "toy IS".

IS ignores the text entirely (a generator that ignores captions but draws confident, varied
birds scores well), rewards over-confident classifiers, is biased in N and moves with the
resize and the split count; DF-GAN's authors advise against it. It is computed here because
the literature reports it, and the course shows where it misleads.

Deviations of torchmetrics from the StackGAN script, kept on purpose and recorded in
:class:`ISResult`: the std over splits is the sample std (``ddof=1``; the script used numpy's
population std) and no partial last batch is dropped. The split shuffle is seeded here
(``seed``), so the score is reproducible.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.metrics.fid import as_uint8, load_fid_inception

__all__ = ["ISResult", "StreamingIS", "inception_score", "IMAGENET_IS_NOTE"]

IMAGENET_IS_NOTE = ("ImageNet FID Inception (1008 classes): not the StackGAN birds Inception of "
                    "the CUB papers, so not comparable with their IS")


@dataclass
class ISResult:
    """An Inception Score and what it was computed with."""

    mean: float
    std: float  # sample std (ddof=1) over the splits
    n: int
    splits: int
    classifier: str
    note: str = ""

    def __str__(self) -> str:
        text = f"IS {self.mean:.3f} ± {self.std:.3f} ({self.n} images, {self.splits} splits; " \
               f"{self.classifier})"
        return text + (f"\nnote: {self.note}" if self.note else "")


class StreamingIS:
    """IS accumulated batch by batch (the logits are kept: 30,000 x 1008 floats = 121 MB).

    Args:
        classifier: ``nn.Module`` mapping uint8 ``(B, 3, H, W)`` to logits ``(B, K)``;
            ``None`` loads the ImageNet FID Inception's ``logits_unbiased``.
        weights: the Inception weights file (when ``classifier`` is None).
        splits: number of random subsets (10 in the papers).
        seed: seeds the split shuffle.
        device: where the classifier runs.
        name: how the result names the classifier.
    """

    def __init__(self, classifier: nn.Module | None = None, *,
                 weights: str | os.PathLike[str] | None = None, splits: int = 10,
                 seed: int = 0, device: str | torch.device = "cpu", name: str | None = None):
        from torchmetrics.image.inception import InceptionScore

        if splits < 1:
            raise ValueError(f"splits must be >= 1, got {splits}")
        self.device = torch.device(device)
        if classifier is None:
            classifier = load_fid_inception(weights, feature="logits_unbiased")
            self.name = name or IMAGENET_IS_NOTE
        else:
            self.name = name or type(classifier).__name__
        self.splits, self.seed = splits, seed
        with warnings.catch_warnings():  # "will save all extracted features": that is the design
            warnings.simplefilter("ignore", UserWarning)
            self.metric = InceptionScore(feature=classifier.to(self.device).eval(),
                                         splits=splits).to(self.device)
        self.n = 0

    @torch.no_grad()
    def update(self, images: Tensor) -> None:
        """Add a batch: uint8 or [-1, 1] float ``(B, 3, H, W)``."""
        images = as_uint8(images).to(self.device)
        self.metric.update(images)
        self.n += images.shape[0]

    def add(self, batches: Iterable[Tensor]) -> None:
        """Add every batch of an iterable."""
        for batch in batches:
            self.update(batch)

    def compute(self) -> ISResult:
        """Mean and std over the splits (needs at least one image per split)."""
        if self.n < self.splits:
            raise ValueError(f"IS with {self.splits} splits needs at least {self.splits} images, "
                             f"got {self.n}")
        # seed the split shuffle without touching the caller's RNG
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="std\\(\\): degrees of freedom")  # 1 split
            torch.manual_seed(self.seed)
            mean, std = self.metric.compute()
        std = float(std) if self.splits > 1 else 0.0
        return ISResult(float(mean), std, self.n, self.splits, self.name)


def inception_score(batches: Iterable[Tensor], classifier: nn.Module | None = None, *,
                    weights: str | os.PathLike[str] | None = None, splits: int = 10,
                    seed: int = 0, device: str | torch.device = "cpu") -> ISResult:
    """IS of an iterable of image batches (uint8 or [-1, 1] float ``(B, 3, H, W)``)."""
    meter = StreamingIS(classifier, weights=weights, splits=splits, seed=seed, device=device)
    meter.add(batches)
    return meter.compute()
