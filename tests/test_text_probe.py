"""Linear probes of sentence vectors: a perfect encoder reads 1.0, a constant one no better
than the most frequent value."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from t2ilib.data.augment import center_crop
from t2ilib.data.cache import CachedCUBDataset
from t2ilib.data.toybirds import ATTRIBUTES, COLORS, load_groundtruth, write_toybirds
from t2ilib.metrics.text_probe import ProbeConfig, caption_labels, image_probe, sentence_probe


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("probe") / "toybirds", n_train=60, n_test=30,
                          size=32, seed=3)


class LookupEncoder(nn.Module):
    """Sentence vector = one-hot of the body colour of the caption's image (a perfect encoder)."""

    def __init__(self, root):
        super().__init__()
        self.table = {}
        for split in ("train", "test"):
            cl = caption_labels(root, split)
            for ids, label in zip(cl.captions, cl.labels["body_color"].tolist()):
                self.table[tuple(ids[:18])] = label

    def forward(self, ids, lengths):
        rows = [tuple(r[:n].tolist()) for r, n in zip(ids, lengths.tolist())]
        s = torch.zeros(len(rows), 16)
        s[torch.arange(len(rows)), torch.tensor([self.table[r] for r in rows])] = 3.0
        return None, s


class ConstantEncoder(nn.Module):
    def forward(self, ids, lengths):
        return None, torch.ones(len(ids), 16)


def test_caption_labels_match_the_captions(toy):
    cl = caption_labels(toy, "test")
    assert len(cl.captions) == 30 * 10
    for name, labels in cl.labels.items():
        assert labels.shape == (300,) and cl.mentioned[name].dtype == torch.bool
        assert 0 <= int(labels.min()) and int(labels.max()) < len(ATTRIBUTES[name])
        assert labels.view(30, 10).eq(labels.view(30, 10)[:, :1]).all()  # one image, one value
    assert 0.2 < float(cl.mentioned["body_color"].float().mean()) < 0.8


def test_perfect_and_constant_encoders(toy):
    config = ProbeConfig(steps=200)
    perfect = sentence_probe(LookupEncoder(toy), toy, ("body_color",), config)
    assert perfect.accuracy["body_color"] == 1.0
    assert perfect.chance["body_color"] == pytest.approx(0.1)
    assert perfect.n_test["body_color"] > 50

    constant = sentence_probe(ConstantEncoder(), toy, ("body_color", "size"), config)
    test = caption_labels(toy, "test")
    for name in ("body_color", "size"):
        seen = test.labels[name][test.mentioned[name]]
        majority = float(torch.bincount(seen).max()) / len(seen)
        assert constant.accuracy[name] <= majority + 1e-9
    assert constant.accuracy["body_color"] < 0.5


def test_refuses_attributes_captions_never_name(toy):
    with pytest.raises(ValueError, match="never name"):
        sentence_probe(ConstantEncoder(), toy, ("facing",))


class ImageLookupEncoder(nn.Module):
    """Global code = one-hot of the body colour of the image (found by its pixels)."""

    def __init__(self, root, image_size):
        super().__init__()
        truth = load_groundtruth(root)
        self.table = {}
        for split in ("train", "test"):
            data = CachedCUBDataset(root, split, image_size=image_size, uint8=True)
            images = center_crop(data.images, image_size)
            for x, key in zip(images, data.keys):
                self.table[x.numpy().tobytes()] = COLORS.index(truth.attributes[key]["body_color"])

    def forward(self, images):
        s = torch.zeros(len(images), 16)
        s[torch.arange(len(images)), torch.tensor([self.table[x.numpy().tobytes()]
                                                   for x in images])] = 3.0
        return None, s


class ConstantImageEncoder(nn.Module):
    def forward(self, images):
        return None, torch.ones(len(images), 16)


def test_image_probe_perfect_and_constant(toy):
    config = ProbeConfig(steps=200)
    perfect = image_probe(ImageLookupEncoder(toy, 32), toy, 32, ("body_color",), config)
    assert perfect.accuracy["body_color"] == 1.0 and perfect.n_test["body_color"] == 30
    constant = image_probe(ConstantImageEncoder(), toy, 32, ("body_color", "background"), config)
    assert constant.accuracy["body_color"] < 0.5
    assert constant.chance["background"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="unknown attributes"):
        image_probe(ConstantImageEncoder(), toy, 32, ("wingspan",))
