"""The broken-variant check of the exercises: does each test cell catch the likely mistakes?

A **variant** is a plausible wrong answer to one exercise, written as a text replacement in
the exercise's solution cell. ``tests/exercise_variants/nbNN.json`` lists them for notebook
``NN``::

    [{"exercise": "nb06_ma_gp", "name": "inputs not detached",
      "replace": ["images.detach()", "images"]},
     ...]

(``exercise`` is the nbgrader ``grade_id`` of the solution cell; ``replace`` is applied once,
and its first string must lie inside a ``### BEGIN SOLUTION`` region.) For every exercise of
a notebook, the unmodified solution must pass its test cell (visible and hidden tests) and
every variant must fail it, except the variants marked ``"expect": "pass"``: correct answers
that differ from the solution in style or efficiency, which must pass.

One kernel per notebook (nbclient, smoke mode, working directory ``notebooks/``): the
notebook runs once, top to bottom up to its last test cell; after each exercise's test cell,
each variant's solution cell runs, then the test cell, then the original solution cell again
to restore the definitions.

Usage::

    python -m t2ilib.course.exercise_check            # every notebook with a variants file
    python -m t2ilib.course.exercise_check 04 06      # some of them

It writes a markdown report (default ``docs/exercise_check.md``; a run on some notebooks
replaces only their sections) and exits with status 1 when a solution fails its tests or a
variant passes them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t2ilib.runtime import repo_root

__all__ = ["Variant", "Result", "load_variants", "check_variants_apply", "check_exercises",
           "render", "update_report"]

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
COMMAND = "python -m t2ilib.course.exercise_check"


@dataclass(frozen=True)
class Variant:
    """An answer: ``old`` replaced by ``new`` (once) in the solution cell ``exercise``; wrong
    unless ``should_pass`` (a correct answer written differently)."""

    exercise: str
    name: str
    old: str
    new: str
    should_pass: bool = False


@dataclass(frozen=True)
class Result:
    """What the test cell made of one answer (``variant`` ``None``: the solution itself)."""

    exercise: str
    variant: str | None
    failed: bool  # the solution cell or the test cell raised
    message: str  # "ename: first line of evalue", or "" when nothing raised
    should_pass: bool = True

    @property
    def ok(self) -> bool:
        """The solution and the ``should_pass`` variants pass; the other variants fail."""
        return self.failed != self.should_pass


def variants_file(number: str) -> Path:
    return repo_root() / "tests" / "exercise_variants" / f"nb{number}.json"


def notebook_path(number: str) -> Path:
    found = sorted((repo_root() / "notebooks").glob(f"{number}_*.ipynb"))
    if len(found) != 1:
        raise FileNotFoundError(f"want one notebook notebooks/{number}_*.ipynb, found {found}")
    return found[0]


def load_variants(number: str) -> list[Variant]:
    """The variants of notebook ``number`` (``'06'``), in file order."""
    entries = json.loads(variants_file(number).read_text(encoding="utf-8"))
    for e in entries:
        if set(e) - {"exercise", "name", "replace", "expect"} or e.get("expect", "fail") not in (
                "pass", "fail") or len(e["replace"]) != 2:
            raise ValueError(f"{variants_file(number).name}: malformed variant {e}")
    return [Variant(e["exercise"], e["name"], *e["replace"], e.get("expect") == "pass")
            for e in entries]


def _source(cell: dict) -> str:
    return cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])


def _solution_text(source: str) -> str:
    """The lines inside the solution regions of a cell."""
    return "\n".join(re.findall(rf"{re.escape(BEGIN)}\n(.*?)\n[ \t]*{re.escape(END)}",
                                source, flags=re.S))


def _exercises(nb) -> list[tuple[str, int, int]]:
    """``(grade_id, solution cell index, test cell index)``: a test is the next code cell."""
    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    found = []
    for pos, i in enumerate(code):
        meta = nb.cells[i].metadata.get("nbgrader", {})
        if meta.get("solution") and pos + 1 < len(code):
            found.append((meta["grade_id"], i, code[pos + 1]))
    return found


def _first_line(error: Exception) -> str:
    ename = getattr(error, "ename", type(error).__name__)
    evalue = str(getattr(error, "evalue", error)).strip().split("\n")[0]
    return f"{ename}: {evalue}"[:600]  # room for a hidden test's hint


def check_variants_apply(number: str, variants: Sequence[Variant]) -> None:
    """Raise ``ValueError`` unless each variant names an exercise of notebook ``number`` and
    its text to replace lies in that exercise's solution region (no kernel needed)."""
    import nbformat

    path = notebook_path(number)
    nb = nbformat.read(path, as_version=4)
    solutions = {g: _solution_text(_source(nb.cells[i])) for g, i, _ in _exercises(nb)}
    for v in variants:
        if v.exercise not in solutions:
            raise ValueError(f"{path.name}: {v.name!r} is a variant of an unknown exercise "
                             f"{v.exercise!r} (not one of {sorted(solutions)})")
        if v.old not in solutions[v.exercise]:
            raise ValueError(f"{v.exercise} / {v.name}: {v.old!r} is not in the solution")
        if v.old == v.new:
            raise ValueError(f"{v.exercise} / {v.name}: the replacement changes nothing")


