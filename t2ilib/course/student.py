"""The students' copy of the course: the library without the exercises' answers.

In ``t2ilib``, the body of every function a notebook's exercise asks for lies between two
comment lines, ``# BEGIN EXERCISE 06:nb06_ma_gp`` and ``# END EXERCISE`` (``06`` the
notebook, ``nb06_ma_gp`` the nbgrader ``grade_id`` of its solution cell).
:func:`write_student_copy` writes a students' checkout of the repository, ``student/``:
``student/t2ilib/`` is the library with each marked region replaced by ::

    raise NotImplementedError("exercise 06:nb06_ma_gp: solve it in notebook 06")

and the files needed to install it (``pyproject.toml``, ``environment.yml``,
``nbgrader_config.py``, ``data_scripts/``) beside the notebooks that ``nbgrader
generate_assignment`` put in ``student/notebooks/``. Nothing of the teacher's goes along:
not the builders of the stored outputs (``t2ilib/course/reference_outputs/``), the
broken-variant checker or the grading command (:data:`TEACHER_ONLY`), not the README's
sections for teachers and on testing (a note on this checkout instead), not a stored output
(nbgrader copies none: ``CourseDirectory.ignore``; a ``notebooks/reference_outputs/`` left by
an older nbgrader run is removed). The students'
``Makefile`` has the targets that work without the teacher's tests: ``install``, ``lab``,
``validate`` (``test``), ``lint``, ``clean``. In ``student/``, ``make install``
installs this library in editable mode, so the student notebooks' ``import t2ilib`` finds
it (``PYTHONPATH=student`` does the same in the teacher's environment: ``sys.path`` comes
before an editable install).

Usage: ``python -m t2ilib.course.student [OUT] [--assign 02,07]`` (``make student`` runs it
after nbgrader; ``make student ASSIGN=02,07`` stubs only those notebooks' exercises).
"""

from __future__ import annotations

import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2ilib.runtime import repo_root

__all__ = ["BEGIN", "END", "Region", "exercise_regions", "stub_source", "write_student_copy",
           "PROJECT_FILES", "TEACHER_ONLY", "student_readme", "student_makefile"]

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN EXERCISE (?P<number>\d\d):(?P<grade_id>\w+)\s*$")
END = re.compile(r"^[ \t]*# END EXERCISE\s*$")
#: What the students' checkout needs beside ``t2ilib/`` and ``notebooks/`` to be installed.
PROJECT_FILES = ("pyproject.toml", "environment.yml", "nbgrader_config.py", "data_scripts")
#: Parts of ``t2ilib`` (relative to it) that stay with the teacher: the stored outputs'
#: builders, the broken-variant checker, the grading command.
TEACHER_ONLY = ("course/reference_outputs", "course/exercise_check.py", "course/grade.py")
#: The README's sections that describe only the teacher's checkout (its tests, the grading).
_TEACHERS = re.compile(r"^## (For teachers|Testing).*?(?=^## |\Z)", flags=re.M | re.S)
_STUDENT_NOTE = """
**This is the students' checkout** (written by `make student`): the notebooks, with the
exercises to solve, and `t2ilib/`, whose exercised functions raise `NotImplementedError` until
you solve them in their notebook. Its `Makefile` has `make install` (the environment),
`make lab` (JupyterLab; nbgrader's *Validate* button checks a notebook) and `make validate`
(every notebook's visible tests in smoke mode; one notebook:
`make validate NB=notebooks/03_conditioning.ipynb`). Where the text below speaks of
`make test`, `make notebooks` or `tests/`, it means the teacher's repository.
"""
_STUDENT_MAKEFILE = """\
# t2i-course, the students' checkout (written by `make student`; see README.md)
#   make install    .venv with this t2ilib installed (editable) and the course's kernel
#   make lab        JupyterLab on the notebooks (nbgrader's Validate button included)
#   make validate   nbgrader validate, smoke mode: the visible tests of every notebook, or
#                   of one: make validate NB=notebooks/07_train_ssagan.ipynb (also: make test)
#   make lint       ruff on the library
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= {torch}
STAMP := $(VENV)/.installed
NB ?= $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))

.PHONY: install lab validate test lint clean

install: $(STAMP)

$(STAMP): pyproject.toml
\t@test -x $(PY) || $(PYTHON) -m venv $(VENV)
\t$(PY) -m pip install --quiet $(TORCH)
\t$(PY) -m pip install --quiet -e '.[dev]'
\t$(PY) -m ipykernel install --sys-prefix --name python3 \\
\t\t--display-name "Python 3 (t2i-course)" >/dev/null
\t@touch $(STAMP)

lab: $(STAMP)
\t$(VENV)/bin/jupyter lab --notebook-dir=notebooks

validate: $(STAMP)
\tT2I_SMOKE=1 $(VENV)/bin/nbgrader validate $(NB)

test: validate

lint: $(STAMP)  # the stubs leave the answers' imports and names unused: F401, F821 off
\t$(VENV)/bin/ruff check --extend-ignore F401,F821 t2ilib

clean:
\trm -rf .ruff_cache
"""


@dataclass(frozen=True)
class Region:
    """One marked answer: lines ``start`` (the BEGIN line) to ``end`` (the END line), 0-based."""

    number: str
    grade_id: str
    start: int
    end: int
    indent: str

    def stub(self) -> str:
        """The line(s) that replace the region: one line, or two when one is over 100 chars."""
        message = f"exercise {self.number}:{self.grade_id}: solve it in notebook {self.number}"
        line = f'{self.indent}raise NotImplementedError("{message}")'
        if len(line) <= 100:
            return line
        return f'{self.indent}raise NotImplementedError(\n{self.indent}    "{message}")'



