"""Import AttnGAN's released DAMSM encoders for CUB as a t2ilib DAMSM checkpoint.

AttnGAN (Xu et al., CVPR 2018) released the DAMSM it pretrained on CUB for 200 epochs
(``DAMSMencoders/bird/`` in ``taoxugit/AttnGAN``'s README, loaded by ``code/model.py``):

* ``text_encoder200.pth``: the state dict of ``RNN_ENCODER``: ``encoder.weight`` (the word
  embedding, ``(n_words, 300)``) and ``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``,
  ``rnn.bias_ih_l0``, ``rnn.bias_hh_l0`` with their ``_reverse`` twins (a bidirectional LSTM
  with 128 units per direction: 256-d word and sentence features);
* ``image_encoder200.pth``: the state dict of ``CNN_ENCODER``: the ImageNet Inception-v3
  trunk ``Conv2d_1a_3x3 ... Mixed_7c`` under torchvision's names, ``emb_features.weight``
  ``(256, 768, 1, 1)`` and ``emb_cnn_code.weight`` / ``.bias`` ``(256, 2048)`` / ``(256,)``;
* ``captions.pickle`` (``[train_captions, test_captions, ixtoword, wordtoix]``, AttnGAN's
  birds data): the vocabulary whose word ``i`` is embedding row ``i``.

:func:`convert_attngan_damsm` checks every key and shape of both files against the encoders
of this library (:class:`~t2ilib.text.encoder.TextEncoder` for that vocabulary,
:class:`~t2ilib.damsm.image_encoder.InceptionEncoder`) before anything is built or written,
renames the keys (:func:`~t2ilib.text.encoder.convert_attngan_text_state_dict`,
:func:`~t2ilib.damsm.image_encoder.convert_attngan_image_state_dict`) and writes one DAMSM
file (:mod:`t2ilib.damsm.checkpoint`) that :func:`~t2ilib.damsm.checkpoint.load_damsm` reads.
Its fingerprint records the source (``extra.source``), the image side the encoder was trained
at (``extra.image_size`` = 299, Inception's) and the vocabulary's fingerprint (``vocab``); its
meta keeps the word list (``vocab_words``) and the SHA-256 of the three source files. A file
that does not fit raises :class:`~t2ilib.io.BadFileError` or
:class:`~t2ilib.engine.checkpoint.CheckpointMismatch` naming the file and the key.

``python -m t2ilib convert-damsm --text ... --image ... --captions ... --out ...`` runs it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from t2ilib.damsm.checkpoint import KIND, damsm_meta, image_encoder_spec
from t2ilib.damsm.image_encoder import (
    InceptionEncoder,
    InceptionEncoderConfig,
    convert_attngan_image_state_dict,
    load_state_dict_allow_missing_bn_counters,
)
from t2ilib.engine.checkpoint import CHECKPOINT_NAME, CheckpointMismatch, write_checkpoint
from t2ilib.engine.fingerprint import run_fingerprint
from t2ilib.io import BadFileError, file_sha256, load_torch
from t2ilib.runtime import checkpoint_root, data_root
from t2ilib.text.encoder import (
    ATTNGAN_TEXT_KEY_MAP,
    TextEncoder,
    TextEncoderConfig,
    convert_attngan_text_state_dict,
)
from t2ilib.text.vocab import Vocabulary, read_captions_pickle

__all__ = ["ATTNGAN_TEXT_FILE", "ATTNGAN_IMAGE_FILE", "ATTNGAN_SOURCE", "ATTNGAN_IMAGE_SIZE",
           "attngan_release_files", "converted_damsm_path", "convert_attngan_damsm",
           "check_damsm_vocabulary"]

ATTNGAN_TEXT_FILE = "text_encoder200.pth"
ATTNGAN_IMAGE_FILE = "image_encoder200.pth"
#: ``extra.source`` of a converted file's fingerprint.
ATTNGAN_SOURCE = "attngan-release"
#: The side Inception-v3 sees (AttnGAN's CNN_ENCODER resizes every image to 299 x 299).
ATTNGAN_IMAGE_SIZE = 299

_REMEDY = ("Use the files of AttnGAN's DAMSM for birds (DAMSMencoders/bird/text_encoder200.pth "
           "and image_encoder200.pth) with the captions.pickle of AttnGAN's birds data")
_IMAGE_KEY_MAP = (("emb_features.", "region_proj."), ("emb_cnn_code.", "global_proj."),
                  ("", "to_regions."), ("", "to_global."))  # (theirs, ours) prefixes
_HIDDEN_HINT = ("AttnGAN's DAMSM text encoder has 128 LSTM units per direction (256-d word and "
                "sentence features, TEXT.EMBEDDING_DIM 256) and 300-d word embeddings")


def attngan_release_files() -> dict[str, Path]:
    """Where the course expects AttnGAN's release (``convert-damsm``'s defaults):
    ``checkpoint_root()/DAMSMencoders/bird/{text,image}_encoder200.pth`` (AttnGAN's own
    layout) and the CUB data's ``data_root()/birds/captions.pickle``."""
    folder = checkpoint_root() / "DAMSMencoders" / "bird"
    return {"text": folder / ATTNGAN_TEXT_FILE, "image": folder / ATTNGAN_IMAGE_FILE,
            "captions": data_root() / "birds" / "captions.pickle"}


