r"""Training SSA-GAN end to end (Liao et al., CVPR 2022; the official main.py and main_finetune.py).

One loop, used by ``notebooks/07_train_ssagan`` and by ``python -m t2ilib train ssagan``.
With real images $x$, their captions' word features $w$ and sentence vectors $s$ (DAMSM
text encoder), noise $z \sim \mathcal N(0, I)$ and $\hat x = G(z, s)$, every iteration does
(``shared/reference/ssagan.md`` §1.7-§1.8, §2.1):

0. *(only with* ``finetune_text_encoder`` *)* an **encoder step** on real images:
   $L_\text{enc} = L_\text{DAMSM}(x, w, s)$, Adam lr $4\cdot10^{-5}$, betas $(0, 0.9)$;
   the GAN terms below then use detached copies of $w, s$.
1. **D step**: $L_D = \mathbb E[\max(0, 1 - D(x, s))] + \tfrac12\big(\mathbb E[\max(0, 1 +
   D(\hat x, s))] + \mathbb E[\max(0, 1 + D(x_i, s_{i+1}))]\big)$, Adam lr $4\cdot10^{-4}$.
2. **MA-GP step** (a second Adam step on D, as the official code):
   $L_\text{GP} = 2\,\mathbb E\lVert \nabla_{(x, s)} D(x, s)\rVert^6$. With
   ``gp_mode="joint"`` it is added to $L_D$ instead and D takes one step (DF-GAN 2022).
3. **G step**: $L_G = -\mathbb E[D(\hat x, s)] + \lambda\, L_\text{DAMSM}(\hat x, w, s)$ with
   $\lambda = 0.05$ (frozen encoders) or $0.1$ (fine-tuned), Adam lr $10^{-4}$, betas $(0, 0.9)$.
4. *(optional)* EMA of G: $\theta_\text{ema} \leftarrow \theta_\text{ema} + (1-\beta)(\theta
   - \theta_\text{ema})$.

**Gates.** Every residual block of G and D outputs ``shortcut(x) + gate * residual(x)``
with a learnable scalar gate that the official code starts at 0 (ReZero).
``gate_init_g`` / ``gate_init_d`` set other start values (:func:`set_gates`); the ToyBirds
recipe starts G's gates at 1, so that G can draw within a short run.

**Exact resume.** Everything random is either drawn from a generator seeded by
``(seed, epoch, step, rank)`` (the batch order, captions, crops, flips, noise: nothing to
save) or from the global generators (dropout), whose states the checkpoint holds. So N
steps in one run and N/2 + resume + N/2 give the same weights bit for bit (on the CPU;
CUDA kernels are not all deterministic).

**Speed.** On CUDA: bf16 autocast for the networks (losses in fp32; MA-GP's double backward
runs in fp32, see :func:`t2ilib.losses.adversarial.ma_gp`), channels_last, fused Adam,
optional ``torch.compile`` (not for MA-GP: compiled graphs do not support double
backward), the whole uint8 image cache on the GPU with crops/flips done there, and no
host synchronisation per step: losses are summed on the device and read once per
``log_every`` steps. On the CPU everything stays fp32. D's parameters stop requiring
gradients during the G step, so its weight gradients are not computed there.

**Outputs** (rank 0, in ``run_dir``): ``checkpoint.pt`` (every epoch and on Ctrl-C /
SIGTERM), ``losses.csv`` (one row per ``log_every`` steps), ``samples/epoch_NNN.png`` (the
same captions and noise every epoch).
"""

from __future__ import annotations

import contextlib
import copy
import csv
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.data.augment import random_crop_flip
from t2ilib.data.cub import WORDS_NUM, CaptionedImages, fit_caption
from t2ilib.io import atomic_write
from t2ilib.losses.adversarial import (
    MA_GP_K,
    MA_GP_P,
    discriminator_adversarial_loss,
    generator_hinge_loss,
    ma_gp,
)
from t2ilib.losses.damsm import SSAGAN_GAMMAS, DAMSMGammas, damsm_loss
from t2ilib.losses.diversity import mode_seeking_loss
from t2ilib.models.ssagan import Discriminator, Generator, SSAGANConfig
from t2ilib.runtime import pick_device, progress
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary
from t2ilib.train import ddp
from t2ilib.train.checkpoint import (
    CheckpointMismatch,
    load_checkpoint,
    save_checkpoint,
    stop_on_signals,
)
from t2ilib.train.damsm import image_encoder_spec, resize_for_encoder

__all__ = ["GP_MODES", "LOSS_NAMES", "SSAGANTrainConfig", "TOYBIRDS_TRAIN", "TrainData",
           "TrainResult", "SSAGANTrainer", "load_or_train_ssagan", "load_generator", "generate",
           "encode_captions", "set_gates", "step_generator", "check_text_encoder"]

