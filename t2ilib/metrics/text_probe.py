r"""Linear probes: how much of each ToyBirds attribute a sentence vector (or an image code) holds.

SSA-GAN's generator sees a caption only through the DAMSM sentence vector
$\bar e \in \mathbb{R}^{D}$ (:class:`~t2ilib.text.encoder.TextEncoder`). Whatever the vector
does not encode, no generator can draw. A *linear probe* measures it: for one attribute $a$
(say body colour) take the training captions that mention $a$, fit a softmax classifier

$$p(a \mid \bar e) = \mathrm{softmax}(W \bar e + b), \qquad W \in \mathbb{R}^{K_a \times D},$$

on the frozen vectors (cross-entropy, full batch, Adam), and report its accuracy on the test
captions that mention $a$. Chance is $1/K_a$. A probe near 1 means the information is
there and linearly readable, which is how G's conditioning MLPs start reading it; a probe
near chance means the text encoder has not learnt to tell, say, "a red belly and blue
wings" from "a blue belly and red wings" (colour-part *binding*).

The same probe on the DAMSM *image* code (:func:`image_probe`, real images, all attributes)
shows how well the DAMSM term of SSA-GAN's generator loss can check an attribute: the
generator learns a colour from that term only as far as the image encoder reads it.

Used by ``notebooks/02_text_encoder_damsm`` (the DAMSM before and after pretraining) and
``notebooks/07_train_ssagan`` (the ceilings the generator trains under).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.data.augment import center_crop
from t2ilib.data.cache import CachedCUBDataset
from t2ilib.data.cub import CAPTIONS_PER_IMAGE, WORDS_NUM, load_captions, read_split
from t2ilib.data.toybirds import ATTRIBUTES, CAPTIONED, load_groundtruth
from t2ilib.metrics.rprecision import encode_captions, encode_images

__all__ = ["ProbeConfig", "ProbeResult", "CaptionLabels", "caption_labels", "fit_linear_probe",
           "sentence_probe", "image_probe"]


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of :func:`sentence_probe`."""

    steps: int = 300  # full-batch Adam steps of each classifier
    lr: float = 1e-2
    max_train: int | None = 20_000  # training captions to embed (None: all)
    seed: int = 0  # the classifiers' initialisation


@dataclass
class ProbeResult:
    """Test accuracy of one linear probe per attribute, with chance and the counts."""

    accuracy: dict[str, float]  # attribute -> test accuracy on captions that mention it
    chance: dict[str, float]  # attribute -> 1 / number of values
    n_train: dict[str, int]  # captions the probe was fitted on
    n_test: dict[str, int]  # captions it was tested on


@dataclass
class CaptionLabels:
    """Every caption of a split with the attributes of its image.

    ``captions[i]`` belongs to image ``i // captions_per_image``; ``labels[a]`` ``(M,)`` holds
    the value index of attribute ``a`` for each caption's image and ``mentioned[a]`` ``(M,)``
    whether the caption names it.
    """

    captions: list[list[int]]
    labels: dict[str, Tensor]
    mentioned: dict[str, Tensor]


def caption_labels(root: str | os.PathLike[str], split: str,
                   captions_per_image: int = CAPTIONS_PER_IMAGE) -> CaptionLabels:
    """Token ids of the ``split`` captions of a ToyBirds folder, with their ground truth."""
    keys, _ = read_split(root, split)
    captions = getattr(load_captions(root, captions_per_image, write=False), split)
    truth = load_groundtruth(root)
    labels, mentioned = {}, {}
    for name in CAPTIONED:
        values = ATTRIBUTES[name]
        labels[name] = torch.tensor([values.index(truth.attributes[k][name])
                                     for k in keys for _ in range(captions_per_image)])
        mentioned[name] = torch.tensor([name in truth.mentions[k][j]
                                        for k in keys for j in range(captions_per_image)])
    return CaptionLabels(captions, labels, mentioned)


