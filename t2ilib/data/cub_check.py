"""Check every file of a CUB + AttnGAN tree before anything is built from it.

A real download can be damaged in many small ways: a JPEG cut short, a file that is not an
image, a bounding box with a NaN or outside its image, a caption file that is not text, a
split pickle that is empty or was tampered with. Reading such a tree stops at the first bad
file; :func:`check_files` instead reads *every* file the readers of
:mod:`t2ilib.data.cub` use (decoding every image) and returns all that is wrong as
:class:`Problem` ``(path, reason)`` items, so ``data_scripts/prepare_cub.py`` can report them
together and write nothing.

The low-level pieces the reader shares with the check live here too: :func:`read_index`
(``images.txt`` + ``bounding_boxes.txt``), :func:`bbox_problem` (is a box usable?).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2ilib.io import BadFileError, open_image
from t2ilib.runtime import progress
from t2ilib.text.vocab import safe_load_pickle

__all__ = ["CUB_REMEDY", "META_REMEDY", "Problem", "bbox_problem", "box_text", "read_index",
           "check_files"]

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


def _without_prefix(message: str, path: Path) -> str:
    message = " ".join(message.split())
    return message.removeprefix(f"{path}: ")


def check_files(root: str | os.PathLike[str], splits: Sequence[str] | None = None,
                captions_per_image: int | None = None) -> list[Problem]:
    """Read every file of a CUB + AttnGAN tree; return everything wrong (``[]``: all good).

    Checks the layout, ``images.txt`` and ``bounding_boxes.txt`` (every line and box), the
    split pickles, then for every image of every split: that it decodes (:func:`open_image`),
    that its box overlaps it, and that its caption file is UTF-8 text with
    ``captions_per_image`` captions; finally ``captions.pickle`` if present. Writes nothing.
    """
    from t2ilib.data import cub  # cub builds on this module: import it when needed

    root = Path(root)
    splits = cub.SPLITS if splits is None else tuple(splits)
    n_captions = cub.CAPTIONS_PER_IMAGE if captions_per_image is None else captions_per_image
    problems = [Problem(path, f"missing (from {source})")
                for path, source in cub.missing_layout(root, splits)]
    if problems:
        return problems
    images_txt = root / "CUB_200_2011" / "images.txt"
    boxes_txt = root / "CUB_200_2011" / "bounding_boxes.txt"
    index = read_index(root, problems)
    sizes: dict[str, tuple[int, int]] = {}
    splits_ok = True
    for split in splits:
        try:
            keys = cub.read_split(root, split)[0]
        except BadFileError as err:
            problems.append(Problem(err.path, err.problem))
            splits_ok = False
            if err.path.name != "class_info.pickle":
                continue
            keys = safe_load_pickle(root / split / "filenames.pickle")  # read_split read it
        for key in progress(keys, desc=f"checking {split}", unit="image"):
            image = root / "CUB_200_2011" / "images" / f"{key}.jpg"
            try:
                sizes[key] = open_image(image).size
            except FileNotFoundError:
                problems.append(Problem(image, f"missing (named in {split}/filenames.pickle)"))
            except BadFileError as err:
                problems.append(Problem(err.path, err.problem))
            if key not in index:
                problems.append(Problem(images_txt, f"does not list {key}.jpg "
                                        f"(named in {split}/filenames.pickle)"))
            elif index[key][1] is None:
                problems.append(Problem(boxes_txt, f"no box for image id {index[key][0]} ({key})"))
            text = root / "text" / f"{key}.txt"
            try:
                cub.read_caption_lines(text, n_captions)
            except FileNotFoundError:
                problems.append(Problem(text, "missing caption file"))
            except BadFileError as err:
                problems.append(Problem(err.path, err.problem))
            except OSError as err:
                problems.append(Problem(text, f"cannot be read ({err.strerror or err})"))
    for key, (image_id, box) in index.items():  # in file order; with the image size if known
        problem = "" if box is None else bbox_problem(box, *sizes.get(key, (None, None)))
        if problem:
            problems.append(Problem(boxes_txt, box_text(f"image id {image_id} ({key})", box,
                                                        problem)))
    pickle_path = root / "captions.pickle"
    if splits_ok and pickle_path.is_file():
        try:
            cub.load_captions(root, n_captions, write=False)
        except BadFileError as err:
            problems.append(Problem(err.path, err.problem))
        except (ValueError, TypeError, AttributeError, KeyError) as err:
            problems.append(Problem(pickle_path, "not AttnGAN's captions.pickle for this tree ("
                                    + _without_prefix(str(err), pickle_path) + ")"))
    return sorted(problems, key=lambda p: str(p.path))  # stable: each file's in its order
