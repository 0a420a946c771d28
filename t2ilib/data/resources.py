"""The real data sets' files: where each lives, how big it is, what it must hash to, and the
check every copy must pass.

The GPU path of the course trains on CUB-200-2011 with AttnGAN's birds metadata (SSA-GAN,
Liao et al. CVPR 2022, §4.1 "Datasets"; the layout is ``ssagan.md`` §4.1 of the reference
notes) and SISGAN's Oxford-102 flowers with Reed et al.'s captions (Dong et al. ICCV 2017,
§4). Where every file lives, its size and its checksum are in :data:`RESOURCES`, the only place
the course writes them down (reference notes ``metrics_data.md`` §3, ``ssagan.md`` §7,
``sisgan.md`` §3). Getting the files is :func:`t2ilib.data.download.fetch`.

**Verification** (:func:`verify_file`) checks the size, then the digests. A file passes when
every published digest matches,

   $$|x| = n_{\\text{pub}} \\quad\\wedge\\quad \\mathrm{MD5}(x) = h^{\\text{md5}}_{\\text{pub}}
     \\quad\\wedge\\quad \\mathrm{SHA256}(x) = h^{\\text{sha256}}_{\\text{pub}},$$

each term only where the value is known. Two files have **no published checksum** (AttnGAN's
``birds.zip`` and Reed's ``cvpr2016_flowers.tar.gz``): for them the SHA-256 of the first
copy is recorded in a sidecar ``<filename>.sha256`` (``sha256sum`` format) and every later
copy must match it. That is *trust on first use*, and the output says so.

When a file cannot be downloaded, :func:`manual_instructions` says which file to fetch by hand,
from where, where to put it and which checksum it must have; :class:`DownloadError` (and its
:class:`ChecksumError`) carry the table entry concerned.
"""

from __future__ import annotations

import hashlib
import os
import re
import types
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from t2ilib.io import BriefError, atomic_write
from t2ilib.runtime import progress

__all__ = [
    "Resource", "Digests", "DownloadError", "ChecksumError", "RESOURCES", "GDRIVE_BASE",
    "file_digests", "verify_file", "pin_first_use", "sidecar_path", "manual_instructions",
]

#: Where ``gdrive:<id>`` sources are fetched from (tests point this at a local server).
GDRIVE_BASE = "https://drive.google.com"
#: Bytes read per ``read()`` call while streaming and hashing.
CHUNK_SIZE = 1 << 20
#: Files smaller than this are hashed without a progress bar.
QUIET_HASH_BYTES = 64 << 20

_HEX = re.compile(r"[0-9a-f]+")


@dataclass(frozen=True)
class Resource:
    """One downloadable file: where it lives, how big it is, what it must hash to.

    ``sources`` are tried in order; each is an ``http(s)://`` URL, ``gdrive:<file id>`` or
    ``gdrive:<file id>?resourcekey=<key>``. The resource key is part of the share link of some
    older Drive files (Google's 2021 link-sharing security update): without it, they are refused.
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
            if not (src.startswith(("http://", "https://")) or _gdrive_parts(src)):
                raise ValueError(f"resource {self.name!r}: source {src!r} is neither an "
                                 "http(s) URL nor 'gdrive:<id>[?resourcekey=<key>]'")
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
        becoming ``<gdrive_base>/uc?export=download&id=<id>`` (``&resourcekey=<key>`` appended
        when the source has one).
        """
        if mirror:
            return [(f"{mirror.rstrip('/')}/{urllib.parse.quote(self.filename)}", False)]
        return [(_gdrive_download_url(*drive, gdrive_base), True)
                if (drive := _gdrive_parts(src)) else (src, False) for src in self.sources]

    def browser_urls(self) -> list[str]:
        """The sources as a person opens them in a browser (Drive files by their page)."""
        return [_gdrive_view_url(*drive) if (drive := _gdrive_parts(src)) else src
                for src in self.sources]


