"""Using a trained SSA-GAN: rebuild G and the text encoder from a checkpoint, draw images."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.engine.checkpoint import (
    CheckpointMismatch,
    checkpoint_file,
    config_from,
    load_weights,
    read_checkpoint,
    stored_vocabulary,
)
from t2ilib.runtime import pick_device
from t2ilib.ssagan.model import Generator, SSAGANConfig
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary, captions_to_ids

__all__ = ["BuildGenerator", "load_generator", "generate", "generate_from_ids"]


@torch.no_grad()
def generate_from_ids(g: Generator, text_encoder: TextEncoder, ids: Tensor, lengths: Tensor,
                      z: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Images ``(B, 3, R, R)`` in [-1, 1] and masks (CPU) for token ids ``(B, T)``, lengths
    ``(B,)`` and noise ``(B, nz)``; both models run in eval mode and get their modes back."""
    device = next(g.parameters()).device
    modes = g.training, text_encoder.training
    g.eval()
    text_encoder.eval()
    try:
        words, sentence = text_encoder(ids.to(device), lengths)
        if getattr(g, "reads_words", False):  # the word-attended G of t2ilib.binding
            images, masks = g(z.to(device), sentence, words, lengths)
        else:
            images, masks = g(z.to(device), sentence)
    finally:
        g.train(modes[0])
        text_encoder.train(modes[1])
    return images.float().cpu(), [m.float().cpu() for m in masks]


#: Builds G from its config and the checkpoint's ``meta`` (word-level variants: t2ilib.binding).
BuildGenerator = Callable[[SSAGANConfig, dict[str, Any]], nn.Module]


def load_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                   use_ema: bool = True, build: BuildGenerator | None = None
                   ) -> tuple[Generator, TextEncoder, Vocabulary, dict[str, Any]]:
    """Rebuild G (the EMA copy if saved and ``use_ema``) and the text encoder from an SSA-GAN
    checkpoint. Returns ``(G, text_encoder, vocabulary, payload)``, in eval mode on ``device``.
    A checkpoint of notebook 11's word-level variants needs their ``build``
    (:func:`t2ilib.binding.sampling.load_any_generator` passes it).
    """
    device = pick_device(str(device))
    path = checkpoint_file(path)
    payload = read_checkpoint(path, "ssagan")
    meta, state = payload["meta"], payload["state"]
    if build is None and "binding" in meta:
        raise CheckpointMismatch(f"{path} holds a word-level SSA-GAN (notebook 11): load it "
                                 "with t2ilib.binding.sampling.load_any_generator")
    g_config = config_from(SSAGANConfig, meta.get("model_config"), path, "model config")
    te_config = config_from(TextEncoderConfig, meta.get("text_encoder_config"), path,
                            "text encoder config")
    vocab = stored_vocabulary(payload, path, te_config.vocab_size)  # all checked: now build
    g = Generator(g_config) if build is None else build(g_config, meta)
    te = TextEncoder(te_config)
    name = "G_ema" if use_ema and "G_ema" in state else "G"
    load_weights(g, state.get(name), path, name)
    load_weights(te, state.get("text_encoder"), path, "text encoder")
    return g.to(device).eval(), te.to(device).eval(), vocab, payload


def generate(g: Generator, text_encoder: TextEncoder, vocab: Vocabulary, captions: Sequence[str],
             z: Tensor | None = None, seed: int = 0) -> tuple[Tensor, list[Tensor]]:
    """Images ``(B, 3, R, R)`` in [-1, 1] (CPU) and masks for user captions.

    ``z`` ``(B, nz)`` defaults to noise drawn from a generator seeded with ``seed``.
    """
    ids, lengths = captions_to_ids(vocab, captions)
    if z is None:
        z = torch.randn(len(captions), g.config.nz, generator=torch.Generator().manual_seed(seed))
    return generate_from_ids(g, text_encoder, ids, lengths, z)