GP_MODES = ("separate", "joint")
#: Columns of the loss log (besides ``step`` and ``epoch``), in the order of the loss vector.
LOSS_NAMES = ("d_loss", "d_real", "d_fake", "d_mismatch", "ma_gp", "g_adv", "g_damsm", "enc_damsm")
#: Config fields that may change between a checkpoint and the run resuming it.
RUN_ONLY_FIELDS = ("epochs", "log_every", "amp", "channels_last", "compile", "tensorboard")
CHECKPOINT_NAME = "checkpoint.pt"


@dataclass(frozen=True)
class SSAGANTrainConfig:
    """Training settings (defaults: the official CUB run, ``shared/reference/ssagan.md`` §2.1)."""

    epochs: int = 600
    batch_size: int = 24  # per process
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    damsm_weight: float = 0.05  # lambda of the G loss with frozen encoders (main.py)
    damsm_image_size: int | None = None  # resize images to this side for the DAMSM image
    # encoder (when G's resolution differs from the one the encoder was pretrained at)
    finetune_text_encoder: bool = False  # main_finetune.py: train the encoders jointly
    lr_encoder: float = 4e-5  # encoders' Adam lr when fine-tuning
    finetune_damsm_weight: float = 0.1  # lambda of the G loss when fine-tuning
    gp_mode: str = "separate"  # "separate": a second D step (SSA-GAN); "joint": one D step
    gp_k: float = MA_GP_K
    gp_p: float = MA_GP_P
    gammas: DAMSMGammas = SSAGAN_GAMMAS
    ema_decay: float = 0.0  # 0 = no EMA of G; e.g. 0.999
    gate_init_g: float = 0.0  # start value of G's residual gates (the official code: 0)
    gate_init_d: float = 0.0  # start value of D's residual gates (the official code: 0)
    mode_seeking_weight: float = 0.0  # weight of MSGAN's diversity term in G's loss (0: off,
    # as the paper; t2ilib.losses.diversity): costs a second G pass per step
    seed: int = 100
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke runs)
    log_every: int = 20  # steps between loss-log rows (and host syncs)
    amp: bool = True  # bf16 autocast on CUDA; the CPU always runs fp32
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile G and D's forward passes
    tensorboard: bool = False  # also log losses and sample grids to run_dir/tensorboard

    def __post_init__(self) -> None:
        if self.gp_mode not in GP_MODES:
            raise ValueError(f"gp_mode must be one of {GP_MODES}, got {self.gp_mode!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (mismatched pairs), got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        if self.mode_seeking_weight < 0:
            raise ValueError(f"mode_seeking_weight must be >= 0, got {self.mode_seeking_weight}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")

    @property
    def g_damsm_weight(self) -> float:
        """The DAMSM weight in the G loss: 0.1 when fine-tuning the encoders, else 0.05."""
        return self.finetune_damsm_weight if self.finetune_text_encoder else self.damsm_weight


#: The course's ToyBirds recipe (notebook 07's defaults, with D at ``ndf=16``): the paper's loop
#: and losses, with the text encoder trained jointly (``main_finetune.py``), the learning rates
#: x4, the DAMSM weight 1 and G's residual gates starting at 1, so that a CPU run of under 10
#: minutes (about 1,200 steps) learns colours from text; notebook 07 shows the measurements.
TOYBIRDS_TRAIN = SSAGANTrainConfig(epochs=7, lr_g=4e-4, lr_d=1.6e-3, damsm_weight=1.0,
                                   finetune_text_encoder=True, finetune_damsm_weight=1.0,
                                   gate_init_g=1.0)


@dataclass
class TrainData:
    """A training split as tensors: uint8 images and token-id captions.

    ``images`` ``(N, 3, S, S)`` uint8 (``S = 76/64 * image_size``, cropped at random to
    ``image_size`` each step); caption ``j`` of image ``i`` is ``captions[i * cpi + j]``.
    """

    images: Tensor
    captions: list[list[int]]
    captions_per_image: int
    class_ids: Tensor  # (N,) int64
    vocab: Vocabulary
    image_size: int
    name: str = "data"
    words_num: int = WORDS_NUM

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != torch.uint8:
            raise ValueError(f"images must be uint8 (N, 3, S, S), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        n = self.images.shape[0]
        if len(self.captions) != n * self.captions_per_image:
            raise ValueError(f"{len(self.captions)} captions for {n} images x "
                             f"{self.captions_per_image}")
        if self.class_ids.shape != (n,):
            raise ValueError(f"class_ids must have shape ({n},), got {tuple(self.class_ids.shape)}")
        if self.images.shape[-1] < self.image_size:
            raise ValueError(f"cached images ({self.images.shape[-1]} px) are smaller than "
                             f"image_size {self.image_size}")
        # token ids are checked here, once, so the training step need not read them back
        n_words = len(self.vocab)
        bad = [ids for ids in self.captions if ids and not 0 <= min(ids) <= max(ids) < n_words]
        if bad:
            raise ValueError(f"{len(bad)} captions hold token ids outside [0, {len(self.vocab)}) "
                             f"of the vocabulary, e.g. {bad[0]}")

    @classmethod
    def from_dataset(cls, dataset: CaptionedImages, name: str = "data") -> TrainData:
        """From a :class:`~t2ilib.data.cache.CachedCUBDataset` (its ``images`` tensor)."""
        images = getattr(dataset, "images", None)
        if images is None:
            images = torch.stack([dataset.uint8_image(i) for i in range(len(dataset))])
        return cls(images=images, captions=list(dataset.captions),
                   captions_per_image=dataset.captions_per_image,
                   class_ids=torch.as_tensor(dataset.class_ids, dtype=torch.long),
                   vocab=dataset.vocab, image_size=dataset.image_size, name=name,
                   words_num=dataset.words_num)

    def __len__(self) -> int:
        return self.images.shape[0]

    def describe(self) -> dict[str, Any]:
        """Facts a checkpoint must agree on (the vocabulary is checked by its fingerprint)."""
        return {"name": self.name, "n_images": len(self), "image_size": self.image_size,
                "cache_size": int(self.images.shape[-1]),
                "captions_per_image": self.captions_per_image, "words_num": self.words_num}


@dataclass
class TrainResult:
    """What :meth:`SSAGANTrainer.fit` and :func:`load_or_train_ssagan` return."""

    trained: bool  # False when a finished checkpoint was loaded
    interrupted: bool  # stopped by a signal or ``stop_after`` before the last epoch
    step: int
    epoch: int  # completed epochs
    run_dir: Path | None
    log: dict[str, list[float]] = field(default_factory=dict)  # the loss log's columns
    sample_files: list[Path] = field(default_factory=list)


def set_gates(module: nn.Module, value: float) -> None:
    """Set every residual gate of ``module`` (the scalar parameters named ``gate``) to ``value``.

    A block's output is ``shortcut(x) + gate * residual(x)``; the official code starts every
    gate at 0 (ReZero), so at first G and D are only their shortcut paths.
    """
    with torch.no_grad():
        for name, param in module.named_parameters():
            if name.rsplit(".", 1)[-1] == "gate":
                param.fill_(value)


def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, *keys)`` (e.g. epoch, step, rank) through a hash."""
    text = "/".join(str(k) for k in (seed, *keys))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def encode_captions(vocab: Vocabulary, captions: Sequence[str],
                    words_num: int = WORDS_NUM) -> tuple[Tensor, Tensor]:
    """User captions -> ``(ids (B, words_num) int64, lengths (B,))`` (unknown words dropped).

    A caption longer than ``words_num`` tokens keeps its first ``words_num``.
    """
    ids = torch.zeros(len(captions), words_num, dtype=torch.long)
    lengths = torch.zeros(len(captions), dtype=torch.long)
    for i, caption in enumerate(captions):
        tokens = vocab.encode(caption)[:words_num]
        ids[i, :len(tokens)] = torch.tensor(tokens)
        lengths[i] = len(tokens)
    return ids, lengths


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _flatten(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}


def check_text_encoder(text_encoder: TextEncoder, sentence_dim: int, vocab: Vocabulary,
                       model: str) -> None:
    """Refuse a text encoder whose sentence size or vocabulary does not fit ``model``."""
    if text_encoder.config.hidden_dim != sentence_dim:
        raise ValueError(f"text encoder gives {text_encoder.config.hidden_dim}-d sentences, "
                         f"{model} expects {sentence_dim}")
    if text_encoder.config.vocab_size != len(vocab):
        raise ValueError(f"text encoder has {text_encoder.config.vocab_size} token ids, the "
                         f"data's vocabulary {len(vocab)} words")


class SSAGANTrainer:
    """Models, optimisers and the loop of one SSA-GAN training run.

    Args:
        config: training settings.
        model_config: G/D sizes (``resolution`` must equal ``data.image_size``).
        text_encoder, image_encoder: the pretrained DAMSM (the trainer takes them over:
            frozen and in eval mode unless ``config.finetune_text_encoder``).
        data: the training split.
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        run_dir: where checkpoints, the loss log and sample grids go (None: nowhere).
        sample_captions: captions of the per-epoch grid (default: the first caption of
            the first 8 images); the noise is fixed too.
        dist: this process's place in a ``torchrun`` job (default: single process).
    """

    def __init__(self, config: SSAGANTrainConfig, model_config: SSAGANConfig,
                 text_encoder: TextEncoder, image_encoder: nn.Module, data: TrainData,
                 device: str | torch.device = "auto", run_dir: str | os.PathLike[str] | None = None,
                 sample_captions: Sequence[str] | None = None, dist: ddp.DistInfo = ddp.SINGLE):
        if model_config.resolution != data.image_size:
            raise ValueError(f"model resolution {model_config.resolution} != data image size "
                             f"{data.image_size}")
        check_text_encoder(text_encoder, model_config.sentence_dim, data.vocab, "the GAN")
        self.config, self.model_config, self.data, self.dist = config, model_config, data, dist
        if not isinstance(device, torch.device):
            device = pick_device(str(device))
        self.device = device
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.cuda = device.type == "cuda"
        self.amp = config.amp and self.cuda
        self.memory_format = (torch.channels_last if config.channels_last and self.cuda
                              else torch.contiguous_format)

        # identical initial weights on every rank: same seed, then rank 0's broadcast
        torch.manual_seed(config.seed)
        self.G = ddp.convert_sync_batchnorm(Generator(model_config), dist, device)
        self.D = Discriminator(model_config)
        set_gates(self.G, config.gate_init_g)
        set_gates(self.D, config.gate_init_d)
        self.G.to(device, memory_format=self.memory_format)
        self.D.to(device, memory_format=self.memory_format)
        self.text_encoder = text_encoder.to(device)
        self.image_encoder = image_encoder.to(device)
        for module in (self.G, self.D, self.text_encoder, self.image_encoder):
            ddp.broadcast_module(module, dist)
        torch.manual_seed(config.seed + 1 + dist.rank)  # dropout etc.: per rank
        self.G_ema = None
        if config.ema_decay > 0:
            self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)

        fused = {"fused": True} if self.cuda else {}
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=config.lr_g, betas=config.betas,
                                      **fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr_d, betas=config.betas,
                                      **fused)
        self.opt_enc = None
        finetune = config.finetune_text_encoder
        self.text_encoder.requires_grad_(finetune)
        if finetune:  # text encoder + the image encoder's trainable part (Inception: projections)
            enc_params = [*self.text_encoder.parameters(),
                          *(p for p in self.image_encoder.parameters() if p.requires_grad)]
            self.opt_enc = torch.optim.Adam(enc_params, lr=config.lr_encoder, betas=config.betas,
                                            **fused)
        else:
            self.image_encoder.requires_grad_(False)
        self.text_encoder.eval()
        self.image_encoder.eval()

        # forward passes, compiled or not (MA-GP always uses the eager D: double backward)
        self._g = torch.compile(self.G) if config.compile else self.G
        self._d = _DiscriminatorView(self.D, config.compile)
        self._image_encoder = (torch.compile(self.image_encoder) if config.compile
                               else self.image_encoder)

        self.images = data.images.to(device)  # the uint8 cache lives on the device
        self.class_ids = data.class_ids.to(device)
        self.step = 0  # optimisation steps done
        self.epoch = 0  # epochs completed
        self.step_in_epoch = 0
        self.n_per_rank = len(data) // dist.world_size
        if self.n_per_rank < config.batch_size:
            raise ValueError(f"{len(data)} images give each of {dist.world_size} process(es) "
                             f"{self.n_per_rank}, fewer than one batch of {config.batch_size}")
        n_steps = self.n_per_rank // config.batch_size  # drop_last, as the official loader
        self.steps_per_epoch = (n_steps if config.max_steps_per_epoch is None
                                else min(n_steps, config.max_steps_per_epoch))

        if sample_captions is None:
            n = min(8, len(data))
            sample_captions = [data.vocab.decode(data.captions[i * data.captions_per_image])
                               for i in range(n)]
        self.sample_captions = list(sample_captions)
        self.sample_noise = torch.randn(len(self.sample_captions), model_config.nz,
                                        generator=step_generator(config.seed, -1))
        self._loss_sum = torch.zeros(len(LOSS_NAMES), device=device)
        self._loss_count = 0
        self._tensorboard = None  # a SummaryWriter, opened by the first log row

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> dict[str, Any]:
        """Flat ``{"section.field": value}`` a checkpoint must match (run-only fields left out)."""
        train = {k: v for k, v in asdict(self.config).items() if k not in RUN_ONLY_FIELDS}
        return _plain({**_flatten("model", asdict(self.model_config)),
                       **_flatten("train", train),
                       **_flatten("text_encoder", asdict(self.text_encoder.config)),
                       "image_encoder": image_encoder_spec(self.image_encoder),
                       **_flatten("data", self.data.describe()),
                       "world_size": self.dist.world_size})

    def _modules(self) -> dict[str, Any]:
        mods: dict[str, Any] = {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d,
                                "text_encoder": self.text_encoder,
                                "image_encoder": self.image_encoder}
        if self.G_ema is not None:
            mods["G_ema"] = self.G_ema
        if self.opt_enc is not None:
            mods["opt_enc"] = self.opt_enc
        return mods

    # ------------------------------------------------------------------ checkpoints
    @property
    def checkpoint_path(self) -> Path | None:
        return None if self.run_dir is None else self.run_dir / CHECKPOINT_NAME

    def save(self, path: str | os.PathLike[str] | None = None) -> Path | None:
        """Write a checkpoint (rank 0 only; atomic). Returns its path (None on other ranks)."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("no path: give one or a run_dir")
        if not self.dist.is_main:
            return None
        extra = {"step_in_epoch": self.step_in_epoch, "vocab_words": self.data.vocab.words,
                 "model_config": asdict(self.model_config),
                 "text_encoder_config": asdict(self.text_encoder.config),
                 "image_encoder_spec": image_encoder_spec(self.image_encoder),
                 "sample_captions": self.sample_captions}
        return save_checkpoint(path, modules=self._modules(), step=self.step, epoch=self.epoch,
                               config=self.fingerprint(),
                               vocab_fingerprint=self.data.vocab.fingerprint(), extra=_plain(extra))

    def load(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Resume from a checkpoint: weights, optimisers, EMA, RNG states, counters.

        Raises :class:`~t2ilib.train.checkpoint.CheckpointMismatch` when it was made with
        another configuration (run-only fields such as ``epochs`` may differ) or vocabulary.
        """
        path = self.checkpoint_path if path is None else Path(path)
        payload = load_checkpoint(path, modules=self._modules(), config=self.fingerprint(),
                                  vocab_fingerprint=self.data.vocab.fingerprint(),
                                  map_location=self.device)
        self.step, self.epoch = int(payload["step"]), int(payload["epoch"])
        self.step_in_epoch = int(payload["extra"]["step_in_epoch"])
        if self.dist.distributed:  # each rank continues its own stream of draws
            torch.manual_seed(self.config.seed + 1 + self.dist.rank + 7919 * self.step)
        self._truncate_log()
        return payload

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batch(self, epoch: int, step_in_epoch: int) -> dict[str, Tensor]:
        """Batch ``step_in_epoch`` of ``epoch`` on this rank, with its noise.

        Returns ``images (B, 3, s, s)`` in [-1, 1] on the device, ``captions (B, T)``,
        ``lengths (B,)`` (CPU), ``class_ids (B,)`` and ``z (B, nz)``. Deterministic in
        ``(seed, epoch, step_in_epoch, rank)``.
        """
        cfg, data = self.config, self.data
        order = ddp.shard_permutation(len(data), epoch, cfg.seed, self.dist)
        b = cfg.batch_size
        index = torch.tensor(order[step_in_epoch * b:(step_in_epoch + 1) * b])  # (B,)
        nb = self.cuda  # host -> GPU copies that do not wait for the GPU (no host sync)
        on_device = index.to(self.device, non_blocking=nb)
        g = step_generator(cfg.seed, epoch, step_in_epoch, self.dist.rank)
        caps, lens = [], []
        for i in index.tolist():
            j = int(torch.randint(data.captions_per_image, (1,), generator=g))
            ids, n = fit_caption(data.captions[i * data.captions_per_image + j], data.words_num, g)
            caps.append(ids)
            lens.append(n)
        images = random_crop_flip(self.images[on_device], data.image_size,
                                  generator=g)                                   # (B, 3, s, s)
        z = torch.randn(b, self.model_config.nz, generator=g)
        extra = {}
        if cfg.mode_seeking_weight > 0:  # a second noise for the same captions
            z2 = torch.randn(b, self.model_config.nz, generator=g)
            extra["z2"] = z2.to(self.device, non_blocking=nb)
        return {**extra, "images": images.contiguous(memory_format=self.memory_format),
                "captions": torch.stack(caps).to(self.device, non_blocking=nb),
                "lengths": torch.tensor(lens),
                "class_ids": self.class_ids[on_device],
                "z": z.to(self.device, non_blocking=nb)}

    def _damsm(self, images: Tensor, words: Tensor, sentence: Tensor, lengths: Tensor,
               class_ids: Tensor, encoder: nn.Module) -> Tensor:
        with self._autocast():
            regions, codes = encoder(resize_for_encoder(images, self.config.damsm_image_size))
        return damsm_loss(regions.float(), codes.float(), words.float(), sentence.float(),
                          lengths.to(self.device, non_blocking=self.cuda), class_ids,
                          self.config.gammas).total

    def _step_params(self, params, opt: torch.optim.Optimizer) -> None:
        ddp.average_gradients(params, self.dist)
        opt.step()

    def train_step(self, batch: dict[str, Tensor]) -> Tensor:
        """One iteration (encoder step if fine-tuning, D, MA-GP, G); returns the losses
        ``(len(LOSS_NAMES),)`` on the device, detached (no host sync)."""
        cfg = self.config
        real, captions, lengths = batch["images"], batch["captions"], batch["lengths"]
        class_ids, z = batch["class_ids"], batch["z"]
        zero = torch.zeros((), device=self.device)

        # 0. text (and, when fine-tuning, the encoder step on real images)
        if self.opt_enc is not None:
            self.text_encoder.train()
            self.image_encoder.train()
            with self._autocast():  # ids were checked by TrainData
                words, sentence = self.text_encoder(captions, lengths, check_ids=False)
            enc_loss = self._damsm(real, words, sentence, lengths, class_ids, self.image_encoder)
            self.opt_enc.zero_grad(set_to_none=True)
            enc_loss.backward()
            self._step_params(self.opt_enc.param_groups[0]["params"], self.opt_enc)
            self.text_encoder.eval()
            self.image_encoder.eval()
            words, sentence = words.detach().float(), sentence.detach().float()
        else:
            with torch.no_grad(), self._autocast():
                words, sentence = self.text_encoder(captions, lengths, check_ids=False)
            words, sentence = words.float(), sentence.float()
            enc_loss = zero

        # 1. D adversarial step (2. MA-GP folded in with gp_mode="joint")
        d_params = list(self.D.parameters())
        with self._autocast():
            fake, _ = self._g(z, sentence)  # (B, 3, s, s)
            hinge = discriminator_adversarial_loss(self._d, real, fake, sentence)
        d_loss = hinge.total
        if cfg.gp_mode == "joint":
            gp = ma_gp(self.D, real, sentence, cfg.gp_k, cfg.gp_p)
            d_loss = d_loss + gp
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self._step_params(d_params, self.opt_d)
        # 2. MA-GP as a second D step (SSA-GAN)
        if cfg.gp_mode == "separate":
            gp = ma_gp(self.D, real, sentence, cfg.gp_k, cfg.gp_p)
            self.opt_d.zero_grad(set_to_none=True)
            gp.backward()
            self._step_params(d_params, self.opt_d)

        # 3. G step: fool D, match the caption under DAMSM
        self.D.requires_grad_(False)  # no weight gradients for D here
        with self._autocast():
            g_adv = generator_hinge_loss(self._d.logits(self._d.features(fake), sentence))
        g_damsm = self._damsm(fake, words, sentence, lengths, class_ids, self._image_encoder)
        g_loss = g_adv + cfg.g_damsm_weight * g_damsm
        if cfg.mode_seeking_weight > 0:
            with self._autocast():
                fake_2, _ = self._g(batch["z2"], sentence)  # (B, 3, s, s), the same captions
            g_loss = g_loss + cfg.mode_seeking_weight * mode_seeking_loss(
                fake.float(), fake_2.float(), z, batch["z2"])
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self._step_params(list(self.G.parameters()), self.opt_g)
        self.D.requires_grad_(True)

        # 4. EMA of G
        if self.G_ema is not None:
            with torch.no_grad():
                ema_p = list(self.G_ema.parameters())
                torch._foreach_lerp_(ema_p, list(self.G.parameters()), 1.0 - cfg.ema_decay)
                for b_ema, b in zip(self.G_ema.buffers(), self.G.buffers()):
                    b_ema.copy_(b)
        losses = torch.stack([d_loss, hinge.real, hinge.fake, hinge.mismatch, gp, g_adv,
                              g_damsm, enc_loss])
        return losses.detach().float()

    # ------------------------------------------------------------------ the loop
    def fit(self, epochs: int | None = None, stop_after: int | None = None,
            progress_bar: bool = True) -> TrainResult:
        """Train until ``epochs`` (default ``config.epochs``) epochs are complete.

        Continues from the current counters (after :meth:`load`, from the checkpoint).
        ``stop_after`` stops once ``step`` reaches it (like an interruption: checkpoint,
        then return). Ctrl-C / SIGTERM save a checkpoint and return with ``interrupted``.
        """
        epochs = self.config.epochs if epochs is None else epochs
        main = self.dist.is_main
        total = epochs * self.steps_per_epoch
        quiet = {} if (main and progress_bar) else {"disable": True}
        bar = progress(None, total=total, initial=min(self.step, total), desc="SSA-GAN", **quiet)
        interrupted = False
        self.G.train()
        self.D.train()
        with stop_on_signals() as flag:
            while self.epoch < epochs and not interrupted:
                while self.step_in_epoch < self.steps_per_epoch:
                    losses = self.train_step(self.batch(self.epoch, self.step_in_epoch))
                    self._loss_sum += losses
                    self._loss_count += 1
                    self.step += 1
                    self.step_in_epoch += 1
                    bar.update(1)
                    if self.step % self.config.log_every == 0:
                        self._flush_log(bar)
                        stop = ddp.any_flag(bool(flag), self.dist, self.device)
                    else:
                        stop = bool(flag) and not self.dist.distributed
                    if stop or (stop_after is not None and self.step >= stop_after):
                        interrupted = True
                        break
                if interrupted:
                    break
                self.epoch += 1
                self.step_in_epoch = 0
                self._sync_buffers()
                self._flush_log(bar)
                self.write_samples()
                if self.run_dir is not None:
                    self.save()
            if interrupted:
                self._sync_buffers()
                self._flush_log(bar)
                if self.run_dir is not None:
                    self.save()
        bar.close()
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        return self.result(trained=True, interrupted=interrupted)

    def _sync_buffers(self) -> None:
        """Rank 0's batch-norm statistics to all ranks (before samples and checkpoints)."""
        for module in (self.G, self.G_ema, self.image_encoder):
            if module is not None:
                ddp.broadcast_module(module, self.dist, buffers_only=True)

    def result(self, trained: bool, interrupted: bool = False) -> TrainResult:
        log = {}
        if self.run_dir is not None and (self.run_dir / "losses.csv").is_file():
            from t2ilib.viz import read_loss_csv
            log = read_loss_csv(self.run_dir / "losses.csv")
        files = sorted((self.run_dir / "samples").glob("epoch_*.png")) if self.run_dir else []
        return TrainResult(trained, interrupted, self.step, self.epoch, self.run_dir, log, files)

    # ------------------------------------------------------------------ logging
    def _flush_log(self, bar) -> None:
        """Average the losses since the last row (one host sync) and append a CSV row."""
        if self._loss_count == 0:
            return
        means = (self._loss_sum / self._loss_count).tolist()
        self._loss_sum.zero_()
        self._loss_count = 0
        row = {"step": self.step, "epoch": self.epoch + self.step_in_epoch / self.steps_per_epoch,
               **dict(zip(LOSS_NAMES, means))}
        if not self.dist.is_main:
            return
        bar.set_postfix(D=f"{row['d_loss']:.3f}", G=f"{row['g_adv']:.3f}",
                        damsm=f"{row['g_damsm']:.2f}", refresh=False)
        if self.run_dir is None:
            return
        path = self.run_dir / "losses.csv"
        new = not path.is_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["step", "epoch", *LOSS_NAMES])
            if new:
                writer.writeheader()
            writer.writerow({k: (round(v, 6) if isinstance(v, float) else v)
                             for k, v in row.items()})
        if self.config.tensorboard:
            for name in LOSS_NAMES:
                self.tensorboard().add_scalar(f"loss/{name}", row[name], self.step)

    def tensorboard(self):
        """This run's ``SummaryWriter`` (``run_dir/tensorboard``; ``tensorboard --logdir``)."""
        if self._tensorboard is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # torch's writer needs the tensorboard package
                raise ImportError("tensorboard=True needs the tensorboard package: "
                                  "pip install tensorboard") from err
            self._tensorboard = SummaryWriter(str(self.run_dir / "tensorboard"))
        return self._tensorboard

    def _truncate_log(self) -> None:
        """Drop log rows written after the checkpoint being resumed (a hard crash)."""
        if self.run_dir is None or not self.dist.is_main:
            return
        path = self.run_dir / "losses.csv"
        if not path.is_file():
            return
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        keep = [r for r in rows if int(r["step"]) <= self.step]
        if len(keep) != len(rows):
            with atomic_write(path, "w") as f:
                writer = csv.DictWriter(f, fieldnames=["step", "epoch", *LOSS_NAMES])
                writer.writeheader()
                writer.writerows(keep)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, captions: Sequence[str] | None = None, z: Tensor | None = None,
               use_ema: bool = True) -> tuple[Tensor, list[Tensor]]:
        """Images ``(B, 3, s, s)`` in [-1, 1] (CPU) and masks for ``captions`` and noise ``z``.

        Defaults: the fixed sample captions and noise. G runs in eval mode (batch-norm
        running statistics); uses the EMA copy when there is one and ``use_ema``.
        Draws nothing from the global RNG.
        """
        captions = self.sample_captions if captions is None else list(captions)
        if z is None:
            if len(captions) != len(self.sample_noise):
                raise ValueError("give z when the captions are not the sample captions")
            z = self.sample_noise
        ids, lengths = encode_captions(self.data.vocab, captions, self.data.words_num)
        g = self.G_ema if (use_ema and self.G_ema is not None) else self.G
        return _generate(g, self.text_encoder, ids, lengths, z, self.device)

    def write_samples(self) -> Path | None:
        """``samples/epoch_NNN.png``: the fixed captions and noise after this epoch (rank 0)."""
        if self.run_dir is None or not self.dist.is_main:
            return None
        from t2ilib.viz import save_grid

        images, _ = self.sample()
        if self.config.tensorboard:
            from t2ilib.viz import make_grid
            self.tensorboard().add_image("samples", make_grid(images), self.step)
        return save_grid(images, self.run_dir / "samples" / f"epoch_{self.epoch:03d}.png")


