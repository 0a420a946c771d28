"""The semantic-spatial affine, the mask predictor and the SSACN block (t2ilib.ssagan.ssacn)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from t2ilib.ssagan.blocks import Affine
from t2ilib.ssagan.ssacn import MaskPredictor, SemanticSpatialAffine, SSACNBlock

from .helpers import randomize_zero_params

B, C, H, W, D = 3, 4, 5, 6, 8  # small sizes: batch, channels, height, width, condition dim


def batch_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Training-mode BN written out: per channel, over batch and space, biased variance."""
    mean = x.mean(dim=(0, 2, 3), keepdim=True)
    var = ((x - mean) ** 2).mean(dim=(0, 2, 3), keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def mlp(seq: nn.Sequential, s: torch.Tensor) -> torch.Tensor:
    """A Linear-ReLU-Linear MLP evaluated by hand from its weights."""
    first, last = seq[0], seq[2]
    return torch.relu(s @ first.weight.T + first.bias) @ last.weight.T + last.bias



@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(2)
    x = 1 + 2 * torch.randn(B, C, H, W, generator=gen)
    s = torch.randn(B, D, generator=gen)
    mask = torch.rand(B, 1, H, W, generator=gen)
    return x, s, mask


def test_affine_starts_as_batch_norm_whatever_text_and_mask(data):
    x, s, mask = data
    affine = SemanticSpatialAffine(C, D, hidden_dim=16)
    for mlp_ in (affine.gamma, affine.beta):  # the official init: last layer all zero
        assert not mlp_[-1].weight.any() and not mlp_[-1].bias.any()
    assert affine.norm.weight is None  # BN without its own affine
    expected = batch_norm(x)
    torch.testing.assert_close(affine(x, s, mask), expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(affine(x, -s, None), expected, atol=1e-5, rtol=1e-5)


def test_affine_matches_formula(data):
    x, s, mask = data
    affine = SemanticSpatialAffine(C, D, hidden_dim=16)
    randomize_zero_params(affine)
    gamma, beta, x_hat = mlp(affine.gamma, s), mlp(affine.beta, s), batch_norm(x)
    expected = torch.empty_like(x)
    for b in range(B):
        for c in range(C):
            m = mask[b, 0]
            expected[b, c] = (1 + m * gamma[b, c]) * x_hat[b, c] + m * beta[b, c]
    torch.testing.assert_close(affine(x, s, mask), expected, atol=1e-5, rtol=1e-5)


def test_mask_decides_where_the_text_acts(data):
    x, s, _ = data
    affine = SemanticSpatialAffine(C, D, hidden_dim=16)
    randomize_zero_params(affine)
    mask = torch.zeros(B, 1, H, W)
    mask[..., : W // 2] = 1.0  # text on the left half only
    other = torch.randn(B, D)
    y1, y2 = affine(x, s, mask), affine(x, other, mask)
    torch.testing.assert_close(y1[..., W // 2:], y2[..., W // 2:], rtol=0, atol=0)
    torch.testing.assert_close(y1[..., W // 2:], batch_norm(x)[..., W // 2:], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(y1[..., : W // 2], y2[..., : W // 2], atol=1e-3)
    torch.testing.assert_close(affine(x, s, None), affine(x, s, torch.ones(B, 1, H, W)))


def df_style_twin(block: SSACNBlock, cond_dim: int, hidden_dim: int) -> nn.ModuleDict:
    """DF-GAN affines that copy ``block``'s SSACN weights: gamma_DF = 1 + gamma_SSA."""
    twin = nn.ModuleDict()
    for name in ("affine0", "affine1"):
        ssa = getattr(block, name)
        df = Affine(ssa.num_features, cond_dim, hidden_dim)
        df.gamma.load_state_dict(ssa.gamma.state_dict())
        df.beta.load_state_dict(ssa.beta.state_dict())
        with torch.no_grad():
            df.gamma[-1].bias += 1.0
        twin[name] = df
    return twin


@pytest.mark.parametrize("in_ch,out_ch", [(4, 4), (4, 6)])
def test_ssacn_with_unit_mask_is_a_df_style_block(data, in_ch, out_ch):
    """m = 1: BN -> DF affine -> ReLU -> conv -> BN -> DF affine -> ReLU -> conv, same weights."""
    x, s, _ = data
    block = SSACNBlock(in_ch, out_ch, D, hidden_dim=16)
    randomize_zero_params(block)
    twin = df_style_twin(block, D, 16)
    h = F.relu(twin["affine0"](batch_norm(x), s))
    h = F.conv2d(h, block.conv1.weight, block.conv1.bias, padding=1)
    h = F.relu(twin["affine1"](batch_norm(h), s))
    h = F.conv2d(h, block.conv2.weight, block.conv2.bias, padding=1)
    expected = block.shortcut(x) + block.gate * h
    out, _ = block(x, s, torch.ones(B, 1, H, W))
    torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("in_ch,out_ch", [(4, 4), (4, 6)])
def test_block_starts_as_its_shortcut(data, in_ch, out_ch):
    x, s, mask = data
    block = SSACNBlock(in_ch, out_ch, D, hidden_dim=16)
    assert block.gate.item() == 0.0
    out, logits = block(x, s, mask)
    assert out.shape == (B, out_ch, H, W) and logits.shape == (B, 1, H, W)
    if in_ch == out_ch:
        torch.testing.assert_close(out, x, rtol=0, atol=0)
    else:
        w, bias = block.shortcut.weight[:, :, 0, 0], block.shortcut.bias
        expected = torch.einsum("oi,bihw->bohw", w, x) + bias[None, :, None, None]
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=1e-5)
    out2, _ = block(x, torch.randn(B, D), torch.rand(B, 1, H, W))
    torch.testing.assert_close(out2, out, rtol=0, atol=0)


def test_mask_predictor_layers_and_logits():
    pred = MaskPredictor(C, hidden=7)
    kinds = [type(m).__name__ for m in pred.net]
    assert kinds == ["Conv2d", "BatchNorm2d", "ReLU", "Conv2d"]
    assert pred.net[0].kernel_size == (3, 3) and pred.net[3].kernel_size == (1, 1)
    logits = pred(torch.randn(B, C, H, W))
    assert logits.shape == (B, 1, H, W)
    assert logits.min() < 0 < logits.max()  # raw logits, not yet squashed


def test_block_predicts_next_mask_from_its_output(data):
    x, s, mask = data
    block = SSACNBlock(C, 6, D, hidden_dim=16)
    randomize_zero_params(block)
    out, logits = block(x, s, mask)
    torch.testing.assert_close(logits, block.mask_predictor(out))
    last = SSACNBlock(C, 6, D, hidden_dim=16, predict_mask=False)
    assert last.mask_predictor is None and last(x, s, mask)[1] is None


def test_gradients_reach_every_parameter(data):
    x, s, mask = data
    block = SSACNBlock(C, 6, D, hidden_dim=16)
    randomize_zero_params(block)
    mask = mask.clone().requires_grad_()
    out, logits = block(x, s, mask)
    (out.square().mean() + logits.square().mean()).backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert mask.grad.abs().sum() > 0  # the mask is trained through the block


def test_bad_inputs_raise(data):
    x, s, mask = data
    block = SSACNBlock(C, C, D, hidden_dim=16)
    with pytest.raises(ValueError, match=r"mask must have shape \(3, 1, 5, 6\)"):
        block(x, s, mask[..., :-1])
    with pytest.raises(ValueError, match=r"mask must have shape"):
        block(x, s, mask.expand(B, C, H, W))
    with pytest.raises(ValueError, match=rf"\(B, {D}\)"):
        block(x, torch.randn(B, D + 2), mask)
    with pytest.raises(ValueError, match="batch size"):
        block(x, torch.randn(B - 1, D), mask)
