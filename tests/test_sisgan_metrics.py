"""ToyBirds manipulation metrics: pair selection and scoring with a table-lookup oracle."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from t2ilib.data.toybirds import ATTRIBUTES, write_toybirds
from t2ilib.metrics.manipulation import (
    ManipulationPairs,
    make_pairs,
    region_errors,
    score_manipulation,
    to_unit,
)
from t2ilib.metrics.toy_oracle import OracleOutput, OracleReport


class TableOracle(nn.Module):
    """A stand-in oracle that 'reads' each image from a table (keyed by its uint8 pixels)."""

    def __init__(self):
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))  # the real oracle's helpers ask for a device
        self.table: dict[bytes, tuple[dict[str, str], torch.Tensor]] = {}

    @staticmethod
    def key(image: torch.Tensor) -> bytes:
        return ((image.float() + 1) * 127.5).round().to(torch.uint8).numpy().tobytes()

    def add(self, image_uint8: torch.Tensor, attributes: dict, mask: torch.Tensor) -> None:
        self.table[self.key(to_unit(image_uint8[None])[0])] = (attributes, mask)

    def forward(self, images: torch.Tensor) -> OracleOutput:
        logits = {a: torch.zeros(len(images), len(v)) for a, v in ATTRIBUTES.items()}
        masks = torch.zeros(len(images), 1, *images.shape[-2:])
        for i, image in enumerate(images):
            attributes, mask = self.table[self.key(image)]
            for a, values in ATTRIBUTES.items():
                logits[a][i, values.index(attributes[a])] = 10.0
            masks[i, 0] = torch.where(mask, 10.0, -10.0)
        return OracleOutput(logits, torch.zeros(len(images), 4), masks)


REPORT = OracleReport(accuracy={a: 1.0 for a in ATTRIBUTES}, mask_iou=1.0, n_test=10)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=2, n_test=12,
                          size=64, seed=3)


@pytest.fixture(scope="module")
def pairs(root) -> ManipulationPairs:
    return make_pairs(root, "test", n=10, seed=0)


def test_pairs_ask_for_a_change(pairs):
    assert len(pairs) == 10 and pairs.images.shape == (10, 3, 64, 64)
    assert pairs.images.dtype == torch.uint8 and pairs.masks.shape == (10, 64, 64)
    for key, source, other, named, caption in zip(pairs.keys, pairs.sources, pairs.target_keys,
                                                  pairs.targets, pairs.captions):
        assert other != key and named
        assert any(source[a] != v for a, v in named.items())
        for a, v in named.items():
            if a.endswith("_color"):
                assert v in caption or (v == "grey" and "gray" in caption)
    assert all(m.any() and not m.all() for m in pairs.masks)


def test_pairs_are_deterministic(root, pairs):
    again = make_pairs(root, "test", n=10, seed=0)
    assert again.keys == pairs.keys and again.captions == pairs.captions
    other = make_pairs(root, "test", n=10, seed=1)
    assert other.captions != pairs.captions


def perfect_edits(pairs: ManipulationPairs, oracle: TableOracle) -> torch.Tensor:
    """Outputs that change only bird pixels and that the oracle reads as the asked values."""
    outputs = pairs.images.clone()
    for i in range(len(pairs)):
        bird = pairs.masks[i]
        outputs[i][:, bird] = (outputs[i][:, bird].int() + 40).clamp(0, 255).to(torch.uint8)
        oracle.add(outputs[i], {**pairs.sources[i], **pairs.targets[i]}, pairs.masks[i])
    return outputs


def test_identity_keeps_everything_and_edits_nothing(pairs):
    oracle = TableOracle()
    for i in range(len(pairs)):
        oracle.add(pairs.images[i], pairs.sources[i], pairs.masks[i])
    scores = score_manipulation(oracle, REPORT, pairs, to_unit(pairs.images))
    assert scores.target_accuracy == 0.0  # no requested change happened
    assert 0.0 <= scores.target_accuracy_all < 1.0
    assert scores.preservation == 1.0 and scores.mask_iou == 1.0
    assert scores.background_error == 0.0 and scores.bird_change == 0.0
    assert sum(t for _, t in scores.target.values()) >= len(pairs)


def test_perfect_edits_score_one(pairs):
    oracle = TableOracle()
    outputs = perfect_edits(pairs, oracle)
    scores = score_manipulation(oracle, REPORT, pairs, outputs)
    assert scores.target_accuracy == 1.0 and scores.target_accuracy_all == 1.0
    assert scores.preservation == 1.0 and scores._rate(scores.unnamed_colours) == 1.0
    assert scores.background_error == 0.0 and 30 < scores.bird_change <= 40
    assert "target acc. (edits)" in str(scores)


def test_a_flipped_bird_loses_facing_and_position(pairs):
    oracle = TableOracle()
    outputs = pairs.images.flip(-1)
    for i in range(len(pairs)):
        facing = "left" if pairs.sources[i]["facing"] == "right" else "right"
        oracle.add(outputs[i], {**pairs.sources[i], "facing": facing}, pairs.masks[i].flip(-1))
    scores = score_manipulation(oracle, REPORT, pairs, outputs)
    assert scores.preserved["facing"][0] == 0 and scores.preserved["facing"][1] == len(pairs)
    assert scores.preserved["size"] == (len(pairs) - sum("size" in t for t in pairs.targets),) * 2
    assert scores.mask_iou < 1.0 and scores.background_error > 0


def test_unjudged_attributes_are_not_scored(pairs):
    oracle = TableOracle()
    outputs = perfect_edits(pairs, oracle)
    weak = OracleReport(accuracy={**REPORT.accuracy, "facing": 0.6, "body_color": 0.9},
                        mask_iou=1.0, n_test=10)
    scores = score_manipulation(oracle, weak, pairs, outputs)
    assert "facing" not in scores.preserved and "body_color" not in scores.target
    with pytest.raises(ValueError, match="do not match"):
        score_manipulation(oracle, REPORT, pairs, outputs[:3])


def test_region_errors_by_hand():
    sources = torch.zeros(1, 3, 2, 2, dtype=torch.uint8)
    outputs = sources.clone()
    outputs[0, :, 0, 0] = 30  # inside the mask
    outputs[0, 0, 1, 1] = 90  # outside: one channel of one pixel
    mask = torch.tensor([[[True, False], [False, False]]])
    outside, inside = region_errors(outputs, sources, mask)
    assert inside.item() == pytest.approx(30.0)
    assert outside.item() == pytest.approx(90 / 3 / 3)  # 3 outside pixels, 3 channels
