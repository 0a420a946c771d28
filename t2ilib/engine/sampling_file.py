"""Sampling-only files: a trained generator and its text encoder, without what training needs.

A training checkpoint holds everything a resume needs: G, D, the optimisers' moments, the
encoders, the RNG states (88 MB for notebook 07's run). Drawing or editing images needs far less:
G (its EMA copy when the run kept one), the text encoder G was trained with, their configs and
the vocabulary. :func:`export_sampling_file` keeps exactly those, with the floating-point
weights stored in float16 (half the bytes; the networks still run in float32 after loading),
in the same checkpoint format, so :func:`t2ilib.ssagan.sampling.load_generator` and
:func:`t2ilib.sisgan.sampling.load_sisgan` read it unchanged.

``meta["sampling_only"]`` records where the file came from (the source checkpoint's run folder
and SHA-256, which weights G holds, the dtype); the engine refuses to resume from such a file
(:func:`refuse_sampling_only`). The course ships its reference models this way (``models/``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from t2ilib.engine.checkpoint import CheckpointMismatch, checkpoint_id, read_checkpoint
from t2ilib.io import save_torch

__all__ = ["KINDS", "export_sampling_file", "sampling_only", "refuse_sampling_only"]

#: Checkpoint kinds that hold a generator and a text encoder.
KINDS = ("ssagan", "sisgan")


def _cast(state: Mapping[str, Any], dtype: torch.dtype) -> dict[str, Any]:
    """A state dict with every floating-point tensor cast to ``dtype`` (counters stay ints)."""
    return {k: v.to(dtype) if torch.is_tensor(v) and v.is_floating_point() else v
            for k, v in state.items()}


def export_sampling_file(checkpoint: str | os.PathLike[str], out: str | os.PathLike[str],
                         dtype: torch.dtype = torch.float16) -> Path:
    """Write the sampling-only copy of an SSA-GAN or SISGAN training ``checkpoint`` to ``out``.

    Keeps ``state["G"]`` (the EMA weights when the checkpoint has ``G_ema``) and
    ``state["text_encoder"]``, cast to ``dtype``; the counters, fingerprint and meta stay as
    they were, the RNG states are dropped. Returns ``out`` (written atomically).
    """
    payload = read_checkpoint(checkpoint, KINDS)
    if sampling_only(payload):
        raise ValueError(f"{checkpoint} is already a sampling-only file")
    state = payload["state"]
    g_name = "G_ema" if isinstance(state.get("G_ema"), Mapping) else "G"
    for name in (g_name, "text_encoder"):
        if not isinstance(state.get(name), Mapping):
            raise CheckpointMismatch(f"{checkpoint} holds no {name} weights to export")
    exported = {
        **payload,
        "state": {"G": _cast(state[g_name], dtype),
                  "text_encoder": _cast(state["text_encoder"], dtype)},
        "rng": None,
        "meta": {**payload["meta"],
                 "sampling_only": {"source": checkpoint_id(checkpoint), "generator": g_name,
                                   "dtype": str(dtype).removeprefix("torch.")}},
    }
    return save_torch(exported, out)


def sampling_only(payload: Mapping[str, Any]) -> dict[str, Any] | None:
    """What :func:`export_sampling_file` recorded in a loaded checkpoint, or ``None`` for a
    training checkpoint."""
    found = payload.get("meta", {}).get("sampling_only")
    return dict(found) if isinstance(found, Mapping) else None


def refuse_sampling_only(payload: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    """Raise :class:`CheckpointMismatch` when ``payload`` is a sampling-only file: it has no
    D, no optimiser state and no RNG states, so no run can resume from it."""
    found = sampling_only(payload)
    if found is not None:
        raise CheckpointMismatch(
            f"{path} is a sampling-only file (G and the text encoder in {found.get('dtype')}, "
            f"exported from {found.get('source')}): it can draw or edit images but cannot be "
            "resumed; resume from the training checkpoint it was exported from")
