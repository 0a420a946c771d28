"""Tiny CUB-200-2011 + AttnGAN-metadata trees with the real data's quirks, for tests.

The real archives are 1.1 GB and cannot be fetched in CI, so the tests make a 12-image tree
in the same formats (metrics_data.md §5.1) and run the real reader on it. It has the quirks
that broke loaders in the wild:

* a **grayscale** JPEG, and its stray RGB copy ``*_rgb.jpg`` that ``images.txt`` does not list;
* a **CMYK** JPEG;
* a bounding box **touching the image border** (AttnGAN's crop is clipped, not square);
* caption files with an **empty line**, a whitespace-only line, the mojibake pair
  ``\\ufffd\\ufffd``, **non-ASCII** words, **CRLF** line ends, an **11th** caption (ignored)
  and a **30-word** caption (longer than the 18-token limit);
* ``filenames.pickle`` / ``class_info.pickle`` as **Python 2 protocol-2 pickles** (byte
  strings, as AttnGAN's are); no ``captions.pickle`` (the reader builds it);
* optionally one caption file with fewer than 10 captions (the reader's error path).

:func:`write_cub_archives` packs a tree into ``CUB_200_2011.tgz`` and ``birds.zip`` laid
out like the real downloads (with a top-level extra file and ``__MACOSX/`` members).
Everything is deterministic: two builds are byte-identical.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

__all__ = ["FIXTURE_CLASSES", "CUBFixture", "py2_pickle_dumps", "make_cub_fixture",
           "write_cub_archives"]

FIXTURE_CLASSES = ("001.Black_footed_Albatross", "002.Laysan_Albatross", "003.Sooty_Albatross")
IMAGES_PER_CLASS = 4

_WORDS = {
    "parts": ("belly", "breast", "wings", "crown", "throat", "tail", "nape", "rectrices"),
    "colors": ("white", "black", "brown", "grey", "dark", "pale", "buff", "sooty"),
    "openers": ("this bird has", "a large bird with", "the seabird has", "this is a bird with"),
}
LONG_CAPTION = ("this very large seabird has a long hooked bill a white head and neck dark "
                "brown upper wings pale underwings a short tail and webbed pink feet that "
                "trail behind")  # 30 words


@dataclass
class CUBFixture:
    """What :func:`make_cub_fixture` made (for tests to assert against)."""

    root: Path
    train_keys: list[str]
    test_keys: list[str]
    bboxes: dict[str, tuple[float, float, float, float]]
    sizes: dict[str, tuple[int, int]]            # key -> (width, height)
    grayscale_key: str
    cmyk_key: str
    border_key: str                              # bbox touching the image border
    long_caption_key: str                        # has the 30-word caption (its 4th line)
    stray_file: Path                             # *_rgb.jpg not in images.txt
    captions: dict[str, list[str]] = field(default_factory=dict)  # the 10 kept captions


def py2_pickle_dumps(obj: object) -> bytes:
    """Pickle lists, dicts, ints and ASCII strs the way Python 2's ``cPickle`` (protocol 2)
    writes them: a ``str`` becomes a byte string (``SHORT_BINSTRING``), which Python 3
    reads back only with ``encoding='latin1'`` (or ``'bytes'``)."""
    out = bytearray(b"\x80\x02")                        # PROTO 2

    def emit(o: object) -> None:
        if isinstance(o, bool) or not isinstance(o, (int, str, list, dict)):
            raise TypeError(f"unsupported type {type(o).__name__}")
        if isinstance(o, int):
            if 0 <= o < 256:
                out.extend(b"K" + bytes([o]))           # BININT1
            elif 0 <= o < 65536:
                out.extend(b"M" + struct.pack("<H", o))  # BININT2
            else:
                out.extend(b"J" + struct.pack("<i", o))  # BININT
        elif isinstance(o, str):
            raw = o.encode("ascii")
            if len(raw) < 256:
                out.extend(b"U" + bytes([len(raw)]) + raw)         # SHORT_BINSTRING
            else:
                out.extend(b"T" + struct.pack("<I", len(raw)) + raw)  # BINSTRING
        elif isinstance(o, list):
            out.extend(b"]")                             # EMPTY_LIST
            if o:
                out.extend(b"(")                         # MARK
                for x in o:
                    emit(x)
                out.extend(b"e")                         # APPENDS
        else:
            out.extend(b"}")                             # EMPTY_DICT
            if o:
                out.extend(b"(")
                for k, v in o.items():
                    emit(k)
                    emit(v)
                out.extend(b"u")                         # SETITEMS

    emit(obj)
    out.extend(b".")                                     # STOP
    return bytes(out)


def _caption(rng: np.random.Generator) -> str:
    w = _WORDS
    pick = lambda k: w[k][int(rng.integers(len(w[k])))]  # noqa: E731
    first, second = f"{pick('colors')} {pick('parts')}", f"{pick('colors')} {pick('parts')}"
    return f"{pick('openers')} a {first} and {second}"


def _draw_image(rng: np.random.Generator, size: tuple[int, int],
                bbox: tuple[float, float, float, float]) -> Image.Image:
    w, h = size
    top, bottom = rng.integers(60, 200, 3), rng.integers(60, 200, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    bg = ((1 - t) * top + t * bottom).round().astype(np.uint8)                 # (H, 1, 3)
    img = Image.fromarray(np.ascontiguousarray(np.broadcast_to(bg, (h, w, 3))))
    x, y, bw, bh = bbox
    ImageDraw.Draw(img).ellipse((x, y, x + bw - 1, y + bh - 1),
                                fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return img


def make_cub_fixture(out_dir: str | os.PathLike[str], seed: int = 0,
                     few_captions: bool = False) -> CUBFixture:
    """Write a 12-image CUB + AttnGAN tree (3 classes; train = classes 1-2, test = class 3).

    ``out_dir`` becomes the dataset root (``<out_dir>/CUB_200_2011/...``, ``<out_dir>/text``,
    ``<out_dir>/train``...). ``few_captions=True`` leaves one train image with 8 captions.
    """
    root = Path(out_dir)
    rng = np.random.default_rng(seed)
    keys, sizes, bboxes = _fixture_index(rng)
    odd = {"gray": keys[1], "cmyk": keys[4], "border": keys[2], "long": keys[5]}
    w, h = sizes[odd["border"]]
    bboxes[odd["border"]] = (0.0, 3.0, float(w // 2), float(h // 2))  # touches the left edge
    _write_images_and_index(root / "CUB_200_2011", keys, sizes, bboxes, rng, odd)
    (root / "attributes.txt").write_text("1 has_bill_shape::curved_(up_or_down)\n")
    kept = _write_fixture_captions(root, keys, rng, odd, few_captions)
    train = [k for k in keys if not k.startswith("003.")]
    test = [k for k in keys if k.startswith("003.")]
    for split, split_keys in (("train", train), ("test", test)):  # Python 2 byte strings
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / split / "filenames.pickle").write_bytes(py2_pickle_dumps(split_keys))
        (root / split / "class_info.pickle").write_bytes(
            py2_pickle_dumps([int(k[:3]) for k in split_keys]))
    stray = root / "CUB_200_2011" / "images" / f"{odd['gray']}_rgb.jpg"
    return CUBFixture(root=root, train_keys=train, test_keys=test, bboxes=bboxes, sizes=sizes,
                      grayscale_key=odd["gray"], cmyk_key=odd["cmyk"], border_key=odd["border"],
                      long_caption_key=odd["long"], stray_file=stray, captions=kept)


def _fixture_index(rng: np.random.Generator
                   ) -> tuple[list[str], dict[str, tuple[int, int]],
                              dict[str, tuple[float, float, float, float]]]:
    """The fixture's image keys (CUB's naming), image sizes and bird boxes."""
    keys, sizes, bboxes = [], {}, {}
    for c, cls in enumerate(FIXTURE_CLASSES):
        stem = "_".join(p.capitalize() for p in cls.split(".", 1)[1].split("_"))
        for k in range(IMAGES_PER_CLASS):
            key = f"{cls}/{stem}_{c * IMAGES_PER_CLASS + k + 1:04d}_{int(rng.integers(1e5, 1e6))}"
            w, h = int(rng.integers(60, 121)), int(rng.integers(60, 121))
            bw, bh = float(rng.integers(w // 4, w // 2)), float(rng.integers(h // 4, h // 2))
            x, y = float(rng.integers(0, w - bw)), float(rng.integers(0, h - bh))
            keys.append(key)
            sizes[key], bboxes[key] = (w, h), (x, y, bw, bh)
    return keys, sizes, bboxes


def _write_images_and_index(cub: Path, keys: list[str], sizes: dict[str, tuple[int, int]],
                            bboxes: dict[str, tuple[float, float, float, float]],
                            rng: np.random.Generator, odd: dict[str, str]) -> None:
    """The JPEGs (one grayscale with a stray unlisted RGB copy, one CMYK) and CUB's text files."""
    for key in keys:
        path = cub / "images" / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        img = _draw_image(rng, sizes[key], bboxes[key])
        if key == odd["gray"]:
            img.save(path.with_name(path.stem + "_rgb.jpg"), quality=90)  # stray, unlisted copy
            img = img.convert("L")
        elif key == odd["cmyk"]:
            img = img.convert("CMYK")
        img.save(path, quality=90)
    ids = {key: i for i, key in enumerate(keys, start=1)}
    (cub / "images.txt").write_text("".join(f"{ids[k]} {k}.jpg\n" for k in keys))
    (cub / "bounding_boxes.txt").write_text(
        "".join(f"{ids[k]} {' '.join(f'{v:.1f}' for v in bboxes[k])}\n" for k in keys))
    (cub / "classes.txt").write_text(
        "".join(f"{i} {c}\n" for i, c in enumerate(FIXTURE_CLASSES, 1)))
    (cub / "image_class_labels.txt").write_text(
        "".join(f"{ids[k]} {int(k[:3])}\n" for k in keys))
    (cub / "train_test_split.txt").write_text("".join(f"{ids[k]} {ids[k] % 2}\n" for k in keys))
    (cub / "README").write_text("CUB-200-2011 fixture made by t2ilib.data.fixtures\n")


