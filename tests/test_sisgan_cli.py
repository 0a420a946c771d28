"""``python -m t2ilib manipulate``: end to end on a tiny checkpoint; one-line errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from t2ilib.apps.cli import main

from .helpers import assert_one_line_error, tiny_sisgan_run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_sisgan_run(tmp_path_factory.mktemp("sisgan_cli"))


def test_manipulate_writes_the_edited_image(checkpoint, tmp_path, capsys):
    ckpt, bird = checkpoint
    out = tmp_path / "edited.png"
    assert main(["manipulate", "--checkpoint", str(ckpt), "--image", str(bird), "--caption",
                 "this bird has a red belly", "--out", str(out), "--device", "cpu"]) == 0
    assert Image.open(out).size == (68, 68)  # one 64 px cell, 2 px border
    side = tmp_path / "side.png"
    assert main(["manipulate", "--checkpoint", str(ckpt), "--image", str(bird), "--caption",
                 "a bird with blue wings", "--out", str(side), "--side-by-side", "--seed", "3",
                 "--device", "cpu"]) == 0
    assert Image.open(side).size == (2 * 66 + 2, 68)
    assert f"wrote {side}" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["missing image", "not an image", "missing checkpoint",
                                     "not a checkpoint", "unknown words", "no caption"])
def test_bad_input_gives_a_one_line_error(problem, checkpoint, tmp_path, capsys):
    ckpt, bird = checkpoint
    args = {"--checkpoint": str(ckpt), "--image": str(bird), "--caption": "a red bird",
            "--out": str(tmp_path / "o.png"), "--device": "cpu"}
    expected = {"missing image": "no such image", "not an image": "not a readable image",
                "missing checkpoint": "no such file",
                "not a checkpoint": "is not a SISGAN training checkpoint",
                "unknown words": "none of the words", "no caption": "--caption"}[problem]
    if problem == "missing image":
        args["--image"] = str(tmp_path / "nope.png")
    elif problem == "not an image":
        (tmp_path / "notes.png").write_text("hello")
        args["--image"] = str(tmp_path / "notes.png")
    elif problem == "missing checkpoint":
        args["--checkpoint"] = str(tmp_path / "nope.pt")
    elif problem == "not a checkpoint":
        torch.save({"something": torch.zeros(1)}, tmp_path / "x.pt")
        args["--checkpoint"] = str(tmp_path / "x.pt")
    elif problem == "unknown words":
        args["--caption"] = "zyzzyva qwerty"
    else:
        del args["--caption"]
    argv = ["manipulate", *[x for kv in args.items() for x in kv]]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert_one_line_error(exit_info, capsys, expected)
    assert not (tmp_path / "o.png").exists()



# --- python -m t2ilib train sisgan ----------------------------------------------------------------

@pytest.fixture(scope="module")
def toy_root(tmp_path_factory):
    from t2ilib.data.toybirds import write_toybirds

    return write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=16, n_test=4,
                          size=64, seed=1)


def _train(argv, capsys) -> dict:
    import json

    assert main(["train", "sisgan", *argv, "--device", "cpu"]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_train_sisgan_trains_resumes_and_loads_like_train_ssagan(toy_root, tmp_path, capsys):
    from t2ilib.io import load_torch

    run = tmp_path / "run"
    args = ["--recipe", "smoke", "--data-dir", str(toy_root), "--run-dir", str(run)]
    first = _train(args, capsys)
    assert first["status"] == "done" and (first["step"], first["epoch"]) == (2, 1)
    assert first["damsm"] == str(run / "damsm" / "checkpoint.pt")  # a tiny DAMSM, pretrained
    assert (run / "checkpoint.pt").is_file() and (run / "losses.csv").is_file()
    assert list((run / "samples").glob("epoch_*.png"))
    fp = load_torch(run / "checkpoint.pt")["fingerprint"]
    assert fp["train.damsm_image_size"] == 32  # the DAMSM reads 32 px; the edits are 64 px
    assert _train(args, capsys)["status"] == "already trained (loaded)"
    longer = _train([*args, "--epochs", "2"], capsys)  # resumed, not restarted
    assert longer["status"] == "done" and (longer["step"], longer["epoch"]) == (4, 2)
    assert longer["train_seconds"] >= first["train_seconds"]


def test_train_sisgan_options_override_the_recipe(toy_root, tmp_path, capsys):
    from t2ilib.io import load_torch

    run = tmp_path / "run"
    _train(["--recipe", "smoke", "--data-dir", str(toy_root), "--run-dir", str(run),
            "--lr", "0.01", "--ngf", "8", "--no-skip", "--recon-weight", "0",
            "--set", "lr_halve_every=7", "--set", "flip=false"], capsys)
    fp = load_torch(run / "checkpoint.pt")["fingerprint"]
    assert (fp["train.lr"], fp["model.ngf"], fp["model.skip"]) == (0.01, 8, False)
    assert (fp["train.recon_weight"], fp["train.lr_halve_every"], fp["train.flip"]) == (0, 7,
                                                                                        False)


@pytest.mark.parametrize("argv, expected", [
    (["--set", "wings=3"], "--set 'wings=3': expected FIELD=VALUE with FIELD one of"),
    (["--set", "lr_halve_every=often"], "lr_halve_every must be of type int"),
    (["--p-match", "2"], "p_match must lie in [0, 1], got 2.0"),
])
def test_train_sisgan_bad_options_give_one_line_errors(argv, expected, toy_root, tmp_path,
                                                       capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "sisgan", "--recipe", "smoke", "--data-dir", str(toy_root),
              "--run-dir", str(tmp_path / "run"), "--device", "cpu", *argv])
    assert_one_line_error(exit_info, capsys, expected)


def test_train_sisgan_refuses_a_run_of_other_settings(toy_root, tmp_path, capsys):
    run = tmp_path / "run"
    base = ["--recipe", "smoke", "--data-dir", str(toy_root), "--run-dir", str(run)]
    _train(base, capsys)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "sisgan", *base, "--kl-weight", "0.5", "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, "made with another configuration")
