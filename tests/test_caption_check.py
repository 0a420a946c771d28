"""Caption ranking of a discriminator: a text-blind D scores 0.5, a D that knows the truth
scores 1 - c/2 with c the share of mismatched captions that are still true."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from t2ilib.data.cub import read_split
from t2ilib.data.toybirds import load_groundtruth, write_toybirds
from t2ilib.metrics.caption_check import caption_ranking, consistent_fraction, text_blind_gap
from t2ilib.metrics.text_probe import caption_labels

N_TEST = 40


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("captioncheck") / "toybirds", n_train=10,
                          n_test=N_TEST, size=32, seed=5)


def _setup(root, caption_index):
    """Images that carry their index in a pixel; captions chosen by ``caption_index``."""
    labels = caption_labels(root, "test")
    captions = [labels.captions[i * 10 + j] for i, j in enumerate(caption_index)]
    images = torch.zeros(N_TEST, 3, 32, 32)
    images[:, 0, 0, 0] = torch.arange(N_TEST).float()
    return images, captions


class LookupEncoder(nn.Module):
    """Sentence = (image, caption number) of the caption, looked up from its tokens."""

    def __init__(self, captions):
        super().__init__()
        self.table = {tuple(c[:18]): i for i, c in enumerate(captions)}

    def forward(self, ids, lengths):
        rows = [self.table[tuple(r[:n].tolist())] for r, n in zip(ids, lengths.tolist())]
        return None, torch.tensor(rows, dtype=torch.float32)[:, None]


class TruthD(nn.Module):
    """+1 when every attribute the caption names is true of the image, else -1."""

    def __init__(self, root, caption_index):
        super().__init__()
        self.keys, _ = read_split(root, "test")
        self.truth = load_groundtruth(root)
        self.caption_index = caption_index

    def forward(self, images, sentence):
        out = []
        for x, s in zip(images, sentence):
            i, j = int(x[0, 0, 0]), int(s[0])
            named = self.truth.mentions[self.keys[j]][self.caption_index[j]]
            image = self.truth.attributes[self.keys[i]]
            caption = self.truth.attributes[self.keys[j]]
            ok = all(image[a] == caption[a] for a in named)
            out.append(1.0 if ok else -1.0)
        return torch.tensor(out)


class BlindD(nn.Module):
    def forward(self, images, sentence):
        return images.mean((1, 2, 3)) * 100.0  # depends on the image only


def test_blind_and_truthful_discriminators(toy):
    caption_index = [(3 * i) % 10 for i in range(N_TEST)]
    images, captions = _setup(toy, caption_index)
    encoder = LookupEncoder(captions)
    assert caption_ranking(BlindD(), encoder, images, captions, batch_size=7) == 0.5
    c = consistent_fraction(toy, "test", caption_index)
    assert 0.0 <= c < 0.5
    ranking = caption_ranking(TruthD(toy, caption_index), encoder, images, captions, batch_size=7)
    assert ranking == pytest.approx(1.0 - c / 2)
    assert ranking > 0.75


def test_bad_inputs_and_gap():
    with pytest.raises(ValueError, match="N >= 2"):
        caption_ranking(BlindD(), None, torch.zeros(1, 3, 4, 4), [[1]])
    with pytest.raises(ValueError, match="2 d_mismatch"):
        text_blind_gap([1.0], [1.0, 1.0])
    assert text_blind_gap([1.0, 0.0], [1.0, 0.5]) == [0.0, 1.5]
