"""Training SISGAN on the course's engine: the task, its run folder, load-or-train.

:class:`SISGANTask` gives :class:`~t2ilib.engine.loop.Engine` what SISGAN brings: G and D
with their Adam optimisers, the frozen DAMSM text encoder (and, for the optional DAMSM term,
image encoder), batch ``k`` of epoch ``e`` and the step of :mod:`t2ilib.sisgan.step`. The
settings come from a :class:`~t2ilib.sisgan.recipes.Recipe`.

**Exact resume.** Every random draw (batch order, caption choice, flips, the derangement, the
match coins, the augmentation noise) comes from a generator seeded by ``(seed, epoch, step)``;
nothing else is random (no dropout; the text encoder is frozen in eval mode). So a run cut in
two and resumed from its checkpoint ends with the same weights, bit for bit, on the CPU.

**Run folder** (:func:`default_run_dir`; ToyBirds' default ``data_root()/runs/
sisgan_toybirds64``): ``checkpoint.pt`` (G, D, both optimisers, the frozen text encoder, the
vocabulary: :func:`~t2ilib.sisgan.sampling.load_sisgan` needs nothing else), ``losses.csv``
and ``samples/epoch_NNN.png`` (fixed sources, rows, edited by fixed captions, columns).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.data.augment import center_crop, random_crop_flip
from t2ilib.data.trainset import TrainData, load_native_split
from t2ilib.engine import ddp
from t2ilib.engine.fingerprint import run_fingerprint
from t2ilib.engine.loop import Engine, TrainResult, load_or_train, step_generator
from t2ilib.runtime import data_root, pick_device
from t2ilib.sisgan.losses import derangement
from t2ilib.sisgan.model import Discriminator, Generator, SISGANConfig
from t2ilib.sisgan.recipes import SMOKE, TOYBIRDS, Recipe, SISGANTrainConfig
from t2ilib.sisgan.sampling import manipulate
from t2ilib.sisgan.step import (
    LOSS_NAMES,
    SISGANBatch,
    SISGANNets,
    SISGANOptimizers,
    lr_at,
    set_learning_rate,
    train_step,
)
from t2ilib.text.encoder import TextEncoder, check_text_encoder
from t2ilib.text.vocab import Vocabulary

__all__ = ["SISGANTask", "SISGANRun", "sisgan_engine", "toybirds_engine", "default_run_dir",
           "load_or_train_sisgan"]


def _weights_hash(module: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a module's state: tells two pretrained encoders apart."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


class SISGANTask:
    """SISGAN for the engine (:class:`~t2ilib.engine.loop.Task`, kind ``"sisgan"``).

    Args:
        recipe: model sizes (``image_size`` must equal ``data.image_size``) and settings.
        text_encoder: the pretrained DAMSM text encoder; frozen and kept in eval mode.
        data: the training split (uint8 images, token-id captions).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        image_encoder: the DAMSM image encoder pretrained with ``text_encoder``; needed (and
            frozen) only when ``recipe.train.damsm_weight > 0``.
        vgg_weights: local VGG-16-BN weights, for ``recipe.model.encoder == "vgg"``.
        sample_sources: ``(K, 3, s, s)`` images in [-1, 1] for the grids (default: the centre
            crops of the first 8 training images).
        sample_captions: captions of the grid's columns (default: the first caption of the
            training images 8..11).
    """

    kind = "sisgan"
    loss_names = LOSS_NAMES

    def __init__(self, recipe: Recipe, text_encoder: TextEncoder, data: TrainData,
                 device: str | torch.device = "auto", image_encoder: nn.Module | None = None,
                 vgg_weights: str | os.PathLike[str] | None = None,
                 sample_sources: Tensor | None = None,
                 sample_captions: Sequence[str] | None = None):
        config, model_config = recipe.train, recipe.model
        if config.damsm_weight > 0 and image_encoder is None:
            raise ValueError("damsm_weight > 0 needs the DAMSM image encoder (image_encoder=)")
        if model_config.image_size != data.image_size:
            raise ValueError(f"model image_size {model_config.image_size} != data image size "
                             f"{data.image_size}")
        check_text_encoder(text_encoder, model_config.sentence_dim, len(data.vocab), "SISGAN")
        if len(data) < config.batch_size:
            raise ValueError(f"{len(data)} images are fewer than one batch of "
                             f"{config.batch_size}")
        self.recipe, self.config, self.model_config, self.data = recipe, config, model_config, data
        self.device = device if isinstance(device, torch.device) else pick_device(str(device))

        torch.manual_seed(config.seed)
        G = Generator(model_config, vgg_weights=vgg_weights).to(self.device)
        D = Discriminator(model_config).to(self.device)
        text_encoder = text_encoder.to(self.device).eval().requires_grad_(False)
        if config.damsm_weight > 0:
            image_encoder = image_encoder.to(self.device).eval().requires_grad_(False)
        else:
            image_encoder = None
        self.nets = SISGANNets(G, D, text_encoder, image_encoder)
        fused = {"fused": True} if self.device.type == "cuda" else {}
        self.opts = SISGANOptimizers(
            g=torch.optim.Adam([p for p in G.parameters() if p.requires_grad], lr=config.lr,
                               betas=config.betas, **fused),
            d=torch.optim.Adam(D.parameters(), lr=config.lr, betas=config.betas, **fused))

        self.images = data.images.to(self.device)  # uint8 (N, 3, S, S) on the device
        n_steps = len(data) // config.batch_size  # drop_last
        self.steps_per_epoch = (n_steps if config.max_steps_per_epoch is None
                                else min(n_steps, config.max_steps_per_epoch))
        if sample_sources is None:
            sample_sources = center_crop(data.images[:min(8, len(data))], data.image_size)
        self.sample_sources = sample_sources.float().cpu()  # (K, 3, s, s)
        if sample_captions is None:
            first = min(8, len(data) - 1)
            sample_captions = [data.vocab.decode(data.captions[i * data.captions_per_image])
                               for i in range(first, min(first + 4, len(data)))]
        self.sample_captions = list(sample_captions)

    # the networks, by name
    @property
    def G(self) -> Generator:
        return self.nets.G

    @property
    def D(self) -> Discriminator:
        return self.nets.D

    @property
    def text_encoder(self) -> TextEncoder:
        return self.nets.text_encoder

    @property
    def image_encoder(self) -> nn.Module | None:
        return self.nets.image_encoder

    # ------------------------------------------------------------------ Task protocol
    def state(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "opt_g": self.opts.g, "opt_d": self.opts.d,
                "text_encoder": self.text_encoder}

    def fingerprint(self) -> dict[str, Any]:
        """Model and training settings (less ``RUN_ONLY``), encoders, data and vocabulary."""
        image = self.image_encoder
        return run_fingerprint(model=self.model_config, train=self.config,
                               text_encoder=self.text_encoder.config,
                               text_weights=_weights_hash(self.text_encoder),
                               image_weights=_weights_hash(image) if image is not None else None,
                               data=self.data.describe(), vocab=self.data.vocab.fingerprint())

    def meta(self) -> dict[str, Any]:
        """What :func:`~t2ilib.sisgan.sampling.load_sisgan` rebuilds G and the encoder from."""
        return {"recipe": self.recipe.name, "model_config": asdict(self.model_config),
                "train_config": asdict(self.config),
                "text_encoder_config": asdict(self.text_encoder.config),
                "vocab_words": self.data.vocab.words, "data": self.data.describe(),
                "sample_captions": self.sample_captions}

    def start_epoch(self, epoch: int) -> None:
        """Train mode for G and D (the encoders stay in eval mode); the epoch's learning rate."""
        self.G.train()
        self.D.train()
        self.text_encoder.eval()
        if self.image_encoder is not None:
            self.image_encoder.eval()
        set_learning_rate((self.opts.g, self.opts.d), lr_at(self.config, epoch))

    def batch(self, epoch: int, step_in_epoch: int) -> SISGANBatch:
        """Batch ``step_in_epoch`` of ``epoch``, deterministic in ``(seed, epoch, step)``: the
        images (random crop and flip) with one of their own captions, and the step's draws."""
        cfg, data = self.config, self.data
        b = cfg.batch_size
        order = torch.randperm(len(data), generator=step_generator(cfg.seed, epoch))
        index = order[step_in_epoch * b:(step_in_epoch + 1) * b]  # (B,)
        g = step_generator(cfg.seed, epoch, step_in_epoch)
        captions, lengths = data.draw_captions(index.tolist(), g)  # (B, T), (B,)
        images = random_crop_flip(self.images[index.to(self.device)], data.image_size,
                                  flip=cfg.flip, generator=g)  # (B, 3, s, s)
        other = derangement(b, g)
        coins = torch.rand(b, generator=g)
        eps = torch.randn(b, self.model_config.condition_dim, generator=g)
        return SISGANBatch(images=images, captions=captions.to(self.device),
                           lengths=lengths, other=other.to(self.device),
                           coins=coins.to(self.device), eps=eps.to(self.device),
                           class_ids=data.class_ids[index].to(self.device))

    def step(self, batch: SISGANBatch) -> Tensor:
        return train_step(self.nets, self.opts, self.config, batch)

    def sync(self, dist: ddp.DistInfo) -> None:
        """Nothing to share between processes beyond the averaged gradients."""

    def samples(self) -> tuple[Tensor, int]:
        """The grid: row ``k`` is source ``k`` then its edits by each sample caption (eval
        mode, mean augmentation code); ``(K (1 + M), 3, s, s)`` and ``1 + M`` columns."""
        cols = [self.sample_sources]
        for caption in self.sample_captions:
            cols.append(manipulate(self.G, self.text_encoder, self.data.vocab,
                                   self.sample_sources, [caption]))
        grid = torch.stack(cols, 1)  # (K, 1 + M, 3, s, s)
        return grid.flatten(0, 1), grid.shape[1]


