"""Safe extraction: archives built here, good and malicious; nothing may land outside ``dest``."""

from __future__ import annotations

import errno
import gzip
import hashlib
import io
import json
import random
import re
import stat
import struct
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from t2ilib.data import archives
from t2ilib.data.archives import (
    ArchiveError,
    ExtractLimits,
    UnsafeArchiveError,
    extract,
    list_members,
    marker_path,
    safe_member_path,
)

QUIET = {"log": lambda _: None}


def tar_entry(name: str, data: bytes = b"", *, kind: bytes = tarfile.REGTYPE,
              linkname: str = "", mode: int = 0o644) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, mode
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    return info, data


def make_tgz(path: Path, entries: list[tuple[tarfile.TarInfo, bytes]]) -> Path:
    """A deterministic .tgz (tar mtimes 0, gzip mtime 0)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in entries:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    path.write_bytes(gzip.compress(buf.getvalue(), mtime=0))
    return path


def make_zip(path: Path, entries: dict[str, bytes], modes: dict[str, int] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            info = zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0))
            if modes and name in modes:
                info.create_system = 3  # Unix, so the mode bits are read
                info.external_attr = modes[name] << 16
            zf.writestr(info, data)
    return path


def tree(root: Path) -> set[str]:
    """Every path under ``root`` (hidden ones included), relative, as strings."""
    return {str(p.relative_to(root)) for p in root.rglob("*")}


GOOD = [tar_entry("CUB_200_2011/", kind=tarfile.DIRTYPE, mode=0o755),
        tar_entry("CUB_200_2011/images.txt", b"1 001.A/a.jpg\n"),
        tar_entry("CUB_200_2011/images/001.A/a.jpg", b"\xff\xd8jpeg", mode=0o4755),
        tar_entry("attributes.txt", b"1 has_bill\n")]


def test_tar_is_extracted_with_plain_permissions_and_a_marker(tmp_path):
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    dest = tmp_path / "birds"
    report = extract(archive, dest, **QUIET)
    assert (dest / "CUB_200_2011" / "images.txt").read_bytes() == b"1 001.A/a.jpg\n"
    jpg = dest / "CUB_200_2011" / "images" / "001.A" / "a.jpg"
    assert jpg.read_bytes() == b"\xff\xd8jpeg"
    assert stat.S_IMODE(jpg.stat().st_mode) == 0o644  # the archive's setuid 0o4755 is not copied
    assert (report.n_files, report.n_dirs, report.n_bytes) == (3, 1, 14 + 6 + 11)
    assert report.top_level == ("CUB_200_2011", "attributes.txt") and not report.reused
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert json.loads(marker_path(archive, dest).read_text())["sha256"] == digest
    assert tree(dest) == {".cub.tgz.complete", "attributes.txt", "CUB_200_2011",
                          "CUB_200_2011/images.txt", "CUB_200_2011/images",
                          "CUB_200_2011/images/001.A", "CUB_200_2011/images/001.A/a.jpg"}


def test_rerun_is_skipped_until_the_archive_or_the_output_changes(tmp_path):
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    dest = tmp_path / "birds"
    extract(archive, dest, **QUIET)
    (dest / "attributes.txt").write_bytes(b"edited")
    again = extract(archive, dest, **QUIET)
    assert again.reused and again.n_files == 3
    assert (dest / "attributes.txt").read_bytes() == b"edited"  # not rewritten

    make_tgz(archive, GOOD[:-1] + [tar_entry("attributes.txt", b"new\n")])  # new archive
    assert not extract(archive, dest, **QUIET).reused
    assert (dest / "attributes.txt").read_bytes() == b"new\n"

    import shutil
    shutil.rmtree(dest / "CUB_200_2011")  # output deleted: extract again despite the marker
    assert not extract(archive, dest, **QUIET).reused
    assert (dest / "CUB_200_2011" / "images.txt").is_file()


def test_leading_dot_slash_names_as_tar_dash_c_writes_them(tmp_path):
    archive = make_tgz(tmp_path / "a.tgz", [tar_entry("./", kind=tarfile.DIRTYPE),
                                            tar_entry("./jpg/image_00001.jpg", b"x")])
    extract(archive, tmp_path / "out", **QUIET)
    assert (tmp_path / "out" / "jpg" / "image_00001.jpg").read_bytes() == b"x"


def test_merges_into_an_existing_folder(tmp_path):
    dest = tmp_path / "data"
    (dest / "birds").mkdir(parents=True)
    (dest / "birds" / "mine.txt").write_text("keep me")
    archive = make_zip(tmp_path / "birds.zip", {"birds/text/a.txt": b"caption"})
    extract(archive, dest, **QUIET)
    assert (dest / "birds" / "mine.txt").read_text() == "keep me"
    assert (dest / "birds" / "text" / "a.txt").read_bytes() == b"caption"


@pytest.mark.parametrize("bad, why", [
    (tar_entry("../escape.txt", b"evil"), "'..'"),
    (tar_entry("ok/../../escape.txt", b"evil"), "'..'"),
    (tar_entry("ABSOLUTE", b"evil"), "absolute"),
    (tar_entry("C:/escape.txt", b"evil"), "drive letter"),
    (tar_entry("ok/link", kind=tarfile.SYMTYPE, linkname="/etc/passwd"), "symbolic link"),
    (tar_entry("ok/rel_link", kind=tarfile.SYMTYPE, linkname="../../escape.txt"), "symbolic link"),
    (tar_entry("ok/hard", kind=tarfile.LNKTYPE, linkname="CUB_200_2011/images.txt"), "hard link"),
    (tar_entry("ok/dev", kind=tarfile.CHRTYPE), "device"),
    (tar_entry("ok/fifo", kind=tarfile.FIFOTYPE), "FIFO"),
], ids=["dotdot", "nested-dotdot", "absolute", "drive", "symlink-abs", "symlink-rel", "hardlink",
        "chardev", "fifo"])
def test_malicious_tar_is_refused_and_nothing_is_written(tmp_path, bad, why):
    info, data = bad
    if info.name == "ABSOLUTE":  # an absolute path that would land in tmp_path if obeyed
        info.name = str(tmp_path / "escape.txt")
    sandbox = tmp_path / "sandbox"
    sandbox.mkdir()
    archive = make_tgz(sandbox / "evil.tgz", GOOD + [(info, data)])  # the bad member comes last
    dest = sandbox / "deep" / "dest"
    before = tree(tmp_path)
    with pytest.raises(UnsafeArchiveError, match=why) as err:
        extract(archive, dest, **QUIET)
    assert info.name in str(err.value) and "nothing was written" in str(err.value)
    assert tree(tmp_path) - before <= {"sandbox/deep", "sandbox/deep/dest"}  # empty folders only
    assert not any(dest.iterdir())  # no good member, no temporary folder, no marker
    with pytest.raises(UnsafeArchiveError):
        list_members(archive)


@pytest.mark.parametrize("name, why", [("../evil.txt", "'..'"), ("/abs/evil.txt", "absolute"),
                                       ("C:/evil.txt", "drive letter"),
                                       ("birds\\..\\..\\evil.txt", "backslash")])
def test_zip_slip_is_refused(tmp_path, name, why):
    archive = make_zip(tmp_path / "evil.zip", {"birds/ok.txt": b"ok", name: b"evil"})
    dest = tmp_path / "dest"
    with pytest.raises(UnsafeArchiveError, match=why):
        extract(archive, dest, **QUIET)
    assert tree(tmp_path) == {"evil.zip", "dest"} and not any(dest.iterdir())


@pytest.mark.parametrize("mode, why", [(stat.S_IFLNK | 0o777, "symbolic link"),
                                       (stat.S_IFIFO | 0o644, "special file")])
def test_zip_links_and_special_files_are_refused(tmp_path, mode, why):
    archive = make_zip(tmp_path / "evil.zip", {"birds/ok.txt": b"ok", "birds/x": b"/etc/passwd"},
                       modes={"birds/x": mode})
    with pytest.raises(UnsafeArchiveError, match=why):
        extract(archive, tmp_path / "dest", **QUIET)
    assert not any((tmp_path / "dest").iterdir())


def test_macos_junk_is_skipped(tmp_path):
    archive = make_zip(tmp_path / "birds.zip", {
        "birds/text/a.txt": b"caption", "__MACOSX/birds/text/._a.txt": b"appledouble",
        "__MACOSX/": b"", "birds/._b.txt": b"appledouble"})
    report = extract(archive, tmp_path / "out", **QUIET)
    assert tree(tmp_path / "out") == {"birds", "birds/text", "birds/text/a.txt",
                                      ".birds.zip.complete"}
    assert report.n_skipped == 3 and report.top_level == ("birds",)
    tgz = make_tgz(tmp_path / "t.tgz", [tar_entry("jpg/._x.jpg", b"junk"),
                                       tar_entry("jpg/x.jpg", b"x")])
    assert list_members(tgz) == ["jpg/x.jpg"]


def test_list_members_matches_what_extract_writes(tmp_path):
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    listed = list_members(archive)
    assert listed == ["CUB_200_2011/", "CUB_200_2011/images.txt",
                      "CUB_200_2011/images/001.A/a.jpg", "attributes.txt"]
    extract(archive, tmp_path / "out", **QUIET)
    files = {p for p in tree(tmp_path / "out") if (tmp_path / "out" / p).is_file()}
    assert files - {".cub.tgz.complete"} == {n for n in listed if not n.endswith("/")}


@pytest.mark.parametrize("limits, why", [(ExtractLimits(max_members=3), "more than 3 members"),
                                         (ExtractLimits(max_total_bytes=20), "more than 20 bytes")])
def test_bomb_limits(tmp_path, limits, why):
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    with pytest.raises(UnsafeArchiveError, match=why):
        extract(archive, tmp_path / "out", limits=limits, **QUIET)
    assert not any((tmp_path / "out").iterdir())
    extract(archive, tmp_path / "out", limits=ExtractLimits(max_members=4, max_total_bytes=31),
            **QUIET)  # exactly at the limits: fine


@pytest.mark.parametrize("name, expected", [
    ("birds/text/a.txt", "birds/text/a.txt"), ("./jpg/x.jpg", "jpg/x.jpg"),
    ("a//b/./c", "a/b/c"), ("dir/", "dir"), ("./", None), ("__MACOSX/a", None),
    ("a/._b", None), ("a..b/c..", "a..b/c.."),
])
def test_safe_member_path_normalises_or_skips(name, expected):
    got = safe_member_path(name)
    assert got == (PurePosixPath(expected) if expected else None)


@pytest.mark.parametrize("name", ["", "..", "a/../../b", "a/..", "/etc/passwd", "C:\\x", "c:x",
                                  "a\\b", "a\x00b"])
def test_safe_member_path_rejects(name):
    with pytest.raises(UnsafeArchiveError):
        safe_member_path(name)


# ---- odd, damaged and interrupted archives: one clear ArchiveError, nothing left behind ----

def assert_clear_failure(err: pytest.ExceptionInfo, archive: Path, dest: Path | None,
                         *words: str) -> str:
    """The message starts with the archive's path, holds ``words``, is one line; ``dest`` is
    empty (no temporary folder, no member, no marker)."""
    message = str(err.value)
    assert message.startswith(f"{archive}: "), message
    assert "\n" not in message
    for word in words:
        assert word in message, (word, message)
    if dest is not None:
        assert list(dest.iterdir()) == [], tree(dest)
    return message


def test_archive_errors_are_value_errors_and_unsafe_is_one_of_them():
    assert issubclass(UnsafeArchiveError, ArchiveError) and issubclass(ArchiveError, ValueError)
    assert "ArchiveError" in archives.__all__


def test_unsafe_message_starts_with_the_archive_path(tmp_path):
    archive = make_zip(tmp_path / "evil.zip", {"../evil.txt": b"evil"})
    with pytest.raises(UnsafeArchiveError) as err:
        extract(archive, tmp_path / "dest", **QUIET)
    assert_clear_failure(err, archive, tmp_path / "dest", "'../evil.txt'", "refusing")


@pytest.mark.parametrize("fmt", ["tgz", "zip"])
@pytest.mark.parametrize("names, member, other", [
    (["a", "a/b"], "'a/b'", "'a'"),      # a file, then a folder of that name
    (["a/", "a"], "'a'", "'a/'"),        # a folder, then a file of that name
    (["x/a/", "x/a/c", "x/a"], "'x/a'", "'x/a/'"),
], ids=["file-then-dir", "dir-then-file", "nested"])
def test_a_file_and_a_folder_of_one_name_cannot_be_extracted(tmp_path, fmt, names, member,
                                                             other):
    if fmt == "tgz":
        archive = make_tgz(tmp_path / "a.tgz", [
            tar_entry(n, kind=tarfile.DIRTYPE) if n.endswith("/") else tar_entry(n, b"data")
            for n in names])
    else:
        archive = make_zip(tmp_path / "a.zip", {n: b"" if n.endswith("/") else b"data"
                                                for n in names})
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert type(err.value) is ArchiveError  # not unsafe: odd but harmless
    assert_clear_failure(err, archive, dest, member, other, "same name", "unpack it by hand")
    with pytest.raises(ArchiveError) as err:
        list_members(archive)  # lists only what extract could write
    assert_clear_failure(err, archive, None, member, "same name")


@pytest.mark.parametrize("fmt", ["tgz", "zip"])
def test_a_name_too_long_for_the_file_system(tmp_path, fmt):
    name = "birds/" + "x" * 300 + ".txt"  # one path component of 304 bytes (ext4 allows 255)
    archive = (make_tgz(tmp_path / "long.tgz", [tar_entry("birds/ok.txt", b"ok"),
                                                 tar_entry(name, b"data")]) if fmt == "tgz"
               else make_zip(tmp_path / "long.zip", {"birds/ok.txt": b"ok", name: b"data"}))
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, dest, name[:40], "too long", "characters)")


def random_bytes(n: int) -> bytes:
    return random.Random(0).randbytes(n)


@pytest.mark.parametrize("name", ["CUB_200_2011.tgz", "data.tar.gz", "birds.zip", "data.bin"])
def test_random_bytes_are_not_an_archive(tmp_path, name):
    archive = tmp_path / name
    archive.write_bytes(random_bytes(4096))
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, dest, "not a readable tar or zip archive",
                         "download it again")
    with pytest.raises(ArchiveError):
        list_members(archive)


def big_entries() -> list[tuple[tarfile.TarInfo, bytes]]:
    rng = random.Random(1)  # incompressible, so a cut lands inside a member
    return [tar_entry(f"jpg/image_{i:05d}.jpg", rng.randbytes(20_000)) for i in range(4)]


@pytest.mark.parametrize("keep", [0.03, 0.5, -10], ids=["head", "half", "no-gzip-trailer"])
def test_cut_tgz(tmp_path, keep):
    full = make_tgz(tmp_path / "full.tgz", big_entries()).read_bytes()
    archive = tmp_path / "cut.tgz"
    archive.write_bytes(full[:int(len(full) * keep)] if keep > 0 else full[:keep])
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    message = assert_clear_failure(err, archive, dest, "download it again",
                                   "corrupt or incomplete")
    if keep == 0.5:  # cut inside a member: that member is named
        assert "member 'jpg/image_0000" in message and "is damaged" in message
    if keep == -10:  # every member is whole, only the gzip CRC and length are cut off
        assert "damaged after member 'jpg/image_00003.jpg'" in message


@pytest.mark.parametrize("keep", [0.03, 0.5, 0.99])
def test_cut_zip(tmp_path, keep):
    rng = random.Random(2)
    full = make_zip(tmp_path / "full.zip", {f"text/{i}.txt": rng.randbytes(20_000)
                                            for i in range(4)}).read_bytes()
    archive = tmp_path / "cut.zip"
    archive.write_bytes(full[:int(len(full) * keep)])
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, dest, "not a readable tar or zip archive",
                         "download it again")


def zip_offsets(data: bytes) -> tuple[int, int]:
    """Offsets of the first member's local header and central directory entry."""
    assert data[:4] == b"PK\x03\x04"
    return 0, data.index(b"PK\x01\x02")


