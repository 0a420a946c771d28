"""Safe extraction of downloaded tar and zip archives.

An archive from the internet is untrusted input. ``tarfile.extractall`` without a filter writes
``../x`` and ``/abs/x`` members outside the destination and creates symlinks pointing anywhere;
even PEP 706's ``filter='data'`` had bypasses (CVE-2024-12718, CVE-2025-4138, CVE-2025-4330,
CVE-2025-4517, CVE-2026-4360) on the Python versions the course supports. ``zipfile`` rewrites
bad names silently instead of refusing them. Reference notes: ``metrics_data.md`` §4.1-4.2.

So this module never lets ``tarfile`` or ``zipfile`` decide where bytes go. For each member
$m$ with name $n(m)$, extracted under a destination $D$:

$$\\text{accept}(m) \\iff \\text{type}(m) \\in \\{\\text{file}, \\text{dir}\\}
  \\;\\wedge\\; n(m) \\text{ is relative, without } \\texttt{..}\\text{, drive letter, NUL or}
  \\texttt{\\\\} \\;\\wedge\\; \\mathrm{resolve}(D / n(m)) \\subseteq D,$$

anything else (symlinks, hard links, devices, FIFOs) is refused with an error naming the member;
``__MACOSX/`` and AppleDouble ``._*`` members are skipped. The member count and the total
unpacked size are capped (archive bombs). For tar, ``tarfile.data_filter`` is applied to every
member as well where Python has it. Files are written by this module, with plain 0o644 / 0o755
permissions; owner, mode and mtime from the archive are ignored.

Extraction is all-or-nothing: members go into a temporary folder inside the destination, which is
merged into place only once every member passed. A marker ``.<archive>.complete`` holding the
archive's SHA-256 makes a rerun skip the work.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from t2ilib.data.resources import file_digests
from t2ilib.io import atomic_write
from t2ilib.runtime import progress

__all__ = ["UnsafeArchiveError", "ExtractLimits", "ExtractReport", "safe_member_path",
           "list_members", "extract", "marker_path"]

_DRIVE = re.compile(r"^[A-Za-z]:")


class UnsafeArchiveError(ValueError):
    """An archive member would escape the destination, is not a plain file or folder, or the
    archive exceeds the limits."""


@dataclass(frozen=True)
class ExtractLimits:
    """Caps against archive bombs. CUB-200-2011 has ~12k members and ~1.2 GB unpacked."""

    max_members: int = 100_000
    max_total_bytes: int = 8 << 30


@dataclass(frozen=True)
class ExtractReport:
    """What :func:`extract` did (or found done, ``reused=True``)."""

    archive: str
    sha256: str
    n_files: int
    n_dirs: int
    n_bytes: int
    n_skipped: int
    top_level: tuple[str, ...]
    reused: bool = False


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path a member may be written to, or ``None`` to skip it.

    Skipped: ``__MACOSX/...``, AppleDouble ``._*`` files and the archive root itself (``./``).
    Raises :class:`UnsafeArchiveError` for an empty name, a NUL byte, a
    backslash, an absolute path, a drive letter or a ``..`` component.
    """
    if not name:
        raise UnsafeArchiveError("empty member name")
    if "\x00" in name:
        raise UnsafeArchiveError(f"member name {name!r} contains a NUL byte")
    if "\\" in name:
        raise UnsafeArchiveError(f"member name {name!r} contains a backslash "
                                 "(a Windows path separator)")
    if name.startswith("/"):
        raise UnsafeArchiveError(f"member {name!r} has an absolute path")
    if _DRIVE.match(name):
        raise UnsafeArchiveError(f"member {name!r} starts with a drive letter")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UnsafeArchiveError(f"member {name!r} has a '..' component (it would land "
                                 "outside the destination)")
    if not parts or parts[0] == "__MACOSX" or parts[-1].startswith("._"):
        return None
    return PurePosixPath(*parts)


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str  # "file", "dir", or a description of what else it is
    size: int
    open: Callable[[], IO[bytes]]
    tarinfo: tarfile.TarInfo | None = None


