"""Reference outputs of notebook 09's exercises (SISGAN), for its hidden tests.

* ``nb09_conditioning_augmentation``: a :class:`~t2ilib.sisgan.model.ConditioningAugmentation`
  with stored weights on stored sentences and noise: ``c``, ``mu``, ``log_sigma``, the KL of
  ``(mu, log_sigma)`` and the gradients of ``sum(c * weight) + KL`` with respect to the
  sentences and both linear layers;
* ``nb09_conditioning_augmentation_kl``: :func:`~t2ilib.sisgan.model.kl_loss` on codes with
  ``log_sigma`` from -2 to 1.5;
* ``nb09_discriminator_loss``: a small SISGAN discriminator (stored config and weights, training
  mode) on stored real and fake images and three sentence batches: the logits of the three
  pairs (:func:`~t2ilib.sisgan.losses.pair_logits`), the loss terms
  (:func:`~t2ilib.sisgan.losses.discriminator_loss`) and D's parameter gradients;
* ``nb09_discriminator_loss_logits``: :func:`~t2ilib.sisgan.losses.discriminator_loss` on
  stored logits.

Everything is computed in float64 (rounding cannot differ between machines); the hidden tests
run the student's code in float32 on the same values and compare with a tolerance.
"""

from __future__ import annotations

import torch

from t2ilib.sisgan.losses import discriminator_loss, pair_logits
from t2ilib.sisgan.model import ConditioningAugmentation, Discriminator, SISGANConfig, kl_loss

#: The discriminator of ``nb09_discriminator_loss`` (16 px: three stride-2 convs down to 4x4).
D_SIZES = {"image_size": 16, "sentence_dim": 6, "ndf": 2, "d_text_dim": 3}


def _randn(g: torch.Generator, *shape: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=g, dtype=torch.float64)


def _conditioning_augmentation(g: torch.Generator) -> dict:
    batch, sentence_dim, condition_dim = 5, 6, 4
    ca = ConditioningAugmentation(sentence_dim, condition_dim).to(torch.float64)
    with torch.no_grad():
        ca.mu.weight.copy_(_randn(g, condition_dim, sentence_dim, scale=0.5))
        ca.log_sigma.weight.copy_(_randn(g, condition_dim, sentence_dim, scale=0.5))
    state = {k: v.clone() for k, v in ca.state_dict().items()}
    phi = _randn(g, batch, sentence_dim)
    eps = _randn(g, batch, condition_dim)
    weight = _randn(g, batch, condition_dim)  # the test's objective: sum(c * weight) + KL
    phi_leaf = phi.clone().requires_grad_(True)
    c, mu, log_sigma = ca(phi_leaf, eps)
    kl = kl_loss(mu, log_sigma)
    ((c * weight).sum() + kl).backward()
    return {"inputs": {"sentence_dim": sentence_dim, "condition_dim": condition_dim,
                       "state": state, "phi": phi, "eps": eps, "weight": weight},
            "outputs": {"c": c, "mu": mu, "log_sigma": log_sigma, "kl": kl,
                        "grad_phi": phi_leaf.grad, "grad_mu": ca.mu.weight.grad,
                        "grad_log_sigma": ca.log_sigma.weight.grad}}


def _kl_only(g: torch.Generator) -> dict:
    mu = _randn(g, 4, 3, scale=1.5)
    log_sigma = torch.linspace(-2.0, 1.5, 12, dtype=torch.float64).view(4, 3)
    return {"inputs": {"mu": mu, "log_sigma": log_sigma},
            "outputs": {"kl": kl_loss(mu, log_sigma)}}


def _discriminator(g: torch.Generator) -> dict:
    batch = 5
    d = Discriminator(SISGANConfig(**D_SIZES)).to(torch.float64).train()
    with torch.no_grad():
        for p in d.parameters():
            p.copy_(_randn(g, *p.shape, scale=0.3))
    state = {k: v.clone() for k, v in d.state_dict().items()}  # before BN's running stats move
    real = torch.rand(batch, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    fake = torch.rand(batch, 3, 16, 16, generator=g, dtype=torch.float64) * 2 - 1
    own = _randn(g, batch, D_SIZES["sentence_dim"])
    other = own[torch.tensor([2, 0, 4, 1, 3])]  # a derangement: no image keeps its caption
    relevant = torch.where(torch.tensor([True, False, True, False, False])[:, None], own, other)
    logits = pair_logits(d, real, fake, own, other, relevant)
    losses = discriminator_loss(*logits)
    losses.total.backward()
    return {"inputs": {"config": dict(D_SIZES), "state": state, "real": real, "fake": fake,
                       "own": own, "other": other, "relevant": relevant},
            "outputs": {"logits": logits._asdict(), "losses": losses._asdict(),
                        "grads": {n: p.grad for n, p in d.named_parameters()}}}


def _discriminator_logits(g: torch.Generator) -> dict:
    real, mismatch, fake = (_randn(g, 6, scale=2.0) for _ in range(3))
    losses = discriminator_loss(real, mismatch, fake)
    return {"inputs": {"real": real, "mismatch": mismatch, "fake": fake},
            "outputs": {"losses": losses._asdict()}}


def build() -> dict:
    """``{exercise: {"inputs": ..., "outputs": ...}}`` for notebook 09 (CPU, float64)."""
    g = torch.Generator().manual_seed(9)
    return {"nb09_conditioning_augmentation": _conditioning_augmentation(g),
            "nb09_conditioning_augmentation_kl": _kl_only(g),
            "nb09_discriminator_loss": _discriminator(g),
            "nb09_discriminator_loss_logits": _discriminator_logits(g)}
