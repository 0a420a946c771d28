"""The mirror check: every marked notebook cell equals its t2ilib copy (t2ilib.course.mirror)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from t2ilib.course.mirror import check_notebook, marked_cells

from .conftest import NOTEBOOKS

FIXTURES = Path(__file__).parent / "fixtures" / "mirror"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_mirrors_library(path: Path, repo: Path):
    problems = check_notebook(path, repo)
    assert not problems, "\n\n".join(map(str, problems))


def test_faithful_copy_passes():
    assert len(list(marked_cells(FIXTURES / "good.ipynb"))) == 2
    assert check_notebook(FIXTURES / "good.ipynb", FIXTURES) == []


def test_drifted_fixture_fails_with_names_places_and_diff():
    problems = check_notebook(FIXTURES / "drifted.ipynb", FIXTURES)
    by_cell = {p.cell_index: p for p in problems}
    assert sorted(by_cell) == [1, 2, 3, 4], problems

    drift = by_cell[1]
    assert drift.symbol == "affine" and drift.module == "t2ilib/toy_module.py"
    text = str(drift)
    assert "drifted.ipynb" in text and "t2ilib/toy_module.py" in text
    assert "-    return gamma * x - beta" in drift.diff
    assert "+    return gamma * x + beta" in drift.diff

    assert by_cell[2].symbol == "shift" and "missing from the module" in by_cell[2].message
    assert "does not exist" in by_cell[3].message
    assert "demo code" in by_cell[4].message


def test_real_notebook_cell_fails_when_library_drifts(tmp_path: Path, repo: Path):
    """Take a real mirrored cell, change its module by one character, expect a mismatch."""
    cells = [(nb, module) for nb in NOTEBOOKS for _, module, _ in marked_cells(nb)]
    if not cells:
        pytest.skip("no notebook has mirrored cells yet")
    notebook, module = cells[0]
    shutil.copytree(repo / "t2ilib", tmp_path / "t2ilib")
    target = tmp_path / module
    source = target.read_text(encoding="utf-8")
    assert check_notebook(notebook, tmp_path) == []
    target.write_text(source.replace("return ", "return -1 + ", 1), encoding="utf-8")
    assert check_notebook(notebook, tmp_path), f"editing {module} went unnoticed"
