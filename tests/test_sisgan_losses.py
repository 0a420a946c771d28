"""SISGAN's losses against hand computations and closed forms; the text-pair samplers."""

from __future__ import annotations

import math

import pytest
import torch

from t2ilib.sisgan import model
from t2ilib.sisgan.losses import (
    derangement,
    discriminator_loss,
    generator_loss,
    kl_loss,
    pair_logits,
    reconstruction_loss,
    relevant_sentences,
)
from t2ilib.sisgan.model import Discriminator, SISGANConfig


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_kl_matches_the_closed_form_and_torch_distributions():
    mu = torch.tensor([[0.0, 1.0], [-2.0, 0.5]])
    log_sigma = torch.tensor([[0.0, 0.0], [math.log(2.0), -1.0]])
    by_hand = [0.0, 0.5, -math.log(2) + 0.5 * (4 + 4 - 1), 1 + 0.5 * (math.exp(-2) + 0.25 - 1)]
    assert kl_loss(mu, log_sigma).item() == pytest.approx(sum(by_hand) / 4)
    q = torch.distributions.Normal(mu, log_sigma.exp())
    p = torch.distributions.Normal(torch.zeros_like(mu), torch.ones_like(mu))
    torch.testing.assert_close(kl_loss(mu, log_sigma),
                               torch.distributions.kl_divergence(q, p).mean())
    assert kl_loss(torch.zeros(3, 4), torch.zeros(3, 4)).item() == 0.0


def test_discriminator_loss_by_hand():
    real, mismatch = torch.tensor([2.0, -1.0]), torch.tensor([0.5, 3.0])
    fake = torch.tensor([0.0, -2.0])
    d = discriminator_loss(real, mismatch, fake)
    r = (softplus(-2.0) + softplus(1.0)) / 2  # BCE(x, 1) = softplus(-x)
    m = (softplus(0.5) + softplus(3.0)) / 2  # BCE(x, 0) = softplus(x)
    f = (softplus(0.0) + softplus(-2.0)) / 2
    assert d.real.item() == pytest.approx(r)
    assert d.mismatch.item() == pytest.approx(m)
    assert d.fake.item() == pytest.approx(f)
    assert d.total.item() == pytest.approx(r + 0.5 * m + 0.5 * f)


def test_pair_logits_scores_the_three_pairs_and_detaches_the_fake():
    torch.manual_seed(0)
    d = Discriminator(SISGANConfig(image_size=16, sentence_dim=4, ndf=2, d_text_dim=3)).train()
    real, base = torch.rand(3, 3, 16, 16) * 2 - 1, torch.rand(3, 3, 16, 16) * 2 - 1
    own, other, relevant = torch.randn(3, 3, 4).unbind(0)  # (B, D) each
    g_weight = torch.ones((), requires_grad=True)  # stands in for G
    logits = pair_logits(d, real, g_weight * base, own, other, relevant)
    with torch.no_grad():  # one call per pair: each call's batch-norm statistics are its own
        want = [d(real, own), d(real, other), d(base, relevant)]
    for got, expected in zip(logits, want):
        torch.testing.assert_close(got, expected)
    assert not torch.allclose(logits.real, logits.mismatch)  # the caption matters
    discriminator_loss(*logits).total.backward()
    assert g_weight.grad is None  # D's loss does not reach G
    assert all(p.grad is not None for p in d.parameters())


def test_kl_loss_lives_beside_the_conditioning_augmentation():
    assert kl_loss is model.kl_loss  # re-exported by losses for the training step


def test_a_perfect_discriminator_has_a_small_loss():
    big = torch.full((4,), 20.0)
    assert discriminator_loss(big, -big, -big).total.item() < 1e-6
    assert discriminator_loss(-big, big, big).total.item() > 20


def test_generator_loss_terms():
    logits = torch.tensor([1.0, -1.0])
    mu, log_sigma = torch.tensor([[1.0]]), torch.tensor([[0.0]])
    g = generator_loss(logits, mu, log_sigma, kl_weight=2.0)
    adv = (softplus(-1.0) + softplus(1.0)) / 2
    assert g.adversarial.item() == pytest.approx(adv)
    assert g.kl.item() == pytest.approx(0.5)
    assert g.reconstruction.item() == 0.0
    assert g.total.item() == pytest.approx(adv + 2.0 * 0.5)
    g2 = generator_loss(logits, mu, log_sigma, 1.0, torch.tensor(0.3), recon_weight=0.2)
    assert g2.total.item() == pytest.approx(adv + 0.5 + 0.06)


def test_reconstruction_counts_only_the_chosen_samples():
    real = torch.zeros(3, 3, 2, 2)
    fake = torch.stack([torch.full((3, 2, 2), v) for v in (0.5, -1.0, 2.0)])
    use = torch.tensor([True, False, True])
    assert reconstruction_loss(fake, real, use).item() == pytest.approx((0.5 + 2.0) / 2)
    assert reconstruction_loss(fake, real, torch.zeros(3, dtype=torch.bool)).item() == 0.0
    with pytest.raises(ValueError, match="use must have shape"):
        reconstruction_loss(fake, real, torch.ones(2, dtype=torch.bool))


@pytest.mark.parametrize("n", [2, 3, 7, 64])
def test_derangement_is_a_permutation_without_fixed_points(n):
    for seed in range(20):
        perm = derangement(n, torch.Generator().manual_seed(seed))
        assert sorted(perm.tolist()) == list(range(n))
        assert (perm != torch.arange(n)).all()
    draws = {tuple(derangement(n, torch.Generator().manual_seed(s)).tolist()) for s in range(20)}
    assert len(draws) == min(math.factorial(n - 1), 20) or len(draws) > 15  # not one shift
    with pytest.raises(ValueError):
        derangement(1)


def test_relevant_sentences_rate_and_choice():
    b = 4000
    own = torch.arange(b, dtype=torch.float)[:, None].repeat(1, 3)
    other = own[derangement(b, torch.Generator().manual_seed(0))]
    coins = torch.rand(b, generator=torch.Generator().manual_seed(1))
    for p in (0.0, 0.5, 0.8, 1.0):
        relevant, matched = relevant_sentences(own, other, coins, p)
        assert abs(matched.float().mean().item() - p) < 0.03
        assert torch.equal(relevant[matched], own[matched])
        assert torch.equal(relevant[~matched], other[~matched])
        assert (relevant[~matched] != own[~matched]).all()  # a mismatch is never the own caption
    with pytest.raises(ValueError, match="p_match"):
        relevant_sentences(own, other, coins, 1.5)
