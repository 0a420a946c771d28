"""Evaluating a checkpoint (t2ilib.apps.evaluate) and ``python -m t2ilib evaluate``.

A 16 + 4 image ToyBirds set at 32 px, G/D trained for one step (ngf = 4), an oracle trained for
two steps: the numbers mean nothing, the plumbing (sample plan, caption targets, anchors, masks,
report keys, CLI errors) is what is checked.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from t2ilib.apps.cli import main
from t2ilib.apps.demo_models import DemoModel
from t2ilib.apps.evaluate import (
    EvalConfig,
    ToyScorer,
    evaluate_checkpoint,
    parse_metrics,
    sample_plan,
)
from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.data.cache import CachedCUBDataset
from t2ilib.data.toybirds import ATTRIBUTES, BEAK_COLORS, COLORS, write_toybirds
from t2ilib.data.trainset import TrainData
from t2ilib.metrics import toy_oracle as to
from t2ilib.metrics import toy_oracle_train as tt
from t2ilib.metrics.fid import FID_WEIGHTS_FILE, WEIGHTS_ENV
from t2ilib.ssagan.model import SSAGANConfig
from t2ilib.ssagan.recipes import Recipe, SSAGANTrainConfig
from t2ilib.ssagan.train import ssagan_engine
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

pytestmark = pytest.mark.filterwarnings("ignore:R-precision. only", "ignore:FID. fewer")


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("eval")
    root = write_toybirds(tmp / "toybirds", n_train=16, n_test=4, size=32, seed=1)
    data = TrainData.from_dataset(CachedCUBDataset(root, "train", image_size=32, uint8=True),
                                  "toybirds32")
    out = {"root": root}
    for block in ("ssacn", "df"):
        torch.manual_seed(0)
        te = TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=16, hidden_dim=32))
        ie = SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=4))
        model = SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=32, block=block)
        recipe = Recipe("test", model,
                        SSAGANTrainConfig(epochs=1, batch_size=4, max_steps_per_epoch=1))
        trainer = ssagan_engine(recipe, te, ie, data, device="cpu", run_dir=tmp / block)
        trainer.fit(1, progress_bar=False)
        out[block] = trainer.checkpoint_path
    oracle, _ = tt.train_oracle(to.load_toybirds_arrays(root, "train"),
                                tt.OracleTrainConfig(steps=2, batch_size=4))
    report = to.evaluate_oracle(oracle, to.load_toybirds_arrays(root, "test"))
    out["oracle"] = to.save_oracle(tmp / "oracle.pt", oracle, report, {"name": "test"})
    return out


class ChannelMeans(nn.Module):
    num_features = 3

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images.double().mean((2, 3))


class TinyClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(3, 5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fc(images.float().mean((2, 3)) / 255)


def test_sample_plan_walks_the_test_set_caption_by_caption():
    plan = sample_plan(3, 10, samples_per_image=2)
    assert plan.tolist() == [[0, 0], [1, 0], [2, 0], [0, 1], [1, 1], [2, 1]]
    assert sample_plan(3, 2, samples_per_image=3)[:, 1].tolist() == [0] * 3 + [1] * 3 + [0] * 3
    assert sample_plan(3, 10, 2, n_samples=8)[6:].tolist() == [[0, 0], [1, 0]]  # wraps
    assert sample_plan(3, 10, 2, n_samples=2).tolist() == [[0, 0], [1, 0]]
    cub = sample_plan(2933, 10, 10, n_samples=30_000)  # the papers' protocol
    first = {tuple(r) for r in cub[:29_330].tolist()}
    assert len(first) == 29_330  # every test caption exactly once ...
    assert cub[29_330:].tolist() == [[i, 0] for i in range(670)]  # ... then a second walk


def test_metric_names_are_checked():
    assert parse_metrics("toy, FID,toy") == ("toy", "fid")
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metrics("fid,kid")
    with pytest.raises(ValueError):
        EvalConfig(metrics=("fid", "lpips"))
    with pytest.raises(ValueError):
        EvalConfig(n_samples=0)
    with pytest.raises(ValueError, match="splits"):
        EvalConfig(n_samples=5)  # IS in 10 splits
    assert EvalConfig(metrics=("toy",), n_samples=5).n_samples == 5


def test_caption_targets_name_exactly_the_colours_in_the_caption(toy):
    test = CachedCUBDataset(toy["root"], "test", image_size=32)
    plan = sample_plan(len(test), test.captions_per_image, samples_per_image=10)
    oracle, report, _ = to.load_oracle(toy["oracle"])
    scorer = ToyScorer(oracle, report, toy["root"], test, plan)
    colour_attrs = ("body_color", "wing_color", "crown_color", "beak_color")
    palette = set(COLORS) | set(BEAK_COLORS) | {"gray"}
    for (i, j), target in zip(plan.tolist(), scorer.targets):
        caption = test.vocab.decode(test.captions_of(i)[j])
        words = set(re.findall(r"[a-z]+", caption))
        named = {"grey" if w == "gray" else w for w in words & palette}
        asked = {v for k, v in target.items() if k in colour_attrs}
        assert named == asked, (caption, target)
        if "beak_length" in target or "size" in target:
            assert set(target) - set(colour_attrs) <= {"beak_length", "size"}


def test_the_oracle_sees_generated_images_at_its_training_scale(toy):
    test = CachedCUBDataset(toy["root"], "test", image_size=32)  # cache 38 px, oracle 32 px
    oracle, report, _ = to.load_oracle(toy["oracle"])
    scorer = ToyScorer(oracle, report, toy["root"], test, sample_plan(4, 10, 1))
    assert (scorer.inner, scorer.pad) == (round(32 * 32 / 38), 2)
    grey = torch.full((2, 3, 32, 32), 200, dtype=torch.uint8)
    view = scorer.view(grey)
    assert view.shape == (2, 3, 32, 32)
    assert torch.allclose(view, torch.full_like(view, 200 / 127.5 - 1))  # edge padding
    ramp = torch.arange(32, dtype=torch.uint8).mul(8).expand(1, 3, 32, 32)
    inside = scorer.crop(scorer.view(ramp)[:, 0])
    assert inside.shape == (1, 27, 27) and inside[0, 0, 0] < inside[0, 0, -1]


def test_evaluate_reports_every_metric_with_its_anchors(toy):
    config = EvalConfig(n_samples=10, samples_per_image=3, batch_size=4, is_splits=2,
                        judge_threshold=0.0)
    report = evaluate_checkpoint(toy["ssacn"], toy["root"], config, device="cpu",
                                 oracle=toy["oracle"], fid_extractor=ChannelMeans(),
                                 is_classifier=TinyClassifier())
    assert json.loads(json.dumps(report)) == report  # plain JSON
    assert report["protocol"]["n_samples"] == 10 and report["step"] == 1
    assert report["fid"]["n_fake"] == 10 and report["fid"]["n_real"] == 4
    assert report["fid"]["value"] > 0
    assert report["is"]["n"] == 10 and report["is"]["mean"] >= 1.0 - 1e-6
    assert report["rprec"]["n_images"] == 10 and "optimistic" in report["rprec"]["judge"]
    toy_report = report["toy"]
    assert toy_report["judged"] == [n for n in ATTRIBUTES if n in toy_report["judged"]]
    align = toy_report["alignment"]
    assert set(align) == {"generated", "real", "shuffled", "chance"}
    # the real anchor, recomputed by hand: the oracle on the real test image of each sample
    test = CachedCUBDataset(toy["root"], "test", image_size=32)
    plan = sample_plan(4, 10, 3, 10)
    oracle, oracle_report, _ = to.load_oracle(toy["oracle"])
    scorer = ToyScorer(oracle, oracle_report, toy["root"], test, plan, config.toy())
    real = to.predict_attributes(oracle, scorer.view(test.images[:, :, 3:35, 3:35]))  # centre
    for name in toy_report["judged"]:
        counted = [t[name] for t in scorer.targets if name in t]
        hits = sum(ATTRIBUTES[name][int(real[name][i])] == t[name]
                   for (i, _), t in zip(plan.tolist(), scorer.targets) if name in t)
        assert align["real"][name]["n"] == len(counted) == align["generated"][name]["n"]
        if counted:
            assert align["real"][name]["accuracy"] == pytest.approx(hits / len(counted))
        assert align["chance"][name] == pytest.approx(1 / len(ATTRIBUTES[name]))
    masks = toy_report["mask_iou"]
    assert [s["size"] for s in masks["stages"]] == [4, 8, 16, 32]
    assert all(0.0 <= s["iou"] <= 1.0 for s in masks["stages"])
    assert masks["whole_image"] == pytest.approx(masks["bird_fraction"])  # IoU(1, m) = |m| / S^2
    fid = toy_report["toy_fid"]
    assert fid["n_generated"] == 10 and fid["n_real_split"] == 10 and fid["n_reference"] == 4
    assert fid["generated"] >= 0 and fid["real_vs_real"] >= 0


def test_the_df_variant_has_no_masks_and_toy_needs_toybirds(toy, tmp_path):
    config = EvalConfig(metrics=("toy",), n_samples=4, samples_per_image=1, batch_size=4)
    report = evaluate_checkpoint(toy["df"], toy["root"], config, device="cpu",
                                 oracle=toy["oracle"])
    assert report["model"]["block"] == "df"
    assert report["toy"]["mask_iou"]["stages"] == []
    assert "no masks" in report["toy"]["mask_iou"]["note"]
    assert set(report) >= {"toy", "protocol"} and "fid" not in report
    with pytest.raises(ValueError, match="ToyBirds"):
        evaluate_checkpoint(toy["df"], tmp_path, config)


def test_cli_evaluate_end_to_end(toy, tmp_path, capsys):
    out = tmp_path / "report.json"
    argv = ["evaluate", "--checkpoint", str(toy["ssacn"]), "--data-dir", str(toy["root"]),
            "--metrics", "rprec,toy", "--n-samples", "8", "--samples-per-image", "2",
            "--batch-size", "4", "--oracle", str(toy["oracle"]), "--device", "cpu",
            "--out", str(out)]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert {"checkpoint", "step", "model", "protocol", "rprec", "toy", "seconds"} <= set(report)
    assert "fid" not in report and "is" not in report
    assert report["protocol"]["n_samples"] == 8
    assert {"alignment", "binding", "toy_fid", "mask_iou", "judged", "oracle"} <= set(report["toy"])
    assert set(report["toy"]["binding"]) == {"generated", "real", "shuffled"}
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-2])
    assert summary["n_samples"] == 8 and "rprec" in summary


@pytest.mark.parametrize("extra, expected", [
    (["--metrics", "fid,bogus"], "unknown metric"),
    (["--metrics", "fid"], FID_WEIGHTS_FILE),
    (["--n-samples", "0"], "must be a positive integer"),
])
def test_cli_evaluate_errors_are_one_line(toy, tmp_path, monkeypatch, capsys, extra, expected):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("T2I_DATA", str(tmp_path / "data"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    argv = ["evaluate", "--checkpoint", str(toy["ssacn"]), "--data-dir", str(toy["root"]),
            "--device", "cpu", "--out", str(tmp_path / "r.json"), *extra]
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert re.match(r"t2ilib( evaluate)?: error: ", err[-1]) and expected in err[-1]
    assert not (tmp_path / "r.json").exists()


def test_measure_masks_gives_the_demo_the_stage_that_localises_best(toy):
    from t2ilib.apps.demo_models import measure_masks
    from t2ilib.ssagan.sampling import load_generator

    g, te, vocab, _ = load_generator(toy["ssacn"])
    model = DemoModel(g, te, vocab, toy["ssacn"], "tiny")
    assert model.best_mask_stage() is None
    masks = measure_masks(model, toy["root"], n_samples=8, oracle=toy["oracle"])
    assert model.mask_iou == masks and [s["size"] for s in masks["stages"]] == [4, 8, 16, 32]
    k, iou, disc = model.best_mask_stage()
    assert iou == max(s["iou"] for s in masks["stages"]) == masks["stages"][k]["iou"]
    assert disc == masks["centred_blob"]
    with pytest.raises(ValueError, match="no checkpoint"):
        measure_masks(DemoModel(g, te, vocab, None, "unsaved"), toy["root"], oracle=toy["oracle"])