def fit_linear_probe(features: Tensor, labels: Tensor, n_classes: int,
                     config: ProbeConfig = ProbeConfig()) -> nn.Linear:
    """Softmax regression ``(M, D) -> K`` by full-batch Adam on the cross-entropy."""
    torch.manual_seed(config.seed)
    probe = nn.Linear(features.shape[1], n_classes)
    opt = torch.optim.Adam(probe.parameters(), lr=config.lr)
    for _ in range(config.steps):
        loss = F.cross_entropy(probe(features), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return probe.requires_grad_(False)


def sentence_probe(text_encoder: nn.Module, root: str | os.PathLike[str],
                   attributes: tuple[str, ...] = CAPTIONED, config: ProbeConfig = ProbeConfig(),
                   words_num: int = WORDS_NUM,
                   device: torch.device | str = "cpu") -> ProbeResult:
    """Fit one linear probe per attribute on training sentence vectors, score it on test ones.

    ``text_encoder(ids (B, T), lengths (B,)) -> (words, sentences (B, D))`` is any module with
    the :class:`~t2ilib.text.encoder.TextEncoder` interface; it is left in eval mode.
    """
    unknown = [a for a in attributes if a not in CAPTIONED]
    if unknown:
        raise ValueError(f"captions never name {unknown}; choose among {CAPTIONED}")
    train, test = caption_labels(root, "train"), caption_labels(root, "test")
    n = len(train.captions) if config.max_train is None else min(config.max_train,
                                                                  len(train.captions))
    with torch.no_grad():
        x_train = encode_captions(text_encoder, train.captions[:n], words_num, 1000, device)
        x_test = encode_captions(text_encoder, test.captions, words_num, 1000, device)
    result = ProbeResult({}, {}, {}, {})
    for name in attributes:
        seen_train, seen_test = train.mentioned[name][:n], test.mentioned[name]
        if not seen_train.any() or not seen_test.any():
            raise ValueError(f"no caption mentions {name} in the train or test split")
        _score(result, name, x_train[seen_train], train.labels[name][:n][seen_train],
               x_test[seen_test], test.labels[name][seen_test], config)
    return result


def _score(result: ProbeResult, name: str, x_train: Tensor, y_train: Tensor, x_test: Tensor,
           y_test: Tensor, config: ProbeConfig) -> None:
    """Fit one probe for attribute ``name`` and write its test accuracy into ``result``."""
    k = len(ATTRIBUTES[name])
    probe = fit_linear_probe(x_train.float(), y_train, k, config)
    guess = probe(x_test.float()).argmax(1)
    result.accuracy[name] = float((guess == y_test).double().mean())
    result.chance[name] = 1.0 / k
    result.n_train[name] = len(y_train)
    result.n_test[name] = len(y_test)


def image_probe(image_encoder: nn.Module, root: str | os.PathLike[str], image_size: int,
                attributes: tuple[str, ...] = tuple(ATTRIBUTES),
                config: ProbeConfig = ProbeConfig(),
                device: torch.device | str = "cpu") -> ProbeResult:
    """Linear probes of the global image code on real ToyBirds images (train -> test).

    ``image_encoder(images (B, 3, s, s)) -> (regions, codes (B, D))`` is a DAMSM image
    encoder (left in eval mode); images are the centre ``image_size`` crop of the cached
    split (the test-time view of the training crops). Any attribute may be probed, captioned
    or not.
    """
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown:
        raise ValueError(f"unknown attributes {unknown}; choose among {tuple(ATTRIBUTES)}")
    truth = load_groundtruth(root)
    codes, labels = {}, {}
    for split in ("train", "test"):
        data = CachedCUBDataset(root, split, image_size=image_size, uint8=True)
        n = len(data) if split == "test" or config.max_train is None else min(config.max_train,
                                                                              len(data))
        images = center_crop(data.images[:n], image_size)  # (n, 3, s, s) in [-1, 1]
        with torch.no_grad():
            codes[split] = encode_images(image_encoder, images, device=device)  # (n, D)
        labels[split] = {name: torch.tensor([ATTRIBUTES[name].index(truth.attributes[k][name])
                                             for k in data.keys[:n]]) for name in attributes}
    result = ProbeResult({}, {}, {}, {})
    for name in attributes:
        _score(result, name, codes["train"], labels["train"][name], codes["test"],
               labels["test"][name], config)
    return result
