"""Caption files: one ``.txt`` per image, one caption per line (CUB's and Oxford-102's layout).

Real files are not all clean: empty or whitespace-only lines, lines without a word, an eleventh
caption, a file with fewer than ten, letters outside ASCII. :func:`read_caption_lines` reads the
usable ones and fills a short file's slots by repeating its captions; :class:`CaptionNotes`
collects what was unusual over many files and says it in one warning each.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from t2ilib.data.cub_index import META_REMEDY
from t2ilib.io import BadFileError
from t2ilib.text.vocab import tokenize

__all__ = ["CAPTIONS_PER_IMAGE", "CaptionNotes", "read_caption_lines"]

#: Captions per image in CUB and Oxford-102 (Reed et al. 2016).
CAPTIONS_PER_IMAGE = 10


@dataclass
class CaptionNotes:
    """What :func:`read_caption_lines` found unusual, per file: ``short`` (files with fewer
    usable captions than slots, and how many they have) and ``non_ascii`` (files with captions
    holding non-ASCII letters, which AttnGAN's tokenizer drops: ``tête`` reads ``tte``)."""

    short: list[tuple[Path, int]] = field(default_factory=list)
    non_ascii: list[tuple[Path, int]] = field(default_factory=list)

    def warn(self, captions_per_image: int) -> None:
        """One ``UserWarning`` per kind of note, naming up to five files."""
        for notes, what in ((self.short, f"fewer than {captions_per_image} usable captions; "
                             "their captions are repeated to fill the slots"),
                            (self.non_ascii, "captions with non-ASCII letters, which the "
                             "tokenizer drops (as AttnGAN's: 'tête' reads 'tte')")):
            if notes:
                listed = ", ".join(f"{p.name} ({n})" for p, n in notes[:5])
                more = f" and {len(notes) - 5} more" if len(notes) > 5 else ""
                warnings.warn(f"{len(notes)} caption file(s) have {what}: {listed}{more}",
                              UserWarning, stacklevel=3)


def read_caption_lines(path: str | os.PathLike[str],
                       captions_per_image: int = CAPTIONS_PER_IMAGE,
                       notes: CaptionNotes | None = None) -> list[str]:
    """The first ``captions_per_image`` captions of a CUB caption file that contain a word.

    Empty lines, whitespace-only lines and lines without any ASCII word token (after
    AttnGAN's tokenisation) are skipped; lines beyond the first ``captions_per_image`` are
    ignored. A file with fewer usable captions is used with what it has, repeated in order
    to fill its ``captions_per_image`` slots (AttnGAN's loader prints an error and keeps
    fewer, which shifts the captions of every later image). ``notes`` collects short files and
    captions whose non-ASCII letters the tokenizer drops, for one summary warning. Raises
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
    kept = kept[:captions_per_image]
    if notes is not None:
        if len(kept) < captions_per_image:
            notes.short.append((path, len(kept)))
        n_accented = sum(any(ch.isalpha() and not ch.isascii() for ch in line) for line in kept)
        if n_accented:
            notes.non_ascii.append((path, n_accented))
    return [kept[i % len(kept)] for i in range(captions_per_image)]
