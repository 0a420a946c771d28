"""CUB-layout datasets: the JPEG reader and the item logic it shares with the tensor cache.

The file layout, the bbox crop and the caption rule are in :mod:`t2ilib.data.cub`; this module
turns them into ``torch`` datasets (AttnGAN's ``TextDataset``). Item ``i``: ``(image (3, s, s)
float in [-1, 1], caption (words_num,) int64, length, class_id, key)``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from t2ilib.data.augment import cache_size_for, center_crop, random_crop_flip
from t2ilib.data.caption_files import CAPTIONS_PER_IMAGE
from t2ilib.data.cub import (
    WORDS_NUM,
    check_layout,
    fit_caption,
    images_dir,
    load_captions,
    load_cropped_image,
    read_bboxes,
    read_split,
)
from t2ilib.data.cub_index import CUB_REMEDY
from t2ilib.runtime import step_generator
from t2ilib.text.vocab import Vocabulary

__all__ = ["CaptionedImages", "CUBDataset"]


class CaptionedImages(Dataset):
    """Shared item logic of the JPEG reader and the tensor cache (same draws, same output).

    Subclasses set the attributes below and implement :meth:`uint8_image`.
    Item ``i``: ``(image (3, s, s) float in [-1, 1], caption (words_num,) int64, length,
    class_id, key)``.

    Randomness: with ``seed=None`` the global torch RNG is used (each DataLoader worker is
    seeded by PyTorch). With an integer ``seed``, item ``i`` draws from a generator seeded
    by ``(seed, epoch, i)``: reproducible whatever the worker/batch layout; call
    :meth:`set_epoch` to get fresh draws each epoch.
    """

    keys: list[str]
    class_ids: list[int]
    captions: list[list[int]]  # flat: caption j of image i at i * captions_per_image + j
    captions_per_image: int
    vocab: Vocabulary
    image_size: int
    train: bool
    words_num: int
    seed: int | None
    epoch: int

    def _set_sampling(self, split: str, captions_per_image: int, image_size: int,
                      train: bool | None, words_num: int, seed: int | None) -> None:
        """Set the attributes every reader shares (``train=None``: augment the train split)."""
        self.captions_per_image = captions_per_image
        self.image_size = image_size
        self.cache_size = cache_size_for(image_size)
        self.train = split == "train" if train is None else train
        self.words_num = words_num
        self.seed = seed
        self.epoch = 0

    def uint8_image(self, index: int) -> Tensor:
        """The bbox-cropped image resized to the cache size: uint8 ``(3, S, S)``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.keys)

    def set_epoch(self, epoch: int) -> None:
        """Select the draws of ``epoch`` (only matters with an integer ``seed``)."""
        self.epoch = int(epoch)

    def generator_for(self, index: int) -> torch.Generator | None:
        """The generator item ``index`` draws from (``None``: torch's global RNG)."""
        if self.seed is None:
            return None
        return step_generator(self.seed, self.epoch, index)

    def captions_of(self, index: int) -> list[list[int]]:
        """All ``captions_per_image`` captions of image ``index`` as token-id lists."""
        start = index * self.captions_per_image
        return self.captions[start:start + self.captions_per_image]

    def caption_texts_of(self, index: int) -> list[str]:
        """All captions of image ``index`` as (tokenized, lower-case) text."""
        return [self.vocab.decode(c) for c in self.captions_of(index)]

    def sample_caption(self, index: int, generator: torch.Generator | None) -> tuple[Tensor, int]:
        """One of the image's captions at random, fitted to ``words_num``: ``((T,), length)``."""
        j = int(torch.randint(self.captions_per_image, (1,), generator=generator))
        return fit_caption(self.captions_of(index)[j], self.words_num, generator)

    def transform_image(self, index: int, generator: torch.Generator | None) -> Tensor:
        """Crop + flip (train) or centre crop (test): float ``(3, s, s)`` in [-1, 1]."""
        image = self.uint8_image(index)[None]                                      # (1, 3, S, S)
        if self.train:
            return random_crop_flip(image, self.image_size, generator=generator)[0]  # (3, s, s)
        return center_crop(image, self.image_size)[0]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor, int, int, str]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} images")
        index = index % len(self)
        g = self.generator_for(index)
        caption, length = self.sample_caption(index, g)  # caption first: fixed draw order
        image = self.transform_image(index, g)
        return image, caption, length, self.class_ids[index], self.keys[index]


class CUBDataset(CaptionedImages):
    """CUB (or ToyBirds) read from JPEGs: ``(image, caption, length, class_id, key)`` items.

    Args:
        root: folder with the layout in this module's docstring (checked).
        split: ``"train"`` or ``"test"``.
        image_size: output side ``s`` (images are resized to ``int(s * 76 / 64)`` first).
        train: random crop + flip if True, centre crop if False (default: ``split == "train"``).
        words_num: caption length after padding / subsetting (18 in AttnGAN).
        seed: ``None`` (global RNG) or an integer (see :class:`CaptionedImages`).
        captions_per_image: 10 for CUB.
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_size: int = 64,
                 train: bool | None = None, words_num: int = WORDS_NUM, seed: int | None = None,
                 captions_per_image: int = CAPTIONS_PER_IMAGE):
        if words_num < 1:
            raise ValueError(f"words_num must be positive, got {words_num}")
        self.root = check_layout(root)
        self.split = split
        self.keys, self.class_ids = read_split(self.root, split)
        data = load_captions(self.root, captions_per_image)
        self.captions = data.train if split == "train" else data.test
        self.vocab = data.vocab
        boxes = read_bboxes(self.root)
        missing = [k for k in self.keys if k not in boxes]
        if missing:
            raise ValueError(f"images.txt / bounding_boxes.txt lack {len(missing)} keys of the "
                             f"{split} split, e.g. {missing[:3]}")
        self.bboxes = [boxes[k] for k in self.keys]
        self._set_sampling(split, captions_per_image, image_size, train, words_num, seed)

    def image_path(self, index: int) -> Path:
        """Path of the JPEG of image ``index``."""
        return images_dir(self.root) / f"{self.keys[index]}.jpg"

    def uint8_image(self, index: int) -> Tensor:
        """Decode, bbox-crop, square and resize: uint8 ``(3, S, S)`` with ``S = cache_size``."""
        return load_cropped_image(self.image_path(index), self.bboxes[index], self.cache_size,
                                  CUB_REMEDY, self.root / "CUB_200_2011" / "bounding_boxes.txt",
                                  f"image {self.keys[index]}")
