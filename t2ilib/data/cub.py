"""The CUB-200-2011 + AttnGAN caption reader (Xu et al., CVPR 2018; as used by DF-GAN and SSA-GAN).

One reader serves real CUB and ToyBirds, which is written in the same layout::

    <root>/                                   e.g. data/birds or data/toybirds
      CUB_200_2011/images/<key>.jpg           key = "<NNN.Class>/<image name>"
      CUB_200_2011/images.txt                 "<id> <key>.jpg", one per image
      CUB_200_2011/bounding_boxes.txt         "<id> <x> <y> <w> <h>" (floats, pixels)
      train/filenames.pickle, test/...        the split: a list of keys
      train/class_info.pickle, test/...       class id per key (optional)
      text/<key>.txt                          10 captions, one per line
      captions.pickle                         [train_ids, test_ids, ixtoword, wordtoix]

Per item (AttnGAN's ``TextDataset.__getitem__``):

* **bbox crop**: with the bird box :math:`(x, y, w, h)`,
  :math:`r = \\lfloor 0.75\\max(w, h)\\rfloor`,
  centre :math:`(c_x, c_y) = (\\lfloor x + w/2 \\rfloor, \\lfloor y + h/2 \\rfloor)`, crop
  :math:`[\\max(0, c_x - r), \\max(0, c_y - r), \\min(W, c_x + r), \\min(H, c_y + r)]`: a square of
  side :math:`1.5\\max(w, h)` around the box, clipped to the image;
* resize to :math:`S = 76/64 \\cdot s`, random :math:`s\\times s` crop + flip (train) or centre
  crop (test), scale to :math:`[-1, 1]`;
* one of the image's 10 captions at random; a caption longer than 18 tokens keeps a random
  subset of 18 tokens *in their original order*; padding with 0.

One deliberate difference from AttnGAN: when the clipped crop is not square, AttnGAN's
``Resize(S)`` keeps its aspect ratio and ``RandomCrop`` may slide along the long side; here
the crop is first reduced to the square nearest the bird's centre, so that every image has
the same ``(3, S, S)`` shape and the tensor cache (``t2ilib.data.cache``) stores exactly
what this reader computes. The datasets built on these functions (JPEG reader and the shared
item logic of the tensor cache) are in :mod:`t2ilib.data.cub_dataset`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from t2ilib.data.caption_files import CAPTIONS_PER_IMAGE, CaptionNotes, read_caption_lines
from t2ilib.data.cub_index import CUB_REMEDY, META_REMEDY, bbox_problem, box_text, read_index
from t2ilib.io import BadFileError, open_image
from t2ilib.text.vocab import (
    CaptionsPickle,
    Vocabulary,
    read_captions_pickle,
    safe_load_pickle,
    tokenize,
    write_captions_pickle,
)

__all__ = [
    "CAPTIONS_PER_IMAGE", "WORDS_NUM", "SPLITS", "bbox_crop_box", "square_box",
    "load_cropped_image", "fit_caption", "collate_sorted",
    "missing_layout", "check_layout", "read_bboxes", "read_split", "load_captions",
    "images_dir",
]

WORDS_NUM = 18
SPLITS = ("train", "test")

# ----------------------------------------------------------------------------- images

def bbox_crop_box(bbox: Sequence[float], width: int, height: int) -> tuple[int, int, int, int]:
    """AttnGAN's crop around a CUB box ``(x, y, w, h)`` in an image of ``width`` x ``height``.

    Returns ``(left, top, right, bottom)`` (right/bottom exclusive, PIL's convention): the
    square of half-side ``r = int(0.75 * max(w, h))`` centred on the box, clipped to the image.
    """
    # BEGIN EXERCISE 01:nb01_bbox_crop_box
    x, y, w, h = bbox
    r = int(max(w, h) * 0.75)
    cx = int((2 * x + w) / 2)
    cy = int((2 * y + h) / 2)
    return max(0, cx - r), max(0, cy - r), min(width, cx + r), min(height, cy + r)
    # END EXERCISE


def square_box(box: tuple[int, int, int, int], center: tuple[int, int]
               ) -> tuple[int, int, int, int]:
    """The largest square inside ``box`` whose centre is as close to ``center`` as possible.

    An unclipped AttnGAN crop is already square and comes back unchanged.
    """
    left, top, right, bottom = box
    side = min(right - left, bottom - top)
    if side <= 0:
        raise ValueError(f"empty crop box {box}")
    x0 = min(max(center[0] - side // 2, left), right - side)
    y0 = min(max(center[1] - side // 2, top), bottom - side)
    return x0, y0, x0 + side, y0 + side


def load_cropped_image(path: str | os.PathLike[str], bbox: Sequence[float] | None, size: int,
                       remedy: str = "", box_file: str | os.PathLike[str] | None = None,
                       box_label: str | None = None) -> Tensor:
    """Decode a JPEG (grayscale and CMYK become RGB), bbox-crop it, square it, resize.

    Returns a uint8 tensor ``(3, size, size)``. ``bbox=None`` uses the whole image. An
    unreadable image raises ``BadFileError`` naming it (a missing one ``FileNotFoundError``);
    a box that does not fit the image (:func:`bbox_problem`) raises ``BadFileError`` naming
    ``box_file`` (default: the image), ``box_label`` (default: the image's name) and the box.
    """
    im = open_image(path, remedy)
    width, height = im.size
    if bbox is None:
        bbox = (0.0, 0.0, float(width), float(height))
    problem = bbox_problem(bbox, width, height)
    if problem:
        raise BadFileError(box_file or path, box_text(box_label or f"image {Path(path).name}",
                                                       bbox, problem), remedy)
    box = bbox_crop_box(bbox, width, height)
    x, y, w, h = bbox
    box = square_box(box, (int((2 * x + w) / 2), int((2 * y + h) / 2)))
    im = im.crop(box).resize((size, size), Image.Resampling.BILINEAR)
    return torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1).contiguous()  # (3, S, S)


# ---------------------------------------------------------------------------- captions

def fit_caption(ids: Sequence[int], words_num: int = WORDS_NUM,
                generator: torch.Generator | None = None) -> tuple[Tensor, int]:
    """AttnGAN's length rule: pad with 0 to ``words_num``, or keep a random ordered subset.

    Returns ``(caption (words_num,) int64, length)``. A caption longer than ``words_num``
    keeps ``words_num`` randomly chosen tokens in their original order.
    """
    n = len(ids)
    if n == 0:
        raise ValueError("empty caption")
    out = torch.zeros(words_num, dtype=torch.long)
    if n <= words_num:
        out[:n] = torch.as_tensor(list(ids), dtype=torch.long)
        return out, n
    keep = torch.randperm(n, generator=generator)[:words_num].sort().values  # ordered subset
    out[:] = torch.as_tensor(list(ids), dtype=torch.long)[keep]
    return out, words_num


def collate_sorted(batch: Sequence[tuple[Tensor, Tensor, int, int, str]]
                   ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[str]]:
    """Stack items and sort them by caption length, longest first (for packed LSTMs).

    ``[(image (3,H,W), caption (T,), length, class_id, key)] * B`` ->
    ``(images (B,3,H,W), captions (B,T), lengths (B,), class_ids (B,), keys)``, all in the
    same order (ties keep their batch order).
    """
    if len(batch) == 0:
        raise ValueError("empty batch")
    images, captions, lengths, class_ids, keys = zip(*batch)
    lengths = torch.as_tensor(lengths, dtype=torch.long)                      # (B,)
    order = torch.sort(lengths, descending=True, stable=True).indices         # (B,)
    return (torch.stack(images)[order], torch.stack(captions)[order], lengths[order],
            torch.as_tensor(class_ids, dtype=torch.long)[order],
            [keys[i] for i in order.tolist()])


# ------------------------------------------------------------------------------ layout

def images_dir(root: Path) -> Path:
    return root / "CUB_200_2011" / "images"


def missing_layout(root: str | os.PathLike[str], splits: Sequence[str] = SPLITS
                   ) -> list[tuple[Path, str]]:
    """The pieces of the CUB + AttnGAN layout missing under ``root``: ``[(path, source)]``."""
    root = Path(root)
    cub = "CUB_200_2011.tgz (data_scripts/download_cub.py), extracted into this folder"
    meta = "the AttnGAN birds metadata zip (data_scripts/download_cub.py)"
    needed = {
        root / "CUB_200_2011" / "images.txt": cub,
        root / "CUB_200_2011" / "bounding_boxes.txt": cub,
        images_dir(root): cub,
        root / "text": meta,
    }
    for split in splits:
        needed[root / split / "filenames.pickle"] = meta
    return [(p, src) for p, src in needed.items() if not p.exists()]


def check_layout(root: str | os.PathLike[str], splits: Sequence[str] = SPLITS) -> Path:
    """Check that ``root`` holds the CUB + AttnGAN layout; returns ``root`` as a Path.

    Raises ``FileNotFoundError`` listing every missing piece and where it comes from.
    """
    missing = [f"  {p}  <- {src}" for p, src in missing_layout(root, splits)]
    if missing:
        raise FileNotFoundError(f"{root} is not a complete CUB + AttnGAN tree; missing:\n"
                                + "\n".join(missing))
    return Path(root)


def read_bboxes(root: str | os.PathLike[str]) -> dict[str, tuple[float, float, float, float]]:
    """``{key: (x, y, w, h)}`` joined from ``images.txt`` and ``bounding_boxes.txt`` by image id.

    Images on disk that ``images.txt`` does not list (CUB's stray ``*_rgb.jpg``) are ignored.
    A malformed line or a box that is not finite or not of positive size raises
    ``BadFileError`` naming ``bounding_boxes.txt``, the image and the box.
    """
    boxes = {}
    for key, (image_id, box) in read_index(root).items():
        if box is None:
            continue
        problem = bbox_problem(box)
        if problem:
            raise BadFileError(Path(root) / "CUB_200_2011" / "bounding_boxes.txt",
                               box_text(f"image id {image_id} ({key})", box, problem),
                               CUB_REMEDY)
        boxes[key] = box
    return boxes


def read_split(root: str | os.PathLike[str], split: str) -> tuple[list[str], list[int]]:
    """Keys and class ids of ``split`` (``filenames.pickle``, ``class_info.pickle``).

    Without ``class_info.pickle`` the class id is the number of the class folder
    (``"002.Laysan_Albatross/..."`` -> 2), which is what AttnGAN's file holds for CUB.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    folder = Path(root) / split
    keys = safe_load_pickle(folder / "filenames.pickle")
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) for k in keys):
        raise BadFileError(folder / "filenames.pickle", "not a list of image keys", META_REMEDY)
    keys = list(keys)
    info = folder / "class_info.pickle"
    if info.is_file():
        classes = safe_load_pickle(info)
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, int) for c in classes):
            raise BadFileError(info, "not a list of class ids", META_REMEDY)
        class_ids = [int(c) for c in classes]
        if len(class_ids) != len(keys):
            raise BadFileError(info, f"{len(class_ids)} class ids for {len(keys)} keys",
                               META_REMEDY)
    else:
        class_ids = [int(k.split(".", 1)[0]) for k in keys]
    return keys, class_ids


