r"""DAMSM pretraining: fit the text and image encoders to each other (AttnGAN, §3.4).

Before any GAN is trained, the text encoder and the image encoder are trained together so
that matching captions and images score high under the DAMSM losses
(:mod:`t2ilib.losses.damsm`):

.. math::

    \mathcal{L}_{DAMSM} = L^w_0 + L^w_1 + L^s_0 + L^s_1 .

The recipe follows AttnGAN's ``pretrain_DAMSM.py`` (the same as SSA-GAN's released encoders):

* Adam, learning rate :math:`2\cdot10^{-3}`, betas (0.5, 0.999), over the text encoder and
  the image encoder's *trainable* parameters (for Inception: the two projections only);
* learning rate :math:`\times 0.98` after every epoch, not below :math:`1/10` of the start
  (AttnGAN re-created the optimiser each epoch, which also reset Adam's moments; we keep
  one optimiser and only change its learning rate);
* gradient-norm clipping at 0.25 on the text encoder (AttnGAN clips the RNN only);
* same-class pairs are not used as negatives (class ids from the batch).

Checkpoints are plain dicts written atomically with :func:`t2ilib.io.save_torch` and read
back with ``weights_only=True``; :func:`load_or_train_damsm` skips training when a
checkpoint with the same *fingerprint* (encoder configs, training config, plus whatever the
caller adds, such as the data set) exists.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from t2ilib.io import load_torch, save_torch
from t2ilib.losses.damsm import SSAGAN_GAMMAS, DAMSMGammas, DAMSMLosses, damsm_loss
from t2ilib.models.image_encoder import (
    InceptionEncoder,
    InceptionEncoderConfig,
    SmallCNNConfig,
    SmallCNNEncoder,
)
from t2ilib.runtime import checkpoint_root, progress
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

__all__ = [
    "DAMSMTrainConfig",
    "DAMSMRun",
    "CHECKPOINT_FORMAT",
    "encode_batch",
    "damsm_batch_losses",
    "train_damsm",
    "evaluate_damsm",
    "image_encoder_spec",
    "build_image_encoder",
    "damsm_fingerprint",
    "save_damsm",
    "load_damsm",
    "load_or_train_damsm",
    "default_checkpoint",
    "load_or_train_toybirds_damsm",
    "TOYBIRDS_DAMSM_SIZE",
    "resize_for_encoder",
    "trained_image_size",
]

CHECKPOINT_FORMAT = "t2ilib.damsm.v1"
#: Side of the images notebook 02's ToyBirds DAMSM is trained on (the generator's 32 px).
TOYBIRDS_DAMSM_SIZE = 32


@dataclass(frozen=True)
class DAMSMTrainConfig:
    """DAMSM pretraining settings (defaults: AttnGAN's ``cfg/DAMSM/bird.yml``, SSA-GAN's gammas)."""

    epochs: int = 10
    lr: float = 2e-3
    lr_decay: float = 0.98  # multiply the learning rate by this after every epoch ...
    min_lr_ratio: float = 0.1  # ... but not below lr * min_lr_ratio
    betas: tuple[float, float] = (0.5, 0.999)
    grad_clip: float = 0.25  # max gradient norm of the text encoder's parameters
    gammas: DAMSMGammas = SSAGAN_GAMMAS
    max_steps_per_epoch: int | None = None  # cut every epoch short (smoke runs)


@dataclass
class DAMSMRun:
    """What :func:`load_or_train_damsm` returns."""

    history: list[
        dict[str, float]
    ]  # one dict per epoch: epoch, lr, steps, w0, w1, s0, s1, total, seconds
    trained: bool  # False when a matching checkpoint was loaded
    path: Path
    fingerprint: dict[str, Any] = field(default_factory=dict)


def encode_batch(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    batch: tuple,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """Run both encoders on a ``(images, captions, lengths, class_ids, keys)`` batch.

    Returns ``regions (B, D, h, w)``, ``codes (B, D)``, ``words (B, D, T)``,
    ``sentences (B, D)``, ``lengths (B,)`` and ``class_ids (B,)``, all on ``device``.
    """
    images, captions, lengths, class_ids = batch[0], batch[1], batch[2], batch[3]
    words, sentences = text_encoder(captions.to(device), lengths)
    regions, codes = image_encoder(images.to(device))
    return {
        "regions": regions,
        "codes": codes,
        "words": words,
        "sentences": sentences,
        "lengths": torch.as_tensor(lengths).to(device),
        "class_ids": torch.as_tensor(class_ids).to(device),
    }


def damsm_batch_losses(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    batch: tuple,
    gammas: DAMSMGammas = SSAGAN_GAMMAS,
    device: torch.device | str = "cpu",
) -> DAMSMLosses:
    """The four DAMSM losses of one ``(images, captions, lengths, class_ids, keys)`` batch."""
    f = encode_batch(text_encoder, image_encoder, batch, device)
    return damsm_loss(
        f["regions"], f["codes"], f["words"], f["sentences"], f["lengths"], f["class_ids"], gammas
    )


def _epoch_lr(config: DAMSMTrainConfig, epoch: int) -> float:
    """Learning rate of epoch ``epoch`` (0-based)."""
    return max(config.lr * config.lr_decay**epoch, config.lr * config.min_lr_ratio)


def _steps_per_epoch(loader: Iterable, config: DAMSMTrainConfig) -> int | None:
    try:
        n = len(loader)  # type: ignore[arg-type]
    except TypeError:
        return config.max_steps_per_epoch
    return n if config.max_steps_per_epoch is None else min(n, config.max_steps_per_epoch)


def train_damsm(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    loader: Iterable[tuple],
    config: DAMSMTrainConfig = DAMSMTrainConfig(),
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Pretrain both encoders on ``loader`` (``(images, captions, lengths, class_ids, keys)``).

    The encoders are moved to ``device`` and left in train mode. Returns one dict per epoch
    with the mean losses (``w0, w1, s0, s1, total``), the learning rate, the step count and
    the wall time since the start (``seconds``).
    """
    if config.epochs < 0:
        raise ValueError(f"epochs must be >= 0, got {config.epochs}")
    text_encoder.to(device)
    image_encoder.to(device)
    text_params = [p for p in text_encoder.parameters() if p.requires_grad]
    params = text_params + [p for p in image_encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr, betas=config.betas)
    per_epoch = _steps_per_epoch(loader, config)
    bar = progress(
        None, total=None if per_epoch is None else config.epochs * per_epoch, desc="DAMSM"
    )
    history = []
    start = time.perf_counter()
    for epoch in range(config.epochs):
        lr = _epoch_lr(config, epoch)
        for group in optimizer.param_groups:
            group["lr"] = lr
        if hasattr(getattr(loader, "dataset", None), "set_epoch"):
            loader.dataset.set_epoch(epoch)  # fresh caption draws and crops per epoch
        text_encoder.train()
        image_encoder.train()
        sums = dict.fromkeys(("w0", "w1", "s0", "s1"), 0.0)
        steps = 0
        for batch in loader:
            if config.max_steps_per_epoch is not None and steps >= config.max_steps_per_epoch:
                break
            losses = damsm_batch_losses(text_encoder, image_encoder, batch, config.gammas, device)
            optimizer.zero_grad(set_to_none=True)
            losses.total.backward()
            torch.nn.utils.clip_grad_norm_(text_params, config.grad_clip)
            optimizer.step()
            for k in sums:
                sums[k] += getattr(losses, k).item()
            steps += 1
            bar.update(1)
            bar.set_postfix(epoch=epoch + 1, loss=f"{losses.total.item():.3f}", refresh=False)
        means = {k: v / max(steps, 1) for k, v in sums.items()}
        history.append(
            {
                "epoch": epoch + 1,
                "lr": lr,
                "steps": steps,
                **means,
                "total": sum(means.values()),
                "seconds": time.perf_counter() - start,
            }
        )
    bar.close()
    return history


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
    sums = dict.fromkeys(("w0", "w1", "s0", "s1"), 0.0)
    n = 0
    for i, batch in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        losses = damsm_batch_losses(text_encoder, image_encoder, batch, gammas, device)
        for k in sums:
            sums[k] += getattr(losses, k).item()
        n += 1
    if n == 0:
        raise ValueError("evaluate_damsm got no batch")
    means = {k: v / n for k, v in sums.items()}
    return {**means, "total": sum(means.values())}


