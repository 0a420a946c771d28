"""Verified, resumable downloads of the real data sets, from one table of resources.

The GPU path of the course trains on CUB-200-2011 with AttnGAN's birds metadata (SSA-GAN,
Liao et al. CVPR 2022, §4.1 "Datasets"; the layout is ``ssagan.md`` §4.1 of the reference
notes) and SISGAN's Oxford-102 flowers with Reed et al.'s captions (Dong et al. ICCV 2017,
§4). Where every file lives, its size and its checksum are in :data:`RESOURCES`, the only place
the course writes them down (reference notes ``metrics_data.md`` §3, ``ssagan.md`` §7,
``sisgan.md`` §3).

Every file goes through the same protocol (:func:`fetch`):

1. **Reuse.** If ``<folder>/<filename>`` exists it is verified and reused: no request is made.
   A file that fails verification is left untouched and reported ("delete it and rerun").
2. **Stream** into ``<filename>.part`` with a progress bar. If a ``.part`` is already there the
   request carries ``Range: bytes=<n>-`` and the server may answer

   * ``206 Partial Content``: the rest of the file, appended to the part;
   * ``200 OK``: it ignored the range, so the part is overwritten from byte 0;
   * ``416 Range Not Satisfiable``: the part is complete already (``Content-Range: */n``)
     or useless, in which case it is deleted and the download starts over.

   A dropped connection (fewer bytes than ``Content-Length``, a reset, a time-out) is
   resumed the same way.
3. **Verify** the size, then the digests. A file passes when every published digest matches,

   $$|x| = n_{\\text{pub}} \\quad\\wedge\\quad \\mathrm{MD5}(x) = h^{\\text{md5}}_{\\text{pub}}
     \\quad\\wedge\\quad \\mathrm{SHA256}(x) = h^{\\text{sha256}}_{\\text{pub}},$$

   each term only where the value is known. Two files have **no published checksum** (AttnGAN's
   ``birds.zip`` and Reed's ``cvpr2016_flowers.tar.gz``): for them the SHA-256 of the first
   copy is recorded in a sidecar ``<filename>.sha256`` (``sha256sum`` format) and every later
   copy must match it. That is *trust on first use*, and the output says so.
4. **Rename** the part to its final name (atomic within one file system).

Google Drive answers a large file with a "can't scan this file for viruses" page instead of
the bytes; :func:`fetch` reads that page with ``urllib`` and follows its confirm form (or the
older ``confirm=`` link or ``download_warning`` cookie), so no ``gdown`` is needed.

When nothing can be downloaded (no network, a dead link, a Drive quota), the
:class:`DownloadError` says which file to fetch by hand, from where, where to put it and
which checksum it must have.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import os
import re
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path

from t2ilib.io import atomic_write
from t2ilib.runtime import progress

__all__ = [
    "Resource", "Digests", "Fetched", "DownloadError", "ChecksumError", "RESOURCES",
    "GDRIVE_BASE", "file_digests", "verify_file", "fetch", "sidecar_path", "manual_instructions",
    "explain_failure", "add_download_arguments",
]

#: Where ``gdrive:<id>`` sources are fetched from (tests point this at a local server).
GDRIVE_BASE = "https://drive.google.com"
#: Sent with every request; some hosts refuse urllib's default agent.
USER_AGENT = "t2i-course/0.1 (+python urllib)"
#: Bytes read per ``read()`` call while streaming and hashing.
CHUNK_SIZE = 1 << 20
#: Files smaller than this are hashed without a progress bar.
QUIET_HASH_BYTES = 64 << 20

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Resource:
    """One downloadable file: where it lives, how big it is, what it must hash to.

    ``sources`` are tried in order; each is an ``http(s)://`` URL or ``gdrive:<file id>``.
    ``md5`` / ``sha256`` are lowercase hex digests, ``None`` where nobody publishes one (then
    the first download is trusted and recorded, see :func:`verify_file`). ``unpacks_to``
    describes what an archive holds at its top level (documentation for the scripts and the
    error messages, not a check).
    """

    name: str
    filename: str
    sources: tuple[str, ...]
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    unpacks_to: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ValueError(f"resource {self.name!r} has no source")
        for src in self.sources:
            if not (src.startswith(("http://", "https://")) or _gdrive_id(src)):
                raise ValueError(f"resource {self.name!r}: source {src!r} is neither an "
                                 "http(s) URL nor 'gdrive:<id>'")
        if "/" in self.filename or self.filename in {"", ".", ".."}:
            raise ValueError(f"resource {self.name!r}: filename must be a plain file name, "
                             f"got {self.filename!r}")
        for algo, value, length in (("md5", self.md5, 32), ("sha256", self.sha256, 64)):
            if value is not None and (len(value) != length or not _HEX.fullmatch(value)):
                raise ValueError(f"resource {self.name!r}: {algo} must be {length} lowercase "
                                 f"hex digits, got {value!r}")
        if self.size is not None and self.size < 0:
            raise ValueError(f"resource {self.name!r}: negative size {self.size}")

    @property
    def pinned(self) -> bool:
        """True when a published checksum exists (else: trust on first use)."""
        return self.md5 is not None or self.sha256 is not None

    def urls(self, mirror: str | None = None,
             gdrive_base: str = GDRIVE_BASE) -> list[tuple[str, bool]]:
        """The URLs to try, each with ``True`` where it is a Google Drive download.

        With a ``mirror``: ``<mirror>/<filename>`` alone. Else the sources, ``gdrive:<id>``
        becoming ``<gdrive_base>/uc?export=download&id=<id>``.
        """
        if mirror:
            return [(f"{mirror.rstrip('/')}/{urllib.parse.quote(self.filename)}", False)]
        return [(_gdrive_download_url(gid, gdrive_base), True) if (gid := _gdrive_id(src))
                else (src, False) for src in self.sources]

    def browser_urls(self) -> list[str]:
        """The sources as a person opens them in a browser (Drive files by their page)."""
        return [f"https://drive.google.com/file/d/{gid}/view" if (gid := _gdrive_id(src)) else src
                for src in self.sources]


def _gdrive_id(source: str) -> str | None:
    if source.startswith("gdrive:") and re.fullmatch(r"[A-Za-z0-9_-]{10,}", source[7:]):
        return source[7:]
    return None


def _gdrive_download_url(file_id: str, base: str) -> str:
    return f"{base.rstrip('/')}/uc?" + urllib.parse.urlencode({"export": "download", "id": file_id})


# The table. Facts and their provenance: reference notes metrics_data.md §3.1-3.4, ssagan.md §7,
# sisgan.md §3. Sizes are given where a source states them; MD5s are the published ones.
RESOURCES: Mapping[str, Resource] = types.MappingProxyType({r.name: r for r in (
    Resource(
        name="cub",
        filename="CUB_200_2011.tgz",
        sources=("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                 "gdrive:1hbzc_P1FuxMkcabkgn9ZKinBwW683j45"),
        size=1_150_585_339,
        md5="97eceeb196236b17998738112f37df78",
        unpacks_to="CUB_200_2011/ (images/<class>/<image>.jpg, images.txt, "
                   "bounding_boxes.txt, ...)",
        note="CaltechDATA record 65de6-vp158; the Drive copy is a third-party mirror, accepted "
             "only because the MD5 is checked (fast.ai's copy has another MD5 and is not used)",
    ),
    Resource(
        name="cub_segmentations",
        filename="segmentations.tgz",
        sources=("https://data.caltech.edu/records/w9d68-gec53/files/segmentations.tgz",),
        size=39_272_883,
        md5="4d47ba1228eae64f2fa547c47bc65255",
        unpacks_to="segmentations/<class>/<image>.png (11,788 bird masks)",
        note="optional: real-data masks for the IoU check of SSA-GAN's predicted masks",
    ),
    Resource(
        name="birds_metadata",
        filename="birds.zip",
        sources=("gdrive:1O_LtUP9sch09QH3s_EBAgLEctBQ5JBSJ",),
        unpacks_to="birds/ (text/, train/ and test/ filenames.pickle + class_info.pickle, "
                   "captions.pickle, plus __MACOSX/ junk)",
        note="AttnGAN's birds metadata; no checksum is published anywhere, so the first "
             "download's SHA-256 is recorded and trusted (trust on first use)",
    ),
    Resource(
        name="flowers_images",
        filename="102flowers.tgz",
        sources=("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/102flowers.tgz",),
        md5="52808999861908f626f3c1f4e79d11fa",
        unpacks_to="jpg/image_00001.jpg ... jpg/image_08189.jpg",
        note="Oxford-102 (Nilsback & Zisserman); MD5 as in torchvision's Flowers102",
    ),
    Resource(
        name="flowers_labels",
        filename="imagelabels.mat",
        sources=("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/imagelabels.mat",),
        md5="e0620be6f572b9609742df49c70aed4d",
        note="'labels': 1 x 8189, classes 1..102",
    ),
    Resource(
        name="flowers_splits",
        filename="setid.mat",
        sources=("https://www.robots.ox.ac.uk/~vgg/data/flowers/102/setid.mat",),
        md5="a5357ecc9cb78c4bef273ce3793fc85c",
        note="'trnid' / 'valid' / 'tstid': 1-based image ids, 1,020 / 1,020 / 6,149",
    ),
    Resource(
        name="flowers_captions",
        filename="cvpr2016_flowers.tar.gz",
        sources=("gdrive:0B0ywwgffWnLLcms2WWJQRFNSWXM",),
        unpacks_to="text_c10/class_XXXXX/image_XXXXX.txt (10 captions per image), possibly "
                   "inside one wrapper folder",
        note="Reed et al. (CVPR 2016) flower captions; no published checksum (trust on first use)",
    ),
)})


@dataclass(frozen=True)
class Digests:
    """Size and digests of one file, computed in a single pass."""

    size: int
    md5: str
    sha256: str


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` returns: the verified file, its digests, and whether it was reused."""

    path: Path
    digests: Digests
    reused: bool


