"""The teacher's workflow end to end, on a copy of the course with notebooks 03 and 07.

``nbgrader generate_assignment`` (what ``make student`` runs), three synthetic students (a
correct answer written differently, a wrong one, a blank one), then ``python -m
t2ilib.course.grade`` (what ``make grade`` runs: autograde in smoke mode, each student with
its own temporary data folder and ``TMPDIR``; feedback; exports). Checked: the scores (totals
and per test cell), that no release or feedback folder holds a stored output (``*.pt``) or
hidden-test source, that a wrong answer's feedback shows its hidden test's message and hint,
that an edited test cell is reported, and that the teacher's data folder and the temporary
directory the command was given hold nothing new afterwards. About a minute on 2 cores.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from t2ilib.course.exercise_check import load_variants
from t2ilib.course.feedback import leaks

from .conftest import REPO

STEMS = ("03_conditioning", "07_train_ssagan")
#: student -> the variant of each notebook's exercise they hand in (None: the blank release)
ANSWERS = {
    "right": {"03": "reshape with view(B, C, 1, 1)", "07": "correct: terms in the other order"},
    "wrong": {"03": "no normalisation", "07": "fake detached before D"},
    "blank": {"03": None, "07": None},
}
POINTS = {"nb03_conditional_bn_tests": 2.0, "nb07_g_step_tests": 2.0}


def _nbgrader() -> str:
    found = Path(sys.executable).with_name("nbgrader")
    return str(found) if found.exists() else "nbgrader"


def _answer(released: dict, source: dict, number: str, name: str | None) -> dict:
    """The released notebook with its solution cell answered by variant ``name``."""
    if name is None:
        return released
    variant = next(v for v in load_variants(number) if v.name == name)
    text = next("".join(c["source"]) for c in source["cells"]
                if c.get("metadata", {}).get("nbgrader", {}).get("grade_id") == variant.exercise)
    text = "\n".join(line for line in text.replace(variant.old, variant.new, 1).split("\n")
                     if "### BEGIN SOLUTION" not in line and "### END SOLUTION" not in line)
    answered = json.loads(json.dumps(released))
    for cell in answered["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == variant.exercise:
            cell["source"] = text
    return answered


@pytest.fixture(scope="module")
def classroom(tmp_path_factory) -> dict:
    """The course copy after generate, three submissions and ``make grade``'s command."""
    base = tmp_path_factory.mktemp("classroom")
    course, systmp, teacher_data = base / "course", base / "systmp", base / "teacher_data"
    for folder in (course / "notebooks" / "reference_outputs", systmp, teacher_data):
        folder.mkdir(parents=True)
    (teacher_data / "keep.txt").write_text("the teacher's data")
    shutil.copy2(REPO / "nbgrader_config.py", course)
    for stem in STEMS:
        shutil.copy2(REPO / "notebooks" / f"{stem}.ipynb", course / "notebooks")
        shutil.copy2(REPO / "notebooks" / "reference_outputs" / f"{stem}.pt",
                     course / "notebooks" / "reference_outputs")
    env = {**os.environ, "TMPDIR": str(systmp), "T2I_DATA": str(teacher_data),
           "OMP_NUM_THREADS": "1"}
    env.pop("T2I_REFERENCE_OUTPUTS", None)
    done = subprocess.run([_nbgrader(), "generate_assignment", "notebooks", "--force"],
                          cwd=course, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    for student, answers in ANSWERS.items():
        folder = course / "classroom" / "submitted" / student / "notebooks"
        folder.mkdir(parents=True)
        for stem in STEMS:
            released = json.loads((course / "student" / "notebooks" / f"{stem}.ipynb")
                                  .read_text(encoding="utf-8"))
            source = json.loads((course / "notebooks" / f"{stem}.ipynb").read_text("utf-8"))
            answered = _answer(released, source, stem[:2], answers[stem[:2]])
            (folder / f"{stem}.ipynb").write_text(json.dumps(answered), encoding="utf-8")
    _edit_a_test_cell(course / "classroom" / "submitted" / "blank" / "notebooks")
    done = subprocess.run([sys.executable, "-m", "t2ilib.course.grade", "--root", str(course)],
                          cwd=course, env=env, capture_output=True, text=True, timeout=900)
    return {"course": course, "systmp": systmp, "teacher_data": teacher_data, "done": done}


def _edit_a_test_cell(folder: Path) -> None:
    """The blank student turns notebook 03's test into ``pass`` (nbgrader restores it)."""
    path = folder / "03_conditioning.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == (
                "nb03_conditional_bn_tests"):
            cell["source"] = "pass"
    path.write_text(json.dumps(nb), encoding="utf-8")


def test_grading_runs_and_prints_each_students_time(classroom):
    done = classroom["done"]
    assert done.returncode == 0, done.stdout + done.stderr
    for student in ANSWERS:
        assert f"{student}: autograded in " in done.stdout, done.stdout
    assert "Attribute 'checksum'" not in done.stdout  # explained: hidden tests removed
    assert "IPKernelApp" not in done.stdout  # the kernels' log is not the teacher's news
    assert ("03_conditioning.ipynb: test cell nb03_conditional_bn_tests was edited; nbgrader "
            "graded the original") in done.stdout
    assert done.stdout.count("was edited") == 1, done.stdout


def test_scores(classroom):
    course = classroom["course"]
    rows = list(csv.DictReader((course / "classroom" / "grades_by_exercise.csv").open()))
    got = {(r["student_id"], r["grade_id"]): float(r["score"]) for r in rows}
    assert got == {**{("right", g): p for g, p in POINTS.items()},
                   **{(s, g): 0.0 for s in ("wrong", "blank") for g in POINTS}}, rows
    assert {r["max_score"] for r in rows} == {"2.0"}
    totals = {r["student_id"]: float(r["score"])
              for r in csv.DictReader((course / "classroom" / "grades.csv").open())}
    assert totals == {"right": 4.0, "wrong": 0.0, "blank": 0.0}


def test_no_answer_key_in_release_submission_or_feedback(classroom):
    course = classroom["course"]
    for folder in ("student", "classroom/submitted", "classroom/feedback"):
        assert (course / folder).is_dir(), folder
        assert leaks(course / folder) == [], folder
    feedback = course / "classroom" / "feedback"
    assert sorted(p.name for p in feedback.rglob("*.html")) == sorted(
        f"{stem}.html" for stem in STEMS for _ in ANSWERS)
    assert not list(feedback.rglob("reference_outputs"))
    assert (course / "classroom" / "autograded").is_dir()  # the teacher's copy keeps them


def test_feedback_shows_the_hidden_tests_verdict_and_hint(classroom):
    html = (classroom["course"] / "classroom" / "feedback" / "wrong" / "notebooks"
            / "07_train_ssagan.html").read_text(encoding="utf-8")
    assert "largest relative error" in html and "is `fake` detached before D?" in html
    assert "Traceback (most recent call last)" not in html and "Cell In[" not in html
    assert "stored_outputs" not in html and "assert_all_close" not in html


def test_nothing_new_in_the_teachers_data_or_the_temporary_directory(classroom):
    assert sorted(p.name for p in classroom["teacher_data"].iterdir()) == ["keep.txt"]
    assert list(classroom["systmp"].iterdir()) == []


def test_make_grade_runs_this_command():
    import re

    recipe = re.search(r"^grade:.*\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert recipe and "-m t2ilib.course.grade --students" in recipe.group(1)
