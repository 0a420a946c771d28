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

import copy

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
                        "grad_log_sigma": ca.log_sigma.weight.grad,
                        "mistakes": _ca_mistakes(ca, phi, eps)}}


#: The hidden test's names of the KL of the conditioning augmentation and of ``_kl_only``.
KL_NAMES = ("KL(N(mu, sigma^2) || N(0, 1)) of the layer", "kl_loss of 12 other codes")


def _ca_mistakes(ca: ConditioningAugmentation, phi: torch.Tensor, eps: torch.Tensor
                 ) -> dict[str, dict[str, torch.Tensor]]:
    """Likely wrong answers as correct outputs: with the log sigma layer halved (LeakyReLU is
    positively homogeneous), ``c`` is mu + exp(log_sigma / 2) eps; with ``sum(c * weight)``
    left out of the objective, log sigma's gradient is the one that reaches it through the
    KL alone (sigma detached in the sample)."""
    halved = copy.deepcopy(ca)
    with torch.no_grad():
        halved.log_sigma.weight.mul_(0.5)
        c_half = halved(phi, eps)[0]
    kl_only = copy.deepcopy(ca)
    kl_only.zero_grad()
    kl_loss(*kl_only(phi, eps)[1:]).backward()
    return {"c is mu + exp(log_sigma / 2) * eps: log_sigma is log sigma (not the log-variance), "
            "so sigma = exp(log_sigma)": {"c": c_half},
            "only the KL's gradient reaches log sigma: c must be mu + sigma * eps with the given "
            "eps and sigma = exp(log_sigma) in its graph (the reparameterisation trick: no "
            "detach, no fresh sample)":
                {"d/dW_log_sigma of sum(c * weight) + KL": kl_only.log_sigma.weight.grad}}


def _kl_mistakes(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> dict[str, dict]:
    """The KL's likely wrong answers on each ``(mu, log_sigma)`` of ``pairs`` (named as
    :data:`KL_NAMES`), as the correct KL of other inputs or its multiples: the opposite sign,
    the log-variance form (the KL of log_sigma / 2), a sum over the code dimensions."""
    def named(values: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        return dict(zip(KL_NAMES, values))

    kls = [kl_loss(mu, ls).detach() for mu, ls in pairs]
    return {"the KL has the wrong sign: it is -log sigma + (sigma^2 + mu^2 - 1) / 2, never "
            "negative": named([-kl for kl in kls]),
            "the KL is the log-variance form: here log_sigma is log sigma, so sigma^2 = "
            "exp(2 log_sigma)": named([kl_loss(mu, ls / 2).detach() for mu, ls in pairs]),
            "the KL is summed over the code dimensions: kl_loss is the mean over all B x C "
            "elements": named([kl * mu.shape[1] for kl, (mu, _) in zip(kls, pairs)])}


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
    fresh = copy.deepcopy(d)
    logits = pair_logits(d, real, fake, own, other, relevant)
    losses = discriminator_loss(*logits)
    losses.total.backward()
    mistakes = _discriminator_mistakes(fresh, (real, fake), own, other, relevant,
                                       tuple(t.detach() for t in logits))
    return {"inputs": {"config": dict(D_SIZES), "state": state, "real": real, "fake": fake,
                       "own": own, "other": other, "relevant": relevant},
            "outputs": {"logits": logits._asdict(), "losses": losses._asdict(),
                        "grads": {n: p.grad for n, p in d.named_parameters()},
                        "mistakes": mistakes}}


def _discriminator_mistakes(d: Discriminator, images: tuple[torch.Tensor, torch.Tensor],
                            own: torch.Tensor, other: torch.Tensor, relevant: torch.Tensor,
                            logits: tuple) -> dict[str, dict[str, torch.Tensor]]:
    """Likely wrong answers as correct outputs of other inputs, named as the hidden test
    names them: the mismatching pair scored with the relevant caption, the fake pair with
    the own one; the mismatching pair labelled real (BCE(l, 1) is BCE(-l, 0)); the
    mismatch and fake terms swapped."""
    d = copy.deepcopy(d)
    with torch.no_grad():
        relevant_twice = pair_logits(d, *images, own, relevant, relevant)
        own_twice = pair_logits(d, *images, own, other, own)
    losses = discriminator_loss(*logits)._asdict()
    labelled_real = discriminator_loss(logits[0], -logits[1], logits[2])._asdict()
    return {"the mismatching pair is scored with the relevant caption: pair the real image "
            "with `other`": {"PairLogits.mismatch": relevant_twice.mismatch},
            "the fake pair is scored with the own caption: G drew the fake from `relevant`":
                {"PairLogits.fake": own_twice.fake},
            "the mismatching pair is labelled real: D must call (real image, other caption) "
            "fake, BCE(logit, 0)": {f"DLosses.{n}": labelled_real[n].detach()
                                     for n in ("total", "mismatch")},
            "DLosses.mismatch and .fake are swapped: the fields are (total, real, mismatch, "
            "fake)": {"DLosses.mismatch": losses["fake"].detach(),
                      "DLosses.fake": losses["mismatch"].detach()}}


def _discriminator_logits(g: torch.Generator) -> dict:
    real, mismatch, fake = (_randn(g, 6, scale=2.0) for _ in range(3))
    losses = discriminator_loss(real, mismatch, fake)
    return {"inputs": {"real": real, "mismatch": mismatch, "fake": fake},
            "outputs": {"losses": losses._asdict()}}


def build() -> dict:
    """``{exercise: {"inputs": ..., "outputs": ...}}`` for notebook 09 (CPU, float64)."""
    g = torch.Generator().manual_seed(9)
    ca, kl = _conditioning_augmentation(g), _kl_only(g)
    pairs = [(ca["outputs"]["mu"].detach(), ca["outputs"]["log_sigma"].detach()),
             (kl["inputs"]["mu"], kl["inputs"]["log_sigma"])]
    for hint, values in _kl_mistakes(pairs).items():
        ca["outputs"]["mistakes"][hint] = values
    return {"nb09_conditioning_augmentation": ca,
            "nb09_conditioning_augmentation_kl": kl,
            "nb09_discriminator_loss": _discriminator(g),
            "nb09_discriminator_loss_logits": _discriminator_logits(g)}
