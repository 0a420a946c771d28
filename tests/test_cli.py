"""``python -m t2ilib``: argument errors are one line, train + sample work end to end."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from PIL import Image

from t2ilib.apps.cli import main
from t2ilib.data.toybirds import write_toybirds
from t2ilib.io import load_torch
from t2ilib.ssagan.recipes import TOYBIRDS

from .helpers import assert_one_line_error, tiny_train


@pytest.mark.parametrize("argv, expected", [
    (["train", "ssagan", "--resolution", "48"], "invalid choice: 48"),
    (["train", "ssagan", "--epochs", "0"], "must be a positive integer"),
    (["train", "ssagan", "--dataset", "flowers"], "invalid choice: 'flowers'"),
    (["sample", "--caption", "a red bird"], "--checkpoint"),
    (["frobnicate"], "invalid choice: 'frobnicate'"),
    (["train", "ssagan", "--set", "gate_init_g"], "expected FIELD=VALUE"),
    (["train", "ssagan", "--set", "gates=1"], "expected FIELD=VALUE with FIELD one of"),
    (["train", "ssagan", "--set", "ngf=wide"], "ngf must be of type int"),
    (["train", "ssagan", "--set", "compile=maybe"], "compile is true or false"),
    (["train", "ssagan", "--set", "gammas=1"], "cannot be set from the command line"),
])
def test_bad_arguments_give_a_one_line_error(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert_one_line_error(exit_info, capsys, expected)


def test_a_missing_checkpoint_is_an_error_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "t2ilib", "sample", "--checkpoint",
                           str(tmp_path / "nope.pt"), "--caption", "a red bird"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    expected = f"t2ilib: error: no such file: {tmp_path / 'nope.pt'}"
    assert proc.stderr.strip().splitlines() == [expected]


def test_train_then_sample_end_to_end(tmp_path, capsys):
    common, run = tiny_train(tmp_path)
    assert main(common) == 0
    first = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert first["status"] == "done" and first["step"] == 1
    assert (run / "checkpoint.pt").is_file() and (run / "damsm" / "checkpoint.pt").is_file()
    config = load_torch(run / "checkpoint.pt")["fingerprint"]  # ToyBirds: the course's recipe
    assert (config["train.lr_g"], config["train.lr_d"], config["train.damsm_weight"],
            config["train.finetune_text_encoder"], config["train.gate_init_g"]) == (
        TOYBIRDS.train.lr_g, TOYBIRDS.train.lr_d, TOYBIRDS.train.damsm_weight, True,
        TOYBIRDS.train.gate_init_g)
    assert (config["model.ngf"], config["model.ndf"]) == (4, 16)  # ToyBirds: D at ndf 16
    assert config["train.damsm_image_size"] is None  # the DAMSM was trained at 32 px too
    assert main(common) == 0  # second time: loaded, not trained
    second = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert second["status"] == "already trained (loaded)"

    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(run / "checkpoint.pt"), "--caption",
                 "this bird is red", "--caption", "a blue bird", "-n", "3", "--out", str(out),
                 "--device", "cpu"]) == 0
    width, height = Image.open(out).size
    assert (width, height) == (3 * 34 + 2, 2 * 34 + 2)  # 3 x 2 cells of 32 px, 2 px gaps


def test_train_flags_override_the_recipe(tmp_path, capsys):
    data = write_toybirds(tmp_path / "toy", n_train=8, n_test=4, size=32, seed=2)
    run = tmp_path / "run"
    assert main(["train", "ssagan", "--dataset", "toybirds", "--data-dir", str(data),
                 "--run-dir", str(run), "--resolution", "32", "--ngf", "4", "--batch-size", "4",
                 "--epochs", "1", "--max-steps-per-epoch", "1", "--damsm-epochs", "1",
                 "--device", "cpu", "--lr-g", "1e-4", "--lr-d", "4e-4",
                 "--damsm-weight", "0", "--no-finetune-text-encoder",
                 "--mode-seeking-weight", "2", "--tensorboard", "--set", "gate_init_g=0.5",
                 "--set", "lr_encoder=1e-3"]) == 0
    config = load_torch(run / "checkpoint.pt")["fingerprint"]
    assert (config["train.lr_g"], config["train.lr_d"], config["train.damsm_weight"],
            config["train.finetune_text_encoder"], config["train.mode_seeking_weight"]) == (
        1e-4, 4e-4, 0.0, False, 2.0)
    assert (config["train.gate_init_g"], config["train.lr_encoder"]) == (0.5, 1e-3)  # --set
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))  # --tensorboard logged


def test_recipe_paper_is_the_official_run_with_overrides(tmp_path, capsys):
    """``--recipe paper`` takes every value from PAPER but what the command line sets."""
    data = write_toybirds(tmp_path / "toy", n_train=8, n_test=4, size=32, seed=2)
    run = tmp_path / "run"
    assert main(["train", "ssagan", "--recipe", "paper", "--dataset", "toybirds",
                 "--data-dir", str(data), "--run-dir", str(run), "--resolution", "32",
                 "--ngf", "4", "--ndf", "4", "--batch-size", "4", "--epochs", "1",
                 "--max-steps-per-epoch", "1", "--damsm-epochs", "1", "--device", "cpu"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["recipe"] == "paper"
    config = load_torch(run / "checkpoint.pt")["fingerprint"]
    assert (config["train.lr_g"], config["train.lr_d"], config["train.damsm_weight"],
            config["train.finetune_text_encoder"], config["train.betas"]) == (
        1e-4, 4e-4, 0.05, False, [0.0, 0.9])
    assert (config["model.resolution"], config["model.ngf"], config["train.batch_size"]) == (
        32, 4, 4)


def test_ctrl_c_in_any_stage_stops_the_command_with_130_and_the_rerun_resumes(tmp_path, capsys,
                                                                              monkeypatch):
    """An interrupted DAMSM pretraining never hands a half-trained encoder to the GAN stage;
    an interrupted GAN stage says so on stderr; both exit 130 and the same command resumes."""
    import dataclasses

    from t2ilib.damsm import pretrain
    from t2ilib.engine import loop

    command, run = tiny_train(tmp_path, epochs=2, damsm_epochs=2)
    real_damsm, real_gan = pretrain.load_or_train_damsm, loop.load_or_train

    def damsm_stopped(*args, **kwargs):  # as if Ctrl-C came during the pretraining
        return dataclasses.replace(real_damsm(*args, **kwargs), interrupted=True)

    monkeypatch.setattr(pretrain, "load_or_train_damsm", damsm_stopped)
    assert main(command) == 130
    captured = capsys.readouterr()
    assert json.loads(captured.out.strip().splitlines()[-1])["stage"] == "DAMSM pretraining"
    assert captured.err.strip().splitlines()[-1].startswith(
        "t2ilib: interrupted during DAMSM pretraining: the last checkpoint is saved")
    assert not (run / "checkpoint.pt").exists()  # the GAN never started

    monkeypatch.setattr(pretrain, "load_or_train_damsm", real_damsm)
    monkeypatch.setattr(loop, "load_or_train",
                        lambda engine, retrain=False: real_gan(engine, retrain=retrain,
                                                               stop_after=1))
    assert main(command) == 130
    assert "interrupted during SSA-GAN training" in capsys.readouterr().err
    monkeypatch.setattr(loop, "load_or_train", real_gan)
    assert main(command) == 0
    done = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (done["status"], done["step"], done["epoch"]) == ("done", 2, 2)


def test_ctrl_c_in_evaluate_is_one_line_and_130_not_a_traceback(tmp_path, capsys, monkeypatch):
    """evaluate's stages (the oracle's training, then generation) stopped by Ctrl-C: one
    ``t2ilib: interrupted`` line on stderr, exit 130; the oracle's checkpoint is saved."""
    from t2ilib.apps import evaluate
    from t2ilib.metrics import toy_oracle_train

    monkeypatch.setenv("T2I_DATA", str(tmp_path / "data"))  # the oracle's checkpoint goes here
    command, run = tiny_train(tmp_path)
    assert main(command) == 0
    capsys.readouterr()
    real = toy_oracle_train.load_or_train
    monkeypatch.setattr(toy_oracle_train, "load_or_train",  # as if Ctrl-C came after step 1
                        lambda engine, epochs, retrain=False: real(engine, epochs,
                                                                   retrain=retrain, stop_after=1))
    argv = ["evaluate", "--checkpoint", str(run / "checkpoint.pt"), "--data-dir",
            str(tmp_path / "toy"), "--metrics", "toy", "--n-samples", "4", "--device", "cpu"]
    assert main(argv) == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith(
        "t2ilib: interrupted: oracle training stopped at step 1; its checkpoint ")
    assert list((tmp_path / "data" / "checkpoints").glob("toy_oracle_*/checkpoint.pt"))

    def stopped(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "_toy", stopped)  # Ctrl-C once the oracle is there
    assert main(argv) == 130
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "t2ilib: interrupted: stopped by Ctrl-C; run the same command again")


def test_a_gan_run_refuses_a_damsm_that_changed_after_it_started(tmp_path, capsys):
    command, run = tiny_train(tmp_path)
    assert main(command) == 0
    meta = load_torch(run / "checkpoint.pt")["meta"]
    assert meta["damsm_source"].startswith("checkpoint damsm@")
    assert main(command) == 0  # the same DAMSM: loaded
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["status"] == (
        "already trained (loaded)")
    longer = [*command[:-4], "--damsm-epochs", "2", "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:  # the DAMSM trains on, then the GAN refuses
        main(longer)
    assert_one_line_error(exit_info, capsys, "was trained from the DAMSM checkpoint damsm@")
    assert main([*longer, "--retrain"]) == 0
