"""Tokenizer, vocabulary and captions.pickle I/O (t2ilib.text.vocab)."""

from __future__ import annotations

import hashlib
import pickle

import pytest

from t2ilib.data.fixtures import py2_pickle_dumps
from t2ilib.io import BadFileError
from t2ilib.text.vocab import (
    SafeUnpickler,
    Vocabulary,
    read_captions_pickle,
    safe_load_pickle,
    tokenize,
    write_captions_pickle,
)


@pytest.mark.parametrize("text, tokens", [
    ("This bird has a RED belly.", ["this", "bird", "has", "a", "red", "belly"]),
    ("wings: black, white; tail-feathers!", ["wings", "black", "white", "tail", "feathers"]),
    ("bird\ufffd\ufffds beak", ["bird", "s", "beak"]),             # CUB's broken apostrophe
    ("a caf\u00e9 bird", ["a", "caf", "bird"]),                    # non-ASCII letters dropped
    ("na\u00efve \u65e5\u672c bird", ["nave", "bird"]),            # all-non-ASCII token dropped
    ("wing_bar 2 tones\r", ["wing_bar", "2", "tones"]),            # \w keeps _ and digits
    ("   ", []),
])
def test_tokenize_by_hand(text, tokens):
    assert tokenize(text) == tokens


def test_build_first_seen_order_and_no_min_count():
    vocab = Vocabulary.build(["the red bird", ["a", "red", "wing"], "The Bird sings"])
    assert vocab.words == ["<end>", "the", "red", "bird", "a", "wing", "sings"]
    assert vocab.word2idx["<end>"] == 0 and vocab.idx2word[0] == "<end>"
    assert vocab.word2idx["sings"] == 6 and len(vocab) == 7   # seen once, still kept
    assert all(vocab.idx2word[i] == w for w, i in vocab.word2idx.items())


def test_encode_decode_round_trip():
    vocab = Vocabulary.build(["a small red bird with black wings"])
    ids = vocab.encode("A small, RED bird!")
    assert ids == [1, 2, 3, 4]
    assert vocab.decode(ids + [0, 0]) == "a small red bird"          # padding skipped
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([99])


def test_ids_of_tokens_must_all_be_known():
    vocab = Vocabulary.build(["a red bird"])
    assert vocab.ids(["bird", "a"]) == [3, 1]
    with pytest.raises(ValueError, match="blue"):
        vocab.ids(["a", "blue", "bird"])


def test_encode_warns_naming_unknown_words():
    vocab = Vocabulary.build(["a red bird"])
    with pytest.warns(UserWarning, match=r"purple.*sparkly|sparkly.*purple"):
        ids = vocab.encode("a purple sparkly bird")
    assert ids == [vocab.word2idx["a"], vocab.word2idx["bird"]]


@pytest.mark.parametrize("caption, message", [
    (None, "must be a string"),
    (42, "must be a string"),
    (b"a red bird", "must be a string"),
    ("", "empty"),
    (" \t\n ", "empty"),
    ("?!...", "no words"),
    ("\u65e5\u672c\u8a9e", "no words"),                      # non-ASCII only: no crash
    ("purple sparkly", "none of the words"),
])
def test_encode_errors(caption, message):
    vocab = Vocabulary.build(["a red bird"])
    with pytest.raises(ValueError, match=message):
        vocab.encode(caption)


def test_invalid_vocabularies_are_refused():
    with pytest.raises(ValueError, match="0..N-1"):
        Vocabulary({0: "<end>", 2: "bird"})
    with pytest.raises(ValueError, match="padding"):
        Vocabulary.from_words(["bird", "red"])
    with pytest.raises(ValueError, match="duplicate"):
        Vocabulary.from_words(["<end>", "red", "red"])


def test_fingerprint_is_the_hash_of_the_word_list():
    a = Vocabulary.from_words(["<end>", "red", "bird"])
    assert a.fingerprint() == hashlib.sha256(b"<end>\nred\nbird").hexdigest()
    assert a.fingerprint() == Vocabulary.build(["red bird"]).fingerprint()
    assert a.fingerprint() != Vocabulary.from_words(["<end>", "bird", "red"]).fingerprint()


def test_captions_pickle_round_trip(tmp_path):
    vocab = Vocabulary.build(["a red bird", "a blue wing"])
    train, test = [[1, 2, 3]], [[1, 4, 5]]
    path = write_captions_pickle(tmp_path / "captions.pickle", train, test, vocab)
    raw = path.read_bytes()
    assert raw[:2] == b"\x80\x02"                                # protocol 2, like AttnGAN's
    loaded = read_captions_pickle(path)
    assert loaded.train == train and loaded.test == test and loaded.vocab == vocab
    plain = pickle.loads(raw)                                     # the format itself
    assert plain[2] == {0: "<end>", 1: "a", 2: "red", 3: "bird", 4: "blue", 5: "wing"}
    assert plain[3] == {w: i for i, w in plain[2].items()}


def test_reads_python2_captions_pickle(tmp_path):
    words = ["<end>", "this", "bird"]
    blob = py2_pickle_dumps([[[1, 2]], [[2]], dict(enumerate(words)),
                             {w: i for i, w in enumerate(words)}])
    (tmp_path / "captions.pickle").write_bytes(blob)
    loaded = read_captions_pickle(tmp_path / "captions.pickle")
    assert loaded.vocab.words == words and loaded.train == [[1, 2]] and loaded.test == [[2]]


def test_captions_pickle_with_bad_ids_is_refused(tmp_path):
    words = ["<end>", "bird"]
    (tmp_path / "c.pickle").write_bytes(pickle.dumps(
        [[[1, 7]], [], dict(enumerate(words)), {w: i for i, w in enumerate(words)}], protocol=2))
    with pytest.raises(ValueError, match="outside"):
        read_captions_pickle(tmp_path / "c.pickle")


class _Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_safe_unpickler_refuses_every_global(tmp_path, capsys):
    (tmp_path / "evil.pickle").write_bytes(pickle.dumps([1, _Evil()], protocol=2))
    with pytest.raises(BadFileError, match=r"refusing to load global \w+\.print"):
        safe_load_pickle(tmp_path / "evil.pickle")
    assert "must never run" not in capsys.readouterr().out
    # Python 3 bytes at protocol 2 need the global _codecs.encode: refused too.
    with pytest.raises(pickle.UnpicklingError):  # the unpickler itself; the file loader wraps it
        import io
        SafeUnpickler(io.BytesIO(pickle.dumps(b"raw", protocol=2))).load()
    # plain data loads, Python 2 byte strings as str
    (tmp_path / "ok.pickle").write_bytes(py2_pickle_dumps(["002.Laysan/a_1", 300, {"k": 70000}]))
    assert safe_load_pickle(tmp_path / "ok.pickle") == ["002.Laysan/a_1", 300, {"k": 70000}]
