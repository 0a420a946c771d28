"""SSA-GAN's generator and discriminator and the DF-GAN variant (t2ilib.ssagan.model)."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from t2ilib.runtime import seed_everything
from t2ilib.ssagan.model import (
    RESOLUTIONS,
    Discriminator,
    DownBlock,
    Generator,
    SSAGANConfig,
)

from .helpers import randomize_zero_params

# Channel multipliers per block, written out by hand from the reference (not from the module).
G_MULTS = {256: [8, 8, 8, 8, 4, 2, 1], 128: [8, 8, 8, 4, 2, 1], 64: [8, 8, 4, 2, 1],
           32: [8, 4, 2, 1]}
D_MULTS = {256: [1, 2, 4, 8, 16, 16, 16], 128: [1, 2, 4, 8, 16, 16], 64: [1, 2, 4, 8, 16],
           32: [1, 2, 4, 16]}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These nets are tiny: one intra-op thread avoids oversubscribing a busy CI machine
    (measured here: 32 s with 2 contended threads vs 4 s with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def conv(i: int, o: int, k: int, bias: bool = True) -> int:
    return i * o * k * k + (o if bias else 0)


def expected_generator_params(r: int, ngf: int, nz: int = 100, sd: int = 256,
                              block: str = "ssacn") -> int:
    """Count G's parameters by hand from the official model.py's architecture."""
    mlp = lambda c: (sd * 256 + 256) + (256 * c + c)  # noqa: E731  Linear(sd->256), Linear(256->c)
    mask_head = lambda c: conv(c, 100, 3) + 2 * 100 + conv(100, 1, 1)  # noqa: E731  conv, BN, conv
    chans = [ngf * m for m in G_MULTS[r]]
    total = nz * 16 * chans[0] + 16 * chans[0]  # fc
    for k, c_out in enumerate(chans):
        c_in = chans[max(k - 1, 0)]
        total += conv(c_in, c_out, 3) + conv(c_out, c_out, 3) + 1  # two convs, the gate
        total += conv(c_in, c_out, 1) if c_in != c_out else 0  # shortcut
        if block == "ssacn":
            total += 2 * mlp(c_in) + 2 * mlp(c_out)  # two affines, each gamma and beta
            total += mask_head(c_out) if k < len(chans) - 1 else 0
        else:
            total += 4 * mlp(c_in) + 4 * mlp(c_out)  # four affines
    if block == "ssacn":
        total += mask_head(chans[0]) + 2 * ngf  # first mask from the fc features; BN before RGB
    return total + conv(ngf, 3, 3)


def expected_discriminator_params(r: int, ndf: int, sd: int = 256) -> int:
    """Count D's parameters by hand (no unused shortcut where channels stay equal)."""
    chans = [ndf * m for m in D_MULTS[r]]
    total = conv(3, chans[0], 3)
    for c_in, c_out in zip(chans[:-1], chans[1:]):
        total += conv(c_in, c_out, 4, bias=False) + conv(c_out, c_out, 3, bias=False) + 1
        total += conv(c_in, c_out, 1) if c_in != c_out else 0
    return total + conv(16 * ndf + sd, 2 * ndf, 3, bias=False) + conv(2 * ndf, 1, 4, bias=False)



def test_official_parameter_counts_at_256px():
    """The official NetG / NetD (minus its unused layer) at ngf = ndf = 64, nz 100, 256-d text."""
    with torch.device("meta"):  # no memory, no init: counting only
        cfg = SSAGANConfig(resolution=256, ngf=64, ndf=64, nz=100, sentence_dim=256)
        assert n_params(Generator(cfg)) == 29_494_273
        assert n_params(Discriminator(cfg)) == 78_280_326


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_parameter_counts_match_hand_count(resolution):
    with torch.device("meta"):
        for ngf, ndf, sd in [(64, 64, 256), (32, 16, 100)]:
            cfg = SSAGANConfig(resolution=resolution, ngf=ngf, ndf=ndf, sentence_dim=sd)
            assert n_params(Generator(cfg)) == expected_generator_params(resolution, ngf, sd=sd)
            expected_d = expected_discriminator_params(resolution, ndf, sd)
            assert n_params(Discriminator(cfg)) == expected_d
            df = SSAGANConfig(resolution=resolution, ngf=ngf, sentence_dim=sd, block="df")
            assert n_params(Generator(df)) == expected_generator_params(resolution, ngf, sd=sd,
                                                                        block="df")


