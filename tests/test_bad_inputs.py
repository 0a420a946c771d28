"""Bad checkpoints through every CLI command that reads one: one ``t2ilib: error:`` line that
names the file, exit status 2, never a traceback, never a silent wrong answer.

The files are made here from two tiny real runs (an SSA-GAN trained by the CLI for one step,
with its DAMSM, and a one-step SISGAN), then damaged the ways a careless or hostile user
would: empty, random bytes, cut short, a pickled object, another model's checkpoint, weights
that disagree with their config, an unknown config field, a vocabulary cut short or reordered.
"""

from __future__ import annotations

import os
import random
import shutil

import pytest
import torch

from t2ilib.apps.cli import main
from t2ilib.data.toybirds import write_toybirds
from t2ilib.io import load_torch, save_torch

from .helpers import assert_one_line_error, tiny_sisgan_run


class Payload:
    """A class a hostile checkpoint pickles (``weights_only`` must refuse to build it)."""

    def __reduce__(self):
        return (os.system, ("echo pwned",))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """``{"toy", "ssagan", "damsm", "sisgan", "bird"}``: data, two real checkpoints, an image."""
    tmp = tmp_path_factory.mktemp("bad_inputs")
    toy32 = write_toybirds(tmp / "toy32", n_train=8, n_test=4, size=32, seed=2)
    assert main(["train", "ssagan", "--dataset", "toybirds", "--data-dir", str(toy32),
                 "--run-dir", str(tmp / "ssagan"), "--resolution", "32", "--ngf", "4",
                 "--batch-size", "4", "--epochs", "1", "--max-steps-per-epoch", "1",
                 "--damsm-epochs", "1", "--device", "cpu"]) == 0
    sisgan, bird = tiny_sisgan_run(tmp / "sisgan")
    return {"toy": toy32, "ssagan": tmp / "ssagan" / "checkpoint.pt",
            "damsm": tmp / "ssagan" / "damsm" / "checkpoint.pt",
            "sisgan": sisgan, "bird": bird}


def _edited(source, path, edit):
    """A copy of the checkpoint ``source`` at ``path`` with ``edit(payload)`` applied."""
    payload = load_torch(source)
    edit(payload)
    save_torch(payload, path)
    return path


