"""The classroom assignments: nbgrader exercises in the course notebooks.

An exercise is an nbgrader *solution* cell (the solution between ``### BEGIN SOLUTION`` and
``### END SOLUTION`` comment lines, often inside the body of a mirrored function) followed
by an autograded *test* cell: visible asserts, then hidden tests between
``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS`` that compare the student's code with
stored reference outputs (``notebooks/reference_outputs/<notebook>.pt``, see
``t2ilib.course.reference_outputs``), never with the exercised ``t2ilib`` function: for
graded use the answers must not be importable. In the library, each answer lies between
``# BEGIN EXERCISE NN:<grade_id>`` and ``# END EXERCISE`` comment lines.
``nbgrader_config.py`` makes ``notebooks/`` the source of one assignment, ``notebooks``;
``make student`` generates the student version into ``student/notebooks/`` and the
students' library, every marked answer replaced by ``NotImplementedError``, into
``student/t2ilib/`` (``t2ilib.course.student``).

Checked here:

* the cells are well formed (nbgrader's own metadata schema, markers, unique grade ids, at
  least ``MIN_EXERCISES``, each solution followed by a test cell with hidden tests that read
  the notebook's stored outputs), and a test cell binds no name that the rest of its
  notebook uses;
* every solution cell has its answer marked in the library, with the same code, and no
  hidden test imports an exercised function (or a class with an exercised method);
* the students' library holds none of the marked answers, imports, and its stubs raise
  ``NotImplementedError`` naming the exercise;
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
        stored = rf'stored_outputs\("{path.stem}"\)'  # t2ilib.course.checks: the teacher's
        assert re.search(stored, hidden_text) and "assert" in hidden_text, (  # folder only
            f"{t['grade_id']}: the hidden tests must compare with the stored outputs: "
            f'stored_outputs("{path.stem}") (from t2ilib.course.checks)')
        assert "reference_outputs/" not in tests, (
            f"{t['grade_id']}: read the stored outputs with stored_outputs(), not by path: "
            "nbgrader copies them nowhere")


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


# ------------------------------------------------------------------------------------------
# The library's exercise markers, the hidden tests' imports, the students' library
# ------------------------------------------------------------------------------------------

def library_regions() -> dict[str, list[tuple[Path, str]]]:
    """``{grade_id: [(module path, the marked lines), ...]}`` over every module of t2ilib."""
    from t2ilib.course.student import exercise_regions

    found: dict[str, list[tuple[Path, str]]] = {}
    for module in sorted((REPO / "t2ilib").rglob("*.py")):
        lines = module.read_text(encoding="utf-8").split("\n")
        for r in exercise_regions("\n".join(lines)):
            found.setdefault(r.grade_id, []).append(
                (module, "\n".join(lines[r.start + 1:r.end])))
    return found


def _code(lines: str) -> str:
    """The AST of some indented statements (comments and layout do not count)."""
    import textwrap

    return ast.dump(ast.parse(textwrap.dedent(lines)))


def test_every_exercise_is_marked_in_the_library_with_the_same_code():
    marked = library_regions()
    solutions = {meta(c)["grade_id"]: (nb, c) for nb in EXERCISE_NOTEBOOKS
                 for c, _ in exercises(nb)}
    assert sorted(marked) == sorted(solutions), (
        f"solution cells without library markers: {sorted(set(solutions) - set(marked))}; "
        f"markers without a solution cell: {sorted(set(marked) - set(solutions))}")
    for grade_id, places in marked.items():
        nb, cell = solutions[grade_id]
        for module, _ in places:
            assert module.read_text(encoding="utf-8").count(
                f"# BEGIN EXERCISE {nb.stem[:2]}:{grade_id}") >= 1, (grade_id, module)
        library = [_code(text) for _, text in places]
        notebook = [_code("\n".join(r)) for r in regions(source(cell), BEGIN, END)]
        modules = sorted({str(m.relative_to(REPO)) for m, _ in places})
        assert library == notebook, (
            f"{grade_id}: the library's marked regions ({modules}) differ from the solution "
            f"regions of {nb.name}")


def exercised_objects() -> dict[int, str]:
    """``{id(object): name}`` of every function or class of t2ilib with a marked answer."""
    import importlib

    from t2ilib.course.student import exercise_regions

    found: dict[int, str] = {}
    for module in sorted((REPO / "t2ilib").rglob("*.py")):
        text = module.read_text(encoding="utf-8")
        rows = [r.start + 1 for r in exercise_regions(text)]
        if not rows:
            continue
        name = ".".join(module.relative_to(REPO).with_suffix("").parts)
        loaded = importlib.import_module(name.removesuffix(".__init__"))
        for node in ast.parse(text).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                    node.lineno <= row <= node.end_lineno for row in rows):
                found[id(getattr(loaded, node.name))] = f"{name}.{node.name}"
    return found


def hidden_imports(code: str) -> list[tuple[str, object]]:
    """``(what the code names, the object)`` for every t2ilib name a piece of code imports,
    directly (``from m import f``) or through a module (``import m as x`` ... ``x.f``)."""
    import importlib

    tree = ast.parse(code)
    modules: dict[str, object] = {}
    named: list[tuple[str, object]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("t2ilib"):
            base = importlib.import_module(node.module)
            for alias in node.names:
                obj = getattr(base, alias.name, None)
                if obj is None:  # a submodule
                    obj = importlib.import_module(f"{node.module}.{alias.name}")
                named.append((f"{node.module}.{alias.name}", obj))
                if isinstance(obj, type(ast)):
                    modules[alias.asname or alias.name] = obj
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("t2ilib"):
                    obj = importlib.import_module(alias.name)
                    modules[alias.asname or alias.name.split(".")[0]] = (
                        obj if alias.asname else importlib.import_module("t2ilib"))
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules):
            obj = getattr(modules[node.value.id], node.attr, None)
            named.append((f"{node.value.id}.{node.attr}", obj))
    return named


def test_hidden_tests_import_no_exercised_function():
    """For graded use the answers must not be importable: hidden tests compare with stored
    outputs. They may import t2ilib classes none of whose methods is an exercise."""
    exercised = exercised_objects()
    assert exercised, "no exercise markers found in t2ilib"
    for path in EXERCISE_NOTEBOOKS:
        for _, test in exercises(path):
            for hidden in regions(source(test), HIDDEN_BEGIN, HIDDEN_END):
                bad = [name for name, obj in hidden_imports("\n".join(hidden))
                       if id(obj) in exercised]
                assert not bad, (f"{meta(test)['grade_id']}: the hidden tests import exercised "
                                 f"code {bad}; compare with reference_outputs/{path.stem}.pt")


def test_hidden_import_check_finds_each_form():
    code = ("from t2ilib.ssagan.losses import ma_gp_from_grads as f\n"
            "from t2ilib.ssagan import losses as L\nL.hinge_real\n"
            "import t2ilib.data.cub as cub\ncub.bbox_crop_box\n"
            "from t2ilib.ssagan.model import SSAGANConfig\n")
    exercised = exercised_objects()
    names = [n for n, obj in hidden_imports(code) if id(obj) in exercised]
    assert names == ["t2ilib.ssagan.losses.ma_gp_from_grads", "L.hinge_real",
                     "cub.bbox_crop_box"], names


@pytest.fixture(scope="module")
def student_library(tmp_path_factory) -> Path:
    """``python -m t2ilib.course.student`` (what ``make student`` runs) into a temporary folder."""
    out = tmp_path_factory.mktemp("student")
    done = subprocess.run([sys.executable, "-m", "t2ilib.course.student", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    return out


def test_student_library_holds_no_answer(student_library: Path):
    """No marked region survives, and none of its lines but those the library also has
    outside every region (``x, y, w, h = bbox``, say)."""
    from t2ilib.course.student import exercise_regions

    answers, public = set(), []
    for module in (REPO / "t2ilib").rglob("*.py"):
        lines = module.read_text(encoding="utf-8").split("\n")
        inside = set()
        for r in exercise_regions("\n".join(lines)):
            inside |= set(range(r.start, r.end + 1))
            answers |= {line.strip() for line in lines[r.start + 1:r.end]}
            student = (student_library / module.relative_to(REPO)).read_text(encoding="utf-8")
            assert "\n".join(lines[r.start + 1:r.end]) not in student, (module, r.grade_id)
            assert r.stub() in student, (module, r.grade_id)
        public += [line.strip() for i, line in enumerate(lines) if i not in inside]
    answers = {a for a in answers if len(a) > 12 and not a.startswith("#")} - set(public)
    student = "\n".join(p.read_text(encoding="utf-8")
                        for p in (student_library / "t2ilib").rglob("*.py"))
    leaked = sorted(a for a in answers if a in student)
    assert answers and not leaked, f"answers left in the students' library: {leaked}"
    for name in ("pyproject.toml", "Makefile", "nbgrader_config.py"):
        assert (student_library / name).is_file(), name


def test_student_copy_holds_nothing_of_the_teachers(student_library: Path):
    """No stored output, no builder of them, no broken-variant checker or grading command,
    no README section for teachers; the students' Makefile has only targets that work there
    (each resolves: ``make -n``)."""
    from t2ilib.course.student import TEACHER_ONLY

    assert not (student_library / "notebooks" / "reference_outputs").exists()
    assert not list(student_library.rglob("*.pt"))
    for part in TEACHER_ONLY:
        assert not (student_library / "t2ilib" / part).exists(), part
    assert "## For teachers" in (REPO / "README.md").read_text(encoding="utf-8")
    readme = (student_library / "README.md").read_text(encoding="utf-8")
    assert "## For teachers" not in readme and "## Testing" not in readme
    assert "## The notebooks" in readme and "**This is the students' checkout**" in readme
    makefile = (student_library / "Makefile").read_text(encoding="utf-8")
    assert "pytest" not in makefile and "TORCH ?= torch==" in makefile
    venv = REPO / ".venv"
    for target in ("install", "lab", "validate", "test", "lint", "clean"):
        done = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=student_library,
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, (target, done.stderr)
    done = subprocess.run(["make", "-n", "validate", f"VENV={venv}"], cwd=student_library,
                          capture_output=True, text=True, timeout=60)
    assert "T2I_SMOKE=1" in done.stdout and "nbgrader validate" in done.stdout


def test_a_class_assigned_some_notebooks_keeps_the_other_answers(tmp_path: Path):
    """``make student ASSIGN=07``: only 07's exercise is stubbed, so 07's tests (which build
    networks from notebook 04's and 06's exercises) pass with 07 solved and nothing else."""
    from t2ilib.course.student import _main, write_student_copy

    stubbed = write_student_copy(tmp_path, assigned=["07"])
    assert {r.number for r in stubbed} == {"07"}
    step = (tmp_path / "t2ilib" / "ssagan" / "step.py").read_text()
    ssacn = (tmp_path / "t2ilib" / "ssagan" / "ssacn.py").read_text()
    assert 'raise NotImplementedError("exercise 07:nb07_g_step' in step
    assert "NotImplementedError" not in ssacn and "BEGIN EXERCISE" not in ssacn
    assert "self.net = nn.Sequential(" in ssacn  # notebook 04's answer, kept
    with pytest.raises(ValueError, match=r"no exercise in notebook\(s\) \['12'\]"):
        write_student_copy(tmp_path, assigned=["12"])
    assert _main([str(tmp_path), "--assign", "2,7"]) == 0  # numbers as a teacher types them
    library = "\n".join(p.read_text() for p in (tmp_path / "t2ilib").rglob("*.py")
                        if p.name != "student.py")  # its docstring shows a stub
    numbers = set(re.findall(r'NotImplementedError\(\s*"exercise (\d\d):', library))
    assert numbers == {"02", "07"}


def test_student_library_imports_and_its_stubs_name_the_exercise(student_library: Path):
    """Imported from a working directory outside the repository, as a kernel started in
    ``student/notebooks/`` would (``PYTHONPATH`` comes before the editable install)."""
    script = """
