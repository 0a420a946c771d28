"""Training checkpoints: exact RNG round-trip, weights_only loading, mismatch errors, signals."""

from __future__ import annotations

import os
import random
import signal
from dataclasses import asdict, dataclass

import numpy as np
import pytest
import torch

from t2ilib.train.checkpoint import (
    CheckpointMismatch,
    capture_rng_state,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
    stop_on_signals,
)


@dataclass
class Cfg:
    lr: float = 1e-4
    width: int = 8
    epochs: int = 3


def draws():
    return (random.random(), float(np.random.rand()), float(np.random.randn()),
            torch.rand(3).tolist())


def test_rng_round_trip_reproduces_every_generator():
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.randn()  # leaves a cached gaussian in numpy's legacy state
    state = capture_rng_state()
    first = draws()
    restore_rng_state(state)
    assert draws() == first


def _model_and_opt(seed: int):
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(5, 4)).sum().backward()
    opt.step()
    return model, opt


def test_save_then_load_restores_modules_and_rng(tmp_path):
    model, opt = _model_and_opt(0)
    path = tmp_path / "run.pt"
    save_checkpoint(path, modules={"model": model, "opt": opt}, step=7, epoch=1,
                    config=asdict(Cfg()), vocab_fingerprint="abc")
    expected_next = torch.rand(2)

    other, other_opt = _model_and_opt(1)
    payload = load_checkpoint(path, modules={"model": other, "opt": other_opt},
                              config=asdict(Cfg()), vocab_fingerprint="abc")
    assert payload["step"] == 7 and payload["epoch"] == 1
    for a, b in zip(model.state_dict().values(), other.state_dict().values()):
        assert torch.equal(a, b)
    assert other_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    assert torch.equal(torch.rand(2), expected_next)  # the RNG continues where it was saved
    # weights_only loading works on the file as written
    torch.load(path, weights_only=True)
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_other_config_or_vocabulary_is_refused_with_names(tmp_path):
    model, _ = _model_and_opt(0)
    path = tmp_path / "run.pt"
    save_checkpoint(path, modules={"model": model}, step=1, epoch=0, config=asdict(Cfg()),
                    vocab_fingerprint="abc")
    with pytest.raises(CheckpointMismatch, match=r"width: checkpoint has 8, this run has 16"):
        load_checkpoint(path, modules={"model": model}, config=asdict(Cfg(width=16)))
    # fields listed in ignore (training longer) may differ
    load_checkpoint(path, modules={"model": model}, config=asdict(Cfg(epochs=9)), ignore=["epochs"])
    with pytest.raises(CheckpointMismatch, match="another vocabulary"):
        load_checkpoint(path, modules={"model": model}, vocab_fingerprint="xyz")
    with pytest.raises(CheckpointMismatch, match="no state for"):
        load_checkpoint(path, modules={"model": model, "ema": model})


def test_not_a_checkpoint_is_refused(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatch, match="not a t2ilib training checkpoint"):
        load_checkpoint(tmp_path / "x.pt", modules={})


def test_sigterm_sets_the_stop_flag_instead_of_killing():
    with stop_on_signals() as stop:
        assert not stop
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop and stop.signal == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def test_atomic_writes_get_ordinary_permissions(tmp_path):
    from t2ilib.io import save_torch

    umask = os.umask(0o022)
    try:
        path = save_torch({"x": 1}, tmp_path / "f.pt")
    finally:
        os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o644
