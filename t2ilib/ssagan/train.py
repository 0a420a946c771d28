r"""Training SSA-GAN: the run around :mod:`t2ilib.ssagan.step`, driven by the engine.

:class:`SSAGANTask` builds the networks and optimisers of a :class:`~t2ilib.ssagan.recipes.
Recipe`, draws batch ``k`` of epoch ``e`` (a random crop/flip of cached uint8 images, one of
each image's captions, noise), runs :func:`~t2ilib.ssagan.step.train_step`, and draws the
per-epoch sample grid (the same captions and noise every epoch). :func:`ssagan_engine` puts
it in a :class:`~t2ilib.engine.loop.Engine` (run folder, log, checkpoints, resume, DDP).

**Gates.** Every residual block of G and D outputs ``shortcut(x) + gate * residual(x)``
with a learnable scalar gate that the official code starts at 0 (ReZero);
``gate_init_g`` / ``gate_init_d`` set other start values (:func:`set_gates`).

**Speed.** On CUDA: bf16 autocast (the engine; losses in fp32), channels_last, fused Adam,
optional ``torch.compile`` of G and the DAMSM image encoder, the uint8 image cache on the
GPU with crops and flips done there, and no host synchronisation per step.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.damsm.pretrain import image_encoder_spec
from t2ilib.data.augment import random_crop_flip
from t2ilib.data.trainset import TrainData
from t2ilib.engine import ddp
from t2ilib.engine.fingerprint import run_fingerprint
from t2ilib.engine.loop import Engine, step_generator
from t2ilib.runtime import pick_device
from t2ilib.ssagan.model import Discriminator, Generator
from t2ilib.ssagan.recipes import Recipe, SSAGANTrainConfig
from t2ilib.ssagan.sampling import generate_from_ids
from t2ilib.ssagan.step import LOSS_NAMES, Batch, Nets, Optimizers, train_step
from t2ilib.text.encoder import TextEncoder, check_text_encoder
from t2ilib.text.vocab import captions_to_ids

__all__ = ["SSAGANTask", "ssagan_engine", "set_gates", "StepFn"]

#: A training step: ``(nets, optimisers, batch, config) -> losses (len(LOSS_NAMES),)``.
StepFn = Callable[[Nets, Optimizers, Batch, SSAGANTrainConfig], Tensor]


def set_gates(module: nn.Module, value: float) -> None:
    """Set every residual gate of ``module`` (the scalar parameters named ``gate``) to ``value``."""
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.rsplit(".", 1)[-1] == "gate":
                param.fill_(value)


class SSAGANTask:
    """Networks, optimisers, batches and sample grid of one SSA-GAN run (an engine task).

    Args:
        recipe: model and training settings (``recipe.model.resolution`` must equal
            ``data.image_size``).
        text_encoder, image_encoder: the pretrained DAMSM (taken over: frozen and in eval
            mode unless ``recipe.train.finetune_text_encoder``).
        data: the training split.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        sample_captions: captions of the per-epoch grid (default: the first caption of the
            first 8 images); the noise is fixed too.
        dist: this process's place in a ``torchrun`` job.
        step_fn: the training step (default :func:`~t2ilib.ssagan.step.train_step`);
            notebook 07 passes the step its reader writes.
    """

    kind = "ssagan"
    loss_names = LOSS_NAMES

    def __init__(self, recipe: Recipe, text_encoder: TextEncoder, image_encoder: nn.Module,
                 data: TrainData, device: str | torch.device = "auto",
                 sample_captions: Sequence[str] | None = None, dist: ddp.DistInfo = ddp.SINGLE,
                 step_fn: StepFn = train_step):
        cfg, mcfg = recipe.train, recipe.model
        if mcfg.resolution != data.image_size:
            raise ValueError(f"model resolution {mcfg.resolution} != data image size "
                             f"{data.image_size}")
        check_text_encoder(text_encoder, mcfg.sentence_dim, len(data.vocab), "the GAN")
        self.recipe, self.config, self.model_config = recipe, cfg, mcfg
        self.data, self.dist, self.epochs, self.step_fn = data, dist, cfg.epochs, step_fn
        self.device = device if isinstance(device, torch.device) else pick_device(str(device))
        cuda = self.device.type == "cuda"
        self.memory_format = (torch.channels_last if cfg.channels_last and cuda
                              else torch.contiguous_format)

        self._build_networks(text_encoder, image_encoder)
        self.opts = self._build_optimizers()
        self.text_encoder.eval()
        self.image_encoder.eval()
        self.nets = Nets(G=torch.compile(self.G) if cfg.compile else self.G, D=self.D,
                         text_encoder=self.text_encoder,
                         image_encoder=(torch.compile(self.image_encoder) if cfg.compile
                                        else self.image_encoder),
                         G_ema=self.G_ema)

        self.images = data.images.to(self.device)  # the uint8 cache lives on the device
        self.class_ids = data.class_ids.to(self.device)
        n_per_rank = len(data) // dist.world_size
        if n_per_rank < cfg.batch_size:
            raise ValueError(f"{len(data)} images give each of {dist.world_size} process(es) "
                             f"{n_per_rank}, fewer than one batch of {cfg.batch_size}")
        n_steps = n_per_rank // cfg.batch_size  # drop_last, as the official loader
        self.steps_per_epoch = (n_steps if cfg.max_steps_per_epoch is None
                                else min(n_steps, cfg.max_steps_per_epoch))
        if sample_captions is None:
            sample_captions = [data.vocab.decode(data.captions[i * data.captions_per_image])
                               for i in range(min(8, len(data)))]
        self.sample_captions = list(sample_captions)
        self.sample_noise = torch.randn(len(self.sample_captions), mcfg.nz,
                                        generator=step_generator(cfg.seed, -1))
        self.damsm_source: str | None = None  # the DAMSM checkpoint the run started from

    def _build_networks(self, text_encoder: TextEncoder, image_encoder: nn.Module) -> None:
        """G, D (gates set), the encoders on the device, the same on every rank; G's EMA."""
        cfg, dist = self.config, self.dist
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.G = ddp.convert_sync_batchnorm(self.new_generator(), dist, self.device)
        self.D = self.new_discriminator()
        set_gates(self.G, cfg.gate_init_g)
        set_gates(self.D, cfg.gate_init_d)
        self.G.to(self.device, memory_format=self.memory_format)
        self.D.to(self.device, memory_format=self.memory_format)
        self.text_encoder = text_encoder.to(self.device)
        self.image_encoder = image_encoder.to(self.device)
        for module in (self.G, self.D, self.text_encoder, self.image_encoder):
            ddp.broadcast_module(module, dist)
        torch.manual_seed(cfg.seed + 1 + dist.rank)  # dropout etc.: per rank
        self.G_ema = (copy.deepcopy(self.G).eval().requires_grad_(False) if cfg.ema_decay > 0
                      else None)

    def new_generator(self) -> nn.Module:
        """A freshly initialised G (the word-level variants of notebook 11 build their own)."""
        return Generator(self.model_config)

    def new_discriminator(self) -> Discriminator:
        """A freshly initialised D."""
        return Discriminator(self.model_config)

    def _build_optimizers(self) -> Optimizers:
        """Adam for G and D; with ``finetune_text_encoder`` one for the encoders too (the text
        encoder and the image encoder's trainable part), else the encoders are frozen."""
        cfg = self.config
        fused = {"fused": True} if self.device.type == "cuda" else {}
        opts = Optimizers(
            g=torch.optim.Adam(self.G.parameters(), lr=cfg.lr_g, betas=cfg.betas, **fused),
            d=torch.optim.Adam(self.D.parameters(), lr=cfg.lr_d, betas=cfg.betas, **fused))
        self.text_encoder.requires_grad_(cfg.finetune_text_encoder)
        if cfg.finetune_text_encoder:
            params = [*self.text_encoder.parameters(),
                      *(p for p in self.image_encoder.parameters() if p.requires_grad)]
            opts.enc = torch.optim.Adam(params, lr=cfg.lr_encoder, betas=cfg.betas, **fused)
        else:
            self.image_encoder.requires_grad_(False)
        return opts

    # ------------------------------------------------------------------ for the engine
    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = {"G": self.G, "D": self.D, "opt_g": self.opts.g,
                                 "opt_d": self.opts.d, "text_encoder": self.text_encoder,
                                 "image_encoder": self.image_encoder}
        if self.G_ema is not None:
            state["G_ema"] = self.G_ema
        if self.opts.enc is not None:
            state["opt_enc"] = self.opts.enc
        return state

    def fingerprint(self) -> dict[str, Any]:
        return run_fingerprint(model=self.model_config, train=self.config,
                               text_encoder=self.text_encoder.config,
                               image_encoder=image_encoder_spec(self.image_encoder),
                               data=self.data.describe(), vocab=self.data.vocab.fingerprint(),
                               world_size=self.dist.world_size)

    def meta(self) -> dict[str, Any]:
        return {"recipe": self.recipe.name, "model_config": self.model_config,
                "train_config": self.config, "text_encoder_config": self.text_encoder.config,
                "image_encoder_spec": image_encoder_spec(self.image_encoder),
                "vocab_words": self.data.vocab.words, "data": self.data.describe(),
                "sample_captions": self.sample_captions,
                **({"damsm_source": self.damsm_source} if self.damsm_source else {})}

    def start_epoch(self, epoch: int) -> None:
        self.G.train()
        self.D.train()

    def batch(self, epoch: int, step_in_epoch: int) -> Batch:
        """Batch ``step_in_epoch`` of ``epoch`` on this rank, deterministic in ``(seed, epoch,
        step, rank)``; everything on the device but ``lengths``."""
        cfg, data = self.config, self.data
        order = ddp.shard_permutation(len(data), epoch, cfg.seed, self.dist)
        b = cfg.batch_size
        index = torch.tensor(order[step_in_epoch * b:(step_in_epoch + 1) * b])  # (B,)
        nb = self.device.type == "cuda"  # host -> GPU copies without a host sync
        on_device = index.to(self.device, non_blocking=nb)
        g = step_generator(cfg.seed, epoch, step_in_epoch, self.dist.rank)
        captions, lengths = data.draw_captions(index.tolist(), g)  # (B, T), (B,)
        images = random_crop_flip(self.images[on_device], data.image_size, generator=g)
        z = torch.randn(b, self.model_config.nz, generator=g)
        z2 = (torch.randn(b, self.model_config.nz, generator=g).to(self.device, non_blocking=nb)
              if cfg.mode_seeking_weight > 0 else None)
        return Batch(images=images.contiguous(memory_format=self.memory_format),
                     captions=captions.to(self.device, non_blocking=nb),
                     lengths=lengths, class_ids=self.class_ids[on_device],
                     z=z.to(self.device, non_blocking=nb), z2=z2)

    def step(self, batch: Batch) -> Tensor:
        return self.step_fn(self.nets, self.opts, batch, self.config)

    def sync(self, dist: ddp.DistInfo) -> None:
        """Rank 0's batch-norm statistics to all ranks (before samples and checkpoints)."""
        for module in (self.G, self.G_ema, self.image_encoder):
            if module is not None:
                ddp.broadcast_module(module, dist, buffers_only=True)

    def samples(self) -> tuple[Tensor, int]:
        images, _ = self.sample()
        return images, 8

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, captions: Sequence[str] | None = None, z: Tensor | None = None,
               use_ema: bool = True) -> tuple[Tensor, list[Tensor]]:
        """Images ``(B, 3, R, R)`` in [-1, 1] (CPU) and masks for ``captions`` and noise ``z``
        (default: the fixed sample captions and noise); G in eval mode, the EMA copy when
        there is one and ``use_ema``. Draws nothing from the global RNG."""
        captions = self.sample_captions if captions is None else list(captions)
        if z is None:
            if len(captions) != len(self.sample_noise):
                raise ValueError("give z when the captions are not the sample captions")
            z = self.sample_noise
        ids, lengths = captions_to_ids(self.data.vocab, captions, self.data.words_num)
        g = self.G_ema if (use_ema and self.G_ema is not None) else self.G
        return generate_from_ids(g, self.text_encoder, ids, lengths, z)


def ssagan_engine(recipe: Recipe, text_encoder: TextEncoder, image_encoder: nn.Module,
                  data: TrainData, *, device: str | torch.device = "auto",
                  run_dir: str | os.PathLike[str] | None = None,
                  sample_captions: Sequence[str] | None = None,
                  dist: ddp.DistInfo = ddp.SINGLE, step_fn: StepFn = train_step) -> Engine:
    """An :class:`~t2ilib.engine.loop.Engine` running an :class:`SSAGANTask` (see there)."""
    task = SSAGANTask(recipe, text_encoder, image_encoder, data, device, sample_captions, dist,
                      step_fn)
    cfg = recipe.train
    return Engine(task, run_dir, log_every=cfg.log_every, amp=cfg.amp,
                  tensorboard=cfg.tensorboard, dist=dist)
