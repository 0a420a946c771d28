"""Sampling-only files (``python -m t2ilib export``): G and the text encoder in float16, read by
the same loaders as training checkpoints, never resumed."""

from __future__ import annotations

import json

import pytest
import torch

from t2ilib.apps.cli import main
from t2ilib.engine.checkpoint import CheckpointMismatch
from t2ilib.engine.sampling_file import export_sampling_file, sampling_only
from t2ilib.io import file_sha256, load_torch, save_torch
from t2ilib.sisgan.sampling import load_sisgan, manipulate
from t2ilib.ssagan.sampling import generate, load_generator

from .helpers import assert_one_line_error, tiny_sisgan_run, tiny_train


@pytest.fixture(scope="module")
def ssagan_run(tmp_path_factory):
    """A one-step SSA-GAN run through the CLI: ``(run folder, the train command)``."""
    command, run = tiny_train(tmp_path_factory.mktemp("export"))
    assert main(command) == 0
    return run, command


def test_export_keeps_g_and_the_text_encoder_in_float16(ssagan_run, tmp_path, capsys):
    run, _ = ssagan_run
    out = tmp_path / "model.pt"
    assert main(["export", str(run), str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    payload = load_torch(out)
    assert set(payload["state"]) == {"G", "text_encoder"} and payload["rng"] is None
    floats = [v for sd in payload["state"].values() for v in sd.values() if v.is_floating_point()]
    assert floats and all(v.dtype == torch.float16 for v in floats)
    info = sampling_only(payload)
    assert info["generator"] == "G" and info["dtype"] == "float16"
    assert info["source"].endswith(file_sha256(run / "checkpoint.pt")[:12])
    assert out.stat().st_size < (run / "checkpoint.pt").stat().st_size / 3

    # The loaders read it unchanged; its pictures are the training checkpoint's, up to fp16.
    full = load_generator(run / "checkpoint.pt")
    small = load_generator(out)
    assert small[2] == full[2]  # the vocabulary
    z = torch.randn(3, full[0].config.nz, generator=torch.Generator().manual_seed(0))
    captions = ["this bird is red", "a blue bird", "a small bird with green wings"]
    a, _ = generate(full[0], full[1], full[2], captions, z)
    b, _ = generate(small[0], small[1], small[2], captions, z)
    assert (a - b).abs().max() < 0.05 and (a - b).abs().mean() < 5e-3


def test_a_sampling_only_file_is_never_resumed_or_exported_again(ssagan_run, tmp_path, capsys):
    run, command = ssagan_run
    out = export_sampling_file(run / "checkpoint.pt", tmp_path / "model.pt")
    with pytest.raises(ValueError, match="already a sampling-only file"):
        export_sampling_file(out, tmp_path / "again.pt")
    folder = tmp_path / "resume"
    folder.mkdir()
    (folder / "checkpoint.pt").write_bytes(out.read_bytes())
    resume = [*command[:command.index("--run-dir") + 1], str(folder),
              *command[command.index("--run-dir") + 2:]]
    resume[resume.index("--epochs") + 1] = "2"
    with pytest.raises(SystemExit) as exit_info:
        main(resume)
    assert_one_line_error(exit_info, capsys, "is a sampling-only file")


def test_export_prefers_the_ema_generator(ssagan_run, tmp_path):
    run, _ = ssagan_run
    payload = load_torch(run / "checkpoint.pt")
    ema = {k: v + 0.5 if v.is_floating_point() else v for k, v in payload["state"]["G"].items()}
    payload["state"]["G_ema"] = ema
    save_torch(payload, tmp_path / "with_ema.pt")
    out = load_torch(export_sampling_file(tmp_path / "with_ema.pt", tmp_path / "model.pt"))
    assert sampling_only(out)["generator"] == "G_ema"
    for k, v in ema.items():
        assert torch.equal(out["state"]["G"][k], v.to(torch.float16) if v.is_floating_point()
                           else v)


def test_export_refuses_what_it_cannot_export(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", str(tmp_path / "nope.pt"), str(tmp_path / "out.pt")])
    assert_one_line_error(exit_info, capsys, "no checkpoint at")
    damsm = tmp_path / "damsm.pt"
    save_torch({"format": "t2ilib.checkpoint.v2", "kind": "damsm", "state": {}, "counters": {},
                "fingerprint": {}, "meta": {}}, damsm)
    with pytest.raises(CheckpointMismatch, match="'damsm' checkpoint"):
        export_sampling_file(damsm, tmp_path / "out.pt")


def test_a_sisgan_export_edits_like_its_checkpoint(tmp_path, capsys):
    checkpoint, bird = tiny_sisgan_run(tmp_path)
    out = tmp_path / "sisgan.pt"
    assert main(["export", str(checkpoint), str(out)]) == 0
    g, te, vocab, meta = load_sisgan(checkpoint)
    g2, te2, vocab2, meta2 = load_sisgan(out)
    assert vocab2 == vocab and meta2["step"] == meta["step"]
    source = torch.rand(2, 3, 64, 64) * 2 - 1
    a = manipulate(g, te, vocab, source, ["a red bird"])
    b = manipulate(g2, te2, vocab2, source, ["a red bird"])
    assert (a - b).abs().max() < 0.05
    edited = tmp_path / "edited.png"
    capsys.readouterr()
    assert main(["manipulate", "--checkpoint", str(out), "--image", str(bird), "--caption",
                 "a red bird", "--out", str(edited), "--device", "cpu"]) == 0
    assert edited.is_file()
    assert json.dumps(sampling_only(load_torch(out)))  # plain data
