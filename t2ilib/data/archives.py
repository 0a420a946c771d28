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
unpacked size are capped, and so is the expansion ratio, of the whole archive and of each zip
member (archive bombs). For tar, ``tarfile.data_filter`` is applied to every
member as well where Python has it. Files are written by this module, with plain 0o644 / 0o755
permissions; owner, mode and mtime from the archive are ignored.

Extraction is all-or-nothing: members go into a temporary folder inside the destination, which is
merged into place only once every member passed. A marker ``.<archive>.complete`` holding the
archive's SHA-256 makes a rerun skip the work.

Failures: each is one :class:`ArchiveError` (a ``ValueError``) whose message starts with the
archive's path, names the member, says what is wrong and what to do: :class:`UnsafeArchiveError`
(a subclass) for the rules and limits above, plain ``ArchiveError`` for a damaged archive (not a
tar or zip, cut short, bad CRC: download it again), one no file system can hold (a file and a
folder of one name, a name part over 255 bytes) or a destination that cannot be written. The
temporary folder ``.<archive>.<random>.extracting`` is removed on any failure (Ctrl-C included);
one left by a killed process goes at the next :func:`extract` into that destination. A file of
the destination where the archive has a folder (or the reverse) is found before anything moves.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from t2ilib.data.archive_read import (
    REDOWNLOAD,
    ArchiveError,
    Member,
    UnsafeArchiveError,
    members,
    reading,
)
from t2ilib.data.resources import file_digests
from t2ilib.io import atomic_write
from t2ilib.runtime import progress

__all__ = ["ArchiveError", "UnsafeArchiveError", "ExtractLimits", "ExtractReport",
           "safe_member_path", "list_members", "extract", "marker_path"]

_DRIVE = re.compile(r"^[A-Za-z]:")
_TMP = ".extracting"  # suffix of the temporary folder, .<archive>.<8 random chars>.extracting


@dataclass(frozen=True)
class ExtractLimits:
    """Caps against archive bombs. CUB-200-2011 has ~12k members and ~1.2 GB unpacked from
    1.1 GB; AttnGAN's birds metadata expands about 4x.

    Expansion (unpacked bytes over packed bytes) is capped at ``max_ratio`` for the whole
    archive and, for zip, for each member; expansion to under ``ratio_free_bytes`` never counts
    (tiny text files compress well).
    """

    max_members: int = 100_000
    max_total_bytes: int = 8 << 30
    max_ratio: float = 200.0
    ratio_free_bytes: int = 16 << 20


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


def _check_ratio(name: str, size: int, packed: int | None, limits: ExtractLimits,
                 what: str) -> None:
    """Refuse ``size`` unpacked bytes from ``packed`` ones beyond :class:`ExtractLimits`."""
    if packed is None or size <= max(limits.ratio_free_bytes, limits.max_ratio * packed):
        return
    subject = (f"member {name!r}" if what == "member"
               else f"the archive, by member {name!r},")
    raise UnsafeArchiveError(f"{subject} expands {size / max(packed, 1):,.0f}x ({packed:,} -> "
                             f"{size:,} bytes), over the limit of {limits.max_ratio:,.0f}x "
                             "(an archive bomb?)")


def _checked(archive: Path, limits: ExtractLimits,
             dest: Path) -> Iterator[tuple[Member, PurePosixPath | None]]:
    """Members with their safe relative path (``None``: skip), enforcing every rule."""
    count, total, packed_size = 0, 0, archive.stat().st_size
    files: set[PurePosixPath] = set()
    dirs: set[PurePosixPath] = set()
    for member in members(archive):
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
            _check_ratio(member.name, member.size, member.packed, limits, "member")
            _check_ratio(member.name, total, packed_size, limits, "archive")
        if member.tarinfo is not None and hasattr(tarfile, "data_filter"):
            try:  # belt and braces: PEP 706's own check must agree with ours
                tarfile.data_filter(member.tarinfo, str(dest))
            except tarfile.FilterError as err:
                raise UnsafeArchiveError(f"member {member.name!r} refused by tarfile's 'data' "
                                         f"filter: {err}") from err
        if rel is not None:
            parents = set(rel.parents) - {PurePosixPath(".")}
            clash = min(map(str, parents & files), default=None)
            if clash is None and rel in (dirs if member.kind == "file" else files):
                clash = f"{rel}/" if member.kind == "file" else str(rel)
            if clash is not None:
                raise ArchiveError(f"member {member.name!r} and the member {clash!r} are a file "
                                   "and a folder of the same name, which no file system can "
                                   "hold; get a fixed copy of the archive, or unpack it by hand")
            dirs |= parents
            (files if member.kind == "file" else dirs).add(rel)
        yield member, rel


