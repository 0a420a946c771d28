"""FID and IS (t2ilib.metrics.fid / inception_score): closed forms, streaming, weights handling.

The real FID Inception weights cannot be downloaded here, so the numerics are checked on
injected extractors with known answers, and the Inception path on a randomly initialised
network saved in the published layout.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from t2ilib.metrics import fid as fid_lib
from t2ilib.metrics.fid import (
    FID_WEIGHTS_BYTES,
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_SHA256,
    FID_WEIGHTS_URL,
    MissingWeightsError,
    StreamingFID,
    as_uint8,
    frechet_inception_distance,
)
from t2ilib.metrics.inception_score import StreamingIS, inception_score
from t2ilib.metrics.toy_oracle import frechet_distance

pytestmark = pytest.mark.filterwarnings("ignore:FID. fewer samples")


class ChannelMeans(nn.Module):
    """Features = the mean of each colour channel (3-d, float64): shifts are exact."""

    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.double().mean((2, 3))


class TinyNet(nn.Module):
    """A tiny random CNN on uint8 images: ``(B, 3, H, W) -> (B, 6)``."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 6, 3, stride=2), nn.Tanh(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images.float() / 127.5 - 1)


def images(n: int, seed: int, high: int = 200, size: int = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, (n, 3, size, size), generator=g, dtype=torch.uint8)


def test_identical_sets_give_zero_and_a_shift_gives_the_closed_form():
    real = images(60, 0)
    assert frechet_inception_distance([real], [real], ChannelMeans()).value == pytest.approx(
        0.0, abs=1e-8)
    # +c on every pixel (no clipping below 255) moves each channel mean by c, covariance kept:
    # FID = |c 1|^2 = 3 c^2
    result = frechet_inception_distance([real], [real + 10], ChannelMeans())
    assert result.value == pytest.approx(3 * 10**2, rel=1e-9)
    assert (result.n_real, result.n_fake, result.feature_dim) == (60, 60, 3)
    assert result.weights is None and result.extractor == "ChannelMeans"


def test_fid_matches_an_independent_float64_computation():
    real, fake = images(80, 1), images(70, 2, high=256)
    net = TinyNet()
    value = frechet_inception_distance([real], [fake], net).value
    with torch.no_grad():
        expected = frechet_distance(net(real).double(), net(fake).double())  # symmetric-sqrt route
    assert value > 0
    assert value == pytest.approx(expected, rel=1e-6)


def test_streaming_equals_one_shot():
    real, fake = images(50, 3), images(50, 4, high=256)
    net = TinyNet()
    one_shot = frechet_inception_distance([real], [fake], net).value
    stream = StreamingFID(net)
    for a, b in [(0, 7), (7, 20), (20, 50)]:
        stream.update(fake[a:b], real=False)
        stream.update(real[a:b], real=True)
    assert stream.compute().value == pytest.approx(one_shot, rel=1e-10)


def test_float_images_are_rounded_to_uint8_like_real_ones():
    real = images(30, 5, high=256)
    as_float = real.double() / 127.5 - 1  # exactly representable round trip
    assert torch.equal(as_uint8(as_float), real)
    out_of_range = torch.tensor([-3.0, 2.0]).view(1, 1, 1, 2).expand(1, 3, 1, 2)
    assert as_uint8(out_of_range)[0, 0, 0].tolist() == [0, 255]  # clamped, not wrapped
    x = torch.full((1, 3, 1, 1), 0.999)  # (0.999 + 1) * 127.5 = 254.87: rounds to 255
    assert as_uint8(x).flatten().tolist() == [255, 255, 255]
    net = TinyNet()
    assert frechet_inception_distance([real], [as_float.float()], net).value == pytest.approx(
        0.0, abs=1e-8)
    with pytest.raises(ValueError):
        as_uint8(torch.zeros(2, 4, 4))


def test_fid_needs_two_images_per_side():
    stream = StreamingFID(ChannelMeans())
    stream.update(images(1, 6), real=True)
    stream.update(images(5, 7), real=False)
    with pytest.raises(ValueError, match="at least 2"):
        stream.compute()


