r"""Does each colour word land on its own part? The binding measure, read by the ToyBirds oracle.

Text alignment (:func:`t2ilib.metrics.toy_oracle.alignment`) asks whether a part has the colour
the caption asked for. It cannot tell a model that binds words to parts from one that paints
the caption's colours anywhere on the bird. Binding can. For each image whose caption names
the colours of two or more parts $P$ (body, wings, crown), and each named part $p \in P$ whose
colour $c_p$ the oracle reads as $\hat c_p$:

$$\text{own}_p = \Pr\big[\hat c_p = c_p\big], \qquad
\text{leak}_p = \Pr\big[\hat c_p \in \{c_q : q \in P,\ q \ne p\} \setminus \{c_p\}\big],$$

the share of such images where the part wears its own colour, and where it wears a colour the
caption gave *another* part (the word landed on the wrong part). Anchors, as for alignment: the
oracle on the real images of the same captions (the ceiling: own near 1, leak near 0) and the
generated images scored against another image's caption (*shuffled*: what a generator that
ignores the text gets). A model binds words to parts when own is high *and* leak stays near
the shuffled anchor's.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor

from t2ilib.data.toybirds import ATTRIBUTES

__all__ = ["COLOUR_PARTS", "binding_counts", "binding_scores"]

#: The parts whose colour a ToyBirds caption can name.
COLOUR_PARTS = ("body_color", "wing_color", "crown_color")


def binding_counts(predicted: Mapping[str, Tensor], targets: Sequence[Mapping[str, str]],
                   parts: Sequence[str] = COLOUR_PARTS) -> dict[str, tuple[int, int, int]]:
    """Per part, ``(own, leak, counted)`` over the images whose caption names two or more of
    ``parts``. ``predicted``: part -> value index read by the oracle ``(N,)``; ``targets``: the
    values each caption asked for (see :func:`t2ilib.metrics.toy_oracle.alignment`)."""
    n = len(next(iter(predicted.values())))
    if len(targets) != n:
        raise ValueError(f"{len(targets)} targets for {n} predictions")
    counts = {p: [0, 0, 0] for p in parts}
    for i, wanted in enumerate(targets):
        named = [p for p in parts if p in wanted]
        if len(named) < 2:
            continue
        for p in named:
            read = ATTRIBUTES[p][int(predicted[p][i])]
            others = {wanted[q] for q in named if q != p} - {wanted[p]}
            counts[p][0] += int(read == wanted[p])
            counts[p][1] += int(read in others)
            counts[p][2] += 1
    return {p: (own, leak, total) for p, (own, leak, total) in counts.items()}


def binding_scores(counts: Mapping[str, tuple[int, int, int]]) -> dict[str, dict[str, float]]:
    """``{part: {"own", "leak", "n"}, "mean": {"own", "leak", "n"}}`` from
    :func:`binding_counts` (the mean pools every counted (image, part) pair; ``own`` and
    ``leak`` are ``None`` for a part never counted)."""
    out: dict[str, dict[str, float]] = {}
    for p, (own, leak, total) in counts.items():
        out[p] = {"own": own / total if total else None, "leak": leak / total if total else None,
                  "n": total}
    own, leak, total = (sum(c[k] for c in counts.values()) for k in range(3))
    out["mean"] = {"own": own / total if total else None,
                   "leak": leak / total if total else None, "n": total}
    return out
