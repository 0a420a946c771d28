"""The committed notebooks are one consistent run of the series.

Every notebook prints ``checkpoint <run>@<digest>`` (``t2ilib.engine.checkpoint.checkpoint_id``)
for each checkpoint it writes or reads. A notebook executed against another file than the one
its producing notebook printed (say 07 retrained after 10 was executed) shows as two digests for
one run, and fails here.
"""

from __future__ import annotations

import nbformat
import pytest

from t2ilib.course.notebooks import checkpoint_disagreements, checkpoint_ids
from t2ilib.engine.checkpoint import checkpoint_id

from .conftest import NOTEBOOKS

#: Runs the series shares, and the notebooks that print them (producer first).
SHARED_RUNS = {
    "damsm_toybirds32": ("02_text_encoder_damsm", "07_train_ssagan", "08_evaluate", "09_sisgan"),
    "nb07_toybirds_32px": ("07_train_ssagan", "10_demo"),
    "sisgan_toybirds64": ("09_sisgan", "10_demo"),
}


def test_committed_notebooks_agree_on_every_checkpoint():
    assert checkpoint_disagreements(NOTEBOOKS) == []


@pytest.mark.parametrize("run", sorted(SHARED_RUNS))
def test_each_shared_run_is_printed_by_its_producer_and_consumers(run):
    by_stem = {path.stem: path for path in NOTEBOOKS}
    for stem in SHARED_RUNS[run]:
        assert run in checkpoint_ids(by_stem[stem]), f"{stem} prints no id of {run}"


def _notebook(path, *texts):
    nb = nbformat.v4.new_notebook()
    for text in texts:
        cell = nbformat.v4.new_code_cell("print()")
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=text)]
        nb.cells.append(cell)
    nbformat.write(nb, path)
    return path


def test_a_notebook_run_against_another_file_is_found(tmp_path):
    made = _notebook(tmp_path / "a.ipynb", "checkpoint run_a@0123456789ab\n")
    same = _notebook(tmp_path / "b.ipynb", "loaded\ncheckpoint run_a@0123456789ab")
    other = _notebook(tmp_path / "c.ipynb", "checkpoint run_a@ba9876543210\n")
    assert checkpoint_disagreements([made, same]) == []
    (line,) = checkpoint_disagreements([made, same, other])
    assert line == "run_a: 0123456789ab in a.ipynb, b.ipynb; ba9876543210 in c.ipynb"


def test_checkpoint_id_names_the_run_folder_and_the_content(tmp_path):
    (tmp_path / "run").mkdir()
    path = tmp_path / "run" / "checkpoint.pt"
    path.write_bytes(b"weights")
    first = checkpoint_id(tmp_path / "run")  # a run folder names its checkpoint.pt
    assert first.startswith("checkpoint run@") and first == checkpoint_id(path)
    path.write_bytes(b"other weights")
    assert checkpoint_id(path) != first
