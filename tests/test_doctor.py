"""``python -m t2ilib doctor`` (``t2ilib.apps.doctor``): data, weight files and GPU per run.

Every test points the data root at a temporary folder and ``$TORCH_HOME`` at an empty one,
so the report does not depend on what this machine holds.
"""

from __future__ import annotations

import hashlib
import json
import os

import pytest
import torch

from t2ilib.apps import cli, doctor
from t2ilib.data.cub import load_captions
from t2ilib.data.fixtures import make_cub_fixture
from t2ilib.engine.checkpoint import write_checkpoint
from t2ilib.text.vocab import Vocabulary

from .helpers import assert_one_line_error


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """An empty torch hub and no ``$T2I_FID_WEIGHTS``; returns the data root to use."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("T2I_FID_WEIGHTS", raising=False)
    return tmp_path / "data"


def _run(capsys, *argv: str) -> str:
    assert cli.main(["doctor", *argv]) == 0
    return capsys.readouterr().out


def _row(text: str, name: str) -> list[str]:
    """The cells of the table row whose first cell is ``name`` (split on two spaces)."""
    for line in text.splitlines():
        if line.split("  ")[0] == name:
            return [cell.strip() for cell in line.split("  ") if cell.strip()]
    raise AssertionError(f"no row {name!r} in:\n{text}")


def _by_name(items: list[dict]) -> dict[str, dict]:
    return {item["name"]: item for item in items}


def test_an_empty_data_root_reports_everything_missing(isolated, capsys, monkeypatch):
    monkeypatch.setenv("T2I_DATA", "/somewhere/else")
    text = _run(capsys, "--data-root", str(isolated))
    assert f"data root {isolated}" in text.splitlines()[0]
    for name in ("toybirds", "cub", "flowers"):
        assert _row(text, name)[1] == "missing"
    assert _row(text, "cub")[2] == str(isolated / "birds")
    for name in ("inception_imagenet", "fid_inception", "vgg16_bn", "damsm_cub_attngan",
                 "attngan_text", "attngan_image", "damsm_toybirds"):
        assert _row(text, name)[1] == "missing"
    assert _row(text, "inception_imagenet")[2] == "sha256 prefix 0cc3c7bd (prefix only)"
    assert _row(text, "vgg16_bn")[2] == "sha256 prefix 6c64b313 (prefix only)"
    assert _row(text, "fid_inception")[2] == "sha256 6726825d...9129b2 (full)"
    assert _row(text, "inception_imagenet")[3] == str(
        isolated.parent / "torch" / "hub" / "checkpoints" / "inception_v3_google-0cc3c7bd.pth")
    # the ToyBirds notebooks make what they need; every other run lacks a requirement
    assert _row(text, "toybirds_notebooks")[1:3] == ["yes", "data:toybirds"]
    for run in ("ssagan_cub", "sisgan_cub", "sisgan_flowers", "fid_eval"):
        assert _row(text, run)[1] == "no"
    assert not isolated.exists()  # nothing was written
    assert torch.hub.get_dir().startswith(str(isolated.parent))
    assert os.environ["T2I_DATA"] == "/somewhere/else"  # restored after the report


def test_the_json_report(isolated, capsys):
    report = json.loads(_run(capsys, "--data-root", str(isolated), "--json"))
    assert report["data_root"] == str(isolated)
    assert report["gpu"]["available"] == torch.cuda.is_available()
    assert len(report["gpu"]["devices"]) == (torch.cuda.device_count()
                                             if torch.cuda.is_available() else 0)
    data, weights = _by_name(report["data"]), _by_name(report["weights"])
    assert {d["status"] for d in data.values()} == {"missing"}
    assert len(data["cub"]["missing"]) == 6
    assert {w["status"] for w in weights.values()} == {"missing"}
    assert weights["fid_inception"]["looked_at"][-1] == str(
        isolated / "checkpoints" / "pt_inception-2015-12-05-6726825d.pth")
    runs = _by_name(report["runs"])
    assert [r for r, run in runs.items() if run["ready"]] == ["toybirds_notebooks"]
    needs = {c["item"]: c["need"] for c in runs["ssagan_cub"]["checks"]}
    assert needs == {"data:cub": "required", "damsm:cub": "required", "gpu": "recommended"}


def test_cub_present_and_weight_files_with_wrong_digests(isolated, tmp_path, capsys,
                                                         monkeypatch):
    make_cub_fixture(isolated / "birds")
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / "inception_v3_google-0cc3c7bd.pth").write_bytes(b"not the ImageNet weights")
    fake_fid = tmp_path / "fid.pth"
    fake_fid.write_bytes(b"not the FID weights")
    monkeypatch.setenv("T2I_FID_WEIGHTS", str(fake_fid))
    release = isolated / "checkpoints" / "DAMSMencoders" / "bird"
    release.mkdir(parents=True)
    (release / "text_encoder200.pth").write_bytes(b"any bytes: no published digest")

    text = _run(capsys, "--data-root", str(isolated))
    assert _row(text, "cub")[1:3] == ["ok", str(isolated / "birds")]
    assert _row(text, "toybirds")[1] == "missing" and _row(text, "flowers")[1] == "missing"
    prefix = hashlib.sha256(b"not the ImageNet weights").hexdigest()[:8]
    assert _row(text, "inception_imagenet")[1] == "mismatch"
    assert (f"inception_imagenet: SHA-256 starts {prefix}, expected 0cc3c7bd: another or "
            "damaged file") in text
    assert _row(text, "fid_inception")[1:] == ["mismatch", "sha256 6726825d...9129b2 (full)",
                                               str(fake_fid)]
    assert _row(text, "attngan_text")[1:3] == ["present", "none published"]
    assert _row(text, "attngan_image")[1] == "missing"
    # CUB is there, but neither DAMSM route: the wrong Inception file does not count
    assert _row(text, "ssagan_cub")[1:5] == ["no", "data:cub", "required", "ok"]
    damsm = [line for line in text.splitlines() if line.split()[:1] == ["damsm:cub"]]
    assert damsm[0].split()[1:4] == ["required", "missing", "neither"]
    report = json.loads(_run(capsys, "--data-root", str(isolated), "--json"))
    weights = _by_name(report["weights"])
    assert weights["inception_imagenet"]["sha256"].startswith(prefix)
    assert weights["fid_inception"]["found"] == str(fake_fid)
    checks = {c["item"]: c for c in _by_name(report["runs"])["ssagan_cub"]["checks"]}
    assert checks["data:cub"]["ok"] and not checks["damsm:cub"]["ok"]
    assert _by_name(report["runs"])["sisgan_cub"]["ready"]  # its weights are optional
    assert not _by_name(report["runs"])["fid_eval"]["ready"]  # a mismatched file is not met


def test_a_converted_damsm_is_checked_against_the_data_vocabulary(isolated, capsys):
    root = make_cub_fixture(isolated / "birds").root
    vocab = load_captions(root).vocab  # writes birds/captions.pickle
    path = isolated / "checkpoints" / "damsm_cub_attngan" / "checkpoint.pt"
    for words, status in ((vocab.words, "ok"), ([*vocab.words[:-2], *vocab.words[:-3:-1]],
                                                 "mismatch")):
        write_checkpoint(path, kind="damsm", state={}, meta={}, rng=False,
                         fingerprint={"vocab": Vocabulary.from_words(words).fingerprint(),
                                      "extra.source": "attngan-release"})
        report = json.loads(_run(capsys, "--data-root", str(isolated), "--json"))
        converted = _by_name(report["weights"])["damsm_cub_attngan"]
        assert converted["status"] == status, converted
        assert "source attngan-release" in converted["detail"]
        ssagan = _by_name(report["runs"])["ssagan_cub"]
        assert ssagan["ready"] == (status == "ok")  # the converted DAMSM is the DAMSM route
    assert "differs: convert again with the data's captions.pickle" in converted["detail"]


def test_a_prefix_that_matches_is_ok(tmp_path):
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights")
    sha = hashlib.sha256(b"weights").hexdigest()
    entry = doctor._weight("w", "w.pth", "a test", [path], lambda: path, prefix=sha[:8])
    assert (entry["status"], entry["sha256"]) == ("ok", sha)
    assert doctor._weight("w", "w.pth", "", [path], lambda: path, full=sha)["status"] == "ok"
    assert doctor._weight("w", "w.pth", "", [path], lambda: path,
                          full="0" * 64)["status"] == "mismatch"


def test_a_data_root_that_is_a_file_is_a_bad_argument(tmp_path, capsys):
    path = tmp_path / "a_file"
    path.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["doctor", "--data-root", str(path)])
    assert_one_line_error(exit_info, capsys, f"--data-root {path} is not a folder")


def test_a_gpu_is_reported_with_name_and_memory(isolated, capsys, monkeypatch):
    """No GPU here: CUDA's answers are stubbed (what the report reads of them)."""
    from types import SimpleNamespace

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: SimpleNamespace(
        name="NVIDIA H100 80GB HBM3", total_memory=int(79.2 * 2**30)))
    text = _run(capsys, "--data-root", str(isolated))
    assert text.splitlines()[1].startswith("GPU: NVIDIA H100 80GB HBM3 (79.2 GiB)")
    report = json.loads(_run(capsys, "--data-root", str(isolated), "--json"))
    assert report["gpu"]["devices"] == [{"name": "NVIDIA H100 80GB HBM3", "memory_gib": 79.2}]
    gpu = {c["item"]: c for c in _by_name(report["runs"])["ssagan_cub"]["checks"]}["gpu"]
    assert (gpu["status"], gpu["ok"], gpu["detail"]) == ("ok", True, "NVIDIA H100 80GB HBM3")