def sisgan_engine(recipe: Recipe | SISGANTrainConfig, text_encoder: TextEncoder,
                  data: TrainData, *, model_config: SISGANConfig | None = None,
                  device: str | torch.device = "auto",
                  run_dir: str | os.PathLike[str] | None = None,
                  image_encoder: nn.Module | None = None,
                  vgg_weights: str | os.PathLike[str] | None = None,
                  sample_sources: Tensor | None = None,
                  sample_captions: Sequence[str] | None = None,
                  tensorboard: bool = False) -> Engine:
    """An engine running :class:`SISGANTask` (``log_every`` and ``amp`` from the settings).

    ``recipe`` is a :class:`~t2ilib.sisgan.recipes.Recipe`, or training settings together
    with ``model_config``.
    """
    if isinstance(recipe, SISGANTrainConfig):
        if model_config is None:
            raise ValueError("training settings without a recipe need model_config=")
        recipe = Recipe("custom", model_config, recipe)
    elif model_config is not None:
        recipe = replace(recipe, model=model_config)
    task = SISGANTask(recipe, text_encoder, data, device=device, image_encoder=image_encoder,
                      vgg_weights=vgg_weights, sample_sources=sample_sources,
                      sample_captions=sample_captions)
    return Engine(task, run_dir, log_every=recipe.train.log_every, amp=recipe.train.amp,
                  tensorboard=tensorboard)


