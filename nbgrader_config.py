"""nbgrader configuration of the t2i-course (read by every ``nbgrader`` command run here).

The whole course is **one assignment, named ``notebooks``**, whose source is the folder
``notebooks/`` itself: the committed notebooks are the instructor (solution) versions, so
there is no second copy to keep in sync, and the student version keeps the repository's
layout (``student/notebooks/NN_*.ipynb``: links between notebooks, ``t2ilib`` imports and
data paths work unchanged). Every notebook goes to the students, with or without
exercises; nbgrader records a score for each one that has test cells.

Layout (paths relative to the repository root)::

    notebooks/                              source: solutions + hidden tests  (git)
    notebooks/reference_outputs/*.pt        what the hidden tests compare with (git)
    student/notebooks/                      generated student version         (make student)
    student/t2ilib/                         the library, exercise bodies stubbed (make student)
    classroom/submitted/<student>/notebooks/  what you collect from a student
    classroom/autograded/ ... feedback/     nbgrader's output
    classroom/gradebook.db, grades.csv      the gradebook, nbgrader export's table

Autograding copies the source folder's other files (``reference_outputs/``) beside each
submission, so the hidden tests find the stored outputs; ``make student`` removes them from
the students' copy. ``student/`` and ``classroom/`` are git-ignored. See "For teachers" in
README.md.
"""

import os
import sys

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

# Executing a notebook (validate, autograde): a cell may run for up to 10 minutes. Grade in
# smoke mode (T2I_SMOKE=1, see README) and every cell takes seconds; the default
# configuration trains for minutes in some cells.
c.Execute.timeout = 600
