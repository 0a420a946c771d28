"""The classroom assignments: nbgrader exercises in the course notebooks.

An exercise is an nbgrader *solution* cell (the solution between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` comment lines, often inside the body of a mirrored function) followed
by an autograded *test* cell: visible asserts, then hidden tests between
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` that compare the student's code with
t2ilib's on random inputs. ``nbgrader_config.py`` makes ``notebooks/`` the source of one
assignment, ``notebooks``; ``make student`` generates the student version into
``student/notebooks/``.

Checked here:

* the cells are well formed (nbgrader's own metadata schema, markers, unique grade ids, at
  least ``MIN_EXERCISES``, each solution followed by a test cell with hidden tests), and a
  test cell binds no name that the rest of its notebook uses;
* ``nbgrader generate_assignment`` (the command ``make student`` runs, with the same
  config) writes student versions that hold no solution code and no hidden test, and
  whose cells are exactly the source cells with those regions taken out;
* ``nbgrader validate`` passes on every solution notebook (and no cell of it fails);
* ``nbgrader validate --invert`` on every student version: each test cell fails, with the
  stub's ``NotImplementedError``.

Validation executes the notebooks in smoke mode (``T2I_SMOKE=1``, set by conftest.py), in
nbgrader's own ``Validator`` with the repository's config: about two minutes in all.
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import NOTEBOOKS, REPO

MIN_EXERCISES = 8
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
HIDDEN_BEGIN, HIDDEN_END = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
STUB = "raise NotImplementedError()"  # the last line of nbgrader's code stub


def code_stub() -> str:
    """What nbgrader puts in place of a solution region (``# YOUR CODE HERE`` + ``STUB``)."""
    from nbgrader.preprocessors import ClearSolutions

    return ClearSolutions().code_stub["python"]


#: The command of the Makefile's ``student`` target (checked below), run here with a
#: temporary output folder and gradebook.
GENERATE = ["generate_assignment", "notebooks", "--force"]


def load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def meta(cell: dict) -> dict:
    return cell.get("metadata", {}).get("nbgrader", {})


def with_exercises() -> list[Path]:
    return [p for p in NOTEBOOKS if any(meta(c).get("solution") for c in load(p)["cells"])]


EXERCISE_NOTEBOOKS = with_exercises()
IDS = [p.stem for p in EXERCISE_NOTEBOOKS]


def regions(text: str, begin: str, end: str) -> list[list[str]]:
    """The lines strictly between each ``begin`` and ``end`` marker line."""
    found, current = [], None
    for line in text.split("\n"):
        if begin in line:
            assert current is None, f"nested {begin!r}"
            current = []
        elif end in line:
            assert current is not None, f"{end!r} without {begin!r}"
            found.append(current)
            current = None
        elif current is not None:
            current.append(line)
    assert current is None, f"{begin!r} without {end!r}"
    return found


def remove_regions(text: str, begin: str, end: str, stub: str | None) -> str:
    """What nbgrader makes of ``text``: each region dropped, or replaced by the indented stub."""
    out, inside = [], False
    for line in text.split("\n"):
        if begin in line:
            inside = True
            if stub is not None:
                indent = line[: len(line) - len(line.lstrip())]
                out += [indent + s for s in stub.split("\n")]
        elif end in line:
            inside = False
        elif not inside:
            out.append(line)
    return "\n".join(out)


def exercises(path: Path) -> list[tuple[dict, dict]]:
    """``(solution cell, test cell)`` pairs: each solution's next code cell is its test."""
    code = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    return [(c, code[i + 1] if i + 1 < len(code) else {})
            for i, c in enumerate(code) if meta(c).get("solution")]


# ------------------------------------------------------------------------------------------
# Well-formed exercise cells (no execution)
# ------------------------------------------------------------------------------------------

def test_enough_exercises_with_unique_grade_ids():
    pairs = [pair for nb in EXERCISE_NOTEBOOKS for pair in exercises(nb)]
    assert len(pairs) >= MIN_EXERCISES, f"{len(pairs)} exercises, want >= {MIN_EXERCISES}"
    ids = [meta(c)["grade_id"] for nb in NOTEBOOKS for c in load(nb)["cells"] if meta(c)]
    assert len(ids) == len(set(ids)), f"grade ids used twice: {sorted(ids)}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_nbgrader_metadata_is_valid(path: Path):
    """nbgrader's own schema check, plus: a source notebook carries no student-version keys,
    and the markers appear only in the cells nbgrader expects them in (generate_assignment
    stops at a solution region outside a solution cell)."""
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator

    nb = nbformat.read(path, as_version=4)
    MetadataValidator().validate_nb(nb)  # raises ValidationError
    for index, cell in enumerate(nb.cells):
        m, text = meta(cell), source(cell)
        if m:
            assert m["schema_version"] == 3, (path.name, index)
            assert not {"checksum", "cell_type"} & set(m), (
                f"{path.name} cell {index}: 'checksum'/'cell_type' belong to student versions")
        if BEGIN in text or END in text:
            assert m.get("solution") and cell.cell_type == "code", (
                f"{path.name} cell {index}: solution markers outside a code solution cell")
        if HIDDEN_BEGIN in text or HIDDEN_END in text:
            assert m.get("grade") and cell.cell_type == "code", (
                f"{path.name} cell {index}: hidden-test markers outside a test cell")


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=IDS)
def test_each_exercise_is_a_solution_cell_followed_by_a_test_cell(path: Path):
    for solution, test in exercises(path):
        m, text = meta(solution), source(solution)
        name = m["grade_id"]
        assert (m["grade"], m["locked"], m.get("task", False)) == (False, False, False), name
        solved = regions(text, BEGIN, END)
        assert solved and all(any(line.strip() for line in r) for r in solved), (
            f"{name}: no non-empty solution region")
        for line in text.split("\n"):
            if BEGIN in line or END in line:
                assert line.strip() in (BEGIN, END), f"{name}: marker line {line!r}"
        ast.parse(text)  # markers are comments: the solution cell is plain Python

        t = meta(test)
        assert t.get("grade") and t.get("locked") and not t.get("solution"), (
            f"{name}: the next code cell is not a locked, autograded test cell")
        assert t["points"] > 0, name
        tests = source(test)
        hidden = regions(tests, HIDDEN_BEGIN, HIDDEN_END)
        assert len(hidden) == 1, f"{t['grade_id']}: want one hidden-test region"
        visible = remove_regions(tests, HIDDEN_BEGIN, HIDDEN_END, None)
        hidden_text = "\n".join(hidden[0])
        assert "assert" in visible, f"{t['grade_id']}: no visible test"
        assert "t2ilib" in hidden_text and "assert" in hidden_text, (
            f"{t['grade_id']}: the hidden tests must compare with t2ilib")


