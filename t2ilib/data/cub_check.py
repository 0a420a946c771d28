"""Check every file of a CUB + AttnGAN tree before anything is built from it.

A real download can be damaged in many small ways: a JPEG cut short, a file that is not an
image, a bounding box with a NaN or outside its image, a caption file that is not text, a
split pickle that is empty or was tampered with. Reading such a tree stops at the first bad
file; :func:`check_files` instead reads *every* file the readers of
:mod:`t2ilib.data.cub` use (decoding every image) and returns all that is wrong as
:class:`Problem` ``(path, reason)`` items, so ``data_scripts/prepare_cub.py`` can report them
together and write nothing.

The low-level pieces the reader shares with the check (:func:`read_index`, :func:`bbox_problem`)
live in :mod:`t2ilib.data.cub_index`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from t2ilib.data import cub
from t2ilib.data.caption_files import CAPTIONS_PER_IMAGE, read_caption_lines
from t2ilib.data.cub_index import Problem, bbox_problem, box_text, read_index
from t2ilib.io import BadFileError, open_image
from t2ilib.runtime import progress
from t2ilib.text.vocab import safe_load_pickle

__all__ = ["check_files"]


def _without_prefix(message: str, path: Path) -> str:
    message = " ".join(message.split())
    return message.removeprefix(f"{path}: ")


def _check_image(root: Path, split: str, key: str,
                 index: dict[str, tuple[str, tuple[float, ...] | None]],
                 sizes: dict[str, tuple[int, int]], n_captions: int) -> list[Problem]:
    """What is wrong with one image of ``split``: its JPEG (decoded; its size goes into
    ``sizes``), its lines in the index, its caption file."""
    problems = []
    image = root / "CUB_200_2011" / "images" / f"{key}.jpg"
    try:
        sizes[key] = open_image(image).size
    except FileNotFoundError:
        problems.append(Problem(image, f"missing (named in {split}/filenames.pickle)"))
    except BadFileError as err:
        problems.append(Problem(err.path, err.problem))
    if key not in index:
        problems.append(Problem(root / "CUB_200_2011" / "images.txt",
                                f"does not list {key}.jpg (named in {split}/filenames.pickle)"))
    elif index[key][1] is None:
        problems.append(Problem(root / "CUB_200_2011" / "bounding_boxes.txt",
                                f"no box for image id {index[key][0]} ({key})"))
    text = root / "text" / f"{key}.txt"
    try:
        read_caption_lines(text, n_captions)
    except FileNotFoundError:
        problems.append(Problem(text, "missing caption file"))
    except BadFileError as err:
        problems.append(Problem(err.path, err.problem))
    except OSError as err:
        problems.append(Problem(text, f"cannot be read ({err.strerror or err})"))
    return problems


def check_files(root: str | os.PathLike[str], splits: Sequence[str] | None = None,
                captions_per_image: int | None = None) -> list[Problem]:
    """Read every file of a CUB + AttnGAN tree; return everything wrong (``[]``: all good).

    Checks the layout, ``images.txt`` and ``bounding_boxes.txt`` (every line and box), the
    split pickles, then for every image of every split: that it decodes (:func:`open_image`),
    that its box overlaps it, and that its caption file is UTF-8 text with
    ``captions_per_image`` captions; finally ``captions.pickle`` if present. Writes nothing.
    """
    root = Path(root)
    splits = cub.SPLITS if splits is None else tuple(splits)
    n_captions = CAPTIONS_PER_IMAGE if captions_per_image is None else captions_per_image
    problems = [Problem(path, f"missing (from {source})")
                for path, source in cub.missing_layout(root, splits)]
    if problems:
        return problems
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
            problems += _check_image(root, split, key, index, sizes, n_captions)
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