def list_members(archive: str | os.PathLike[str],
                 limits: ExtractLimits = ExtractLimits()) -> list[str]:
    """The relative paths :func:`extract` would write (folders end with ``/``), in order.

    Junk is left out; an unsafe member raises :class:`UnsafeArchiveError`, as in extraction.
    """
    out = []
    try:
        for member, rel in _checked(Path(archive), limits, Path("/nonexistent")):
            if rel is not None:
                out.append(f"{rel}/" if member.kind == "dir" else str(rel))
    except ArchiveError as err:
        raise type(err)(f"{archive}: {err}") from err
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


def _merge(src: Path, dst: Path, check: bool = False) -> Path | None:
    """Move the tree ``src`` into the folder ``dst``: new entries are renamed into place,
    existing folders are merged, existing files are replaced. Returns the first path of ``dst``
    that is a file where ``src`` has a folder or the reverse (``check``: move nothing)."""
    for child in sorted(src.iterdir()):
        target = dst / child.name
        if child.is_dir() and target.is_dir():
            if (found := _merge(child, target, check)) is not None:
                return found
            if not check:
                child.rmdir()
        elif (target.exists() or target.is_symlink()) and child.is_dir() != target.is_dir():
            return target
        elif not check:
            _move(child, target)
    return None


_CLASH = ("clashes with another member here (a file and a folder of the same name, or names "
          "that differ only in case); unpack it by hand")
_FULL = "failed: no space left in {dest}; free some space and rerun"
_DENIED = "failed: {dest} is not writable ({why}); fix that or extract elsewhere"
#: What an ``errno`` met while writing means, and what to do.
_WRITE_ERRORS = {errno.EEXIST: _CLASH, errno.EISDIR: _CLASH, errno.ENOTDIR: _CLASH,
                 errno.ENOSPC: _FULL, getattr(errno, "EDQUOT", errno.ENOSPC): _FULL,
                 errno.EACCES: _DENIED, errno.EPERM: _DENIED, errno.EROFS: _DENIED,
                 errno.ENAMETOOLONG: "has a name too long for this file system (over 255 bytes "
                 "in one part); get a fixed copy of the archive, or unpack it by hand"}


@contextlib.contextmanager
def _writing(name: str | None, dest: Path) -> Iterator[None]:
    """Turn an ``OSError`` from writing member ``name`` (``None``: the temporary folder, or
    the merge into ``dest``) into an :class:`ArchiveError` saying why and what to do."""
    try:
        yield
    except OSError as err:
        what = (f"member {name[:60]!r}...({len(name)} characters)" if name and len(name) > 120
                else f"member {name!r}" if name else "extracting")
        why = _WRITE_ERRORS.get(err.errno or 0, "failed in {dest} ({why})")
        raise ArchiveError(f"{what} {why.format(dest=dest, why=err.strerror or err)}") from err


def _copy(member: Member, target: Path) -> int:
    """Write ``member`` to ``target``; returns the bytes written. tarfile and zipfile stop at
    the declared size, so the size limit checked on those holds; a shorter member is counted
    as it is."""
    with reading(member.name):
        src = member.open()
    n = 0
    with src, open(target, "wb") as out:
        while True:
            with reading(member.name):
                chunk = src.read(1 << 20)
            if not chunk:
                return n
            out.write(chunk)
            n += len(chunk)


