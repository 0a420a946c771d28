"""Checkpoints and the engine: exact RNG round-trip, weights_only loading, one format with
its kinds, mismatch errors, signals, leftovers of killed saves, fresh logs."""

from __future__ import annotations

import os
import random
import signal
from dataclasses import asdict, dataclass
from types import SimpleNamespace
from typing import ClassVar

import numpy as np
import pytest
import torch

from t2ilib.engine import loop
from t2ilib.engine.checkpoint import FORMAT, CheckpointMismatch, read_checkpoint
from t2ilib.engine.fingerprint import run_fingerprint
from t2ilib.engine.loop import Engine, load_or_train, step_generator
from t2ilib.engine.rng import capture_rng_state, restore_rng_state
from t2ilib.engine.signals import stop_on_signals
from t2ilib.runtime import machine


@dataclass
class Cfg:
    RUN_ONLY: ClassVar[tuple[str, ...]] = ("epochs",)

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


class LinearTask:
    """The smallest engine task: a linear model fitting the sum of its inputs."""

    kind = "linear"
    loss_names = ("mse",)
    steps_per_epoch = 3
    epochs = 2
    device = torch.device("cpu")

    def __init__(self, width: int = 4, lr: float = 0.1):
        self.model, self.opt = _model_and_opt(0)
        self.cfg = Cfg(lr=lr, width=width)

    def state(self):
        return {"model": self.model, "opt": self.opt}

    def fingerprint(self):
        return run_fingerprint(train=self.cfg)

    def meta(self):
        return {"config": self.cfg}

    def start_epoch(self, epoch):
        self.model.train()

    def batch(self, epoch, step):
        return torch.randn(5, 4, generator=step_generator(0, epoch, step))

    def step(self, x):
        loss = (self.model(x) - x.sum(1, keepdim=True)).pow(2).mean() + 0 * torch.rand(())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return loss.detach()[None]

    def samples(self):
        return None

    def sync(self, dist):
        pass


def test_save_then_load_restores_modules_and_rng(tmp_path):
    engine = Engine(LinearTask(), tmp_path)
    engine.fit(stop_after=4, progress_bar=False)
    expected_next = torch.rand(2)
    other = Engine(LinearTask(), tmp_path)
    payload = other.load()
    assert payload["kind"] == "linear" and payload["format"] == FORMAT
    assert (other.step, other.epoch, other.step_in_epoch) == (4, 1, 1)
    for a, b in zip(engine.task.model.state_dict().values(),
                    other.task.model.state_dict().values()):
        assert torch.equal(a, b)
    assert (other.task.opt.state_dict()["state"][0]["step"]
            == engine.task.opt.state_dict()["state"][0]["step"])
    assert torch.equal(torch.rand(2), expected_next)  # the RNG continues where it was saved
    assert payload["meta"] == {"config": asdict(Cfg(lr=0.1, width=4)), "trained_on": machine()}
    torch.load(tmp_path / "checkpoint.pt", weights_only=True)  # weights_only loads it as written


def test_training_time_and_machine_survive_resume_and_load(tmp_path, monkeypatch):
    """A notebook that loads a finished run reports how long the run trained, not the load."""
    clock = iter(range(0, 1000, 10))  # every reading of the engine's clock is 10 s later
    monkeypatch.setattr(loop, "time", SimpleNamespace(perf_counter=lambda: float(next(clock))))
    first = Engine(LinearTask(), tmp_path)
    first.fit(stop_after=4, progress_bar=False)  # start, end of epoch 0, stop in epoch 1
    assert first.train_seconds == 20
    result = load_or_train(Engine(LinearTask(), tmp_path), progress_bar=False)  # resumed
    assert result.trained and result.train_seconds > 20 and result.machine == machine()
    loaded = load_or_train(Engine(LinearTask(), tmp_path), progress_bar=False)
    assert not loaded.trained and loaded.machine == machine()
    assert loaded.train_seconds == result.train_seconds  # the run's time, not the load's
    assert not list(tmp_path.glob(".*.tmp")), "temporary file left behind"


def test_other_config_or_kind_is_refused_with_names(tmp_path):
    Engine(LinearTask(), tmp_path).fit(stop_after=1, progress_bar=False)
    with pytest.raises(CheckpointMismatch, match=r"train.width: checkpoint has 4, this run has 16"):
        Engine(LinearTask(width=16), tmp_path).load()
    Engine(LinearTask(), tmp_path).load()  # a run-only field (epochs) may differ: not fingerprinted
    with pytest.raises(CheckpointMismatch, match="is a 'linear' checkpoint, not 'ssagan'"):
        read_checkpoint(tmp_path / "checkpoint.pt", "ssagan")


def test_run_fingerprint_flattens_sections_and_drops_run_only_fields():
    fp = run_fingerprint(train=Cfg(), data={"n": 3}, world_size=2)
    assert fp == {"train.lr": 1e-4, "train.width": 8, "data.n": 3, "world_size": 2}