def default_run_dir(dataset: str, recipe: Recipe) -> Path:
    """``data_root()/runs/sisgan_toybirds64`` for ToyBirds with :data:`TOYBIRDS` (notebook 09;
    the demo finds it there), else ``sisgan_<dataset><size>_<8 hex digits>`` from the
    fingerprinted settings, so runs with other settings do not collide (run-only fields such
    as ``epochs`` do not count; the recipe's name does not either)."""
    key = run_fingerprint(model=recipe.model, train=recipe.train)
    folder = f"sisgan_{dataset}{recipe.model.image_size}"
    if dataset != "toybirds" or key != run_fingerprint(model=TOYBIRDS.model,
                                                        train=TOYBIRDS.train):
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
        folder = f"{folder}_{digest}"
    return data_root() / "runs" / folder


def toybirds_engine(device: str | torch.device = "auto", smoke: bool = False,
                    recipe: Recipe | None = None, run_dir: str | os.PathLike[str] | None = None,
                    root: str | os.PathLike[str] | None = None) -> Engine:
    """Notebook 09's run on ToyBirds (64 px, native images, notebook 02's DAMSM, loaded or
    pretrained by :func:`t2ilib.damsm.pretrain.load_or_train_toybirds_damsm`; in smoke mode a
    one-epoch DAMSM in a temporary folder).

    Defaults: :data:`~t2ilib.sisgan.recipes.TOYBIRDS` (``smoke``: ``SMOKE``), the run folder
    :func:`default_run_dir` (smoke: a temporary folder, removed with the engine), ToyBirds in
    ``data_root()``
    (``toybirds_smoke``: 48 + 16 birds, the smoke set other notebooks share).
    """
    from t2ilib.damsm.pretrain import load_or_train_toybirds_damsm
    from t2ilib.data.toybirds import ensure_toybirds

    dev = pick_device(str(device))
    if root is None:
        root = (ensure_toybirds(data_root() / "toybirds_smoke", n_train=48, n_test=16) if smoke
                else ensure_toybirds(data_root() / "toybirds"))
    data = load_native_split(root, "train", name="toybirds")
    recipe = recipe or (SMOKE if smoke else TOYBIRDS)
    scratch = Path(tempfile.mkdtemp(prefix="sisgan_smoke_")) if smoke else None
    damsm_args = ({"epochs": 1, "batch_size": 8, "cnn_width": 8,
                   "path": scratch / "damsm_smoke.pt"} if scratch is not None else {})
    text_encoder, image_encoder, _ = load_or_train_toybirds_damsm(root, device=dev, **damsm_args)
    if text_encoder.config.hidden_dim != recipe.model.sentence_dim:
        recipe = replace(recipe, model=replace(recipe.model,
                                               sentence_dim=text_encoder.config.hidden_dim))
    if run_dir is None:  # smoke runs keep their tiny models out of data/runs
        run_dir = scratch / "run" if scratch is not None else default_run_dir("toybirds", recipe)
    engine = sisgan_engine(recipe, text_encoder, data, device=dev, run_dir=run_dir,
                           image_encoder=image_encoder)
    if scratch is not None:  # removed with the engine, or when the interpreter exits
        weakref.finalize(engine, shutil.rmtree, scratch, ignore_errors=True)
    return engine


