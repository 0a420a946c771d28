"""A training split held as tensors: what every GAN training run of the course reads.

:class:`TrainData` keeps the uint8 images of a split (cropped at random each step) and its
captions as token ids; :func:`load_native_split` reads a CUB-layout split at its native size
(ToyBirds: the images, masks and oracle all live at 64 px).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t2ilib.data.cub import WORDS_NUM, fit_caption, load_captions, read_split
from t2ilib.data.cub_dataset import CaptionedImages
from t2ilib.runtime import progress
from t2ilib.text.vocab import Vocabulary

__all__ = ["TrainData", "load_native_split"]


@dataclass
class TrainData:
    """A training split as tensors: uint8 images and token-id captions.

    ``images`` ``(N, 3, S, S)`` uint8 (``S = 76/64 * image_size``, cropped at random to
    ``image_size`` each step); caption ``j`` of image ``i`` is ``captions[i * cpi + j]``.
    """

    images: Tensor
    captions: list[list[int]]
    captions_per_image: int
    class_ids: Tensor  # (N,) int64
    vocab: Vocabulary
    image_size: int
    name: str = "data"
    words_num: int = WORDS_NUM

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        n = self.images.shape[0]
        if len(self.captions) != n * self.captions_per_image:
            raise ValueError(f"{len(self.captions)} captions for {n} images x "
                             f"{self.captions_per_image}")
        if self.class_ids.shape != (n,):
            raise ValueError(f"class_ids must have shape ({n},), got {tuple(self.class_ids.shape)}")
        if self.images.shape[-1] < self.image_size:
            raise ValueError(f"cached images ({self.images.shape[-1]} px) are smaller than "
                             f"image_size {self.image_size}")
        # token ids are checked here, once, so the training step need not read them back
        n_words = len(self.vocab)
        bad = [ids for ids in self.captions if ids and not 0 <= min(ids) <= max(ids) < n_words]
        if bad:
            raise ValueError(f"{len(bad)} captions hold token ids outside [0, {len(self.vocab)}) "
                             f"of the vocabulary, e.g. {bad[0]}")

    @classmethod
    def from_dataset(cls, dataset: CaptionedImages, name: str = "data") -> TrainData:
        """From a :class:`~t2ilib.data.cache.CachedCUBDataset` (its ``images`` tensor)."""
        images = getattr(dataset, "images", None)
        if images is None:
            images = torch.stack([dataset.uint8_image(i) for i in range(len(dataset))])
        return cls(images=images, captions=list(dataset.captions),
                   captions_per_image=dataset.captions_per_image,
                   class_ids=torch.as_tensor(dataset.class_ids, dtype=torch.long),
                   vocab=dataset.vocab, image_size=dataset.image_size, name=name,
                   words_num=dataset.words_num)

    def __len__(self) -> int:
        return self.images.shape[0]

    def draw_captions(self, index: Sequence[int],
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """One of each image's captions, drawn at random and fitted to ``words_num`` tokens
        (AttnGAN's rule, :func:`~t2ilib.data.cub.fit_caption`): ``ids (B, words_num)`` int64
        and ``lengths (B,)`` for the images ``index`` (B of them)."""
        caps, lens = [], []
        for i in index:
            j = int(torch.randint(self.captions_per_image, (1,), generator=generator))
            ids, n = fit_caption(self.captions[i * self.captions_per_image + j], self.words_num,
                                 generator)
            caps.append(ids)
            lens.append(n)
        return torch.stack(caps), torch.tensor(lens)

    def describe(self) -> dict[str, Any]:
        """Facts a checkpoint must agree on (the vocabulary is checked by its fingerprint)."""
        return {"name": self.name, "n_images": len(self), "image_size": self.image_size,
                "cache_size": int(self.images.shape[-1]),
                "captions_per_image": self.captions_per_image, "words_num": self.words_num}


def load_native_split(root: str | os.PathLike[str], split: str = "train",
                      name: str = "toybirds") -> TrainData:
    """A CUB-layout split read at its **native** size, without AttnGAN's resize-and-crop.

    For ToyBirds: the images, ground-truth masks and the oracle all live at the drawn size
    (64 px), so training on the same pixels keeps the bird at the scale the metrics see.
    Images must all be square and of one size ``S``; ``TrainData.image_size == S`` (so a
    training "crop" is the whole image and only the flip remains).
    """
    from PIL import Image

    root = Path(root)
    keys, class_ids = read_split(root, split)
    caps = load_captions(root)
    captions = caps.train if split == "train" else caps.test
    arrays = []
    for key in progress(keys, desc=f"{split} images", leave=False):
        with Image.open(root / "CUB_200_2011" / "images" / f"{key}.jpg") as im:
            arrays.append(np.asarray(im.convert("RGB")))
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1 or arrays[0].shape[0] != arrays[0].shape[1]:
        raise ValueError(f"{root}: native images must be square and of one size, got {sizes}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    per_image = len(captions) // max(len(keys), 1)
    return TrainData(images=images, captions=list(captions), captions_per_image=per_image,
                     class_ids=torch.tensor(class_ids, dtype=torch.long), vocab=caps.vocab,
                     image_size=int(images.shape[-1]), name=f"{name}:{split}:native")