@pytest.mark.parametrize("resolution", RESOLUTIONS)
def test_shapes_at_every_resolution(resolution):
    torch.manual_seed(0)
    cfg = SSAGANConfig(resolution=resolution, ngf=2, ndf=2, nz=8, sentence_dim=16)
    g, d = Generator(cfg), Discriminator(cfg)
    randomize_zero_params(g)  # so that masks and images are not trivially constant
    z, s = torch.randn(2, 8), torch.randn(2, 16)
    with torch.no_grad():
        images, masks = g(z, s)
        assert images.shape == (2, 3, resolution, resolution)
        assert images.abs().max() <= 1.0
        assert [m.shape[-1] for m in masks] == [4 * 2**k for k in range(len(G_MULTS[resolution]))]
        for m in masks:
            assert m.shape[:2] == (2, 1) and m.shape[-2] == m.shape[-1]
            assert 0.0 <= m.min() and m.max() <= 1.0
        features = d.features(images)
        assert features.shape == (2, 32, 4, 4)  # 16 * ndf channels at 4x4
        logits = d.logits(features, s)
        assert logits.shape == (2,)
        torch.testing.assert_close(d(images, s), logits)


def test_df_variant_has_no_masks():
    cfg = SSAGANConfig(resolution=32, ngf=2, nz=8, sentence_dim=16, block="df")
    g = Generator(cfg)
    images, masks = g(torch.randn(2, 8), torch.randn(2, 16))
    assert images.shape == (2, 3, 32, 32) and masks == []
    assert g.mask_predictor is None
    assert not any(isinstance(m, nn.BatchNorm2d) for m in g.modules())  # DF-GAN v1: no BN in G


def test_masks_flow_as_upsampled_logits():
    """m_0 = sigmoid(P_0(fc)); m_k = sigmoid(bilinear_x2(logits of block k-1))."""
    torch.manual_seed(1)
    cfg = SSAGANConfig(resolution=32, ngf=2, nz=8, sentence_dim=16)
    g = Generator(cfg)
    randomize_zero_params(g)
    seen: list[torch.Tensor] = []
    for block in g.blocks:
        block.register_forward_hook(lambda mod, args, out: seen.append(out[1]))
    z, s = torch.randn(3, 8), torch.randn(3, 16)
    _, masks = g(z, s)
    first = torch.sigmoid(g.mask_predictor(g.fc(z).view(3, 16, 4, 4)))
    torch.testing.assert_close(masks[0], first)
    for k in range(1, len(masks)):
        up = F.interpolate(seen[k - 1], scale_factor=2, mode="bilinear", align_corners=True)
        torch.testing.assert_close(masks[k], torch.sigmoid(up))
    assert seen[-1] is None  # the last block predicts no mask


@pytest.mark.parametrize("block", ["ssacn", "df"])
def test_generator_starts_deaf_to_the_text(block):
    """Gates at 0 and zero-initialised modulations: at step 0 every block is its shortcut."""
    torch.manual_seed(2)
    g = Generator(SSAGANConfig(resolution=32, ngf=2, nz=8, sentence_dim=16, block=block))
    z = torch.randn(2, 8)
    a, masks_a = g(z, torch.randn(2, 16))
    b, masks_b = g(z, torch.randn(2, 16))
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    randomize_zero_params(g)
    c, _ = g(z, torch.randn(2, 16))
    d, _ = g(z, torch.randn(2, 16))
    assert not torch.allclose(c, d, atol=1e-4)


