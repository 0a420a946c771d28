"""R-precision: candidate sampling, hits, folds, the small-data note, and the data-set wrapper."""

from __future__ import annotations

import pytest
import torch

from t2ilib.metrics.rprecision import (
    dataset_r_precision,
    encode_captions,
    fold_accuracies,
    r_precision,
    r_precision_hits,
    sample_mismatched,
)
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig


def test_mismatched_captions_come_from_other_classes_without_repeats():
    image_classes = torch.tensor([0, 1, 2, 0, 1])
    caption_classes = torch.arange(300) % 3
    g = torch.Generator().manual_seed(0)
    idx, k = sample_mismatched(image_classes, caption_classes, 99, g)
    assert k == 99 and idx.shape == (5, 99)
    for i, c in enumerate(image_classes.tolist()):
        assert torch.all(caption_classes[idx[i]] != c)
        assert len(set(idx[i].tolist())) == 99
    idx2, _ = sample_mismatched(
        image_classes, caption_classes, 99, torch.Generator().manual_seed(0)
    )
    assert torch.equal(idx, idx2)  # reproducible with a seeded generator


def test_mismatched_captions_shrink_to_what_is_available():
    idx, k = sample_mismatched(torch.tensor([0, 1]), torch.tensor([0, 0, 0, 1, 1]), 99)
    assert k == 2 and idx.shape == (2, 2)  # class 0 sees only 2 captions of class 1


def orthonormal(n: int, d: int, seed: int = 0) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=torch.Generator().manual_seed(seed)))
    return q[:n]


def test_perfect_features_give_100_percent():
    n, d = 20, 128
    feats = orthonormal(n + 99, d)
    images, pool = feats[:n], feats[n:]  # pool: 99 captions orthogonal to every image
    result = r_precision(
        images,
        images * 3.0,
        torch.zeros(n, dtype=torch.long),
        pool,
        torch.ones(99, dtype=torch.long),
        n_folds=10,
        generator=torch.Generator().manual_seed(0),
    )
    assert result.mean == 1.0 and result.std == 0.0 and result.n_candidates == 100
    assert result.chance == pytest.approx(0.01) and result.note == "" and result.n_folds == 10
    assert "100.00 ± 0.00 %" in str(result)


def test_hits_are_counted_per_image_and_folds_average_them():
    n, d = 40, 64
    feats = orthonormal(d, d)
    images = feats[:n]
    pool = -feats[:n]  # 40 "opposite" captions
    pool_classes = torch.arange(n) + 1000
    true = images.clone()
    true[::2] = -images[::2] + 0.01 * feats[n + 1]  # every even image gets a bad true caption
    result = r_precision(
        images,
        true,
        torch.arange(n),
        torch.cat([pool, feats[n + 2 : n + 3]]),
        torch.cat([pool_classes, torch.tensor([5000])]),
        n_candidates=10,
        n_folds=4,
        generator=torch.Generator().manual_seed(1),
    )
    expected = torch.arange(n) % 2 == 1
    assert torch.equal(result.hits, expected)
    assert result.mean == pytest.approx(0.5)  # 4 equal folds: the mean of fold means is the mean
    assert 0 <= result.std <= 0.5  # fold accuracies lie in [0, 1] around 0.5


def test_a_tie_with_a_mismatched_caption_is_a_miss():
    images = torch.tensor([[1.0, 0.0]])
    result = r_precision(
        images,
        images,
        torch.tensor([0]),
        torch.tensor([[2.0, 0.0], [0.0, 1.0]]),
        torch.tensor([1, 1]),
        n_candidates=3,
        n_folds=1,
    )
    assert result.hits.tolist() == [False]


def test_random_features_score_near_chance():
    g = torch.Generator().manual_seed(0)
    n, d = 1000, 32
    result = r_precision(
        torch.randn(n, d, generator=g),
        torch.randn(n, d, generator=g),
        torch.randint(0, 20, (n,), generator=g),
        torch.randn(3000, d, generator=g),
        torch.randint(0, 20, (3000,), generator=g),
        generator=g,
    )
    assert result.mean == pytest.approx(0.01, abs=0.015)


