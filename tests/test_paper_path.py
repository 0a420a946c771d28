"""The paper-scale path, end to end in smoke sizes: CUB and Oxford-102 layouts, not ToyBirds.

Notebooks 07, 08 and 09 and the command line (train, sample, evaluate) run on the fixture
trees of :mod:`t2ilib.data.fixtures` (CUB-200-2011 + AttnGAN metadata) and
:func:`t2ilib.data.flowers.make_flowers_fixture` (Oxford-102 + ``text_c10``), in kernels that
see ``T2I_DATA=<tmp>/data`` (so ``data_root() / "birds"`` is the fixture), an empty
``TORCH_HOME`` (no pretrained weights are found, whatever this machine's cache holds) and
``TMPDIR=<tmp>/tmp`` (the notebooks' scratch folders, removed when their kernel exits, stay in
the test's folder meanwhile). Notebook 07's CUB run is given a run folder of the test
(``run_folder``): its smoke folder would be gone when notebook 08 reads the checkpoint.

Pretrained weights cannot be downloaded here, and nothing here uses random "pretrained"
weights: the DAMSM every run uses is a tiny one pretrained on the fixture itself (small CNN,
32-d, one epoch), passed as a file (the notebooks' ``damsm`` parameter, the CLI's ``--damsm``:
how the paper path takes AttnGAN's DAMSM). Where the ImageNet Inception-v3 (the CUB DAMSM
image encoder) or the FID Inception is needed, the tests check that the run refuses with
:class:`~t2ilib.io.MissingWeightsError` naming the file.

The test splits are made large enough for the smoke runs: R-precision needs captions of
other classes, and notebook 09 edits test images with the captions of test images 6 to 9. The
CUB fixture's test split (one class, four images) is rewritten to list all twelve images
(three classes); the flowers tree has ten images per class (Reed's class split: 20 train+val
images of two classes, 10 test images of one).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from t2ilib.apps.cli import main
from t2ilib.course.notebooks import KERNEL_NAME
from t2ilib.io import load_torch

from .helpers import assert_one_line_error

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
INCEPTION_FILE = "inception_v3_google-0cc3c7bd.pth"  # the CUB DAMSM's ImageNet trunk
FID_FILE = "pt_inception-2015-12-05-6726825d.pth"


@dataclass
class PaperData:
    data: Path  # T2I_DATA of the kernels: holds birds/ and flowers/
    birds: Path
    flowers: Path
    damsm: dict[str, Path]  # "cub" / "flowers" -> a DAMSM checkpoint pretrained on the fixture
    tmp: Path  # TMPDIR of the kernels


def _widen_cub_test_split(root: Path, keys: list[str]) -> None:
    from t2ilib.data.fixtures import py2_pickle_dumps

    (root / "test" / "filenames.pickle").write_bytes(py2_pickle_dumps(keys))
    (root / "test" / "class_info.pickle").write_bytes(
        py2_pickle_dumps([int(k[:3]) for k in keys]))


def _tiny_damsm(folder: Path, dataset, name: str) -> Path:
    """One epoch of DAMSM pretraining on the fixture: a small CNN and a 32-d text encoder."""
    from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
    from t2ilib.damsm.pretrain import DAMSMTrainConfig, load_or_train_damsm
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

    run = load_or_train_damsm(folder, TextEncoder(TextEncoderConfig(len(dataset.vocab),
                                                                    hidden_dim=32)),
                              SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=8)), dataset,
                              DAMSMTrainConfig(epochs=1), batch_size=8, seed=0,
                              extra={"data": name, "image_size": 32}, progress_bar=False)
    return run.path


@pytest.fixture(scope="module")
def paper(tmp_path_factory):
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.fixtures import make_cub_fixture
    from t2ilib.data.flowers import FlowersDataset, make_flowers_fixture

    base = tmp_path_factory.mktemp("paper")
    data, tmp, torch_home = base / "data", base / "tmp", base / "torch"
    tmp.mkdir()
    torch_home.mkdir()
    cub = make_cub_fixture(data / "birds")
    _widen_cub_test_split(cub.root, cub.train_keys + cub.test_keys)
    flowers = make_flowers_fixture(data / "flowers", images_per_class=10)
    damsm = {
        "cub": _tiny_damsm(base / "damsm_cub",
                           CachedCUBDataset(cub.root, "train", image_size=32, seed=0), "cub"),
        "flowers": _tiny_damsm(base / "damsm_flowers",
                               FlowersDataset(flowers.root, "train", image_size=32, seed=0),
                               "flowers"),
    }
    with pytest.MonkeyPatch.context() as mp:  # inherited by every kernel papermill starts
        mp.setenv("T2I_DATA", str(data))
        mp.setenv("TORCH_HOME", str(torch_home))
        mp.setenv("TMPDIR", str(tmp))
        mp.delenv("T2I_FID_WEIGHTS", raising=False)
        yield PaperData(data, cub.root, flowers.root, damsm, tmp)


# --- running notebooks --------------------------------------------------------------------------

@dataclass
class Executed:
    path: Path  # the executed copy
    error: Exception | None  # papermill's PapermillExecutionError, or None
    stdout: list[str]  # each code cell's printed text (papermill's injected cell included)

    @property
    def text(self) -> str:
        return "".join(self.stdout)


def execute(notebook: str | Path, out: Path, params: dict) -> Executed:
    """Run ``notebook`` with papermill into ``out`` (cwd ``notebooks/``); a failing cell is
    returned, not raised. Fails the test when papermill does not know a parameter (it would
    only warn and run with the default)."""
    import nbformat
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    path = NOTEBOOKS / notebook if isinstance(notebook, str) else notebook
    logger = logging.getLogger("papermill")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    error = None
    try:
        pm.execute_notebook(str(path), str(out), parameters=params, kernel_name=KERNEL_NAME,
                            cwd=str(NOTEBOOKS), progress_bar=False, execution_timeout=600)
    except PapermillExecutionError as err:
        error = err
    finally:
        logger.removeHandler(handler)
    unknown = [r.getMessage() for r in records if "unknown parameter" in r.getMessage()]
    assert not unknown, f"{path.name}: {unknown} (its parameters cell does not define them)"
    stdout = ["".join(o.get("text", "") for o in cell.get("outputs", [])
                      if o.get("output_type") == "stream" and o.get("name") == "stdout")
              for cell in nbformat.read(out, as_version=4).cells]
    return Executed(out, error, stdout)


def completed(run: Executed) -> str:
    """The run's printed text; fails the test with the cell and error if a cell raised."""
    if run.error is not None:
        err = run.error
        pytest.fail(f"{run.path.name}: cell {err.cell_index} raised {err.ename}: {err.evalue}",
                    pytrace=False)
    return run.text