def _bad_file(kind: str, runs, tmp_path):
    """``(path, words the error must contain)`` for one kind of bad checkpoint."""
    path = tmp_path / f"{kind}.pt"
    good = runs["ssagan"].read_bytes()
    if kind == "empty":
        path.write_bytes(b"")
        return path, "the file is empty"
    if kind == "random bytes":
        path.write_bytes(random.Random(0).randbytes(4096))
        return path, "not a readable PyTorch file"
    if kind == "cut short":
        path.write_bytes(good[: len(good) // 2])
        return path, "not a readable PyTorch file: truncated"
    if kind == "text":
        path.write_text("model: ssagan\n")
        return path, "not a readable PyTorch file"
    if kind == "pickled object":
        torch.save({"format": "t2ilib.checkpoint.v2", "kind": "ssagan", "x": Payload()}, path)
        return path, "pickled object (posix.system)" if os.name == "posix" else "pickled object"
    if kind == "plain dict":
        torch.save({"G": torch.zeros(1)}, path)
        return path, "no t2ilib checkpoint format"
    if kind == "SISGAN given":
        shutil.copy(runs["sisgan"], path)
        return path, "is a 'sisgan' checkpoint, not 'ssagan'"
    if kind == "weights of another size":
        def edit(p):
            p["meta"]["model_config"]["ngf"] = 8
        return _edited(runs["ssagan"], path, edit), "weights do not fit the stored configuration"
    if kind == "unknown config field":
        def edit(p):
            p["meta"]["model_config"]["wings"] = 2
        return _edited(runs["ssagan"], path, edit), "unknown field(s) ['wings']"
    if kind == "no state":
        def edit(p):
            del p["state"]
        return _edited(runs["ssagan"], path, edit), "'state' section is missing"
    if kind == "vocabulary cut short":
        def edit(p):
            p["meta"]["vocab_words"] = p["meta"]["vocab_words"][:-3]
        return _edited(runs["ssagan"], path, edit), "the word list was cut or extended"
    if kind == "vocabulary reordered":
        def edit(p):
            words = p["meta"]["vocab_words"]
            words[3], words[4] = words[4], words[3]
        return _edited(runs["ssagan"], path, edit), "not the one the model was trained with"
    if kind == "NaN weights":
        def edit(p):
            for v in p["state"]["G"].values():
                if v.is_floating_point():
                    v.fill_(float("nan"))
        return _edited(runs["ssagan"], path, edit), "G weights hold NaN or infinite values"
    if kind == "one infinite weight":
        def edit(p):
            name = next(k for k, v in p["state"]["text_encoder"].items() if v.is_floating_point())
            p["state"]["text_encoder"][name].view(-1)[0] = float("inf")
        return _edited(runs["ssagan"], path, edit), "text encoder weights hold NaN"
    raise AssertionError(kind)


KINDS = ["empty", "random bytes", "cut short", "text", "pickled object", "plain dict",
         "SISGAN given", "weights of another size", "unknown config field", "no state",
         "vocabulary cut short", "vocabulary reordered", "NaN weights", "one infinite weight"]


@pytest.mark.parametrize("kind", KINDS)
def test_sample_refuses_a_bad_checkpoint_in_one_line(kind, runs, tmp_path, capsys):
    path, expected = _bad_file(kind, runs, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--checkpoint", str(path), "--caption", "a red bird", "--out",
              str(tmp_path / "grid.png"), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, expected)
    assert not (tmp_path / "grid.png").exists()


@pytest.mark.parametrize("kind", ["cut short", "SISGAN given", "vocabulary reordered"])
def test_evaluate_refuses_a_bad_checkpoint_in_one_line(kind, runs, tmp_path, capsys):
    path, expected = _bad_file(kind, runs, tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(path), "--data-dir", str(runs["toy"]),
              "--metrics", "rprec", "--n-samples", "4", "--out", str(tmp_path / "r.json"),
              "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, expected)
    assert not (tmp_path / "r.json").exists()


def test_manipulate_refuses_an_ssagan_checkpoint(runs, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["manipulate", "--checkpoint", str(runs["ssagan"]), "--image", str(runs["bird"]),
              "--caption", "a red bird", "--out", str(tmp_path / "e.png"), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, "is a 'ssagan' checkpoint, not 'sisgan'")


def test_manipulate_refuses_a_cut_image_naming_it(runs, tmp_path, capsys):
    cut = tmp_path / "cut.png"
    cut.write_bytes(runs["bird"].read_bytes()[:200])
    with pytest.raises(SystemExit) as exit_info:
        main(["manipulate", "--checkpoint", str(runs["sisgan"]), "--image", str(cut),
              "--caption", "a red bird", "--out", str(tmp_path / "e.png"), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, f"{cut}: not a readable image")


def _train(runs, run_dir, *extra):
    return main(["train", "ssagan", "--dataset", "toybirds", "--data-dir", str(runs["toy"]),
                 "--run-dir", str(run_dir), "--resolution", "32", "--ngf", "4",
                 "--batch-size", "4", "--epochs", "2", "--max-steps-per-epoch", "1",
                 "--device", "cpu", *extra])


def test_train_refuses_a_cut_damsm_naming_it(runs, tmp_path, capsys):
    cut = tmp_path / "damsm.pt"
    cut.write_bytes(runs["damsm"].read_bytes()[:1000])
    with pytest.raises(SystemExit) as exit_info:
        _train(runs, tmp_path / "run", "--damsm", str(cut))
    assert_one_line_error(exit_info, capsys, f"{cut}: not a readable PyTorch file")
    assert not (tmp_path / "run").exists()


def test_resuming_a_cut_run_checkpoint_says_how_to_start_again(runs, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.pt").write_bytes(runs["ssagan"].read_bytes()[:5000])
    with pytest.raises(SystemExit) as exit_info:
        _train(runs, run, "--damsm", str(runs["damsm"]))
    assert_one_line_error(exit_info, capsys, f"{run / 'checkpoint.pt'}: not a readable")


def test_sample_names_the_words_a_long_caption_loses(runs, tmp_path, capsys):
    words = "this bird has a red body and blue wings and a short yellow beak with a small " \
            "round head and black crown"
    assert main(["sample", "--checkpoint", str(runs["ssagan"]), "--caption", words, "-n", "1",
                 "--out", str(tmp_path / "g.png"), "--device", "cpu"]) == 0
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["t2ilib: warning: caption 1: unknown word(s) ignored: round (not among "
                   "the model's 63 words)",
                   "t2ilib: warning: caption 1: only the first 18 known words are read; "
                   "dropped: and black crown"]  # 'round' unknown: 'head' is the 18th known


def test_sample_draws_a_large_n_in_batches_and_refuses_an_absurd_one(runs, tmp_path, capsys):
    from PIL import Image

    from t2ilib.apps.cli import MAX_SAMPLES, SAMPLE_BATCH

    out = tmp_path / "grid.png"
    n = SAMPLE_BATCH + 6  # two generator calls; the row wraps after SAMPLE_BATCH images
    assert main(["sample", "--checkpoint", str(runs["ssagan"]), "--caption", "a red bird",
                 "-n", str(n), "--out", str(out), "--device", "cpu"]) == 0
    assert Image.open(out).size == (SAMPLE_BATCH * 34 + 2, 2 * 34 + 2)
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--checkpoint", str(runs["ssagan"]), "--caption", "a", "--caption", "b",
              "-n", str(MAX_SAMPLES), "--out", str(tmp_path / "big.png"), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, f"one grid holds at most {MAX_SAMPLES:,}")
    assert not (tmp_path / "big.png").exists()


def test_a_notebook_shows_a_bad_file_in_one_line_not_a_traceback(tmp_path):
    """In Jupyter the course's file errors render as ``Name: message`` (IPython's
    ``_render_traceback_``), so a student sees what to do, not 40 lines of stack."""
    import nbformat
    from nbclient import NotebookClient

    empty = tmp_path / "checkpoint.pt"
    empty.write_bytes(b"")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        f"from t2ilib.ssagan.sampling import load_generator\nload_generator({str(empty)!r})")])
    NotebookClient(nb, kernel_name="python3", allow_errors=True, timeout=120).execute()
    error = nb.cells[0].outputs[-1]
    assert error.output_type == "error" and error.ename == "BadFileError"
    assert error.traceback == [f"BadFileError: {empty}: the file is empty (a write that never "
                               "finished?). Remake it: re-run the notebook or command that "
                               "wrote it (retrain=True / --retrain), or delete it"]


@pytest.mark.parametrize("argv, expected", [
    (["train", "ssagan", "--lr-g", "nan"], "argument --lr-g: must be a finite number, got 'nan'"),
    (["train", "ssagan", "--damsm-weight", "inf"], "argument --damsm-weight: must be a finite"),
    (["train", "sisgan", "--lr", "fast"], "argument --lr: must be a number, got 'fast'"),
])
def test_an_invalid_number_names_its_option(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert_one_line_error(exit_info, capsys, expected)


def test_a_folder_or_an_unreadable_file_is_named_for_what_it_is(runs, tmp_path, capsys,
                                                                monkeypatch):
    folder = tmp_path / "not_a_run"
    folder.mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--checkpoint", str(folder), "--caption", "a red bird", "--out",
              str(tmp_path / "grid.png"), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, "is a folder, not a checkpoint file")

    def refuse(*args, **kwargs):  # what torch.load meets for a file without read permission
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(torch, "load", refuse)
    with pytest.raises(SystemExit) as exit_info:
        main(["sample", "--checkpoint", str(runs["ssagan"]), "--caption", "a red bird", "--out",
              str(tmp_path / "grid.png"), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, "cannot be read: permission denied")


@pytest.mark.parametrize("command", [["train", "ssagan"], ["train", "sisgan"]])
def test_a_mistyped_data_dir_is_an_error_not_a_new_data_set(command, tmp_path, capsys):
    typo = tmp_path / "toybrids"
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--data-dir", str(typo), "--run-dir", str(tmp_path / "run")])
    assert_one_line_error(exit_info, capsys, f"--data-dir {typo} does not exist")
    assert not typo.exists() and not (tmp_path / "run").exists()
    typo.mkdir()
    (typo / "notes.txt").write_text("my own files")
    with pytest.raises(SystemExit) as exit_info:
        main([*command, "--data-dir", str(typo)])
    assert_one_line_error(exit_info, capsys, "holds no ToyBirds set (no toybirds.json)")
    assert sorted(p.name for p in typo.iterdir()) == ["notes.txt"]


def test_create_data_draws_toybirds_where_asked(tmp_path, monkeypatch):
    import argparse

    from t2ilib.apps.options import dataset_root
    from t2ilib.data import toybirds

    asked = []
    monkeypatch.setattr(toybirds, "ensure_toybirds", lambda root=None: asked.append(root) or root)
    target = tmp_path / "new_toybirds"
    args = argparse.Namespace(dataset="toybirds", data_dir=target, create_data=True)
    assert dataset_root(args) == target and asked == [target]
    assert dataset_root(argparse.Namespace(dataset="toybirds", data_dir=None)) is None  # default


@pytest.mark.parametrize("edit, expected", [
    (lambda p: p.__setitem__("rng", None), "holds no random-generator states ('rng')"),
    (lambda p: p.__setitem__("counters", {}), "its counters['step'] is missing"),
    (lambda p: p["counters"].__setitem__("epoch", "1"), "its counters['epoch'] is a str"),
])
def test_resuming_a_checkpoint_without_what_a_resume_needs_names_it(edit, expected, runs,
                                                                    tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    _edited(runs["ssagan"], run / "checkpoint.pt", edit)
    with pytest.raises(SystemExit) as exit_info:
        _train(runs, run, "--damsm", str(runs["damsm"]))
    assert_one_line_error(exit_info, capsys, expected)


def test_manipulate_names_a_missing_section_and_skips_a_cut_log_row(runs, tmp_path, capsys):
    from t2ilib.sisgan.sampling import load_sisgan

    folder = tmp_path / "sisgan"
    folder.mkdir()
    shutil.copy(runs["sisgan"].parent / "losses.csv", folder / "losses.csv")
    with open(folder / "losses.csv", "a") as f:
        f.write("7,0.5,")  # a row a kill cut short
    _edited(runs["sisgan"], folder / "checkpoint.pt", lambda p: None)
    info = load_sisgan(folder / "checkpoint.pt")[3]
    assert info["log"] and len(set(map(len, info["log"].values()))) == 1  # the cut row is gone
    _edited(runs["sisgan"], folder / "checkpoint.pt", lambda p: p["meta"].pop("train_config"))
    with pytest.raises(SystemExit) as exit_info:
        main(["manipulate", "--checkpoint", str(folder / "checkpoint.pt"), "--image",
              str(runs["bird"]), "--caption", "a red bird", "--out", str(tmp_path / "e.png"),
              "--device", "cpu"])
    assert_one_line_error(exit_info, capsys, "its meta['train_config'] is missing")


@pytest.mark.parametrize("kind, section, key", [
    ("ssagan", "meta", "model_config"), ("ssagan", "meta", "text_encoder_config"),
    ("ssagan", "counters", "epoch"), ("sisgan", "meta", "data"), ("sisgan", "meta", "vocab_words"),
])
def test_every_part_a_checkpoint_kind_needs_is_checked_when_it_is_read(kind, section, key, runs,
                                                                       tmp_path):
    from t2ilib.engine.checkpoint import SCHEMA, read_checkpoint
    from t2ilib.io import BadFileError

    assert (section, key) in SCHEMA[kind]
    path = _edited(runs[kind], tmp_path / "cut.pt", lambda p: p[section].pop(key))
    with pytest.raises(BadFileError, match=rf"its {section}\['{key}'\] is missing"):
        read_checkpoint(path, kind)
