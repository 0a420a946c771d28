r"""One training step of SSA-GAN with word-level parts (notebook 11).

The step is SSA-GAN's (:mod:`t2ilib.ssagan.step`: encoder step, D step, MA-GP step, G step,
EMA) with up to three changes, chosen by a :class:`BindingConfig`:

* ``word_generator``: $\hat x = G(z, s, w)$, the word-attended SSACN of
  :mod:`t2ilib.binding.word_ssacn`;
* ``word_discriminator``: D's word-level head (:mod:`t2ilib.binding.word_d`) is trained with
  the same hinge terms as the sentence head, weighted by $\lambda_w$,

  $$L_D = L_D^{s} + \lambda_w L_D^{w}, \qquad
  L_G = -\mathbb E[D(\hat x, s)] - \lambda_w \mathbb E[D_\text{word}(\hat x, w)]
        + \lambda\, L_\text{DAMSM};$$

* ``swap_weight`` $\mu > 0$: a real image must score its own caption above the same caption
  with two colour words exchanged (:mod:`t2ilib.binding.swaps`), $\tilde s$, by a margin,

  $$L_D \mathrel{+}= \mu\,\mathbb E\big[\max(0, 1 - D(x, s) + D(x, \tilde s))\big]
  \;\big(+\,\mu\lambda_w\,\mathbb E[\max(0, 1 - D_\text{word}(x, w)
  + D_\text{word}(x, \tilde w))]\big).$$

  A ranking, not one more pair to reject: the two captions differ in two words only, and a
  plain $\max(0, 1 + D(x, \tilde s))$ beside $\max(0, 1 - D(x, s))$ is most cheaply met by
  lowering every real score (measured: D's real term stood at 1.86 after 110 steps, SSA-GAN's
  at 0.54; ``docs/binding_experiments.md``).

MA-GP stays on the sentence head, as in SSA-GAN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.damsm.generator_loss import damsm_image_loss
from t2ilib.ssagan.losses import (
    HingeTerms,
    discriminator_hinge_loss,
    generator_hinge_loss,
    ma_gp,
    mismatched_pairs,
)
from t2ilib.ssagan.recipes import SSAGANTrainConfig
from t2ilib.ssagan.step import LOSS_NAMES as SSAGAN_LOSS_NAMES
from t2ilib.ssagan.step import Batch, Nets, Optimizers, ema_update, encode_text, ma_gp_step

__all__ = ["BindingConfig", "BINDING_LOSS_NAMES", "BindingBatch", "ranking_hinge",
           "binding_train_step"]

#: The losses :func:`binding_train_step` returns, in order: SSA-GAN's, then the word head's D
#: loss, the swapped captions' D loss and G's word-level adversarial loss.
BINDING_LOSS_NAMES = (*SSAGAN_LOSS_NAMES, "d_word", "d_swap", "g_word")


@dataclass(frozen=True)
class BindingConfig:
    """Which word-level parts a run adds to SSA-GAN (module docstring)."""

    word_generator: bool = False
    word_discriminator: bool = False
    swap_weight: float = 0.0  # mu: weight of the colour-swapped negatives in L_D (0: off)
    word_d_weight: float = 1.0  # lambda_w: weight of the word head in L_D and L_G
    hidden_dim: int = 64  # the word-attended affines' hidden width
    key_dim: int = 64  # their query / key width

    def __post_init__(self) -> None:
        if self.swap_weight < 0 or self.word_d_weight < 0:
            raise ValueError(f"swap_weight and word_d_weight must be >= 0, "
                             f"got {self.swap_weight} and {self.word_d_weight}")
        if min(self.hidden_dim, self.key_dim) < 1:
            raise ValueError(f"hidden_dim and key_dim must be >= 1, "
                             f"got {self.hidden_dim} and {self.key_dim}")
        if not (self.word_generator or self.word_discriminator or self.swap_weight > 0):
            raise ValueError("a binding run adds at least one part: word_generator, "
                             "word_discriminator or swap_weight > 0")

    @property
    def name(self) -> str:
        """e.g. ``"wordG+wordD+swap"``."""
        parts = [("wordG", self.word_generator), ("wordD", self.word_discriminator),
                 ("swap", self.swap_weight > 0)]
        return "+".join(p for p, on in parts if on)


@dataclass
class BindingBatch(Batch):
    swapped: Tensor | None = None  # (B, T) the captions with two colour words exchanged
    has_swap: Tensor | None = None  # (B,) bool: the captions that have a swap


@dataclass
class _Text:
    """A caption batch as D and G read it: words ``(B, D, T)``, sentences ``(B, D)``,
    lengths ``(B,)``."""

    words: Tensor
    sentence: Tensor
    lengths: Tensor


def ranking_hinge(right: Tensor, wrong: Tensor) -> Tensor:
    r"""$\mathbb E[\max(0, 1 - D_\text{right} + D_\text{wrong})]$: ``(N,), (N,) -> ()``."""
    return torch.relu(1.0 - right + wrong).mean()


def _trunk(D: nn.Module, images: Tensor, word_d: bool) -> tuple[Tensor, Tensor | None]:
    """D's 4x4 features and, with the word head, its 8x8 regions."""
    return D.features_and_regions(images) if word_d else (D.features(images), None)


