"""Writes a crash cannot corrupt, and clean-up after a writer that was killed.

Everything the course writes that a crash must not corrupt (checkpoints, tensor caches,
downloaded files) goes through :func:`atomic_write`: the bytes go to a temporary file in
the same directory, are flushed and ``fsync``-ed, then renamed over the target. A rename
within one file system is atomic, so readers see either the old file or the new one,
never half of one. A writer killed mid-write leaves its temporary file (or, for a build in a
sibling folder, that folder); :func:`remove_stale_temporaries` and
:func:`remove_abandoned_folders` remove them once their process is gone.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["atomic_write", "save_torch", "remove_stale_temporaries", "remove_abandoned_folders"]


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
    # .<name>.<pid>.<random>.tmp: the pid tells a killed writer's file from a running one's
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp",
                               dir=target.parent)
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


#: What to do with a file the course wrote itself and cannot read back.


_TEMPORARY_PID = re.compile(r"\.(\d+)\.\w+\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files (``.<name>.<pid>.<random>.tmp``) that :func:`atomic_write`
    leaves when its process is killed mid-write; returns what was removed. A file whose
    process still runs is another writer's, busy (two test workers building one cache), and
    is left alone; a file without a pid (older versions) counts as abandoned."""
    folder = Path(folder)
    removed = []
    for tmp in folder.glob(".*.tmp") if folder.is_dir() else ():
        pid = _TEMPORARY_PID.search(tmp.name)
        if pid is not None and _running(int(pid.group(1))):
            continue
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            removed.append(tmp)
    return removed


def remove_abandoned_folders(parent: str | os.PathLike[str], prefix: str) -> list[Path]:
    """Delete the folders ``<parent>/<prefix><pid>`` whose process ``pid`` no longer runs:
    what a build in a temporary sibling folder leaves when it is killed (kill -9, power
    loss). A folder of a process still running is left alone. Returns what was removed."""
    removed = []
    for folder in Path(parent).glob(f"{glob.escape(prefix)}*") if Path(parent).is_dir() else ():
        pid = folder.name[len(prefix):]
        if folder.is_dir() and pid.isdigit() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True