# --- notebook 07 on CUB --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def nb07_cub(paper, tmp_path_factory):
    folder = tmp_path_factory.mktemp("nb07")
    run = execute("07_train_ssagan.ipynb", folder / "07.ipynb",
                  {"dataset": "cub", "device": "cpu", "smoke": True,
                   "damsm": str(paper.damsm["cub"]), "run_folder": str(folder / "run")})
    text = completed(run)
    run_dir = Path(re.search(r"^run folder: (.+)$", text, re.M).group(1).strip())
    assert run_dir == folder / "run"
    return run, run_dir / "checkpoint.pt"


def test_nb07_trains_ssagan_on_the_cub_fixture(paper, nb07_cub):
    run, checkpoint = nb07_cub
    text = run.text
    assert "dataset=cub device=cpu epochs=1 batch_size=8 resolution=32 ngf=8 ndf=8" in text
    assert "damsm_weight=0.05" in text and "finetune_text_encoder=False" in text  # the paper's
    assert "smoke=True" in text
    assert "8 training images" in text  # the fixture's train split (classes 1 and 2)
    assert f"DAMSM loaded from {paper.damsm['cub']}" in text  # a trained file, not random weights
    assert "trained step 1, epoch 1" in text
    assert "the oracle judges ToyBirds only" in text and "need ToyBirds' ground truth" in text
    assert checkpoint.is_file()
    payload = load_torch(checkpoint)
    assert payload["fingerprint"]["data.name"] == "cub"
    assert payload["counters"]["step"] == 1
    assert sorted(p.suffix for p in (checkpoint.parent / "samples").iterdir()) == [".png"]


