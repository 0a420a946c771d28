"""Feedback that keeps the answer key with the teacher.

nbgrader's ``generate_feedback`` renders the autograded notebook, hidden tests included
(by design, jupyter/nbgrader#917; nbgrader 0.9 has no option to hide them). The course's
``nbgrader_config.py`` adds :class:`HideHiddenTests` to its preprocessors: nbgrader's own
``ClearHiddenTests`` (the one ``generate_assignment`` uses) takes the hidden regions out of
each test cell's source, and an error raised in a test cell is shown as its last line only
(``AssertionError: <message>``), without the traceback that would quote the failing hidden
line. A student sees each test's verdict, points and message, never its source.

``CourseDirectory.ignore`` keeps the stored outputs (``reference_outputs``, ``*.pt``) out of
every folder nbgrader copies; :func:`leaks` checks a folder for both kinds of leak, and
``make grade`` (:mod:`t2ilib.course.grade`) refuses to finish while it finds one.
"""

from __future__ import annotations

from pathlib import Path

from nbconvert.exporters.exporter import ResourcesDict
from nbformat.notebooknode import NotebookNode
from nbgrader import utils
from nbgrader.preprocessors import ClearHiddenTests

__all__ = ["HIDDEN_MARKER", "HideHiddenTests", "short_error", "leaks"]

#: What nbgrader's hidden-test regions start with; never in anything a student receives.
HIDDEN_MARKER = "BEGIN HIDDEN TESTS"


def short_error(output: NotebookNode) -> NotebookNode:
    """An error output reduced to one line, ``ename: evalue`` (no traceback)."""
    output.traceback = [f"{output.get('ename', 'Error')}: {output.get('evalue', '')}"]
    return output


class HideHiddenTests(ClearHiddenTests):
    """For feedback: hidden regions out of the test cells' source, tracebacks to one line."""

    def preprocess_cell(self, cell: NotebookNode, resources: ResourcesDict,
                        cell_index: int) -> tuple[NotebookNode, ResourcesDict]:
        cell, resources = super().preprocess_cell(cell, resources, cell_index)
        if cell.cell_type == "code" and utils.is_grade(cell):
            cell.outputs = [short_error(o) if o.get("output_type") == "error" else o
                            for o in cell.get("outputs", [])]
        return cell, resources


def leaks(folder: str | Path) -> list[str]:
    """Files under ``folder`` that hold a stored output (``*.pt``) or hidden-test source."""
    found = []
    for path in sorted(Path(folder).rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == ".pt":
            found.append(f"{path}: a stored output")
        elif path.suffix in (".html", ".ipynb", ".py", ".txt", ".md") and HIDDEN_MARKER in (
                path.read_text(encoding="utf-8", errors="replace")):
            found.append(f"{path}: hidden-test source ({HIDDEN_MARKER})")
    return found
