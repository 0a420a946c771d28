"""Downloads: the real fetch code against a local HTTP server that the tests control.

The server (127.0.0.1, port 0, a thread) implements ``Range`` (206 / 416), can ignore it, can drop
the connection mid-file, and can play Google Drive's "can't scan for viruses" confirm pages. Every
request is recorded, so the tests can assert what went over the wire. Nothing leaves 127.0.0.1 and
every socket operation has a 5 s time-out.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import io
import random
import re
import socket
import tarfile
import threading
import zipfile
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from t2ilib.data.archives import ArchiveError
from t2ilib.data.download import fetch
from t2ilib.data.resources import (
    RESOURCES,
    ChecksumError,
    DownloadError,
    Resource,
    file_digests,
    manual_instructions,
    sidecar_path,
)

REPO = Path(__file__).resolve().parent.parent
DATA = random.Random(0).randbytes(200_000)
TIMEOUT = 5.0


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` by name and ``drive`` by id; records ``(path, Range header)`` per GET."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.drive: dict[str, bytes] = {}
        self.drive_style = "form"  # form | link | cookie | quota
        self.requests: list[tuple[str, str | None]] = []
        self.drops: dict[str, list[int]] = {}  # name -> body bytes sent before hanging up, per GET
        self.ignore_range: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    server: FileServer
    timeout = TIMEOUT

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        srv = self.server
        srv.requests.append((self.path, self.headers.get("Range")))
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/uc" and query.get("id") in srv.drive:
            self._drive(query)
        elif url.path == "/download" and query.get("confirm") == "t" and query.get("uuid") == "u1":
            self._send_file(query["id"], srv.drive[query["id"]])
        elif url.path.lstrip("/") in srv.files:
            name = url.path.lstrip("/")
            self._send_file(name, srv.files[name])
        else:
            self.send_error(404)

    def _drive(self, query: dict[str, str]) -> None:
        srv, fid = self.server, query["id"]
        if srv.drive_style in {"link", "cookie"} and query.get("confirm") == "tok42":
            return self._send_file(fid, srv.drive[fid])
        page = {
            "form": f'<html><body><form id="download-form" action="/download" method="get">'
                    f'<input type="hidden" name="id" value="{fid}">'
                    f'<input type="hidden" name="export" value="download">'
                    f'<input type="hidden" name="confirm" value="t">'
                    f'<input type="hidden" name="uuid" value="u1"></form></body></html>',
            "link": f'<html><a id="uc-download-link" '
                    f'href="/uc?export=download&amp;confirm=tok42&amp;id={fid}">Download</a></html>',
            "cookie": "<html><body>Google Drive can't scan this file for viruses.</body></html>",
            "quota": '<html><title>Google Drive - Quota exceeded</title><p class="uc-error-'
                     'subcaption">Too many users have viewed or downloaded this file '
                     'recently.</p></html>',
        }[srv.drive_style].encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(page)))
        if srv.drive_style == "cookie":
            self.send_header("Set-Cookie", "download_warning_13058=tok42; Path=/")
        self.end_headers()
        self.wfile.write(page)

    def _send_file(self, name: str, data: bytes) -> None:
        srv, start = self.server, 0
        rng = self.headers.get("Range")
        if rng and name not in srv.ignore_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        drops = srv.drops.get(name)
        self.wfile.write(body[:drops.pop(0)] if drops else body)  # HTTP/1.0: then hang up


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.fixture
def server():
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=TIMEOUT)


@pytest.fixture
def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def resource(data: bytes = DATA, *, filename: str = "blob.bin", sources=None, pin: str = "md5",
             size: bool = True) -> Resource:
    """A table entry for ``data``, with its checksum computed here by hashlib."""
    return Resource(name="test", filename=filename,
                    sources=sources or ("https://example.invalid/" + filename,),
                    size=len(data) if size else None,
                    md5=hashlib.md5(data).hexdigest() if pin == "md5" else None,
                    sha256=hashlib.sha256(data).hexdigest() if pin == "sha256" else None)


def get(res: Resource, folder: Path, srv: FileServer, logs: list[str] | None = None, **kw):
    return fetch(res, folder, mirror=srv.url, timeout=TIMEOUT,
                 log=(logs.append if logs is not None else lambda _: None), **kw)


# ------------------------------------------------------------------------------------------------
# the protocol


def test_happy_path_streams_verifies_and_renames(server, tmp_path):
    server.files["blob.bin"] = DATA
    got = get(resource(pin="sha256"), tmp_path, server)
    assert got.path == tmp_path / "blob.bin" and got.path.read_bytes() == DATA
    assert not got.reused
    assert got.digests.md5 == hashlib.md5(DATA).hexdigest()
    assert got.digests.sha256 == hashlib.sha256(DATA).hexdigest()
    assert not (tmp_path / "blob.bin.part").exists()
    assert server.requests == [("/blob.bin", None)]


def test_dropped_connection_is_resumed_with_range(server, tmp_path):
    server.files["blob.bin"] = DATA
    server.drops["blob.bin"] = [50_000]
    logs: list[str] = []
    got = get(resource(), tmp_path, server, logs)
    assert got.path.read_bytes() == DATA
    assert server.requests == [("/blob.bin", None), ("/blob.bin", "bytes=50000-")]
    assert any("resuming from byte 50,000" in m for m in logs)


def test_partial_file_from_an_earlier_run_is_continued(server, tmp_path):
    server.files["blob.bin"] = DATA
    (tmp_path / "blob.bin.part").write_bytes(DATA[:123_456])
    got = get(resource(), tmp_path, server)
    assert got.path.read_bytes() == DATA
    assert server.requests == [("/blob.bin", "bytes=123456-")]


def test_server_ignoring_range_means_start_over(server, tmp_path):
    server.files["blob.bin"] = DATA
    server.ignore_range.add("blob.bin")
    (tmp_path / "blob.bin.part").write_bytes(DATA[:1000])
    logs: list[str] = []
    got = get(resource(), tmp_path, server, logs)
    assert got.path.read_bytes() == DATA  # not DATA[:1000] + DATA
    assert any("ignored the Range" in m for m in logs)


def test_416_for_an_unusable_part_means_start_over(server, tmp_path):
    server.files["blob.bin"] = DATA
    (tmp_path / "blob.bin.part").write_bytes(b"x" * (len(DATA) + 10))  # size unknown: asks
    got = get(resource(size=False), tmp_path, server)
    assert got.path.read_bytes() == DATA
    assert server.requests == [("/blob.bin", f"bytes={len(DATA) + 10}-"), ("/blob.bin", None)]


def test_416_for_a_complete_part_keeps_it(server, tmp_path):
    server.files["blob.bin"] = DATA
    (tmp_path / "blob.bin.part").write_bytes(DATA)
    got = get(resource(size=False), tmp_path, server)
    assert got.path.read_bytes() == DATA
    assert server.requests == [("/blob.bin", f"bytes={len(DATA)}-")]  # no second download


def test_connection_that_never_makes_progress_gives_up(server, tmp_path):
    server.files["blob.bin"] = DATA
    server.drops["blob.bin"] = [0, 0, 0]
    with pytest.raises(DownloadError, match="kept failing") as err:
        get(resource(), tmp_path, server, retries=0)
    assert "Fetch it by hand" in str(err.value)


@pytest.mark.parametrize("field", ["size", "md5", "sha256"])
def test_wrong_checksum_is_refused_and_the_download_deleted(server, tmp_path, field):
    server.files["blob.bin"] = DATA
    other = DATA[:-1] + b"\x00"
    wrong = {"size": dict(size=len(DATA) + 1, md5=None),
             "md5": dict(md5=hashlib.md5(other).hexdigest()),
             "sha256": dict(md5=None, sha256=hashlib.sha256(other).hexdigest())}[field]
    with pytest.raises(ChecksumError) as err:
        get(replace(resource(), **wrong), tmp_path, server)
    text = str(err.value)
    assert {"size": "size", "md5": "MD5", "sha256": "SHA-256"}[field] in text
    assert "was deleted" in text and str(tmp_path / "blob.bin") in text
    assert not (tmp_path / "blob.bin").exists() and not (tmp_path / "blob.bin.part").exists()


def test_existing_verified_file_is_reused_without_a_request(server, tmp_path):
    (tmp_path / "blob.bin").write_bytes(DATA)
    got = get(resource(), tmp_path, server)
    assert got.reused and got.digests.md5 == hashlib.md5(DATA).hexdigest()
    assert server.requests == []


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupted_existing_file_is_detected_and_left_alone(server, tmp_path, damage):
    bad = DATA[:1000] + bytes([DATA[1000] ^ 1]) + DATA[1001:] if damage == "flip" else DATA[:-5]
    (tmp_path / "blob.bin").write_bytes(bad)
    with pytest.raises(ChecksumError, match="delete") as err:
        get(resource(), tmp_path, server)
    assert ("MD5" if damage == "flip" else "size") in str(err.value)
    assert (tmp_path / "blob.bin").read_bytes() == bad
    assert server.requests == []


def test_trust_on_first_use_records_then_enforces(server, tmp_path):
    server.files["blob.bin"] = DATA
    logs: list[str] = []
    get(resource(pin="none"), tmp_path, server, logs)
    sidecar = sidecar_path(tmp_path / "blob.bin")
    assert sidecar == tmp_path / "blob.bin.sha256"
    assert sidecar.read_text() == f"{hashlib.sha256(DATA).hexdigest()}  blob.bin\n"
    assert any("trusted on first use" in m for m in logs)

    (tmp_path / "blob.bin").unlink()  # upstream changes; the next copy must match the record
    server.files["blob.bin"] = DATA[::-1]
    with pytest.raises(ChecksumError, match="first download recorded"):
        get(resource(DATA[::-1], pin="none"), tmp_path, server)
    assert not (tmp_path / "blob.bin").exists()


@pytest.mark.parametrize("style", ["form", "link", "cookie"])
def test_google_drive_confirm_page_is_followed(server, tmp_path, style):
    server.drive["FILEid_123456"] = DATA
    server.drive_style = style
    res = resource(sources=("gdrive:FILEid_123456",))
    got = fetch(res, tmp_path, gdrive_base=server.url, timeout=TIMEOUT, log=lambda _: None)
    assert got.path.read_bytes() == DATA
    first, last = server.requests[0][0], server.requests[-1][0]
    assert first == "/uc?export=download&id=FILEid_123456"
    if style == "form":
        assert "confirm=t" in last and "uuid=u1" in last and last.startswith("/download?")
    else:
        assert "confirm=tok42" in last


def test_google_drive_refusal_is_reported_with_manual_steps(server, tmp_path):
    server.drive["FILEid_123456"] = DATA
    server.drive_style = "quota"
    res = resource(sources=("gdrive:FILEid_123456",))
    with pytest.raises(DownloadError) as err:
        fetch(res, tmp_path, gdrive_base=server.url, timeout=TIMEOUT, log=lambda _: None)
    text = str(err.value)
    assert "Too many users have viewed or downloaded" in text
    assert "https://drive.google.com/file/d/FILEid_123456/view" in text
    assert not (tmp_path / "blob.bin").exists()


def test_next_source_is_tried_after_a_404(server, tmp_path):
    server.files["copy/blob.bin"] = DATA
    res = resource(sources=(f"{server.url}/gone/blob.bin", f"{server.url}/copy/blob.bin"))
    got = fetch(res, tmp_path, timeout=TIMEOUT, log=lambda _: None)
    assert got.path.read_bytes() == DATA
    assert [p for p, _ in server.requests] == ["/gone/blob.bin", "/copy/blob.bin"]


def test_offline_error_says_what_to_fetch_and_where(tmp_path, closed_port_url):
    res = resource(sources=(f"{closed_port_url}/blob.bin",))
    with pytest.raises(DownloadError) as err:
        fetch(res, tmp_path / "dl", timeout=TIMEOUT, log=lambda _: None)
    text = str(err.value)
    assert "cannot reach the host" in text
    assert f"from:  {closed_port_url}/blob.bin" in text
    assert f"to:    {(tmp_path / 'dl' / 'blob.bin').resolve()}" in text
    assert f"MD5 {hashlib.md5(DATA).hexdigest()}" in text and f"size {len(DATA):,} bytes" in text


def test_file_digests_match_hashlib(tmp_path):
    (tmp_path / "f").write_bytes(DATA)
    d = file_digests(tmp_path / "f")
    assert (d.size, d.md5, d.sha256) == (len(DATA), hashlib.md5(DATA).hexdigest(),
                                         hashlib.sha256(DATA).hexdigest())


@pytest.mark.parametrize("bad", [dict(md5="abc"), dict(md5="A" * 32), dict(sha256="0" * 63),
                                 dict(sources=()), dict(sources=("ftp://x/y",)),
                                 dict(sources=("gdrive:no",)), dict(filename="a/b"),
                                 dict(size=-1)])
def test_resource_rejects_malformed_entries(bad):
    fields = dict(name="x", filename="x.bin", sources=("https://h/x.bin",)) | bad
    with pytest.raises(ValueError):
        Resource(**fields)


def test_the_table():
    assert RESOURCES["cub"].md5 == "97eceeb196236b17998738112f37df78"  # the value
    assert RESOURCES["flowers_images"].md5 == "52808999861908f626f3c1f4e79d11fa"  # torchvision's
    filenames = [r.filename for r in RESOURCES.values()]
    assert len(set(filenames)) == len(filenames)
    unpinned = {name for name, r in RESOURCES.items() if not r.pinned}
    assert unpinned == {"birds_metadata", "flowers_captions"}  # nothing fake pinned for them
    assert all(s.startswith(("https://", "gdrive:")) for r in RESOURCES.values()
               for s in r.sources)


FLOWERS_DRIVE_ID, FLOWERS_DRIVE_KEY = "0B0ywwgffWnLLcms2WWJQRFNSWXM", "0-Av8zFbeDDvNcF1sSjDR32w"


def test_flowers_captions_drive_urls_carry_the_resource_key():
    res = RESOURCES["flowers_captions"]
    base = "https://drive.example"
    assert res.urls(gdrive_base=base) == [  # the share link's key first, then the bare id
        (f"{base}/uc?export=download&id={FLOWERS_DRIVE_ID}&resourcekey={FLOWERS_DRIVE_KEY}", True),
        (f"{base}/uc?export=download&id={FLOWERS_DRIVE_ID}", True)]
    assert res.browser_urls() == [
        f"https://drive.google.com/file/d/{FLOWERS_DRIVE_ID}/view?resourcekey={FLOWERS_DRIVE_KEY}",
        f"https://drive.google.com/file/d/{FLOWERS_DRIVE_ID}/view"]
    assert res.urls(mirror="http://m/") == [("http://m/cvpr2016_flowers.tar.gz", False)]
    text = manual_instructions(res, "/data/downloads/cvpr2016_flowers.tar.gz")
    assert f"view?resourcekey={FLOWERS_DRIVE_KEY}" in text


@pytest.mark.parametrize("source", ["gdrive:FILEid_123456?resourcekey=",
                                    "gdrive:FILEid_123456?key=0-abc",
                                    "gdrive:FILEid_123456?resourcekey=0-a b",
                                    "gdrive:FILEid_123456&resourcekey=0-abc"])
def test_malformed_drive_resource_keys_are_refused(source):
    with pytest.raises(ValueError, match="resourcekey"):
        Resource(name="x", filename="x.bin", sources=(source,))


def test_drive_download_sends_the_resource_key(server, tmp_path):
    server.drive["FILEid_123456"] = DATA
    res = resource(sources=("gdrive:FILEid_123456?resourcekey=0-Key_42-x",))
    got = fetch(res, tmp_path, gdrive_base=server.url, timeout=TIMEOUT, log=lambda _: None)
    assert got.path.read_bytes() == DATA
    assert server.requests[0][0] == "/uc?export=download&id=FILEid_123456&resourcekey=0-Key_42-x"


# ------------------------------------------------------------------------------------------------
# the scripts, end to end against archives made here


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"_script_{name}",
                                                  REPO / "data_scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tgz(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def zipped(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in files.items():
            zf.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def pinned(name: str, data: bytes) -> Resource:
    """The real table entry, with the size and MD5 of the test's stand-in file."""
    return replace(RESOURCES[name], size=len(data), md5=hashlib.md5(data).hexdigest())