def test_nb07_cub_without_a_damsm_refuses_missing_inception_weights(paper, tmp_path):
    """The real run: the CUB DAMSM is pretrained on ImageNet's Inception-v3, which is not on
    this machine; the notebook stops with MissingWeightsError, it never trains on random
    weights."""
    run = execute("07_train_ssagan.ipynb", tmp_path / "07.ipynb",
                  {"dataset": "cub", "device": "cpu", "smoke": False, "epochs": 1})
    assert run.error is not None, "notebook 07 ran the CUB DAMSM without ImageNet weights"
    assert run.error.ename == "MissingWeightsError"
    assert INCEPTION_FILE in run.error.evalue and "never downloads" in run.error.evalue
    assert "InceptionEncoder(" in run.error.source  # the DAMSM cell, not an earlier one
    assert "dataset=cub" in run.text and "RANDOM weights" not in run.text


def test_nb07_cub_smoke_run_says_its_inception_is_random(paper, tmp_path):
    """Smoke mode may pretrain the CUB DAMSM on a random Inception trunk, and says so."""
    run = execute("07_train_ssagan.ipynb", tmp_path / "07.ipynb",
                  {"dataset": "cub", "device": "cpu", "smoke": True})
    text = completed(run)
    assert "smoke run: the DAMSM's Inception-v3 trunk has RANDOM weights, not ImageNet's" in text
    assert "dataset=cub" in text and "8 training images" in text
    assert not list(paper.tmp.glob("nb07_smoke_*"))  # its run folder went with the kernel


# --- notebook 08 on notebook 07's CUB checkpoint --------------------------------------------------

@pytest.mark.filterwarnings("ignore:R-precision:UserWarning")  # 12 test images
def test_nb08_evaluates_the_cub_checkpoint(nb07_cub, tmp_path):
    """Notebook 08's CUB section on notebook 07's CUB checkpoint. In smoke mode it measures
    R-precision only and says that FID and IS are skipped (no FID Inception file here; the
    real path refuses without it: ``test_cli_evaluate_refuses_what_cub_cannot_measure_here``)."""
    _, checkpoint = nb07_cub
    run = execute("08_evaluate.ipynb", tmp_path / "08.ipynb",
                  {"device": "cpu", "smoke": True, "cub_checkpoint": str(checkpoint)})
    assert run.error is None, run.error
    assert "smoke run: FID and IS skipped (they need the FID Inception file)" in run.text
    assert '"rprec": {' in run.text and '"fid"' not in run.text.split("smoke run: FID")[1]
    assert "SSA-GAN: evaluated 16 samples" in run.text  # the ToyBirds part before it


@pytest.mark.filterwarnings("ignore:R-precision:UserWarning")  # 12 test images
def test_nb07_cub_checkpoint_evaluates_through_the_cli(paper, nb07_cub, tmp_path, capsys):
    """What notebook 08's CUB cell measures without weight files: R-precision, on the test
    split of the tree notebook 07 trained on (the CLI's evaluate, the same function)."""
    _, checkpoint = nb07_cub
    out = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(checkpoint), "--dataset", "cub",
                 "--data-dir", str(paper.birds), "--metrics", "rprec", "--n-samples", "8",
                 "--batch-size", "4", "--device", "cpu", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[0])
    report = json.loads(out.read_text())
    assert summary["n_samples"] == 8 and 0.0 <= summary["rprec"] <= 1.0
    assert report["protocol"]["metrics"] == ["rprec"] and report["protocol"]["n_test_images"] == 12
    assert report["data"] == str(paper.birds) and "fid" not in report and "is" not in report
    assert report["rprec"]["n_candidates"] > 1 and report["rprec"]["chance"] > 0


# --- notebook 09 on CUB and on Oxford-102 ---------------------------------------------------------

