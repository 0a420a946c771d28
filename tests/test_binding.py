"""The binding measure (t2ilib.metrics.binding): own colour and leaked colour per part, counted
only for captions that name two or more parts, and its place in the toy report."""

from __future__ import annotations

import pytest
import torch

from t2ilib.data.toybirds import ATTRIBUTES
from t2ilib.metrics.binding import binding_counts, binding_scores


def _read(rows: list[dict[str, str]]) -> dict[str, torch.Tensor]:
    """The oracle's readings as value indices, from colour names per image."""
    return {p: torch.tensor([ATTRIBUTES[p].index(r[p]) for r in rows])
            for p in ("body_color", "wing_color", "crown_color")}


def test_own_and_leak_are_counted_per_named_part():
    targets = [{"body_color": "red", "wing_color": "blue"},           # 1: bound
               {"body_color": "red", "wing_color": "blue"},           # 2: swapped
               {"body_color": "red", "wing_color": "blue", "size": "small"},  # 3: all red
               {"body_color": "green"},                               # one part: not counted
               {"body_color": "red", "wing_color": "red", "crown_color": "blue"}]  # 5
    read = _read([{"body_color": "red", "wing_color": "blue", "crown_color": "black"},
                  {"body_color": "blue", "wing_color": "red", "crown_color": "black"},
                  {"body_color": "red", "wing_color": "red", "crown_color": "red"},
                  {"body_color": "blue", "wing_color": "blue", "crown_color": "blue"},
                  {"body_color": "red", "wing_color": "blue", "crown_color": "blue"}])
    counts = binding_counts(read, targets)
    # body: own in 1, 3 and 5, leak (the wings' blue) in 2.
    # wings: own in 1; leak in 2 and 3 (the body's red) and 5 (blue, the crown's colour).
    assert counts["body_color"] == (3, 1, 4)
    assert counts["wing_color"] == (1, 3, 4)
    assert counts["crown_color"] == (1, 0, 1)  # only image 5 names the crown: blue, read blue
    scores = binding_scores(counts)
    assert scores["body_color"] == {"own": 0.75, "leak": 0.25, "n": 4}
    assert scores["mean"] == {"own": 5 / 9, "leak": 4 / 9, "n": 9}


def test_a_colour_two_parts_share_is_never_a_leak():
    targets = [{"body_color": "red", "wing_color": "red"}]
    read = _read([{"body_color": "red", "wing_color": "red", "crown_color": "red"}])
    assert binding_counts(read, targets) == {"body_color": (1, 0, 1), "wing_color": (1, 0, 1),
                                             "crown_color": (0, 0, 0)}
    assert binding_scores(binding_counts(read, targets))["crown_color"]["own"] is None


def test_binding_counts_checks_its_input():
    with pytest.raises(ValueError, match="2 targets for 1 predictions"):
        binding_counts(_read([dict.fromkeys(("body_color", "wing_color", "crown_color"), "red")]),
                       [{}, {}])
