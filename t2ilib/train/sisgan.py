r"""Training SISGAN (Dong et al., ICCV 2017): text-guided image manipulation.

One loop, used by ``notebooks/09_sisgan`` and the demo; ``python -m t2ilib manipulate``
applies a trained generator. Per iteration, with real images $x$, their own captions'
sentence vectors $\varphi(t)$ from the **frozen** DAMSM text encoder (notebook 02), the
mismatching ones $\varphi(\hat t)$ of a random derangement of the batch, and relevant ones
$\varphi(\tilde t)$ (own caption with probability ``p_match``, else the mismatching one):

1. $\hat x = G(x, \varphi(\tilde t))$ with a fresh conditioning-augmentation sample;
2. **D step**: $L_D$ of :func:`t2ilib.losses.sisgan.discriminator_loss` on
   (real, matching) / (real, mismatching) / (fake, relevant), $\hat x$ detached;
3. **G step**: $L_G = \mathrm{BCE}(D(\hat x, \varphi(\tilde t)), 1) + \rho\,\mathrm{KL} +
   \lambda\,\mathrm{L1}$ (the L1 term only on samples whose relevant caption is their own;
   $\lambda = 0$ is SISGAN, TAGAN used 0.2).

Adam, lr $2\cdot10^{-4}$, betas (0.5, 0.999), the learning rate halved every 100 epochs
(``shared/reference/sisgan.md`` §1.7). One deviation for speed: G's step reuses the fake
batch of the D step (the reference code runs G a second time with new noise).

**Exact resume.** Every random draw (batch order, caption choice, flips, the derangement, the
match coins, the augmentation noise) comes from a generator seeded by ``(seed, epoch,
step)``; nothing else is random (no dropout; the text encoder is frozen in eval mode). So a
run cut in two and resumed from its checkpoint ends with the same weights, bit for bit, on
the CPU.

**Outputs.** The checkpoint (every epoch, on Ctrl-C / SIGTERM, atomically) holds G, D, both
optimisers, the frozen text encoder, the vocabulary and the loss log, so
:func:`load_sisgan` needs nothing else. With a ``run_dir``, ``samples/epoch_NNN.png`` shows
fixed source images (rows) edited by fixed captions (columns) after every epoch.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.data.augment import random_crop_flip
from t2ilib.data.cub import fit_caption, load_captions, read_split
from t2ilib.io import load_torch
from t2ilib.losses.damsm import damsm_loss
from t2ilib.losses.sisgan import (
    derangement,
    discriminator_loss,
    generator_loss,
    reconstruction_loss,
    relevant_sentences,
)
from t2ilib.models.sisgan import Discriminator, Generator, SISGANConfig
from t2ilib.runtime import checkpoint_root, data_root, pick_device, progress
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary
from t2ilib.train.checkpoint import (
    CheckpointMismatch,
    load_checkpoint,
    save_checkpoint,
    stop_on_signals,
)
from t2ilib.train.damsm import TOYBIRDS_DAMSM_SIZE, resize_for_encoder
from t2ilib.train.ssagan import TrainData, check_text_encoder, encode_captions, step_generator

__all__ = ["LOSS_NAMES", "SISGANTrainConfig", "SISGANTrainer", "SISGANRun", "TrainResult",
           "TOYBIRDS_MODEL", "TOYBIRDS_TRAIN", "SMOKE_MODEL", "SMOKE_TRAIN", "load_native_split",
           "default_checkpoint", "run_checkpoint", "toybirds_trainer",
           "load_or_train_sisgan", "load_sisgan", "manipulate", "images_from_files"]

#: Columns of the loss log (besides ``step`` and ``epoch``), in the order of the loss vector.
#: ``p_*`` are D's mean probabilities for the three pairs (real-matching should go to 1).
LOSS_NAMES = ("d_loss", "d_real", "d_mismatch", "d_fake", "g_loss", "g_adv", "kl", "recon",
              "g_damsm", "p_real", "p_mismatch", "p_fake")
#: Config fields that may change between a checkpoint and the run resuming it.
RUN_ONLY_FIELDS = ("epochs", "log_every", "amp")
FORMAT_TAG = "sisgan"


@dataclass(frozen=True)
class SISGANTrainConfig:
    """Training settings (defaults: the reference run, ``shared/reference/sisgan.md`` §1.7)."""

    epochs: int = 600
    batch_size: int = 64
    lr: float = 2e-4  # G and D
    betas: tuple[float, float] = (0.5, 0.999)
    lr_halve_every: int = 100  # epochs between halvings of the learning rate
    kl_weight: float = 1.0  # rho
    recon_weight: float = 0.0  # lambda of the L1 reconstruction (SISGAN 0, TAGAN 0.2)
    p_match: float = 0.5  # probability that G's relevant text is the image's own caption
    damsm_weight: float = 0.0  # not SISGAN: weight of a DAMSM loss on G's edits (0 = off)
    damsm_image_size: int | None = None  # resize edits to this side for the DAMSM image encoder
    flip: bool = True  # random horizontal flips (captions never name the facing)
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke runs)
    log_every: int = 20  # steps between loss-log rows (and host syncs)
    amp: bool = True  # bf16 autocast on CUDA; the CPU always runs fp32

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (mismatched pairs), got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not 0.0 <= self.p_match <= 1.0:
            raise ValueError(f"p_match must lie in [0, 1], got {self.p_match}")
        if self.lr_halve_every < 1 or self.log_every < 1:
            raise ValueError("lr_halve_every and log_every must be >= 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")
        if self.kl_weight < 0 or self.recon_weight < 0 or self.damsm_weight < 0:
            raise ValueError("kl_weight, recon_weight and damsm_weight must be >= 0")

    def lr_at(self, epoch: int) -> float:
        """The learning rate of (0-based) ``epoch``: halved every ``lr_halve_every`` epochs."""
        return self.lr * 0.5 ** (epoch // self.lr_halve_every)


@dataclass
class TrainResult:
    """What :meth:`SISGANTrainer.fit` returns."""

    trained: bool  # False when a finished checkpoint was loaded
    interrupted: bool  # stopped by a signal or ``stop_after`` before the last epoch
    step: int
    epoch: int  # completed epochs
    log: dict[str, list[float]] = field(default_factory=dict)  # the loss log's columns
    sample_files: list[Path] = field(default_factory=list)


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(obj))


def _flatten(prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in d.items()}


def _weights_hash(module: nn.Module) -> str:
    """SHA-256 (16 hex digits) of a module's state: tells two pretrained encoders apart."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def load_native_split(root: str | os.PathLike[str], split: str = "train",
                      name: str = "toybirds") -> TrainData:
    """A CUB-layout split read at its **native** size, without AttnGAN's resize-and-crop.

    For ToyBirds: the images, ground-truth masks and the oracle all live at the drawn size
    (64 px), so training on the same pixels keeps the bird at the scale the metrics see.
    Images must all be square and of one size ``S``; ``TrainData.image_size == S`` (so a
    training "crop" is the whole image and only the flip remains).
    """
    from PIL import Image

    root = Path(root)
    keys, class_ids = read_split(root, split)
    caps = load_captions(root)
    captions = caps.train if split == "train" else caps.test
    arrays = []
    for key in progress(keys, desc=f"{split} images", leave=False):
        with Image.open(root / "CUB_200_2011" / "images" / f"{key}.jpg") as im:
            arrays.append(np.asarray(im.convert("RGB")))
    sizes = {a.shape for a in arrays}
    if len(sizes) != 1 or arrays[0].shape[0] != arrays[0].shape[1]:
        raise ValueError(f"{root}: native images must be square and of one size, got {sizes}")
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()  # (N, 3, S, S)
    per_image = len(captions) // max(len(keys), 1)
    return TrainData(images=images, captions=list(captions), captions_per_image=per_image,
                     class_ids=torch.tensor(class_ids, dtype=torch.long), vocab=caps.vocab,
                     image_size=int(images.shape[-1]), name=f"{name}:{split}:native")


