"""Image encoders: shapes, frozen trunk, offline weight lookup (no download), AttnGAN interop."""

from __future__ import annotations

import math
import socket
import urllib.request

import pytest
import torch

from t2ilib.damsm.image_encoder import (
    INCEPTION_IMAGENET_FILE,
    InceptionEncoder,
    InceptionEncoderConfig,
    MissingWeightsError,
    SmallCNNConfig,
    SmallCNNEncoder,
    convert_attngan_image_state_dict,
    convert_inception_state_dict,
    find_inception_weights,
    load_state_dict_allow_missing_bn_counters,
)

# --- SmallCNNEncoder -------------------------------------------------------------------------


@pytest.mark.parametrize("size", [64, 32])
def test_small_cnn_shapes(size):
    enc = SmallCNNEncoder(SmallCNNConfig(embed_dim=256, width=8)).eval()
    regions, code = enc(torch.rand(2, 3, size, size) * 2 - 1)
    assert regions.shape == (2, 256, size // 8, size // 8)
    assert code.shape == (2, 256)


def test_small_cnn_items_are_independent_in_eval_mode():
    torch.manual_seed(0)
    enc = SmallCNNEncoder(SmallCNNConfig(width=8)).eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    regions, code = enc(x)
    r1, c1 = enc(x[1:2])
    torch.testing.assert_close(r1[0], regions[1], atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(c1[0], code[1], atol=1e-5, rtol=1e-4)


def test_small_cnn_all_parameters_train():
    enc = SmallCNNEncoder(SmallCNNConfig(width=8))
    regions, code = enc(torch.rand(4, 3, 32, 32))
    (regions.square().mean() + code.square().mean()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in enc.parameters())


@pytest.mark.parametrize(
    "shape, match",
    [
        ((2, 3, 40, 40), "divisible by 16"),
        ((2, 1, 32, 32), r"\(B, 3, H, W\)"),
        ((3, 32, 32), r"\(B, 3, H, W\)"),
    ],
)
def test_small_cnn_bad_input(shape, match):
    with pytest.raises(ValueError, match=match):
        SmallCNNEncoder(SmallCNNConfig(width=8))(torch.zeros(shape))


# --- InceptionEncoder --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def inception() -> InceptionEncoder:
    """Working size 139 instead of 299 keeps the CPU forward pass cheap (regions 7 x 7)."""
    torch.manual_seed(0)
    return InceptionEncoder(InceptionEncoderConfig(image_size=139), pretrained=False)


def test_inception_shapes_at_the_default_299():
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        enc = InceptionEncoder(pretrained=False)
        regions, code = enc(torch.empty(2, 3, 64, 64))  # resized to 299 inside
    assert regions.shape == (2, 256, 17, 17) and code.shape == (2, 256)


def test_inception_forward_and_gradients_reach_the_projections_only(inception):
    inception.train()
    bn = inception.to_regions.Mixed_5b.branch1x1.bn
    stats = bn.running_mean.clone()
    regions, code = inception(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert regions.shape == (1, 256, 7, 7) and code.shape == (1, 256)
    (regions.mean() + code.mean()).backward()
    assert (
        inception.region_proj.weight.grad.abs().sum() > 0
        and inception.global_proj.bias.grad is not None
    )
    assert all(p.grad is None for p in inception.to_regions.parameters())
    torch.testing.assert_close(bn.running_mean, stats, rtol=0, atol=0)  # frozen BN statistics
    inception.zero_grad(set_to_none=True)
    inception.eval()


def test_inception_trunk_is_frozen_and_stays_in_eval_mode(inception):
    trainable = {n for n, p in inception.named_parameters() if p.requires_grad}
    assert trainable == {"region_proj.weight", "global_proj.weight", "global_proj.bias"}
    assert (
        sum(p.numel() for p in inception.parameters() if p.requires_grad)
        == 768 * 256 + 2048 * 256 + 256
    )
    inception.train()
    assert inception.training and inception.region_proj.training
    assert not any(m.training for m in inception.to_regions.modules())
    assert not any(m.training for m in inception.to_global.modules())
    inception.eval()


def test_inception_bad_input(inception):
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        inception(torch.zeros(1, 1, 299, 299))


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to reach the network fails the test at once instead of hanging."""

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


def test_pretrained_offline_raises_an_explanatory_error(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(MissingWeightsError) as info:
        InceptionEncoder(pretrained=True)
    message = str(info.value)
    assert INCEPTION_IMAGENET_FILE in message
    assert str(tmp_path / "torch" / "hub" / "checkpoints") in message
    assert "weights_path" in message and "pretrained=False" in message
    with pytest.raises(MissingWeightsError, match="not found"):
        InceptionEncoder(pretrained=True, weights_path=tmp_path / "nowhere.pth")
    assert isinstance(info.value, FileNotFoundError)


def test_pretrained_weights_come_from_torchvisions_cache_or_a_path(
    tmp_path, monkeypatch, no_network
):
    from torchvision.models import inception_v3

    torch.manual_seed(1)
    imagenet = inception_v3(
        weights=None, aux_logits=True, init_weights=False
    ).state_dict()  # with fc, AuxLogits
    imagenet = {
        k: v for k, v in imagenet.items() if not k.endswith("num_batches_tracked")
    }  # a 2017 file
    cache = tmp_path / "torch" / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(imagenet, cache / INCEPTION_IMAGENET_FILE)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    assert find_inception_weights() == cache / INCEPTION_IMAGENET_FILE
    assert (
        find_inception_weights(cache / INCEPTION_IMAGENET_FILE) == cache / INCEPTION_IMAGENET_FILE
    )
    enc = InceptionEncoder(InceptionEncoderConfig(), pretrained=True)
    ours = enc.state_dict()
    for key in (
        "Conv2d_1a_3x3.conv.weight",
        "Mixed_6e.branch_pool.bn.running_var",
        "Mixed_7c.branch1x1.conv.weight",
    ):
        prefix = "to_global." if key.startswith("Mixed_7") else "to_regions."
        torch.testing.assert_close(ours[prefix + key], imagenet[key], rtol=0, atol=0)


def test_convert_inception_drops_classifier_and_rejects_strangers():
    out = convert_inception_state_dict(
        {
            "fc.weight": torch.zeros(1),
            "AuxLogits.fc.bias": torch.zeros(1),
            "Mixed_5b.branch1x1.conv.weight": torch.zeros(1),
        }
    )
    assert list(out) == ["to_regions.Mixed_5b.branch1x1.conv.weight"]
    with pytest.raises(ValueError, match="unexpected key"):
        convert_inception_state_dict({"Mixed_9z.weight": torch.zeros(1)})


# --- AttnGAN's image_encoder200.pth -------------------------------------------------------------
# Written from the published Inception-v3 architecture (Szegedy et al. 2016, as laid out in
# torchvision and copied layer by layer into AttnGAN's CNN_ENCODER): each BasicConv2d is a
# bias-free conv + BatchNorm(eps=1e-3). (in, out, kh, kw) per BasicConv2d:


def _inception_a(cin: int, pool: int) -> dict:
    return {
        "branch1x1": (cin, 64, 1, 1),
        "branch5x5_1": (cin, 48, 1, 1),
        "branch5x5_2": (48, 64, 5, 5),
        "branch3x3dbl_1": (cin, 64, 1, 1),
        "branch3x3dbl_2": (64, 96, 3, 3),
        "branch3x3dbl_3": (96, 96, 3, 3),
        "branch_pool": (cin, pool, 1, 1),
    }


def _inception_c(c7: int) -> dict:
    return {
        "branch1x1": (768, 192, 1, 1),
        "branch7x7_1": (768, c7, 1, 1),
        "branch7x7_2": (c7, c7, 1, 7),
        "branch7x7_3": (c7, 192, 7, 1),
        "branch7x7dbl_1": (768, c7, 1, 1),
        "branch7x7dbl_2": (c7, c7, 7, 1),
        "branch7x7dbl_3": (c7, c7, 1, 7),
        "branch7x7dbl_4": (c7, c7, 7, 1),
        "branch7x7dbl_5": (c7, 192, 1, 7),
        "branch_pool": (768, 192, 1, 1),
    }


def _inception_e(cin: int) -> dict:
    return {
        "branch1x1": (cin, 320, 1, 1),
        "branch3x3_1": (cin, 384, 1, 1),
        "branch3x3_2a": (384, 384, 1, 3),
        "branch3x3_2b": (384, 384, 3, 1),
        "branch3x3dbl_1": (cin, 448, 1, 1),
        "branch3x3dbl_2": (448, 384, 3, 3),
        "branch3x3dbl_3a": (384, 384, 1, 3),
        "branch3x3dbl_3b": (384, 384, 3, 1),
        "branch_pool": (cin, 192, 1, 1),
    }


INCEPTION_V3_CONVS = {
    "Conv2d_1a_3x3": (3, 32, 3, 3),
    "Conv2d_2a_3x3": (32, 32, 3, 3),
    "Conv2d_2b_3x3": (32, 64, 3, 3),
    "Conv2d_3b_1x1": (64, 80, 1, 1),
    "Conv2d_4a_3x3": (80, 192, 3, 3),
    **{f"Mixed_5b.{k}": v for k, v in _inception_a(192, 32).items()},
    **{f"Mixed_5c.{k}": v for k, v in _inception_a(256, 64).items()},
    **{f"Mixed_5d.{k}": v for k, v in _inception_a(288, 64).items()},
    **{
        f"Mixed_6a.{k}": v
        for k, v in {
            "branch3x3": (288, 384, 3, 3),
            "branch3x3dbl_1": (288, 64, 1, 1),
            "branch3x3dbl_2": (64, 96, 3, 3),
            "branch3x3dbl_3": (96, 96, 3, 3),
        }.items()
    },
    **{f"Mixed_6b.{k}": v for k, v in _inception_c(128).items()},
    **{f"Mixed_6c.{k}": v for k, v in _inception_c(160).items()},
    **{f"Mixed_6d.{k}": v for k, v in _inception_c(160).items()},
    **{f"Mixed_6e.{k}": v for k, v in _inception_c(192).items()},
    **{
        f"Mixed_7a.{k}": v
        for k, v in {
            "branch3x3_1": (768, 192, 1, 1),
            "branch3x3_2": (192, 320, 3, 3),
            "branch7x7x3_1": (768, 192, 1, 1),
            "branch7x7x3_2": (192, 192, 1, 7),
            "branch7x7x3_3": (192, 192, 7, 1),
            "branch7x7x3_4": (192, 192, 3, 3),
        }.items()
    },
    **{f"Mixed_7b.{k}": v for k, v in _inception_e(1280).items()},
    **{f"Mixed_7c.{k}": v for k, v in _inception_e(2048).items()},
}


def attngan_image_encoder_keys() -> dict[str, tuple[int, ...]]:
    """Key -> shape of AttnGAN's CNN_ENCODER(256) state dict (PyTorch 0.3 era: no BN counters)."""
    keys = {}
    for name, (cin, cout, kh, kw) in INCEPTION_V3_CONVS.items():
        keys[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            keys[f"{name}.bn.{stat}"] = (cout,)
    keys["emb_features.weight"] = (256, 768, 1, 1)  # conv1x1(768, 256), no bias
    keys["emb_cnn_code.weight"] = (256, 2048)
    keys["emb_cnn_code.bias"] = (256,)
    return keys


def test_attngan_image_encoder_fixture_matches_our_architecture(inception):
    theirs = attngan_image_encoder_keys()
    converted = convert_attngan_image_state_dict(
        {k: torch.empty(s, device="meta") for k, s in theirs.items()}
    )
    ours = {
        k: tuple(v.shape)
        for k, v in inception.state_dict().items()
        if not k.endswith("num_batches_tracked")
    }
    assert {k: tuple(v.shape) for k, v in converted.items()} == ours
    # 94 BasicConv2d layers in the trunk, as in the paper's Inception-v3
    assert len(INCEPTION_V3_CONVS) == 94


def test_attngan_image_encoder_state_dict_loads_exactly(inception):
    g = torch.Generator().manual_seed(0)
    theirs = {k: torch.rand(s, generator=g) + 0.5 for k, s in attngan_image_encoder_keys().items()}
    enc = inception
    load_state_dict_allow_missing_bn_counters(enc, convert_attngan_image_state_dict(theirs))
    torch.testing.assert_close(
        enc.region_proj.weight, theirs["emb_features.weight"], rtol=0, atol=0
    )
    torch.testing.assert_close(enc.global_proj.bias, theirs["emb_cnn_code.bias"], rtol=0, atol=0)
    torch.testing.assert_close(
        enc.to_global.Mixed_7c.branch_pool.bn.running_var,
        theirs["Mixed_7c.branch_pool.bn.running_var"],
        rtol=0,
        atol=0,
    )
    assert (
        sum(math.prod(s) for k, s in attngan_image_encoder_keys().items() if k.startswith("emb_"))
        == 721_152
    )


def test_loading_rejects_missing_or_unexpected_keys(inception):
    theirs = {k: torch.zeros(s) for k, s in attngan_image_encoder_keys().items()}
    del theirs["Mixed_6e.branch1x1.conv.weight"]
    with pytest.raises(ValueError, match="missing"):
        load_state_dict_allow_missing_bn_counters(
            inception, convert_attngan_image_state_dict(theirs)
        )
    with pytest.raises(ValueError, match="unexpected key"):
        convert_attngan_image_state_dict({"AuxLogits.fc.weight": torch.zeros(1)})
