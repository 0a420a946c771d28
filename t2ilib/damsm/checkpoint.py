"""DAMSM checkpoints: the pretrained encoders in the course's one checkpoint format.

A DAMSM file is a :mod:`t2ilib.engine.checkpoint` file of kind ``"damsm"``:

* ``state``: ``text_encoder`` and ``image_encoder`` (and, in a run's own checkpoint, the
  optimiser and the per-epoch history, so pretraining resumes exactly);
* ``meta``: ``text_config`` and ``image_spec`` (what rebuilds both encoders without any
  download) and ``history`` (one dict per finished epoch);
* ``fingerprint``: the settings of the run that made it (:func:`run_fingerprint`).

Pretraining writes into a **run folder** (``checkpoint.pt``, ``losses.csv``); the functions
here accept the folder or its ``checkpoint.pt`` (:func:`checkpoint_file`). A weights-only
file (:func:`save_damsm`, e.g. converted encoders) is the same format without RNG states.
"""

from __future__ import annotations

import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from t2ilib.damsm.image_encoder import (
    InceptionEncoder,
    InceptionEncoderConfig,
    SmallCNNConfig,
    SmallCNNEncoder,
)
from t2ilib.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointMismatch,
    checkpoint_file,
    config_from,
    load_weights,
    read_checkpoint,
    run_folder,
    write_checkpoint,
)
from t2ilib.runtime import checkpoint_root
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

__all__ = ["KIND", "TOYBIRDS_DAMSM_SIZE", "image_encoder_spec", "build_image_encoder",
           "damsm_meta", "run_folder", "checkpoint_file", "default_checkpoint", "save_damsm",
           "load_damsm", "trained_image_size"]

KIND = "damsm"
#: Side of the images notebook 02's ToyBirds DAMSM is trained on (the generator's 32 px).
TOYBIRDS_DAMSM_SIZE = 32

_IMAGE_ENCODERS = {
    "small_cnn": (SmallCNNEncoder, SmallCNNConfig),
    "inception": (InceptionEncoder, InceptionEncoderConfig),
}


def image_encoder_spec(image_encoder: nn.Module) -> dict[str, Any]:
    """``{"kind": ..., "config": {...}}``: what :func:`build_image_encoder` needs."""
    for kind, (cls, _) in _IMAGE_ENCODERS.items():
        if type(image_encoder).__name__ == cls.__name__:  # by name: a notebook's copy counts too
            return {"kind": kind, "config": asdict(image_encoder.config)}
    raise ValueError(
        f"unknown image encoder type {type(image_encoder).__name__}; "
        f"known: {[c.__name__ for c, _ in _IMAGE_ENCODERS.values()]}"
    )


def build_image_encoder(spec: dict[str, Any], path: str | os.PathLike[str] = "the checkpoint"
                        ) -> nn.Module:
    """An image encoder from :func:`image_encoder_spec`'s dict (random weights; no download).
    A spec that does not fit raises :class:`CheckpointMismatch` naming ``path``."""
    if not isinstance(spec, dict) or spec.get("kind") not in _IMAGE_ENCODERS:
        kind = spec.get("kind") if isinstance(spec, dict) else spec
        raise CheckpointMismatch(f"{path}: unknown image encoder kind {kind!r}; known: "
                                 f"{list(_IMAGE_ENCODERS)}")
    cls, config_cls = _IMAGE_ENCODERS[spec["kind"]]
    config = config_from(config_cls, spec.get("config"), path, "image encoder config")
    return cls(config, pretrained=False) if cls is InceptionEncoder else cls(config)


def damsm_meta(text_encoder: TextEncoder, image_encoder: nn.Module,
               history: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """The ``meta`` of a DAMSM file: both encoders' configurations and the history."""
    return {"text_config": asdict(text_encoder.config),
            "image_spec": image_encoder_spec(image_encoder), "history": list(history or [])}


def default_checkpoint(dataset: str = "toybirds", image_size: int = TOYBIRDS_DAMSM_SIZE) -> Path:
    """Where notebook 02 saves (and later notebooks find) the pretrained DAMSM encoders:
    ``checkpoint_root()/damsm_<dataset><image_size>/checkpoint.pt`` (its run folder)."""
    return checkpoint_root() / f"damsm_{dataset}{image_size}" / CHECKPOINT_NAME


def save_damsm(
    path: str | os.PathLike[str],
    text_encoder: TextEncoder,
    image_encoder: nn.Module,
    fingerprint: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
) -> Path:
    """Write both encoders (weights only: no optimiser, no RNG states) as a DAMSM file that
    :func:`load_damsm` reads; atomically."""
    return write_checkpoint(path, kind=KIND,
                            state={"text_encoder": text_encoder, "image_encoder": image_encoder},
                            fingerprint=fingerprint or {},
                            meta=damsm_meta(text_encoder, image_encoder, history), rng=False)


def load_damsm(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[TextEncoder, nn.Module, dict[str, Any]]:
    """Rebuild both encoders from a DAMSM file or run folder (eval mode, on ``device``).

    Returns ``(text_encoder, image_encoder, info)`` with ``info`` = ``{"fingerprint",
    "history"}``. A file of another format (older t2ilib versions wrote ``t2ilib.damsm.v1``)
    or kind raises :class:`~t2ilib.engine.checkpoint.CheckpointMismatch` saying how to remake it.
    """
    file = checkpoint_file(path)
    payload = read_checkpoint(file, KIND)
    meta, state = payload["meta"], payload["state"]
    text_encoder = TextEncoder(config_from(TextEncoderConfig, meta.get("text_config"), file,
                                           "text encoder config"))
    image_encoder = build_image_encoder(meta.get("image_spec"), file)
    load_weights(text_encoder, state.get("text_encoder"), file, "text encoder")
    load_weights(image_encoder, state.get("image_encoder"), file, "image encoder")
    info = {"fingerprint": payload["fingerprint"], "history": meta.get("history", [])}
    return text_encoder.to(device).eval(), image_encoder.to(device).eval(), info


def trained_image_size(fingerprint: dict[str, Any]) -> int | None:
    """The image side a DAMSM fingerprint records (``extra.image_size``), if any."""
    size = fingerprint.get("extra.image_size")
    if size is None:  # a nested fingerprint (written by hand or by older code)
        size = (fingerprint.get("extra") or {}).get("image_size")
    return int(size) if size is not None else None