@pytest.mark.parametrize("dataset", ["cub", "flowers"])
def test_nb09_trains_sisgan_on_the_fixture(paper, dataset, tmp_path):
    """``smoke=False`` with smoke sizes passed explicitly: in smoke mode notebook 09 switches
    to ToyBirds whatever ``dataset`` says (see the xfail below)."""
    root = paper.birds if dataset == "cub" else paper.flowers
    run = execute("09_sisgan.ipynb", tmp_path / "09.ipynb",
                  {"dataset": dataset, "data_dir": str(root), "device": "cpu", "smoke": False,
                   "epochs": 1, "batch_size": 8, "ngf": 4, "ndf": 4,
                   "damsm": str(paper.damsm[dataset])})
    text = completed(run)
    assert f"dataset={dataset} device=cpu epochs=1 batch_size=8" in text
    sizes = "8 training and 12 test" if dataset == "cub" else "20 training and 10 test"
    assert f"{sizes} images, stored at 76 px" in text
    if dataset == "flowers":
        assert "split: classes" in text  # Reed et al.'s class-disjoint split, SISGAN's
    assert f"DAMSM loaded from {paper.damsm[dataset]}" in text  # a trained file
    assert "32-d sentences" in text
    steps = 1 if dataset == "cub" else 2  # batches of 8 in 8 or 20 training images
    assert f"{steps} steps per epoch" in text and f"trained step {steps}, epoch 1" in text
    folder = re.search(r"run folder (sisgan_\w+)", text).group(1)
    assert folder.startswith(f"sisgan_{dataset}64_")
    run_dir = paper.data / "runs" / folder  # default_run_dir: under T2I_DATA
    assert (run_dir / "checkpoint.pt").is_file()
    assert list((run_dir / "samples").glob("*.png"))
    assert "CUB and Oxford-102 have none" in text  # the oracle metrics are ToyBirds-only


def test_nb09_smoke_keeps_the_dataset_and_says_its_inception_is_random(paper, tmp_path):
    """Smoke mode on CUB stays on CUB and pretrains its DAMSM on a random Inception trunk,
    saying so (the real run refuses without ImageNet's weights, like notebook 07)."""
    run = execute("09_sisgan.ipynb", tmp_path / "09.ipynb",
                  {"dataset": "cub", "data_dir": str(paper.birds), "device": "cpu",
                   "smoke": True})
    text = completed(run)
    assert "dataset=cub" in text
    assert "smoke run: the DAMSM's Inception-v3 trunk has RANDOM weights, not ImageNet's" in text


# --- the command line on the CUB fixture ----------------------------------------------------------

@pytest.fixture(scope="module")
def cli_run(paper, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("cli") / "run"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = main(["train", "ssagan", "--recipe", "smoke", "--dataset", "cub",
                       "--data-dir", str(paper.birds), "--run-dir", str(run_dir),
                       "--device", "cpu", "--damsm", str(paper.damsm["cub"])])
    assert status == 0
    return run_dir, json.loads(out.getvalue().strip().splitlines()[-1])


def test_cli_trains_ssagan_on_the_cub_fixture(cli_run):
    run_dir, printed = cli_run
    assert printed == {"status": "done", "recipe": "smoke", "step": 1, "epoch": 1,
                       "checkpoint": str(run_dir / "checkpoint.pt")}
    payload = load_torch(run_dir / "checkpoint.pt")
    fp = payload["fingerprint"]
    assert fp["data.name"] == "cub:birds" and fp["data.n_images"] == 8
    assert (fp["model.resolution"], fp["model.ngf"], fp["model.sentence_dim"]) == (32, 8, 32)
    assert fp["train.damsm_image_size"] is None  # the DAMSM was pretrained at 32 px too
    assert list((run_dir / "samples").glob("*.png")) and (run_dir / "losses.csv").is_file()


def test_cli_samples_from_the_cub_checkpoint(cli_run, tmp_path, capsys):
    run_dir, _ = cli_run
    out = tmp_path / "grid.png"
    assert main(["sample", "--checkpoint", str(run_dir / "checkpoint.pt"),
                 "--caption", "this bird has a white belly and black wings",
                 "--caption", "a large bird with a sooty crown", "-n", "2",
                 "--out", str(out), "--device", "cpu"]) == 0
    assert f"wrote 4 images to {out}" in capsys.readouterr().out
    assert Image.open(out).size == (2 * 34 + 2, 2 * 34 + 2)  # 2 x 2 cells of 32 px, 2 px gaps


@pytest.mark.filterwarnings("ignore:R-precision:UserWarning")  # 12 test images
def test_cli_evaluates_the_cub_checkpoint_with_rprecision(paper, cli_run, tmp_path, capsys):
    run_dir, _ = cli_run
    out = tmp_path / "report.json"
    assert main(["evaluate", "--checkpoint", str(run_dir / "checkpoint.pt"), "--dataset", "cub",
                 "--data-dir", str(paper.birds), "--metrics", "rprec", "--n-samples", "8",
                 "--batch-size", "4", "--device", "cpu", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    report = json.loads(out.read_text())
    assert report["step"] == 1 and report["protocol"]["n_samples"] == 8
    assert set(report) >= {"rprec", "protocol"} and not {"fid", "is", "toy"} & set(report)
    assert report["rprec"]["judge"].startswith("training encoder")


@pytest.mark.parametrize("metric, expected", [
    ("fid", f"the FID Inception weights {FID_FILE} are not on this machine"),
    ("is", f"the FID Inception weights {FID_FILE} are not on this machine"),
    ("toy", "the toy metrics need a ToyBirds folder"),
])
def test_cli_evaluate_refuses_what_cub_cannot_measure_here(paper, cli_run, metric, expected,
                                                           tmp_path, capsys):
    run_dir, _ = cli_run
    out = tmp_path / "report.json"
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--checkpoint", str(run_dir / "checkpoint.pt"), "--dataset", "cub",
              "--data-dir", str(paper.birds), "--metrics", metric, "--n-samples", "10",
              "--device", "cpu", "--out", str(out)])
    assert_one_line_error(exit_info, capsys, expected)
    assert not out.exists()


def test_cli_train_on_cub_refuses_without_inception_weights(paper, tmp_path, capsys):
    """Without ``--damsm`` the CLI pretrains the paper's DAMSM, whose image encoder is
    ImageNet's Inception-v3: with no weights file it stops before writing anything."""
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "ssagan", "--recipe", "smoke", "--dataset", "cub",
              "--data-dir", str(paper.birds), "--run-dir", str(run_dir), "--device", "cpu"])
    assert_one_line_error(exit_info, capsys,
                          f"ImageNet weights for Inception-v3 are not on this machine, and "
                          f"t2ilib never downloads. Put {INCEPTION_FILE}")
    assert not run_dir.exists()


