"""The mirror check: code written in a notebook must equal its copy in ``t2ilib``.

A notebook teaches a piece of code by writing it out; later notebooks, the tests and the
command line import the same piece from the library. This module proves the two copies
have not drifted apart.

A code cell whose first line is ::

    # mirrored in t2ilib/ssagan/ssacn.py

may contain only imports, ``def``/``class`` definitions and ``UPPER_CASE`` constants. Every
definition in it must exist at the top level of that module with the **same abstract syntax
tree**. Formatting and comments never matter; docstrings are ignored too (a notebook explains
in markdown, so its copy may carry a shorter docstring than the library's). Everything else
(names, arguments, defaults, decorators, bodies) must be identical.

Usage::

    python -m t2ilib.course.mirror                 # every notebook in notebooks/
    python -m t2ilib.course.mirror notebooks/04_ssacn.ipynb
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MARKER", "Mismatch", "marked_cells", "check_notebook", "check_notebooks"]

#: First line of a mirrored cell; group 1 is the module's path relative to the repo root.
MARKER = re.compile(r"^#\s*mirrored in\s+(t2ilib/[\w/]+\.py)\s*$")

_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


@dataclass(frozen=True)
class Mismatch:
    """One way a marked cell fails to mirror its module."""

    notebook: Path
    cell_index: int  # index among all cells of the notebook, as papermill counts
    module: str  # e.g. "t2ilib/ssagan/ssacn.py"
    symbol: str | None  # None when the problem is the cell or the module as a whole
    message: str
    diff: str = ""

    def __str__(self) -> str:
        what = f"'{self.symbol}' " if self.symbol else ""
        text = f"{self.notebook} cell {self.cell_index}: {what}vs {self.module}: {self.message}"
        return f"{text}\n{self.diff}" if self.diff else text


def marked_cells(notebook: str | Path) -> Iterator[tuple[int, str, str]]:
    """Yield ``(cell_index, module_path, source)`` for every marked code cell of a notebook."""
    cells = json.loads(Path(notebook).read_text(encoding="utf-8"))["cells"]
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        source = cell["source"] if isinstance(cell["source"], str) else "".join(cell["source"])
        first = source.lstrip("\n").split("\n", 1)[0].strip()
        match = MARKER.match(first)
        if match:
            yield index, match.group(1), source


def _strip_docstrings(node: ast.AST) -> ast.AST:
    """A copy of ``node`` with the docstring of every module/class/function removed."""
    node = copy.deepcopy(node)
    for sub in ast.walk(node):
        if isinstance(sub, (*_DEFINITIONS, ast.Module)):
            body = sub.body
            if (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                    and isinstance(body[0].value.value, str)):
                sub.body = body[1:] or [ast.Pass()]
    return node


def _is_constant(stmt: ast.stmt) -> bool:
    targets = stmt.targets if isinstance(stmt, ast.Assign) else [getattr(stmt, "target", None)]
    return all(isinstance(t, ast.Name) and t.id.isupper() for t in targets)


def _definitions(tree: ast.Module) -> dict[str, ast.stmt]:
    """Top-level functions, classes and UPPER_CASE constants of a module, by name."""
    found: dict[str, ast.stmt] = {}
    for stmt in tree.body:
        if isinstance(stmt, _DEFINITIONS):
            found[stmt.name] = stmt
        elif isinstance(stmt, (ast.Assign, ast.AnnAssign)) and _is_constant(stmt):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for target in targets:
                found[target.id] = stmt
    return found


def _canonical(node: ast.stmt) -> str:
    return ast.dump(_strip_docstrings(node), include_attributes=False)


def _diff(mine: ast.stmt, theirs: ast.stmt, mine_name: str, theirs_name: str) -> str:
    a = ast.unparse(_strip_docstrings(mine)).splitlines()
    b = ast.unparse(_strip_docstrings(theirs)).splitlines()
    return "\n".join(difflib.unified_diff(a, b, mine_name, theirs_name, lineterm=""))


def check_notebook(notebook: str | Path, repo: str | Path) -> list[Mismatch]:
    """Check every marked cell of ``notebook`` against the modules under ``repo``."""
    notebook, repo = Path(notebook), Path(repo)
    problems: list[Mismatch] = []
    parsed: dict[str, dict[str, ast.stmt] | None] = {}
    for index, module, source in marked_cells(notebook):
        def fail(message: str, symbol: str | None = None, diff: str = "",
                 index: int = index, module: str = module) -> None:
            problems.append(Mismatch(notebook, index, module, symbol, message, diff))

        if module not in parsed:
            path = repo / module
            parsed[module] = (_definitions(ast.parse(path.read_text(encoding="utf-8"), str(path)))
                              if path.is_file() else None)
        library = parsed[module]
        if library is None:
            fail("the marker names a module that does not exist")
            continue
        try:
            cell_tree = ast.parse(source)
        except SyntaxError as err:
            fail(f"the cell is not plain Python (line {err.lineno}: {err.msg})")
            continue
        mirrored = 0
        for stmt in cell_tree.body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                continue
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and _is_constant(stmt):
                names = [t.id for t in (stmt.targets if isinstance(stmt, ast.Assign)
                                        else [stmt.target])]
            elif isinstance(stmt, _DEFINITIONS):
                names = [stmt.name]
            else:
                fail(f"line {stmt.lineno} is neither an import, a definition nor an UPPER_CASE "
                     "constant: move demo code to an unmarked cell")
                continue
            for name in names:
                mirrored += 1
                theirs = library.get(name)
                if theirs is None:
                    fail("defined in the notebook but missing from the module", name)
                elif _canonical(stmt) != _canonical(theirs):
                    fail("the two definitions differ", name,
                         _diff(stmt, theirs, f"{notebook.name} (cell {index})", module))
        if mirrored == 0:
            fail("the cell is marked but defines nothing")
    return problems


def check_notebooks(notebooks: Sequence[str | Path], repo: str | Path) -> list[Mismatch]:
    """:func:`check_notebook` over several notebooks."""
    return [m for nb in notebooks for m in check_notebook(nb, repo)]


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2ilib.course.mirror",
                                     description="Check notebook cells against t2ilib.")
    parser.add_argument("notebooks", nargs="*", help="default: notebooks/*.ipynb")
    parser.add_argument("--repo", default=".", help="repository root (default: .)")
    args = parser.parse_args(argv)
    notebooks = args.notebooks or sorted(Path(args.repo, "notebooks").glob("*.ipynb"))
    problems = check_notebooks(notebooks, args.repo)
    for problem in problems:
        print(problem, end="\n\n")
    cells = sum(1 for nb in notebooks for _ in marked_cells(nb))
    print(f"{len(notebooks)} notebooks, {cells} mirrored cells, {len(problems)} mismatches")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(_main())
