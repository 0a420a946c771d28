"""The reference models shipped in ``models/``: small, safe to load, what their record says,
and usable by the demo without any training."""

from __future__ import annotations

import json

import pytest
import torch

from t2ilib.apps.demo_models import (
    REFERENCE_FILES,
    SISGANModel,
    load_reference_sisgan,
    load_reference_ssagan,
    reference_entry,
    reference_model_file,
)
from t2ilib.engine.sampling_file import sampling_only
from t2ilib.io import file_sha256, load_torch
from t2ilib.sisgan.sampling import manipulate
from t2ilib.ssagan.controlled import seed_vs_caption


@pytest.fixture(scope="module")
def record(repo):
    return json.loads((repo / "models" / "reference_models.json").read_text())


@pytest.mark.parametrize("kind", sorted(REFERENCE_FILES))
def test_each_reference_model_is_a_small_sampling_only_file_matching_its_record(kind, record,
                                                                                 repo):
    path = reference_model_file(kind)
    assert path.stat().st_size <= 12 * 2**20
    payload = load_torch(path)  # weights_only=True
    assert set(payload["state"]) == {"G", "text_encoder"}
    assert sampling_only(payload)["dtype"] == "float16"
    entry = record[kind]
    assert entry["sha256"] == file_sha256(path), "models/reference_models.json is out of date"
    assert reference_entry(kind) == entry
    assert (entry["epoch"], entry["step"]) == (payload["counters"]["epoch"],
                                               payload["counters"]["step"])
    readme = (repo / "models" / "README.md").read_text()
    assert entry["sha256"][:12] in readme and REFERENCE_FILES[kind] in readme
    assert record["command"] in readme


def test_the_reference_ssagan_is_ready_for_the_demo_and_its_record_is_true(record):
    model = load_reference_ssagan()
    figures = record["ssagan"]["figures"]
    assert model.mask_iou == figures["mask_iou"]  # the demo shows the measured best stage
    assert model.best_mask_stage() is not None
    assert "reference SSA-GAN" in model.describe()
    measured = seed_vs_caption(model.generator, model.text_encoder, model.vocab)
    for key in ("by_caption", "by_seed"):  # notebook 10's measure, recomputed from the file
        assert measured[key] == pytest.approx(figures["seed_vs_caption"][key], abs=2e-3)


def test_the_reference_sisgan_edits_the_given_sources():
    sources = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    like = SISGANModel(torch.nn.Identity(), torch.nn.Identity(), None, sources,
                       ["a", "b", "c"], "stand-in")
    model = load_reference_sisgan(like=like)
    size = int(model.generator.config.image_size)
    assert model.sources.shape == (3, 3, size, size) and model.source_captions == ["a", "b", "c"]
    red = manipulate(model.generator, model.text_encoder, model.vocab, model.sources[:1],
                     ["this bird has a red belly and blue wings"])
    yellow = manipulate(model.generator, model.text_encoder, model.vocab, model.sources[:1],
                        ["a bird with a yellow body and black wings"])
    assert red.shape == (1, 3, size, size) and torch.isfinite(red).all()
    assert (red - yellow).abs().mean() > 1e-3  # the caption reaches the picture
