"""The package's architecture rules, checked on its source: import layers, file sizes, names.

**Import layers.** Every ``import`` / ``from ... import`` statement of every module of
``t2ilib`` (module level or inside functions, absolute or relative) is an edge of the import
graph. A module may import its own package and any package of its layer or below, never one
above (low to high):

====  ========================================================================
0     ``t2ilib.runtime``, ``t2ilib.io``, ``t2ilib.viz``
1     ``t2ilib.text``
2     ``t2ilib.data``
3     ``t2ilib.engine``
4     ``t2ilib.damsm``
5     ``t2ilib.metrics``
6     ``t2ilib.ssagan``, ``t2ilib.sisgan`` (never each other)
7     ``t2ilib.binding`` (word-level variants built on both papers, notebook 11)
8     ``t2ilib.apps``, ``t2ilib.course``, ``t2ilib.__main__``, ``t2ilib`` itself
====  ========================================================================

**Sizes.** No module is over :data:`MAX_LINES` lines, no function body (its docstring left out)
over :data:`MAX_FUNCTION_LINES`.

**Names.** No top-level function or class name is defined in two modules (but the few of
:data:`SHARED_NAMES`), and no module-level constant (an UPPER_CASE name) either (but those of
:data:`SHARED_CONSTANTS`).

**Circles.** No module imports itself through others, inside a package too.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "t2ilib"
MAX_LINES = 450
MAX_FUNCTION_LINES = 60

#: Layer of each top-level part of t2ilib ("t2ilib" alone: the package's own __init__).
LAYERS = {
    "t2ilib.runtime": 0, "t2ilib.io": 0, "t2ilib.viz": 0,
    "t2ilib.text": 1,
    "t2ilib.data": 2,
    "t2ilib.engine": 3,
    "t2ilib.damsm": 4,
    "t2ilib.metrics": 5,
    "t2ilib.ssagan": 6, "t2ilib.sisgan": 6,
    "t2ilib.binding": 7,
    "t2ilib.apps": 8, "t2ilib.course": 8, "t2ilib.__main__": 8, "t2ilib": 8,
}
#: Parts of one layer that must not import each other (the two GANs stay independent).
SEPARATED = [frozenset({"t2ilib.ssagan", "t2ilib.sisgan"})]

#: Top-level names more than one module may define, and where (None: anywhere).
SHARED_NAMES: dict[str, frozenset[str] | None] = {
    # Each GAN package follows its own paper, with the paper's names: both SSA-GAN and
    # SISGAN have a Generator and a Discriminator, a Recipe (model + training settings)
    # and a step module with the same interface (d_step, g_step, train_step) for the engine.
    **dict.fromkeys(["Generator", "Discriminator", "Recipe", "d_step", "g_step", "train_step"],
                    frozenset({"t2ilib.ssagan", "t2ilib.sisgan"})),
    # each `train <model>` command module (t2ilib/apps/train_ssagan.py, train_sisgan.py) has
    # the same interface for the CLI: its subparser and the recipe its options describe
    **dict.fromkeys(["add_parser", "recipe_from"], frozenset({"t2ilib.apps"})),
    # the entry point of a module run with `python -m`
    "main": None, "_main": None,
    # every exercise notebook's reference-output builder (t2ilib.course.reference_outputs.nbNN)
    "build": frozenset({"t2ilib.course"}),
}


#: Constants several modules define on purpose, and where: each names one module's own value.
SHARED_CONSTANTS: dict[str, frozenset[str]] = {
    # the kind written into a checkpoint by the module that owns that file format
    "KIND": frozenset({"t2ilib.damsm", "t2ilib.metrics"}),
    # the engine's contract: every task's step returns its losses in its own LOSS_NAMES order
    "LOSS_NAMES": frozenset({"t2ilib.damsm", "t2ilib.metrics", "t2ilib.ssagan", "t2ilib.sisgan"}),
    # each paper's recipes, by the same names (like Recipe itself)
    **dict.fromkeys(["RECIPES", "SMOKE", "TOYBIRDS"],
                    frozenset({"t2ilib.ssagan", "t2ilib.sisgan"})),
}


# ---------------------------------------------------------------------------- the checker
def module_name(path: Path, package: Path = PACKAGE) -> str:
    """``t2ilib/ssagan/step.py -> t2ilib.ssagan.step``; a package's ``__init__`` is the package."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_modules(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package: ``{dotted name: path}``."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _in_package(name: str, root: str = "t2ilib") -> bool:
    return name == root or name.startswith(root + ".")


def imported_modules(module: str, source: str, is_package: bool,
                     known: set[str]) -> set[str]:
    """The t2ilib modules ``module`` imports anywhere in ``source`` (function bodies too).

    ``from X import n`` is an edge to ``X.n`` when that is a module, else to ``X``; relative
    imports are resolved against ``module`` (a package when ``is_package``).
    """
    found: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".")
                if not is_package:
                    base = base[:-1]
                base = base[:len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in known else target)
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"):
            found.add(node.args[0].value)  # importlib.import_module("t2ilib....")
    return {name for name in found if _in_package(name)}