def test_small_sets_say_so():
    images = torch.eye(3)
    with pytest.warns(UserWarning, match="candidates"):
        result = r_precision(
            images, images, torch.tensor([0, 1, 2]), images, torch.tensor([0, 1, 2]), n_folds=10
        )
    assert result.n_candidates == 3 and result.chance == pytest.approx(1 / 3)
    assert (
        "only 3 candidates" in result.note and "3 folds" in result.note and "note:" in str(result)
    )
    assert result.mean == 1.0


def test_bad_input_raises():
    with pytest.raises(ValueError, match="do not fit"):
        r_precision(
            torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(2), torch.zeros(5, 4), torch.zeros(5)
        )
    with pytest.raises(ValueError, match="undefined"):
        r_precision(
            torch.ones(2, 4),
            torch.ones(2, 4),
            torch.zeros(2),
            torch.ones(5, 4),
            torch.zeros(5, dtype=torch.long),
        )


def test_encode_captions_pads_truncates_and_matches_the_encoder():
    torch.manual_seed(0)
    enc = TextEncoder(TextEncoderConfig(vocab_size=10, embed_dim=4, hidden_dim=6)).eval()
    caps = [[1, 2, 3], [4], [5, 6, 7, 8, 9, 1]]
    out = encode_captions(enc, caps, words_num=4, batch_size=2)
    ids = torch.tensor([[1, 2, 3, 0], [4, 0, 0, 0], [5, 6, 7, 8]])
    torch.testing.assert_close(out, enc(ids, torch.tensor([3, 1, 4]))[1])
    with pytest.raises(ValueError, match="empty caption"):
        encode_captions(enc, [[1], []])


class OneHotText(torch.nn.Module):
    """Sentence vector = one-hot of the first token: a perfect judge for ColourData."""

    def forward(self, captions, lengths):
        sent = torch.nn.functional.one_hot(captions[:, 0], 8).float()
        return sent[:, :, None].expand(-1, -1, captions.shape[1]), sent


class MeanColourImage(torch.nn.Module):
    """Global code = one-hot of the brightest channel pair index stored in pixel [0, 0, 0]."""

    def forward(self, images):
        k = images[:, 0, 0, 0].round().long()
        code = torch.nn.functional.one_hot(k, 8).float()
        return code[:, :, None, None], code


class ColourData:
    """Image i has class i % 4 and colour id k = 1 + i % 4; captions name the colour first."""

    words_num = 5

    def __init__(self, n: int):
        self.class_ids = [i % 4 for i in range(n)]

    def __len__(self):
        return len(self.class_ids)

    def __getitem__(self, i):
        k = 1 + self.class_ids[i]
        return (
            torch.full((3, 16, 16), float(k)),
            torch.tensor([k, 7, 0, 0, 0]),
            2,
            self.class_ids[i],
            f"k{i}",
        )

    def captions_of(self, i):
        k = 1 + self.class_ids[i]
        return [[k, 7], [k, 6, 7], [k]]


def test_dataset_r_precision_pairs_each_image_with_its_own_captions():
    data = ColourData(40)  # each image sees 30 x 3 = 90 captions of other classes: fewer than 99
    with pytest.warns(UserWarning, match="only 91 candidates"):
        result = dataset_r_precision(OneHotText(), MeanColourImage(), data, rounds=2, n_folds=4)
    assert result.n_images == 80 and result.n_candidates == 91  # 3 x 30 other-class captions + 1
    # each image's true caption starts with its colour; other classes' captions do not: all hits
    assert result.mean == 1.0
    wrong = torch.stack([data[(i + 1) % 40][0] for i in range(40)])  # images shifted by one class
    with pytest.warns(UserWarning):
        miss = dataset_r_precision(OneHotText(), MeanColourImage(), data, images=wrong, n_folds=4)
    assert miss.mean == 0.0


def test_hits_and_folds_by_hand():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    true = torch.tensor([[2.0, 0.1], [1.0, 0.0], [1.0, 1.0]])  # image 1's caption points away
    negatives = torch.stack([torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, 3.0]]),
                             torch.tensor([[-1.0, -1.0]])])  # (N, K=1, D)
    assert r_precision_hits(codes, true, negatives).tolist() == [True, False, True]
    acc = fold_accuracies(torch.tensor([True, False, True, True]), 2, torch.Generator())
    assert acc.shape == (2,) and acc.mean().item() == pytest.approx(0.75)
