"""The hidden tests' helper (``t2ilib.course.checks``) and the feedback's filter
(``t2ilib.course.feedback``): where the stored outputs are read from, what a failure says
(the quantity, the worst parameter and its relative error, a hint), and that feedback keeps
no hidden-test source.

Notebook 07's hints are checked against its likely wrong answers
(``tests/exercise_variants/nb07.json``): each wrong step that a stored mistake stands for
gets that mistake's hint, every correct rewrite passes.
"""

from __future__ import annotations

import inspect
import re
import textwrap

import nbformat
import pytest
import torch

from t2ilib.course import reference_outputs as ro
from t2ilib.course.checks import (
    REFERENCE_ENV,
    assert_all_close,
    assert_all_equal,
    derived_hint,
    mismatches,
    stored_outputs,
)
from t2ilib.course.exercise_check import load_variants
from t2ilib.course.feedback import HideHiddenTests, leaks

from .conftest import REPO


def test_stored_outputs_come_from_the_teachers_folder(tmp_path, monkeypatch):
    torch.save({"x": torch.ones(2)}, tmp_path / "03_conditioning.pt")
    monkeypatch.setenv(REFERENCE_ENV, str(tmp_path))
    assert torch.equal(stored_outputs("03_conditioning")["x"], torch.ones(2))
    monkeypatch.delenv(REFERENCE_ENV)
    monkeypatch.chdir(tmp_path)  # a student's notebooks/ folder: nothing stored there
    with pytest.raises(FileNotFoundError, match="stay with the teacher: grade with `make grade`"):
        stored_outputs("03_conditioning")


def test_a_failure_names_the_quantity_the_worst_parameter_and_its_error():
    want = {"a.weight": torch.tensor([1.0, 2.0]), "b.gate": torch.tensor(4.0),
            "c.bias": torch.tensor(1.0)}
    got = {"a.weight": torch.tensor([1.0, 2.02]), "b.gate": torch.tensor(3.0),
           "c.bias": torch.tensor(1.0)}
    assert [m.name for m in mismatches(got, want)] == ["b.gate", "a.weight"]
    with pytest.raises(AssertionError) as failure:
        assert_all_close(got, want, "G's gradient")
    text = str(failure.value)
    assert text.startswith("G's gradient: 2 of 3 value(s) differ from the reference")
    assert "largest relative error 0.25 (25.00%) at b.gate (value 3, reference 4)" in text
    assert "Hint" not in text  # no pattern: no hint made up
    assert_all_close(got, got, "the same")  # passes
    with pytest.raises(AssertionError, match="c.bias is None .no gradient reached it"):
        assert_all_close({**want, "c.bias": None}, want, "D's gradient")
    with pytest.raises(AssertionError, match=r"a.weight has shape \(3,\), the reference \(2,\)"):
        assert_all_close({**want, "a.weight": torch.ones(3)}, want, "x")


def test_derived_hints_zero_sign_and_factor():
    want = {"w": torch.tensor([1.0, -2.0]), "v": torch.tensor(3.0)}
    scaled = {k: v * 4 for k, v in want.items()}
    assert "is zero" in derived_hint({k: v * 0 for k, v in want.items()}, want)
    assert "opposite sign" in derived_hint({k: -v for k, v in want.items()}, want)
    assert "opposite sign" in derived_hint({**want, "v": -want["v"]}, want, ["v"])
    assert "4 times the reference" in derived_hint(scaled, want)
    assert derived_hint({"w": torch.tensor([1.0, 2.0]), "v": torch.tensor(3.0)}, want) == ""
    assert derived_hint({**want, "v": torch.tensor(3.3)}, want, ["v"]) == ""  # 1.1: no hint
    assert "0.25 times" in derived_hint({**want, "v": torch.tensor(0.75)}, want, ["v"])
    with pytest.raises(AssertionError, match=r"Hint: each value that differs is 4 times the "
                                             r"reference: a missing or extra factor \(a sum"):
        assert_all_close(scaled, want, "L_D")


def test_a_known_mistake_gives_its_hint():
    want = {"w": torch.tensor([1.0, 2.0]), "v": torch.tensor(3.0)}
    wrong = {"w": torch.tensor([1.0, 2.5]), "v": torch.tensor(3.0)}
    mistakes = {"not this one": torch.tensor([[9.0, 9.0], [3.0, 3.0]]),  # rows in want's order
                "is `fake` detached?": {"w": torch.tensor([1.0, 2.5]), "v": torch.tensor(3.0)}}
    with pytest.raises(AssertionError, match=r"Hint: is `fake` detached\?$"):
        assert_all_close(wrong, want, "G's gradient", mistakes=mistakes)


def test_exact_values_name_the_first_difference_and_a_known_mistake():
    want = {"tokenize('A b')": ["a", "b"], "tokenize('c')": ["c"], "tokenize('D')": ["d"]}
    assert_all_equal(dict(want), want, "the tokens")  # passes
    got = {**want, "tokenize('A b')": ["A", "b"], "tokenize('D')": ["D"]}
    with pytest.raises(AssertionError) as failure:
        assert_all_equal(got, want, "the tokens of 3 captions")
    assert str(failure.value) == (
        "the tokens of 3 captions: 2 of 3 value(s) differ from the reference; the first, "
        "tokenize('A b'), gave ['A', 'b'], reference ['a', 'b']")
    mistakes = {"not this one": {"tokenize('c')": ["C"]},
                "not lower-cased": {"tokenize('A b')": ["A", "b"], "tokenize('D')": ["D"]}}
    with pytest.raises(AssertionError, match=r"reference \['a', 'b'\]. Hint: not lower-cased$"):
        assert_all_equal(got, want, "the tokens", mistakes=mistakes)
    with pytest.raises(AssertionError, match=r"the first, tokenize\('A b'\), is missing"):
        assert_all_equal({}, want, "the tokens")