def _write_fixture_captions(root: Path, keys: list[str], rng: np.random.Generator,
                            odd: dict[str, str], few_captions: bool) -> dict[str, list[str]]:
    """Ten captions per image, with the quirks of real files (empty and whitespace lines, an
    eleventh caption, CRLF, mojibake, non-ASCII, a 40-word caption); returns the kept ten."""
    kept: dict[str, list[str]] = {}
    for i, key in enumerate(keys):
        caps = [_caption(rng) for _ in range(10)]
        if i == 0:
            caps[2] = "this bird has a dark grey crown and a pale throat"
        if key == odd["gray"]:
            caps[1] = "this bird\ufffd\ufffds wings are black and its belly is white"
        if key == odd["border"]:
            caps[3] = "a café-brown bird with a naïve 日本 look"
        if key == odd["long"]:
            caps[3] = LONG_CAPTION
        kept[key] = caps
        lines = list(caps)
        if i == 0:
            lines.insert(3, "")                          # an empty line
            lines.append("an eleventh caption with zzzignored words")
        if key == odd["gray"]:
            lines.insert(5, "   ")                       # whitespace only
        if few_captions and i == 3:
            lines = lines[:8]
        crlf = key == odd["cmyk"]
        text = "\r\n".join(lines) if crlf else "\n".join(lines)
        path = root / "text" / f"{key}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes((text + ("\r\n" if crlf else "\n")).encode("utf-8"))
    return kept