def import_edges(package: Path = PACKAGE) -> list[tuple[str, str]]:
    """Every ``(importer, imported)`` pair inside t2ilib, sorted."""
    modules = package_modules(package)
    known = set(modules)
    edges = set()
    for name, path in modules.items():
        for target in imported_modules(name, path.read_text(encoding="utf-8"),
                                       path.name == "__init__.py", known):
            if target != name:
                edges.add((name, target))
    return sorted(edges)


def part_of(module: str) -> str:
    """The entry of :data:`LAYERS` a module belongs to: ``t2ilib.ssagan.step -> t2ilib.ssagan``."""
    parts = module.split(".")
    return ".".join(parts[:2])


def layer_of(module: str) -> int | None:
    return LAYERS.get(part_of(module))


def layer_violations(edges: list[tuple[str, str]]) -> list[str]:
    """``"importer -> imported (layer a -> b)"`` for each edge the layer rule forbids."""
    bad = []
    for src, dst in edges:
        a, b = part_of(src), part_of(dst)
        if a == b:
            continue  # inside one package: free
        la, lb = layer_of(src), layer_of(dst)
        if la is None or lb is None:
            bad.append(f"{src} -> {dst} (no layer for {a if la is None else b})")
        elif lb > la:
            bad.append(f"{src} -> {dst} (layer {la} imports layer {lb})")
        elif frozenset({a, b}) in SEPARATED:
            bad.append(f"{src} -> {dst} ({a} and {b} must not import each other)")
    return bad


def top_level_names(source: str) -> set[str]:
    """Functions and classes a module defines at top level (also under top-level if/try)."""
    names: set[str] = set()
    stack = list(ast.parse(source).body)
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            stack.extend(node.body)
            stack.extend(getattr(node, "orelse", []))
            stack.extend(getattr(node, "finalbody", []))
            for handler in getattr(node, "handlers", []):
                stack.extend(handler.body)
    return names


# ---------------------------------------------------------------------------- the rules
def test_every_module_has_a_layer():
    modules = package_modules()
    assert "t2ilib.ssagan.step" in modules and "t2ilib" in modules
    unplaced = sorted(m for m in modules if layer_of(m) is None)
    assert not unplaced, f"modules outside every layer (add them to LAYERS): {unplaced}"


def test_no_module_imports_a_higher_layer():
    edges = import_edges()
    assert ("t2ilib.ssagan.train", "t2ilib.ssagan.step") in edges  # the graph is real
    bad = layer_violations(edges)
    assert not bad, "imports against the layer order:\n" + "\n".join(bad)


def test_the_layer_checker_catches_violations():
    edges = [
        ("t2ilib.ssagan.train", "t2ilib.ssagan.step"),  # same package: fine
        ("t2ilib.apps.cli", "t2ilib.ssagan.train"),  # down: fine
        ("t2ilib.metrics.fid", "t2ilib.damsm.image_encoder"),  # down: fine
        ("t2ilib.io", "t2ilib.viz"),  # same layer: fine
        ("t2ilib", "t2ilib.apps.cli"),  # the package may import anything
        ("t2ilib.text.vocab", "t2ilib.data.cub"),  # up: 1 -> 2
        ("t2ilib.engine.loop", "t2ilib.ssagan.step"),  # up: 3 -> 6
        ("t2ilib.runtime", "t2ilib"),  # up: the package itself is the top
        ("t2ilib.sisgan.train", "t2ilib.ssagan.losses"),  # the two GANs
        ("t2ilib.ssagan.step", "t2ilib.sisgan"),
        ("t2ilib.nowhere.x", "t2ilib.io"),  # a part without a layer
    ]
    bad = layer_violations(edges)
    assert [b.split(" (")[0] for b in bad] == [
        "t2ilib.text.vocab -> t2ilib.data.cub", "t2ilib.engine.loop -> t2ilib.ssagan.step",
        "t2ilib.runtime -> t2ilib", "t2ilib.sisgan.train -> t2ilib.ssagan.losses",
        "t2ilib.ssagan.step -> t2ilib.sisgan", "t2ilib.nowhere.x -> t2ilib.io"]