class DownloadError(RuntimeError):
    """A file could not be obtained; the message says how to fetch it by hand.

    ``resource`` is the table entry concerned (``None`` when unknown).
    """

    def __init__(self, message: str, resource: Resource | None = None) -> None:
        super().__init__(message)
        self.resource = resource


class ChecksumError(DownloadError):
    """A file's size or digest does not match what the table (or the first download) says."""


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """``<file>.sha256``: where the trust-on-first-use digest of ``<file>`` is recorded."""
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def file_digests(path: str | os.PathLike[str], *, desc: str | None = None) -> Digests:
    """MD5 and SHA-256 of ``path`` in one read (progress bar for big files)."""
    path = Path(path)
    size = path.stat().st_size
    md5 = hashlib.md5(usedforsecurity=False)
    sha = hashlib.sha256()
    quiet = {"disable": True} if size < QUIET_HASH_BYTES else {}
    with open(path, "rb") as f, progress(None, total=size, unit="B", unit_scale=True,
                                         unit_divisor=1024, leave=False,
                                         desc=desc or f"checking {path.name}", **quiet) as bar:
        while chunk := f.read(CHUNK_SIZE):
            md5.update(chunk)
            sha.update(chunk)
            bar.update(len(chunk))
    return Digests(size=size, md5=md5.hexdigest(), sha256=sha.hexdigest())


