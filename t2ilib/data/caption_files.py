"""Caption files: one ``.txt`` per image, one caption per line (CUB's and Oxford-102's layout).

Real files are not all clean: empty or whitespace-only lines, lines without a word, an eleventh
caption, a file with fewer than ten. :func:`read_caption_lines` reads the usable ones and
fills a short file's slots by repeating its captions; :func:`warn_short_captions` says once
which files were short.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

from t2ilib.data.cub_index import META_REMEDY
from t2ilib.io import BadFileError
from t2ilib.text.vocab import tokenize

__all__ = ["CAPTIONS_PER_IMAGE", "read_caption_lines", "warn_short_captions"]

#: Captions per image in CUB and Oxford-102 (Reed et al. 2016).
CAPTIONS_PER_IMAGE = 10


def read_caption_lines(path: str | os.PathLike[str],
                       captions_per_image: int = CAPTIONS_PER_IMAGE,
                       short: list[tuple[Path, int]] | None = None) -> list[str]:
    """The first ``captions_per_image`` captions of a CUB caption file that contain a word.

    Empty lines, whitespace-only lines and lines without any ASCII word token (after
    AttnGAN's tokenisation) are skipped; lines beyond the first ``captions_per_image`` are
    ignored. A file with fewer usable captions is used with what it has, repeated in order
    to fill its ``captions_per_image`` slots (AttnGAN's loader prints an error and keeps
    fewer, which shifts the captions of every later image), and ``(path, count)`` goes into
    ``short`` when given, for one summary warning (:func:`warn_short_captions`). Raises
    ``BadFileError`` (a ``ValueError``) naming the file when none is usable or it is not
    UTF-8 text, ``FileNotFoundError`` when it is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such caption file: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadFileError(path, f"not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                           f"{err.start})", META_REMEDY) from None
    if "\x00" in text:
        raise BadFileError(path, "not a text file (it holds NUL bytes)", META_REMEDY)
    kept = [line.strip() for line in text.split("\n") if tokenize(line)]
    if not kept:
        raise BadFileError(path, "no usable caption (no line holds a word)", META_REMEDY)
    if len(kept) < captions_per_image:
        if short is not None:
            short.append((path, len(kept)))
        kept = [kept[i % len(kept)] for i in range(captions_per_image)]
    return kept[:captions_per_image]


def warn_short_captions(short: Sequence[tuple[Path, int]], captions_per_image: int) -> None:
    """One ``UserWarning`` for every caption file :func:`read_caption_lines` filled up."""
    if short:
        listed = ", ".join(f"{p.name} ({n})" for p, n in short[:5])
        more = f" and {len(short) - 5} more" if len(short) > 5 else ""
        warnings.warn(f"{len(short)} caption file(s) have fewer than {captions_per_image} usable "
                      f"captions; their captions are repeated to fill the slots: {listed}{more}",
                      UserWarning, stacklevel=3)