class SISGANTrainer:
    """Models, optimisers and the loop of one SISGAN training run.

    Args:
        config: training settings.
        model_config: G/D sizes (``image_size`` must equal ``data.image_size``).
        text_encoder: the pretrained DAMSM text encoder; frozen and kept in eval mode.
        data: the training split (uint8 images, token-id captions).
        device: ``"auto"``, ``"cpu"`` or ``"cuda"``.
        checkpoint: file for checkpoints (None: none are written).
        run_dir: folder for the per-epoch sample grids (None: no grids).
        sample_sources: ``(K, 3, s, s)`` images in [-1, 1] for the grids (default: the centre
            crops of the first 8 training images).
        sample_captions: captions of the grid's columns (default: the first caption of the
            training images 8..11).
        vgg_weights: local VGG-16-BN weights, for ``model_config.encoder == "vgg"``.
        image_encoder: the DAMSM image encoder pretrained with ``text_encoder``; needed (and
            frozen) only when ``config.damsm_weight > 0``.
    """

    def __init__(self, config: SISGANTrainConfig, model_config: SISGANConfig,
                 text_encoder: TextEncoder, data: TrainData, device: str | torch.device = "auto",
                 checkpoint: str | os.PathLike[str] | None = None,
                 run_dir: str | os.PathLike[str] | None = None,
                 sample_sources: Tensor | None = None,
                 sample_captions: Sequence[str] | None = None,
                 vgg_weights: str | os.PathLike[str] | None = None,
                 image_encoder: nn.Module | None = None):
        if config.damsm_weight > 0 and image_encoder is None:
            raise ValueError("damsm_weight > 0 needs the DAMSM image encoder (image_encoder=)")
        if model_config.image_size != data.image_size:
            raise ValueError(f"model image_size {model_config.image_size} != data image size "
                             f"{data.image_size}")
        check_text_encoder(text_encoder, model_config.sentence_dim, data.vocab, "SISGAN")
        if len(data) < config.batch_size:
            raise ValueError(f"{len(data)} images are fewer than one batch of "
                             f"{config.batch_size}")
        self.config, self.model_config, self.data = config, model_config, data
        self.device = device if isinstance(device, torch.device) else pick_device(str(device))
        self.cuda = self.device.type == "cuda"
        self.amp = config.amp and self.cuda
        self.checkpoint_path = Path(checkpoint) if checkpoint is not None else None
        self.run_dir = Path(run_dir) if run_dir is not None else None

        torch.manual_seed(config.seed)
        self.G = Generator(model_config, vgg_weights=vgg_weights).to(self.device)
        self.D = Discriminator(model_config).to(self.device)
        self.text_encoder = text_encoder.to(self.device).eval().requires_grad_(False)
        self.image_encoder = (image_encoder.to(self.device).eval().requires_grad_(False)
                              if config.damsm_weight > 0 else None)
        fused = {"fused": True} if self.cuda else {}
        self.opt_g = torch.optim.Adam([p for p in self.G.parameters() if p.requires_grad],
                                      lr=config.lr, betas=config.betas, **fused)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=config.lr, betas=config.betas,
                                      **fused)

        self.images = data.images.to(self.device)  # uint8 (N, 3, S, S) on the device
        self.step = 0
        self.epoch = 0
        self.step_in_epoch = 0
        n_steps = len(data) // config.batch_size  # drop_last
        self.steps_per_epoch = (n_steps if config.max_steps_per_epoch is None
                                else min(n_steps, config.max_steps_per_epoch))
        self.log_rows: list[dict[str, float]] = []
        self._loss_sum = torch.zeros(len(LOSS_NAMES), device=self.device)
        self._loss_count = 0

        if sample_sources is None:
            from t2ilib.data.augment import center_crop

            sample_sources = center_crop(data.images[:min(8, len(data))], data.image_size)
        self.sample_sources = sample_sources.float().cpu()
        if sample_captions is None:
            first = min(8, len(data) - 1)
            idx = range(first, min(first + 4, len(data)))
            sample_captions = [data.vocab.decode(data.captions[i * data.captions_per_image])
                               for i in idx]
        self.sample_captions = list(sample_captions)

    # ------------------------------------------------------------------ identity
    def fingerprint(self) -> dict[str, Any]:
        """Flat ``{"section.field": value}`` a checkpoint must match (run-only fields left out)."""
        train = {k: v for k, v in asdict(self.config).items() if k not in RUN_ONLY_FIELDS}
        image = ({"image_encoder.weights": _weights_hash(self.image_encoder)}
                 if self.image_encoder is not None else {})
        return _plain({"format": FORMAT_TAG, **_flatten("model", asdict(self.model_config)),
                       **image,
                       **_flatten("train", train),
                       **_flatten("text_encoder", asdict(self.text_encoder.config)),
                       "text_encoder.weights": _weights_hash(self.text_encoder),
                       **_flatten("data", self.data.describe())})

    def _modules(self) -> dict[str, Any]:
        return {"G": self.G, "D": self.D, "opt_g": self.opt_g, "opt_d": self.opt_d,
                "text_encoder": self.text_encoder}

    def save(self, path: str | os.PathLike[str] | None = None) -> Path:
        """Write a checkpoint atomically; returns its path."""
        path = self.checkpoint_path if path is None else Path(path)
        if path is None:
            raise ValueError("no path: give one or a checkpoint to the trainer")
        extra = {"step_in_epoch": self.step_in_epoch, "vocab_words": self.data.vocab.words,
                 "model_config": asdict(self.model_config), "train_config": asdict(self.config),
                 "text_encoder_config": asdict(self.text_encoder.config),
                 "data": self.data.describe(), "log": self.log_rows,
                 "sample_captions": self.sample_captions}
        return save_checkpoint(path, modules=self._modules(), step=self.step, epoch=self.epoch,
                               config=self.fingerprint(),
                               vocab_fingerprint=self.data.vocab.fingerprint(), extra=_plain(extra))

    def load(self, path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
        """Resume from a checkpoint: weights, optimisers, RNG states, counters, loss log.

        Raises :class:`~t2ilib.train.checkpoint.CheckpointMismatch` when it was made with
        another configuration, text encoder or vocabulary.
        """
        path = self.checkpoint_path if path is None else Path(path)
        payload = load_checkpoint(path, modules=self._modules(), config=self.fingerprint(),
                                  vocab_fingerprint=self.data.vocab.fingerprint(),
                                  map_location=self.device)
        self.text_encoder.eval().requires_grad_(False)
        self.step, self.epoch = int(payload["step"]), int(payload["epoch"])
        self.step_in_epoch = int(payload["extra"]["step_in_epoch"])
        self.log_rows = [dict(r) for r in payload["extra"]["log"]]
        return payload

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp:
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def batch(self, epoch: int, step_in_epoch: int) -> dict[str, Tensor]:
        """Batch ``step_in_epoch`` of ``epoch``: deterministic in ``(seed, epoch, step)``.

        Returns ``images (B, 3, s, s)`` in [-1, 1], ``captions (B, T)`` and ``lengths (B,)``
        (the images' own captions), ``other (B,)`` (a derangement: sample ``i``'s mismatching
        caption is ``other[i]``'s), ``coins (B,)`` (uniform draws for the match decision) and
        ``eps (B, C)`` (the augmentation noise), ``class_ids (B,)``.
        """
        cfg, data = self.config, self.data
        b = cfg.batch_size
        order = torch.randperm(len(data), generator=step_generator(cfg.seed, epoch))
        index = order[step_in_epoch * b:(step_in_epoch + 1) * b]  # (B,)
        g = step_generator(cfg.seed, epoch, step_in_epoch)
        caps, lens = [], []
        for i in index.tolist():
            j = int(torch.randint(data.captions_per_image, (1,), generator=g))
            ids, n = fit_caption(data.captions[i * data.captions_per_image + j], data.words_num, g)
            caps.append(ids)
            lens.append(n)
        images = random_crop_flip(self.images[index.to(self.device)], data.image_size,
                                  flip=cfg.flip, generator=g)  # (B, 3, s, s)
        other = derangement(b, g)
        coins = torch.rand(b, generator=g)
        eps = torch.randn(b, self.model_config.condition_dim, generator=g)
        return {"images": images, "captions": torch.stack(caps).to(self.device),
                "lengths": torch.tensor(lens), "other": other.to(self.device), "coins": coins,
                "eps": eps.to(self.device), "class_ids": data.class_ids[index].to(self.device)}

    def train_step(self, batch: dict[str, Tensor]) -> Tensor:
        """One D step and one G step; returns the losses ``(len(LOSS_NAMES),)`` detached,
        on the device (no host sync)."""
        cfg = self.config
        real = batch["images"]
        with torch.no_grad():
            words, own = self.text_encoder(batch["captions"], batch["lengths"])  # (B, D, T), (B, D)
        own = own.float()
        other = own[batch["other"]]  # (B, D): another image's caption
        relevant, matched = relevant_sentences(own, other, batch["coins"], cfg.p_match)

        # 1. fake, 2. D step
        with self._autocast():
            fake, mu, log_sigma = self.G(real, relevant, batch["eps"])  # (B, 3, s, s)
            real_features = self.D.features(real)
            logit_real = self.D.logits(real_features, own)
            logit_mismatch = self.D.logits(real_features, other)
            logit_fake = self.D(fake.detach(), relevant)
        d = discriminator_loss(logit_real, logit_mismatch, logit_fake)
        self.opt_d.zero_grad(set_to_none=True)
        d.total.backward()
        self.opt_d.step()

        # 3. G step (D's weights need no gradients here)
        self.D.requires_grad_(False)
        with self._autocast():
            logit_g = self.D(fake, relevant)
        recon = (reconstruction_loss(fake, real, matched) if cfg.recon_weight > 0
                 else torch.zeros((), device=self.device))
        gl = generator_loss(logit_g, mu, log_sigma, cfg.kl_weight, recon, cfg.recon_weight)
        g_damsm = torch.zeros((), device=self.device)
        if self.image_encoder is not None:  # optional, not SISGAN: DAMSM(edit, relevant caption)
            whose = torch.where(matched, torch.arange(len(own), device=self.device),
                                batch["other"])  # (B,) the image whose caption is relevant
            with self._autocast():
                regions, codes = self.image_encoder(resize_for_encoder(fake,
                                                                       cfg.damsm_image_size))
            g_damsm = damsm_loss(regions.float(), codes.float(), words[whose].float(), relevant,
                                 batch["lengths"].to(self.device)[whose],
                                 batch["class_ids"][whose]).total
        g_total = gl.total + cfg.damsm_weight * g_damsm
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self.opt_g.step()
        self.D.requires_grad_(True)

        with torch.no_grad():
            probs = [torch.sigmoid(x.float()).mean() for x in (logit_real, logit_mismatch,
                                                               logit_fake)]
        return torch.stack([d.total, d.real, d.mismatch, d.fake, g_total, gl.adversarial,
                            gl.kl, gl.reconstruction, g_damsm, *probs]).detach().float()

    # ------------------------------------------------------------------ the loop
    def fit(self, epochs: int | None = None, stop_after: int | None = None,
            progress_bar: bool = True) -> TrainResult:
        """Train until ``epochs`` (default ``config.epochs``) epochs are complete.

        Continues from the current counters (after :meth:`load`, from the checkpoint).
        ``stop_after`` stops once ``step`` reaches it (like an interruption: checkpoint,
        then return). Ctrl-C / SIGTERM save a checkpoint and return with ``interrupted``.
        """
        epochs = self.config.epochs if epochs is None else epochs
        total = epochs * self.steps_per_epoch
        bar = progress(None, total=total, initial=min(self.step, total), desc="SISGAN",
                       **({} if progress_bar else {"disable": True}))
        interrupted = False
        self.G.train()
        self.D.train()
        with stop_on_signals() as flag:
            while self.epoch < epochs and not interrupted:
                for group in (*self.opt_g.param_groups, *self.opt_d.param_groups):
                    group["lr"] = self.config.lr_at(self.epoch)
                while self.step_in_epoch < self.steps_per_epoch:
                    losses = self.train_step(self.batch(self.epoch, self.step_in_epoch))
                    self._loss_sum += losses
                    self._loss_count += 1
                    self.step += 1
                    self.step_in_epoch += 1
                    bar.update(1)
                    if self.step % self.config.log_every == 0:
                        self._flush_log(bar)
                    if bool(flag) or (stop_after is not None and self.step >= stop_after):
                        interrupted = True
                        break
                if interrupted:
                    break
                self.epoch += 1
                self.step_in_epoch = 0
                self._flush_log(bar)
                self.write_samples()
                if self.checkpoint_path is not None:
                    self.save()
            if interrupted:
                self._flush_log(bar)
                if self.checkpoint_path is not None:
                    self.save()
        bar.close()
        return self.result(trained=True, interrupted=interrupted)

    def result(self, trained: bool, interrupted: bool = False) -> TrainResult:
        log = {k: [float(r[k]) for r in self.log_rows] for k in
               (self.log_rows[0] if self.log_rows else {})}
        files = sorted((self.run_dir / "samples").glob("epoch_*.png")) if self.run_dir else []
        return TrainResult(trained, interrupted, self.step, self.epoch, log, files)

    def _flush_log(self, bar) -> None:
        """Average the losses since the last row (one host sync) and append a log row."""
        if self._loss_count == 0:
            return
        means = (self._loss_sum / self._loss_count).tolist()
        self._loss_sum.zero_()
        self._loss_count = 0
        row = {"step": float(self.step),
               "epoch": self.epoch + self.step_in_epoch / max(self.steps_per_epoch, 1),
               **{k: round(v, 6) for k, v in zip(LOSS_NAMES, means)}}
        self.log_rows.append(row)
        bar.set_postfix(D=f"{row['d_loss']:.3f}", G=f"{row['g_adv']:.3f}",
                        p_mis=f"{row['p_mismatch']:.2f}", refresh=False)

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(self, sources: Tensor | None = None,
               captions: Sequence[str] | None = None) -> Tensor:
        """The grid's edits: ``(K, 1 + M, 3, s, s)``, column 0 the sources, column ``1 + j``
        the sources edited with caption ``j`` (eval mode, mean augmentation code)."""
        sources = self.sample_sources if sources is None else sources.float().cpu()
        captions = self.sample_captions if captions is None else list(captions)
        cols = [sources]
        for caption in captions:
            cols.append(manipulate(self.G, self.text_encoder, self.data.vocab, sources,
                                   [caption] * len(sources)))
        return torch.stack(cols, 1)

    def write_samples(self) -> Path | None:
        """``samples/epoch_NNN.png``: rows = sources, columns = source then each caption."""
        if self.run_dir is None:
            return None
        from t2ilib.viz import save_grid

        grid = self.sample()  # (K, 1 + M, 3, s, s)
        return save_grid(grid.flatten(0, 1), self.run_dir / "samples" /
                         f"epoch_{self.epoch:03d}.png", ncol=grid.shape[1])


# ---------------------------------------------------------------------- using a generator

@torch.no_grad()
def manipulate(generator: Generator, text_encoder: TextEncoder, vocab: Vocabulary,
               images: Tensor, captions: Sequence[str], seed: int | None = None) -> Tensor:
    """Edit ``images`` ``(B, 3, S, S)`` in [-1, 1] to match ``captions`` (one per image, or one
    for all): returns ``(B, 3, S, S)`` in [-1, 1] on the CPU.

    Captions are tokenized like :func:`t2ilib.train.ssagan.generate` does: unknown words are
    dropped with a ``UserWarning``, and a caption with no known word raises ``ValueError``.
    ``seed=None`` uses the mean augmentation code (``eps = 0``: deterministic); an integer
    draws ``eps ~ N(0, I)`` from a generator with that seed. Both models run in eval mode
    (and are put back in their previous mode).
    """
    captions = list(captions)
    if isinstance(images, Tensor) and images.dim() == 3:
        raise ValueError("images must be a batch (B, 3, S, S); add a batch dimension")
    if len(captions) == 1 and images.shape[0] > 1:
        captions = captions * images.shape[0]
    if len(captions) != images.shape[0]:
        raise ValueError(f"{len(captions)} captions for {images.shape[0]} images")
    if images.dtype == torch.uint8:
        raise ValueError("images must be float in [-1, 1], not uint8 (use x / 127.5 - 1)")
    device = next(generator.parameters()).device
    ids, lengths = encode_captions(vocab, captions)
    c = generator.config.condition_dim
    eps = (torch.zeros(len(captions), c) if seed is None else
           torch.randn(len(captions), c, generator=torch.Generator().manual_seed(seed)))
    modes = generator.training, text_encoder.training
    generator.eval()
    text_encoder.eval()
    try:
        _, sentence = text_encoder(ids.to(device), lengths)
        out, _, _ = generator(images.float().to(device), sentence.float(), eps.to(device))
    finally:
        generator.train(modes[0])
        text_encoder.train(modes[1])
    return out.float().cpu()


def load_sisgan(path: str | os.PathLike[str], device: str | torch.device = "cpu"
                ) -> tuple[Generator, TextEncoder, Vocabulary, dict[str, Any]]:
    """Rebuild G and the frozen text encoder from a SISGAN training checkpoint.

    Returns ``(generator, text_encoder, vocabulary, meta)``, both models in eval mode on
    ``device``; ``meta`` holds ``model_config``, ``train_config``, ``data``, ``epoch``,
    ``step`` and the loss ``log`` (a list of row dicts). Raises ``FileNotFoundError`` for a
    missing file and :class:`~t2ilib.train.checkpoint.CheckpointMismatch` for a file that is
    not a SISGAN checkpoint.
    """
    device = pick_device(str(device))
    payload = load_torch(path, map_location="cpu")
    if (not isinstance(payload, dict) or "extra" not in payload or "state" not in payload
            or payload.get("config", {}).get("format") != FORMAT_TAG):
        raise CheckpointMismatch(f"{path} is not a SISGAN training checkpoint")
    extra = payload["extra"]
    model_config = dict(extra["model_config"])
    g = Generator(SISGANConfig(**model_config), pretrained=False)
    g.load_state_dict(payload["state"]["G"])
    te = TextEncoder(TextEncoderConfig(**extra["text_encoder_config"]))
    te.load_state_dict(payload["state"]["text_encoder"])
    meta = {"model_config": model_config, "train_config": extra["train_config"],
            "data": extra["data"], "epoch": int(payload["epoch"]), "step": int(payload["step"]),
            "log": extra["log"], "path": str(path)}
    return (g.to(device).eval(), te.to(device).eval(), Vocabulary.from_words(extra["vocab_words"]),
            meta)


def images_from_files(paths: Sequence[str | os.PathLike[str]], size: int) -> Tensor:
    """Read image files as a batch ``(B, 3, size, size)`` in [-1, 1]: RGB, centre square
    crop, bilinear resize. Raises ``ValueError`` naming a file that is not an image."""
    from PIL import Image, UnidentifiedImageError

    out = []
    for p in paths:
        try:
            with Image.open(p) as im:
                im = im.convert("RGB")
        except UnidentifiedImageError as err:
            raise ValueError(f"{p} is not an image file PIL can read") from err
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size),
                                                                  Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)  # (3, size, size)
        out.append(x.float() / 127.5 - 1.0)
    return torch.stack(out)


