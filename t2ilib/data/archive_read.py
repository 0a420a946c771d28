"""Reading tar and zip archives member by member, and what a damaged one raises.

:func:`members` streams the members of a tar (any compression) or zip archive as
:class:`Member` items (name, kind, size, how to open it), without writing anything; the checks and
the extraction are :mod:`t2ilib.data.archives`'. A tar must end with its end-of-archive block (a
512-byte block of zeros): an uncompressed tar cut exactly between two members reads like a
shorter complete one otherwise. :func:`reading` turns whatever a damaged archive raises
(tarfile, zipfile, the decompressors) into one :class:`ArchiveError` naming the member.
"""

from __future__ import annotations

import contextlib
import lzma
import stat
import struct
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from t2ilib.io import BriefError

__all__ = ["ArchiveError", "UnsafeArchiveError", "Member", "members", "reading", "is_zip",
           "READ_ERRORS", "REDOWNLOAD"]

REDOWNLOAD = "download it again: the archive is corrupt or incomplete"
#: What reading a damaged tar/zip raises, from tarfile, zipfile and their decompressors.
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, OSError,
                zlib.error, lzma.LZMAError, struct.error, UnicodeDecodeError, NotImplementedError)


class ArchiveError(BriefError, ValueError):
    """An archive cannot be extracted: damaged, unreadable, or not writable here. The message
    starts with the archive's path, names the member and says what to do."""


class UnsafeArchiveError(ArchiveError):
    """An archive member would escape the destination, is not a plain file or folder, or the
    archive exceeds the limits."""


@dataclass(frozen=True)
class Member:
    name: str
    kind: str  # "file", "dir", or a description of what else it is
    size: int
    open: Callable[[], IO[bytes]]
    tarinfo: tarfile.TarInfo | None = None
    packed: int | None = None  # its compressed size (zip members only)


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


def is_zip(path: Path) -> bool:
    if path.name.lower().endswith(".zip"):
        return True
    if path.name.lower().endswith((".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz")):
        return False
    return zipfile.is_zipfile(path)


@contextlib.contextmanager
def reading(name: str | None, after: str | None = None) -> Iterator[None]:
    """Turn what a damaged archive raises while being read into an :class:`ArchiveError`."""
    try:
        yield
    except READ_ERRORS as err:
        where = (f"member {name!r} is damaged" if name is not None
                 else f"damaged after member {after!r}" if after is not None
                 else "not a readable tar or zip archive")
        lines = str(err).strip().splitlines()  # tarfile.open lists every format it tried
        detail = lines[0] if len(lines) == 1 else "neither gzip, bzip2, xz nor plain tar"
        if isinstance(err, NotImplementedError):  # e.g. zip's deflate64, bzip2 in old Pythons
            raise ArchiveError(f"member {name!r} uses a compression Python cannot read ({detail})"
                               "; unpack it with another tool (unzip, 7-Zip)") from err
        if isinstance(err, OSError) and err.errno is not None:  # the disk, not the content
            raise ArchiveError(f"cannot read the file ({err.strerror})") from err
        raise ArchiveError(f"{where} ({detail}); {REDOWNLOAD}") from err


def members(archive: Path) -> Iterator[Member]:
    """Stream the members of a tar (any compression) or zip archive, in archive order."""
    if is_zip(archive):
        with reading(None), zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                yield Member(info.filename, _zip_kind(info), info.file_size,
                             lambda info=info: zf.open(info), packed=info.compress_size)
        return
    with reading(None):
        tf, last = tarfile.open(archive, "r:*"), None
    with tf:
        while True:
            with reading(None, last):
                m = tf.next()
                if m is None:
                    _check_end(tf, last)
                    return
            last = m.name
            yield Member(m.name, _tar_kind(m), m.size,
                         lambda m=m: tf.extractfile(m), tarinfo=m)  # type: ignore[arg-type]


def _check_end(tf: tarfile.TarFile, last: str | None) -> None:
    """After the last member: the end-of-archive block must be there (``tarfile`` reads up to
    512 bytes at ``tf.offset`` before it stops, whether it finds zeros or nothing), then read
    the rest, so a compressor checks its CRC and length at the end."""
    assert tf.fileobj is not None
    found = tf.fileobj.tell() - tf.offset  # 512 at a zero block, 0 at the end of the data
    if found < tarfile.BLOCKSIZE and last is not None:
        raise ArchiveError(f"ends after member {last!r} without tar's end-of-archive block "
                           f"(the file is cut short); {REDOWNLOAD}")
    while tf.fileobj.read(1 << 20):
        pass
