"""Tokenizer and vocabulary, exactly as AttnGAN prepares CUB captions (Xu et al., CVPR 2018, §4).

AttnGAN (and after it DM-GAN, DF-GAN and SSA-GAN) turn a caption into word ids in three steps:

1. ``tokenize``: replace the mojibake pair ``\\ufffd\\ufffd`` by a space, lower-case, split
   with nltk's ``RegexpTokenizer(r'\\w+')`` (runs of letters, digits and ``_``; punctuation
   goes), then drop every non-ASCII character from each token (a token left empty is dropped).
2. ``Vocabulary.build``: every token seen in the train *and* test captions gets an id, in
   first-seen order, with no minimum count; id 0 is ``'<end>'`` and is used only as padding.
3. ``encode``: map words to ids.

The vocabulary is the contract between the data and every trained text encoder: the
embedding row :math:`E_{i}` belongs to word ``idx2word[i]``. A pretrained DAMSM therefore only
works with the exact ``captions.pickle`` it was trained with (``[train_caps, test_caps,
ixtoword, wordtoix]``), which :func:`read_captions_pickle` loads with an unpickler that
refuses every global (a pickle from the internet is otherwise a program), and
:meth:`Vocabulary.fingerprint` hashes, so a checkpoint can refuse the wrong vocabulary.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nltk.tokenize import RegexpTokenizer

from t2ilib.io import BadFileError, atomic_write

__all__ = [
    "END_TOKEN", "PAD_ID", "TOKEN_PATTERN", "tokenize", "Vocabulary", "CaptionsPickle",
    "SafeUnpickler", "safe_load_pickle", "read_captions_pickle", "write_captions_pickle",
    "captions_to_ids",
]

END_TOKEN = "<end>"
PAD_ID = 0
TOKEN_PATTERN = r"\w+"
TOKENIZER = RegexpTokenizer(TOKEN_PATTERN)


def tokenize(text: str) -> list[str]:
    """Split one caption into lower-case ASCII word tokens, as AttnGAN's ``load_captions``.

    >>> tokenize("This bird's wings are RED, its belly is caf\\u00e9-brown.")
    ['this', 'bird', 's', 'wings', 'are', 'red', 'its', 'belly', 'is', 'caf', 'brown']
    """
    # BEGIN EXERCISE 01:nb01_tokenize
    tokens = TOKENIZER.tokenize(text.lower())
    ascii_tokens = [t.encode("ascii", "ignore").decode("ascii") for t in tokens]
    return [t for t in ascii_tokens if t]
    # END EXERCISE


class Vocabulary:
    """Bijection between words and ids; id 0 is ``'<end>'`` (padding).

    Build one with :meth:`build` (from captions) or :meth:`from_words` (from an id-ordered
    word list), or load AttnGAN's with :func:`read_captions_pickle`.

    Attributes:
        word2idx: ``{word: id}``.
        idx2word: ``{id: word}``; ids are ``0 .. len(self) - 1``.
    """

    def __init__(self, idx2word: Mapping[int, str]):
        n = len(idx2word)
        if sorted(idx2word) != list(range(n)):
            raise ValueError("vocabulary ids must be exactly 0..N-1")
        if n == 0 or idx2word[PAD_ID] != END_TOKEN:
            raise ValueError(f"id {PAD_ID} must be {END_TOKEN!r} (the padding token)")
        self.idx2word: dict[int, str] = {i: idx2word[i] for i in range(n)}
        self.word2idx: dict[str, int] = {w: i for i, w in self.idx2word.items()}
        if len(self.word2idx) != n:
            raise ValueError("vocabulary has duplicate words")

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Vocabulary:
        """The vocabulary whose id ``i`` is ``words[i]`` (``words[0]`` must be ``'<end>'``)."""
        return cls(dict(enumerate(words)))

    @classmethod
    def build(cls, captions: Iterable[str | Sequence[str]]) -> Vocabulary:
        """Give every token an id in first-seen order (no minimum count), like AttnGAN.

        ``captions`` holds strings (tokenized here) or token lists; pass train then test.
        """
        words = {END_TOKEN: None}  # a dict keeps insertion order: an ordered set
        for caption in captions:
            tokens = tokenize(caption) if isinstance(caption, str) else caption
            for token in tokens:
                words.setdefault(token, None)
        return cls.from_words(list(words))

    def __len__(self) -> int:
        return len(self.idx2word)

    def __contains__(self, word: object) -> bool:
        return word in self.word2idx

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self.idx2word == other.idx2word

    def __repr__(self) -> str:
        return f"Vocabulary({len(self)} words, fingerprint {self.fingerprint()[:12]})"

    @property
    def words(self) -> list[str]:
        """All words in id order (``words[0] == '<end>'``)."""
        return [self.idx2word[i] for i in range(len(self))]

    def ids(self, tokens: Sequence[str]) -> list[int]:
        """Ids of already-tokenized words; every token must be known (``ValueError`` if not)."""
        unknown = [t for t in tokens if t not in self.word2idx]
        if unknown:
            raise ValueError(f"tokens not in the vocabulary: {unknown}")
        return [self.word2idx[t] for t in tokens]

    def encode(self, caption: str) -> list[int]:
        """Ids of a user's caption: tokenized, unknown words dropped with a ``UserWarning``.

        Raises ``ValueError`` for a non-string, an empty or whitespace-only caption, a caption
        with no word tokens, or one with no known word.
        """
        if not isinstance(caption, str):
            raise ValueError(f"a caption must be a string, got {type(caption).__name__}")
        if not caption.strip():
            raise ValueError("the caption is empty (or only whitespace)")
        tokens = tokenize(caption)
        if not tokens:
            raise ValueError(f"the caption {caption!r} has no words (ASCII letters or digits)")
        known = [t for t in tokens if t in self.word2idx]
        unknown = [t for t in tokens if t not in self.word2idx]
        if not known:
            raise ValueError(f"none of the words in {caption!r} is in the vocabulary "
                             f"({len(self)} words); unknown: {unknown}")
        if unknown:
            warnings.warn(f"dropping words not in the vocabulary: {unknown}", UserWarning,
                          stacklevel=2)
        return [self.word2idx[t] for t in known]

    def decode(self, ids: Iterable[int]) -> str:
        """Words of ``ids`` joined by spaces; padding (id 0) is skipped.

        Accepts a list of ints or a 1-D integer tensor.
        """
        words = []
        for i in ids:
            i = int(i)
            if i == PAD_ID:
                continue
            if i not in self.idx2word:
                raise ValueError(f"id {i} is outside the vocabulary (0..{len(self) - 1})")
            words.append(self.idx2word[i])
        return " ".join(words)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the id-ordered word list: equal iff the vocabularies are equal."""
        return hashlib.sha256("\n".join(self.words).encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- pickles

class SafeUnpickler(pickle.Unpickler):
    """An unpickler that refuses every global: only plain data (lists, dicts, str, int...) loads.

    AttnGAN's pickles (``filenames.pickle``, ``class_info.pickle``, ``captions.pickle``) are
    plain data, so nothing is lost; a pickle that names a class or function (which is how
    a malicious pickle runs code) raises ``pickle.UnpicklingError``.
    """

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(
            f"refusing to load global {module}.{name}: this pickle is not plain data")


def safe_load_pickle(path: str | os.PathLike[str], encoding: str = "latin1") -> Any:
    """Load a plain-data pickle with :class:`SafeUnpickler`.

    ``encoding='latin1'`` reads Python 2 ``str`` objects (AttnGAN's files) as ``str``.
    A missing file raises ``FileNotFoundError``. A pickle that names a global (refused: it
    could run code), an empty or truncated file, or one that is not a pickle raises
    :class:`t2ilib.io.BadFileError` naming the file, what is wrong and what to do.
    """
    remedy = "Remake it, or download it again (CUB's pickles: data_scripts/download_cub.py)"
    data = Path(path).read_bytes()
    if not data:
        raise BadFileError(path, "the file is empty (0 bytes), not a pickle", remedy)
    try:
        return SafeUnpickler(io.BytesIO(data), encoding=encoding).load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refusing to load global"):  # from SafeUnpickler.find_class
            problem = f"{err} (loading it could run code; it was not loaded)"
        elif "truncated" in str(err):
            problem = "truncated: the pickle ends early"
        else:
            problem = f"truncated or not a pickle ({' '.join(str(err).split())})"
        raise BadFileError(path, problem, remedy) from None
    except EOFError:
        raise BadFileError(path, "truncated: the pickle ends early", remedy) from None
    except Exception as err:  # a corrupt stream fails in many ways (struct, index, type...)
        reason = " ".join(str(err).split())[:120] or "corrupt data"
        raise BadFileError(path, f"truncated or not a pickle ({type(err).__name__}: "
                             f"{reason})", remedy) from None


@dataclass
class CaptionsPickle:
    """Contents of AttnGAN's ``captions.pickle``.

    Caption ``j`` of image ``i`` (in ``filenames.pickle`` order) is ``train[i * 10 + j]``.
    """

    train: list[list[int]]
    test: list[list[int]]
    vocab: Vocabulary


def read_captions_pickle(path: str | os.PathLike[str]) -> CaptionsPickle:
    """Read ``[train_captions, test_captions, ixtoword, wordtoix]`` safely and check it."""
    obj = safe_load_pickle(path)
    if not (isinstance(obj, (list, tuple)) and len(obj) == 4):
        raise ValueError(f"{path}: expected [train_captions, test_captions, ixtoword, "
                         f"wordtoix], got {type(obj).__name__}")
    train, test, ixtoword, wordtoix = obj
    vocab = Vocabulary({int(i): str(w) for i, w in ixtoword.items()})
    if {str(w): int(i) for w, i in wordtoix.items()} != vocab.word2idx:
        raise ValueError(f"{path}: ixtoword and wordtoix disagree")
    n = len(vocab)
    for name, caps in (("train", train), ("test", test)):
        for cap in caps:
            if any(not 0 < int(i) < n for i in cap):
                raise ValueError(f"{path}: a {name} caption has ids outside 1..{n - 1}")
    return CaptionsPickle([[int(i) for i in c] for c in train],
                          [[int(i) for i in c] for c in test], vocab)


def write_captions_pickle(path: str | os.PathLike[str], train: Sequence[Sequence[int]],
                          test: Sequence[Sequence[int]], vocab: Vocabulary) -> Path:
    """Write AttnGAN's format (protocol 2, so Python 2 code reads it too), atomically."""
    obj = [[list(map(int, c)) for c in train], [list(map(int, c)) for c in test],
           dict(vocab.idx2word), dict(vocab.word2idx)]
    with atomic_write(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)
    return Path(path)


def captions_to_ids(vocab: Vocabulary, captions: Sequence[str],
                    words_num: int = 18) -> tuple[Any, Any]:
    """User captions -> ``(ids (B, words_num) int64, lengths (B,))`` (unknown words dropped).

    A caption longer than ``words_num`` tokens keeps its first ``words_num`` (18: AttnGAN's
    ``WORDS_NUM``).
    """
    import torch

    ids = torch.zeros(len(captions), words_num, dtype=torch.long)
    lengths = torch.zeros(len(captions), dtype=torch.long)
    for i, caption in enumerate(captions):
        tokens = vocab.encode(caption)[:words_num]
        ids[i, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        lengths[i] = len(tokens)
    return ids, lengths