def _g_step_variant(old: str, new: str):
    """The library's ``g_step`` with ``old`` replaced by ``new`` (an exercise variant)."""
    from t2ilib.ssagan import step

    source = textwrap.dedent(inspect.getsource(step.g_step))
    namespace = dict(vars(step))
    exec(compile(source.replace(old, new), "<variant>", "exec"), namespace)  # noqa: S102
    return namespace["g_step"]


#: nb07 variant -> the words its hidden-test failure must hold (None: it must pass)
NB07_MESSAGES = {
    "no DAMSM term: loss = g_adv": "Hint: the DAMSM term does not reach G",
    "DAMSM weight ignored: g_adv + g_damsm": "Hint: the DAMSM term is not weighted",
    "weight on the adversarial term instead": "Hint: the weight is on the wrong term",
    "fake detached before D": "Hint: the adversarial term does not reach G: is `fake` "
                              "detached before D?",
    "fake detached before the DAMSM encoder": "Hint: the DAMSM term does not reach G: is "
                                              "`fake` detached before the image encoder",
    "adversarial sign flipped (G helps D)": "g_adv (value -0.00907326, reference 0.00907326)"
                                            ". Hint: each value that differs has the opposite",
    "D's hinge used for G: relu(1 - D(fake)) (saturates)": "The losses (DAMSM weight 0.05): 1 "
    "of 2 value(s) differ from the reference (relative tolerance 0.0001); largest relative "
    "error 110 (11021.39%) at g_adv (value 1.00907, reference 0.00907326)",
    "sum over the batch instead of the mean": "at g_adv (value 0.0362931, reference "
    "0.00907326). Hint: each value that differs is 4 times the reference",
    "correct: -mean of D's logits written out": None,
    "correct: terms in the other order": None,
}


def nb07_hidden_test(step) -> None:
    """Notebook 07's hidden test (the cell's code, run here on ``step``)."""
    from t2ilib.course.g_step_harness import run_g_step

    check_ref = ro.load("nb07")
    for check_case in ("nb07_g_step_paper_weight", "nb07_g_step"):
        check_want = check_ref[check_case]["outputs"]
        check_got = run_g_step(step, check_ref[check_case]["inputs"])
        check_at = f"DAMSM weight {check_ref[check_case]['inputs']['damsm_weight']}"
        assert_all_close({k: check_got[k] for k in ("g_adv", "g_damsm")},
                         {k: check_want[k] for k in ("g_adv", "g_damsm")},
                         f"The losses ({check_at})")
        assert_all_close(check_got["update_norm"], check_want["update_norm"],
                         f"G's gradient of L_G (the norm of each weight's SGD step, {check_at})",
                         mistakes=check_ref["nb07_g_step_mistakes"]["outputs"][check_case])


def test_the_notebook_runs_this_hidden_test():
    nb = nbformat.read(REPO / "notebooks" / "07_train_ssagan.ipynb", as_version=4)
    cell = next(c.source for c in nb.cells
                if c.metadata.get("nbgrader", {}).get("grade_id") == "nb07_g_step_tests")
    body = inspect.getsource(nb07_hidden_test).split('"""\n', 1)[1]
    flat = re.sub(r"\s", "", cell.replace('stored_outputs("07_train_ssagan")', 'ro.load("nb07")')
                  .replace("run_g_step(g_step,", "run_g_step(step,"))
    for line in body.split("\n"):  # every line of the copy here, whatever the line breaks
        if line.strip() and "import" not in line:
            assert re.sub(r"\s", "", line) in flat, line


@pytest.mark.parametrize("variant", load_variants("07"), ids=lambda v: v.name)
def test_nb07_failures_say_what_is_wrong(variant):
    assert set(NB07_MESSAGES) == {v.name for v in load_variants("07")}
    expected = NB07_MESSAGES[variant.name]
    step = _g_step_variant(variant.old, variant.new)
    if expected is None:
        nb07_hidden_test(step)
        return
    with pytest.raises(AssertionError) as failure:
        nb07_hidden_test(step)
    assert expected in str(failure.value), str(failure.value)
    assert "largest relative error" in str(failure.value)


def test_feedback_shows_the_verdict_not_the_hidden_source(tmp_path):
    cell = nbformat.v4.new_code_cell(
        "assert f(1) == 1\n### BEGIN HIDDEN TESTS\nassert f(2) == 4, 'f(2) is wrong'\n"
        "### END HIDDEN TESTS\n")
    cell.metadata["nbgrader"] = {"grade": True, "grade_id": "t", "locked": True,
                                 "points": 1, "solution": False}
    cell.outputs = [nbformat.v4.new_output(
        "error", ename="AssertionError", evalue="f(2) is wrong",
        traceback=["----", "----> 3 assert f(2) == 4, 'f(2) is wrong'", "AssertionError"])]
    cell, _ = HideHiddenTests().preprocess_cell(cell, {}, 0)
    assert cell.source == "assert f(1) == 1\n"
    assert cell.outputs[0].traceback == ["AssertionError: f(2) is wrong"]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.html").write_text("<pre>### BEGIN HIDDEN TESTS</pre>")
    (tmp_path / "a" / "ok.html").write_text("<pre>fine</pre>")
    (tmp_path / "07.pt").write_bytes(b"")
    assert [p.split(": ")[1] for p in leaks(tmp_path)] == [
        "a stored output", "hidden-test source (BEGIN HIDDEN TESTS)"]