def _tar_add(tar: tarfile.TarFile, name: str, data: bytes | None) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
    if data is None:
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
    else:
        info.size, info.mode = len(data), 0o644
        tar.addfile(info, io.BytesIO(data))


def write_cub_archives(tree: str | os.PathLike[str], out_dir: str | os.PathLike[str]
                       ) -> tuple[Path, Path]:
    """Pack a fixture tree like the real downloads: ``(CUB_200_2011.tgz, birds.zip)``.

    The tgz holds ``CUB_200_2011/...`` and a top-level ``attributes.txt``; the zip holds
    ``birds/text``, ``birds/{train,test}`` and ``__MACOSX/`` AppleDouble members (no
    ``captions.pickle``). Timestamps and owners are fixed, so the bytes are reproducible.
    """
    tree, out = Path(tree), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tgz = out / "CUB_200_2011.tgz"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        paths = sorted([tree / "CUB_200_2011", *(tree / "CUB_200_2011").rglob("*")])
        for p in paths:
            _tar_add(tar, p.relative_to(tree).as_posix(), None if p.is_dir() else p.read_bytes())
        _tar_add(tar, "attributes.txt", (tree / "attributes.txt").read_bytes())
    with open(tgz, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=0, filename="") as gz:
        gz.write(buf.getvalue())
    zpath = out / "birds.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        members = sorted(p for part in ("text", "train", "test")
                         for p in (tree / part).rglob("*") if p.is_file())
        for p in members:
            name = "birds/" + p.relative_to(tree).as_posix()
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr, info.compress_type = 0o644 << 16, zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
        for junk in ("__MACOSX/birds/._text", "__MACOSX/birds/._train"):
            info = zipfile.ZipInfo(junk, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, b"\x00\x05\x16\x07AppleDouble")
    return tgz, zpath
