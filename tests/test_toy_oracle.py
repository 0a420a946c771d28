"""ToyBirds oracle: metrics against hand computations, augmentation, persistence, load-or-train."""

from __future__ import annotations

import pytest
import torch

from t2ilib.data.toybirds import ATTRIBUTES, write_toybirds
from t2ilib.metrics import toy_oracle as to


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
        im, mk, fc = to._augment(images, masks, facing, 0, gen)
        for i in range(2):
            flipped = bool(fc[i] != facing[i])
            assert torch.equal(im[i], images[i].flip(-1) if flipped else images[i])
            assert torch.equal(mk[i], masks[i].flip(-1) if flipped else masks[i])


@pytest.fixture(scope="module")
def tiny_toybirds(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=24, n_test=8,
                          size=32, seed=3)


def test_load_or_train_trains_once_then_loads(tiny_toybirds, tmp_path, monkeypatch):
    cfg = to.OracleTrainConfig(steps=3, batch_size=4)
    small = to.OracleConfig(widths=(8, 8, 16, 16), groups=4)
    path = tmp_path / "oracle.pt"
    oracle, report = to.load_or_train_oracle(tiny_toybirds, path, cfg, small)
    assert path.is_file() and report.n_test == 8
    assert set(report.accuracy) == set(ATTRIBUTES) and 0 <= report.mask_iou <= 1

    def no_training(*args, **kwargs):
        raise AssertionError("trained again although a matching checkpoint exists")

    monkeypatch.setattr(to, "train_oracle", no_training)
    again, report2 = to.load_or_train_oracle(tiny_toybirds, path, cfg, small)
    assert report2.accuracy == report.accuracy
    for p, q in zip(oracle.state_dict().values(), again.state_dict().values()):
        assert torch.equal(p, q)
    with pytest.raises(AssertionError, match="trained again"):  # other settings -> retrain
        to.load_or_train_oracle(tiny_toybirds, path, to.OracleTrainConfig(steps=4, batch_size=4),
                                small)


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
    assert "mask IoU" in out and list((tmp_path / "checkpoints").glob("toy_oracle_*.pt"))