# ---------------------------------------------------------------------- the ToyBirds recipe

#: The course's CPU model for ToyBirds (notebook 09 defaults): the paper's layout, narrower,
#: with TAGAN's encoder-to-decoder skip.
TOYBIRDS_MODEL = SISGANConfig(image_size=64, ngf=16, ndf=32, skip=True)
#: Its training settings (notebook 09 defaults; a few CPU minutes). Deviations from SISGAN that
#: make so short a run learn something (notebook 09 explains them): lr 1e-3 (paper 2e-4), L1
#: reconstruction 10 (SISGAN none), KL weight 0.1 (paper 1), a DAMSM loss on the edits (0.1).
TOYBIRDS_TRAIN = SISGANTrainConfig(epochs=4, batch_size=32, lr=1e-3, recon_weight=10.0,
                                   kl_weight=0.1, damsm_weight=0.1,
                                   damsm_image_size=TOYBIRDS_DAMSM_SIZE, seed=0, log_every=10)
#: Smoke-test sizes (seconds).
SMOKE_MODEL = SISGANConfig(image_size=64, condition_dim=8, ngf=4, ndf=4, n_residual=1,
                           d_text_dim=8)
SMOKE_TRAIN = SISGANTrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=2, log_every=1,
                                recon_weight=10.0, kl_weight=0.1, damsm_weight=0.1,
                                damsm_image_size=TOYBIRDS_DAMSM_SIZE, seed=0)


