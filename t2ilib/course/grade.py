"""Grade the collected submissions, each student's run isolated: ``make grade``.

Usage (from the course root; ``make grade`` runs the first form)::

    python -m t2ilib.course.grade                   # every classroom/submitted/<student>/
    python -m t2ilib.course.grade --students ana,ben
    python -m t2ilib.course.grade --full            # the notebooks' default settings (slow)

For each student, ``nbgrader autograde notebooks --student <id> --force`` runs with its own
temporary folder, removed afterwards: ``T2I_DATA`` (the course's data folder: ToyBirds is
drawn there, every model the notebooks train is written there) and ``TMPDIR`` point into
it, so a run never reads or writes the teacher's ``data/`` and leaves nothing in the
system's temporary directory. Smoke mode (``T2I_SMOKE=1``, every notebook in seconds) is
the default: the tests do not depend on the training settings. ``T2I_REFERENCE_OUTPUTS``
names the teacher's stored outputs (``notebooks/reference_outputs``), which the hidden
tests read (:mod:`t2ilib.course.checks`) and nbgrader never copies.

nbgrader warns ``Attribute 'checksum' for cell ... has changed!`` for every test cell with
hidden tests (the gradebook's checksum is the source's, hidden tests included; the released
cell has none). Those warnings are dropped here; a test cell that differs from the released
one is reported as edited (nbgrader restored it from the gradebook).

Then ``nbgrader generate_feedback`` (HTML without hidden-test source or tracebacks,
:mod:`t2ilib.course.feedback`), a check that no feedback file holds a stored output or
hidden-test source, ``nbgrader export`` (``classroom/grades.csv``, one total per student)
and :class:`ExerciseCsvExport` (``classroom/grades_by_exercise.csv``, one row per student
and test cell).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nbgrader.api import Gradebook, MissingEntry
from nbgrader.plugins import ExportPlugin

from t2ilib.course.checks import REFERENCE_ENV
from t2ilib.course.feedback import HIDDEN_MARKER, leaks
from t2ilib.runtime import repo_root

__all__ = ["ASSIGNMENT", "StudentRun", "grading_env", "edited_test_cells", "autograde",
           "ExerciseCsvExport", "export_by_exercise", "grade"]

ASSIGNMENT = "notebooks"
_CHECKSUM = re.compile(r"Attribute 'checksum' for cell (\w+) has changed!")


@dataclass(frozen=True)
class StudentRun:
    """One student's autograding: wall time, exit status, the warnings left to show."""

    student: str
    seconds: float
    returncode: int
    notes: tuple[str, ...]
    log: str


