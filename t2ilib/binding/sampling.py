"""Loading any SSA-GAN checkpoint, with or without notebook 11's word-level parts."""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.nn as nn

from t2ilib.binding.word_ssacn import WordGenerator
from t2ilib.ssagan.model import Generator, SSAGANConfig
from t2ilib.ssagan.sampling import load_generator
from t2ilib.text.encoder import TextEncoder
from t2ilib.text.vocab import Vocabulary

__all__ = ["build_generator", "load_any_generator"]


def build_generator(config: SSAGANConfig, meta: dict[str, Any]) -> nn.Module:
    """The G a checkpoint's ``meta`` describes: :class:`WordGenerator` when its ``binding``
    section asks for the word-attended G, SSA-GAN's :class:`Generator` otherwise."""
    binding = meta.get("binding") or {}
    if binding.get("word_generator"):
        return WordGenerator(config, int(binding["hidden_dim"]), int(binding["key_dim"]))
    return Generator(config)


def load_any_generator(path: str | os.PathLike[str], device: str | torch.device = "cpu",
                       use_ema: bool = True
                       ) -> tuple[nn.Module, TextEncoder, Vocabulary, dict[str, Any]]:
    """:func:`t2ilib.ssagan.sampling.load_generator` for SSA-GAN and its word-level variants:
    ``(G, text_encoder, vocabulary, payload)`` in eval mode on ``device``."""
    return load_generator(path, device, use_ema, build=build_generator)
