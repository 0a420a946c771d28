r"""Colour-swapped captions: the negatives that make a teacher read *which part* wears a colour.

D's matching-aware term (notebook 06) rejects a real image paired with *another image's*
caption. That caption usually names other colours, so D passes by checking which colours the
picture holds, wherever they are. A caption with two of its colour words exchanged,

    "a red body and blue wings"  ->  "a blue body and red wings",

names the same colours as the image holds, on the wrong parts: only a D that reads the parts
can reject the pair $(x, \tilde s)$. The swap needs nothing but a list of colour words, so it
applies to CUB's captions as well as ToyBirds'. A caption with fewer than two different colour
words has no swap (``has_swap`` False) and takes no part in the term.
"""

from __future__ import annotations

import torch
from torch import Tensor

from t2ilib.text.vocab import Vocabulary

__all__ = ["COLOUR_WORDS", "colour_word_ids", "swap_colour_words"]

#: English colour words (CUB's captions and ToyBirds' use these; "gray" and "grey" both).
COLOUR_WORDS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black",
                "white", "grey", "gray", "pink", "tan", "buff", "olive", "rufous")


def colour_word_ids(vocab: Vocabulary) -> frozenset[int]:
    """The token ids of the :data:`COLOUR_WORDS` that ``vocab`` knows."""
    return frozenset(vocab.word2idx[w] for w in COLOUR_WORDS if w in vocab.word2idx)


def swap_colour_words(ids: Tensor, lengths: Tensor, colour_ids: frozenset[int],
                      generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Exchange two different colour words of each caption.

    ``ids`` ``(B, T)`` int64 (CPU), ``lengths`` ``(B,)`` -> ``(swapped (B, T), has_swap (B,)
    bool)``. Of the caption's colour-word positions, one pair with different words is drawn
    at random (``generator``); captions with fewer than two different colour words are
    returned unchanged with ``has_swap`` False.
    """
    if ids.device.type != "cpu":
        raise ValueError("swap colour words on the CPU copy of the captions")
    swapped, has_swap = ids.clone(), torch.zeros(len(ids), dtype=torch.bool)
    for b in range(len(ids)):
        row = ids[b, :int(lengths[b])].tolist()
        spots = [t for t, i in enumerate(row) if i in colour_ids]
        pairs = [(s, t) for s in spots for t in spots if s < t and row[s] != row[t]]
        if not pairs:
            continue
        s, t = pairs[int(torch.randint(len(pairs), (1,), generator=generator))]
        swapped[b, s], swapped[b, t] = ids[b, t], ids[b, s]
        has_swap[b] = True
    return swapped, has_swap
