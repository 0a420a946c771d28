"""Tests of t2ilib.ssagan.losses: hinge terms, matching-aware pairs and MA-GP.

Expected values are computed independently: hinge terms by hand from fixed logits, MA-GP
from D's whose input gradient is known in closed form (linear and bilinear D), and the
penalty's derivative with respect to D's parameters by finite differences (gradcheck).
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from t2ilib.ssagan.losses import (
    HingeTerms,
    discriminator_adversarial_loss,
    discriminator_hinge_loss,
    generator_hinge_loss,
    hinge_fake,
    hinge_real,
    ma_gp,
    ma_gp_from_grads,
    mismatched_pairs,
)

# ----------------------------------------------------------------------------- hinge


def test_hinge_terms_by_hand():
    real = torch.tensor([2.0, 0.5, -1.0, 1.0])  # 1 - D -> 0, 0.5, 2, 0
    fake = torch.tensor([-3.0, 0.0, 0.25, -1.0])  # 1 + D -> 0, 1, 1.25, 0
    mis = torch.tensor([0.5, -2.0, 1.0])  # 1 + D -> 1.5, 0, 2
    assert hinge_real(real).item() == pytest.approx(2.5 / 4)
    assert hinge_fake(fake).item() == pytest.approx(2.25 / 4)
    terms = discriminator_hinge_loss(real, fake, mis)
    assert isinstance(terms, HingeTerms)
    assert terms.real.item() == pytest.approx(0.625)
    assert terms.fake.item() == pytest.approx(0.5625)
    assert terms.mismatch.item() == pytest.approx(3.5 / 3)
    assert terms.total.item() == pytest.approx(0.625 + 0.5 * (0.5625 + 3.5 / 3))


def test_hinge_gradients_by_hand():
    # d/dD relu(1 - D) = -1 where D < 1, else 0; divided by B for the mean
    real = torch.tensor([2.0, 0.5, -1.0], requires_grad=True)
    hinge_real(real).backward()
    assert torch.equal(real.grad, torch.tensor([0.0, -1.0, -1.0]) / 3)
    fake = torch.tensor([-2.0, 0.5], requires_grad=True)
    hinge_fake(fake).backward()
    assert torch.equal(fake.grad, torch.tensor([0.0, 1.0]) / 2)


def test_generator_loss_is_negative_mean_and_unclipped():
    fake = torch.tensor([3.0, -1.0, 10.0])
    assert generator_hinge_loss(fake).item() == pytest.approx(-4.0)


def test_hinge_of_low_precision_logits_is_float32():
    logits = torch.tensor([0.3, -0.7, 1.9], dtype=torch.bfloat16)
    out = hinge_real(logits)
    assert out.dtype == torch.float32
    expected = sum(max(0.0, 1 - float(v)) for v in logits) / 3
    assert out.item() == pytest.approx(expected)


@pytest.mark.parametrize("bad", [torch.zeros(4, 1), torch.zeros(()), torch.zeros(0)])
def test_hinge_rejects_bad_logit_shapes(bad):
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        hinge_real(bad)
    with pytest.raises(ValueError, match=r"shape \(B,\)"):
        generator_hinge_loss(bad)


# ------------------------------------------------------------------ mismatched pairs


def test_mismatched_pairs_shift_without_wrap():
    images = torch.arange(5.0).view(5, 1, 1, 1) * 10  # image i holds 10 i
    sentence = torch.arange(5.0).view(5, 1)  # sentence i holds i
    x, s = mismatched_pairs(images, sentence)
    assert x.shape == (4, 1, 1, 1) and s.shape == (4, 1)
    for i in range(4):  # image i meets sentence i+1
        assert x[i].item() == 10 * i and s[i].item() == i + 1


def test_mismatched_pairs_wrap():
    images = torch.arange(4.0).view(4, 1)
    sentence = torch.arange(4.0).view(4, 1)
    x, s = mismatched_pairs(images, sentence, wrap=True)
    assert x.flatten().tolist() == [0, 1, 2, 3]
    assert s.flatten().tolist() == [1, 2, 3, 0]


def test_mismatched_pairs_bad_input():
    with pytest.raises(ValueError, match="batch size"):
        mismatched_pairs(torch.zeros(3, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="at least 2"):
        mismatched_pairs(torch.zeros(1, 2), torch.zeros(1, 2))


class _TinyD(nn.Module):
    """D with the SSA-GAN interface: features (B, 2, 4, 4), logits (B,)."""

    def __init__(self, d_s: int = 3):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 3, padding=1)
        self.head = nn.Linear(2 * 16 + d_s, 1)

    def features(self, images):
        return torch.tanh(self.conv(nn.functional.adaptive_avg_pool2d(images, 4)))

    def logits(self, features, sentence):
        return self.head(torch.cat([features.flatten(1), sentence], dim=1)).squeeze(1)

    def forward(self, images, sentence):
        return self.logits(self.features(images), sentence)


def test_discriminator_adversarial_loss_matches_naive_loop():
    torch.manual_seed(0)
    d = _TinyD()
    real, fake, sent = torch.randn(4, 3, 8, 8), torch.randn(4, 3, 8, 8), torch.randn(4, 3)
    terms = discriminator_adversarial_loss(d, real, fake, sent)
    with torch.no_grad():  # one pair at a time, by the formula
        r = [max(0.0, 1 - d(real[i:i + 1], sent[i:i + 1]).item()) for i in range(4)]
        f = [max(0.0, 1 + d(fake[i:i + 1], sent[i:i + 1]).item()) for i in range(4)]
        m = [max(0.0, 1 + d(real[i:i + 1], sent[i + 1:i + 2]).item()) for i in range(3)]
    exp_r, exp_f, exp_m = sum(r) / 4, sum(f) / 4, sum(m) / 3
    assert terms.real.item() == pytest.approx(exp_r, rel=1e-5)
    assert terms.fake.item() == pytest.approx(exp_f, rel=1e-5)
    assert terms.mismatch.item() == pytest.approx(exp_m, rel=1e-5)
    assert terms.total.item() == pytest.approx(exp_r + (exp_f + exp_m) / 2, rel=1e-5)


def test_discriminator_adversarial_loss_detaches_fakes():
    torch.manual_seed(0)
    d = _TinyD()
    g_param = torch.ones((), requires_grad=True)  # stands in for G's weights
    fake = g_param * torch.randn(4, 3, 8, 8)
    terms = discriminator_adversarial_loss(d, torch.randn(4, 3, 8, 8), fake,
                                           torch.randn(4, 3))
    terms.total.backward()
    assert g_param.grad is None
    assert d.conv.weight.grad is not None and d.conv.weight.grad.abs().sum() > 0


def test_discriminator_adversarial_loss_bad_batch():
    with pytest.raises(ValueError, match="batch size"):
        discriminator_adversarial_loss(_TinyD(), torch.zeros(4, 3, 8, 8),
                                       torch.zeros(3, 3, 8, 8), torch.zeros(4, 3))


# ---------------------------------------------------------------------------- MA-GP


def test_ma_gp_linear_d_closed_form():
    # D(x, s) = <w, x> + <v, s> + c has the same gradient (w, v) at every pair, so
    # ||g||^2 = ||w||^2 + ||v||^2 and the penalty is k (||w||^2 + ||v||^2)^(p/2).
    torch.manual_seed(0)
    w, v = torch.randn(3, 4, 4), torch.randn(5)

    def d(x, s):
        return (x * w).sum(dim=(1, 2, 3)) + s @ v + 0.7

    x, s = torch.randn(6, 3, 4, 4), torch.randn(6, 5)
    sq = float((w**2).sum() + (v**2).sum())
    assert ma_gp(d, x, s).item() == pytest.approx(2.0 * sq**3, rel=1e-5)
    assert ma_gp(d, x, s, k=1.0, p=2.0).item() == pytest.approx(sq, rel=1e-5)
    # the joint norm, not the paper's ||grad_x|| + ||grad_s||
    sum_of_norms = (float((w**2).sum()) ** 0.5 + float((v**2).sum()) ** 0.5) ** 2
    assert abs(ma_gp(d, x, s, k=1.0, p=2.0).item() - sum_of_norms) > 1e-2


def _bilinear_d(a):
    """D(x, s) = s^T A vec(x): grad_x = A^T s, grad_s = A vec(x)."""
    def d(x, s):
        return ((s @ a) * x.flatten(1)).sum(dim=1)
    return d


def test_ma_gp_bilinear_d_per_sample_norms():
    torch.manual_seed(1)
    a = torch.randn(4, 12, dtype=torch.float64)
    x = torch.randn(5, 3, 2, 2, dtype=torch.float64)
    s = torch.randn(5, 4, dtype=torch.float64)
    expected = 0.0
    for b in range(5):  # naive loop over samples, with the closed-form gradients
        gx = [sum(s[b, i] * a[i, j] for i in range(4)) for j in range(12)]
        gs = [sum(a[i, j] * x[b].flatten()[j] for j in range(12)) for i in range(4)]
        norm = math.sqrt(sum(float(g) ** 2 for g in gx + gs))
        expected += norm**6 / 5
    got = ma_gp(_bilinear_d(a), x, s)
    assert got.dtype == torch.float64
    assert got.item() == pytest.approx(2.0 * expected, rel=1e-10)


def test_ma_gp_from_grads_flattens_and_joins():
    gx = torch.tensor([[[1.0, 2.0], [0.0, 2.0]], [[0.0, 0.0], [0.0, 0.0]]])  # (2, 2, 2)
    gs = torch.tensor([[4.0], [3.0]])  # (2, 1)
    # sample 0: ||(1, 2, 0, 2, 4)||^2 = 25; sample 1: ||(0, 0, 0, 0, 3)||^2 = 9
    assert ma_gp_from_grads(gx, gs, k=1.0, p=2.0).item() == pytest.approx(17.0)
    assert ma_gp_from_grads(gx, gs).item() == pytest.approx(2.0 * (5**6 + 3**6) / 2)


def test_ma_gp_gradcheck_wrt_d_parameters():
    # finite differences of the penalty w.r.t. D's weights (double backprop path)
    torch.manual_seed(2)
    x = torch.randn(3, 2, 2, 2, dtype=torch.float64)
    s = torch.randn(3, 2, dtype=torch.float64)
    a = (0.3 * torch.randn(2, 8, dtype=torch.float64)).requires_grad_(True)
    w = (0.3 * torch.randn(8, dtype=torch.float64)).requires_grad_(True)

    def penalty(a, w):
        def d(x, s):  # nonlinear in x so grad_x depends on x
            return ((s @ a) * torch.tanh(x.flatten(1) * w)).sum(dim=1)
        return ma_gp(d, x, s)

    assert torch.autograd.gradcheck(penalty, (a, w), eps=1e-6, atol=1e-6)


def test_ma_gp_reaches_d_parameters_not_inputs():
    torch.manual_seed(3)
    d = _TinyD()
    x = torch.randn(4, 3, 8, 8, requires_grad=True)
    s = torch.randn(4, 3, requires_grad=True)
    ma_gp(d, x, s).backward()
    for name, param in d.named_parameters():
        if name == "head.bias":  # a constant shift of D leaves its gradient alone
            assert param.grad is None or param.grad.abs().sum() == 0
            continue
        assert param.grad is not None and param.grad.abs().sum() > 0, name
    assert x.grad is None and s.grad is None  # taken at detached copies


def test_ma_gp_zero_gradient_is_finite():
    d = _TinyD()
    with torch.no_grad():
        d.head.weight.zero_()  # D is constant: gradient 0, penalty 0
    d.head.weight.requires_grad_(True)
    penalty = ma_gp(d, torch.randn(2, 3, 8, 8), torch.randn(2, 3))
    penalty.backward()
    assert penalty.item() == 0.0
    assert torch.isfinite(d.head.weight.grad).all()


def test_ma_gp_under_autocast_is_float32():
    torch.manual_seed(4)
    d = _TinyD()
    x, s = torch.randn(4, 3, 8, 8), torch.randn(4, 3)
    expected = ma_gp(d, x, s)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats = d.features(x)
        assert feats.dtype == torch.bfloat16  # autocast is really on out here
        got = ma_gp(d, x.to(torch.bfloat16), s)
    assert got.dtype == torch.float32
    # bf16 inputs carry ~3 significant digits; the gradient itself is float32
    assert got.item() == pytest.approx(expected.item(), rel=2e-2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = ma_gp(d, x, s)
    assert same.item() == pytest.approx(expected.item(), rel=1e-6)


def test_ma_gp_works_under_no_grad():
    d = _TinyD()
    x, s = torch.randn(3, 3, 8, 8), torch.randn(3, 3)
    with torch.no_grad():
        value = ma_gp(d, x, s)
    assert value.item() == pytest.approx(ma_gp(d, x, s).item())


def test_ma_gp_bad_input():
    d = _TinyD()
    with pytest.raises(ValueError, match="batch size"):
        ma_gp(d, torch.zeros(4, 3, 8, 8), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="must return shape"):
        ma_gp(lambda x, s: d(x, s)[:, None], torch.zeros(4, 3, 8, 8), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="batch size"):
        ma_gp_from_grads(torch.zeros(2, 3), torch.zeros(3, 3))
    with pytest.raises(ValueError, match="p > 0"):
        ma_gp_from_grads(torch.zeros(2, 3), torch.zeros(2, 3), p=0.0)
