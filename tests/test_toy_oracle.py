"""ToyBirds oracle: metrics against hand computations, augmentation, persistence, load-or-train,
exact resume on the engine."""

from __future__ import annotations

import pytest
import torch

from t2ilib.data.toybirds import ATTRIBUTES, write_toybirds
from t2ilib.engine.checkpoint import CheckpointMismatch
from t2ilib.engine.loop import Engine
from t2ilib.metrics import toy_oracle as to
from t2ilib.metrics import toy_oracle_train as tt


def test_frechet_distance_matches_an_independent_computation():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(400, 5, generator=gen, dtype=torch.float64)
    b = torch.randn(300, 5, generator=gen, dtype=torch.float64) @ torch.randn(5, 5, generator=gen,
                                                                          dtype=torch.float64)
    b = b + 2.0
    # independent route: eigenvalues of the non-symmetric product cov_a @ cov_b
    ca, cb = torch.cov(a.T), torch.cov(b.T)
    tr_sqrt = torch.linalg.eigvals(ca @ cb).real.clamp(min=0).sqrt().sum()
    expected = ((a.mean(0) - b.mean(0)) ** 2).sum() + ca.trace() + cb.trace() - 2 * tr_sqrt
    assert to.frechet_distance(a, b) == pytest.approx(float(expected), rel=1e-8)
    assert to.frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # a pure shift by c adds |c|^2
    assert to.frechet_distance(a, a + 3.0) == pytest.approx(9.0 * 5, rel=1e-8)
    with pytest.raises(ValueError):
        to.frechet_distance(a, b[:, :4])


def test_mask_iou_by_hand():
    pred = torch.zeros(3, 4, 4, dtype=torch.bool)
    target = torch.zeros(3, 4, 4, dtype=torch.bool)
    pred[0, :2, :2] = True          # 4 pixels
    target[0, :2, :] = True         # 8 pixels, 4 shared -> 4/8
    pred[1, 0, 0] = True            # disjoint -> 0
    target[1, 3, 3] = True
    iou = to.mask_iou(pred, target)  # image 2: both empty -> 1
    assert iou.tolist() == [0.5, 0.0, 1.0]
    with pytest.raises(ValueError):
        to.mask_iou(pred, target[:, :3])


def test_centred_blob_is_centred_and_sized():
    blob = to.centred_blob(2, 32, radius=0.25)
    assert blob.shape == (2, 32, 32) and blob[0, 16, 16] and not blob[0, 0, 0]
    area = blob[0].sum().item()
    assert abs(area - 3.14159 * 8 ** 2) < 20


def test_alignment_counts_only_mentioned_attributes():
    colors = ATTRIBUTES["body_color"]
    predicted = {name: torch.zeros(3, dtype=torch.long) for name in ATTRIBUTES}
    predicted["body_color"] = torch.tensor([colors.index("red"), colors.index("blue"), 0])
    targets = [{"body_color": "red", "size": ATTRIBUTES["size"][0]},
               {"body_color": "red"},
               {}]
    counts = to.alignment(predicted, targets)
    assert counts["body_color"] == (1, 2)
    assert counts["size"] == (1, 1)
    assert counts["wing_color"] == (0, 0)
    assert set(to.alignment(predicted, targets, ("size",))) == {"size"}
    with pytest.raises(ValueError):
        to.alignment(predicted, targets[:2])
    shuffled = to.shuffled(targets, seed=1)
    assert sorted(map(str, shuffled)) == sorted(map(str, targets))


def test_oracle_shapes_and_bad_input():
    oracle = to.ToyOracle()
    out = oracle(torch.randn(2, 3, 32, 32))
    assert out.features.shape == (2, oracle.feature_dim)
    assert out.mask_logits.shape == (2, 1, 32, 32)
    widths = {k: v.shape[1] for k, v in out.logits.items()}
    assert widths == {k: len(v) for k, v in ATTRIBUTES.items()}
    with pytest.raises(ValueError):
        oracle(torch.randn(2, 3, 40, 40))


def test_flip_augmentation_swaps_facing_and_flips_the_mask():
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    masks = torch.zeros(2, 1, 8, 8)
    masks[:, :, :, :2] = 1  # bird on the left
    facing = torch.tensor([0, 1])
    gen = torch.Generator().manual_seed(0)
    for _ in range(8):  # both branches get drawn
        im, mk, fc = tt._augment(images, masks, facing, 0, gen)
        for i in range(2):
            flipped = bool(fc[i] != facing[i])
            assert torch.equal(im[i], images[i].flip(-1) if flipped else images[i])
            assert torch.equal(mk[i], masks[i].flip(-1) if flipped else masks[i])


def test_degraded_views_keep_the_frame_and_blur_within_range():
    gen = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64) * 2 - 1
    for _ in range(5):
        out = tt.degrade_views(images, gen)
        assert out.shape == images.shape and out.min() >= -1 and out.max() <= 1
        assert not torch.equal(out, images)  # lower resolution: some detail is gone
    flat = torch.full((1, 3, 64, 64), 0.25)
    torch.testing.assert_close(tt.degrade_views(flat, gen), flat)  # nothing to lose