_GDRIVE_SOURCE = re.compile(r"gdrive:([A-Za-z0-9_-]{10,})(?:\?resourcekey=([A-Za-z0-9_-]+))?")


def _gdrive_parts(source: str) -> tuple[str, str | None] | None:
    """``gdrive:<id>[?resourcekey=<key>]`` -> ``(id, key or None)``; None for anything else."""
    m = _GDRIVE_SOURCE.fullmatch(source)
    return (m.group(1), m.group(2)) if m else None


def _gdrive_download_url(file_id: str, resource_key: str | None, base: str) -> str:
    """The direct-download URL of a Drive file, with its resource key where it has one."""
    query = {"export": "download", "id": file_id}
    if resource_key:
        query["resourcekey"] = resource_key
    return f"{base.rstrip('/')}/uc?" + urllib.parse.urlencode(query)


def _gdrive_view_url(file_id: str, resource_key: str | None) -> str:
    """The page of a Drive file as a browser opens it (the share link)."""
    url = f"https://drive.google.com/file/d/{file_id}/view"
    return f"{url}?resourcekey={resource_key}" if resource_key else url


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
        # The share link with its resource key first (older Drive files need it since Google's
        # 2021 link-sharing update); the bare id (the link in Reed's cvpr2016 README) second.
        sources=("gdrive:0B0ywwgffWnLLcms2WWJQRFNSWXM?resourcekey=0-Av8zFbeDDvNcF1sSjDR32w",
                 "gdrive:0B0ywwgffWnLLcms2WWJQRFNSWXM"),
        unpacks_to="text_c10/class_XXXXX/image_XXXXX.txt (10 captions per image) and Reed's "
                   "trainvalclasses.txt / testclasses.txt, possibly inside one wrapper folder",
        note="Reed et al. (CVPR 2016) flower captions; no published checksum (trust on first use)",
    ),
)})


@dataclass(frozen=True)
class Digests:
    """Size and digests of one file, computed in a single pass."""

    size: int
    md5: str
    sha256: str



class DownloadError(BriefError, RuntimeError):
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
                log: Callable[[str], None] = print, pin: bool = True) -> Digests:
    """Check ``path`` against ``resource``; return its digests or raise :class:`ChecksumError`.

    Size first (cheap), then MD5 and SHA-256. For a resource without a published checksum the
    SHA-256 is compared with the sidecar of ``record`` (default: ``path`` itself, see
    :func:`sidecar_path`); when there is no sidecar yet, this copy is trusted and its digest
    written there (trust on first use), and ``log`` says so; with ``pin=False`` it is not
    written yet (:func:`pin_first_use` does it once the file has proved usable, e.g. after
    its extraction), so a file that turns out bad never becomes the trusted one.
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
            if pin:
                pin_first_use(resource, record, digests, log=log)
        elif recorded != digests.sha256:
            raise ChecksumError(f"{path}: SHA-256 {digests.sha256}, but the first download "
                                f"recorded {recorded} in {sidecar} (trust on first use). If the "
                                f"file really changed upstream and you trust it, delete {sidecar}")
    return digests


def pin_first_use(resource: Resource, path: str | os.PathLike[str], digests: Digests, *,
                  log: Callable[[str], None] = print) -> None:
    """Record ``digests.sha256`` as the trusted digest of ``path`` (trust on first use) when
    ``resource`` publishes no checksum and nothing is recorded yet; ``log`` says so."""
    path = Path(path)
    sidecar = sidecar_path(path)
    if resource.pinned or _read_sidecar(sidecar) is not None:
        return
    with atomic_write(sidecar, "w") as f:
        f.write(f"{digests.sha256}  {path.name}\n")
    log(f"[download] {resource.filename}: no checksum is published for this file, so this "
        f"copy is trusted on first use: SHA-256 {digests.sha256} recorded in {sidecar}; "
        "later copies must match it.")


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