def _read_sidecar(sidecar: Path) -> str | None:
    if not sidecar.is_file():
        return None
    fields = sidecar.read_text(encoding="utf-8").split()
    if not fields or len(fields[0]) != 64 or not _HEX.fullmatch(fields[0]):
        raise ChecksumError(f"{sidecar} does not hold a SHA-256 digest; delete it and rerun "
                            "(the next download will be trusted and recorded again)")
    return fields[0]


def verify_file(resource: Resource, path: str | os.PathLike[str], *,
                record: str | os.PathLike[str] | None = None,
                log: Callable[[str], None] = print) -> Digests:
    """Check ``path`` against ``resource``; return its digests or raise :class:`ChecksumError`.

    Size first (cheap), then MD5 and SHA-256. For a resource without a published checksum the
    SHA-256 is compared with the sidecar of ``record`` (default: ``path`` itself, see
    :func:`sidecar_path`); when there is no sidecar yet, this copy is trusted and its digest
    written there (trust on first use), and ``log`` says so.
    """
    path = Path(path)
    record = Path(record) if record is not None else path
    size = path.stat().st_size
    if resource.size is not None and size != resource.size:
        raise ChecksumError(f"{path}: size {size:,} bytes, expected {resource.size:,}")
    digests = file_digests(path, desc=f"checking {resource.filename}")
    for algo, want in (("MD5", resource.md5), ("SHA-256", resource.sha256)):
        got = digests.md5 if algo == "MD5" else digests.sha256
        if want is not None and got != want:
            raise ChecksumError(f"{path}: {algo} {got}, expected {want}")
    if not resource.pinned:
        sidecar = sidecar_path(record)
        recorded = _read_sidecar(sidecar)
        if recorded is None:
            with atomic_write(sidecar, "w") as f:
                f.write(f"{digests.sha256}  {record.name}\n")
            log(f"[download] {resource.filename}: no checksum is published for this file, so this "
                f"copy is trusted on first use: SHA-256 {digests.sha256} recorded in {sidecar}; "
                "later copies must match it.")
        elif recorded != digests.sha256:
            raise ChecksumError(f"{path}: SHA-256 {digests.sha256}, but the first download "
                                f"recorded {recorded} in {sidecar} (trust on first use). If the "
                                f"file really changed upstream and you trust it, delete {sidecar}")
    return digests


