r"""One training step of SSA-GAN (Liao et al., CVPR 2022; the official ``main.py`` and
``main_finetune.py`` of wtliao/text2image).

With real images $x$, the word features $w$ and sentence vectors $s$ of their captions (the
DAMSM text encoder), noise $z \sim \mathcal N(0, I)$ and fakes $\hat x = G(z, s)$:

0. **Encoder step** (only when fine-tuning, ``main_finetune.py``), on real images:
   $L_\text{enc} = L_\text{DAMSM}(x, w, s)$, Adam lr $4\cdot10^{-5}$. The GAN terms below
   then use detached copies of $w, s$.
1. **D step** with the matching-aware pairs (real image, another image's caption):

   $$L_D = \mathbb E[\max(0, 1 - D(x, s))] + \tfrac12\big(\mathbb E[\max(0, 1 + D(\hat x, s))]
         + \mathbb E[\max(0, 1 + D(x_i, s_{i+1}))]\big)$$

2. **MA-GP step**, a second Adam step on D (``gp_mode="joint"`` adds it to $L_D$ instead):
   $L_\text{GP} = k\,\mathbb E\lVert \nabla_{(x, s)} D(x, s)\rVert^p$, $k = 2$, $p = 6$.
3. **G step**: $L_G = -\mathbb E[D(\hat x, s)] + \lambda\, L_\text{DAMSM}(\hat x, w, s)$,
   $\lambda = 0.05$ (encoders frozen) or $0.1$ (fine-tuned); optionally $+\,\mu\,L_\text{ms}$,
   MSGAN's mode-seeking term (off in the paper).
4. **EMA** of G (off in the paper): $\theta_\text{ema} \leftarrow \theta_\text{ema} +
   (1-\beta)(\theta - \theta_\text{ema})$.

Every optimiser step starts from zeroed gradients, so no term leaks into another's update.
Device moves, autocast, logging and checkpoints live around this step (the engine).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.damsm.generator_loss import damsm_image_loss
from t2ilib.ssagan.diversity import mode_seeking_loss
from t2ilib.ssagan.losses import discriminator_adversarial_loss, generator_hinge_loss, ma_gp
from t2ilib.ssagan.model import Discriminator
from t2ilib.ssagan.recipes import SSAGANTrainConfig
from t2ilib.text.encoder import TextEncoder

__all__ = ["LOSS_NAMES", "Nets", "Optimizers", "Batch", "encode_text", "d_step", "ma_gp_step",
           "g_step", "ema_update", "train_step"]

#: The losses :func:`train_step` returns, in order (the loss log's columns).
LOSS_NAMES = ("d_loss", "d_real", "d_fake", "d_mismatch", "ma_gp", "g_adv", "g_damsm",
              "enc_damsm")


@dataclass
class Nets:
    """The networks of a run. ``G`` / ``image_encoder`` may be ``torch.compile`` wrappers."""

    G: nn.Module  # (z (B, nz), s (B, D)) -> (images (B, 3, R, R), masks)
    D: Discriminator  # features (B, 3, R, R) -> (B, C, 4, 4); logits (features, s) -> (B,)
    text_encoder: TextEncoder  # (ids (B, T), lengths (B,)) -> (w (B, D, T), s (B, D))
    image_encoder: nn.Module  # DAMSM: images -> (regions (B, D, h, w), codes (B, D))
    G_ema: nn.Module | None = None


@dataclass
class Optimizers:
    g: torch.optim.Optimizer
    d: torch.optim.Optimizer
    enc: torch.optim.Optimizer | None = None  # only when fine-tuning the encoders


@dataclass
class Batch:
    images: Tensor  # (B, 3, R, R) real images in [-1, 1]
    captions: Tensor  # (B, T) int64 token ids
    lengths: Tensor  # (B,) int64 caption lengths (on the CPU, for packing)
    class_ids: Tensor  # (B,) int64: same-class pairs are no DAMSM negatives
    z: Tensor  # (B, nz) noise
    z2: Tensor | None = None  # (B, nz) a second noise (mode seeking only)


def encode_text(nets: Nets, opts: Optimizers, batch: Batch,
                cfg: SSAGANTrainConfig) -> tuple[Tensor, Tensor, Tensor]:
    """Words ``(B, D, T)`` and sentences ``(B, D)``, detached; with ``opts.enc``, first the
    encoder step (0.) on real images. Returns ``(w, s, L_enc)`` (``L_enc`` 0 when frozen)."""
    if opts.enc is None:
        with torch.no_grad():
            words, sentence = nets.text_encoder(batch.captions, batch.lengths, check_ids=False)
        return words.float(), sentence.float(), batch.z.new_zeros(())
    nets.text_encoder.train()
    nets.image_encoder.train()
    words, sentence = nets.text_encoder(batch.captions, batch.lengths, check_ids=False)
    loss = damsm_image_loss(nets.image_encoder, batch.images, words, sentence, batch.lengths,
                            batch.class_ids, cfg.gammas, cfg.damsm_image_size)
    opts.enc.zero_grad(set_to_none=True)
    loss.backward()
    opts.enc.step()
    nets.text_encoder.eval()
    nets.image_encoder.eval()
    return words.detach().float(), sentence.detach().float(), loss.detach()


def d_step(nets: Nets, opt_d: torch.optim.Optimizer, real: Tensor, fake: Tensor,
           sentence: Tensor, cfg: SSAGANTrainConfig) -> tuple[Tensor, ...]:
    """1. (and with ``gp_mode="joint"`` 2.): one Adam step on $L_D$ (fakes detached).
    Returns ``(L_D, real, fake, mismatch, L_GP or None)``."""
    hinge = discriminator_adversarial_loss(nets.D, real, fake, sentence)
    loss, gp = hinge.total, None
    if cfg.gp_mode == "joint":
        gp = ma_gp(nets.D, real, sentence, cfg.gp_k, cfg.gp_p)
        loss = loss + gp
    opt_d.zero_grad(set_to_none=True)
    loss.backward()
    opt_d.step()
    return loss, hinge.real, hinge.fake, hinge.mismatch, gp


def ma_gp_step(nets: Nets, opt_d: torch.optim.Optimizer, real: Tensor, sentence: Tensor,
               cfg: SSAGANTrainConfig) -> Tensor:
    """2. A second Adam step on D, on MA-GP alone (taken at real, matching pairs)."""
    gp = ma_gp(nets.D, real, sentence, cfg.gp_k, cfg.gp_p)
    opt_d.zero_grad(set_to_none=True)
    gp.backward()
    opt_d.step()
    return gp


def g_step(nets: Nets, opt_g: torch.optim.Optimizer, fake: Tensor, words: Tensor,
           sentence: Tensor, batch: Batch, cfg: SSAGANTrainConfig) -> tuple[Tensor, Tensor]:
    """3. One Adam step on $L_G$; D's weights get no gradients. Returns ``(L_adv, L_DAMSM)``."""
    nets.D.requires_grad_(False)
    # BEGIN EXERCISE 07:nb07_g_step
    g_adv = generator_hinge_loss(nets.D.logits(nets.D.features(fake), sentence))
    g_damsm = damsm_image_loss(nets.image_encoder, fake, words, sentence, batch.lengths,
                               batch.class_ids, cfg.gammas, cfg.damsm_image_size)
    loss = g_adv + cfg.damsm_weight * g_damsm
    # END EXERCISE
    if cfg.mode_seeking_weight > 0:
        fake_2, _ = nets.G(batch.z2, sentence)  # the same captions, other noise
        loss = loss + cfg.mode_seeking_weight * mode_seeking_loss(
            fake.float(), fake_2.float(), batch.z, batch.z2)
    opt_g.zero_grad(set_to_none=True)
    loss.backward()
    opt_g.step()
    nets.D.requires_grad_(True)
    return g_adv, g_damsm


