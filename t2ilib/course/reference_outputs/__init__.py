"""Stored reference outputs of the course's exercises: what the hidden tests compare with.

For graded use the answers must not be importable, so a hidden test never calls the
exercised ``t2ilib`` function. It loads the stored inputs and outputs instead::

    check_ref = torch.load("reference_outputs/06_losses.pt", weights_only=True)["nb06_ma_gp"]
    got = ma_gp_from_grads(**check_ref["inputs"])
    torch.testing.assert_close(got, check_ref["outputs"]["value"])

(the path is relative to ``notebooks/``, the kernel's working directory).

Each notebook with exercises has a **builder module** ``nbNN.py`` in this package (``NN`` the
notebook's number) exposing ``build() -> dict``::

    {exercise_name: {"inputs": {...}, "outputs": {...}}}

where ``exercise_name`` starts with the nbgrader ``grade_id`` of the exercise's solution cell
(``nb06_ma_gp``, or ``nb06_ma_gp_from_grads`` for a part of it). Values are tensors, Python
numbers, strings, ``None`` and lists, tuples or dicts of them (what ``torch.load`` reads with
``weights_only=True``; a module's ``state_dict()`` is fine). ``build`` must be deterministic:
CPU only, its own seeded ``torch.Generator`` for random inputs (:func:`build_outputs` also seeds the
global generator, so module initialisation is reproducible), float64 where rounding could
differ between machines. The outputs are computed with the library's functions.

``python -m t2ilib.course.reference_outputs [nbNN ...]`` writes
``notebooks/reference_outputs/<notebook stem>.pt`` (atomically; every builder when none is
named); ``--check`` compares instead of writing. ``tests/test_reference_outputs.py`` checks
every stored file against a fresh :func:`build_outputs` of every builder module present.
"""

from __future__ import annotations

import importlib
import math
import pkgutil
import re
from pathlib import Path
from typing import Any

import torch

from t2ilib.io import load_torch, save_torch
from t2ilib.runtime import repo_root

__all__ = ["builders", "notebook_stem", "reference_path", "build_outputs", "write", "load",
           "differences", "tolerance", "RTOL", "MAX_BYTES"]

_BUILDER = re.compile(r"nb(\d\d)")
#: A stored file should stay small (inputs of a few samples, not datasets or models).
MAX_BYTES = 512 * 1024


def builders() -> list[str]:
    """The builder modules present in this package, sorted: ``['nb01', 'nb03', ...]``."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if _BUILDER.fullmatch(m.name))


def _builder_name(name: str) -> str:
    """``'nb06'``, ``'06'`` or ``'6'`` -> ``'nb06'``."""
    name = name.removeprefix("nb")
    if not name.isdigit():
        raise ValueError(f"not a builder name: {name!r} (want nbNN, e.g. nb06)")
    return f"nb{int(name):02d}"


def notebook_stem(name: str) -> str:
    """The stem of the notebook a builder belongs to: ``'nb06' -> '06_losses'``."""
    number = _builder_name(name)[2:]
    found = sorted((repo_root() / "notebooks").glob(f"{number}_*.ipynb"))
    if len(found) != 1:
        raise FileNotFoundError(f"want one notebook notebooks/{number}_*.ipynb, found {found}")
    return found[0].stem


def reference_path(name: str) -> Path:
    """Where a builder's outputs are stored: ``notebooks/reference_outputs/<stem>.pt``."""
    return repo_root() / "notebooks" / "reference_outputs" / f"{notebook_stem(name)}.pt"