def test_the_import_parser_finds_every_kind_of_import():
    known = {"t2ilib", "t2ilib.io", "t2ilib.engine", "t2ilib.engine.ddp", "t2ilib.data.cub",
             "t2ilib.ssagan", "t2ilib.ssagan.step", "t2ilib.ssagan.losses"}
    source = "\n".join([
        "import os",
        "import t2ilib.io",
        "from t2ilib.engine import ddp, Engine",  # a module and a name of the package
        "from . import losses",  # relative, from t2ilib/ssagan/step.py
        "from ..data.cub import fit_caption",
        "def f():",
        "    from t2ilib import apps",  # inside a function; not a known module: the package
        "    import importlib",
        "    return importlib.import_module('t2ilib.metrics.fid')",
    ])
    found = imported_modules("t2ilib.ssagan.step", source, False, known)
    assert found == {"t2ilib.io", "t2ilib.engine.ddp", "t2ilib.engine", "t2ilib.ssagan.losses",
                     "t2ilib.data.cub", "t2ilib", "t2ilib.metrics.fid"}
    # in a package's __init__, "." is the package itself
    assert imported_modules("t2ilib.ssagan", "from .step import train_step", True,
                            known) == {"t2ilib.ssagan.step"}


def test_no_module_is_over_the_line_limit():
    long = {name: n for name, path in package_modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines (split them): {long}"


def test_no_top_level_name_is_defined_twice():
    where: dict[str, list[str]] = defaultdict(list)
    for name, path in package_modules().items():
        for defined in top_level_names(path.read_text(encoding="utf-8")):
            if not (defined.startswith("__") and defined.endswith("__")):
                where[defined].append(name)
    twice = {}
    for defined, modules in sorted(where.items()):
        if len(modules) < 2:
            continue
        allowed = SHARED_NAMES.get(defined, frozenset())
        if defined in SHARED_NAMES and (allowed is None
                                        or all(part_of(m) in allowed for m in modules)):
            continue
        twice[defined] = modules
    assert not twice, f"names defined in several modules (keep one, import it): {twice}"


@pytest.mark.parametrize("source,names", [
    ("def f(): pass\nclass C:\n    def g(self): pass\n", {"f", "C"}),
    ("try:\n    def h(): pass\nexcept ImportError:\n    def h(): pass\nx = 1\n", {"h"}),
], ids=["methods", "try-branches"])
def test_top_level_names_ignores_methods_and_variables(source, names):
    assert top_level_names(source) == names


def import_cycles(edges: list[tuple[str, str]]) -> list[list[str]]:
    """The import circles of a graph: its strongly connected components of two or more
    modules (Tarjan's algorithm), each sorted, in sorted order."""
    graph: dict[str, list[str]] = defaultdict(list)
    for src, dst in edges:
        graph[src].append(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted({n for edge in edges for n in edge}):
        if node not in index:
            visit(node)
    return sorted(found)


def top_level_constants(source: str) -> set[str]:
    """UPPER_CASE names a module assigns at top level (``X = ...``, ``X: int = ...``)."""
    names: set[str] = set()
    for node in ast.parse(source).body:
        targets = (node.targets if isinstance(node, ast.Assign)
                   else [node.target] if isinstance(node, ast.AnnAssign) else [])
        names |= {t.id for t in targets if isinstance(t, ast.Name) and t.id.isupper()}
    return names


def test_no_constant_is_defined_twice():
    where: dict[str, list[str]] = defaultdict(list)
    for name, path in package_modules().items():
        for defined in top_level_constants(path.read_text(encoding="utf-8")):
            where[defined].append(name)
    twice = {c: modules for c, modules in sorted(where.items()) if len(modules) > 1
             and not all(part_of(m) in SHARED_CONSTANTS.get(c, frozenset()) for m in modules)}
    assert not twice, f"constants defined in several modules (keep one, import it): {twice}"
    assert top_level_constants("A = 1\nb = 2\nC: int = 3\ndef f():\n    D = 4\n") == {"A", "C"}


def function_lengths(source: str) -> dict[str, int]:
    """``{name: lines}`` of every function and method (nested ones too), counting the body from
    its first statement after the docstring to its last line."""
    out = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            documented = (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                          and isinstance(body[0].value.value, str))
            first = body[1] if documented and len(body) > 1 else body[0]
            out[f"{node.name}:{node.lineno}"] = node.end_lineno - first.lineno + 1
    return out


def test_no_function_is_longer_than_the_limit():
    long = {f"{name}.{fn}": n for name, path in package_modules().items()
            for fn, n in function_lengths(path.read_text(encoding="utf-8")).items()
            if n > MAX_FUNCTION_LINES}
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines (split them by what each part "
                      f"does): {long}")
    assert function_lengths('def f():\n    """Doc."""\n    a = 1\n    return a\n') == {"f:1": 2}


def test_no_import_circle_even_inside_a_package():
    cycles = import_cycles(import_edges())
    assert not cycles, "import circles (modules that import each other, directly or not):\n" + \
        "\n".join(" <-> ".join(c) for c in cycles)


def test_the_circle_finder_finds_circles():
    assert import_cycles([("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e")]) == [
        ["a", "b", "c"]]
    assert import_cycles([("a", "b"), ("b", "c")]) == []
    assert import_cycles([("x.cub", "x.check"), ("x.check", "x.cub")]) == [["x.check", "x.cub"]]
