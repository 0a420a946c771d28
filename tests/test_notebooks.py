"""Execute every course notebook with papermill in its smoke configuration.

Each notebook runs in a fresh ``python3`` kernel with ``notebooks/`` as working directory,
into a temporary output file, with ``SMOKE_PARAMETERS`` injected (conftest.py also sets
``T2I_SMOKE=1`` for the kernels). A failure names the cell and the error. A notebook without
a cell tagged ``parameters`` fails, and so does any parameter papermill does not know (it
would only log a warning and run with the default).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from t2ilib.course.notebooks import KERNEL_NAME

from .conftest import NOTEBOOKS

#: Injected into every notebook; per-notebook additions go in EXTRA_PARAMETERS.
SMOKE_PARAMETERS = {"smoke": True}
EXTRA_PARAMETERS: dict[str, dict] = {}


def parameters_cell(path: Path) -> dict | None:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    tagged = [c for c in cells
              if c["cell_type"] == "code" and "parameters" in c.get("metadata", {}).get("tags", [])]
    return tagged[0] if tagged else None


def test_there_are_notebooks():
    assert NOTEBOOKS, "notebooks/ holds no NN_*.ipynb"
    assert NOTEBOOKS[0].name.startswith("00_")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_committed_clean(path: Path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert parameters_cell(path) is not None, f"{path.name}: no code cell tagged 'parameters'"
    assert nb["metadata"].get("kernelspec", {}).get("name") == KERNEL_NAME
    assert "papermill" not in nb["metadata"], (
        f"{path.name}: commit an nbclient run, not papermill's")
    counts = [c.get("execution_count") for c in nb["cells"]
              if c["cell_type"] == "code" and "".join(c["source"]).strip()]
    assert counts == list(range(1, len(counts) + 1)), (
        f"{path.name}: execution counts {counts} are not 1..n: re-run it top to bottom "
        "(make notebooks)")
    errors = [i for i, c in enumerate(nb["cells"])
              for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: stored error output in cell(s) {errors}"


def run_notebook(path: Path, out: Path, params: dict) -> list[str]:
    """Execute ``path`` with papermill; fail the test with the cell index and error if a cell
    raises; return papermill's "unknown parameter" warnings."""
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    logger = logging.getLogger("papermill")
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        pm.execute_notebook(str(path), str(out), parameters=params, kernel_name=KERNEL_NAME,
                            cwd=str(path.parent), progress_bar=False, execution_timeout=600)
    except PapermillExecutionError as err:
        pytest.fail(f"{path.name}: cell {err.cell_index} (execution count {err.exec_count}) "
                    f"raised {err.ename}: {err.evalue}\n--- cell source ---\n{err.source}",
                    pytrace=False)
    finally:
        logger.removeHandler(handler)
    return [r.getMessage() for r in records if "unknown parameter" in r.getMessage()]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_with_smoke_parameters(path: Path, tmp_path: Path, monkeypatch):
    """The kernel's temporary directory is a folder of this test: whatever the smoke run puts
    there (its scratch models, its run folders) must be gone when the kernel has exited."""
    assert parameters_cell(path) is not None, f"{path.name}: no code cell tagged 'parameters'"
    params = {**SMOKE_PARAMETERS, **EXTRA_PARAMETERS.get(path.stem, {})}
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))  # inherited by the kernel papermill starts
    unknown = run_notebook(path, tmp_path / path.name, params)
    assert not unknown, f"{path.name}: {unknown} (the parameters cell does not define it)"
    left = sorted(p.name for p in tmp.iterdir()
                  if not p.name.startswith("torchinductor_"))  # PyTorch's own compile cache
    assert left == [], f"{path.name} left {left} in the temporary directory"


# --- the harness itself must be able to fail -------------------------------------------------

def _tiny_notebook(tmp_path: Path, cells: list[tuple[str, list[str]]]) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(src, metadata={"tags": tags}) for src, tags in cells]
    path = tmp_path / "tiny.ipynb"
    nbformat.write(nb, path)
    return path


def test_harness_reports_unknown_parameters(tmp_path: Path):
    path = _tiny_notebook(tmp_path, [("smoke: bool = False", ["parameters"]), ("x = 1", [])])
    assert run_notebook(path, tmp_path / "out.ipynb", {"smoke": True}) == []
    unknown = run_notebook(path, tmp_path / "out.ipynb", {"smoke": True, "epochz": 3})
    assert len(unknown) == 1 and "epochz" in unknown[0]


def test_harness_reports_failing_cell(tmp_path: Path):
    path = _tiny_notebook(tmp_path, [("smoke: bool = False", ["parameters"]),
                                     ("y = 1", []), ("raise ValueError('boom')", [])])
    with pytest.raises(pytest.fail.Exception) as info:
        run_notebook(path, tmp_path / "out.ipynb", {})
    assert "ValueError: boom" in str(info.value) and "cell 2" in str(info.value)


def test_parameters_cell_detection(tmp_path: Path):
    assert parameters_cell(_tiny_notebook(tmp_path, [("a = 1", [])])) is None
    assert parameters_cell(_tiny_notebook(tmp_path, [("a = 1", ["parameters"])])) is not None


def test_figures_are_extracted_from_executed_notebooks(tmp_path: Path, repo: Path):
    from t2ilib.course.notebooks import extract_figures

    written = extract_figures(repo / "notebooks" / "00_welcome.ipynb", tmp_path)
    assert written, "notebook 00 shows the course map as a figure"
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in written)
