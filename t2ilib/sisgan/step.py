r"""SISGAN's training step (Dong et al., ICCV 2017): one D update, then one G update.

For a batch of $B$ real images $x_i$ ``(B, 3, S, S)`` in [-1, 1] with their own captions $t_i$
(:class:`SISGANBatch`), the **frozen** DAMSM text encoder gives sentence vectors
``(B, D)`` (:func:`choose_captions`):

* matching: $\varphi(t_i)$, the image's own caption;
* mismatching: $\varphi(\hat t_i) = \varphi(t_{\pi(i)})$, the caption of another image, $\pi$ a
  random derangement ($\pi(i) \neq i$);
* relevant: $\varphi(\tilde t_i) = \varphi(t_i)$ when the coin $u_i < p_\text{match}$
  (then $m_i = 1$), else $\varphi(\hat t_i)$ ($m_i = 0$).

G edits each image towards its relevant caption, with the conditioning-augmentation noise
$\varepsilon_i$: $\hat x_i, \mu_i, \sigma_i = G(x_i, \varphi(\tilde t_i), \varepsilon_i)$
(one forward pass, used by both updates: the reference code runs G again for its G step).

**D step** ($\hat x$ detached, :func:`d_step`):

$$L_D = \mathrm{BCE}(D(x, \varphi(t)), 1) + \tfrac12\,\mathrm{BCE}(D(x, \varphi(\hat t)), 0)
      + \tfrac12\,\mathrm{BCE}(D(\hat x, \varphi(\tilde t)), 0)$$

**G step** (D's weights frozen, :func:`g_step`):

$$L_G = \mathrm{BCE}(D(\hat x, \varphi(\tilde t)), 1)
      + \rho\,\mathrm{KL}\big(\mathcal N(\mu, \sigma^2)\,\|\,\mathcal N(0, I)\big)
      + \lambda\,\frac{\sum_i m_i \lVert \hat x_i - x_i \rVert_1}{\sum_i m_i}
      + \eta\,L_\text{DAMSM}(\hat x, \tilde t)$$

$\rho$ = ``kl_weight``, $\lambda$ = ``recon_weight`` (SISGAN 0, TAGAN 0.2; the L1 term, averaged
over the pixels, only on edits whose relevant caption is their own), $\eta$ = ``damsm_weight``
(not SISGAN: AttnGAN's DAMSM loss of the edits against their relevant captions, 0 = off).

**Learning rate** of (0-based) epoch $e$: $\mathrm{lr}\cdot 0.5^{\lfloor e / \text{lr\_halve\_every}
\rfloor}$ for G and D (:func:`lr_at`, applied by the task before each epoch).

The step validates nothing and sets no precision: the task builds the batch on the device
(all but the captions' lengths, which the text encoder's LSTM wants on the CPU) and the engine
runs the step under autocast (the losses are computed in float32).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.damsm.generator_loss import damsm_image_loss
from t2ilib.sisgan.losses import (
    DLosses,
    GLosses,
    discriminator_loss,
    generator_loss,
    pair_logits,
    reconstruction_loss,
    relevant_sentences,
)
from t2ilib.sisgan.model import Discriminator, Generator
from t2ilib.sisgan.recipes import SISGANTrainConfig
from t2ilib.text.encoder import TextEncoder

__all__ = ["LOSS_NAMES", "SISGANNets", "SISGANOptimizers", "SISGANBatch", "Captions",
           "choose_captions", "d_step", "g_step", "train_step", "lr_at", "set_learning_rate"]

#: Columns of the loss log, in the order of :func:`train_step`'s vector. ``p_*`` are D's mean
#: probabilities for the three pairs (real-matching should go to 1, the other two to 0).
LOSS_NAMES = ("d_loss", "d_real", "d_mismatch", "d_fake", "g_loss", "g_adv", "kl", "recon",
              "g_damsm", "p_real", "p_mismatch", "p_fake")


@dataclass
class SISGANNets:
    """The networks of a step: G and D learn; the DAMSM encoders are frozen (eval mode)."""

    G: Generator
    D: Discriminator
    text_encoder: TextEncoder
    image_encoder: nn.Module | None = None  # needed only when damsm_weight > 0


@dataclass
class SISGANOptimizers:
    """One optimiser per network that learns."""

    g: torch.optim.Optimizer
    d: torch.optim.Optimizer


@dataclass
class SISGANBatch:
    """One batch, every draw already made (so the step itself is deterministic)."""

    images: Tensor  # (B, 3, S, S) in [-1, 1]
    captions: Tensor  # (B, T) int64: each image's own caption
    lengths: Tensor  # (B,) int64, on the CPU (the text encoder's LSTM packing wants them there)
    other: Tensor  # (B,) int64 derangement: image i's mismatching caption is image other[i]'s
    coins: Tensor  # (B,) uniform in [0, 1): i keeps its own caption as relevant iff < p_match
    eps: Tensor  # (B, C) conditioning-augmentation noise
    class_ids: Tensor  # (B,) int64 (same-class pairs are no DAMSM negatives)


@dataclass
class Captions:
    """The batch's sentence vectors (all ``(B, D)`` float32) and who owns the relevant one."""

    words: Tensor  # (B, D, T) word features of the own captions (for the DAMSM term)
    own: Tensor  # phi(t)
    other: Tensor  # phi(t^) = own[batch.other]
    relevant: Tensor  # phi(t~): own where matched, else other
    matched: Tensor  # (B,) bool
    whose: Tensor  # (B,) int64: the image whose caption is relevant (i or other[i])