@pytest.mark.parametrize("payload, expected", [
    ({"weights": torch.zeros(1)}, "no t2ilib checkpoint format"),
    ({"format": "t2ilib.checkpoint.v1", "state": {}}, "format 't2ilib.checkpoint.v1'"),
    ({"format": "t2ilib.damsm.v1"}, "remake it"),
])
def test_other_formats_are_refused_with_how_to_remake(tmp_path, payload, expected):
    torch.save(payload, tmp_path / "x.pt")
    with pytest.raises(CheckpointMismatch, match=expected):
        read_checkpoint(tmp_path / "x.pt", "ssagan")


def test_a_killed_save_leaves_no_temporary_file_at_the_next_start(tmp_path):
    stale = tmp_path / ".checkpoint.pt.abc123.tmp"
    stale.write_bytes(b"half a checkpoint")
    Engine(LinearTask(), tmp_path)
    assert not stale.exists()


def test_a_running_writers_temporary_file_is_left_alone(tmp_path):
    """Two processes building one file (pytest-xdist workers making one cache): the second
    must not delete the first one's temporary file; a dead writer's file goes."""
    import subprocess
    import sys

    from t2ilib.io import atomic_write, remove_stale_temporaries

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    busy = tmp_path / f".cache.pt.{os.getpid()}.k2j4h5g6.tmp"  # this process: still writing
    killed = tmp_path / f".cache.pt.{dead}.a1b2c3d4.tmp"
    for f in (busy, killed):
        f.write_bytes(b"half")
    assert remove_stale_temporaries(tmp_path) == [killed] and busy.exists()
    with atomic_write(tmp_path / "cache.pt") as f:  # atomic_write names its file that way
        (mine,) = [p for p in tmp_path.glob(".cache.pt.*.tmp") if p != busy]
        assert mine.name.startswith(f".cache.pt.{os.getpid()}.")
        assert remove_stale_temporaries(tmp_path) == [] and mine.exists()
        f.write(b"whole")
    assert (tmp_path / "cache.pt").read_bytes() == b"whole"


def test_a_fresh_run_never_appends_to_an_old_log(tmp_path):
    (tmp_path / "losses.csv").write_text("step,epoch,mse\n1,0.1,9.0\n")
    Engine(LinearTask(), tmp_path).fit(progress_bar=False)
    steps = [line.split(",")[0] for line in (tmp_path / "losses.csv").read_text().splitlines()]
    assert steps == ["step", "3", "6"]  # one row per epoch (log_every 20 > 3 steps)


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


def test_resuming_drops_log_rows_a_kill_cut_in_half(tmp_path):
    engine = Engine(LinearTask(), tmp_path, log_every=1)
    engine.fit(stop_after=3, progress_bar=False)
    with open(tmp_path / "losses.csv", "a") as f:
        f.write("4,1.3\n\x00\x00\x00,")  # a kill mid-write can leave NUL bytes or half a row
    resumed = Engine(LinearTask(), tmp_path, log_every=1)
    resumed.load()
    resumed.fit(progress_bar=False)
    rows = [line.split(",") for line in (tmp_path / "losses.csv").read_text().splitlines()]
    assert [r[0] for r in rows[1:]] == [str(s) for s in range(1, resumed.step + 1)]
    assert all(len(r) == len(rows[0]) for r in rows)


class DivergingTask(LinearTask):
    """LinearTask whose loss turns NaN from step ``at`` on (as a diverging run's does)."""

    def __init__(self, at: int):
        super().__init__()
        self.at, self.calls = at, 0

    def step(self, x):
        self.calls += 1
        loss = super().step(x)
        return loss * float("nan") if self.calls >= self.at else loss


def test_a_non_finite_loss_stops_training_and_keeps_the_last_checkpoint(tmp_path):
    from t2ilib.engine.loop import DivergedError

    engine = Engine(DivergingTask(at=5), tmp_path, log_every=1)
    with pytest.raises(DivergedError, match=r"at step 5 the loss mse is nan .*the last "
                                            r"checkpoint .* is kept"):
        engine.fit(progress_bar=False)
    kept = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert kept["counters"]["step"] == 3  # the end of epoch 0, before the NaN
    assert all(torch.isfinite(v).all() for v in kept["state"]["model"].values())
    log = (tmp_path / "losses.csv").read_text().splitlines()
    assert len(log) == 1 + 4 and "nan" not in log[-1]  # no NaN row is written


def test_a_folder_where_the_checkpoint_goes_is_refused_before_training(tmp_path):
    (tmp_path / "checkpoint.pt").mkdir()
    task = LinearTask()
    with pytest.raises(IsADirectoryError, match="is a folder, not a checkpoint file"):
        load_or_train(Engine(task, tmp_path), progress_bar=False)
    assert not (tmp_path / "losses.csv").exists()  # nothing trained
