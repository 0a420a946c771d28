r"""Training SSA-GAN with word-level parts, on the course's one engine.

:class:`BindingTask` is :class:`~t2ilib.ssagan.train.SSAGANTask` with the networks a
:class:`~t2ilib.binding.step.BindingConfig` asks for (the word-attended G, the word-level D),
the colour-swapped captions in each batch, and :func:`~t2ilib.binding.step.binding_train_step`
as its step. Its checkpoints are SSA-GAN checkpoints (kind ``"ssagan"``) whose ``meta`` and
fingerprint also hold the binding config; :func:`~t2ilib.binding.sampling.load_any_generator`
rebuilds either kind of G from them.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn as nn

from t2ilib.binding.step import BINDING_LOSS_NAMES, BindingBatch, BindingConfig, binding_train_step
from t2ilib.binding.swaps import colour_word_ids, swap_colour_words
from t2ilib.binding.word_d import WordDiscriminator
from t2ilib.binding.word_ssacn import WordGenerator
from t2ilib.data.trainset import TrainData
from t2ilib.engine import ddp
from t2ilib.engine.loop import Engine
from t2ilib.runtime import step_generator
from t2ilib.ssagan.model import Discriminator
from t2ilib.ssagan.recipes import Recipe
from t2ilib.ssagan.train import SSAGANTask
from t2ilib.text.encoder import TextEncoder

__all__ = ["BindingTask", "binding_engine"]


class BindingTask(SSAGANTask):
    """An :class:`~t2ilib.ssagan.train.SSAGANTask` with word-level parts (``binding``); the
    other arguments are SSAGANTask's."""

    loss_names = BINDING_LOSS_NAMES

    def __init__(self, recipe: Recipe, binding: BindingConfig, text_encoder: TextEncoder,
                 image_encoder: nn.Module, data: TrainData, device: str | torch.device = "auto",
                 sample_captions: Sequence[str] | None = None, dist: ddp.DistInfo = ddp.SINGLE):
        self.binding = binding  # read by new_generator / new_discriminator during __init__
        self.colour_ids = colour_word_ids(data.vocab)
        if binding.swaps and len(self.colour_ids) < 2:
            raise ValueError("colour-swapped captions need two colour words in the vocabulary, "
                             f"found {len(self.colour_ids)}")
        super().__init__(recipe, text_encoder, image_encoder, data, device, sample_captions,
                         dist, functools.partial(binding_train_step, bcfg=binding))

    def new_generator(self) -> nn.Module:
        if self.binding.word_generator:
            return WordGenerator(self.model_config, self.binding.hidden_dim, self.binding.key_dim)
        return super().new_generator()

    def new_discriminator(self) -> Discriminator:
        if self.binding.word_discriminator:
            return WordDiscriminator(self.model_config)
        return super().new_discriminator()

    def batch(self, epoch: int, step_in_epoch: int) -> BindingBatch:
        """SSA-GAN's batch plus, when the binding config swaps, its captions with two colour words
        exchanged (drawn from their own generator, so the rest of the batch is SSA-GAN's)."""
        base = super().batch(epoch, step_in_epoch)
        batch = BindingBatch(**{f.name: getattr(base, f.name)
                                for f in dataclasses.fields(base)})
        if self.binding.swaps:
            g = step_generator(self.config.seed, epoch, step_in_epoch, self.dist.rank, 1)
            swapped, has_swap = swap_colour_words(base.captions.cpu(), base.lengths,
                                                  self.colour_ids, g)
            batch.swapped, batch.has_swap = swapped.to(self.device), has_swap
        return batch

    def fingerprint(self) -> dict[str, Any]:
        return {**super().fingerprint(), "binding": self.binding.fingerprint()}

    def meta(self) -> dict[str, Any]:
        return {**super().meta(), "binding": dataclasses.asdict(self.binding)}


def binding_engine(recipe: Recipe, binding: BindingConfig, text_encoder: TextEncoder,
                   image_encoder: nn.Module, data: TrainData, *,
                   device: str | torch.device = "auto",
                   run_dir: str | os.PathLike[str] | None = None,
                   sample_captions: Sequence[str] | None = None,
                   dist: ddp.DistInfo = ddp.SINGLE) -> Engine:
    """An :class:`~t2ilib.engine.loop.Engine` running a :class:`BindingTask`."""
    task = BindingTask(recipe, binding, text_encoder, image_encoder, data, device,
                       sample_captions, dist)
    cfg = recipe.train
    return Engine(task, run_dir, log_every=cfg.log_every, amp=cfg.amp,
                  tensorboard=cfg.tensorboard, dist=dist)