def default_checkpoint(dataset: str = "toybirds", image_size: int = 64) -> Path:
    """``checkpoint_root()/sisgan_<dataset><image_size>.pt``."""
    return checkpoint_root() / f"sisgan_{dataset}{image_size}.pt"


def run_checkpoint(dataset: str, config: SISGANTrainConfig, model_config: SISGANConfig) -> Path:
    """The checkpoint of a run: :func:`default_checkpoint` for the ToyBirds defaults
    (:data:`TOYBIRDS_TRAIN`, :data:`TOYBIRDS_MODEL`; the demo finds it there), else
    ``sisgan_<dataset><size>_<hash of the settings>.pt``, so runs with other settings do not
    collide. Run-only fields (``epochs``, ``log_every``, ``amp``) do not count."""
    def key(c: SISGANTrainConfig) -> dict[str, Any]:
        return {k: v for k, v in asdict(c).items() if k not in RUN_ONLY_FIELDS}

    if (dataset == "toybirds" and key(config) == key(TOYBIRDS_TRAIN)
            and model_config == TOYBIRDS_MODEL):
        return default_checkpoint(dataset, model_config.image_size)
    blob = json.dumps({"train": key(config), "model": asdict(model_config)}, sort_keys=True)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:8]
    return checkpoint_root() / f"sisgan_{dataset}{model_config.image_size}_{digest}.pt"


