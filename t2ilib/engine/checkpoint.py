"""Training checkpoints: everything needed to continue a run exactly where it stopped.

Every file the course trains (DAMSM encoders, SSA-GAN, SISGAN, the ToyBirds oracle) has one
format, :data:`FORMAT`. A checkpoint is a plain dict (tensors, numbers, strings, lists,
dicts) so that it loads with ``torch.load(..., weights_only=True)``; it is written atomically
(temporary file, then rename), so an interrupted save never leaves a broken file behind:

* ``format`` and ``kind`` (``"ssagan"``, ``"sisgan"``, ``"damsm"``, ``"toy_oracle"``);
* ``state``: the ``state_dict`` of every model and optimiser (and the EMA copy of G);
* ``rng``: the states of Python's, NumPy's, PyTorch's CPU and every CUDA generator
  (:mod:`t2ilib.engine.rng`), so that resuming draws the same noise, captions and crops as an
  uninterrupted run would;
* ``counters``: step, epoch, step within the epoch, and the seconds spent training (summed
  over resumes, so a notebook that loads a finished run reports how long it trained);
* ``fingerprint``: the run's settings by :func:`~t2ilib.engine.fingerprint.run_fingerprint`
  (the one rule for every
  model: configs, data, vocabulary). A run resuming a checkpoint made with other settings
  is refused with an error that names every field that differs;
* ``meta``: what rebuilding the models needs (their configs, the vocabulary's words), and
  ``trained_on``: the machine the run last trained on (:func:`t2ilib.runtime.machine`).

Ctrl-C and SIGTERM become a flag the loop polls (:mod:`t2ilib.engine.signals`), so a run saves
before it stops.
"""

from __future__ import annotations

import dataclasses
import os
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from t2ilib.engine.fingerprint import CheckpointMismatch, plain
from t2ilib.engine.rng import capture_rng_state
from t2ilib.io import REMAKE, BadFileError, file_sha256, load_torch, save_torch
from t2ilib.text.vocab import Vocabulary

__all__ = ["FORMAT", "CHECKPOINT_NAME", "CheckpointMismatch", "write_checkpoint",
           "read_checkpoint", "run_folder", "checkpoint_file", "checkpoint_id", "config_from",
           "load_weights", "stored_vocabulary", "require", "check_resumable", "SCHEMA",
           "SECTIONS"]

#: The one checkpoint format of the course (v1: the trainers' files before the engine).
FORMAT = "t2ilib.checkpoint.v2"
#: The checkpoint's file name inside a run folder.
CHECKPOINT_NAME = "checkpoint.pt"
#: What a checkpoint of each kind holds in its four sections, and of which type: checked by
#: :func:`read_checkpoint` before anything is built, so a file missing a part, or holding one of
#: the wrong type, is one line naming it, never a ``KeyError`` or ``TypeError`` later. A type
#: ``X | None`` marks a part a file may lack (e.g. the EMA copy of G, an unfinished oracle's
#: report); when present it must be an ``X``. Sampling-only files
#: (:mod:`t2ilib.engine.sampling_file`) are ``ssagan``/``sisgan`` files and meet the same schema.
_GAN = {("state", "G"): dict, ("state", "text_encoder"): dict, ("state", "G_ema"): dict | None,
        ("counters", "step"): int, ("counters", "epoch"): int, ("meta", "model_config"): dict,
        ("meta", "text_encoder_config"): dict, ("meta", "vocab_words"): list,
        ("meta", "sampling_only"): dict | None}
SCHEMA: dict[str, dict[tuple[str, str], type | types.UnionType]] = {
    "ssagan": {**_GAN, ("meta", "image_encoder_spec"): dict | None,
               ("state", "image_encoder"): dict | None, ("meta", "damsm_source"): str | None},
    "sisgan": {**_GAN, ("meta", "train_config"): dict, ("meta", "data"): object},
    "damsm": {("state", "text_encoder"): dict, ("state", "image_encoder"): dict,
              ("meta", "text_config"): dict, ("meta", "image_spec"): dict,
              ("meta", "history"): list | None},
    "toy_oracle": {("state", "oracle"): dict, ("meta", "config"): dict,
                   ("meta", "report"): dict | None},
}
#: The sections every checkpoint holds as dicts (``rng`` is checked by :func:`check_resumable`).
SECTIONS = ("state", "counters", "fingerprint", "meta")