class _DiscriminatorView:
    """D's ``features`` / ``logits``, optionally compiled (the loss functions' protocol)."""

    def __init__(self, d: Discriminator, compile: bool):
        self.features = torch.compile(d.features) if compile else d.features
        self.logits = torch.compile(d.logits) if compile else d.logits


@torch.no_grad()
def _generate(g: Generator, text_encoder: TextEncoder, ids: Tensor, lengths: Tensor, z: Tensor,
              device: torch.device) -> tuple[Tensor, list[Tensor]]:
    was_training = g.training
    text_was_training = text_encoder.training
    g.eval()
    text_encoder.eval()
    try:
        _, sentence = text_encoder(ids.to(device), lengths)
        images, masks = g(z.to(device), sentence)
    finally:
        g.train(was_training)
        text_encoder.train(text_was_training)
    return images.float().cpu(), [m.float().cpu() for m in masks]


# ---------------------------------------------------------------------- load or train

def load_or_train_ssagan(trainer: SSAGANTrainer, retrain: bool = False,
                         epochs: int | None = None, stop_after: int | None = None,
                         progress_bar: bool = True) -> TrainResult:
    """Training notebooks' entry point: reuse ``run_dir/checkpoint.pt`` when it matches.

    * a finished matching checkpoint (``epochs`` done): load it, skip training;
    * an unfinished one: resume from it (exactly);
    * ``retrain=True``: ignore it (and the old loss log and grids) and start afresh.

    A checkpoint of another configuration or vocabulary raises
    :class:`~t2ilib.train.checkpoint.CheckpointMismatch` (pass ``retrain=True`` or
    another ``run_dir``).
    """
    epochs = trainer.config.epochs if epochs is None else epochs
    path = trainer.checkpoint_path
    if path is None:
        raise ValueError("load_or_train_ssagan needs a trainer with a run_dir")
    if retrain:
        if trainer.dist.is_main:
            for old in [path, path.parent / "losses.csv",
                        *sorted((path.parent / "samples").glob("epoch_*.png"))]:
                old.unlink(missing_ok=True)
    elif path.is_file():
        trainer.load(path)
        if trainer.epoch >= epochs:
            return trainer.result(trained=False)
    return trainer.fit(epochs, stop_after=stop_after, progress_bar=progress_bar)


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                   use_ema: bool = True
                   ) -> tuple[Generator, TextEncoder, Vocabulary, dict[str, Any]]:
    """Rebuild G (the EMA copy if saved and ``use_ema``) and the text encoder from a checkpoint.

    Returns ``(G, text_encoder, vocabulary, payload)``, both models in eval mode on ``device``.
    """
    from t2ilib.io import load_torch

    device = pick_device(str(device))
    payload = load_torch(path, map_location="cpu")
    if not isinstance(payload, dict) or "extra" not in payload or "state" not in payload:
        raise CheckpointMismatch(f"{path} is not an SSA-GAN training checkpoint")
    extra = payload["extra"]
    for key in ("model_config", "text_encoder_config", "vocab_words"):
        if key not in extra:
            raise CheckpointMismatch(f"{path} is not an SSA-GAN training checkpoint (no {key})")
    g = Generator(SSAGANConfig(**extra["model_config"]))
    state = payload["state"]
    g.load_state_dict(state["G_ema"] if use_ema and "G_ema" in state else state["G"])
    te = TextEncoder(TextEncoderConfig(**extra["text_encoder_config"]))
    te.load_state_dict(state["text_encoder"])
    return (g.to(device).eval(), te.to(device).eval(), Vocabulary.from_words(extra["vocab_words"]),
            payload)


def generate(g: Generator, text_encoder: TextEncoder, vocab: Vocabulary, captions: Sequence[str],
             z: Tensor | None = None, seed: int = 0) -> tuple[Tensor, list[Tensor]]:
    """Images ``(B, 3, s, s)`` in [-1, 1] (CPU) and masks for user captions.

    ``z`` ``(B, nz)`` defaults to noise drawn from a generator seeded with ``seed``.
    """
    device = next(g.parameters()).device
    ids, lengths = encode_captions(vocab, captions)
    if z is None:
        z = torch.randn(len(captions), g.config.nz, generator=torch.Generator().manual_seed(seed))
    return _generate(g, text_encoder, ids, lengths, z, device)

