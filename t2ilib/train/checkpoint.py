"""Training checkpoints: everything needed to continue a run exactly where it stopped.

A checkpoint is a plain dict (tensors, numbers, strings, lists, dicts) so that it loads with
``torch.load(..., weights_only=True)``; it is written atomically (temporary file, then
rename), so an interrupted save never leaves a broken file behind. It holds

* the ``state_dict`` of every model and optimiser (and the EMA copy of G, when there is one);
* the random-number states of Python, NumPy, PyTorch's CPU generator and every CUDA device,
  so that resuming draws the same noise, the same captions and the same crops as an
  uninterrupted run would;
* the step and epoch counters;
* the run's configuration and the vocabulary's fingerprint. A checkpoint made with another
  configuration or another vocabulary is refused with an error that names what differs.

NumPy's legacy ``np.random.get_state()`` returns a tuple holding an ``ndarray``, which
``weights_only`` loading rejects; we store its parts as a tensor and plain numbers instead.
"""

from __future__ import annotations

import os
import random
import signal
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

from t2ilib.io import load_torch, save_torch

__all__ = ["CheckpointMismatch", "capture_rng_state", "restore_rng_state", "save_checkpoint",
           "load_checkpoint", "check_compatible", "StopFlag", "stop_on_signals"]

FORMAT = "t2ilib.checkpoint.v1"


class CheckpointMismatch(ValueError):
    """The checkpoint was made by a run with another configuration or vocabulary."""


def capture_rng_state() -> dict[str, Any]:
    """The states of Python's, NumPy's (legacy global) and PyTorch's generators, as plain data."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Put back the generator states saved by :func:`capture_rng_state`."""
    random.setstate(_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


def check_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], *,
                     ignore: Iterable[str] = (), what: str = "configuration") -> None:
    """Raise :class:`CheckpointMismatch` naming every field where ``saved`` and ``current``
    differ (fields in ``ignore``, such as the number of epochs, may differ)."""
    skip = set(ignore)
    keys = (set(saved) | set(current)) - skip
    diffs = [f"{k}: checkpoint has {saved.get(k, '<missing>')!r}, this run has "
             f"{current.get(k, '<missing>')!r}"
             for k in sorted(keys) if saved.get(k) != current.get(k)]
    if diffs:
        raise CheckpointMismatch(f"the checkpoint was made with another {what}:\n  "
                                 + "\n  ".join(diffs)
                                 + "\nUse the same settings, another checkpoint path, or retrain.")


def save_checkpoint(path: str | os.PathLike[str], *, modules: Mapping[str, Any], step: int,
                    epoch: int, config: Mapping[str, Any], vocab_fingerprint: str | None = None,
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically.

    ``modules`` maps names to anything with ``state_dict()`` (models, optimisers, EMA,
    schedulers, GradScaler). ``config`` must be plain data (e.g. ``dataclasses.asdict``).
    """
    payload = {
        "format": FORMAT,
        "state": {name: module.state_dict() for name, module in modules.items()},
        "rng": capture_rng_state(),
        "step": int(step),
        "epoch": int(epoch),
        "config": dict(config),
        "vocab_fingerprint": vocab_fingerprint,
        "extra": dict(extra or {}),
    }
    return save_torch(payload, path)


def load_checkpoint(path: str | os.PathLike[str], *, modules: Mapping[str, Any],
                    config: Mapping[str, Any] | None = None, vocab_fingerprint: str | None = None,
                    ignore: Iterable[str] = (), restore_rng: bool = True,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint into ``modules`` (after checking configuration and vocabulary).

    Returns the payload (``step``, ``epoch``, ``config``, ``extra`` ...). Raises
    :class:`CheckpointMismatch` for another configuration/vocabulary or a missing module.
    """
    payload = load_torch(path, map_location=map_location)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointMismatch(f"{path} is not a t2ilib training checkpoint ({FORMAT})")
    if config is not None:
        check_compatible(payload["config"], config, ignore=ignore)
    if vocab_fingerprint is not None and payload["vocab_fingerprint"] != vocab_fingerprint:
        raise CheckpointMismatch(
            f"{path} was trained with another vocabulary (fingerprint "
            f"{payload['vocab_fingerprint']}, this run: {vocab_fingerprint}); token ids would "
            "mean other words. Use the captions.pickle it was trained with, or retrain.")
    missing = sorted(set(modules) - set(payload["state"]))
    if missing:
        raise CheckpointMismatch(f"{path} holds no state for {missing}")
    for name, module in modules.items():
        module.load_state_dict(payload["state"][name])
    if restore_rng:
        restore_rng_state(payload["rng"])
    return payload


class StopFlag:
    """Set by SIGINT/SIGTERM inside :func:`stop_on_signals`; the training loop polls it."""

    def __init__(self) -> None:
        self.signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextmanager
def stop_on_signals(signals: Iterable[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
    """Turn Ctrl-C / SIGTERM into a flag, so the loop can save a checkpoint and return cleanly.

    A second signal of the same kind falls through to the previous handler (a second
    Ctrl-C still interrupts at once). Outside the main thread (where Python cannot install
    handlers) the flag simply never gets set.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    previous = {}

    def handler(signum: int, frame: Any) -> None:
        if flag:
            signal.signal(signum, previous[signum])
            signal.raise_signal(signum)
        flag.signal = signum

    for sig in signals:
        previous[sig] = signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