@pytest.fixture
def no_weights_anywhere(tmp_path, monkeypatch):
    """An empty hub cache and data folder, and a network that must not be touched."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("T2I_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(fid_lib.WEIGHTS_ENV, raising=False)

    def no_network(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_missing_weights_name_the_file_the_url_and_where_to_put_them(no_weights_anywhere):
    with pytest.raises(MissingWeightsError) as info:
        StreamingFID()
    message = str(info.value)
    for part in (FID_WEIGHTS_FILE, FID_WEIGHTS_URL, FID_WEIGHTS_SHA256,
                 f"put it into {no_weights_anywhere}"):
        assert part in message
    with pytest.raises(MissingWeightsError, match="nope.pth"):
        StreamingIS(weights=no_weights_anywhere / "nope.pth")
    assert isinstance(info.value, FileNotFoundError)


def test_a_wrong_weights_file_is_refused(no_weights_anywhere):
    no_weights_anywhere.mkdir(parents=True)
    bad = no_weights_anywhere / FID_WEIGHTS_FILE
    bad.write_bytes(b"not the weights")
    assert fid_lib.find_fid_weights() == bad
    with pytest.raises(ValueError, match="truncated"):
        StreamingFID()
    with open(bad, "wb") as f:  # right size (sparse zeros), wrong bytes
        f.truncate(FID_WEIGHTS_BYTES)
    with pytest.raises(ValueError, match="refusing"):
        fid_lib.verify_fid_weights(bad)


def test_the_inception_path_runs_on_random_weights(tmp_path, monkeypatch):
    """Plumbing only: a random network in the published layout, loaded without the hash check."""
    from torch_fidelity import feature_extractor_inceptionv3 as tfi

    with monkeypatch.context() as patch:  # build once without weights to get the layout
        patch.setattr(tfi, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(tfi.FeatureExtractorInceptionV3, "load_state_dict",
                      lambda self, *a, **k: None)
        torch.manual_seed(0)
        layout = tfi.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    path = tmp_path / "random_inception.pth"
    torch.save(layout.state_dict(), path)
    pool3 = fid_lib.load_fid_inception(path, verify=False)
    logits = fid_lib.load_fid_inception(path, feature="logits_unbiased", verify=False)
    x = images(3, 8, size=16)
    assert pool3(x).shape == (3, 2048)
    assert logits(x).shape == (3, 1008)
    stream = StreamingFID(pool3, name="random inception")
    assert stream.feature_dim == 2048


def test_is_of_a_uniform_classifier_is_one():
    class Uniform(nn.Module):
        def forward(self, x):
            return torch.zeros(x.shape[0], 7)

    result = inception_score([images(20, 9), images(20, 10)], Uniform(), splits=4)
    assert result.mean == pytest.approx(1.0, abs=1e-6)
    assert result.std == pytest.approx(0.0, abs=1e-6)
    assert (result.n, result.splits) == (40, 4)


def test_is_of_a_confident_classifier_spread_over_k_classes_is_k():
    class Peaked(nn.Module):  # class = first pixel value mod 5, with near-certainty
        def forward(self, x):
            return 60.0 * nn.functional.one_hot(x[:, 0, 0, 0].long() % 5, 5).float()

    x = torch.zeros(50, 3, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0] = torch.arange(50)
    assert inception_score([x], Peaked(), splits=1).mean == pytest.approx(5.0, rel=1e-6)
    # half the images say (a, 1 - a), half (1 - a, a): IS = exp(a log 2a + (1-a) log 2(1-a))
    a = 0.9

    class TwoWay(nn.Module):
        def forward(self, x):
            first = (x[:, 0, 0, 0] % 2 == 0)[:, None]
            p = torch.where(first, torch.tensor([a, 1 - a]), torch.tensor([1 - a, a]))
            return p.log()

    expected = math.exp(a * math.log(2 * a) + (1 - a) * math.log(2 * (1 - a)))
    assert inception_score([x], TwoWay(), splits=1).mean == pytest.approx(expected, rel=1e-5)


def test_is_splits_are_seeded_and_need_enough_images():
    class Noisy(nn.Module):
        def forward(self, x):
            return x.float().mean((2, 3))  # (B, 3) "logits"

    x = images(40, 11, high=256)
    first = inception_score([x], Noisy(), splits=5, seed=3)
    again = inception_score([x], Noisy(), splits=5, seed=3)
    assert (first.mean, first.std) == (again.mean, again.std)
    assert first.mean > 1.0
    with pytest.raises(ValueError, match="at least 5 images"):
        inception_score([x[:4]], Noisy(), splits=5)
