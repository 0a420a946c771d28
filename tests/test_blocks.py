"""Conditional BN, DF-GAN's affine fusion and the DFBlock (t2ilib.ssagan.blocks)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from t2ilib.ssagan.blocks import Affine, ConditionalBatchNorm2d, DFBlock, condition_mlp

from .helpers import randomize_zero_params

B, C, H, W, D = 3, 4, 5, 6, 8  # small sizes: batch, channels, height, width, condition dim


def batch_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode BN written out: per channel, over batch and space, biased variance."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def mlp(seq: torch.nn.Sequential, s: torch.Tensor) -> torch.Tensor:
    """A Linear-ReLU-Linear MLP evaluated by hand from its weights."""
    first, last = seq[0], seq[2]
    return torch.relu(s @ first.weight.T + first.bias) @ last.weight.T + last.bias



@pytest.fixture
def xs() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return 2 + 3 * torch.randn(B, C, H, W, generator=gen), torch.randn(B, D, generator=gen)


def test_condition_mlp_shapes():
    seq = condition_mlp(D, 16, C)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert seq(torch.randn(B, D)).shape == (B, C)


def test_conditional_bn_starts_as_plain_bn(xs):
    x, s = xs
    cbn = ConditionalBatchNorm2d(C, D)
    y = cbn(x, s)
    torch.testing.assert_close(y, batch_norm(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(cbn(x, -s), y)  # the condition has no effect yet


def test_conditional_bn_matches_formula(xs):
    x, s = xs
    cbn = ConditionalBatchNorm2d(C, D)
    randomize_zero_params(cbn)
    gamma = 1 + s @ cbn.gamma.weight.T + cbn.gamma.bias  # (B, C)
    beta = s @ cbn.beta.weight.T + cbn.beta.bias
    expected = torch.empty_like(x)
    x_hat = batch_norm(x)
    for b in range(B):
        for c in range(C):
            expected[b, c] = gamma[b, c] * x_hat[b, c] + beta[b, c]
    torch.testing.assert_close(cbn(x, s), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(cbn(x, s), cbn(x, s.flip(0)))  # the condition now matters


def test_affine_starts_as_identity(xs):
    x, s = xs
    affine = Affine(C, D, hidden_dim=16)
    torch.testing.assert_close(affine(x, s), x, rtol=0, atol=0)
    assert torch.equal(affine.gamma[-1].bias, torch.ones(C))
    assert not affine.gamma[-1].weight.any() and not affine.beta[-1].weight.any()
    assert not affine.beta[-1].bias.any()


def test_affine_matches_formula_without_normalisation(xs):
    x, s = xs
    affine = Affine(C, D, hidden_dim=16)
    randomize_zero_params(affine)
    gamma, beta = mlp(affine.gamma, s), mlp(affine.beta, s)  # (B, C) each
    expected = torch.stack([torch.stack([gamma[b, c] * x[b, c] + beta[b, c] for c in range(C)])
                            for b in range(B)])
    torch.testing.assert_close(affine(x, s), expected, atol=1e-5, rtol=1e-5)
    # no normalisation: scaling x by 2 scales the gamma part only
    torch.testing.assert_close(affine(2 * x, s) - affine(x, s), gamma[:, :, None, None] * x,
                               atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("in_ch,out_ch", [(4, 4), (4, 6)])
def test_dfblock_starts_as_its_shortcut(xs, in_ch, out_ch):
    x, s = xs
    block = DFBlock(in_ch, out_ch, D, hidden_dim=16)
    y = block(x, s)
    assert y.shape == (B, out_ch, H, W)
    if in_ch == out_ch:
        torch.testing.assert_close(y, x, rtol=0, atol=0)
    else:
        conv = block.shortcut
        expected = torch.einsum("oi,bihw->bohw", conv.weight[:, :, 0, 0], x)
        expected = expected + conv.bias[None, :, None, None]
        torch.testing.assert_close(y, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(block(x, -s), y)  # gate 0: the text has no effect yet


def test_dfblock_wiring(xs):
    """Four affines, LeakyReLU(0.2), two convs, gated residual, in the documented order."""
    x, s = xs
    block = DFBlock(C, 6, D, hidden_dim=16)
    randomize_zero_params(block)
    lrelu = lambda t: torch.where(t > 0, t, 0.2 * t)  # noqa: E731
    h = lrelu(block.affine1(lrelu(block.affine0(x, s)), s))
    h = F.conv2d(h, block.conv1.weight, block.conv1.bias, padding=1)
    h = lrelu(block.affine3(lrelu(block.affine2(h, s)), s))
    h = F.conv2d(h, block.conv2.weight, block.conv2.bias, padding=1)
    expected = block.shortcut(x) + block.gate * h
    torch.testing.assert_close(block(x, s), expected, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(block(x, s), block(x, torch.randn(B, D)), atol=1e-3)


def test_dfblock_gradients_reach_every_parameter(xs):
    x, s = xs
    block = DFBlock(C, 6, D, hidden_dim=16)
    randomize_zero_params(block)
    s = s.clone().requires_grad_()
    block(x, s).square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert s.grad is not None and s.grad.abs().sum() > 0


@pytest.mark.parametrize("module", [ConditionalBatchNorm2d(C, D), Affine(C, D, 16),
                                    DFBlock(C, C, D, 16)], ids=["cbn", "affine", "dfblock"])
def test_bad_inputs_raise(module, xs):
    x, s = xs
    with pytest.raises(ValueError, match=rf"\(B, {D}\)"):
        module(x, torch.randn(B, D + 1))
    with pytest.raises(ValueError, match="batch size"):
        module(x, torch.randn(B + 1, D))
    with pytest.raises(ValueError, match=rf"\(B, {C}, H, W\)"):
        module(torch.randn(B, C + 1, H, W), s)
    with pytest.raises(ValueError):
        module(torch.randn(C, H, W), s)