def test_download_cub_builds_the_attngan_layout(server, tmp_path):
    key = "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111"
    cub = tgz({"CUB_200_2011/images.txt": f"1 {key}.jpg\n".encode(),
               "CUB_200_2011/bounding_boxes.txt": b"1 60.0 27.0 325.0 304.0\n",
               f"CUB_200_2011/images/{key}.jpg": b"\xff\xd8 not really a jpeg",
               "attributes.txt": b"1 has_bill_shape::curved\n"})
    birds = zipped({f"birds/text/{key}.txt": b"a bird\n\nwith a beak\n",
                    "birds/train/filenames.pickle": b"stand-in",
                    "birds/test/filenames.pickle": b"stand-in",
                    "__MACOSX/birds/._text": b"junk"})
    server.files.update({"CUB_200_2011.tgz": cub, "birds.zip": birds})
    table = {**RESOURCES, "cub": pinned("cub", cub)}
    script = load_script("download_cub")
    logs: list[str] = []
    out = script.download_cub(tmp_path, mirror=server.url, resources=table, timeout=TIMEOUT,
                              log=logs.append)

    assert out == tmp_path / "birds"
    jpeg = out / "CUB_200_2011" / "images" / f"{key}.jpg"
    assert jpeg.read_bytes() == b"\xff\xd8 not really a jpeg"
    assert (out / "text" / f"{key}.txt").read_bytes() == b"a bird\n\nwith a beak\n"
    assert (out / "attributes.txt").is_file()  # CUB's extra top-level member stays inside birds/
    assert not (tmp_path / "__MACOSX").exists()
    assert (tmp_path / "downloads" / "birds.zip.sha256").read_text().split()[0] == \
        hashlib.sha256(birds).hexdigest()
    assert any("captions.pickle" in m for m in logs)  # not shipped here: said so

    n = len(server.requests)
    logs.clear()
    script.download_cub(tmp_path, mirror=server.url, resources=table, timeout=TIMEOUT,
                        log=logs.append)
    assert len(server.requests) == n  # rerun: nothing fetched again
    assert sum("reused" in m for m in logs) == 2 and sum("skipped" in m for m in logs) == 2