def toybirds_trainer(device: str | torch.device = "auto", smoke: bool = False,
                     config: SISGANTrainConfig | None = None,
                     model_config: SISGANConfig | None = None,
                     checkpoint: str | os.PathLike[str] | None = None,
                     run_dir: str | os.PathLike[str] | None = None,
                     root: str | os.PathLike[str] | None = None) -> SISGANTrainer:
    """The notebook-09 trainer on ToyBirds (64 px, native images, notebook 02's DAMSM, loaded
    or pretrained by :func:`t2ilib.train.damsm.load_or_train_toybirds_damsm`; in smoke mode a
    one-epoch DAMSM in a temporary file).

    Defaults: :data:`TOYBIRDS_TRAIN`, :data:`TOYBIRDS_MODEL` (or the ``SMOKE_*`` ones with
    ``smoke``), the checkpoint :func:`default_checkpoint` (smoke: a temporary file), ToyBirds
    in ``data_root()`` (``toybirds_smoke``: 48 + 16 birds, the smoke set other notebooks
    share).
    """
    from t2ilib.data.toybirds import ensure_toybirds
    from t2ilib.train.damsm import load_or_train_toybirds_damsm

    dev = pick_device(str(device))
    if root is None:
        root = (ensure_toybirds(data_root() / "toybirds_smoke", n_train=48, n_test=16) if smoke
                else ensure_toybirds(data_root() / "toybirds"))
    data = load_native_split(root, "train", name="toybirds")
    config = config or (SMOKE_TRAIN if smoke else TOYBIRDS_TRAIN)
    model_config = model_config or (SMOKE_MODEL if smoke else TOYBIRDS_MODEL)
    damsm_args = ({"epochs": 1, "batch_size": 8, "cnn_width": 8,
                   "path": Path(tempfile.mkdtemp()) / "damsm_smoke.pt"} if smoke else {})
    text_encoder, image_encoder, _ = load_or_train_toybirds_damsm(root, device=dev, **damsm_args)
    if text_encoder.config.hidden_dim != model_config.sentence_dim:
        model_config = replace(model_config, sentence_dim=text_encoder.config.hidden_dim)
    if checkpoint is None:  # smoke runs keep their tiny models out of data/checkpoints
        checkpoint = (Path(tempfile.mkdtemp()) / "sisgan_smoke.pt" if smoke
                      else default_checkpoint("toybirds", data.image_size))
    return SISGANTrainer(config, model_config, text_encoder, data, device=dev,
                         checkpoint=checkpoint, run_dir=run_dir, image_encoder=image_encoder)