def resize_for_encoder(images: torch.Tensor, size: int | None) -> torch.Tensor:
    """``(B, 3, H, W) -> (B, 3, size, size)`` bilinearly, for an image encoder trained at
    ``size`` px (``None`` or an equal size: unchanged). Differentiable, so a generator's
    DAMSM loss reaches its images through it."""
    if size is None or images.shape[-2:] == (size, size):
        return images
    return torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear",
                                           align_corners=False)


def trained_image_size(fingerprint: dict[str, Any]) -> int | None:
    """The image side a DAMSM checkpoint's fingerprint records (``extra.image_size``), if any."""
    size = (fingerprint.get("extra") or {}).get("image_size")
    return int(size) if size is not None else None


# --- Checkpoints -------------------------------------------------------------------------------

_IMAGE_ENCODERS = {
    "small_cnn": (SmallCNNEncoder, SmallCNNConfig),
    "inception": (InceptionEncoder, InceptionEncoderConfig),
}


def image_encoder_spec(image_encoder: nn.Module) -> dict[str, Any]:
    """``{"kind": ..., "config": {...}}``: what :func:`build_image_encoder` needs."""
    for kind, (cls, _) in _IMAGE_ENCODERS.items():
        if type(image_encoder).__name__ == cls.__name__:  # by name: a notebook's copy counts too
            return {"kind": kind, "config": asdict(image_encoder.config)}
    raise ValueError(
        f"unknown image encoder type {type(image_encoder).__name__}; "
        f"known: {[c.__name__ for c, _ in _IMAGE_ENCODERS.values()]}"
    )


