"""What the hidden tests of the exercises compare with, and how a failure says what is wrong.

A hidden test never calls the exercised ``t2ilib`` function: it loads the **stored outputs**
(:func:`stored_outputs`) and compares the student's with them (:func:`assert_all_close`)::

    from t2ilib.course.checks import assert_all_close, stored_outputs

    check_ref = stored_outputs("07_train_ssagan")["nb07_g_step"]
    assert_all_close(got["update_norm"], check_ref["outputs"]["update_norm"],
                     "G's gradient (the norm of each weight's SGD step)")

The stored files stay with the teacher: they are read from the folder named by
``$T2I_REFERENCE_OUTPUTS`` (which the course's ``nbgrader_config.py`` and ``make grade``
set to ``notebooks/reference_outputs`` of the teacher's checkout), else from
``reference_outputs/`` beside the notebook (the kernel's working directory), where the
teacher's own runs of the notebooks find them. nbgrader never copies them into a release,
a submission or a feedback folder (``CourseDirectory.ignore``).

A failure names the quantity, how many of its parameters are off, the largest relative
error and where, and a hint when one can be derived: the answer is zero, has the wrong sign
or is off by one factor everywhere, or it equals the stored outputs of a known wrong answer
(``mistakes``: ``{hint: outputs}``, made by the teacher's builder modules). Values compared
exactly (tokens) go through :func:`assert_all_equal`, whose failure names the first one that
differs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["REFERENCE_ENV", "MISTAKE_RTOL", "stored_outputs", "ValueMismatch", "mismatches",
           "derived_hint", "failure_message", "assert_all_close", "assert_all_equal"]

#: The environment variable naming the teacher's folder of stored outputs.
REFERENCE_ENV = "T2I_REFERENCE_OUTPUTS"
#: How close an answer must be to a known wrong answer's outputs for its hint (computed in
#: float64 like the reference, a wrong answer written differently agrees to ~1e-12)
MISTAKE_RTOL = 1e-6


def stored_outputs(stem: str) -> dict:
    """The stored outputs of notebook ``stem`` (``"07_train_ssagan"``), read with
    ``weights_only=True`` from ``$T2I_REFERENCE_OUTPUTS`` or ``reference_outputs/``."""
    path = Path(os.environ.get(REFERENCE_ENV) or "reference_outputs") / f"{stem}.pt"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: the hidden tests' stored outputs are not here. They stay with the "
            f"teacher: grade with `make grade` (it sets {REFERENCE_ENV})")
    return torch.load(path, weights_only=True, map_location="cpu")


@dataclass(frozen=True)
class ValueMismatch:
    """One parameter outside the tolerance: its relative error (``max |got - want| / max
    |want|``) and values (a number's own, a tensor's largest magnitude), or ``problem`` when
    it cannot be compared (missing, shape, no gradient)."""

    name: str
    error: float
    got: float = float("nan")
    want: float = float("nan")
    problem: str = ""
    shown: str = "max |value|"  # what got and want are: "value" for a number


def _as_tensor(value: torch.Tensor | float) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.tensor(float(value))


def _compare(name: str, got: torch.Tensor | float | None, want: torch.Tensor | float,
             rtol: float, atol: float) -> ValueMismatch | None:
    """``None`` when ``got`` is close to ``want`` elementwise (``atol + rtol |want|``)."""
    if got is None:
        return ValueMismatch(name, float("inf"), problem="is None (no gradient reached it?)")
    got_t, want_t = _as_tensor(got).detach().double(), _as_tensor(want).detach().double()
    if got_t.shape != want_t.shape:
        return ValueMismatch(name, float("inf"), problem=f"has shape {tuple(got_t.shape)}, the "
                        f"reference {tuple(want_t.shape)}")
    diff = (got_t - want_t).abs()
    if bool(torch.isfinite(got_t).all()) and bool((diff <= atol + rtol * want_t.abs()).all()):
        return None
    scale = float(want_t.abs().max()) if want_t.numel() else 0.0
    error = float(diff.max()) / scale if scale > 0 else float("inf")
    error = error if error == error else float("inf")  # NaN in got
    if want_t.numel() == 1:  # a number: its signed values
        return ValueMismatch(name, error, float(got_t.flatten()[0]), float(want_t.flatten()[0]),
                        shown="value")
    return ValueMismatch(name, error, float(got_t.abs().max()), scale)


def mismatches(got: Mapping[str, torch.Tensor | float | None],
               want: Mapping[str, torch.Tensor | float], rtol: float = 1e-4,
               atol: float = 1e-6) -> list[ValueMismatch]:
    """The parameters of ``want`` that ``got`` misses or gets wrong, worst first."""
    found = [ValueMismatch(name, float("inf"), problem="is missing") if name not in got else
             _compare(name, got[name], value, rtol, atol) for name, value in want.items()]
    return sorted((m for m in found if m is not None), key=lambda m: -m.error)


def derived_hint(got: Mapping[str, torch.Tensor | float | None],
                 want: Mapping[str, torch.Tensor | float],
                 names: Sequence[str] | None = None) -> str:
    """A hint read off the numbers of the parameters ``names`` (default: all), those that
    differ: all zero, the opposite sign, or one common factor."""
    pairs = [(_as_tensor(got[k]).detach().double().flatten(),
              _as_tensor(want[k]).detach().double().flatten()) for k in (names or list(want))
             if got.get(k) is not None and _as_tensor(got[k]).shape == _as_tensor(want[k]).shape]
    if not pairs:
        return ""
    g, w = torch.cat([p[0] for p in pairs]), torch.cat([p[1] for p in pairs])
    if not bool(torch.isfinite(g).all()):
        return "some values are NaN or infinite"
    if not bool(g.any()) and bool(w.any()):
        return "each value that differs is zero: does the computation reach it at all?"
    ratio = float((g * w).sum() / (w * w).sum()) if bool(w.any()) else 0.0
    if ratio and torch.allclose(g, ratio * w, rtol=1e-3, atol=1e-9):
        if abs(ratio + 1) < 1e-3:
            return "each value that differs has the opposite sign: is a sign flipped?"
        whole = max(abs(ratio), 1 / abs(ratio))
        if g.numel() < 2 and abs(whole - round(whole)) > 1e-3:
            return ""  # one number always has a factor: only a whole one tells something
        return (f"each value that differs is {ratio:.4g} times the reference: a missing or "
                "extra factor (a sum instead of a mean? a weight?)")
    return ""


def failure_message(quantity: str, found: list[ValueMismatch], total: int, rtol: float,
                    hint: str = "") -> str:
    """One paragraph: the quantity, how many parameters are off, the worst one, the hint."""
    worst = found[0]
    where = f"{worst.name} {worst.problem}" if worst.problem else (
        f"largest relative error {worst.error:.3g} ({worst.error:.2%}) at {worst.name} "
        f"({worst.shown} {worst.got:.6g}, reference {worst.want:.6g})")
    text = (f"{quantity}: {len(found)} of {total} value(s) differ from the reference "
            f"(relative tolerance {rtol:g}); {where}")
    return text + (f". Hint: {hint}" if hint else "")


def assert_all_close(got: Mapping[str, torch.Tensor | float | None],
                     want: Mapping[str, torch.Tensor | float], quantity: str, *,
                     rtol: float = 1e-4, atol: float = 1e-6,
                     mistakes: Mapping[str, Mapping[str, torch.Tensor | float] | torch.Tensor]
                     | None = None) -> None:
    """Raise ``AssertionError`` with :func:`failure_message` unless every parameter of
    ``want`` is close to ``got``'s. ``mistakes`` maps a hint to the stored outputs of a known
    wrong answer (a mapping like ``want``, or one tensor of its values in ``want``'s order):
    the first one ``got`` matches (to ``MISTAKE_RTOL``) gives the hint, else
    :func:`derived_hint`."""
    found = mismatches(got, want, rtol, atol)
    if not found:
        return
    hint = ""
    for text, outputs in (mistakes or {}).items():
        if isinstance(outputs, torch.Tensor):
            outputs = dict(zip(want, outputs.unbind(0)))
        if not mismatches(got, outputs, MISTAKE_RTOL, atol):
            hint = text
            break
    hint = hint or derived_hint(got, want, [m.name for m in found])
    raise AssertionError(failure_message(quantity, found, len(want), rtol, hint))


def assert_all_equal(got: Mapping[str, object], want: Mapping[str, object], quantity: str, *,
                     mistakes: Mapping[str, Mapping[str, object]] | None = None) -> None:
    """:func:`assert_all_close` for values compared exactly (tokens, integer boxes): the
    failure names the quantity, how many values differ and the first one (its name, the
    answer and the reference), and the hint of the first known mistake ``got`` equals
    (``mistakes``: ``{hint: {name: value}}``, a part of ``want``'s names)."""
    wrong = [name for name in want if got.get(name, ValueError) != want[name]]
    if not wrong:
        return
    hint = next((text for text, outputs in (mistakes or {}).items()
                 if all(got.get(k, ValueError) == v for k, v in outputs.items())), "")
    first = wrong[0]
    answer = f"gave {got[first]!r}" if first in got else "is missing"
    text = (f"{quantity}: {len(wrong)} of {len(want)} value(s) differ from the reference; "
            f"the first, {first}, {answer}, reference {want[first]!r}")
    raise AssertionError(text + (f". Hint: {hint}" if hint else ""))