@dataclass
class SISGANRun:
    """What :func:`load_or_train_sisgan` returns: the trained models and how they came about."""

    generator: Generator  # eval mode
    text_encoder: TextEncoder  # frozen, eval mode
    vocab: Vocabulary
    result: TrainResult
    trainer: SISGANTrainer
    path: Path | None  # the checkpoint

    @property
    def trained(self) -> bool:
        return self.result.trained


def load_or_train_sisgan(trainer: SISGANTrainer | None = None, *, retrain: bool = False,
                         epochs: int | None = None, stop_after: int | None = None,
                         progress_bar: bool = True, device: str | torch.device = "auto",
                         smoke: bool = False) -> SISGANRun:
    """Reuse the trainer's checkpoint when it matches, else train (notebooks 09 and 10).

    * a finished matching checkpoint (``epochs`` done): load it, skip training;
    * an unfinished one: resume from it (exactly);
    * ``retrain=True``: ignore it (and the old sample grids) and start afresh.

    ``trainer=None`` builds the ToyBirds default with :func:`toybirds_trainer` (``device``,
    ``smoke``): its checkpoint is ``checkpoint_root()/sisgan_toybirds64.pt``. A checkpoint of
    another configuration, text encoder or vocabulary raises
    :class:`~t2ilib.train.checkpoint.CheckpointMismatch` (pass ``retrain=True`` or another
    checkpoint path).
    """
    if trainer is None:
        trainer = toybirds_trainer(device, smoke=smoke)
    epochs = trainer.config.epochs if epochs is None else epochs
    path = trainer.checkpoint_path
    result = None
    if retrain:
        if trainer.run_dir is not None:
            for old in sorted((trainer.run_dir / "samples").glob("epoch_*.png")):
                old.unlink(missing_ok=True)
    elif path is not None and path.is_file():
        trainer.load(path)
        if trainer.epoch >= epochs:
            result = trainer.result(trained=False)
    if result is None:
        result = trainer.fit(epochs, stop_after=stop_after, progress_bar=progress_bar)
    trainer.G.eval()
    return SISGANRun(trainer.G, trainer.text_encoder, trainer.data.vocab, result, trainer, path)
