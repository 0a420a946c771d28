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
        return (_edited(runs["ssagan"], path, _swap_two_words),
                "not the one the model was trained with")
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


def _swap_two_words(payload):
    words = payload["meta"]["vocab_words"]
    words[3], words[4] = words[4], words[3]


@pytest.mark.parametrize("epochs", ["1", "2"], ids=["load", "resume"])
def test_a_run_whose_word_list_was_reordered_is_not_reported_trained(epochs, runs, tmp_path,
                                                                     capsys):
    """It was "already trained (loaded)" (or resumed) while ``sample`` refused the same file."""
    run = tmp_path / "run"
    run.mkdir()
    _edited(runs["ssagan"], run / "checkpoint.pt", _swap_two_words)
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "ssagan", "--dataset", "toybirds", "--data-dir", str(runs["toy"]),
              "--run-dir", str(run), "--resolution", "32", "--ngf", "4", "--batch-size", "4",
              "--epochs", epochs, "--max-steps-per-epoch", "1", "--device", "cpu",
              "--damsm", str(runs["damsm"])])
    assert_one_line_error(exit_info, capsys, "the stored vocabulary is not the one the model "
                                             "was trained with")


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


@pytest.fixture(scope="module")
def every_kind(runs, tmp_path_factory):
    """One real file of every checkpoint kind: ``{"ssagan", "sisgan", "damsm", "toy_oracle",
    "sampling-only"}`` (an oracle saved untrained; a sampling-only export of the SSA-GAN)."""
    from t2ilib.engine.sampling_file import export_sampling_file
    from t2ilib.metrics.toy_oracle import OracleConfig, OracleReport, ToyOracle, save_oracle

    tmp = tmp_path_factory.mktemp("every_kind")
    oracle = save_oracle(tmp / "oracle.pt", ToyOracle(OracleConfig(widths=(4, 8, 8, 8), groups=2)),
                         OracleReport({"body_color": 1.0}, 1.0, 4), {"data": "x"})
    return {"ssagan": runs["ssagan"], "sisgan": runs["sisgan"], "damsm": runs["damsm"],
            "toy_oracle": oracle,
            "sampling-only": export_sampling_file(runs["ssagan"], tmp / "sampling.pt")}


def _schema_cases() -> list[tuple[str, str, str, str]]:
    """``(file, section, key, how)`` for every part of every kind's schema: ``missing`` (a
    required part), ``malformed`` (a value of another type)."""
    from t2ilib.engine.checkpoint import SCHEMA

    files = {"ssagan": ["ssagan", "sampling-only"], "sisgan": ["sisgan"], "damsm": ["damsm"],
             "toy_oracle": ["toy_oracle"]}
    cases = []
    for kind, parts in SCHEMA.items():
        for (section, key), kind_of_value in parts.items():
            for file in files[kind]:
                if type(None) not in getattr(kind_of_value, "__args__", ()):
                    cases.append((file, section, key, "missing"))
                if kind_of_value is not object:
                    cases.append((file, section, key, "malformed"))
    return cases


@pytest.mark.parametrize("file, section, key, how", _schema_cases(),
                         ids=["-".join(c) for c in _schema_cases()])
def test_every_part_of_every_checkpoint_kind_is_checked_when_it_is_read(file, section, key, how,
                                                                        every_kind, tmp_path):
    """engine.checkpoint.SCHEMA is the one place that says what each kind holds: a part
    missing, or of another type, is a BadFileError naming it before anything is built."""
    from t2ilib.engine.checkpoint import read_checkpoint
    from t2ilib.io import BadFileError

    def edit(payload):
        if how == "missing":
            payload[section].pop(key, None)
        else:
            payload[section][key] = 0.5  # a float where a dict, list, str or int belongs

    path = _edited(every_kind[file], tmp_path / "edited.pt", edit)
    what = "is missing" if how == "missing" else "is a float"
    kind = load_torch(every_kind[file])["kind"]
    with pytest.raises(BadFileError, match=rf"its {section}\['{key}'\] {what}"):
        read_checkpoint(path, kind)


@pytest.mark.parametrize("file", ["ssagan", "sisgan", "damsm", "toy_oracle", "sampling-only"])
@pytest.mark.parametrize("section", ["state", "counters", "fingerprint", "meta"])
def test_a_missing_section_of_any_checkpoint_kind_is_named(file, section, every_kind, tmp_path):
    from t2ilib.engine.checkpoint import read_checkpoint
    from t2ilib.io import BadFileError

    path = _edited(every_kind[file], tmp_path / "edited.pt", lambda p: p.pop(section))
    kind = load_torch(every_kind[file])["kind"]
    with pytest.raises(BadFileError, match=f"its '{section}' section is missing or not a dict"):
        read_checkpoint(path, kind)


def test_each_kind_s_loader_reports_a_malformed_part_in_one_line(every_kind, tmp_path):
    """The loaders of each kind go through the schema (they raised a TypeError or
    CheckpointMismatch from deep inside before, or built nothing to say which part)."""
    from t2ilib.damsm.checkpoint import load_damsm
    from t2ilib.io import BadFileError
    from t2ilib.metrics.toy_oracle import load_oracle
    from t2ilib.sisgan.sampling import load_sisgan
    from t2ilib.ssagan.sampling import load_generator

    loaders = [(load_damsm, "damsm", "meta", "image_spec"),
               (load_oracle, "toy_oracle", "meta", "config"),
               (load_generator, "sampling-only", "state", "text_encoder"),
               (load_generator, "ssagan", "meta", "sampling_only"),
               (load_sisgan, "sisgan", "state", "G")]
    for loader, file, section, key in loaders:
        path = _edited(every_kind[file], tmp_path / f"{file}.pt",
                       lambda p, s=section, k=key: p[s].__setitem__(k, "x"))
        with pytest.raises(BadFileError, match=rf"its {section}\['{key}'\] is a str"):
            loader(path)
