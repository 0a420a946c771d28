"""Safe extraction: archives built here, good and malicious; nothing may land outside ``dest``."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from t2ilib.data.archives import (
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
