r"""SISGAN's losses: the three text-image pairs, the KL term, optional L1 reconstruction.

With a real image $x$, its own caption's sentence vector $\varphi(t)$, a *mismatching* one
$\varphi(\hat t)$ (another image's caption) and a *relevant* one $\varphi(\tilde t)$ (the own
caption with probability $p_\text{match}$, another image's otherwise), D outputs a logit and
(``woozzu/dong_iccv_2017`` ``train.py``; BCE on logits, as that reference code):

$$L_D = \mathrm{BCE}(D(x, \varphi(t)), 1) + \tfrac12\,\mathrm{BCE}(D(x, \varphi(\hat t)), 0)
      + \tfrac12\,\mathrm{BCE}(D(G(x, \varphi(\tilde t)), \varphi(\tilde t)), 0)$$

$$L_G = \mathrm{BCE}(D(G(x, \varphi(\tilde t)), \varphi(\tilde t)), 1) + \rho\,\mathrm{KL}
      + \lambda\,\lVert G(x, \varphi(t)) - x \rVert_1$$

with $\mathrm{KL} = \mathrm{mean}\big(-\log\sigma + \tfrac12(\sigma^2 + \mu^2 - 1)\big)$ over
batch and code dimensions (the per-dimension $\mathrm{KL}(\mathcal N(\mu, \sigma^2)\,\|\,
\mathcal N(0, 1))$), $\rho = 1$, and the reconstruction weight $\lambda$ 0 in SISGAN (TAGAN
uses 0.2). :func:`kl_loss` lives beside the conditioning augmentation in
:mod:`t2ilib.sisgan.model` (re-exported here). The L1 term is computed on the samples whose
relevant caption *is* their own, so it costs no extra forward pass.

:func:`pair_logits` and :func:`discriminator_loss` (and :func:`generator_loss`) show the
algorithm only; the training step (:mod:`t2ilib.sisgan.step`) hands them float32 logits.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from t2ilib.sisgan.model import Discriminator, kl_loss

__all__ = ["DLosses", "GLosses", "PairLogits", "kl_loss", "pair_logits", "discriminator_loss",
           "generator_loss", "reconstruction_loss", "derangement", "relevant_sentences"]


class PairLogits(NamedTuple):
    """D's logits ``(B,)`` for the three text-image pairs of a batch."""

    real: Tensor  # D(x, phi(t)): real image, its own (matching) caption
    mismatch: Tensor  # D(x, phi(t^)): real image, another image's caption
    fake: Tensor  # D(G(x, phi(t~)), phi(t~)): the edit, its relevant caption


class DLosses(NamedTuple):
    """D's loss and its three terms (scalars)."""

    total: Tensor
    real: Tensor  # BCE(D(x, t), 1)
    mismatch: Tensor  # BCE(D(x, t^), 0), before the 1/2
    fake: Tensor  # BCE(D(G(x, t~), t~), 0), before the 1/2


def pair_logits(D: Discriminator, real: Tensor, fake: Tensor, own: Tensor, other: Tensor,
                relevant: Tensor) -> PairLogits:
    r"""D's logits for (real, matching), (real, mismatching) and (fake, relevant) pairs.

    ``real`` and ``fake`` ``(B, 3, S, S)``; ``own`` $\varphi(t)$, ``other`` $\varphi(\hat t)$
    and ``relevant`` $\varphi(\tilde t)$ ``(B, D)``. ``fake`` is detached (D's loss must not
    train G). D runs on the real batch and on the fake batch in separate calls (its batch
    norm normalises each batch with its own statistics); the real features are computed once
    and reused for both real pairs.
    """
    # BEGIN EXERCISE 09:nb09_discriminator_loss
    real_features = D.features(real)  # (B, 8 ndf, 4, 4), shared by both real pairs
    return PairLogits(D.logits(real_features, own),  # (B,)
                      D.logits(real_features, other),  # (B,)
                      D(fake.detach(), relevant))  # (B,)
    # END EXERCISE


