r"""The training engine: one small loop for every model of the course.

Each model brings a **task** (:class:`Task`): its networks and optimisers, how to draw batch
``k`` of epoch ``e``, and one optimisation step (the paper's algorithm, e.g.
:mod:`t2ilib.ssagan.step`). The engine does everything around the step, the same way for
DAMSM pretraining, SSA-GAN, SISGAN and the ToyBirds oracle::

    for epoch in range(start, epochs):
        task.start_epoch(epoch)                  # train mode, learning-rate schedule
        for k in range(step_in_epoch, task.steps_per_epoch):
            with autocast:                        # bf16 on CUDA when asked, else nothing
                losses = task.step(task.batch(epoch, k))
            log every `log_every` steps           # losses.csv (+ TensorBoard)
            stop cleanly on Ctrl-C / SIGTERM       # checkpoint, then return
        sample grid, checkpoint                    # samples/epoch_NNN.png, checkpoint.pt

**Exact resume.** A task draws everything random from generators seeded by ``(seed, epoch,
step, rank)`` (:func:`step_generator`: nothing to save) or from the global generators
(dropout), whose states the checkpoint holds; so N steps in one run and N/2 + resume + N/2
give the same weights bit for bit on the CPU.

**Data parallel.** Under ``torchrun`` every optimiser the task exposes averages its
gradients over the processes just before it steps (a step pre-hook, see
:mod:`t2ilib.engine.ddp`); only rank 0 writes files.

**Run folder** (``run_dir``): ``checkpoint.pt`` (every epoch and on a stop), ``losses.csv``
(one row per ``log_every`` steps, the mean since the previous row), ``samples/epoch_NNN.png``
and, with ``tensorboard=True``, ``tensorboard/``.
"""

from __future__ import annotations

import contextlib
import csv
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor

from t2ilib.engine import ddp
from t2ilib.engine.checkpoint import (
    CHECKPOINT_NAME,
    CheckpointMismatch,
    check_resumable,
    load_weights,
    read_checkpoint,
    write_checkpoint,
)
from t2ilib.engine.fingerprint import check_compatible
from t2ilib.engine.rng import restore_rng_state
from t2ilib.engine.sampling_file import refuse_sampling_only
from t2ilib.engine.signals import stop_on_signals
from t2ilib.io import BriefError, atomic_write, remove_stale_temporaries
from t2ilib.runtime import machine, progress, step_generator
from t2ilib.viz import make_grid, read_loss_csv, save_grid

__all__ = ["Task", "Engine", "TrainResult", "DivergedError", "step_generator", "load_or_train"]


class DivergedError(BriefError, ValueError):
    """A loss became NaN or infinite: the engine stops before saving that state."""


class Task(Protocol):
    """What a model brings to the engine: everything the loop calls, and nothing else.

    Under ``torchrun`` the engine also registers, on every optimiser of :meth:`state`, a step
    pre-hook that averages the gradients over the processes: a task's ``optimizer.step()`` is
    then a collective operation (every process must call it, in the same order).
    """

    kind: str  # "ssagan", "sisgan", "damsm", "toy_oracle": recorded in the checkpoint
    loss_names: tuple[str, ...]  # the columns of the loss log, in the order of step()'s vector
    steps_per_epoch: int
    epochs: int  # the run's length unless told otherwise
    device: torch.device

    def state(self) -> dict[str, Any]:
        """Name -> everything with ``state_dict`` / ``load_state_dict`` (models, optimisers)."""

    def fingerprint(self) -> dict[str, Any]:
        """Flat plain data a checkpoint must match to be resumed (:func:`run_fingerprint`)."""

    def meta(self) -> dict[str, Any]:
        """Plain data stored beside the weights to rebuild the models (configs, vocabulary)."""

    def start_epoch(self, epoch: int) -> None:
        """Before the first step of ``epoch``: train mode, learning-rate schedule."""

    def batch(self, epoch: int, step_in_epoch: int) -> Any:
        """Batch ``step_in_epoch`` of ``epoch``, deterministic in ``(seed, epoch, step, rank)``."""

    def step(self, batch: Any) -> Tensor:
        """One optimisation step; returns the losses ``(len(loss_names),)``, detached."""

    def samples(self) -> tuple[Tensor, int] | None:
        """A grid to save after each epoch: images ``(N, 3, H, W)`` in [-1, 1] and columns."""

    def sync(self, dist: ddp.DistInfo) -> None:
        """On every process before grids and checkpoints: make the processes agree on what
        gradients do not average (e.g. batch-norm statistics); a no-op on one process."""


@dataclass
class TrainResult:
    """What :meth:`Engine.fit` and :func:`load_or_train` return."""

    trained: bool  # False when a finished checkpoint was loaded
    interrupted: bool  # stopped by a signal or ``stop_after`` before the last epoch
    step: int
    epoch: int  # completed epochs
    run_dir: Path | None
    log: dict[str, list[float]] = field(default_factory=dict)  # the loss log's columns
    sample_files: list[Path] = field(default_factory=list)
    train_seconds: float = 0.0  # time spent in fit(), summed over every resume of the run
    machine: str = ""  # where the run last trained (:func:`t2ilib.runtime.machine`)


class Engine:
    """Runs a :class:`Task`: the loop, its log, its grids and its checkpoints.

    Args:
        task: the model's networks, batches and step.
        run_dir: the run folder (None: nothing is written).
        log_every: steps between loss-log rows (and host syncs).
        amp: run the step under bf16 autocast (CUDA only; ignored on the CPU).
        tensorboard: also log losses and grids to ``run_dir/tensorboard``.
        dist: this process's place in a ``torchrun`` job.
    """

    def __init__(self, task: Task, run_dir: str | os.PathLike[str] | None = None, *,
                 log_every: int = 20, amp: bool = False, tensorboard: bool = False,
                 dist: ddp.DistInfo = ddp.SINGLE):
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        self.task, self.dist, self.log_every = task, dist, log_every
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.amp = amp and task.device.type == "cuda"
        self.tensorboard = tensorboard
        self.step = self.epoch = self.step_in_epoch = 0
        self.train_seconds, self.machine = 0.0, ""  # kept in the checkpoint
        self._loss_sum = torch.zeros(len(task.loss_names), device=task.device)
        self._loss_count = 0
        self._writer = None
        if dist.distributed:  # average gradients across processes before every update
            for obj in task.state().values():
                if isinstance(obj, torch.optim.Optimizer):
                    obj.register_step_pre_hook(self._average_gradients)
        if self.run_dir is not None and dist.is_main:
            remove_stale_temporaries(self.run_dir)  # left by a save that was killed

    def _average_gradients(self, optimizer: torch.optim.Optimizer, *_: Any) -> None:
        ddp.average_gradients([p for g in optimizer.param_groups for p in g["params"]],
                              self.dist)

    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    # ------------------------------------------------------------------ the loop
    def fit(self, epochs: int | None = None, stop_after: int | None = None,
            progress_bar: bool = True) -> TrainResult:
        """Train until ``epochs`` (default: the task's) epochs are complete, from the current
        counters.

        ``stop_after`` stops once ``step`` reaches it (like an interruption: checkpoint, then
        return). Ctrl-C / SIGTERM save a checkpoint and return with ``interrupted``.
        """
        task = self.task
        epochs = task.epochs if epochs is None else epochs
        if self.step == 0 and self.run_dir is not None and self.dist.is_main:
            self._forget_old_outputs()  # a fresh run never appends to an old log
        total = epochs * task.steps_per_epoch
        show = self.dist.is_main and progress_bar
        bar = progress(None, total=total, initial=min(self.step, total), desc=task.kind,
                       **({} if show else {"disable": True}))
        interrupted = False
        self.machine, start = machine(task.device), time.perf_counter() - self.train_seconds
        with stop_on_signals() as flag:
            while self.epoch < epochs and not interrupted:
                task.start_epoch(self.epoch)
                while self.step_in_epoch < task.steps_per_epoch:
                    with self.autocast():
                        self._loss_sum += task.step(task.batch(self.epoch, self.step_in_epoch))
                    self._loss_count += 1
                    self.step += 1
                    self.step_in_epoch += 1
                    bar.update(1)
                    if self.step % self.log_every == 0:
                        self._write_log(bar)
                        stop = ddp.any_flag(bool(flag), self.dist, task.device)
                    else:
                        stop = bool(flag) and not self.dist.distributed
                    if stop or (stop_after is not None and self.step >= stop_after):
                        interrupted = True
                        break
                if not interrupted:
                    self.epoch += 1
                    self.step_in_epoch = 0
                self.train_seconds = time.perf_counter() - start
                self._end_of_chunk(bar, grid=not interrupted)
        bar.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        return self.result(trained=True, interrupted=interrupted)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The context every step runs in: bf16 autocast on CUDA with ``amp``, else nothing."""
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _end_of_chunk(self, bar: Any, grid: bool) -> None:
        """After an epoch (or a stop): log row, sample grid, checkpoint."""
        self.task.sync(self.dist)
        self._write_log(bar)
        if grid:
            self.write_samples()
        if self.run_dir is not None:
            self.save()

    def result(self, trained: bool, interrupted: bool = False) -> TrainResult:
        log, files = {}, []
        if self.run_dir is not None:
            if (self.run_dir / "losses.csv").is_file():
                log = read_loss_csv(self.run_dir / "losses.csv")
            files = sorted((self.run_dir / "samples").glob("epoch_*.png"))
        return TrainResult(trained, interrupted, self.step, self.epoch, self.run_dir, log, files,
                           self.train_seconds, self.machine)

    # ------------------------------------------------------------------ log and grids
    def _write_log(self, bar: Any) -> None:
        """Average the losses since the last row (one host sync) and append a CSV row."""
        if self._loss_count == 0:
            return
        means = (self._loss_sum / self._loss_count).tolist()
        names = self.task.loss_names
        broken = [(n, v) for n, v in zip(names, means) if not math.isfinite(v)]
        if broken:  # raised before this state can be saved: the last checkpoint stays
            kept = (f"the last checkpoint ({self.checkpoint_path}) is kept"
                    if self.checkpoint_path is not None and self.checkpoint_path.is_file()
                    else "no checkpoint was written")
            raise DivergedError(f"training diverged: at step {self.step} the loss "
                                f"{broken[0][0]} is {broken[0][1]} (mean of the last "
                                f"{self._loss_count} steps); {kept}. Lower the learning rates or "
                                "check the data, then resume or retrain")
        self._loss_sum.zero_()
        self._loss_count = 0
        if not self.dist.is_main:
            return
        bar.set_postfix({n: f"{v:.3f}" for n, v in list(zip(names, means))[:3]}, refresh=False)
        if self.run_dir is None:
            return
        path = self.run_dir / "losses.csv"
        new = not path.is_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        epoch = self.epoch + self.step_in_epoch / max(self.task.steps_per_epoch, 1)
        with open(path, "a", newline="") as f:
            writer = csv.writer(f)
            if new:
                writer.writerow(["step", "epoch", *names])
            writer.writerow([self.step, round(epoch, 6), *(round(v, 6) for v in means)])
        if self.tensorboard:
            for name, value in zip(names, means):
                self.writer().add_scalar(f"loss/{name}", value, self.step)

    def writer(self):
        """This run's TensorBoard ``SummaryWriter`` (``run_dir/tensorboard``)."""
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # torch's writer needs the tensorboard package
                raise ImportError("tensorboard=True needs the tensorboard package: "
                                  "pip install tensorboard") from err
            self._writer = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._writer

    def write_samples(self) -> Path | None:
        """``samples/epoch_NNN.png``: the task's grid after this epoch (rank 0)."""
        if self.run_dir is None or not self.dist.is_main:
            return None
        grid = self.task.samples()
        if grid is None:
            return None
        images, ncol = grid
        if self.tensorboard:
            self.writer().add_image("samples", make_grid(images, ncol=ncol), self.step)
        return save_grid(images, self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png",
                         ncol=ncol)

    def _forget_old_outputs(self) -> None:
        for old in [self.run_dir / "losses.csv",
                    *sorted((self.run_dir / "samples").glob("epoch_*.png"))]:
            old.unlink(missing_ok=True)

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint being resumed (a hard crash), and any
        row a kill cut in half."""
        path = None if self.run_dir is None else self.run_dir / "losses.csv"
        if path is None or not path.is_file() or not self.dist.is_main:
            return
        with open(path, newline="", errors="replace") as f:
            rows = list(csv.reader(f))
        if not rows:
            path.unlink()
            return
        keep = [rows[0], *(r for r in rows[1:] if len(r) == len(rows[0]) and r[0].isdigit()
                           and int(r[0]) <= self.step)]
        if len(keep) != len(rows):
            with atomic_write(path, "w") as f:
                csv.writer(f).writerows(keep)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Write a checkpoint (rank 0 only; atomic). Returns its path (None on other ranks)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("no path: give one or a run_dir")
        if not self.dist.is_main:
            return None
        return write_checkpoint(path, kind=self.task.kind, state=self.task.state(),
                                fingerprint=self.task.fingerprint(),
                                meta={**self.task.meta(), "trained_on": self.machine},
                                counters={"step": self.step, "epoch": self.epoch,
                                          "step_in_epoch": self.step_in_epoch,
                                          "train_seconds": round(self.train_seconds)})

    def load(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Resume from a checkpoint: weights, optimisers, RNG states, counters.

        Raises :class:`~t2ilib.engine.checkpoint.CheckpointMismatch` when it was made by
        another kind of task or another configuration (names every field that differs).
        """
        path = self.checkpoint_path if path is None else Path(path)
        payload = read_checkpoint(path, kind=self.task.kind, map_location=self.task.device)
        refuse_sampling_only(payload, path)
        check_resumable(payload, path)
        check_compatible(payload["fingerprint"], self.task.fingerprint(), path=path)
        state = self.task.state()
        missing = sorted(set(state) - set(payload["state"]))
        if missing:
            raise CheckpointMismatch(f"{path} holds no state for {missing}")
        for name, obj in state.items():
            if isinstance(obj, torch.nn.Module):
                load_weights(obj, payload["state"][name], path, name)
                continue
            try:  # an optimiser or scheduler: PyTorch checks its groups and sizes
                obj.load_state_dict(payload["state"][name])
            except (ValueError, KeyError, RuntimeError, TypeError) as err:
                raise CheckpointMismatch(f"{path}: the {name} state does not fit this run "
                                         f"({' '.join(str(err).split())[:200]})") from None
        restore_rng_state(payload["rng"])
        counters = payload["counters"]
        self.step, self.epoch = int(counters["step"]), int(counters["epoch"])
        self.step_in_epoch = int(counters["step_in_epoch"])
        self.train_seconds = float(counters.get("train_seconds", 0))  # absent before v0.1
        self.machine = str(payload["meta"].get("trained_on", ""))
        if self.dist.distributed:  # each rank continues its own stream of draws
            torch.manual_seed(step_generator(self.dist.rank, self.step).initial_seed())
        self._truncate_log()
        return payload


def load_or_train(engine: Engine, epochs: int | None = None, *, retrain: bool = False,
                  stop_after: int | None = None, progress_bar: bool = True) -> TrainResult:
    """The notebooks' entry point: reuse ``run_dir/checkpoint.pt`` when it matches.

    * a finished matching checkpoint (``epochs`` done, default the task's): load it, skip training;
    * an unfinished one: resume from it (exactly);
    * ``retrain=True``: ignore it (and the old loss log and grids) and start afresh.

    A checkpoint of another configuration raises
    :class:`~t2ilib.engine.checkpoint.CheckpointMismatch` naming what differs (pass
    ``retrain=True`` or another ``run_dir``).
    """
    epochs = engine.task.epochs if epochs is None else epochs
    path = engine.checkpoint_path
    if path is None:
        raise ValueError("load_or_train needs an engine with a run_dir")
    if path.exists() and not path.is_file():  # found now, not after the whole run
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint file: the run cannot "
                                "save there; move it away or choose another run folder")
    if retrain:
        if engine.dist.is_main:
            path.unlink(missing_ok=True)
    elif path.is_file():
        engine.load(path)
        if engine.epoch >= epochs:
            return engine.result(trained=False)
    return engine.fit(epochs, stop_after=stop_after, progress_bar=progress_bar)