def converted_damsm_path() -> Path:
    """Where ``convert-damsm`` writes by default:
    ``checkpoint_root()/damsm_cub_attngan/checkpoint.pt`` (pass it as ``--damsm``)."""
    return checkpoint_root() / "damsm_cub_attngan" / CHECKPOINT_NAME


def _theirs(key: str, key_map: tuple[tuple[str, str], ...]) -> str:
    """Our key -> AttnGAN's (the inverse of the converters' prefix maps)."""
    for theirs, ours in key_map:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    raise AssertionError(f"no AttnGAN name for {key!r}")  # pragma: no cover - a bug here


def _read_state_dict(path: Path, role: str) -> dict[str, torch.Tensor]:
    """The state dict in ``path`` (weights only), refused with a message naming the file when
    it is not a dict of tensors or is the other encoder's file."""
    state = load_torch(path, remedy=_REMEDY)
    if not isinstance(state, Mapping):
        raise BadFileError(path, f"it holds a {type(state).__name__}, not a state dict (a dict "
                           f"of tensors) of AttnGAN's {role} encoder", _REMEDY)
    if "format" in state and "state" in state:
        raise BadFileError(path, f"it is a t2ilib checkpoint (format {state['format']!r}), not "
                           f"AttnGAN's released {role} encoder; a converted DAMSM needs no "
                           "conversion: pass it as --damsm", "")
    wrong = [k for k, v in state.items() if not (isinstance(k, str) and torch.is_tensor(v))]
    if wrong:
        raise BadFileError(path, f"key {wrong[0]!r} does not hold a tensor: not a state dict "
                           f"of AttnGAN's {role} encoder", _REMEDY)
    text_like = any(k.startswith(("encoder.", "rnn.")) for k in state)
    image_like = any(k.startswith(("emb_features.", "emb_cnn_code.", "Conv2d_1a_3x3."))
                     for k in state)
    if role == "text" and image_like and not text_like:
        raise BadFileError(path, "it is AttnGAN's image encoder (CNN_ENCODER: keys "
                           "'Conv2d_1a_3x3...', 'emb_cnn_code.weight'), not the text encoder",
                           f"pass it as --image and {ATTNGAN_TEXT_FILE} as --text")
    if role == "image" and text_like and not image_like:
        raise BadFileError(path, "it is AttnGAN's text encoder (RNN_ENCODER: keys "
                           "'encoder.weight', 'rnn.*'), not the image encoder",
                           f"pass it as --text and {ATTNGAN_IMAGE_FILE} as --image")
    return dict(state)


