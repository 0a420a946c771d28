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
import glob
import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import torch

__all__ = ["BriefError", "MissingWeightsError", "BadFileError", "REMAKE", "atomic_write",
           "save_torch", "load_torch", "open_image", "read_json", "one_line_error",
           "remove_stale_temporaries", "remove_abandoned_folders", "file_sha256"]


class BriefError(Exception):
    """Mixin for errors whose message says everything: IPython and Jupyter show them as one
    line (``Name: message``) instead of a 40-line traceback (IPython's ``_render_traceback_``
    hook). Scripts still print the full traceback; the CLI prints ``t2ilib: error: ...``."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class MissingWeightsError(BriefError, FileNotFoundError):
    """Pretrained weights were asked for but no local file holds them (nothing is downloaded)."""


class BadFileError(BriefError, ValueError):
    """A file the course reads back cannot be used: empty, truncated, corrupt, of another kind.

    The message names the file, says what is wrong and what to do (usually: remake it, with
    the command that made it). ``path``, ``problem`` and ``remedy`` keep the three parts.
    The CLI prints it as one ``t2ilib: error: ...`` line (exit 2).
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, remedy: str = "") -> None:
        self.path, self.problem, self.remedy = Path(path), problem, remedy
        super().__init__(f"{path}: {problem}" + (f". {remedy}" if remedy else ""))


def one_line_error(prog: str, err: BaseException | str) -> int:
    """Print ``<prog>: error: <message>`` as one line on stderr; returns exit status 2.
    The scripts' answer to a bad file or argument (the CLI's argparse prints the same)."""
    print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


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
REMAKE = ("Remake it: re-run the notebook or command that wrote it (retrain=True / --retrain), "
          "or delete it")


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


def file_sha256(path: str | os.PathLike[str]) -> str:
    """The SHA-256 of a file (hex), read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
