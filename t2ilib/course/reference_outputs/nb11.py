"""Reference outputs of notebook 11's exercise: the word-level D head's ``word_logits``."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from t2ilib.binding.word_d import word_logits


def _mistakes(mods: tuple[nn.Module, ...], d: int) -> dict[str, tuple[nn.Module, ...]]:
    """Heads whose correct ``word_logits`` equals a likely wrong answer on ``mods``: keys
    scaled by sqrt(D) (no 1/sqrt(D) in the attention), the score's bias row zeroed (no
    $b^\\top w_t$)."""
    unscaled, no_bias = copy.deepcopy(mods), copy.deepcopy(mods)
    with torch.no_grad():
        unscaled[0].weight.mul_(math.sqrt(d))
        no_bias[2].weight[-1].zero_()
        no_bias[2].bias[-1].zero_()
    return {"the attention logits are not divided by sqrt(D)": unscaled,
            "the word's own bias b^T w_t (the last output of `score`) is missing": no_bias}


def build() -> dict:
    """Two heads (regions of ``c`` channels, words of ``d`` dimensions: 5, 4 and 3, 6), random
    regions and words, captions with and without padding; the logits of ``word_logits``, and
    those of two likely mistakes (the hidden test's hints)."""
    cases, logits, mistakes = [], {}, {}
    g = torch.Generator().manual_seed(11)
    for i, (c, d, batch, lengths) in enumerate(((5, 4, 3, (6, 4, 1)), (3, 6, 1, (5,)))):
        mods = (nn.Conv2d(c, d, 1, bias=False), nn.Conv2d(c, d, 1, bias=False),
                nn.Linear(d, d + 1), nn.Linear(d, 1, bias=False))
        regions = torch.randn(batch, c, 4, 4, generator=g)
        words = torch.randn(batch, d, max(lengths), generator=g)
        mask = torch.arange(max(lengths))[None, :] < torch.tensor(lengths)[:, None]
        with torch.no_grad():
            logits[f"case {i}"] = word_logits(regions, words, mask, *mods)
            for hint, wrong in _mistakes(mods, d).items():
                mistakes.setdefault(hint, {})[f"case {i}"] = word_logits(regions, words, mask,
                                                                        *wrong)
        cases.append({"c": c, "d": d, "states": [m.state_dict() for m in mods],
                      "regions": regions, "words": words, "mask": mask})
    return {"nb11_word_logits": {"inputs": {"cases": cases},
                                 "outputs": {"logits": logits, "mistakes": mistakes}}}