def test_gradients_reach_every_parameter():
    """One backward through D(G(z, s), s) touches every weight of G and D, and the inputs."""
    torch.manual_seed(3)
    # 128 px: the last down block keeps 16 ndf channels, so an unused shortcut would show
    cfg = SSAGANConfig(resolution=128, ngf=2, ndf=2, nz=8, sentence_dim=16)
    g, d = Generator(cfg), Discriminator(cfg)
    randomize_zero_params(g, seed=1)
    randomize_zero_params(d, seed=2)
    z, s = torch.randn(2, 8), torch.randn(2, 16, requires_grad=True)
    images, _ = g(z, s)
    images.retain_grad()
    d(images, s).sum().backward()
    for net in (g, d):
        for name, p in net.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all(), name
            assert p.grad.abs().sum() > 0, name
    assert images.grad.abs().sum() > 0 and s.grad.abs().sum() > 0


def test_down_block_with_equal_channels_has_no_shortcut_weights():
    block = DownBlock(8, 8)
    assert isinstance(block.shortcut, nn.Identity)
    assert n_params(block) == 8 * 8 * 16 + 8 * 8 * 9 + 1
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(block(x), F.avg_pool2d(x, 2))  # gate 0: pooled identity


def test_discriminator_split_keeps_the_graph():
    """MA-GP needs d D(x, s) / d(x, s) through features and logits: nothing is detached."""
    torch.manual_seed(4)
    d = Discriminator(SSAGANConfig(resolution=32, ndf=2, sentence_dim=16))
    randomize_zero_params(d)
    x = torch.randn(2, 3, 32, 32, requires_grad=True)
    s = torch.randn(2, 16, requires_grad=True)
    gx, gs = torch.autograd.grad(d.logits(d.features(x), s).sum(), (x, s), create_graph=True)
    assert gx.shape == x.shape and gs.shape == s.shape
    (gx.square().sum() + gs.square().sum()).backward()  # a penalty on the gradient trains D
    assert d.stem.weight.grad.abs().sum() > 0


def test_determinism_under_a_fixed_seed():
    def run(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed_everything(seed)
        cfg = SSAGANConfig(resolution=32, ngf=2, ndf=2, nz=8, sentence_dim=16)
        g, d = Generator(cfg), Discriminator(cfg)
        randomize_zero_params(g)
        z, s = torch.randn(2, 8), torch.randn(2, 16)
        images, _ = g(z, s)
        return images, d(images, s)

    a, b, c = run(0), run(0), run(1)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.allclose(a[0], c[0])


@pytest.mark.parametrize("kwargs,match", [
    ({"resolution": 48}, "resolution must be one of"),
    ({"resolution": 512}, "resolution must be one of"),
    ({"block": "attn"}, "block must be one of"),
    ({"ngf": 0}, "ngf must be a positive int"),
    ({"sentence_dim": 2.5}, "sentence_dim must be a positive int"),
])
def test_bad_config_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SSAGANConfig(**kwargs)


def test_bad_inputs_raise():
    cfg = SSAGANConfig(resolution=32, ngf=2, ndf=2, nz=8, sentence_dim=16)
    g, d = Generator(cfg), Discriminator(cfg)
    z, s, x = torch.randn(2, 8), torch.randn(2, 16), torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"z must have shape \(B, 8\)"):
        g(torch.randn(2, 9), s)
    with pytest.raises(ValueError, match=r"sentence must have shape \(B, 16\)"):
        g(z, torch.randn(2, 256))
    with pytest.raises(ValueError, match="batch size"):
        g(z, torch.randn(3, 16))
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 32, 32\)"):
        d(torch.randn(2, 3, 64, 64), s)
    with pytest.raises(ValueError, match=r"sentence must have shape \(B, 16\)"):
        d(x, torch.randn(2, 15))
    with pytest.raises(ValueError, match=r"features must have shape \(B, 32, 4, 4\)"):
        d.logits(torch.randn(2, 16, 4, 4), s)
    with pytest.raises(ValueError, match="batch size"):
        d.logits(d.features(x), torch.randn(1, 16))
