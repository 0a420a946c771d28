"""Safe file I/O: atomic writes and ``weights_only`` checkpoint loading.

Everything the course writes that a crash must not corrupt (checkpoints, tensor caches,
downloaded files) goes through :func:`atomic_write`: the bytes go to a temporary file in
the same directory, are flushed and ``fsync``-ed, then renamed over the target. A rename
within one file system is atomic, so readers see either the old file or the new one,
never half of one.

Everything the course reads back with ``torch.load`` goes through :func:`load_torch`,
which always passes ``weights_only=True``: a checkpoint is data, and unpickling
arbitrary objects would let a downloaded file run code.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["MissingWeightsError", "atomic_write", "save_torch", "load_torch",
           "remove_stale_temporaries"]


class MissingWeightsError(FileNotFoundError):
    """Pretrained weights were asked for but no local file holds them (nothing is downloaded)."""


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success rename it to ``path``.

    If the block raises, the temporary file is removed and ``path`` is untouched.

    >>> with atomic_write("out.txt", "w") as f:  # doctest: +SKIP
    ...     f.write("hello")
    """
    if "w" not in mode:
        raise ValueError(f"atomic_write needs a write mode, got {mode!r}")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_torch(obj: Any, path: str | os.PathLike[str]) -> Path:
    """``torch.save`` ``obj`` to ``path`` atomically; returns the path.

    Keep ``obj`` to plain types (tensors, numbers, strings, lists, dicts) so that
    :func:`load_torch` can read it back with ``weights_only=True``.
    """
    with atomic_write(path, "wb") as f:
        torch.save(obj, f)
    return Path(path)


def load_torch(path: str | os.PathLike[str], map_location: str | torch.device = "cpu",
               mmap: bool = False) -> Any:
    """``torch.load`` with ``weights_only=True`` (never unpickles code).

    ``mmap=True`` memory-maps the tensors instead of reading them into RAM.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    return torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.<random>.tmp``) that :func:`atomic_write` leaves
    when its process is killed mid-write; returns what was removed. Call it when a process
    starts writing to ``folder`` (the training engine does), not while another one writes."""
    folder = Path(folder)
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed
