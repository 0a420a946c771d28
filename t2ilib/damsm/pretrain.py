r"""DAMSM pretraining: fit the text and image encoders to each other (AttnGAN, §3.4).

Before any GAN is trained, the text encoder and the image encoder are trained together so
that matching captions and images score high under the DAMSM losses
(:mod:`t2ilib.damsm.losses`):

.. math::

    \mathcal{L}_{DAMSM} = L^w_0 + L^w_1 + L^s_0 + L^s_1 .

The recipe follows AttnGAN's ``pretrain_DAMSM.py`` (the same as SSA-GAN's released encoders):

* Adam, learning rate :math:`2\cdot10^{-3}`, betas (0.5, 0.999), over the text encoder and
  the image encoder's *trainable* parameters (for Inception: the two projections only);
* learning rate :math:`\times 0.98` after every epoch, not below :math:`1/10` of the start
  (:func:`epoch_lr`; AttnGAN re-created the optimiser each epoch, which also reset Adam's
  moments; we keep one optimiser and only change its learning rate);
* gradient-norm clipping at 0.25 on the text encoder (AttnGAN clips the RNN only);
* same-class pairs are not used as negatives (class ids from the batch).

One step of it is :func:`damsm_step`. :class:`DAMSMTask` hands it to the course's training
engine (:mod:`t2ilib.engine.loop`), which runs the loop, writes the run folder
(``checkpoint.pt``, ``losses.csv``), stops cleanly on Ctrl-C and resumes exactly: batch ``k``
of epoch ``e`` is drawn from a permutation seeded by ``(seed, e)``, and a dataset with
``set_epoch`` (:class:`~t2ilib.data.cache.CachedCUBDataset` with a ``seed``) draws its
captions and crops from ``(seed, e, item)``. :func:`load_or_train_damsm` loads a finished
checkpoint of the same settings, resumes an unfinished one, or trains afresh.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.damsm.checkpoint import (
    TOYBIRDS_DAMSM_SIZE,
    build_image_encoder,
    damsm_meta,
    default_checkpoint,
    image_encoder_spec,
    load_damsm,
    run_folder,
    save_damsm,
    trained_image_size,
)
from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.damsm.losses import SSAGAN_GAMMAS, DAMSMGammas, DAMSMLosses, damsm_loss
from t2ilib.data.cub import collate_sorted
from t2ilib.engine import ddp
from t2ilib.engine.fingerprint import run_fingerprint
from t2ilib.engine.loop import Engine, load_or_train
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

__all__ = [
    "DAMSMTrainConfig", "DAMSMRun", "DAMSMTask", "damsm_batch_losses", "damsm_step",
    "epoch_lr", "batch_to_device", "train_damsm", "evaluate_damsm", "load_or_train_damsm",
    "load_or_train_toybirds_damsm",
    # re-exported from t2ilib.damsm.checkpoint
    "TOYBIRDS_DAMSM_SIZE", "image_encoder_spec", "build_image_encoder", "default_checkpoint",
    "save_damsm", "load_damsm", "trained_image_size",
]

LOSS_NAMES = ("w0", "w1", "s0", "s1")


@dataclass(frozen=True)
class DAMSMTrainConfig:
    """DAMSM pretraining settings (defaults: AttnGAN's ``cfg/DAMSM/bird.yml``, SSA-GAN's gammas)."""

    RUN_ONLY: ClassVar[tuple[str, ...]] = ("epochs",)  # a longer run may resume a shorter one

    epochs: int = 10
    lr: float = 2e-3
    lr_decay: float = 0.98  # multiply the learning rate by this after every epoch ...
    min_lr_ratio: float = 0.1  # ... but not below lr * min_lr_ratio
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 0.25  # max gradient norm of the text encoder's parameters
    gammas: DAMSMGammas = SSAGAN_GAMMAS
    max_steps_per_epoch: int | None = None  # cut every epoch short (smoke runs)


def damsm_batch_losses(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    batch: tuple,
    gammas: DAMSMGammas = SSAGAN_GAMMAS,
) -> DAMSMLosses:
    """The four DAMSM losses of one ``(images, captions, lengths, class_ids, keys)`` batch
    (images, captions and class ids on the encoders' device; :func:`batch_to_device`)."""
    images, captions, lengths, class_ids = batch[0], batch[1], batch[2], batch[3]
    words, sentences = text_encoder(captions, lengths)  # (B, D, T), (B, D)
    regions, codes = image_encoder(images)  # (B, D, h, w), (B, D)
    return damsm_loss(regions, codes, words, sentences, lengths, class_ids, gammas)


def damsm_step(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple,
    config: DAMSMTrainConfig,
) -> DAMSMLosses:
    """One pretraining step on ``batch``: losses, fresh gradients, the text encoder's gradient
    norm clipped at ``config.grad_clip``, one optimiser update. Returns the losses."""
    losses = damsm_batch_losses(text_encoder, image_encoder, batch, config.gammas)
    optimizer.zero_grad(set_to_none=True)
    losses.total.backward()
    text_params = [p for p in text_encoder.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_(text_params, config.grad_clip)
    optimizer.step()
    return losses


def epoch_lr(config: DAMSMTrainConfig, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based)."""
    return max(config.lr * config.lr_decay**epoch, config.lr * config.min_lr_ratio)


def batch_to_device(batch: tuple, device: torch.device | str) -> tuple:
    """``(images, captions, lengths, class_ids, keys)`` with images, captions and class ids
    on ``device``; the lengths stay on the CPU (packed sequences want them there)."""
    images, captions, lengths, class_ids, *rest = batch
    return (images.to(device), captions.to(device), torch.as_tensor(lengths),
            torch.as_tensor(class_ids).to(device), *rest)


# --- The engine task ---------------------------------------------------------------------------

class EpochHistory:
    """Per-epoch means of the losses (``DAMSMRun.history``), kept in the checkpoint so that a
    resumed run's history equals an uninterrupted one's. One dict per finished epoch:
    ``epoch`` (1-based), ``lr``, ``steps``, ``w0, w1, s0, s1, total``, ``seconds`` (training
    time since the start)."""

    def __init__(self, device: torch.device):
        self.device, self.rows = device, []
        self._sum: Tensor | None = None
        self._steps, self._seconds, self._tick = 0, 0.0, time.perf_counter()

    def start(self) -> None:
        self._tick = time.perf_counter()

    def add(self, losses: Tensor, epoch: int, lr: float, last: bool) -> None:
        self._sum = losses if self._sum is None else self._sum + losses
        self._steps += 1
        now = time.perf_counter()
        self._seconds, self._tick = self._seconds + now - self._tick, now
        if last:  # one host sync per epoch
            means = dict(zip(LOSS_NAMES, (self._sum / self._steps).tolist()))
            self.rows.append({"epoch": epoch + 1, "lr": lr, "steps": self._steps, **means,
                              "total": sum(means.values()), "seconds": self._seconds})
            self._sum, self._steps = None, 0

    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows], "steps": self._steps,
                "seconds": self._seconds, "sum": None if self._sum is None else self._sum.cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = [dict(r) for r in state["rows"]]
        self._steps, self._seconds = int(state["steps"]), float(state["seconds"])
        self._sum = None if state["sum"] is None else state["sum"].to(self.device)


class DAMSMTask:
    """DAMSM pretraining as an engine task (kind ``"damsm"``; losses ``w0, w1, s0, s1``).

    Args:
        text_encoder, image_encoder: trained in place (moved to ``device``).
        dataset: items ``(image, caption, length, class_id, key)``, e.g. a
            :class:`~t2ilib.data.cache.CachedCUBDataset` (give it a ``seed``: then its caption
            and crop draws depend on ``(seed, epoch, item)`` only).
        config: the recipe; ``epochs`` is the engine's business.
        batch_size: items per step (the last incomplete batch of an epoch is dropped).
        seed: the order of the items in epoch ``e`` is a permutation seeded by ``(seed, e)``.
        extra: plain data about the data set (name, image size...) for the fingerprint.
        collate_fn: items -> batch (default: :func:`~t2ilib.data.cub.collate_sorted`).
        step_fn: one training step, :func:`damsm_step`'s signature (default: it). Notebook 02
            passes the copy it writes, so that a students' library without the answers still
            trains on the student's own code. Not part of the fingerprint.
    """

    kind = "damsm"
    loss_names = LOSS_NAMES

    def __init__(self, text_encoder: TextEncoder, image_encoder: nn.Module, dataset: Any,
                 config: DAMSMTrainConfig = DAMSMTrainConfig(), *, batch_size: int = 16,
                 seed: int = 0, extra: dict[str, Any] | None = None,
                 collate_fn: Callable[[list], tuple] = collate_sorted,
                 step_fn: Callable[..., DAMSMLosses] = damsm_step,
                 device: torch.device | str = "cpu"):
        if config.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {config.epochs}")
        n_steps = len(dataset) // batch_size
        if n_steps < 1:
            raise ValueError(f"{len(dataset)} items make no batch of {batch_size}")
        self.steps_per_epoch = (n_steps if config.max_steps_per_epoch is None
                                else min(n_steps, config.max_steps_per_epoch))
        self.config, self.dataset, self.batch_size, self.seed = config, dataset, batch_size, seed
        self.extra, self.collate_fn, self.step_fn = dict(extra or {}), collate_fn, step_fn
        self.device = torch.device(device)
        self.text_encoder = text_encoder.to(self.device)
        self.image_encoder = image_encoder.to(self.device)
        params = [p for m in (text_encoder, image_encoder) for p in m.parameters()
                  if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas)
        self.history = EpochHistory(self.device)
        self._order: tuple[int, list[int]] = (-1, [])
        self._at = (0, 0)  # (epoch, step) of the batch being trained on

    def state(self) -> dict[str, Any]:
        return {"text_encoder": self.text_encoder, "image_encoder": self.image_encoder,
                "optimizer": self.optimizer, "history": self.history}

    def fingerprint(self) -> dict[str, Any]:
        return run_fingerprint(text_encoder=self.text_encoder.config,
                               image_encoder=image_encoder_spec(self.image_encoder),
                               train=self.config, extra=self.extra,
                               data={"items": len(self.dataset), "batch_size": self.batch_size,
                                     "seed": self.seed})

    def meta(self) -> dict[str, Any]:
        return damsm_meta(self.text_encoder, self.image_encoder, self.history.rows)

    def start_epoch(self, epoch: int) -> None:
        for group in self.optimizer.param_groups:
            group["lr"] = epoch_lr(self.config, epoch)
        self.text_encoder.train()
        self.image_encoder.train()
        self.history.start()

    def batch(self, epoch: int, step_in_epoch: int) -> tuple:
        """Batch ``step_in_epoch`` of ``epoch``: the same items and draws every time."""
        if self._order[0] != epoch:
            self._order = (epoch, ddp.shard_permutation(len(self.dataset), epoch, self.seed))
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)  # this epoch's caption draws and crops
        b = self.batch_size
        index = self._order[1][step_in_epoch * b:(step_in_epoch + 1) * b]
        images, captions, lengths, class_ids, keys = self.collate_fn(
            [self.dataset[i] for i in index])
        self._at = (epoch, step_in_epoch)
        return batch_to_device((images, captions, lengths, class_ids, keys), self.device)

    def step(self, batch: tuple) -> Tensor:
        losses = self.step_fn(self.text_encoder, self.image_encoder, self.optimizer, batch,
                              self.config)
        vector = torch.stack([losses.w0, losses.w1, losses.s0, losses.s1]).detach()
        epoch, k = self._at
        self.history.add(vector, epoch, self.optimizer.param_groups[0]["lr"],
                         last=k == self.steps_per_epoch - 1)
        return vector

    def sync(self, dist: ddp.DistInfo) -> None:
        """Nothing to share between processes beyond the averaged gradients."""

    def samples(self) -> None:
        return None  # DAMSM draws no pictures


@dataclass
class DAMSMRun:
    """What :func:`load_or_train_damsm` returns."""

    history: list[dict[str, float]]  # one dict per epoch: epoch, lr, steps, w0..s1, total, seconds
    trained: bool  # False when a finished matching checkpoint was loaded
    path: Path  # the checkpoint file (load_damsm reads it)
    fingerprint: dict[str, Any] = field(default_factory=dict)
    interrupted: bool = False  # stopped by Ctrl-C / SIGTERM: call again to resume


def train_damsm(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    dataset: Any,
    config: DAMSMTrainConfig = DAMSMTrainConfig(),
    *,
    batch_size: int = 16,
    seed: int = 0,
    device: torch.device | str = "cpu",
    progress_bar: bool = True,
) -> list[dict[str, float]]:
    """Pretrain both encoders for ``config.epochs`` epochs on ``dataset`` without writing
    anything (:class:`DAMSMTask` explains the arguments). The encoders are left on ``device``
    in train mode. Returns the history: one dict per epoch (:class:`EpochHistory`)."""
    task = DAMSMTask(text_encoder, image_encoder, dataset, config, batch_size=batch_size,
                     seed=seed, device=device)
    Engine(task).fit(config.epochs, progress_bar=progress_bar)
    return task.history.rows


@torch.no_grad()
def evaluate_damsm(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    loader: Iterable[tuple],
    gammas: DAMSMGammas = SSAGAN_GAMMAS,
    device: torch.device | str = "cpu",
    max_batches: int | None = None,
) -> dict[str, float]:
    """Mean DAMSM losses over ``loader`` in eval mode (no dropout; BN running statistics)."""
    text_encoder.eval()
    image_encoder.eval()
    sums = dict.fromkeys(LOSS_NAMES, 0.0)
    n = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        losses = damsm_batch_losses(text_encoder, image_encoder, batch_to_device(batch, device),
                                    gammas)
        for k in sums:
            sums[k] += getattr(losses, k).item()
        n += 1
    if n == 0:
        raise ValueError("evaluate_damsm got no batch")
    means = {k: v / n for k, v in sums.items()}
    return {**means, "total": sum(means.values())}


def load_or_train_damsm(
    path: str | os.PathLike[str],
    text_encoder: TextEncoder,
    image_encoder: nn.Module,
    dataset: Any,
    config: DAMSMTrainConfig = DAMSMTrainConfig(),
    *,
    batch_size: int = 16,
    seed: int = 0,
    extra: dict[str, Any] | None = None,
    retrain: bool = False,
    device: torch.device | str = "cpu",
    log_every: int = 20,
    progress_bar: bool = True,
    step_fn: Callable[..., DAMSMLosses] = damsm_step,
) -> DAMSMRun:
    """Pretrain in the run folder ``path`` with the engine, or load what it holds.

    ``path`` is the run folder or its ``checkpoint.pt``; another ``.pt`` name ``x/name.pt``
    means the folder ``x/name/`` (:func:`~t2ilib.damsm.checkpoint.run_folder`). A finished
    checkpoint of the same settings (the fingerprint: encoder configs, ``config`` less
    ``epochs``, the data's size, ``batch_size``, ``seed`` and ``extra``) is loaded; an
    unfinished one is resumed exactly; ``retrain=True`` starts afresh. A checkpoint of other
    settings raises :class:`~t2ilib.engine.checkpoint.CheckpointMismatch` naming what
    differs. The encoders are updated in place and left on ``device`` in eval mode.
    ``step_fn``: see :class:`DAMSMTask`.
    """
    task = DAMSMTask(text_encoder, image_encoder, dataset, config, batch_size=batch_size,
                     seed=seed, extra=extra, device=device, step_fn=step_fn)
    engine = Engine(task, run_folder(path), log_every=log_every)
    result = load_or_train(engine, config.epochs, retrain=retrain, progress_bar=progress_bar)
    text_encoder.eval()
    image_encoder.eval()
    return DAMSMRun(list(task.history.rows), result.trained, engine.checkpoint_path,
                    task.fingerprint(), result.interrupted)


def load_or_train_toybirds_damsm(
    root: str | os.PathLike[str],
    *,
    image_size: int = TOYBIRDS_DAMSM_SIZE,
    epochs: int = 30,
    batch_size: int = 16,
    cnn_width: int = 32,
    seed: int = 0,
    path: str | os.PathLike[str] | None = None,
    retrain: bool = False,
    device: torch.device | str = "cpu",
) -> tuple[TextEncoder, nn.Module, DAMSMRun]:
    """Notebook 02's ToyBirds DAMSM with its default parameters: loaded from
    :func:`default_checkpoint` when notebook 02 (or an earlier call) wrote it, else pretrained
    exactly as that notebook does (about 5 minutes on 2 CPU cores) and saved there (``path``:
    another run folder or checkpoint file, e.g. a temporary one for smoke runs).

    Later notebooks (training, evaluation, SISGAN, the demo) call this so they share one pair of
    encoders. Returns ``(text_encoder, image_encoder, run)``, both encoders in eval mode.
    """
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.runtime import seed_everything

    train_set = CachedCUBDataset(root, "train", image_size=image_size, seed=seed)  # crop + flip
    extra = {"data": "toybirds", "n_train": len(train_set), "image_size": image_size}
    seed_everything(seed)
    text_encoder = TextEncoder(TextEncoderConfig(vocab_size=len(train_set.vocab), dropout=0.0))
    image_encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=256, width=cnn_width))
    run = load_or_train_damsm(path or default_checkpoint("toybirds", image_size), text_encoder,
                              image_encoder, train_set, DAMSMTrainConfig(epochs=epochs, lr=2e-3),
                              batch_size=batch_size, seed=seed, extra=extra, retrain=retrain,
                              device=device)
    return text_encoder, image_encoder, run