def _check_keys(path: Path, state: Mapping[str, torch.Tensor], model: torch.nn.Module,
                key_map: tuple[tuple[str, str], ...], what: str, hint: str) -> None:
    """Compare AttnGAN's keys and shapes in ``state`` with ``model``'s (renamed to AttnGAN's);
    BatchNorm's ``num_batches_tracked`` counters may be absent (older PyTorch). ``hint``
    follows a wrong shape."""
    expected = {_theirs(k, key_map): tuple(v.shape) for k, v in model.state_dict().items()}
    problems = [f"key {k!r} is missing" for k in expected
                if k not in state and not k.endswith("num_batches_tracked")]
    problems += [f"key {k!r} is not expected" for k in state if k not in expected]
    shapes = [f"key {k!r} has shape {tuple(state[k].shape)}, expected {shape}"
              for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    problems += shapes
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise BadFileError(path, f"it does not fit AttnGAN's {what}: "
                           f"{'; '.join(problems[:3])}{more}" + (f" ({hint})" if shapes else ""),
                           _REMEDY)


def _converted_text_encoder(path: Path, vocab: Vocabulary, captions_path: Path) -> TextEncoder:
    state = _read_state_dict(path, "text")
    encoder = TextEncoder(TextEncoderConfig(vocab_size=len(vocab)))
    rows, dim = encoder.embed.weight.shape
    found = tuple(state["encoder.weight"].shape) if "encoder.weight" in state else None
    if found is not None and len(found) == 2 and found[1] == dim and found[0] != rows:
        raise CheckpointMismatch(
            f"{path}: key 'encoder.weight' has shape {found}, expected {(rows, dim)}: the "
            f"embedding has {found[0]} rows but the vocabulary of {captions_path} has {rows} "
            "words. Use the captions.pickle this text encoder was trained with (AttnGAN's "
            "birds data)")
    _check_keys(path, state, encoder, ATTNGAN_TEXT_KEY_MAP, "DAMSM text encoder (RNN_ENCODER)",
                _HIDDEN_HINT)
    encoder.load_state_dict(convert_attngan_text_state_dict(state))
    return encoder


def _converted_image_encoder(path: Path) -> InceptionEncoder:
    state = _read_state_dict(path, "image")
    encoder = InceptionEncoder(InceptionEncoderConfig(), pretrained=False)
    _check_keys(path, state, encoder, _IMAGE_KEY_MAP, "DAMSM image encoder (CNN_ENCODER)",
                "AttnGAN's CNN_ENCODER is torchvision's Inception-v3 trunk with 256-d "
                "projections of Mixed_6e and Mixed_7c")
    load_state_dict_allow_missing_bn_counters(encoder, convert_attngan_image_state_dict(state))
    return encoder


def convert_attngan_damsm(text_path: str | os.PathLike[str], image_path: str | os.PathLike[str],
                          captions_path: str | os.PathLike[str],
                          out_path: str | os.PathLike[str] | None = None) -> Path:
    """Convert AttnGAN's released DAMSM (see the module docstring) into a DAMSM file.

    Every file is read and checked before anything is written (atomically) to ``out_path``
    (default :func:`converted_damsm_path`); returns the path written. A missing file raises
    ``FileNotFoundError``; a file that is not the expected one, or whose keys or shapes do
    not fit, :class:`~t2ilib.io.BadFileError` / :class:`CheckpointMismatch` naming the file
    and the key.
    """
    text_path, image_path, captions_path = Path(text_path), Path(image_path), Path(captions_path)
    for path in (text_path, image_path, captions_path):
        if not path.is_file():
            raise FileNotFoundError(f"no such file: {path}")
    vocab = read_captions_pickle(captions_path).vocab
    text_encoder = _converted_text_encoder(text_path, vocab, captions_path)
    image_encoder = _converted_image_encoder(image_path)
    fingerprint = run_fingerprint(
        text_encoder=text_encoder.config, image_encoder=image_encoder_spec(image_encoder),
        extra={"source": ATTNGAN_SOURCE, "dataset": "cub", "image_size": ATTNGAN_IMAGE_SIZE},
        vocab=vocab.fingerprint())
    files = {role: {"name": path.name, "sha256": file_sha256(path)}
             for role, path in (("text", text_path), ("image", image_path),
                                ("captions", captions_path))}
    meta: dict[str, Any] = {
        **damsm_meta(text_encoder, image_encoder),
        "vocab_words": vocab.words,
        "source": {"release": "AttnGAN (Xu et al., CVPR 2018): DAMSM pretrained on CUB, "
                              "DAMSMencoders/bird", "files": files},
    }
    out = Path(out_path) if out_path is not None else converted_damsm_path()
    return write_checkpoint(out, kind=KIND, rng=False, fingerprint=fingerprint, meta=meta,
                            state={"text_encoder": text_encoder, "image_encoder": image_encoder})


def check_damsm_vocabulary(fingerprint: Mapping[str, Any], vocab: Vocabulary,
                           path: str | os.PathLike[str]) -> None:
    """Refuse a DAMSM whose fingerprint records another vocabulary (``vocab``) than the data
    set's: the same number of words in another order would silently read the wrong rows.
    A DAMSM that records none (pretrained here on the data itself) passes."""
    expected = fingerprint.get("vocab")
    if expected is not None and expected != vocab.fingerprint():
        raise CheckpointMismatch(
            f"{path}: its text encoder was made for another vocabulary (fingerprint "
            f"{str(expected)[:12]}) than the data set's ({vocab.fingerprint()[:12]}, "
            f"{len(vocab)} words): put the captions.pickle it was converted with into the "
            "data folder, or convert it again with the data's captions.pickle")