def test_zip_member_with_a_bad_crc(tmp_path):
    archive = make_zip(tmp_path / "birds.zip", {"birds/a.txt": b"a caption " * 50,
                                                "birds/b.txt": b"another"})
    data = bytearray(archive.read_bytes())
    local, central = zip_offsets(data)
    for offset in (local + 14, central + 16):  # CRC-32 in both headers
        data[offset] ^= 0xFF
    archive.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, dest, "member 'birds/a.txt' is damaged", "CRC",
                         "download it again")


def test_zip_member_with_bad_compressed_data(tmp_path):
    archive = tmp_path / "birds.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("birds/a.txt", b"a caption\n" * 1000)  # a name, not a ZipInfo: deflated
    data = bytearray(archive.read_bytes())
    start = 30 + len("birds/a.txt")  # the deflate stream follows the local header
    data[start:start + 8] = b"\xff" * 8  # block type 3 does not exist: a zlib error
    archive.write_bytes(bytes(data))
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, dest, "member 'birds/a.txt' is damaged",
                         "invalid block type", "download it again")


def test_temporary_folder_is_removed_on_ctrl_c(tmp_path, monkeypatch):
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    dest = tmp_path / "birds"
    real_copy, seen = archives._copy, []

    def copy_then_interrupt(member, target):
        seen.append(real_copy(member, target))
        if len(seen) == 2:
            assert any(p.name.endswith(".extracting") for p in dest.iterdir())
            raise KeyboardInterrupt
        return seen[-1]

    monkeypatch.setattr(archives, "_copy", copy_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        extract(archive, dest, **QUIET)
    assert list(dest.iterdir()) == []


def test_a_full_disk_is_one_clear_error(tmp_path, monkeypatch):
    def no_space(member, target):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(archives, "_copy", no_space)
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    dest = tmp_path / "birds"
    with pytest.raises(ArchiveError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, dest, "member 'CUB_200_2011/images.txt'",
                         "no space left", "free some space")


def test_temporary_folder_left_by_a_killed_run_is_removed(tmp_path):
    archive = make_tgz(tmp_path / "cub.tgz", GOOD)
    dest = tmp_path / "birds"
    dest.mkdir()

    def killed_run() -> Path:  # what kill -9 during an extraction leaves behind
        stale = Path(tempfile.mkdtemp(prefix=".cub.tgz.", suffix=".extracting", dir=dest))
        (stale / "CUB_200_2011").mkdir()
        (stale / "CUB_200_2011" / "images.txt").write_bytes(b"half")
        return stale

    stale = killed_run()
    other = Path(tempfile.mkdtemp(prefix=".other.tgz.", suffix=".extracting", dir=dest))
    mine = dest / ".cub.tgz.notes.extracting.txt"
    mine.write_text("not a temporary folder")
    report = extract(archive, dest, **QUIET)
    assert not stale.exists() and not report.reused
    assert other.is_dir() and mine.is_file()  # another archive's, and the user's: kept
    assert (dest / "CUB_200_2011" / "images.txt").read_bytes() == b"1 001.A/a.jpg\n"

    stale = killed_run()  # also when the rerun finds the work done
    assert extract(archive, dest, **QUIET).reused and not stale.exists()


def test_a_clash_with_the_destination_moves_nothing(tmp_path):
    dest = tmp_path / "data"
    dest.mkdir()
    (dest / "birds").write_text("a file where the archive has a folder")
    archive = make_zip(tmp_path / "birds.zip", {"a.txt": b"a", "birds/b.txt": b"b"})
    with pytest.raises(FileExistsError) as err:
        extract(archive, dest, **QUIET)
    assert_clear_failure(err, archive, None, str(dest / "birds"), "move it away")
    assert tree(dest) == {"birds"}  # a.txt was not moved in, no temporary folder


def zip_with_declared_size(path: Path, content: bytes, declared: int, method: int) -> Path:
    """A zip whose one member declares ``declared`` bytes but holds ``content``. zipfile
    reads it without complaint: it stops where the data ends and the CRC matches."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        zf.writestr("birds/a.txt", content)
    data = bytearray(buf.getvalue())
    local, central = zip_offsets(data)
    struct.pack_into("<I", data, local + 22, declared)  # uncompressed size, local header
    struct.pack_into("<I", data, central + 24, declared)  # and central directory
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED],
                         ids=["stored", "deflated"])
def test_n_bytes_counts_what_was_written_not_what_was_declared(tmp_path, method):
    content = b"a caption\n" * 11
    archive = zip_with_declared_size(tmp_path / "birds.zip", content, 10_000, method)
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("birds/a.txt")
    assert (info.file_size, info.compress_type) == (10_000, method)
    report = extract(archive, tmp_path / "out", **QUIET)
    assert (tmp_path / "out" / "birds" / "a.txt").read_bytes() == content
    assert report.n_bytes == len(content) == 110


# ---- bombs by expansion, a tar cut between members, an empty archive (issue 35) ----

def test_a_zip_member_that_expands_too_much_is_refused_naming_it_and_its_ratio(tmp_path):
    archive = tmp_path / "birds.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("birds/a.txt", b"a bird\n")
        zf.writestr("birds/zeros.bin", bytes(40 << 20))  # deflates about 1000x
    with pytest.raises(UnsafeArchiveError) as err:
        extract(archive, tmp_path / "out", **QUIET)
    message = assert_clear_failure(err, archive, tmp_path / "out", "member 'birds/zeros.bin'",
                                   "over the limit of 200x", "refusing to extract it")
    assert re.search(r"expands [\d,]+x \([\d,]+ -> 41,943,040 bytes\)", message), message
    extract(archive, tmp_path / "ok", limits=ExtractLimits(max_ratio=5000), **QUIET)  # allowed
    assert (tmp_path / "ok" / "birds" / "zeros.bin").stat().st_size == 40 << 20


def test_a_tgz_that_expands_too_much_as_a_whole_is_refused(tmp_path):
    entries = [tar_entry(f"bomb/{i}.bin", bytes(6 << 20)) for i in range(4)]  # 24 MiB of zeros
    archive = make_tgz(tmp_path / "bomb.tgz", entries)
    with pytest.raises(UnsafeArchiveError) as err:
        extract(archive, tmp_path / "out", **QUIET)
    assert_clear_failure(err, archive, tmp_path / "out", "the archive, by member 'bomb/",
                         "over the limit of 200x")
    small = ExtractLimits(ratio_free_bytes=1 << 30)  # below the free size, no ratio applies
    assert extract(archive, tmp_path / "ok", limits=small, **QUIET).n_files == 4


def test_a_plain_tar_cut_between_two_members_is_refused(tmp_path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        for info, data in GOOD:
            tf.addfile(info, io.BytesIO(data) if info.isreg() else None)
    whole = buf.getvalue()
    with tarfile.open(fileobj=io.BytesIO(whole)) as tf:
        second = tf.getmembers()[1]  # CUB_200_2011/images.txt
    end = second.offset_data + -(-second.size // 512) * 512  # its last data block
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[:end])  # ends exactly between two members
    with pytest.raises(ArchiveError) as err:
        extract(cut, tmp_path / "out", **QUIET)
    assert_clear_failure(err, cut, tmp_path / "out", "ends after member 'CUB_200_2011/images.txt'",
                         "without tar's end-of-archive block", "download it again")
    complete = tmp_path / "complete.tar"
    complete.write_bytes(whole)
    assert extract(complete, tmp_path / "ok", **QUIET).n_files == 3


def test_an_empty_archive_is_an_error_and_leaves_no_marker(tmp_path):
    archive = make_zip(tmp_path / "birds.zip", {})
    with pytest.raises(ArchiveError) as err:
        extract(archive, tmp_path / "out", **QUIET)
    assert_clear_failure(err, archive, tmp_path / "out", "holds no files")
    assert not marker_path(archive, tmp_path / "out").exists()