def test_cli_smoke_recipe_pretrains_its_own_damsm_on_cub(paper, tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["train", "ssagan", "--recipe", "smoke", "--dataset", "cub",
                 "--data-dir", str(paper.birds), "--run-dir", str(run_dir), "--device", "cpu",
                 "--damsm-epochs", "1", "--image-encoder", "small_cnn"]) == 0
    assert (run_dir / "damsm" / "checkpoint.pt").is_file()


# --- train sisgan on the CUB and Oxford-102 fixtures (the README's SISGAN rows) -------------------

@pytest.mark.parametrize("dataset", ["cub", "flowers"])
def test_cli_trains_sisgan_on_the_fixture(paper, dataset, tmp_path, capsys):
    root = paper.birds if dataset == "cub" else paper.flowers
    run_dir = tmp_path / "run"
    argv = ["train", "sisgan", "--recipe", "smoke", "--dataset", dataset, "--data-dir", str(root),
            "--run-dir", str(run_dir), "--device", "cpu", "--damsm", str(paper.damsm[dataset])]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["status"] == "done" and printed["damsm"] == str(paper.damsm[dataset])
    fp = load_torch(run_dir / "checkpoint.pt")["fingerprint"]
    assert fp["data.name"] == dataset and fp["model.sentence_dim"] == 32
    assert fp["train.damsm_image_size"] == 32  # the fixture's DAMSM reads 32 px, SISGAN 64
    assert main(argv) == 0 and "already trained" in capsys.readouterr().out


def test_cli_train_sisgan_on_cub_refuses_without_inception_weights(paper, tmp_path, capsys):
    """Without ``--damsm`` the reference recipe pretrains a DAMSM on ImageNet's Inception-v3
    first: with no weights file it stops with one line, before training anything."""
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "sisgan", "--dataset", "cub", "--data-dir", str(paper.birds),
              "--run-dir", str(run_dir), "--device", "cpu", "--epochs", "1"])
    assert_one_line_error(exit_info, capsys,
                          f"ImageNet weights for Inception-v3 are not on this machine, and "
                          f"t2ilib never downloads. Put {INCEPTION_FILE}")
    assert not (run_dir / "checkpoint.pt").exists()