def write_checkpoint(path: str | os.PathLike[str], *, kind: str, state: Mapping[str, Any],
                     fingerprint: Mapping[str, Any], meta: Mapping[str, Any],
                     counters: Mapping[str, int] | None = None, rng: bool = True) -> Path:
    """Write a checkpoint atomically (the one format of the course, :data:`FORMAT`).

    ``state`` maps names to anything with ``state_dict()`` (models, optimisers, schedulers).
    ``fingerprint`` (what a resuming run must match) and ``meta`` (configs to rebuild the
    models, the vocabulary) must be plain data. ``rng=False`` leaves the generator states
    out (a file of weights only, e.g. converted encoders).
    """
    payload = {
        "format": FORMAT,
        "kind": kind,
        "state": {name: obj.state_dict() for name, obj in state.items()},
        "rng": capture_rng_state() if rng else None,
        "counters": {k: int(v) for k, v in (counters or {}).items()},
        "fingerprint": plain(dict(fingerprint)),
        "meta": plain(dict(meta)),
    }
    return save_torch(payload, path)


def read_checkpoint(path: str | os.PathLike[str], kind: str | tuple[str, ...],
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint of ``kind`` (``weights_only``) and check its format and kind.

    Raises :class:`CheckpointMismatch` for a file of another format (older t2ilib
    versions wrote ``t2ilib.checkpoint.v1`` / ``t2ilib.damsm.v1``: remake those) or of
    another kind (e.g. a SISGAN checkpoint given where an SSA-GAN one is needed), or whose
    stored word list is not the one its model was trained with; and
    :class:`~t2ilib.io.BadFileError` for a part :data:`SCHEMA` names that is missing or of
    the wrong type.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    payload = load_torch(path, map_location=map_location)
    found = payload.get("format") if isinstance(payload, dict) else None
    if found != FORMAT:
        what = f"format {found!r}" if found else "no t2ilib checkpoint format"
        raise CheckpointMismatch(
            f"{path} has {what}; this t2ilib reads {FORMAT!r}. Files written before the "
            "training engine (format t2ilib.checkpoint.v1 or t2ilib.damsm.v1) cannot be "
            "resumed: remake it by re-running the notebook or command that made it (with "
            "retrain=True / --retrain), or delete it.")
    if payload.get("kind") not in kinds:
        raise CheckpointMismatch(f"{path} is a {payload.get('kind')!r} checkpoint, not "
                                 f"{' or '.join(repr(k) for k in kinds)}: pass a checkpoint "
                                 "of the model this command uses")
    for section in SECTIONS:
        if not isinstance(payload.get(section), dict):
            raise BadFileError(path, f"its {section!r} section is missing or not a dict", REMAKE)
    schema = SCHEMA.get(payload["kind"], {})
    for (section, key), kind_of_value in schema.items():
        require(payload, path, section, key, kind_of_value)
    if ("meta", "vocab_words") in schema:  # a resume or a load never passes an edited list
        size = payload["meta"]["text_encoder_config"].get("vocab_size")
        if isinstance(size, int):  # else the text encoder's config is refused when it is built
            stored_vocabulary(payload, path, size)
    return payload


def require(payload: Mapping[str, Any], path: str | os.PathLike[str], section: str,
            key: str, kind: type | types.UnionType | tuple[type, ...] = object) -> Any:
    """``payload[section][key]``, or :class:`~t2ilib.io.BadFileError` naming what is missing
    or of the wrong type (``its meta['train_config'] is missing``) instead of a ``KeyError``
    from deep inside. A ``kind`` such as ``dict | None`` lets the part be absent (``None``)."""
    found = payload.get(section)
    value = found.get(key) if isinstance(found, Mapping) else None
    optional = isinstance(kind, types.UnionType) and type(None) in kind.__args__
    if value is None and optional:
        return None
    if value is None or not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        what = "is missing" if value is None else f"is a {type(value).__name__}"
        raise BadFileError(path, f"its {section}[{key!r}] {what}", REMAKE)
    return value


def check_resumable(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """What a resume needs beyond the weights: integer counters and the generators' states."""
    for key in ("step", "epoch", "step_in_epoch"):
        require(payload, path, "counters", key, int)
    if not isinstance(payload.get("rng"), Mapping):
        raise BadFileError(path, "it holds no random-generator states ('rng'), so a run cannot "
                           "continue from it exactly", REMAKE)


def config_from(cls: type, values: Any, path: str | os.PathLike[str], what: str) -> Any:
    """``cls(**values)`` for a config dataclass stored in a checkpoint, checked first.

    Unknown fields, missing required fields and values the config refuses raise
    :class:`CheckpointMismatch` naming them (not a ``TypeError`` from deep inside).
    """
    if not isinstance(values, Mapping):
        raise CheckpointMismatch(f"{path}: the stored {what} is not a dict of fields")
    fields = [f for f in dataclasses.fields(cls) if f.init]
    known = {f.name for f in fields}
    required = {f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    problems = [f"unknown field(s) {sorted(set(values) - known)}"] if set(values) - known else []
    if required - set(values):
        problems.append(f"missing field(s) {sorted(required - set(values))}")
    if not problems:
        try:
            return cls(**values)
        except (TypeError, ValueError) as err:
            problems.append(" ".join(str(err).split()))
    raise CheckpointMismatch(f"{path}: the stored {what} ({cls.__name__}) does not fit this "
                             f"t2ilib: {'; '.join(problems)}. {REMAKE}")


def load_weights(module: torch.nn.Module, state: Any, path: str | os.PathLike[str],
                 what: str) -> None:
    """``module.load_state_dict(state)`` after checking every name and shape.

    A file whose weights disagree with its stored configuration (damaged, edited, or paired
    with another config) raises :class:`CheckpointMismatch` naming the first differences,
    instead of PyTorch's page-long size-mismatch error; so does a weight holding NaN or an
    infinity (a diverged run draws black or grey images without a word otherwise).
    """
    own = module.state_dict()
    if not isinstance(state, Mapping):
        raise CheckpointMismatch(f"{path}: the stored {what} weights are not a state dict")
    problems = [f"{k} is missing" for k in own if k not in state]
    problems += [f"{k} is not expected" for k in state if k not in own]
    problems += [f"{k} has shape {tuple(getattr(state[k], 'shape', ()))} in the file, "
                 f"{tuple(v.shape)} in the model" for k, v in own.items()
                 if k in state and (not torch.is_tensor(state[k]) or state[k].shape != v.shape)]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise CheckpointMismatch(f"{path}: the {what} weights do not fit the stored "
                                 f"configuration: {'; '.join(problems[:3])}{more}. {REMAKE}")
    broken = [k for k, v in state.items()
              if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if broken:
        more = f" and {len(broken) - 1} more" if len(broken) > 1 else ""
        raise CheckpointMismatch(f"{path}: the {what} weights hold NaN or infinite values "
                                 f"({broken[0]}{more}): the run diverged before it was saved, or "
                                 "the file was damaged. Use an earlier checkpoint or retrain")
    module.load_state_dict(state)


def stored_vocabulary(payload: Mapping[str, Any], path: str | os.PathLike[str],
                      vocab_size: int) -> Vocabulary:
    """The vocabulary a checkpoint stores (``meta["vocab_words"]``), checked before use.

    Its length must be the text encoder's ``vocab_size`` and its fingerprint the one the run
    trained with (``fingerprint["vocab"]``): a word list cut short or reordered would
    silently draw the wrong words. Raises :class:`CheckpointMismatch` otherwise.
    """
    words = payload["meta"].get("vocab_words")
    if not (isinstance(words, list) and all(isinstance(w, str) for w in words)):
        raise CheckpointMismatch(f"{path}: no stored vocabulary (meta['vocab_words']). {REMAKE}")
    try:
        vocab = Vocabulary.from_words(words)
    except ValueError as err:
        raise CheckpointMismatch(f"{path}: the stored vocabulary is invalid ({err}). "
                                 f"{REMAKE}") from None
    if len(vocab) != vocab_size:
        raise CheckpointMismatch(f"{path}: the stored vocabulary has {len(vocab)} words, the "
                                 f"text encoder {vocab_size}: the word list was cut or "
                                 f"extended. {REMAKE}")
    expected = payload["fingerprint"].get("vocab")
    if expected is not None and vocab.fingerprint() != expected:
        raise CheckpointMismatch(f"{path}: the stored vocabulary is not the one the model was "
                                 f"trained with (fingerprint {vocab.fingerprint()[:12]}, "
                                 f"trained {str(expected)[:12]}): the word list was edited or "
                                 f"reordered. {REMAKE}")
    return vocab


def checkpoint_id(path: str | os.PathLike[str]) -> str:
    """``"checkpoint <run folder>@<12 hex digits>"``: which run, and the SHA-256 of the file.

    The notebooks print it for every checkpoint they write or read; a test checks that all
    committed notebooks agree on each run's digest (one consistent run of the series).
    """
    path = checkpoint_file(path)
    return f"checkpoint {path.parent.name}@{file_sha256(path)[:12]}"


def run_folder(path: str | os.PathLike[str]) -> Path:
    """The run folder a path names: a folder itself; ``<dir>/checkpoint.pt`` its folder;
    any other ``.pt`` file ``<dir>/<name>.pt`` the folder ``<dir>/<name>/`` beside it."""
    path = Path(path)
    if path.suffix != ".pt":
        return path
    return path.parent if path.name == CHECKPOINT_NAME else path.with_suffix("")


def checkpoint_file(path: str | os.PathLike[str]) -> Path:
    """The checkpoint file a path names: an existing file, else the ``checkpoint.pt`` of the
    run folder (:func:`run_folder`) when there is one, else ``path`` as given."""
    path = Path(path)
    if path.is_file():
        return path
    inside = run_folder(path) / CHECKPOINT_NAME
    return inside if inside.is_file() else path