def choose_captions(text_encoder: TextEncoder, batch: SISGANBatch, p_match: float) -> Captions:
    """Matching, mismatching and relevant sentence vectors of ``batch`` (no gradients)."""
    with torch.no_grad():  # the text encoder is frozen; ids were checked when the data loaded
        words, own = text_encoder(batch.captions, batch.lengths, check_ids=False)
    own = own.float()  # (B, D)
    other = own[batch.other]  # (B, D): another image's caption
    relevant, matched = relevant_sentences(own, other, batch.coins, p_match)
    index = torch.arange(len(own), device=own.device)
    whose = torch.where(matched, index, batch.other)  # (B,)
    return Captions(words, own, other, relevant, matched, whose)


def d_step(D: Discriminator, opt_d: torch.optim.Optimizer, real: Tensor, fake: Tensor,
           text: Captions) -> tuple[DLosses, Tensor]:
    """One update of D on (real, matching), (real, mismatching) and (fake, relevant) pairs.

    ``real`` and ``fake`` ``(B, 3, S, S)`` (``fake`` is detached here). Returns D's losses and
    its mean probabilities ``(3,)`` for the three pairs.
    """
    logits = [x.float() for x in pair_logits(D, real, fake, text.own, text.other,
                                             text.relevant)]  # 3 x (B,), fake detached
    losses = discriminator_loss(*logits)
    opt_d.zero_grad(set_to_none=True)
    losses.total.backward()
    opt_d.step()
    with torch.no_grad():
        probs = torch.stack([torch.sigmoid(x).mean() for x in logits])
    return losses, probs


def g_step(nets: SISGANNets, opt_g: torch.optim.Optimizer, config: SISGANTrainConfig,
           batch: SISGANBatch, fake: Tensor, mu: Tensor, log_sigma: Tensor,
           text: Captions) -> tuple[Tensor, GLosses, Tensor]:
    """One update of G: adversarial + rho KL + lambda L1 (+ eta DAMSM), D's weights frozen.

    ``fake`` ``(B, 3, S, S)`` with its graph to G; ``mu``, ``log_sigma`` ``(B, C)``. Returns
    ``(L_G, its SISGAN terms, the DAMSM term)`` (the terms that are off are 0).
    """
    zero = torch.zeros((), device=fake.device)
    nets.D.requires_grad_(False)  # G's backward pass leaves D's gradients alone
    try:
        logit = nets.D(fake, text.relevant)  # (B,)
        recon = (reconstruction_loss(fake, batch.images, text.matched)
                 if config.recon_weight > 0 else zero)
        losses = generator_loss(logit.float(), mu.float(), log_sigma.float(), config.kl_weight,
                                recon, config.recon_weight)
        damsm = zero
        if config.damsm_weight > 0:  # the edit against its relevant caption
            whose = text.whose
            damsm = damsm_image_loss(nets.image_encoder, fake, text.words[whose], text.relevant,
                                     batch.lengths.to(whose.device)[whose],
                                     batch.class_ids[whose],
                                     encoder_size=config.damsm_image_size)
        total = losses.total + config.damsm_weight * damsm
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
    finally:
        nets.D.requires_grad_(True)
    return total, losses, damsm


def train_step(nets: SISGANNets, opts: SISGANOptimizers, config: SISGANTrainConfig,
               batch: SISGANBatch) -> Tensor:
    """One D step and one G step on ``batch``; the losses ``(len(LOSS_NAMES),)`` detached."""
    text = choose_captions(nets.text_encoder, batch, config.p_match)
    fake, mu, log_sigma = nets.G(batch.images, text.relevant, batch.eps)  # (B, 3, S, S)
    d, probs = d_step(nets.D, opts.d, batch.images, fake, text)
    g_total, g, g_damsm = g_step(nets, opts.g, config, batch, fake, mu, log_sigma, text)
    return torch.cat([torch.stack([d.total, d.real, d.mismatch, d.fake, g_total, g.adversarial,
                                   g.kl, g.reconstruction, g_damsm]).float(),
                      probs.float()]).detach()


def lr_at(config: SISGANTrainConfig, epoch: int) -> float:
    """The learning rate of (0-based) ``epoch``: halved every ``lr_halve_every`` epochs."""
    return config.lr * 0.5 ** (epoch // config.lr_halve_every)


def set_learning_rate(optimizers: Iterable[torch.optim.Optimizer], lr: float) -> None:
    """Set every parameter group of ``optimizers`` to ``lr``."""
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = lr