def load_captions(root: str | os.PathLike[str], captions_per_image: int = CAPTIONS_PER_IMAGE,
                  write: bool = True) -> CaptionsPickle:
    """Token ids of every caption of both splits, and the vocabulary.

    Reads ``<root>/captions.pickle`` when present (a released one must be used as is: its
    ids are what a pretrained text encoder expects). Otherwise tokenizes ``text/``, builds
    the vocabulary from train + test captions (AttnGAN's rule) and, if ``write``, saves
    ``captions.pickle`` atomically. Checks that every split has ``captions_per_image``
    non-empty captions per key.
    """
    root = Path(root)
    keys = {split: read_split(root, split)[0] for split in SPLITS}
    path = root / "captions.pickle"
    if path.is_file():
        data = read_captions_pickle(path)
    else:
        notes = CaptionNotes()
        tokens = {split: [tokenize(line)
                          for key in keys[split]
                          for line in read_caption_lines(root / "text" / f"{key}.txt",
                                                         captions_per_image, notes)]
                  for split in SPLITS}
        notes.warn(captions_per_image)
        vocab = Vocabulary.build(tokens["train"] + tokens["test"])
        data = CaptionsPickle(*(list(map(vocab.ids, tokens[s])) for s in SPLITS), vocab)
        if write:
            write_captions_pickle(path, data.train, data.test, vocab)
    for split, caps in (("train", data.train), ("test", data.test)):
        if len(caps) != captions_per_image * len(keys[split]):
            raise ValueError(f"{path}: {len(caps)} {split} captions for {len(keys[split])} "
                             f"images x {captions_per_image}; the pickle does not match the split")
        empty = [keys[split][i // captions_per_image] for i, c in enumerate(caps) if not c]
        if empty:
            raise ValueError(f"{path}: empty {split} captions for {sorted(set(empty))[:5]}")
    return data