def discriminator_loss(real: Tensor, mismatch: Tensor, fake: Tensor) -> DLosses:
    r"""$L_D = \mathrm{BCE}(\ell_\text{real}, 1) + \tfrac12\mathrm{BCE}(\ell_\text{mis}, 0)
    + \tfrac12\mathrm{BCE}(\ell_\text{fake}, 0)$ from the logits ``(B,)`` of the three pairs
    (each BCE a mean over the batch). Returns :class:`DLosses` (scalars ``()``).
    """
    # BEGIN EXERCISE 09:nb09_discriminator_loss
    bce = F.binary_cross_entropy_with_logits
    r = bce(real, torch.ones_like(real))
    m = bce(mismatch, torch.zeros_like(mismatch))
    f = bce(fake, torch.zeros_like(fake))
    return DLosses(r + 0.5 * m + 0.5 * f, r, m, f)
    # END EXERCISE


class GLosses(NamedTuple):
    """G's loss and its terms (scalars)."""

    total: Tensor
    adversarial: Tensor
    kl: Tensor
    reconstruction: Tensor


def generator_loss(fake_logits: Tensor, mu: Tensor, log_sigma: Tensor, kl_weight: float = 1.0,
                   reconstruction: Tensor | None = None, recon_weight: float = 0.0) -> GLosses:
    """G's loss: BCE(D(fake, t~), 1) + kl_weight * KL (+ recon_weight * the given L1 term).

    ``fake_logits`` ``(B,)``, ``mu`` and ``log_sigma`` ``(B, C)``, ``reconstruction`` ``()``
    (see :func:`reconstruction_loss`; 0 when not given). Returns :class:`GLosses`.
    """
    adv = F.binary_cross_entropy_with_logits(fake_logits, torch.ones_like(fake_logits))
    kl = kl_loss(mu, log_sigma)
    recon = reconstruction if reconstruction is not None else torch.zeros_like(adv)
    return GLosses(adv + kl_weight * kl + recon_weight * recon, adv, kl, recon)


def reconstruction_loss(fake: Tensor, real: Tensor, use: Tensor) -> Tensor:
    """Mean absolute error between ``fake`` and ``real`` ``(B, 3, S, S)`` over the samples
    where ``use`` ``(B,)`` bool is set (0 when none is)."""
    if use.shape != fake.shape[:1]:
        raise ValueError(f"use must have shape ({fake.shape[0]},), got {tuple(use.shape)}")
    per_sample = (fake.float() - real.float()).abs().flatten(1).mean(1)  # (B,)
    weights = use.float()
    return (per_sample * weights).sum() / weights.sum().clamp(min=1.0)


def derangement(n: int, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation ``(n,)`` with no fixed point (``perm[i] != i``), for ``n >= 2``.

    Built as one random cycle: order the indices at random and send each to the next.
    """
    if n < 2:
        raise ValueError(f"a derangement needs n >= 2, got {n}")
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def relevant_sentences(own: Tensor, other: Tensor, coins: Tensor,
                       p_match: float) -> tuple[Tensor, Tensor]:
    """Each sample's relevant sentence: its own ``(B, D)`` row where ``coins < p_match``, else
    the row of ``other`` (another image's caption).

    ``coins`` ``(B,)`` are uniform draws in [0, 1), so a sample keeps its own caption with
    probability ``p_match``. Returns ``(relevant (B, D), matched (B,) bool)``.
    """
    if not 0.0 <= p_match <= 1.0:
        raise ValueError(f"p_match must lie in [0, 1], got {p_match}")
    if coins.shape != own.shape[:1] or other.shape != own.shape:
        raise ValueError(f"own {tuple(own.shape)}, other {tuple(other.shape)} and coins "
                         f"{tuple(coins.shape)} do not fit together")
    matched = (coins < p_match).to(own.device)  # (B,)
    return torch.where(matched[:, None], own, other), matched