def check_exercises(number: str, variants: Sequence[Variant], timeout: int = 300) -> list[Result]:
    """Run notebook ``number``'s exercises against their solutions and ``variants``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    path = notebook_path(number)
    nb = nbformat.read(path, as_version=4)
    exercises = _exercises(nb)
    check_variants_apply(number, variants)

    os.environ["T2I_SMOKE"], os.environ["T2I_PROGRESS"] = "1", "0"  # the kernel inherits them
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})

    def run(index: int, source: str | None = None) -> str:
        """Execute cell ``index`` (with another ``source``): "" or the error's first line."""
        cell = nbformat.v4.new_code_cell(source) if source is not None else nb.cells[index]
        try:
            client.execute_cell(cell, index)
        except CellExecutionError as error:
            return _first_line(error)
        return ""

    results: list[Result] = []
    with client.setup_kernel():
        done = 0
        for grade_id, solution, test in exercises:
            for index in range(done, test):
                if nb.cells[index].cell_type == "code":
                    message = run(index)
                    if message and index != solution:
                        raise RuntimeError(f"{path.name} cell {index} failed: {message}")
            message = run(test)
            results.append(Result(grade_id, None, bool(message), message))
            done = test + 1
            original = _source(nb.cells[solution])
            for v in (v for v in variants if v.exercise == grade_id):
                message = run(solution, original.replace(v.old, v.new, 1))
                message = f"(solution cell) {message}" if message else run(test)
                results.append(Result(grade_id, v.name, bool(message), message, v.should_pass))
                restored = run(solution)
                if restored:
                    raise RuntimeError(f"{path.name}: the solution of {grade_id} failed "
                                       f"after {v.name!r}: {restored}")
    return results


def render(number: str, results: Sequence[Result]) -> str:
    """The report's section of one notebook (markdown)."""
    name = notebook_path(number).name
    lines = [f"## {name}", "", f"`{COMMAND} {number}` (smoke mode, one kernel).", "",
             "| exercise | answer | caught? | first line of the failure |",
             "| --- | --- | --- | --- |"]
    for r in results:
        answer = "the solution" if r.variant is None else r.variant
        if r.should_pass:
            answer += "" if r.variant is None else " (correct, written differently)"
            verdict = "passes" if r.ok else "**FAILS**"
        else:
            verdict = "caught" if r.ok else "**not caught**"
        text = r.message.replace("|", "\\|").replace("\n", " ") or "-"
        lines.append(f"| `{r.exercise}` | {answer} | {verdict} | {text} |")
    wrong = [r for r in results if not r.should_pass]
    right = [r for r in results if r.should_pass]
    lines += ["", f"{sum(r.ok for r in wrong)} of {len(wrong)} wrong answers caught; "
              f"{sum(r.ok for r in right)} of {len(right)} correct answers (the solution "
              "included) pass.", ""]
    return "\n".join(lines)


_HEADER = f"""# Broken-variant check of the exercises

Each exercise's solution must pass its test cell (visible and hidden tests) and each
plausible wrong answer, a *variant* from `tests/exercise_variants/nbNN.json`, must fail it.
Produced by `{COMMAND}` (see `t2ilib/course/exercise_check.py`);
`{COMMAND} NN` re-runs one notebook and replaces its section.

"""


def update_report(report: Path, sections: dict[str, str], command: str = COMMAND) -> str:
    """Replace (or add) the sections of ``report`` named by notebook file; keep the others.
    ``command`` (the run's command line) goes to the top."""
    old = report.read_text(encoding="utf-8") if report.is_file() else ""
    kept = {m.group(1): m.group(0).rstrip() + "\n"
            for m in re.finditer(r"^## (\S+\.ipynb)\n.*?(?=^## |\Z)", old, flags=re.M | re.S)}
    kept.update(sections)
    return (_HEADER + f"Last run: `{command}`.\n\n" + "\n".join(kept[k] for k in sorted(kept)))


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.split("\n")[0])
    parser.add_argument("numbers", nargs="*", help="notebook numbers (06); default: every "
                        "notebook with a tests/exercise_variants/nbNN.json")
    parser.add_argument("--report", default=str(repo_root() / "docs" / "exercise_check.md"))
    args = parser.parse_args(argv)
    numbers = [f"{int(n):02d}" for n in args.numbers] or sorted(
        p.stem[2:] for p in variants_file("00").parent.glob("nb[0-9][0-9].json"))
    sections, status = {}, 0
    for number in numbers:
        results = check_exercises(number, load_variants(number))
        sections[notebook_path(number).name] = render(number, results)
        for r in results:
            status |= not r.ok
            print(f"{number} {r.exercise:32} {r.variant or '(solution)':45} "
                  f"{'ok ' if r.ok else 'BAD'} {r.message[:80]}")
    report = Path(args.report)
    report.parent.mkdir(parents=True, exist_ok=True)
    command = " ".join([COMMAND, *args.numbers])
    report.write_text(update_report(report, sections, command), encoding="utf-8")
    print(f"report: {report}")
    return status


if __name__ == "__main__":
    sys.exit(_main())
