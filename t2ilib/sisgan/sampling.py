"""Using a trained SISGAN: edit images to match captions, rebuild G from its run's checkpoint.

``python -m t2ilib manipulate`` and the demo of notebook 10 call these; the checkpoint is the
``checkpoint.pt`` of a run folder written by :mod:`t2ilib.sisgan.train` (G, D, their
optimisers, the frozen text encoder, the vocabulary), so :func:`load_sisgan` needs nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from t2ilib.engine.checkpoint import (
    CheckpointMismatch,
    config_from,
    load_weights,
    read_checkpoint,
    require,
    stored_vocabulary,
)
from t2ilib.io import open_image
from t2ilib.runtime import pick_device
from t2ilib.sisgan.model import Generator, SISGANConfig
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary, captions_to_ids
from t2ilib.viz import read_loss_csv

__all__ = ["manipulate", "load_sisgan", "images_from_files"]


@torch.no_grad()
def manipulate(generator: Generator, text_encoder: TextEncoder, vocab: Vocabulary,
               images: Tensor, captions: Sequence[str], seed: int | None = None) -> Tensor:
    """Edit ``images`` ``(B, 3, S, S)`` in [-1, 1] to match ``captions`` (one per image, or one
    for all): returns ``(B, 3, S, S)`` in [-1, 1] on the CPU.

    Captions are tokenized by :func:`~t2ilib.text.vocab.captions_to_ids`: unknown words are
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
    ids, lengths = captions_to_ids(vocab, captions)  # (B, T), (B,)
    c = generator.config.condition_dim
    eps = (torch.zeros(len(captions), c) if seed is None else
           torch.randn(len(captions), c, generator=torch.Generator().manual_seed(seed)))
    modes = generator.training, text_encoder.training
    generator.eval()
    text_encoder.eval()
    try:
        _, sentence = text_encoder(ids.to(device), lengths)  # (B, D)
        out, _, _ = generator(images.float().to(device), sentence.float(), eps.to(device))
    finally:
        generator.train(modes[0])
        text_encoder.train(modes[1])
    return out.float().cpu()


def load_sisgan(path: str | os.PathLike[str], device: str | torch.device = "cpu"
                ) -> tuple[Generator, TextEncoder, Vocabulary, dict[str, Any]]:
    """Rebuild G and the frozen text encoder from a SISGAN run's ``checkpoint.pt``.

    Returns ``(generator, text_encoder, vocabulary, meta)``, both models in eval mode on
    ``device``; ``meta`` holds ``model_config``, ``train_config``, ``data``, ``epoch``, ``step``,
    ``path`` and the loss ``log`` (columns of the run folder's ``losses.csv``; empty when there
    is none). Raises ``FileNotFoundError`` for a missing file and
    :class:`~t2ilib.engine.checkpoint.CheckpointMismatch` for a file that is not a SISGAN
    checkpoint.
    """
    device = pick_device(str(device))
    try:
        payload = read_checkpoint(path, "sisgan")
    except CheckpointMismatch as err:
        raise CheckpointMismatch(f"{path} is not a SISGAN training checkpoint: {err}") from err
    meta, state = payload["meta"], payload["state"]
    model_config = dict(meta.get("model_config") or {})
    g_config = config_from(SISGANConfig, model_config, path, "model config")
    te_config = config_from(TextEncoderConfig, meta.get("text_encoder_config"), path,
                            "text encoder config")
    vocab = stored_vocabulary(payload, path, te_config.vocab_size)  # all checked: now build
    g, te = Generator(g_config, pretrained=False), TextEncoder(te_config)
    load_weights(g, state.get("G"), path, "G")
    load_weights(te, state.get("text_encoder"), path, "text encoder")
    log_file = Path(path).parent / "losses.csv"
    info = {"model_config": model_config,
            "train_config": require(payload, path, "meta", "train_config", dict),
            "data": require(payload, path, "meta", "data"),
            "epoch": require(payload, path, "counters", "epoch", int),
            "step": require(payload, path, "counters", "step", int),
            "log": read_loss_csv(log_file) if log_file.is_file() else {}, "path": str(path)}
    return (g.to(device).eval(), te.to(device).eval().requires_grad_(False),
            vocab, info)


def images_from_files(paths: Sequence[str | os.PathLike[str]], size: int) -> Tensor:
    """Read image files as a batch ``(B, 3, size, size)`` in [-1, 1]: RGB, centre square
    crop, bilinear resize. A file that is not a whole image raises
    :class:`~t2ilib.io.BadFileError` (a ``ValueError``) naming it."""
    from PIL import Image

    out = []
    for p in paths:
        im = open_image(p, "Give a JPEG or PNG image file")
        w, h = im.size
        side = min(w, h)
        left, top = (w - side) // 2, (h - side) // 2
        im = im.crop((left, top, left + side, top + side)).resize((size, size),
                                                                  Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.array(im, dtype=np.uint8)).permute(2, 0, 1)  # (3, size, size)
        out.append(x.float() / 127.5 - 1.0)
    return torch.stack(out)