def manual_instructions(resource: Resource, dest: str | os.PathLike[str], *,
                        header: bool = True) -> str:
    """How to fetch ``resource`` by hand: from where, to where, with which checksum.

    ``header=False`` leaves out the opening sentence (for a list of several files).
    """
    dest = Path(dest).resolve()
    lines = ["Fetch it by hand (a browser works), put it in place, then run this again; the file",
             "will be verified and reused:"] if header else []
    urls = resource.browser_urls()
    lines.append(f"  from:  {urls[0]}")
    lines += [f"    or:  {u}" for u in urls[1:]]
    lines.append(f"  to:    {dest}")
    checks = []
    if resource.size is not None:
        checks.append(f"size {resource.size:,} bytes")
    if resource.md5:
        checks.append(f"MD5 {resource.md5} (md5sum)")
    if resource.sha256:
        checks.append(f"SHA-256 {resource.sha256} (sha256sum)")
    if checks:
        lines.append("  check: " + ", ".join(checks))
    else:
        lines.append(f"  check: no checksum is published; its SHA-256 will be recorded in "
                     f"{sidecar_path(dest)} and trusted from then on (trust on first use)")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Streaming with resume

class _Transient(Exception):
    """The connection broke mid-way; resuming may help."""


class _SourceFailed(Exception):
    """This URL will not give the file (HTTP error, Drive refusal); try the next source."""


class _Offline(Exception):
    """The host cannot be reached at all (refused, no DNS, no route)."""


class _Restart(Exception):
    """The server refused the range for a part it cannot continue: start from byte 0."""