import importlib, pkgutil, sys, torch
import t2ilib
assert t2ilib.__file__.startswith(sys.argv[1]), t2ilib.__file__
for m in pkgutil.walk_packages(t2ilib.__path__, "t2ilib."):
    if not m.name.endswith("__main__"):
        importlib.import_module(m.name)
from t2ilib.ssagan.losses import hinge_real
from t2ilib.data.cub import bbox_crop_box
for call in (lambda: hinge_real(torch.zeros(2)), lambda: bbox_crop_box((0, 0, 4, 4), 8, 8)):
    try:
        call()
    except NotImplementedError as error:
        print(error)
"""
    env = {**os.environ, "PYTHONPATH": str(student_library)}
    done = subprocess.run([sys.executable, "-c", script, str(student_library)],
                          cwd=student_library, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split("\n")[:2] == [
        "exercise 06:nb06_hinge_losses: solve it in notebook 06",
        "exercise 01:nb01_bbox_crop_box: solve it in notebook 01"], done.stdout


@pytest.mark.parametrize("path", EXERCISE_NOTEBOOKS, ids=IDS)
def test_exercise_variants_apply(path: Path):
    """The broken-variant check (``python -m t2ilib.course.exercise_check``, report in
    ``docs/exercise_check.md``) has at least three wrong answers per exercise, each a change
    to that exercise's solution region (running them needs a kernel: see the report)."""
    from t2ilib.course.exercise_check import check_variants_apply, load_variants, variants_file

    number = path.stem[:2]
    assert variants_file(number).is_file(), f"no broken variants for {path.name}"
    variants = load_variants(number)
    check_variants_apply(number, variants)
    for solution, _ in exercises(path):
        grade_id = meta(solution)["grade_id"]
        wrong = [v for v in variants if v.exercise == grade_id and not v.should_pass]
        assert len(wrong) >= 3, f"{grade_id}: {len(wrong)} wrong answers, want >= 3"
    report = (REPO / "docs" / "exercise_check.md").read_text(encoding="utf-8")
    assert f"## {path.name}" in report, f"docs/exercise_check.md has no section for {path.name}"