@pytest.fixture(scope="module")
def tiny_toybirds(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=24, n_test=8,
                          size=32, seed=3)


SMALL = to.OracleConfig(widths=(8, 8, 16, 16), groups=4)


def test_load_or_train_trains_once_then_loads(tiny_toybirds, tmp_path, monkeypatch):
    cfg = tt.OracleTrainConfig(steps=3, batch_size=4)
    path = tmp_path / "oracle.pt"  # a .pt name: the run folder tmp_path/oracle/
    oracle, report = tt.load_or_train_oracle(tiny_toybirds, path, cfg, SMALL)
    checkpoint = tmp_path / "oracle" / "checkpoint.pt"
    assert checkpoint.is_file() and (tmp_path / "oracle" / "losses.csv").is_file()
    assert report.n_test == 8 and "final_loss" in report.extra
    assert set(report.accuracy) == set(ATTRIBUTES) and 0 <= report.mask_iou <= 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although a matching checkpoint exists")

    monkeypatch.setattr(tt, "load_toybirds_arrays", no_training)  # loading needs no images
    again, report2 = tt.load_or_train_oracle(tiny_toybirds, path, cfg, SMALL)
    assert report2.accuracy == report.accuracy
    for p, q in zip(oracle.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)
    loaded, report3, fingerprint = to.load_oracle(tmp_path / "oracle")  # the folder works too
    assert report3.accuracy == report.accuracy and fingerprint["train.steps"] == 3
    with pytest.raises(CheckpointMismatch, match="train.steps"):  # other settings: refused
        tt.load_or_train_oracle(tiny_toybirds, path, tt.OracleTrainConfig(steps=4, batch_size=4),
                                SMALL)
    with pytest.raises(AssertionError, match="trained again"):  # retrain=True trains
        tt.load_or_train_oracle(tiny_toybirds, path, cfg, SMALL, retrain=True)


def test_oracle_training_resumes_exactly(tiny_toybirds, tmp_path):
    train = to.load_toybirds_arrays(tiny_toybirds, "train")
    cfg = tt.OracleTrainConfig(steps=6, batch_size=4)
    whole = tt.OracleTask(train, cfg, SMALL)
    Engine(whole, tmp_path / "whole").fit(1, progress_bar=False)
    first = tt.OracleTask(train, cfg, SMALL)
    assert Engine(first, tmp_path / "half").fit(1, stop_after=3, progress_bar=False).interrupted
    resumed = tt.OracleTask(train, tt.OracleTrainConfig(steps=6, batch_size=4), SMALL)
    engine = Engine(resumed, tmp_path / "half")
    engine.load()
    assert engine.step == 3 and resumed.scheduler.last_epoch == 3  # the schedule is resumed
    engine.fit(1, progress_bar=False)
    for a, b in zip(whole.model.state_dict().values(), resumed.model.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert whole.scheduler.state_dict() == resumed.scheduler.state_dict()
    assert whole.optimizer.param_groups[0]["lr"] == resumed.optimizer.param_groups[0]["lr"]
    oracle, losses = tt.train_oracle(train, cfg, SMALL, progress_bar=False)  # no files
    assert len(losses) == 6 and not oracle.training
    for a, b in zip(whole.model.state_dict().values(), oracle.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_save_and_load_oracle_and_refuse_old_files(tmp_path):
    oracle = to.ToyOracle(SMALL)
    report = to.OracleReport({"body_color": 0.99}, 0.9, 10)
    path = to.save_oracle(tmp_path / "judge.pt", oracle, report, {"data": "x"})
    again, report2, fingerprint = to.load_oracle(path)
    assert report2 == report and fingerprint == {"data": "x"} and again.config == SMALL
    torch.save({"format": "t2ilib.toy_oracle.v1", "state": oracle.state_dict()},
               tmp_path / "old.pt")
    with pytest.raises(CheckpointMismatch, match="t2ilib.toy_oracle.v1"):
        to.load_oracle(tmp_path / "old.pt")


def test_judged_attributes_follow_the_threshold():
    report = to.OracleReport({"body_color": 0.99, "beak_color": 0.90}, 0.95, 100)
    assert report.judged() == ("body_color",)
    assert "not judged" in str(report)


def test_training_script_reports_and_exits_1_when_the_gates_are_missed(tiny_toybirds, tmp_path,
                                                                        monkeypatch, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data_scripts" / "train_toy_oracle.py"
    spec = importlib.util.spec_from_file_location("train_toy_oracle", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    monkeypatch.setenv("T2I_DATA", str(tmp_path))  # the checkpoint goes to tmp_path/checkpoints
    status = script.main(["--data-dir", str(tiny_toybirds), "--steps", "2", "--batch-size", "4",
                          "--device", "cpu"])
    out = capsys.readouterr().out
    assert status == 1 and "MISSED" in out  # two steps cannot reach 98 %
    assert "mask IoU" in out
    assert list((tmp_path / "checkpoints").glob("toy_oracle_*/checkpoint.pt"))
