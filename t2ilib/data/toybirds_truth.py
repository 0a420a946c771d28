"""The ground truth of a ToyBirds folder: every bird's attributes, what each caption mentions,
its box, its split and its mask (``groundtruth/attributes.json``, ``groundtruth/masks.npy``,
written by :func:`t2ilib.data.toybirds.write_toybirds`). The oracle and the ToyBirds metrics
read it through :func:`load_groundtruth`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from t2ilib.io import BadFileError, read_json

__all__ = ["ToyBirdsTruth", "load_groundtruth", "REBUILD"]

#: What to do when a file of a ToyBirds folder cannot be read.
REBUILD = "Make the data set again: delete the ToyBirds folder and call ensure_toybirds()"


@dataclass
class ToyBirdsTruth:
    """Ground truth of a ToyBirds folder (see :func:`load_groundtruth`).

    Attributes:
        keys: image keys in ``images.txt`` order (the row order of ``packed_masks``).
        attributes: ``{key: {attribute: value, ..., "position": [u, v]}}``.
        mentions: ``{key: [[attribute names of caption j] for j in 0..9]}``.
        boxes: ``{key: [x, y, w, h]}``, the tight box around the bird mask.
        splits: ``{key: "train" | "test"}``.
        packed_masks: ``(N, H, ceil(W/8))`` uint8, ``np.packbits`` of the masks along W.
        size: image side H = W.
    """

    keys: list[str]
    attributes: dict[str, dict[str, Any]]
    mentions: dict[str, list[list[str]]]
    boxes: dict[str, list[int]]
    splits: dict[str, str]
    packed_masks: np.ndarray
    size: int

    def mask(self, key: str) -> np.ndarray:
        """The bird mask of ``key``: bool ``(H, W)``."""
        row = self.packed_masks[self.keys.index(key)]
        return np.unpackbits(row, axis=-1, count=self.size).astype(bool)

    def masks(self) -> np.ndarray:
        """All masks: bool ``(N, H, W)`` in :attr:`keys` order."""
        return np.unpackbits(self.packed_masks, axis=-1, count=self.size).astype(bool)


def load_groundtruth(root: str | os.PathLike[str]) -> ToyBirdsTruth:
    """Read ``groundtruth/attributes.json`` and ``groundtruth/masks.npy`` of a ToyBirds folder."""
    gt = Path(root) / "groundtruth"
    truth = read_json(gt / "attributes.json", REBUILD)
    images = truth["images"]
    keys = truth["keys"]
    try:
        packed = np.load(gt / "masks.npy", allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise BadFileError(gt / "masks.npy", f"not a readable mask array ({err})",
                           REBUILD) from None
    if packed.shape[0] != len(keys):
        raise BadFileError(gt, f"{packed.shape[0]} masks for {len(keys)} images", REBUILD)
    return ToyBirdsTruth(keys=keys,
                         attributes={k: images[k]["attributes"] for k in keys},
                         mentions={k: images[k]["mentions"] for k in keys},
                         boxes={k: images[k]["bird_box"] for k in keys},
                         splits={k: images[k]["split"] for k in keys},
                         packed_masks=packed, size=int(truth["size"]))