def _compact(value: Any) -> Any:
    """A copy of ``value`` whose tensors own just their elements (a saved view would carry
    its whole storage) and carry no autograd state; rejects types ``weights_only`` refuses."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().clone().contiguous()
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_compact(v) for v in value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise TypeError(f"cannot store a {type(value).__name__} as a reference output")


def build_outputs(name: str) -> dict:
    """Run builder ``name``'s ``build()`` with the global RNG seeded (and restored after)."""
    module = importlib.import_module(f"{__name__}.{_builder_name(name)}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        result = module.build()
    if not isinstance(result, dict) or not all(
            isinstance(v, dict) and set(v) == {"inputs", "outputs"} for v in result.values()):
        raise TypeError(f"{name}.build() must return {{exercise: {{'inputs', 'outputs'}}}}")
    return _compact(result)


def write(name: str) -> Path:
    """Build ``name`` and store it atomically at :func:`reference_path`; returns the path."""
    return save_torch(build_outputs(name), reference_path(name))


def load(name: str) -> dict:
    """The stored outputs of builder ``name`` (``weights_only``, as the hidden tests read it)."""
    return load_torch(reference_path(name))


#: The drift check's tolerance. ``RTOL`` is the hidden tests' own (1e-4). The absolute part
#: is :data:`ATOL_SCALE` of the tensor's largest magnitude, never below the dtype's floor, so
#: an entry that is analytically 0 (the gradient of a bias followed by a normalisation: 0 on
#: one CPU, 1e-15 on another) cannot fail, while a real bug (a missing DAMSM term, a detached
#: input: 1e-4 to 1e-1 relative, ``tests/test_reference_outputs.py``) still does.
RTOL = 1e-4
ATOL_SCALE = 1e-6
ATOL_FLOOR = {torch.float64: 1e-10, torch.float32: 1e-6, torch.float16: 1e-3,
              torch.bfloat16: 1e-2}


def tolerance(want: torch.Tensor) -> dict[str, float]:
    """``rtol`` and ``atol`` for comparing a fresh build with the stored tensor ``want``:
    exact for integer and bool tensors, else ``RTOL`` and ``max(floor, ATOL_SCALE * max|want|)``.
    """
    if not want.is_floating_point():
        return {"rtol": 0.0, "atol": 0.0}
    scale = want.detach().abs().max().item() if want.numel() else 0.0
    scale = scale if math.isfinite(scale) else 0.0
    return {"rtol": RTOL, "atol": max(ATOL_FLOOR.get(want.dtype, 1e-6), ATOL_SCALE * scale)}


def differences(want: Any, got: Any, where: str = "") -> list[str]:
    """Where ``got`` differs from ``want``: one line per difference, empty when they agree.

    Tensors must agree in dtype and shape and be close by :func:`tolerance` (rounding
    differs between CPUs); floats within ``RTOL`` relative; everything else equal.
    """
    at = where or "<root>"
    if isinstance(want, torch.Tensor) or isinstance(got, torch.Tensor):
        if not (isinstance(want, torch.Tensor) and isinstance(got, torch.Tensor)):
            return [f"{at}: {type(want).__name__} vs {type(got).__name__}"]
        try:
            torch.testing.assert_close(got, want, equal_nan=True, **tolerance(want))
        except AssertionError as error:
            return [f"{at}: {str(error).splitlines()[0]}"]
        return []
    if isinstance(want, dict) and isinstance(got, dict):
        if set(want) != set(got):
            return [f"{at}: keys {sorted(map(str, want))} vs {sorted(map(str, got))}"]
        return [d for k in want for d in differences(want[k], got[k], f"{where}/{k}")]
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        if type(want) is not type(got) or len(want) != len(got):
            return [f"{at}: {type(want).__name__} of {len(want)} vs "
                    f"{type(got).__name__} of {len(got)}"]
        return [d for i, (a, b) in enumerate(zip(want, got))
                for d in differences(a, b, f"{where}[{i}]")]
    if (isinstance(want, float) and isinstance(got, float)
            and math.isclose(want, got, rel_tol=RTOL, abs_tol=ATOL_FLOOR[torch.float64])):
        return []
    if type(want) is not type(got) or want != got:
        return [f"{at}: {want!r} vs {got!r}"]
    return []