def exercise_regions(source: str) -> list[Region]:
    """The marked regions of a module's source; ``ValueError`` for unbalanced markers."""
    regions, open_at = [], None
    for i, line in enumerate(source.split("\n")):
        if "EXERCISE" not in line:
            continue
        begin = BEGIN.match(line)
        if begin:
            if open_at is not None:
                raise ValueError(f"line {i + 1}: BEGIN EXERCISE inside another exercise")
            open_at = (i, begin)
        elif END.match(line):
            if open_at is None:
                raise ValueError(f"line {i + 1}: END EXERCISE without BEGIN")
            start, m = open_at
            regions.append(Region(m["number"], m["grade_id"], start, i, m["indent"]))
            open_at = None
        elif line.lstrip().startswith(("# BEGIN EXERCISE", "# END EXERCISE")):
            raise ValueError(f"line {i + 1}: malformed exercise marker {line.strip()!r}")
    if open_at is not None:
        raise ValueError(f"line {open_at[0] + 1}: BEGIN EXERCISE without END")
    return regions


def stub_source(source: str, assigned: Sequence[str] | None = None) -> str:
    """``source`` with every marked region (markers included) replaced by its stub; with
    ``assigned`` (notebook numbers, e.g. ``["07"]``) only those notebooks' regions, the others
    keep their answer without the markers."""
    lines = source.split("\n")
    for region in reversed(exercise_regions(source)):
        if assigned is None or region.number in assigned:
            lines[region.start:region.end + 1] = [region.stub()]
        else:
            lines[region.start:region.end + 1] = lines[region.start + 1:region.end]
    return "\n".join(lines)


def student_readme(text: str) -> str:
    """The README without its sections for teachers (``## For teachers...``, ``## Testing``),
    with a note on what this checkout is after its title."""
    title, _, rest = _TEACHERS.sub("", text).partition("\n")
    return f"{title}\n{_STUDENT_NOTE}{rest}"


def student_makefile(teacher_makefile: str) -> str:
    """The students' Makefile, with the teacher's PyTorch pins (``TORCH ?= ...``)."""
    pins = re.search(r"^TORCH \?= (.+)$", teacher_makefile, flags=re.M)
    return _STUDENT_MAKEFILE.format(torch=pins.group(1) if pins else "torch torchvision")


def _teacher_only(relative: Path) -> bool:
    return any(relative.as_posix() == p or relative.as_posix().startswith(p + "/")
               for p in TEACHER_ONLY)


def write_student_copy(out: str | Path, root: str | Path | None = None,
                       assigned: Sequence[str] | None = None) -> list[Region]:
    """Write the students' library ``out/t2ilib`` and project files; returns the regions
    stubbed. ``out/notebooks/reference_outputs`` is removed if present.

    ``assigned`` (notebook numbers) stubs only those notebooks' exercises: a class given
    notebook 07 alone keeps the answers of 04 and 06 in its library, so 07's tests, which build
    networks from them, pass with 07 solved and nothing else.
    """
    root, out = Path(root or repo_root()), Path(out)
    if out.resolve() == root.resolve():
        raise ValueError("the students' copy must not overwrite the repository")
    if assigned is not None:
        known = {r.number for p in (root / "t2ilib").rglob("*.py")
                 for r in exercise_regions(p.read_text(encoding="utf-8"))}
        unknown = sorted(set(assigned) - known)
        if unknown:
            raise ValueError(f"no exercise in notebook(s) {unknown}; the exercises are in "
                             f"notebooks {sorted(known)}")
    library = out / "t2ilib"
    if library.exists():
        shutil.rmtree(library)
    stubbed: list[Region] = []
    for path in sorted((root / "t2ilib").rglob("*")):
        if ("__pycache__" in path.parts or path.is_dir()
                or _teacher_only(path.relative_to(root / "t2ilib"))):
            continue
        target = library / path.relative_to(root / "t2ilib")
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".py":
            text = path.read_text(encoding="utf-8")
            stubbed += [r for r in exercise_regions(text)
                        if assigned is None or r.number in assigned]
            target.write_text(stub_source(text, assigned), encoding="utf-8")
        else:
            shutil.copy2(path, target)
    for name in PROJECT_FILES:
        source, target = root / name, out / name
        if source.is_dir():
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        elif source.is_file():
            shutil.copy2(source, target)
    if (root / "README.md").is_file():
        (out / "README.md").write_text(student_readme(
            (root / "README.md").read_text(encoding="utf-8")), encoding="utf-8")
    if (root / "Makefile").is_file():
        (out / "Makefile").write_text(student_makefile(
            (root / "Makefile").read_text(encoding="utf-8")), encoding="utf-8")
    shutil.rmtree(out / "notebooks" / "reference_outputs", ignore_errors=True)
    return stubbed


def _main(argv: Sequence[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m t2ilib.course.student",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", type=Path, default=repo_root() / "student")
    parser.add_argument("--assign", default="", help="notebook numbers whose exercises the "
                        "class does, e.g. 02,07 (default: all)")
    args = parser.parse_args(argv)
    assigned = [n.strip().zfill(2) for n in args.assign.split(",") if n.strip()] or None
    try:
        regions = write_student_copy(args.out, assigned=assigned)
    except ValueError as err:
        parser.exit(2, f"{parser.prog}: error: {err}\n")
    print(f"{args.out / 't2ilib'}: {len(regions)} exercise bodies replaced by "
          "NotImplementedError" + (f" (notebooks {', '.join(assigned)})" if assigned else ""))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