def build_image_encoder(spec: dict[str, Any]) -> nn.Module:
    """An image encoder from :func:`image_encoder_spec`'s dict (random weights; no download)."""
    if spec.get("kind") not in _IMAGE_ENCODERS:
        raise ValueError(
            f"unknown image encoder kind {spec.get('kind')!r}; known: {list(_IMAGE_ENCODERS)}"
        )
    cls, config_cls = _IMAGE_ENCODERS[spec["kind"]]
    config = config_cls(**spec["config"])
    return cls(config, pretrained=False) if cls is InceptionEncoder else cls(config)


def _plain(obj: Any) -> Any:
    """Round-trip through JSON (tuples become lists): stored and fresh fingerprints compare."""
    return json.loads(json.dumps(obj))


def damsm_fingerprint(
    text_encoder: TextEncoder,
    image_encoder: nn.Module,
    config: DAMSMTrainConfig,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What a checkpoint must agree on to be reused: encoder configs, training config, ``extra``.

    ``extra`` holds JSON-able facts about the data (name, image size, vocabulary size or hash,
    seed...).
    """
    return _plain(
        {
            "text_encoder": asdict(text_encoder.config),
            "image_encoder": image_encoder_spec(image_encoder),
            "train": asdict(config),
            "extra": extra or {},
        }
    )


def default_checkpoint(dataset: str = "toybirds", image_size: int = TOYBIRDS_DAMSM_SIZE) -> Path:
    """Where notebook 02 saves (and later notebooks find) the pretrained DAMSM encoders:
    ``checkpoint_root()/damsm_<dataset><image_size>.pt``."""
    return checkpoint_root() / f"damsm_{dataset}{image_size}.pt"


def save_damsm(
    path: str | os.PathLike[str],
    text_encoder: TextEncoder,
    image_encoder: nn.Module,
    fingerprint: dict[str, Any] | None = None,
    history: list[dict[str, float]] | None = None,
) -> Path:
    """Write both encoders (state dicts + configs), the fingerprint and the history atomically."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "text_config": asdict(text_encoder.config),
        "image_spec": image_encoder_spec(image_encoder),
        "text_encoder": {k: v.detach().cpu() for k, v in text_encoder.state_dict().items()},
        "image_encoder": {k: v.detach().cpu() for k, v in image_encoder.state_dict().items()},
        "fingerprint": _plain(fingerprint or {}),
        "history": _plain(history or []),
    }
    return save_torch(ckpt, path)