def test_download_flowers_finds_the_captions(server, tmp_path):
    images = tgz({"jpg/image_00001.jpg": b"a", "jpg/image_00002.jpg": b"b"})
    captions = tgz({"cvpr2016_flowers/text_c10/class_00001/image_00001.txt": b"red petals\n",
                    "cvpr2016_flowers/trainclasses.txt": b"class_00001\n"})
    mats = {"imagelabels.mat": b"MATLAB 5.0 stand-in labels", "setid.mat": b"MATLAB stand-in ids"}
    server.files.update({"102flowers.tgz": images, "cvpr2016_flowers.tar.gz": captions, **mats})
    table = {**RESOURCES, "flowers_images": pinned("flowers_images", images),
             "flowers_labels": pinned("flowers_labels", mats["imagelabels.mat"]),
             "flowers_splits": pinned("flowers_splits", mats["setid.mat"])}
    script = load_script("download_flowers")
    text = script.download_flowers(tmp_path, mirror=server.url, resources=table,
                                   timeout=TIMEOUT, log=lambda _: None)
    flowers = tmp_path / "flowers"
    assert text == flowers / "cvpr2016_flowers" / "text_c10"
    assert (text / "class_00001" / "image_00001.txt").read_bytes() == b"red petals\n"
    assert sorted(p.name for p in (flowers / "jpg").iterdir()) == ["image_00001.jpg",
                                                                    "image_00002.jpg"]
    assert (flowers / "setid.mat").read_bytes() == mats["setid.mat"]