class _DrivePage(HTMLParser):
    """Collects what the Drive warning page offers: forms with hidden fields, links, errors."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[dict[str, str], dict[str, str]]] = []  # (form attrs, fields)
        self.links: list[str] = []
        self.error_parts: list[str] = []
        self._in_error = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a, {}))
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1][1][a["name"]] = a.get("value", "")
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])
        if "uc-error" in a.get("class", "") or tag == "title":
            self._in_error += 1

    def handle_endtag(self, tag: str) -> None:
        if self._in_error and tag in {"p", "div", "title"}:
            self._in_error -= 1

    def handle_data(self, data: str) -> None:
        if self._in_error and data.strip():
            self.error_parts.append(data.strip())


def _gdrive_next_url(page: str, page_url: str, jar: CookieJar) -> str | None:
    """The URL that confirms a Drive download, read from its warning page; None if none."""
    parser = _DrivePage()
    parser.feed(page)
    for attrs, fields in parser.forms:  # current Drive: <form id="download-form" action=...>
        if attrs.get("id") == "download-form" or "confirm" in fields:
            action = urllib.parse.urljoin(page_url, attrs.get("action", ""))  # already unescaped
            return action.split("?")[0] + "?" + urllib.parse.urlencode(fields)
    for href in parser.links:  # older Drive: <a href="/uc?export=download&confirm=XYZ&id=...">
        if "confirm=" in href:
            return urllib.parse.urljoin(page_url, href)
    for cookie in jar:  # oldest: the token in a download_warning_* cookie
        if cookie.name.startswith("download_warning"):
            sep = "&" if "?" in page_url else "?"
            return f"{page_url}{sep}confirm={urllib.parse.quote(cookie.value)}"
    return None


def _gdrive_error(page: str) -> str:
    parser = _DrivePage()
    parser.feed(page)
    return " ".join(parser.error_parts)[:300] or "no download link on the page"


def _open(opener: urllib.request.OpenerDirector, jar: CookieJar, url: str,
          headers: dict[str, str], timeout: float, gdrive: bool) -> http.client.HTTPResponse:
    """Open ``url`` (following Drive's confirm pages when ``gdrive``); classify failures."""
    try:
        resp = opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
        for _ in range(3):
            if not gdrive or resp.headers.get_content_type() != "text/html":
                return resp
            with resp:
                page = resp.read(1 << 20).decode("utf-8", "replace")
                page_url = resp.geturl()
            next_url = _gdrive_next_url(page, page_url, jar)
            if next_url is None:
                raise _SourceFailed(f"Google Drive answered with a page, not the file: "
                                    f"{_gdrive_error(page)}")
            resp = opener.open(urllib.request.Request(next_url, headers=headers), timeout=timeout)
        raise _SourceFailed("Google Drive kept answering with confirmation pages")
    except urllib.error.HTTPError as err:
        if err.code == 416:
            raise _Restart(err.headers.get("Content-Range", "")) from err
        if err.code >= 500 or err.code == 429:
            raise _Transient(f"HTTP {err.code} {err.reason}") from err
        raise _SourceFailed(f"HTTP {err.code} {err.reason}") from err
    except urllib.error.URLError as err:
        if isinstance(err.reason, TimeoutError | ConnectionResetError):
            raise _Transient(str(err.reason)) from err
        raise _Offline(str(err.reason)) from err
    except (TimeoutError, ConnectionResetError, http.client.HTTPException) as err:
        raise _Transient(f"{type(err).__name__}: {err}") from err


def _content_range(value: str | None) -> tuple[int | None, int | None]:
    """``bytes 100-199/1000`` -> (100, 1000); ``bytes */1000`` -> (None, 1000)."""
    m = re.fullmatch(r"\s*bytes\s+(?:(\d+)-\d+|\*)/(\d+|\*)\s*", value or "")
    if not m:
        return None, None
    start = int(m.group(1)) if m.group(1) is not None else None
    total = int(m.group(2)) if m.group(2) != "*" else None
    return start, total


def _one_request(opener: urllib.request.OpenerDirector, jar: CookieJar, url: str, part: Path,
                 resource: Resource, timeout: float, gdrive: bool,
                 log: Callable[[str], None]) -> None:
    """One GET that appends to (206) or rewrites (200) ``part``; raises on a short body."""
    offset = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        resp = _open(opener, jar, url, headers, timeout, gdrive)
    except _Restart as restart:
        _, total = _content_range(str(restart))
        if total is not None and total == offset:
            return  # the part already holds the whole file; verification decides
        raise
    with resp:
        if offset and resp.status == 206:
            start, _ = _content_range(resp.headers.get("Content-Range"))
            if start != offset:
                raise _Restart(f"asked for byte {offset}, got {start}")
            mode = "ab"
        elif resp.status == 200:
            if offset:
                log(f"[download] {resource.filename}: the server ignored the Range request; "
                    "starting over")
            offset, mode = 0, "wb"
        else:
            raise _SourceFailed(f"unexpected HTTP status {resp.status}")
        length_header = resp.headers.get("Content-Length")
        length = int(length_header) if length_header and length_header.isdigit() else None
        total = offset + length if length is not None else resource.size
        received = 0
        with open(part, mode) as f, progress(None, total=total, initial=offset, unit="B",
                                             unit_scale=True, unit_divisor=1024,
                                             desc=resource.filename) as bar:
            while True:
                try:
                    chunk = resp.read(CHUNK_SIZE)
                except (http.client.HTTPException, ConnectionError, TimeoutError) as err:
                    raise _Transient(f"{type(err).__name__}: {err}") from err
                if not chunk:
                    break
                f.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())
        # http.client returns b"" (not an error) when the peer closes early: check the count.
        if length is not None and received < length:
            raise _Transient(f"connection closed after {offset + received:,} of "
                             f"{offset + length:,} bytes")


def _download(url: str, gdrive: bool, part: Path, resource: Resource, timeout: float,
              retries: int, log: Callable[[str], None]) -> None:
    """Fill ``part`` from ``url``, resuming after drops (at most ``retries`` in a row without
    progress) and starting over once on a 416."""
    jar = CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    failures, restarted = 0, False
    while True:
        before = part.stat().st_size if part.exists() else 0
        if resource.size is not None and before > resource.size:
            log(f"[download] {part.name} is longer than {resource.filename} should be; "
                "starting over")
            part.unlink()
            before = 0
        if resource.size is not None and 0 < before == resource.size:
            return  # complete already; verification decides
        try:
            _one_request(opener, jar, url, part, resource, timeout, gdrive, log)
            return
        except _Restart as why:
            if restarted:
                raise _SourceFailed(f"the server refused the byte range twice ({why})") from why
            log(f"[download] {resource.filename}: the server cannot continue the partial file; "
                "starting over")
            part.unlink(missing_ok=True)
            restarted = True
        except _Transient as why:
            after = part.stat().st_size if part.exists() else 0
            failures = 0 if after > before else failures + 1
            if failures > retries:
                raise _SourceFailed(f"the connection kept failing ({why})") from why
            log(f"[download] {resource.filename}: {why}; resuming from byte {after:,}")
            time.sleep(min(failures, 5))  # no wait after a drop that made progress