def _read_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    ckpt = load_torch(path)
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a {CHECKPOINT_FORMAT} checkpoint")
    return ckpt


def load_damsm(
    path: str | os.PathLike[str], device: torch.device | str = "cpu"
) -> tuple[TextEncoder, nn.Module, dict[str, Any]]:
    """Rebuild both encoders from a checkpoint (eval mode, on ``device``).

    Returns ``(text_encoder, image_encoder, info)`` with ``info`` = ``{"fingerprint", "history"}``.
    """
    ckpt = _read_checkpoint(path)
    text_encoder = TextEncoder(TextEncoderConfig(**ckpt["text_config"]))
    image_encoder = build_image_encoder(ckpt["image_spec"])
    text_encoder.load_state_dict(ckpt["text_encoder"])
    image_encoder.load_state_dict(ckpt["image_encoder"])
    info = {"fingerprint": ckpt["fingerprint"], "history": ckpt["history"]}
    return text_encoder.to(device).eval(), image_encoder.to(device).eval(), info


def load_or_train_damsm(
    path: str | os.PathLike[str],
    text_encoder: TextEncoder,
    image_encoder: nn.Module,
    loader: Iterable[tuple],
    config: DAMSMTrainConfig = DAMSMTrainConfig(),
    *,
    extra: dict[str, Any] | None = None,
    retrain: bool = False,
    device: torch.device | str = "cpu",
) -> DAMSMRun:
    """Load the encoders' weights from a matching checkpoint at ``path``, else train and save.

    "Matching" means an equal :func:`damsm_fingerprint` (encoder configs, ``config`` and
    ``extra``). ``retrain=True`` always trains (and overwrites ``path``). The encoders are
    updated in place and left on ``device`` in eval mode.
    """
    path = Path(path)
    fingerprint = damsm_fingerprint(text_encoder, image_encoder, config, extra)
    if path.is_file() and not retrain:
        ckpt = _read_checkpoint(path)
        if ckpt["fingerprint"] == fingerprint:
            text_encoder.load_state_dict(ckpt["text_encoder"])
            image_encoder.load_state_dict(ckpt["image_encoder"])
            text_encoder.to(device).eval()
            image_encoder.to(device).eval()
            return DAMSMRun(ckpt["history"], trained=False, path=path, fingerprint=fingerprint)
    history = train_damsm(text_encoder, image_encoder, loader, config, device)
    save_damsm(path, text_encoder, image_encoder, fingerprint, history)
    text_encoder.eval()
    image_encoder.eval()
    return DAMSMRun(history, trained=True, path=path, fingerprint=fingerprint)


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
    exactly as that notebook does (about 5 minutes on 2 CPU cores) and saved there.

    Later notebooks (training, evaluation, SISGAN, the demo) call this so they share one pair of
    encoders. Returns ``(text_encoder, image_encoder, run)``, both encoders in eval mode.
    """
    from torch.utils.data import DataLoader

    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.cub import collate_sorted
    from t2ilib.runtime import seed_everything

    root = Path(root)
    train_set = CachedCUBDataset(root, "train", image_size=image_size)
    seed_everything(seed)
    text_encoder = TextEncoder(TextEncoderConfig(vocab_size=len(train_set.vocab), dropout=0.0))
    image_encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=256, width=cnn_width))
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, drop_last=True,
                        collate_fn=collate_sorted, generator=torch.Generator().manual_seed(seed))
    extra = {"data": "toybirds", "n_train": len(train_set), "image_size": image_size,
             "batch_size": batch_size, "seed": seed}
    run = load_or_train_damsm(path or default_checkpoint("toybirds", image_size), text_encoder,
                              image_encoder, loader, DAMSMTrainConfig(epochs=epochs, lr=2e-3),
                              extra=extra, retrain=retrain, device=device)
    return text_encoder, image_encoder, run