def test_exercise_check_report_replaces_only_the_sections_it_ran(tmp_path: Path):
    from t2ilib.course.exercise_check import Result, render, update_report

    report = tmp_path / "report.md"
    first = {"01_data.ipynb": render("01", [Result("nb01_tokenize", None, False, "")]),
             "03_conditioning.ipynb": render("03", [Result("nb03_conditional_bn", "x", False,
                                                           "", should_pass=False)])}
    report.write_text(update_report(report, first, "cmd 01 03"), encoding="utf-8")
    text = report.read_text(encoding="utf-8")
    assert "Last run: `cmd 01 03`" in text and "**not caught**" in text
    again = {"03_conditioning.ipynb": render("03", [Result("nb03_conditional_bn", "x", True,
                                                           "AssertionError: y", False)])}
    text = update_report(report, again, "cmd 03")
    assert "Last run: `cmd 03`" in text and "**not caught**" not in text
    assert "AssertionError: y" in text and "`nb01_tokenize` | the solution | passes" in text
    assert text.index("## 01_data") < text.index("## 03_conditioning")


def test_make_student_runs_nbgraders_generator():
    recipe = re.search(r"^student:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe, "the Makefile has no 'student' target"
    assert "nbgrader " + " ".join(GENERATE) in recipe.group(1)
    assert '-m t2ilib.course.student student --assign "$(ASSIGN)"' in recipe.group(1)


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