def _remove_stale(archive: Path, dest: Path) -> None:
    """Remove temporary folders left in ``dest`` by an interrupted :func:`extract` (kill -9)."""
    pattern = re.compile(re.escape(f".{archive.name}.") + r"[a-z0-9_]{8}" + re.escape(_TMP))
    for stale in dest.iterdir() if dest.is_dir() else ():
        if pattern.fullmatch(stale.name) and stale.is_dir() and not stale.is_symlink():
            shutil.rmtree(stale, ignore_errors=True)


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


def _unpack(archive: Path, limits: ExtractLimits, tmp: Path,
            dest: Path) -> tuple[int, int, int, int, set[str]]:
    """Write every checked member into the temporary folder ``tmp``; returns the counts of
    files, folders, bytes and skipped junk, and the top-level names."""
    n_files = n_dirs = n_bytes = n_skipped = 0
    top: set[str] = set()
    root = tmp.resolve()
    checked = _checked(archive, limits, root)
    for member, rel in progress(checked, desc=f"extracting {archive.name}", unit="file",
                                leave=False):
        if rel is None:
            n_skipped += 1
            continue
        target = tmp.joinpath(*rel.parts)
        if not _inside(root, target):
            raise UnsafeArchiveError(f"member {member.name!r} resolves outside the destination")
        top.add(rel.parts[0])
        with _writing(member.name, dest):
            if member.kind == "dir":
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
                n_dirs += 1
                continue
            target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            n_bytes += _copy(member, target)
            os.chmod(target, 0o644)
            n_files += 1
    return n_files, n_dirs, n_bytes, n_skipped, top


def extract(archive: str | os.PathLike[str], dest: str | os.PathLike[str], *,
            sha256: str | None = None, limits: ExtractLimits = ExtractLimits(),
            log: Callable[[str], None] = print) -> ExtractReport:
    """Extract a tar (any compression) or zip ``archive`` into the folder ``dest``, safely.

    ``sha256`` is the archive's digest when the caller has it (the download just verified
    it); otherwise it is computed. When ``dest`` holds a marker with the same digest and the
    top-level entries are still there, nothing is done and the stored report comes back with
    ``reused=True``. On any :class:`ArchiveError` nothing has been written to ``dest`` (but
    for a rare failure of the final move, e.g. disk full). Returns what was extracted.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise FileNotFoundError(f"no such archive: {archive}")
    _remove_stale(archive, dest)
    sha256 = sha256 or file_digests(archive).sha256
    marker = marker_path(archive, dest)
    if (done := _done_report(marker, dest, sha256)) is not None:
        log(f"[extract] {archive.name}: already extracted into {dest}, skipped")
        return done

    tmp, merging = None, False
    try:
        with _writing(None, dest):
            dest.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".{archive.name}.", suffix=_TMP, dir=dest))
        n_files, n_dirs, n_bytes, n_skipped, top = _unpack(archive, limits, tmp, dest)
        if n_files == 0:
            raise ArchiveError(f"holds no files; {REDOWNLOAD}")
        if (clash := _merge(tmp, dest, check=True)) is not None:
            raise FileExistsError(f"{archive}: cannot extract into {dest}: {clash} is a "
                                  f"{'folder' if clash.is_dir() else 'file'} where the archive "
                                  "has the opposite; move it away and rerun (nothing written)")
        merging = True
        with _writing(None, dest):
            marker.unlink(missing_ok=True)
            _merge(tmp, dest)
    except ArchiveError as err:
        how = "; refusing to extract it" if isinstance(err, UnsafeArchiveError) else ""
        how += "; rerun once fixed" if merging else f" (nothing was written to {dest})"
        raise type(err)(f"{archive}: {err}{how}") from err
    finally:  # after success too: the merge left it empty
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)

    report = ExtractReport(archive=archive.name, sha256=sha256, n_files=n_files, n_dirs=n_dirs,
                           n_bytes=n_bytes, n_skipped=n_skipped, top_level=tuple(sorted(top)))
    with atomic_write(marker, "w") as f:
        json.dump(asdict(report), f, indent=1)
    log(f"[extract] {archive.name}: {n_files:,} files ({n_bytes:,} bytes) into {dest}"
        + (f", {n_skipped} junk entries skipped" if n_skipped else ""))
    return report
