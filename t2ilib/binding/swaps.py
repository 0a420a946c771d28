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
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.damsm.generator_loss import resize_for_encoder
from t2ilib.damsm.losses import SSAGAN_GAMMAS, DAMSMGammas, sentence_scores, word_scores
from t2ilib.text.vocab import Vocabulary

__all__ = ["COLOUR_WORDS", "colour_word_ids", "swap_colour_words", "swapped_damsm_loss"]

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


def swapped_damsm_loss(image_encoder: nn.Module, images: Tensor, words: Tensor,
                       sentence: Tensor, lengths: Tensor, swapped_words: Tensor,
                       swapped_sentence: Tensor, gammas: DAMSMGammas = SSAGAN_GAMMAS,
                       encoder_size: int | None = None) -> Tensor:
    r"""The DAMSM's choice between a caption and its swap, for ``K`` images.

    The DAMSM matches an image $x$ with a caption by a word score $R_w$ (each word attends over
    the regions, AttnGAN's Eq. 8-10) and a sentence score $R_s$ (cosine of the codes). With the
    swapped caption as the only other candidate, the batch softmax of AttnGAN's Eq. 11 becomes
    a logistic loss on the score difference,

    $$L_\text{swap} = \mathbb E\big[\log(1 + e^{-\gamma_3 (R_w(x, c) - R_w(x, \tilde c))})
                   + \log(1 + e^{-\gamma_3 (R_s(x, s) - R_s(x, \tilde s))})\big].$$

    On real images it teaches the encoders to tell the two captions apart; on fakes it asks G
    for the colours on the parts the caption names. ``images`` ``(K, 3, H, W)``, ``words`` /
    ``swapped_words`` ``(K, D, T)``, ``sentence`` / ``swapped_sentence`` ``(K, D)``,
    ``lengths`` ``(K,)`` -> ``()``.
    """
    regions, codes = image_encoder(resize_for_encoder(images, encoder_size))
    with torch.autocast(images.device.type, enabled=False):
        regions, codes = regions.float(), codes.float()
        diff_w = (word_scores(words.float(), lengths, regions, gammas.gamma1, gammas.gamma2)
                  - word_scores(swapped_words.float(), lengths, regions, gammas.gamma1,
                                gammas.gamma2)).diagonal()                  # (K,)
        diff_s = (sentence_scores(codes, sentence.float())
                  - sentence_scores(codes, swapped_sentence.float())).diagonal()  # (K,)
        return (F.softplus(-gammas.gamma3 * diff_w) + F.softplus(-gammas.gamma3 * diff_s)).mean()
