"""SISGAN's networks: every stage's shape (the paper's sizes), CA, D's logits, the VGG trunk."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from t2ilib.damsm.image_encoder import MissingWeightsError
from t2ilib.sisgan.model import (
    ConditioningAugmentation,
    Discriminator,
    Generator,
    ResidualBlock,
    SISGANConfig,
    VGGEncoder,
    find_vgg16_bn_weights,
    standard_normal,
)

TINY = SISGANConfig(image_size=64, sentence_dim=12, condition_dim=6, ngf=4, ndf=4, n_residual=2,
                    d_text_dim=5)


def test_paper_sizes_give_the_paper_shapes():
    torch.manual_seed(0)
    config = SISGANConfig()  # 64 px, ngf 128, ndf 64, 256-d DAMSM sentences
    g, d = Generator(config).eval(), Discriminator(config).eval()
    x, phi = torch.rand(1, 3, 64, 64) * 2 - 1, torch.randn(1, 256)
    with torch.no_grad():
        features = g.encoder(x)
        assert features.shape == (1, 512, 16, 16)  # the 512 x 16 x 16 bottleneck
        c, mu, log_sigma = g.ca(phi)
        assert c.shape == mu.shape == log_sigma.shape == (1, 128)
        assert g.fuse[0].in_channels == 512 + 128 and g.fuse[0].out_channels == 512
        assert len(g.residual) == 4
        y, _, _ = g(x, phi)
        assert y.shape == (1, 3, 64, 64) and y.abs().max() <= 1
        assert d.features(x).shape == (1, 512, 4, 4)
        assert d(x, phi).shape == (1,)  # batch size 1 works (no squeeze())
    convs = [m for m in d.trunk if isinstance(m, nn.Conv2d)]
    assert [(m.in_channels, m.out_channels, m.stride[0]) for m in convs] == [
        (3, 64, 2), (64, 128, 2), (128, 256, 2), (256, 512, 2)]
    assert d.text.in_features == 256 and d.text.out_features == 128
    assert d.head[0].in_channels == 512 + 128


def test_tiny_forward_and_gradients():
    torch.manual_seed(0)
    g, d = Generator(TINY), Discriminator(TINY)
    x, phi = torch.rand(3, 3, 64, 64) * 2 - 1, torch.randn(3, 12)
    y, mu, log_sigma = g(x, phi)
    assert y.shape == x.shape and mu.shape == (3, 6)
    d(y, phi).sum().backward()
    assert all(p.grad is not None for p in g.parameters())
    assert all(p.grad is not None for p in d.parameters())


@pytest.mark.parametrize("size, d_convs", [(32, 3), (64, 4), (128, 5)])
def test_other_sizes(size, d_convs):
    config = SISGANConfig(image_size=size, sentence_dim=8, condition_dim=4, ngf=2, ndf=2,
                          n_residual=1)
    g, d = Generator(config), Discriminator(config)
    x = torch.zeros(2, 3, size, size)
    y, _, _ = g(x, torch.zeros(2, 8))
    assert y.shape == x.shape
    assert d.features(x).shape == (2, 16, 4, 4)
    assert sum(isinstance(m, nn.Conv2d) for m in d.trunk) == d_convs


def test_conditioning_augmentation_is_mu_plus_sigma_eps():
    torch.manual_seed(0)
    ca = ConditioningAugmentation(5, 3)
    phi = torch.randn(4, 5)
    eps = torch.randn(4, 3)
    c, mu, log_sigma = ca(phi, eps)
    expected_mu = nn.functional.leaky_relu(phi @ ca.mu.weight.T, 0.2)
    expected_ls = nn.functional.leaky_relu(phi @ ca.log_sigma.weight.T, 0.2)
    torch.testing.assert_close(mu, expected_mu)
    torch.testing.assert_close(log_sigma, expected_ls)
    torch.testing.assert_close(c, expected_mu + expected_ls.exp() * eps)
    c0, _, _ = ca(phi, torch.zeros(4, 3))
    torch.testing.assert_close(c0, mu)
    # seeded draws repeat, different seeds differ
    a, _, _ = ca(phi, generator=torch.Generator().manual_seed(1))
    b, _, _ = ca(phi, generator=torch.Generator().manual_seed(1))
    e, _, _ = ca(phi, generator=torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, e)


def test_standard_normal_follows_the_generator_and_the_reference_tensor():
    like = torch.zeros(2, dtype=torch.float64)
    a = standard_normal((3, 4), like, torch.Generator().manual_seed(7))
    b = standard_normal((3, 4), like, torch.Generator().manual_seed(7))
    assert a.shape == (3, 4) and a.dtype == torch.float64 and torch.equal(a, b)
    torch.manual_seed(1)
    c = standard_normal((3, 4), like)  # the global RNG
    assert not torch.equal(a, c) and c.device == like.device


def test_residual_block_adds_and_rectifies():
    block = ResidualBlock(3)
    for m in block.body:
        if isinstance(m, nn.Conv2d):
            nn.init.zeros_(m.weight)
    h = torch.randn(2, 3, 4, 4)
    torch.testing.assert_close(block(h), torch.relu(h))  # body = 0 -> ReLU(h)


def test_init_is_dcgan_like():
    g = Generator(SISGANConfig(ngf=32))
    w = g.residual[0].body[0].weight.detach()
    assert abs(float(w.std()) - 0.02) < 0.002 and abs(float(w.mean())) < 0.002
    bn = g.residual[0].body[1]
    assert abs(float(bn.weight.detach().mean()) - 1.0) < 0.01
    assert float(bn.bias.detach().abs().max()) == 0


def test_wrong_inputs_are_refused():
    g, d = Generator(TINY), Discriminator(TINY)
    with pytest.raises(ValueError, match="images must be"):
        g(torch.zeros(1, 3, 32, 32), torch.zeros(1, 12))
    with pytest.raises(ValueError, match="sentences must be"):
        g(torch.zeros(2, 3, 64, 64), torch.zeros(2, 7))
    with pytest.raises(ValueError, match="images must be"):
        d(torch.zeros(1, 1, 64, 64), torch.zeros(1, 12))
    for bad in ({"image_size": 60}, {"image_size": 48}, {"encoder": "resnet"}, {"ngf": 0}):
        with pytest.raises(ValueError):
            SISGANConfig(**bad)


def test_vgg_trunk_layout_frozen_and_missing_weights(tmp_path, monkeypatch):
    enc = VGGEncoder(pretrained=False)
    convs = [m for m in enc.trunk if isinstance(m, nn.Conv2d)]
    pools = [m for m in enc.trunk if isinstance(m, nn.MaxPool2d)]
    assert len(convs) == 10 and len(pools) == 2  # conv1_1..conv4_3, pool3 skipped
    assert [c.dilation for c in convs[-3:]] == [(2, 2)] * 3
    assert all(c.dilation == (1, 1) for c in convs[:-3])
    with torch.no_grad():
        assert enc(torch.zeros(2, 3, 64, 64)).shape == (2, 512, 16, 16)
    assert not any(p.requires_grad for p in enc.parameters())
    enc.train()
    assert not enc.training  # batch-norm statistics stay ImageNet's
    g = Generator(SISGANConfig(encoder="vgg", ngf=2, ndf=2, n_residual=1), pretrained=False)
    assert g.fuse[0].in_channels == 512 + 128
    trainable = sum(p.numel() for p in g.parameters() if p.requires_grad)
    assert trainable < sum(p.numel() for p in g.parameters()) - 7_000_000
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(MissingWeightsError, match="never downloads"):
        find_vgg16_bn_weights()
    with pytest.raises(MissingWeightsError, match="not found"):
        VGGEncoder(weights_path=tmp_path / "nope.pth")


def test_vgg_trunk_loads_torchvision_format_weights(tmp_path):
    from torchvision.models.vgg import cfgs, make_layers

    torch.manual_seed(3)
    features = make_layers(cfgs["D"], batch_norm=True)
    state = {f"features.{k}": v for k, v in features.state_dict().items()}
    state["classifier.0.weight"] = torch.zeros(2, 2)  # the classifier is ignored
    path = tmp_path / "vgg16_bn.pth"
    torch.save(state, path)
    enc = VGGEncoder(weights_path=path)
    conv4_3 = [m for m in enc.trunk if isinstance(m, nn.Conv2d)][-1]
    torch.testing.assert_close(conv4_3.weight, features[30].weight)  # pool3 (23) skipped
    torch.testing.assert_close(enc.trunk[0].weight, features[0].weight)


def test_skip_feeds_the_encoder_features_to_the_decoder():
    torch.manual_seed(0)
    outs = {}
    for skip in (False, True):
        g = Generator(SISGANConfig(sentence_dim=4, condition_dim=2, ngf=2, n_residual=1, skip=skip))
        nn.init.zeros_(g.fuse[0].weight)  # the transformation branch now outputs zeros
        x = torch.randn(2, 3, 64, 64)
        y1, _, _ = g(x, torch.zeros(2, 4), torch.zeros(2, 2))
        y2, _, _ = g(x.flip(0), torch.zeros(2, 4), torch.zeros(2, 2))
        outs[skip] = torch.allclose(y1, y2.flip(0)) and torch.allclose(y1[0], y1[1])
    assert outs[False] and not outs[True]  # only the skip lets the image through
    with pytest.raises(ValueError, match="skip needs"):
        Generator(SISGANConfig(encoder="vgg", ngf=8, skip=True), pretrained=False)
