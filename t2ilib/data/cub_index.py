"""The index of a CUB tree (``images.txt`` + ``bounding_boxes.txt``) and what makes a box usable.

Shared by the reader (:mod:`t2ilib.data.cub`) and the whole-tree check
(:mod:`t2ilib.data.cub_check`): :func:`read_index` parses the index, either raising on the first
bad line or collecting every :class:`Problem`; :func:`bbox_problem` says what is wrong with a box.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2ilib.io import BadFileError

__all__ = ["CUB_REMEDY", "META_REMEDY", "Problem", "bbox_problem", "box_text", "read_index"]

CUB_REMEDY = "Extract CUB_200_2011.tgz again (data_scripts/download_cub.py)"
META_REMEDY = "Extract the AttnGAN birds metadata zip again (data_scripts/download_cub.py)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file of a data tree: ``path: reason``."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def bbox_problem(bbox: Sequence[float], width: int | None = None,
                 height: int | None = None) -> str:
    """What is wrong with a box ``(x, y, w, h)`` (in a ``width`` x ``height`` image), or ``""``.

    A box must be four finite numbers with a positive width and height, big enough for
    AttnGAN's crop (``int(0.75 * max(w, h)) >= 1``), and, when the image size is given,
    overlap the image (a box partly outside is fine: its crop is clipped).
    """
    if len(bbox) != 4 or not all(math.isfinite(v) for v in bbox):
        return "is not four finite numbers"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return "has a zero or negative width or height"
    if int(0.75 * max(w, h)) < 1:
        return "is too small to crop (under 4/3 pixels)"
    if width is not None and height is not None and (
            x >= width or y >= height or x + w <= 0 or y + h <= 0):
        return f"lies entirely outside the {width} x {height} image"
    return ""


def box_text(label: str, bbox: Sequence[float], problem: str) -> str:
    """``"<label>: box (x, y, w, h) = (1, 2, nan, 4) <problem>"`` for error messages."""
    return f"{label}: box (x, y, w, h) = ({', '.join(f'{v:g}' for v in bbox)}) {problem}"


def _floats(fields: Sequence[str]) -> bool:
    try:
        return all(isinstance(float(f), float) for f in fields)
    except ValueError:
        return False


def read_index(root: str | os.PathLike[str], problems: list[Problem] | None = None
               ) -> dict[str, tuple[str, tuple[float, ...] | None]]:
    """``{key: (image id, (x, y, w, h) or None)}`` from ``images.txt`` + ``bounding_boxes.txt``.

    A malformed line raises ``BadFileError`` naming the file and line or, given a list
    ``problems``, is appended to it and skipped. Box values are not checked here
    (see :func:`bbox_problem`).
    """
    cub = Path(root) / "CUB_200_2011"
    index: dict[str, tuple[str, tuple[float, ...] | None]] = {}
    keys: dict[str, str] = {}

    def bad(path: Path, reason: str) -> None:
        if problems is None:
            raise BadFileError(path, reason, CUB_REMEDY)
        problems.append(Problem(path, reason))

    for name, n_fields in (("images.txt", 2), ("bounding_boxes.txt", 5)):
        path = cub / name
        try:
            lines = path.read_bytes().decode("utf-8").split("\n")
        except UnicodeDecodeError as err:
            bad(path, f"not UTF-8 text (offset {err.start})")
            continue
        except OSError as err:
            bad(path, f"cannot be read ({err.strerror or err})")
            continue
        for n, line in enumerate(lines, start=1):
            fields = line.split()
            if not fields:
                continue
            if len(fields) != n_fields or (n_fields == 5 and not _floats(fields[1:])):
                bad(path, f"line {n}: cannot parse {line.strip()[:80]!r}")
            elif name == "images.txt":
                keys[fields[0]] = fields[1][:-4] if fields[1].endswith(".jpg") else fields[1]
                index[keys[fields[0]]] = (fields[0], None)
            elif fields[0] not in keys:
                bad(path, f"line {n}: image id {fields[0]} is not in images.txt")
            else:
                index[keys[fields[0]]] = (fields[0], tuple(map(float, fields[1:])))
    return index
