"""nbgrader configuration of the t2i-course (read by every ``nbgrader`` command run here).

The whole course is **one assignment, named ``notebooks``**, whose source is the folder
``notebooks/`` itself: the committed notebooks are the instructor (solution) versions, so
there is no second copy to keep in sync, and the student version keeps the repository's
layout (``student/notebooks/NN_*.ipynb``: links between notebooks, ``t2ilib`` imports and
data paths work unchanged). Every notebook goes to the students, with or without
exercises; nbgrader records a score for each one that has test cells.

Layout (paths relative to the repository root)::

    notebooks/                              source: solutions + hidden tests  (git)
    notebooks/reference_outputs/*.pt        what the hidden tests compare with (git; never copied)
    student/notebooks/                      generated student version         (make student)
    student/t2ilib/                         the library, exercise bodies stubbed (make student)
    classroom/submitted/<student>/notebooks/  what you collect from a student
    classroom/autograded/ ... feedback/     nbgrader's output
    classroom/gradebook.db, grades.csv      the gradebook, nbgrader export's table
    classroom/grades_by_exercise.csv        one row per student and test cell (make grade)

The answer key stays here: ``CourseDirectory.ignore`` keeps ``reference_outputs/`` and every
``*.pt`` out of each folder nbgrader copies (release, submission, autograded, feedback); the
hidden tests read the stored outputs from ``$T2I_REFERENCE_OUTPUTS``, set below (and by
``make grade``) to the teacher's ``notebooks/reference_outputs``. The feedback HTML shows each
test's verdict and message, never the hidden tests' source or a traceback quoting it
(``t2ilib.course.feedback.HideHiddenTests``). Grade with ``make grade``
(``t2ilib.course.grade``: each student's run in its own temporary data folder, smoke mode).
``student/`` and ``classroom/`` are git-ignored. See "For teachers" in README.md.
"""

import os
import sys

from nbconvert.preprocessors import CSSHTMLHeaderPreprocessor
from nbgrader.preprocessors import GetGrades

from t2ilib.course.feedback import HideHiddenTests

c = get_config()  # noqa: F821  (provided by traitlets when nbgrader loads this file)

ROOT = os.path.dirname(os.path.abspath(__file__))
CLASSROOM = os.path.join(ROOT, "classroom")

c.CourseDirectory.root = ROOT
c.CourseDirectory.course_id = "t2i-course"
# source of assignment "notebooks" = <root>/./notebooks (the course itself)
c.CourseDirectory.source_directory = "."
c.CourseDirectory.release_directory = "student"
# everything a grading run produces stays under classroom/
c.CourseDirectory.submitted_directory = os.path.join("classroom", "submitted")
c.CourseDirectory.autograded_directory = os.path.join("classroom", "autograded")
c.CourseDirectory.feedback_directory = os.path.join("classroom", "feedback")
c.CourseDirectory.solution_directory = os.path.join("classroom", "solution")
c.CourseDirectory.source_with_tests_directory = os.path.join("classroom", "source_with_tests")
c.CourseDirectory.db_url = "sqlite:///" + os.path.join(CLASSROOM, "gradebook.db")
# The gradebook runs the `alembic` command found on PATH: make it the one installed beside
# this nbgrader, so that `.venv/bin/nbgrader ...` works without activating the environment.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
os.makedirs(CLASSROOM, exist_ok=True)  # sqlite creates the file, not its folder
c.ExportPlugin.to = os.path.join(CLASSROOM, "grades.csv")  # nbgrader export

# The answer key never leaves this folder: nbgrader copies no stored output anywhere, the
# hidden tests find them through T2I_REFERENCE_OUTPUTS (t2ilib.course.checks), and the
# feedback shows no hidden-test source (nbgrader's own ClearHiddenTests, tracebacks cut).
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback",
                            "reference_outputs", "*.pt"]
os.environ.setdefault("T2I_REFERENCE_OUTPUTS",
                      os.path.join(ROOT, "notebooks", "reference_outputs"))
c.GenerateFeedback.preprocessors = [GetGrades, HideHiddenTests, CSSHTMLHeaderPreprocessor]

# Executing a notebook (validate, autograde): a cell may run for up to 10 minutes. Grade in
# smoke mode (T2I_SMOKE=1, see README) and every cell takes seconds; the default
# configuration trains for minutes in some cells.
c.Execute.timeout = 600
