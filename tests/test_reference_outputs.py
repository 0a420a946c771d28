"""The stored reference outputs of the exercises (``notebooks/reference_outputs/*.pt``).

Hidden tests compare a student's function with these files instead of calling ``t2ilib``
(see :mod:`t2ilib.course.reference_outputs`). Checked for every builder module present
(``t2ilib/course/reference_outputs/nbNN.py``, found automatically):

* the stored file exists, is small, and equals a fresh ``build()`` (no drift between the
  library and what the hidden tests expect: regenerate with
  ``python -m t2ilib.course.reference_outputs nbNN``);
* ``build()`` is deterministic (two builds agree);
* each entry is named after a solution cell of its notebook (its nbgrader ``grade_id``);
* every stored file has a builder, and every notebook whose hidden tests read a stored file
  has one.
"""

from __future__ import annotations

import json
import re

import pytest

from t2ilib.course import reference_outputs as ro
from t2ilib.course.exercise_check import load_variants

from .conftest import NOTEBOOKS, REPO

BUILDERS = ro.builders()
STORED = REPO / "notebooks" / "reference_outputs"


def solution_ids(stem: str) -> list[str]:
    nb = json.loads((REPO / "notebooks" / f"{stem}.ipynb").read_text(encoding="utf-8"))
    return [c["metadata"]["nbgrader"]["grade_id"] for c in nb["cells"]
            if c.get("metadata", {}).get("nbgrader", {}).get("solution")]


def test_builders_are_found():
    assert BUILDERS, "no builder module nbNN.py in t2ilib/course/reference_outputs"
    assert all(re.fullmatch(r"nb\d\d", b) for b in BUILDERS)


@pytest.mark.parametrize("name", BUILDERS)
def test_stored_file_equals_a_fresh_build(name: str):
    path = ro.reference_path(name)
    assert path.is_file(), f"{path} missing: python -m t2ilib.course.reference_outputs {name}"
    assert path.stat().st_size <= ro.MAX_BYTES, f"{path.name}: {path.stat().st_size} bytes"
    fresh = ro.build_outputs(name)
    assert not ro.differences(fresh, ro.build_outputs(name)), f"{name}.build() is not deterministic"
    drift = ro.differences(ro.load(name), fresh)
    assert not drift, (f"{path.name} differs from a fresh build (regenerate with "
                       f"python -m t2ilib.course.reference_outputs {name}): {drift[:5]}")
    ids = solution_ids(ro.notebook_stem(name))
    strays = [k for k in fresh if not any(k.startswith(i) for i in ids)]
    assert not strays, f"{name}: entries named after no solution cell ({ids}): {strays}"


def test_every_stored_file_has_a_builder_and_every_reader_a_file():
    stems = {ro.notebook_stem(b) for b in BUILDERS}
    orphans = sorted(p.name for p in STORED.glob("*.pt") if p.stem not in stems)
    assert not orphans, f"stored files without a builder module: {orphans}"
    for path in NOTEBOOKS:
        text = path.read_text(encoding="utf-8")
        for stem in set(re.findall(r'stored_outputs\(\\"(\w+)\\"\)', text)):
            assert stem == path.stem, f"{path.name} reads another notebook's file {stem}.pt"
            assert stem in stems, f"{path.name} reads reference_outputs/{stem}.pt: no builder"


def test_differences_reports_what_differs():
    import torch

    a = {"x": {"inputs": {"t": torch.ones(2), "n": 3, "s": "ab"}, "outputs": {"v": 1.0}}}
    assert ro.differences(a, a) == []
    b = {"x": {"inputs": {"t": torch.ones(2) * 1.1, "n": 4, "s": "ab"}, "outputs": {"v": 1.0}}}
    found = ro.differences(a, b)
    assert len(found) == 2 and found[0].startswith("/x/inputs/t") and "3 vs 4" in found[1]
    assert ro.differences(torch.ones(2), torch.ones(2, dtype=torch.float64))  # dtype counts
    assert ro.differences([1, 2], (1, 2)) and ro.differences({"a": 1}, {"b": 1})


def test_tolerance_forgives_rounding_and_catches_a_bug_sized_change():
    """What another CPU changes passes; a change of the size a real bug makes fails."""
    import torch

    want = {"grad": torch.tensor([0.8, -0.3, 1e-15], dtype=torch.float64),  # last: analytically 0
            "zero": torch.tensor([1e-17, -2e-16], dtype=torch.float64),  # a whole tensor of 0s
            "f32": torch.tensor([2.0, 0.0, -1.0])}
    rounded = {"grad": torch.tensor([0.8 + 1e-12, -0.3, -3e-15], dtype=torch.float64),
               "zero": torch.tensor([4e-15, 0.0], dtype=torch.float64),
               "f32": torch.tensor([2.0 + 2e-6, 3e-7, -1.0])}
    assert ro.differences(want, rounded) == []
    for key, moved in (("grad", [0.8 * (1 + 3e-4), -0.3, 1e-15]),  # 0.03 % off one weight
                       ("grad", [0.8, -0.3, 1e-5]),  # a gradient where there should be none
                       ("zero", [1e-6, 0.0]),
                       ("f32", [2.0, 0.0, -1.001])):
        bad = dict(rounded, **{key: torch.tensor(moved, dtype=want[key].dtype)})
        assert ro.differences(want, bad), f"{key}: {moved} passed the drift check"


def _g_step_variant(old: str, new: str):
    """The library's ``g_step`` with ``old`` replaced by ``new`` (an exercise variant)."""
    import inspect
    import textwrap

    from t2ilib.ssagan import step

    source = textwrap.dedent(inspect.getsource(step.g_step))
    assert source.count(old) == 1, f"{old!r} is not in t2ilib.ssagan.step.g_step"
    namespace = dict(vars(step))
    exec(compile(source.replace(old, new), "<variant>", "exec"), namespace)  # noqa: S102
    return namespace["g_step"]


@pytest.mark.parametrize("variant", [v for v in load_variants("07")], ids=lambda v: v.name)
def test_drift_check_has_teeth_against_the_wrong_g_steps(variant):
    """Stored nb07 outputs vs outputs of each likely wrong answer (tests/exercise_variants):
    every wrong answer differs at the drift check's tolerance, every correct rewrite agrees."""
    from t2ilib.course.g_step_harness import run_g_step

    stored = {case: entry for case, entry in ro.load("nb07").items()
              if not case.endswith("_mistakes")}  # the wrong answers' outputs, for the hints
    got = {case: {"inputs": entry["inputs"],
                  "outputs": run_g_step(_g_step_variant(variant.old, variant.new), entry["inputs"])}
           for case, entry in stored.items()}
    found = ro.differences(stored, got)
    if variant.should_pass:
        assert found == [], found[:3]
    else:
        assert found, f"'{variant.name}' agrees with the stored outputs"
