"""Tensor cache of a CUB-format split: decode every JPEG once, train from uint8 tensors.

Decoding, cropping and resizing a JPEG costs milliseconds; a training step at 64 px on a GPU
costs less. So each split is stored once as one file,

.. math::  \\text{images} \\in \\{0..255\\}^{N \\times 3 \\times S \\times S},
           \\quad S = \\lfloor 76/64 \\cdot s \\rfloor,

(the bbox crop already applied; exactly what :meth:`CUBDataset.uint8_image` computes) plus
the token ids of all :math:`10N` captions (flat, with offsets), keys, class ids and the word
list. The file is written atomically (:func:`t2ilib.io.save_torch`) and read with
``weights_only=True``, memory-mapped by default. A signature of the source files (index
files, split pickles, ``captions.pickle``) is stored with it; a changed source rebuilds it.

:class:`CachedCUBDataset` gives the same items as :class:`~t2ilib.data.cub.CUBDataset`
(same draws for the same seed), or, with ``uint8=True``, the un-augmented uint8 images so a
training loop can crop and flip whole batches on the GPU with
:func:`t2ilib.data.augment.random_crop_flip`.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from t2ilib.data.augment import cache_size_for
from t2ilib.data.cub import (
    CAPTIONS_PER_IMAGE,
    SPLITS,
    WORDS_NUM,
    check_layout,
)
from t2ilib.data.cub_dataset import CaptionedImages, CUBDataset
from t2ilib.io import BadFileError, load_torch, remove_stale_temporaries, save_torch
from t2ilib.runtime import progress
from t2ilib.text.vocab import Vocabulary

__all__ = ["CACHE_VERSION", "cache_path", "source_signature", "build_cache", "ensure_cache",
           "load_cache", "CachedCUBDataset"]

CACHE_VERSION = 1


def cache_path(root: str | os.PathLike[str], split: str, image_size: int) -> Path:
    """Default cache file ``<root>/cache/<split>_<S>px.pt``, ``S = int(image_size * 76 / 64)``."""
    return Path(root) / "cache" / f"{split}_{cache_size_for(image_size)}px.pt"


def source_signature(root: str | os.PathLike[str], split: str) -> str:
    """SHA-256 over the files a cache is derived from (JPEG bytes excepted: they never change
    in place; ``images.txt`` names them)."""
    root = Path(root)
    h = hashlib.sha256()
    for rel in ("CUB_200_2011/images.txt", "CUB_200_2011/bounding_boxes.txt",
                f"{split}/filenames.pickle", f"{split}/class_info.pickle", "captions.pickle"):
        p = root / rel
        h.update(rel.encode())
        h.update(p.read_bytes() if p.is_file() else b"<absent>")
    return h.hexdigest()


class _Uint8Images(Dataset):
    """Index -> ``(uint8 image, None)`` of a CUBDataset, or ``(None, error)`` for a bad file.

    Lets a DataLoader decode in worker processes. The error travels back as plain text
    (``(path, problem, remedy)`` or ``(message,)`` for a missing file) and is raised again in
    the main process by :func:`_images_or_raise`: a worker cannot re-raise ``BadFileError``.
    """

    def __init__(self, dataset: CUBDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[Tensor | None, tuple[str, ...] | None]:
        try:
            return self.dataset.uint8_image(index), None
        except BadFileError as err:
            return None, (str(err.path), err.problem, err.remedy)
        except FileNotFoundError as err:
            return None, (str(err),)


def _images_or_raise(items: list[tuple[Tensor | None, tuple[str, ...] | None]]) -> list[Tensor]:
    """The images of a batch of :class:`_Uint8Images` items; raises the first item's error."""
    for _, error in items:
        if error is not None:
            raise FileNotFoundError(error[0]) if len(error) == 1 else BadFileError(*error)
    return [image for image, _ in items]


def build_cache(root: str | os.PathLike[str], split: str, image_size: int = 64,
                path: str | os.PathLike[str] | None = None,
                captions_per_image: int = CAPTIONS_PER_IMAGE, num_workers: int = 0) -> Path:
    """Decode every image of ``split`` once and write the cache file; returns its path.

    ``num_workers > 0`` decodes in DataLoader worker processes (useful for real CUB). The
    file is written atomically once every image is decoded: an unreadable image or a bad
    box raises ``BadFileError`` naming the file (a missing image ``FileNotFoundError``) and
    leaves no cache file, not even part of one (an older cache file stays as it was).
    """
    dataset = CUBDataset(root, split, image_size=image_size,
                         captions_per_image=captions_per_image)
    n, s = len(dataset), dataset.cache_size
    images = torch.empty((n, 3, s, s), dtype=torch.uint8)                      # (N, 3, S, S)
    loader = DataLoader(_Uint8Images(dataset), batch_size=32, num_workers=num_workers,
                        collate_fn=list)  # items as they are: errors are raised here
    start = 0
    for items in progress(loader, desc=f"caching {split} ({n} images, {s}px)", unit="batch"):
        batch = _images_or_raise(items)
        images[start:start + len(batch)] = torch.stack(batch)
        start += len(batch)
    lengths = torch.tensor([len(c) for c in dataset.captions], dtype=torch.long)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths.cumsum(0)])  # (10N + 1,)
    flat = [i for caption in dataset.captions for i in caption]
    obj = {
        "version": CACHE_VERSION, "split": split, "image_size": image_size, "cache_size": s,
        "captions_per_image": captions_per_image, "keys": list(dataset.keys),
        "class_ids": torch.tensor(dataset.class_ids, dtype=torch.long),
        "images": images,
        "caption_ids": torch.tensor(flat, dtype=torch.int32),
        "caption_offsets": offsets,
        "words": dataset.vocab.words, "vocab_fingerprint": dataset.vocab.fingerprint(),
        "source_signature": source_signature(root, split),
    }
    return save_torch(obj, cache_path(root, split, image_size) if path is None else path)


