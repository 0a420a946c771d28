"""Reading what the course wrote or downloaded, safely: checkpoints, images, JSON, digests.

Everything the course reads back with ``torch.load`` goes through :func:`load_torch`,
which always passes ``weights_only=True``: a checkpoint is data, and unpickling
arbitrary objects would let a downloaded file run code. Every reader names the file and what
is wrong with it (:class:`~t2ilib.io.errors.BadFileError`) instead of a library's traceback.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from t2ilib.io.errors import REMAKE, BadFileError

__all__ = ["load_torch", "open_image", "read_json", "file_sha256"]


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
               mmap: bool = False, remedy: str = REMAKE) -> Any:
    """``torch.load`` with ``weights_only=True`` (never unpickles code).

    ``mmap=True`` memory-maps the tensors instead of reading them into RAM. A missing file
    raises ``FileNotFoundError``; every other failure (an empty, truncated or corrupt file,
    another kind of file, a file holding objects that are not plain data) raises
    :class:`BadFileError` naming the file, what is wrong and ``remedy``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file")
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    if path.stat().st_size == 0:
        raise BadFileError(path, "the file is empty (a write that never finished?)", remedy)
    try:
        return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except PermissionError as err:  # the file is fine; this user may not read it
        raise PermissionError(f"{path}: cannot be read: permission denied ({err.strerror or err})"
                              "; check the file's owner and mode") from None
    except pickle.UnpicklingError as err:
        found = re.search(r"(?:Unsupported global: |unsupported )GLOBAL (\S+)", str(err))
        if found:  # weights_only refused to import something: a pickled object, never run
            problem = (f"it holds a pickled object ({found.group(1)}), not only tensors and "
                       "plain data; such files are never unpickled")
        else:
            problem = ("not a readable PyTorch file: truncated, corrupt or of another kind "
                       "(the unpickler stopped)")
        raise BadFileError(path, problem, remedy) from None
    except (EOFError, RuntimeError, OSError, ValueError, KeyError, IndexError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
        raise BadFileError(path, f"not a readable PyTorch file: truncated, corrupt or of "
                           f"another kind ({type(err).__name__}: {first[:120]})", remedy) from None


def open_image(path: str | os.PathLike[str], remedy: str = "") -> Any:
    """Read an image file completely as an RGB ``PIL.Image``.

    Every way a file can fail to be an image (missing, empty, truncated, not an image, a
    decompression bomb) raises :class:`BadFileError` naming the file, with ``remedy`` (what to
    do) appended; a missing file raises ``FileNotFoundError``. Grayscale, palette and CMYK
    files are converted to RGB.
    """
    from PIL import Image

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such image: {path}")
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later in a worker
            return image.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        reason = " ".join(str(err).split()) or type(err).__name__
        raise BadFileError(path, f"not a readable image ({reason})", remedy) from None


def read_json(path: str | os.PathLike[str], remedy: str = REMAKE) -> Any:
    """The JSON in ``path``; a missing file raises ``FileNotFoundError``, an unreadable one
    (empty, cut short, not UTF-8, not JSON) :class:`BadFileError` naming it and ``remedy``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BadFileError(path, f"not valid JSON ({err})", remedy) from None


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