@pytest.mark.parametrize("agree", [True, False])
def test_download_flowers_checks_the_archives_class_lists(server, tmp_path, agree):
    from t2ilib.data.flowers import SPLIT_DIR

    ours = (SPLIT_DIR / "testclasses.txt").read_bytes()
    theirs = ours if agree else ours.replace(b"class_00020\n", b"class_00021\n")
    captions = tgz({"cvpr2016_flowers/text_c10/class_00001/image_00001.txt": b"red petals\n",
                    "cvpr2016_flowers/testclasses.txt": theirs})
    images = tgz({"jpg/image_00001.jpg": b"a"})
    mats = {"imagelabels.mat": b"MATLAB 5.0 stand-in labels", "setid.mat": b"MATLAB stand-in ids"}
    server.files.update({"102flowers.tgz": images, "cvpr2016_flowers.tar.gz": captions, **mats})
    table = {**RESOURCES, "flowers_images": pinned("flowers_images", images),
             "flowers_labels": pinned("flowers_labels", mats["imagelabels.mat"]),
             "flowers_splits": pinned("flowers_splits", mats["setid.mat"])}
    script = load_script("download_flowers")
    logs: list[str] = []

    def run():
        return script.download_flowers(tmp_path, mirror=server.url, resources=table,
                                       timeout=TIMEOUT, log=logs.append)

    archived = tmp_path / "flowers" / "cvpr2016_flowers" / "testclasses.txt"
    if agree:
        run()
        assert any("82 train+val / 20 test classes (the archive's testclasses.txt: same "
                   "classes as ours)" in m for m in logs)
    else:
        with pytest.raises(ValueError, match="disagree") as err:
            run()
        assert str(archived) in str(err.value)
        assert str(SPLIT_DIR / "testclasses.txt") in str(err.value)


