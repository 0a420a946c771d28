"""Verified, resumable downloads of the real data sets' files, and the download scripts' helpers.

What to fetch (the table :data:`~t2ilib.data.resources.RESOURCES`) and how a copy is checked
(:func:`~t2ilib.data.resources.verify_file`) are in :mod:`t2ilib.data.resources`. Every file goes
through the same protocol (:func:`fetch`):

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
3. **Verify** the size, then the digests (trust on first use where no checksum is published).
4. **Rename** the part to its final name (atomic within one file system).

Google Drive answers a large file with a "can't scan this file for viruses" page instead of
the bytes; :func:`fetch` reads that page with ``urllib`` and follows its confirm form (or the
older ``confirm=`` link or ``download_warning`` cookie), so no ``gdown`` is needed.

When nothing can be downloaded (no network, a dead link, a Drive quota), the
:class:`~t2ilib.data.resources.DownloadError` says which file to fetch by hand, from where,
where to put it and which checksum it must have. :func:`explain_failure` and
:func:`add_download_arguments` are what the ``data_scripts/download_*.py`` scripts share.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from pathlib import Path

from t2ilib.data.resources import (
    CHUNK_SIZE,
    GDRIVE_BASE,
    ChecksumError,
    Digests,
    DownloadError,
    Resource,
    manual_instructions,
    verify_file,
)
from t2ilib.runtime import progress

__all__ = ["Fetched", "fetch", "explain_failure", "add_download_arguments"]

#: Sent with every request; some hosts refuse urllib's default agent.
USER_AGENT = "t2i-course/0.1 (+python urllib)"


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch` returns: the verified file, its digests, and whether it was reused."""

    path: Path
    digests: Digests
    reused: bool


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
          log: Callable[[str], None] = print, pin: bool = True) -> Fetched:
    """Make sure ``<folder>/<resource.filename>`` exists and is verified; download it if not.

    ``mirror`` replaces every source by ``<mirror>/<filename>`` (a local copy of the files, or
    the test server); ``gdrive_base`` is where ``gdrive:`` sources go. ``timeout`` is per socket
    operation, in seconds; ``retries`` bounds consecutive failed resumptions that make no
    progress. Raises :class:`ChecksumError` when an existing file or a finished download does
    not verify, :class:`DownloadError` (with :func:`manual_instructions`) when no source works.
    ``pin=False`` leaves the trust-on-first-use record to the caller
    (:func:`~t2ilib.data.resources.pin_first_use`, once the file has been extracted).
    """
    folder = Path(folder)
    final = folder / resource.filename
    if final.exists():
        try:
            digests = verify_file(resource, final, log=log, pin=pin)
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
        digests = verify_file(resource, part, record=final, log=log, pin=pin)
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