def _tar_kind(m: tarfile.TarInfo) -> str:
    if m.isreg():
        return "file"
    if m.isdir():
        return "dir"
    if m.issym():
        return f"a symbolic link (to {m.linkname!r})"
    if m.islnk():
        return f"a hard link (to {m.linkname!r})"
    if m.ischr() or m.isblk():
        return "a device file"
    if m.isfifo():
        return "a FIFO"
    return f"of tar type {m.type!r}"


def _zip_kind(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & 0x1:
        return "encrypted"
    mode = info.external_attr >> 16  # Unix mode bits when the zip was made on a Unix system
    fmt = stat.S_IFMT(mode)
    if info.is_dir():
        return "dir" if fmt in (0, stat.S_IFDIR) else f"of mode {oct(mode)}"
    if fmt in (0, stat.S_IFREG):
        return "file"
    if fmt == stat.S_IFLNK:
        return "a symbolic link"
    return f"a special file (mode {oct(mode)})"


def _is_zip(path: Path) -> bool:
    if path.name.lower().endswith(".zip"):
        return True
    if path.name.lower().endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz")):
        return False
    return zipfile.is_zipfile(path)


def _members(archive: Path) -> Iterator[_Member]:
    """Stream the members of a tar (any compression) or zip archive, in archive order."""
    if _is_zip(archive):
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                yield _Member(info.filename, _zip_kind(info), info.file_size,
                              lambda info=info: zf.open(info))
        return
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            yield _Member(m.name, _tar_kind(m), m.size,
                          lambda m=m: tf.extractfile(m), tarinfo=m)  # type: ignore[arg-type]


def _checked(archive: Path, limits: ExtractLimits,
             dest: Path) -> Iterator[tuple[_Member, PurePosixPath | None]]:
    """Members with their safe relative path (``None``: skip), enforcing every rule."""
    count, total = 0, 0
    for member in _members(archive):
        count += 1
        if count > limits.max_members:
            raise UnsafeArchiveError(f"more than {limits.max_members:,} members")
        rel = safe_member_path(member.name)
        if member.kind not in ("file", "dir"):
            raise UnsafeArchiveError(f"member {member.name!r} is {member.kind}; only regular "
                                     "files and folders are extracted")
        if member.kind == "file":
            total += member.size
            if total > limits.max_total_bytes:
                raise UnsafeArchiveError(f"unpacks to more than {limits.max_total_bytes:,} "
                                         "bytes")
        if member.tarinfo is not None and hasattr(tarfile, "data_filter"):
            try:  # belt and braces: PEP 706's own check must agree with ours
                tarfile.data_filter(member.tarinfo, str(dest))
            except tarfile.FilterError as err:
                raise UnsafeArchiveError(f"member {member.name!r} refused by tarfile's 'data' "
                                         f"filter: {err}") from err
        yield member, rel


def list_members(archive: str | os.PathLike[str],
                 limits: ExtractLimits = ExtractLimits()) -> list[str]:
    """The relative paths :func:`extract` would write (folders end with ``/``), in order.

    Junk is left out; an unsafe member raises :class:`UnsafeArchiveError`, as in extraction.
    """
    out = []
    for member, rel in _checked(Path(archive), limits, Path("/nonexistent")):
        if rel is not None:
            out.append(f"{rel}/" if member.kind == "dir" else str(rel))
    return out


def marker_path(archive: str | os.PathLike[str], dest: str | os.PathLike[str]) -> Path:
    """``<dest>/.<archive name>.complete``: written when ``archive`` is fully extracted."""
    return Path(dest) / f".{Path(archive).name}.complete"


def _inside(root: Path, target: Path) -> bool:
    try:
        target.resolve().relative_to(root)
    except ValueError:
        return False
    return True


def _move(src: Path, dst: Path) -> None:
    """Rename ``src`` over ``dst`` (a file, or a folder that does not exist yet)."""
    try:
        os.replace(src, dst)
    except OSError as err:
        if err.errno != errno.EXDEV:  # the destination is a symlink to another file system
            raise
        shutil.move(str(src), str(dst))


def _merge(src: Path, dst: Path) -> None:
    """Move the tree ``src`` into the folder ``dst``: new entries are renamed into place,
    existing folders are merged, existing files are replaced."""
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            _merge(child, target)
            child.rmdir()
        elif target.exists() and child.is_dir() != target.is_dir():
            raise FileExistsError(f"cannot move {child.name!r} into {dst}: one is a folder and "
                                  "the other a file; move the existing one away and rerun")
        else:
            _move(child, target)


def _done_report(marker: Path, dest: Path, sha256: str) -> ExtractReport | None:
    """The report stored in ``marker`` if it matches this archive and its output is still there."""
    try:
        stored = json.loads(marker.read_text(encoding="utf-8"))
        stored["top_level"] = tuple(stored["top_level"])
        report = ExtractReport(**{**stored, "reused": True})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if report.sha256 != sha256 or not all((dest / name).exists() for name in report.top_level):
        return None
    return report


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
            sha256: str | None = None, limits: ExtractLimits = ExtractLimits(),
            log: Callable[[str], None] = print) -> ExtractReport:
    """Extract a tar (any compression) or zip ``archive`` into the folder ``dest``, safely.

    ``sha256`` is the archive's digest when the caller has it (the download just verified
    it); otherwise it is computed. When ``dest`` holds a marker with the same digest and the
    top-level entries are still there, nothing is done and the stored report comes back with
    ``reused=True``. On any :class:`UnsafeArchiveError` nothing has been written to ``dest``
    (the temporary folder is removed). Returns what was extracted.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"no such archive: {archive}")
    sha256 = sha256 or file_digests(archive).sha256
    marker = marker_path(archive, dest)
    done = _done_report(marker, dest, sha256)
    if done is not None:
        log(f"[extract] {archive.name}: already extracted into {dest}, skipped")
        return done

    dest.mkdir(parents=True, exist_ok=True)
    for stale in dest.glob(f".{archive.name}.*.extracting"):  # left by an interrupted run
        shutil.rmtree(stale, ignore_errors=True)
    marker.unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=".extracting", dir=dest))
    root = tmp.resolve()
    n_files = n_dirs = n_bytes = n_skipped = 0
    top: set[str] = set()
    try:
        members = _checked(archive, limits, root)
        for member, rel in progress(members, desc=f"extracting {archive.name}", unit="file",
                                    leave=False):
            if rel is None:
                n_skipped += 1
                continue
            target = tmp.joinpath(*rel.parts)
            if not _inside(root, target):
                raise UnsafeArchiveError(f"member {member.name!r} resolves outside the "
                                         "destination")
            top.add(rel.parts[0])
            if member.kind == "dir":
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                n_dirs += 1
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            with member.open() as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            os.chmod(target, 0o644)
            n_files += 1
            n_bytes += member.size
    except UnsafeArchiveError as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UnsafeArchiveError(f"{archive.name}: {err}; refusing to extract it (nothing was "
                                 f"written to {dest})") from err
    try:
        _merge(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    report = ExtractReport(archive=archive.name, sha256=sha256, n_files=n_files, n_dirs=n_dirs,
                           n_bytes=n_bytes, n_skipped=n_skipped, top_level=tuple(sorted(top)))
    with atomic_write(marker, "w") as f:
        json.dump(asdict(report), f, indent=1)
    log(f"[extract] {archive.name}: {n_files:,} files ({n_bytes:,} bytes) into {dest}"
        + (f", {n_skipped} junk entries skipped" if n_skipped else ""))
    return report