@torch.no_grad()
def ema_update(g_ema: nn.Module, g: nn.Module, decay: float) -> None:
    """4. Move the EMA copy toward G: ``ema += (1 - decay) * (g - ema)``; buffers copied."""
    torch._foreach_lerp_(list(g_ema.parameters()), list(g.parameters()), 1.0 - decay)
    for b_ema, b in zip(g_ema.buffers(), g.buffers()):
        b_ema.copy_(b)


def train_step(nets: Nets, opts: Optimizers, batch: Batch, cfg: SSAGANTrainConfig) -> Tensor:
    """Steps 0-4 on one batch; returns the losses ``(len(LOSS_NAMES),)``, detached."""
    words, sentence, enc_loss = encode_text(nets, opts, batch, cfg)
    fake, _ = nets.G(batch.z, sentence)  # (B, 3, R, R)
    d_loss, d_real, d_fake, d_mismatch, gp = d_step(nets, opts.d, batch.images, fake,
                                                    sentence, cfg)
    if cfg.gp_mode == "separate":
        gp = ma_gp_step(nets, opts.d, batch.images, sentence, cfg)
    g_adv, g_damsm = g_step(nets, opts.g, fake, words, sentence, batch, cfg)
    if nets.G_ema is not None:
        ema_update(nets.G_ema, nets.G, cfg.ema_decay)
    losses = [d_loss, d_real, d_fake, d_mismatch, gp, g_adv, g_damsm, enc_loss]
    return torch.stack([x.detach().float() for x in losses])