def fetch(resource: Resource, folder: str | os.PathLike[str], *, mirror: str | None = None,
          gdrive_base: str = GDRIVE_BASE, timeout: float = 30.0, retries: int = 3,
          log: Callable[[str], None] = print) -> Fetched:
    """Make sure ``<folder>/<resource.filename>`` exists and is verified; download it if not.

    ``mirror`` replaces every source by ``<mirror>/<filename>`` (a local copy of the files, or
    the test server); ``gdrive_base`` is where ``gdrive:`` sources go. ``timeout`` is per socket
    operation, in seconds; ``retries`` bounds consecutive failed resumptions that make no
    progress. Raises :class:`ChecksumError` when an existing file or a finished download does
    not verify, :class:`DownloadError` (with :func:`manual_instructions`) when no source works.
    """
    folder = Path(folder)
    final = folder / resource.filename
    if final.exists():
        try:
            digests = verify_file(resource, final, log=log)
        except ChecksumError as err:
            raise ChecksumError(f"{err}\nThe existing file is corrupt or truncated and was left "
                                f"untouched: delete {final} and run this again.",
                                resource) from err
        log(f"[download] {resource.filename}: present and verified, reused")
        return Fetched(final, digests, reused=True)

    folder.mkdir(parents=True, exist_ok=True)
    part = final.with_name(final.name + ".part")
    tried: list[str] = []
    for url, gdrive in resource.urls(mirror, gdrive_base):
        try:
            _download(url, gdrive, part, resource, timeout, retries, log)
            break
        except _Offline as why:
            tried.append(f"{url}: cannot reach the host ({why}); is there a network?")
        except _SourceFailed as why:
            tried.append(f"{url}: {why}")
    else:
        raise DownloadError(f"could not download {resource.filename} ({resource.name}).\n"
                            + "\n".join(f"  tried {t}" for t in tried) + "\n"
                            + manual_instructions(resource, final), resource)

    try:
        digests = verify_file(resource, part, record=final, log=log)
    except ChecksumError as err:
        part.unlink(missing_ok=True)
        raise ChecksumError(f"{err}\nThe download of {resource.filename} does not verify and was "
                            "deleted; run this again to retry.\n"
                            + manual_instructions(resource, final), resource) from err
    os.replace(part, final)
    with contextlib.suppress(OSError):  # make the rename durable where the platform allows
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    log(f"[download] {resource.filename}: downloaded and verified ({digests.size:,} bytes)")
    return Fetched(final, digests, reused=False)



def explain_failure(err: DownloadError, needed: list[tuple[Resource, Path]]) -> str:
    """The message a download script prints when ``err`` stopped it: the error, then how to
    fetch by hand every other file of ``needed`` (``(resource, folder)`` pairs) still missing."""
    lines = [f"error: {err}"]
    others = [(res, folder / res.filename) for res, folder in needed
              if res != err.resource and not (folder / res.filename).exists()]
    if others:
        lines.append("\nThe other files this script needs (fetch them too when there is no "
                     "network):")
    lines += [manual_instructions(res, dest, header=False) for res, dest in others]
    return "\n".join(lines)


def add_download_arguments(parser: argparse.ArgumentParser) -> None:
    """The options every download script shares: --root, --mirror, --timeout, --retries."""
    from t2ilib.runtime import data_root

    parser.add_argument("--root", type=Path, default=data_root(),
                        help="data folder (default: $T2I_DATA or <repo>/data)")
    parser.add_argument("--mirror", default=os.environ.get("T2I_MIRROR") or None,
                        help="fetch every file from MIRROR/<filename> (default: $T2I_MIRROR)")
    parser.add_argument("--timeout", type=float, default=30.0, help="socket time-out, seconds")
    parser.add_argument("--retries", type=int, default=3,
                        help="resumptions in a row without progress before giving up")