def _top_level_bindings(tree: ast.Module) -> set[str]:
    """Names a cell binds in the notebook's namespace (comprehension variables excluded)."""
    bound: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp,
                             ast.Lambda)):
            return
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.add(node.id)
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return bound - {"_"}


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=IDS)
def test_test_cells_bind_no_name_the_notebook_uses(path: Path):
    """The student version runs without the hidden tests: a variable they set must not be
    one the later cells read (nor may a test cell overwrite one of the notebook's names)."""
    cells = [c for c in load(path)["cells"] if c["cell_type"] == "code"]
    used: set[str] = set()
    for cell in cells:
        if not meta(cell).get("grade"):
            tree = ast.parse(source(cell))
            used |= {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
            used |= _top_level_bindings(tree)
    for cell in cells:
        if meta(cell).get("grade"):
            clash = _top_level_bindings(ast.parse(source(cell))) & used
            assert not clash, f"{meta(cell)['grade_id']} binds {sorted(clash)}"


def test_make_student_runs_nbgraders_generator():
    recipe = re.search(r"^student:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no 'student' target"
    assert "nbgrader " + " ".join(GENERATE) in recipe.group(1)


# ------------------------------------------------------------------------------------------
# The generated student versions
# ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def student_dir(tmp_path_factory) -> Path:
    """``nbgrader generate_assignment notebooks`` with the repository's config, into a
    temporary folder and a temporary gradebook (which also checks that nbgrader finds its
    database tools without an activated environment, as under ``make``)."""
    out = tmp_path_factory.mktemp("release")
    nbgrader = Path(sys.executable).with_name("nbgrader")
    cmd = [str(nbgrader) if nbgrader.exists() else "nbgrader", *GENERATE,
           f"--CourseDirectory.release_directory={out}",
           f"--CourseDirectory.db_url=sqlite:///{out / 'gradebook.db'}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    return out / "notebooks"


def test_every_notebook_is_released(student_dir: Path):
    assert sorted(p.name for p in student_dir.glob("*.ipynb")) == [p.name for p in NOTEBOOKS]


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=IDS)
def test_student_version_holds_no_solution_and_no_hidden_test(path: Path, student_dir: Path):
    src, student = load(path), load(student_dir / path.name)
    raw = json.dumps(student)
    for marker in (BEGIN, END, HIDDEN_BEGIN, HIDDEN_END):
        assert marker not in raw, f"{marker!r} in the student version of {path.name}"
    # every solution / hidden-test line that appears nowhere else in the source notebook
    # must be gone from the student version (code and outputs alike)
    secret, public = set(), []
    for cell in src["cells"]:
        text = source(cell)
        for begin, end in ((BEGIN, END), (HIDDEN_BEGIN, HIDDEN_END)):
            secret |= {line.strip() for r in regions(text, begin, end) for line in r}
        public.append(remove_regions(remove_regions(text, BEGIN, END, code_stub()),
                                     HIDDEN_BEGIN, HIDDEN_END, None))
    public_text = "\n".join(public)
    secret = {s for s in secret if len(s) > 12 and not s.startswith("#") and s not in public_text}
    assert secret, path.name
    leaked = [s for s in secret if s in "\n".join(source(c) for c in student["cells"])]
    assert not leaked, f"{path.name}: solution or hidden-test lines left: {leaked}"
    assert not any(c.get("outputs") for c in student["cells"]), "outputs must be cleared"
    # the student cells are the source cells with the regions replaced or removed
    assert [source(c) for c in student["cells"]] == public, path.name
    for cell in student["cells"]:
        if meta(cell).get("solution"):
            assert STUB in source(cell)
        if meta(cell).get("grade"):
            assert meta(cell)["locked"] and "checksum" in meta(cell)


# ------------------------------------------------------------------------------------------
# nbgrader validate (executes the notebooks, smoke mode)
# ------------------------------------------------------------------------------------------

def run_validator(path: Path, invert: bool) -> tuple[dict, dict]:
    """nbgrader's Validator with the repository's config: ``(results, executed notebook)``."""
    from nbconvert.preprocessors import Preprocessor
    from nbgrader.validator import Validator
    from traitlets.config.loader import PyFileConfigLoader

    assert os.environ.get("T2I_SMOKE") == "1"  # conftest.py: every kernel runs tiny
    executed: list = []

    class Keep(Preprocessor):
        def preprocess(self, nb, resources):
            executed.append(nb)
            return nb, resources

    config = PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()
    validator = Validator(config=config, invert=invert)
    validator.preprocessors = [*validator.preprocessors, Keep]
    results = validator.validate(str(path))
    assert len(executed) == 1, f"nbgrader did not execute {path.name}: {results}"
    return results, executed[0]


def errors(cell) -> list[str]:
    return [o.get("ename", "") for o in cell.get("outputs", []) if o.get("output_type") == "error"]


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=IDS)
def test_solution_notebook_passes_nbgrader_validate(path: Path):
    results, nb = run_validator(path, invert=False)
    assert results == {}, json.dumps(results, indent=1)[:4000]
    failing = {i: errors(c) for i, c in enumerate(nb.cells) if errors(c)}
    assert not failing, f"{path.name}: cells raised {failing}"


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=IDS)
def test_student_version_fails_every_test(path: Path, student_dir: Path):
    results, nb = run_validator(student_dir / path.name, invert=True)
    assert results == {}, f"tests pass without a solution: {json.dumps(results, indent=1)[:4000]}"
    tests = {meta(c)["grade_id"]: errors(c) for c in nb.cells if meta(c).get("grade")}
    assert sorted(tests) == sorted(meta(t)["grade_id"] for _, t in exercises(path))
    wrong = {k: v for k, v in tests.items() if v != ["NotImplementedError"]}
    assert not wrong, f"{path.name}: tests that fail for another reason than the stub: {wrong}"