@dataclass
class SISGANRun:
    """What :func:`load_or_train_sisgan` returns: the trained models and how they came about."""

    generator: Generator  # eval mode
    text_encoder: TextEncoder  # frozen, eval mode
    vocab: Vocabulary
    result: TrainResult
    engine: Engine
    path: Path | None  # the checkpoint

    @property
    def trained(self) -> bool:
        return self.result.trained


def load_or_train_sisgan(engine: Engine | None = None, *, retrain: bool = False,
                         epochs: int | None = None, stop_after: int | None = None,
                         progress_bar: bool = True, device: str | torch.device = "auto",
                         smoke: bool = False) -> SISGANRun:
    """Reuse the engine's checkpoint when it matches, else train (notebooks 09 and 10).

    See :func:`t2ilib.engine.loop.load_or_train`: a finished matching checkpoint is loaded, an
    unfinished one resumed exactly, ``retrain=True`` starts afresh; one of another
    configuration, text encoder or vocabulary raises
    :class:`~t2ilib.engine.checkpoint.CheckpointMismatch`. ``engine=None`` builds the ToyBirds
    default with :func:`toybirds_engine` (``device``, ``smoke``), whose run folder is
    ``data_root()/runs/sisgan_toybirds64``. ``epochs`` defaults to the recipe's.
    """
    if engine is None:
        engine = toybirds_engine(device, smoke=smoke)
    task: SISGANTask = engine.task  # type: ignore[assignment]
    epochs = task.config.epochs if epochs is None else epochs
    result = load_or_train(engine, epochs, retrain=retrain, stop_after=stop_after,
                           progress_bar=progress_bar)
    task.G.eval()
    return SISGANRun(task.G, task.text_encoder, task.data.vocab, result, engine,
                     engine.checkpoint_path)