@pytest.mark.parametrize("script_name, filename, check, later", [
    ("download_cub", "birds.zip", "trust on first use", "downloads/CUB_200_2011.tgz"),
    ("download_flowers", "imagelabels.mat", "MD5 e0620be6f572b9609742df49c70aed4d",
     "downloads/102flowers.tgz"),
])
def test_scripts_offline_name_the_files_and_their_places(tmp_path, closed_port_url, capsys,
                                                          script_name, filename, check, later):
    script = load_script(script_name)
    status = script.main(["--root", str(tmp_path), "--mirror", closed_port_url,
                          "--retries", "0", "--timeout", str(TIMEOUT)])
    err = capsys.readouterr().err
    assert status == 2
    assert f"could not download {filename}" in err and f"{closed_port_url}/{filename}" in err
    assert check in err and str(tmp_path.resolve()) in err
    assert f"to:    {tmp_path.resolve() / later}" in err  # the files it has not reached yet
    assert RESOURCES[{"download_cub": "cub", "download_flowers": "flowers_images"}[script_name]
                     ].md5 in err


@pytest.mark.parametrize("script_name, function", [("download_cub", "download_cub"),
                                                   ("download_flowers", "download_flowers")])
def test_scripts_report_a_damaged_archive_in_one_line(tmp_path, capsys, monkeypatch,
                                                      script_name, function):
    """A download that passed its checks but does not unpack (cut, corrupt): the script says
    which archive and what to do, in one line, and exits 2 (no traceback)."""
    from t2ilib.data.archives import extract

    damaged = tmp_path / "downloads" / "birds.zip"
    damaged.parent.mkdir()
    damaged.write_bytes(zipped({"birds/text/a.txt": b"a bird\n" * 50})[:60])
    script = load_script(script_name)
    monkeypatch.setattr(script, function,
                        lambda root, **kwargs: extract(damaged, tmp_path / "birds"))
    assert script.main(["--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"{script_name}.py: error: {damaged}: ")
    assert "download it again" in err[0]
    assert not any((tmp_path / "birds").iterdir())  # nothing, not even a temporary folder


def test_a_refused_archive_is_never_the_trusted_one(server, tmp_path):
    """birds.zip publishes no checksum (trust on first use): a copy that does not extract must
    not be recorded, or the genuine copy fetched next would be refused."""
    key = "001.Black_footed_Albatross/Black_Footed_Albatross_0001_796111"
    cub = tgz({"CUB_200_2011/images.txt": f"1 {key}.jpg\n".encode(),
               "CUB_200_2011/bounding_boxes.txt": b"1 60.0 27.0 325.0 304.0\n",
               f"CUB_200_2011/images/{key}.jpg": b"\xff\xd8 not really a jpeg"})
    good = zipped({f"birds/text/{key}.txt": b"a bird\n",
                   "birds/train/filenames.pickle": b"stand-in",
                   "birds/test/filenames.pickle": b"stand-in"})
    server.files.update({"CUB_200_2011.tgz": cub, "birds.zip": good[:len(good) // 2]})  # cut
    table = {**RESOURCES, "cub": pinned("cub", cub)}
    script = load_script("download_cub")
    quiet = {"mirror": server.url, "resources": table, "timeout": TIMEOUT, "log": lambda _: None}
    with pytest.raises(ArchiveError):
        script.download_cub(tmp_path, **quiet)
    assert not (tmp_path / "downloads" / "birds.zip.sha256").exists()
    (tmp_path / "downloads" / "birds.zip").unlink()  # the user deletes the bad copy, reruns
    server.files["birds.zip"] = good
    assert script.download_cub(tmp_path, **quiet) == tmp_path / "birds"
    assert (tmp_path / "downloads" / "birds.zip.sha256").read_text().split()[0] == \
        hashlib.sha256(good).hexdigest()