def grading_env(work: Path, root: Path, smoke: bool = True) -> dict[str, str]:
    """The environment of one isolated run: data and temporary files under ``work``."""
    env = {k: v for k, v in os.environ.items() if k != "T2I_SMOKE"}
    for sub in ("data", "tmp"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    env.update({"T2I_DATA": str(work / "data"), "TMPDIR": str(work / "tmp"),
                "TEMP": str(work / "tmp"), "TMP": str(work / "tmp"), "T2I_PROGRESS": "0",
                REFERENCE_ENV: str(root / "notebooks" / "reference_outputs")})
    if smoke:
        env["T2I_SMOKE"] = "1"
    return env


def _cell_source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _without_hidden(text: str) -> str:
    """What nbgrader releases of a test cell: the hidden regions (marker lines included) out."""
    kept, inside = [], False
    for line in text.split("\n"):
        if HIDDEN_MARKER in line:
            inside = True
        elif "END HIDDEN TESTS" in line:
            inside = False
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def edited_test_cells(submitted: Path, source: Path) -> list[str]:
    """The grade ids of the test cells of notebook ``submitted`` that differ from their
    released version (the ``source`` notebook's cell without its hidden tests)."""
    def tests(path: Path) -> dict[str, str]:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        return {c["metadata"]["nbgrader"]["grade_id"]: _cell_source(c) for c in cells
                if c.get("metadata", {}).get("nbgrader", {}).get("grade")
                and c["metadata"]["nbgrader"].get("locked")}

    released = {k: _without_hidden(v) for k, v in tests(source).items()}
    got = tests(submitted)
    return sorted(k for k, v in released.items() if got.get(k, v).strip() != v.strip())


def _nbgrader(*args: str) -> list[str]:
    found = Path(sys.executable).with_name("nbgrader")
    return [str(found) if found.exists() else "nbgrader", *args]


def autograde(root: Path, student: str, smoke: bool = True, timeout: float = 3600) -> StudentRun:
    """``nbgrader autograde`` of one student in a temporary folder removed afterwards."""
    work = Path(tempfile.mkdtemp(prefix=f"t2i_grade_{student}_"))
    start = time.perf_counter()
    try:
        done = subprocess.run(_nbgrader("autograde", ASSIGNMENT, "--student", student,
                                        "--force"), cwd=root, env=grading_env(work, root, smoke),
                              capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = time.perf_counter() - start
    log = done.stdout + done.stderr
    submitted = root / "classroom" / "submitted" / student / ASSIGNMENT
    edited = {(nb.name, cell) for nb in sorted(submitted.glob("*.ipynb"))
              if (root / ASSIGNMENT / nb.name).is_file()
              for cell in edited_test_cells(nb, root / ASSIGNMENT / nb.name)}
    notes = [f"{nb}: test cell {cell} was edited; nbgrader graded the original"
             for nb, cell in sorted(edited)]
    notes += [line.strip() for line in log.splitlines()  # nbgrader's, not the kernels'
              if re.match(r"\[AutogradeApp \| (WARNING|ERROR)\]", line)
              and not _CHECKSUM.search(line)]
    return StudentRun(student, seconds, done.returncode, tuple(notes), log)


class ExerciseCsvExport(ExportPlugin):
    """nbgrader export plugin: one row per student and test cell (``grade_id``), e.g.
    ``nbgrader export --exporter t2ilib.course.grade.ExerciseCsvExport --to by_exercise.csv``.
    """

    def export(self, gradebook: Gradebook) -> None:
        export_by_exercise(gradebook, Path(self.to or "grades_by_exercise.csv"))


def export_by_exercise(gradebook: Gradebook, dest: Path) -> int:
    """Write ``dest`` (student_id, notebook, grade_id, score, max_score); returns its rows.
    A student without a submission gets a row of zeros per test cell."""
    rows = []
    for assignment in gradebook.assignments:
        cells = [(nb.name, cell.name, cell.max_score) for nb in assignment.notebooks
                 for cell in nb.grade_cells]
        for student in gradebook.students:
            try:
                gradebook.find_submission(assignment.name, student.id)
            except MissingEntry:
                rows += [(assignment.name, student.id, nb, cell, 0.0, top)
                         for nb, cell, top in cells]
                continue
            for nb, cell, top in cells:
                got = gradebook.find_grade(cell, nb, assignment.name, student.id)
                rows.append((assignment.name, student.id, nb, cell, got.score, top))
    dest.parent.mkdir(parents=True, exist_ok=True)
    with dest.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["assignment", "student_id", "notebook", "grade_id", "score",
                         "max_score"])
        writer.writerows(sorted(rows))
    return len(rows)


def _run_nbgrader(root: Path, work: Path, *args: str) -> None:
    """An nbgrader command with its temporary files under ``work``; raise on failure."""
    done = subprocess.run(_nbgrader(*args), cwd=root, env=grading_env(work, root),
                          capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed:\n{done.stdout}{done.stderr}")


def grade(root: Path, students: Sequence[str] | None = None, smoke: bool = True) -> int:
    """Autograde, feedback, leak check, exports; prints a line per student. Exit status."""
    submitted = root / "classroom" / "submitted"
    found = sorted(p.parent.name for p in submitted.glob(f"*/{ASSIGNMENT}") if p.is_dir()
                   ) if submitted.is_dir() else []
    students = list(students or found)
    missing = sorted(set(students) - set(found))
    if not students or missing:
        who = f"for {', '.join(missing)} " if missing else ""
        print(f"no submission {who}in {submitted}: collect each student's notebooks into "
              f"{submitted}/<student>/{ASSIGNMENT}/")
        return 2
    status = 0
    for student in students:
        run = autograde(root, student, smoke)
        print(f"{student}: autograded in {run.seconds:.1f} s"
              + ("" if run.returncode == 0 else f" (nbgrader exit {run.returncode})"))
        for note in run.notes:
            print(f"  {note}")
        if run.returncode:
            print(run.log[-4000:])
            status = 1
    work = Path(tempfile.mkdtemp(prefix="t2i_grade_feedback_"))
    try:
        start = time.perf_counter()
        _run_nbgrader(root, work, "generate_feedback", ASSIGNMENT, "--force")
        print(f"feedback: classroom/feedback/ ({time.perf_counter() - start:.1f} s)")
        problems = leaks(root / "classroom" / "feedback")
        if problems:
            print("the feedback leaks the answer key; do not return it:\n  "
                  + "\n  ".join(problems))
            return 1
        _run_nbgrader(root, work, "export")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    with Gradebook(f"sqlite:///{root / 'classroom' / 'gradebook.db'}") as gradebook:
        rows = export_by_exercise(gradebook, root / "classroom" / "grades_by_exercise.csv")
    print(f"grades: classroom/grades.csv (totals), classroom/grades_by_exercise.csv ({rows} rows)")
    return status


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2ilib.course.grade",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--students", default="", help="comma-separated student ids "
                        "(default: every folder of classroom/submitted)")
    parser.add_argument("--full", action="store_true", help="the notebooks' default "
                        "settings instead of smoke mode (cells may train for minutes)")
    parser.add_argument("--root", type=Path, default=repo_root(),
                        help="the course folder (nbgrader_config.py, notebooks/, classroom/)")
    args = parser.parse_args(argv)
    students = [s.strip() for s in args.students.split(",") if s.strip()]
    return grade(args.root.resolve(), students, smoke=not args.full)


if __name__ == "__main__":
    sys.exit(_main())
