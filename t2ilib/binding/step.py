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

* ``damsm_swap_weight`` $\nu > 0$: the DAMSM, G's main teacher, learns the same choice
  (:func:`~t2ilib.binding.swaps.swapped_damsm_loss`, $L_\text{swap}$): a second encoder step
  on real images when the encoders are fine-tuned, $\nu L_\text{swap}(x)$, and in G's loss
  $\nu L_\text{swap}(\hat x)$, so G is asked for the colours on the parts the caption names.

MA-GP stays on the sentence head, as in SSA-GAN.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.binding.swaps import swapped_damsm_loss
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
#: loss, the swapped captions' D loss, G's word-level adversarial loss, and the DAMSM's swap
#: loss in the encoder step and in G's loss.
BINDING_LOSS_NAMES = (*SSAGAN_LOSS_NAMES, "d_word", "d_swap", "g_word", "enc_swap", "g_swap")


@dataclass(frozen=True)
class BindingConfig:
    """Which word-level parts a run adds to SSA-GAN (module docstring)."""

    word_generator: bool = False
    word_discriminator: bool = False
    swap_weight: float = 0.0  # mu: weight of the colour-swapped negatives in L_D (0: off)
    word_d_weight: float = 1.0  # lambda_w: weight of the word head in L_D and L_G
    hidden_dim: int = 64  # the word-attended affines' hidden width
    key_dim: int = 64  # their query / key width
    damsm_swap_weight: float = 0.0  # nu: the DAMSM's caption-vs-swap loss (encoders and G)

    #: Fields added after runs were made: left out of the fingerprint at their default, so
    #: the earlier runs still load.
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("damsm_swap_weight",)

    def __post_init__(self) -> None:
        if min(self.swap_weight, self.word_d_weight, self.damsm_swap_weight) < 0:
            raise ValueError(f"swap_weight, word_d_weight and damsm_swap_weight must be >= 0, "
                             f"got {self.swap_weight}, {self.word_d_weight} and "
                             f"{self.damsm_swap_weight}")
        if min(self.hidden_dim, self.key_dim) < 1:
            raise ValueError(f"hidden_dim and key_dim must be >= 1, "
                             f"got {self.hidden_dim} and {self.key_dim}")
        if not (self.word_generator or self.word_discriminator or self.swaps):
            raise ValueError("a binding run adds at least one part: word_generator, "
                             "word_discriminator, swap_weight > 0 or damsm_swap_weight > 0")

    @property
    def swaps(self) -> bool:
        """Whether the batches need colour-swapped captions."""
        return self.swap_weight > 0 or self.damsm_swap_weight > 0

    def fingerprint(self) -> dict[str, Any]:
        """The config as a run's fingerprint records it (:attr:`ADDED_LATER` at default out)."""
        defaults = BindingConfig.__dataclass_fields__
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in self.ADDED_LATER or v != defaults[k].default}

    @property
    def name(self) -> str:
        """e.g. ``"wordG+wordD+swap"``."""
        parts = [("wordG", self.word_generator), ("wordD", self.word_discriminator),
                 ("swap", self.swap_weight > 0), ("swapDAMSM", self.damsm_swap_weight > 0)]
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
                   swap: _Text | None, keep: Tensor | None, batch: Batch,
                   cfg: SSAGANTrainConfig, bcfg: BindingConfig) -> tuple[Tensor, ...]:
    """G step; D's weights get no gradients. Returns ``(L_adv, L_adv^w, L_DAMSM, L_swap)``."""
    nets.D.requires_grad_(False)
    try:
        f, regions = _trunk(nets.D, fake, bcfg.word_discriminator)
        g_adv = generator_hinge_loss(nets.D.logits(f, text.sentence))
        g_word = (generator_hinge_loss(nets.D.word_logits(regions, text.words, text.lengths))
                  if regions is not None else fake.new_zeros(()))
        g_damsm = damsm_image_loss(nets.image_encoder, fake, text.words, text.sentence,
                                   text.lengths, batch.class_ids, cfg.gammas,
                                   cfg.damsm_image_size)
        g_swap = (_swap_loss(nets.image_encoder, fake, text, swap, keep, cfg)
                  if bcfg.damsm_swap_weight > 0 else fake.new_zeros(()))
        loss = (g_adv + bcfg.word_d_weight * g_word + cfg.damsm_weight * g_damsm
                + bcfg.damsm_swap_weight * g_swap)
        opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
    finally:
        nets.D.requires_grad_(True)
    return g_adv, g_word, g_damsm, g_swap