def load_cache(path: str | os.PathLike[str], mmap: bool = True) -> dict[str, Any]:
    """Read a cache file (``weights_only=True``; memory-mapped by default) and check its version."""
    remedy = "Delete it: ensure_cache (or prepare_cub.py) rebuilds it from the images"
    obj = load_torch(path, mmap=mmap, remedy=remedy)
    if not isinstance(obj, dict) or obj.get("version") != CACHE_VERSION:
        raise BadFileError(path, f"not a t2ilib tensor cache of version {CACHE_VERSION}", remedy)
    return obj


def ensure_cache(root: str | os.PathLike[str], split: str, image_size: int = 64,
                 captions_per_image: int = CAPTIONS_PER_IMAGE, num_workers: int = 0) -> Path:
    """The cache file of ``split``, (re)built when it is missing, stale or of another version."""
    root = check_layout(root)
    path = cache_path(root, split, image_size)
    remove_stale_temporaries(path.parent)  # left by a build killed while it was writing
    if path.is_file():
        try:
            header = load_cache(path)
        except Exception:  # unreadable or foreign file: rebuild it
            header = {}
        if (header.get("source_signature") == source_signature(root, split)
                and header.get("captions_per_image") == captions_per_image):
            return path
    return build_cache(root, split, image_size, path, captions_per_image, num_workers)


class CachedCUBDataset(CaptionedImages):
    """:class:`~t2ilib.data.cub.CUBDataset`'s items, read from the tensor cache.

    Args:
        root: the CUB-format folder (the cache is built on first use) ...
        split, image_size, train, words_num, seed: as for ``CUBDataset``.
        cache_file: ... or an explicit cache file (then ``root`` may be None).
        uint8: return the cached uint8 image ``(3, S, S)`` without crop/flip/scaling, for
            augmentation on the device with ``t2ilib.data.augment.random_crop_flip``.
        mmap: memory-map the images instead of reading them into RAM.

    Attributes:
        images: uint8 ``(N, 3, S, S)``, the whole split.
    """

    def __init__(self, root: str | os.PathLike[str] | None, split: str = "train",
                 image_size: int = 64, train: bool | None = None, words_num: int = WORDS_NUM,
                 seed: int | None = None, cache_file: str | os.PathLike[str] | None = None,
                 uint8: bool = False, mmap: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        if cache_file is None:
            if root is None:
                raise ValueError("give root (a CUB-format folder) or cache_file")
            cache_file = ensure_cache(root, split, image_size)
        data = load_cache(cache_file, mmap=mmap)
        if data["split"] != split or data["image_size"] != image_size:
            raise ValueError(f"{cache_file} holds split {data['split']!r} at {data['image_size']}"
                             f" px, not {split!r} at {image_size} px")
        self.cache_file = Path(cache_file)
        self.split = split
        self.images: Tensor = data["images"]
        self.keys = list(data["keys"])
        self.class_ids = data["class_ids"].tolist()
        ids, offsets = data["caption_ids"].tolist(), data["caption_offsets"].tolist()
        self.captions = [ids[a:b] for a, b in zip(offsets[:-1], offsets[1:])]
        self.vocab = Vocabulary.from_words(data["words"])
        if self.vocab.fingerprint() != data["vocab_fingerprint"]:
            raise ValueError(f"{cache_file}: the stored word list does not match its fingerprint")
        self._set_sampling(split, int(data["captions_per_image"]), image_size, train, words_num,
                           seed)
        self.cache_size = int(data["cache_size"])  # as stored (the file was built for it)
        self.uint8 = uint8

    def uint8_image(self, index: int) -> Tensor:
        """The cached uint8 image ``(3, S, S)``."""
        return self.images[index]

    def transform_image(self, index: int, generator: torch.Generator | None) -> Tensor:
        """As ``CUBDataset`` (float ``(3, s, s)``), or the raw uint8 ``(3, S, S)`` if ``uint8``."""
        if self.uint8:
            return self.images[index].clone()
        return super().transform_image(index, generator)