def _d_loss(D: nn.Module, real: Tensor, fake: Tensor, text: _Text, swap: _Text | None,
            keep: Tensor | None,
            bcfg: BindingConfig) -> tuple[Tensor, tuple[HingeTerms, Tensor, Tensor]]:
    """``L_D`` without MA-GP, and its parts: ``(SSA-GAN's hinge terms, L_D^w, swap term)``."""
    word_d = bcfg.word_discriminator
    real_f, real_r = _trunk(D, real, word_d)
    fake_f, fake_r = _trunk(D, fake.detach(), word_d)
    mis_f, mis_s = mismatched_pairs(real_f, text.sentence)
    real_logits = D.logits(real_f, text.sentence)  # (B,)
    hinge = discriminator_hinge_loss(real_logits, D.logits(fake_f, text.sentence),
                                     D.logits(mis_f, mis_s))
    zero = real.new_zeros(())
    word = swapped = zero
    if word_d:
        w = text.words
        real_words = D.word_logits(real_r, w, text.lengths)  # (B,)
        word = discriminator_hinge_loss(
            real_words, D.word_logits(fake_r, w, text.lengths),
            D.word_logits(real_r[:-1], w[1:], text.lengths[1:])).total
    if swap is not None and keep is not None and bool(keep.any()):
        swapped = ranking_hinge(real_logits[keep], D.logits(real_f[keep], swap.sentence))
        if word_d:
            swapped = swapped + bcfg.word_d_weight * ranking_hinge(
                real_words[keep], D.word_logits(real_r[keep], swap.words, swap.lengths))
    loss = hinge.total + bcfg.word_d_weight * word + bcfg.swap_weight * swapped
    return loss, (hinge, word, swapped)


def binding_d_step(nets: Nets, opt_d: torch.optim.Optimizer, real: Tensor, fake: Tensor,
                   text: _Text, swap: _Text | None, keep: Tensor | None,
                   cfg: SSAGANTrainConfig, bcfg: BindingConfig) -> tuple[Tensor, ...]:
    """D step (and with ``gp_mode="joint"`` MA-GP). Returns ``(L_D, real, fake, mismatch,
    L_GP or None, L_D^w, swap term)``."""
    loss, (hinge, word, swapped) = _d_loss(nets.D, real, fake, text, swap, keep, bcfg)
    gp = None
    if cfg.gp_mode == "joint":
        gp = ma_gp(nets.D, real, text.sentence, cfg.gp_k, cfg.gp_p)
        loss = loss + gp
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss, hinge.real, hinge.fake, hinge.mismatch, gp, word, swapped


def binding_g_step(nets: Nets, opt_g: torch.optim.Optimizer, fake: Tensor, text: _Text,
                   batch: Batch, cfg: SSAGANTrainConfig,
                   bcfg: BindingConfig) -> tuple[Tensor, Tensor, Tensor]:
    """G step; D's weights get no gradients. Returns ``(L_adv, L_adv^w, L_DAMSM)``."""
    nets.D.requires_grad_(False)
    try:
        f, regions = _trunk(nets.D, fake, bcfg.word_discriminator)
        g_adv = generator_hinge_loss(nets.D.logits(f, text.sentence))
        g_word = (generator_hinge_loss(nets.D.word_logits(regions, text.words, text.lengths))
                  if regions is not None else fake.new_zeros(()))
        g_damsm = damsm_image_loss(nets.image_encoder, fake, text.words, text.sentence,
                                   text.lengths, batch.class_ids, cfg.gammas,
                                   cfg.damsm_image_size)
        loss = g_adv + bcfg.word_d_weight * g_word + cfg.damsm_weight * g_damsm
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        nets.D.requires_grad_(True)
    return g_adv, g_word, g_damsm


def _swapped_text(nets: Nets, batch: BindingBatch) -> tuple[_Text | None, Tensor | None]:
    """The swapped captions that have a swap, encoded (no gradient), and which rows they are."""
    if batch.swapped is None or batch.has_swap is None or not bool(batch.has_swap.any()):
        return None, None
    keep = batch.has_swap.to(batch.images.device)
    rows = batch.has_swap
    with torch.no_grad():
        words, sentence = nets.text_encoder(batch.swapped[keep], batch.lengths[rows],
                                            check_ids=False)
    return _Text(words.float(), sentence.float(), batch.lengths[rows]), keep


def binding_train_step(nets: Nets, opts: Optimizers, batch: BindingBatch,
                       cfg: SSAGANTrainConfig, bcfg: BindingConfig) -> Tensor:
    """SSA-GAN's steps 0-4 with the word-level parts; losses ``(len(BINDING_LOSS_NAMES),)``."""
    if cfg.mode_seeking_weight > 0:
        raise ValueError("the binding step has no mode-seeking term: set it to 0")
    words, sentence, enc_loss = encode_text(nets, opts, batch, cfg)
    text = _Text(words, sentence, batch.lengths)
    fake, _ = (nets.G(batch.z, sentence, words, batch.lengths) if bcfg.word_generator
               else nets.G(batch.z, sentence))
    swap, keep = _swapped_text(nets, batch) if bcfg.swap_weight > 0 else (None, None)
    d_loss, d_real, d_fake, d_mis, gp, d_word, d_swap = binding_d_step(
        nets, opts.d, batch.images, fake, text, swap, keep, cfg, bcfg)
    if cfg.gp_mode == "separate":
        gp = ma_gp_step(nets, opts.d, batch.images, sentence, cfg)
    g_adv, g_word, g_damsm = binding_g_step(nets, opts.g, fake, text, batch, cfg, bcfg)
    if nets.G_ema is not None:
        ema_update(nets.G_ema, nets.G, cfg.ema_decay)
    losses = [d_loss, d_real, d_fake, d_mis, gp, g_adv, g_damsm, enc_loss, d_word, d_swap,
              g_word]
    return torch.stack([x.detach().float() for x in losses])