def _swap_loss(image_encoder: nn.Module, images: Tensor, text: _Text, swap: _Text | None,
               keep: Tensor | None, cfg: SSAGANTrainConfig) -> Tensor:
    """:func:`~t2ilib.binding.swaps.swapped_damsm_loss` on the rows that have a swap."""
    if swap is None or keep is None:
        return images.new_zeros(())
    return swapped_damsm_loss(image_encoder, images[keep], text.words[keep],
                              text.sentence[keep], swap.lengths, swap.words, swap.sentence,
                              cfg.gammas, cfg.damsm_image_size)


def encoder_swap_step(nets: Nets, opt_enc: torch.optim.Optimizer, batch: BindingBatch,
                      cfg: SSAGANTrainConfig,
                      bcfg: BindingConfig) -> tuple[_Text | None, Tensor | None, Tensor]:
    """A second encoder step (fine-tuning only), on $\nu L_\text{swap}$ of real images.
    Returns the swapped captions' text as it was read (detached), their rows and the loss."""
    rows = batch.has_swap
    if rows is None or batch.swapped is None or not bool(rows.any()):
        return None, None, batch.images.new_zeros(())
    keep = rows.to(batch.images.device)
    nets.text_encoder.train()
    nets.image_encoder.train()
    try:
        words, sentence = nets.text_encoder(batch.captions[keep], batch.lengths[rows],
                                            check_ids=False)
        s_words, s_sentence = nets.text_encoder(batch.swapped[keep], batch.lengths[rows],
                                                check_ids=False)
        loss = swapped_damsm_loss(nets.image_encoder, batch.images[keep], words, sentence,
                                  batch.lengths[rows], s_words, s_sentence, cfg.gammas,
                                  cfg.damsm_image_size)
        opt_enc.zero_grad(set_to_none=True)
        (bcfg.damsm_swap_weight * loss).backward()
        opt_enc.step()
    finally:
        nets.text_encoder.eval()
        nets.image_encoder.eval()
    swapped = _Text(s_words.detach().float(), s_sentence.detach().float(), batch.lengths[rows])
    return swapped, keep, loss.detach()


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
    enc_swap = sentence.new_zeros(())
    if opts.enc is not None and bcfg.damsm_swap_weight > 0:
        swap, keep, enc_swap = encoder_swap_step(nets, opts.enc, batch, cfg, bcfg)
    else:
        swap, keep = _swapped_text(nets, batch) if bcfg.swaps else (None, None)
    fake, _ = (nets.G(batch.z, sentence, words, batch.lengths) if bcfg.word_generator
               else nets.G(batch.z, sentence))
    d_swap_text = swap if bcfg.swap_weight > 0 else None
    d_loss, d_real, d_fake, d_mis, gp, d_word, d_swap = binding_d_step(
        nets, opts.d, batch.images, fake, text, d_swap_text, keep, cfg, bcfg)
    if cfg.gp_mode == "separate":
        gp = ma_gp_step(nets, opts.d, batch.images, sentence, cfg)
    g_adv, g_word, g_damsm, g_swap = binding_g_step(nets, opts.g, fake, text, swap, keep,
                                                    batch, cfg, bcfg)
    if nets.G_ema is not None:
        ema_update(nets.G_ema, nets.G, cfg.ema_decay)
    losses = [d_loss, d_real, d_fake, d_mis, gp, g_adv, g_damsm, enc_loss, d_word, d_swap,
              g_word, enc_swap, g_swap]
    return torch.stack([x.detach().float() for x in losses])
