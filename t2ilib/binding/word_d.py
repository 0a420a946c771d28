r"""A text-adaptive discriminator: one local discriminator per word, on the regions it reads.

SSA-GAN's D judges an (image, caption) pair with one logit from the sentence vector $s$ tiled
over its 4x4 features: it learns which colours a picture holds, not which part wears them.
TAGAN (Nam et al., NeurIPS 2018, "Text-Adaptive Generative Adversarial Networks") gives every
word $w_t$ its own small classifier whose weights are a function of the word, and weighs the
words by importance. Here each word first looks at the image's regions (the 8x8 features one
block before D's last), so the colour word of "a red body" is judged where it attends:

$$a_{t,n} = \operatorname{softmax}_n \frac{(W_k r_n)^\top w_t}{\sqrt D}, \qquad
c_t = \sum_n a_{t,n}\, W_v r_n, \qquad
f_t = \frac{(W_f w_t)^\top c_t}{\sqrt D} + b^\top w_t ,$$

and the words are weighed by a softmax over the caption's real words (TAGAN's word weights),

$$\alpha_t = \frac{\exp(u^\top w_t)\,[t < L]}{\sum_{t' < L} \exp(u^\top w_{t'})}, \qquad
D_\text{word}(x, w) = \sum_t \alpha_t f_t .$$

D's score of a pair is then the sentence logit and the word logit side by side: the D step
applies the hinge loss to each, and G raises both (:mod:`t2ilib.binding.step`). TAGAN takes a
product of sigmoids at three levels; one level and a weighted sum of logits keeps SSA-GAN's
hinge arithmetic. :class:`WordDiscriminator` is SSA-GAN's D with this head added: its
``features`` and ``logits`` are unchanged, so MA-GP and every sentence-level term read it as
before.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.binding.word_ssacn import real_words
from t2ilib.ssagan.model import Discriminator, SSAGANConfig, discriminator_channels

__all__ = ["WordDiscriminator", "word_logits"]


def word_logits(regions: Tensor, words: Tensor, word_mask: Tensor, key: nn.Module,
                value: nn.Module, score: nn.Module, importance: nn.Module) -> Tensor:
    r"""$D_\text{word}(x, w) = \sum_t \alpha_t f_t$ (module docstring).

    ``regions`` ``(B, C, h, w)``, ``words`` ``(B, D, T)``, ``word_mask`` ``(B, T)`` bool ->
    ``(B,)``. ``key``, ``value``: 1x1 convolutions ``C -> D``; ``score``: a linear map
    ``D -> D + 1`` (the word's classifier weights $W_f w_t$ and its bias $b^\top w_t$);
    ``importance``: a linear map ``D -> 1`` ($u^\top w_t$).
    """
    # BEGIN EXERCISE 11:nb11_word_logits
    d = words.shape[1]
    w = words.transpose(1, 2)                                      # (B, T, D)
    k = key(regions).flatten(2)                                    # (B, D, N)
    v = value(regions).flatten(2).transpose(1, 2)                  # (B, N, D)
    attention = torch.softmax(w @ k / math.sqrt(d), dim=-1)        # (B, T, N)
    context = attention @ v                                        # (B, T, D)
    weights, bias = score(w).split([d, 1], dim=-1)                 # (B, T, D), (B, T, 1)
    f = (weights * context).sum(-1) / math.sqrt(d) + bias.squeeze(-1)   # (B, T)
    u = importance(w).squeeze(-1).masked_fill(~word_mask, float("-inf"))  # (B, T)
    alpha = torch.softmax(u, dim=-1)                               # (B, T), 0 on padding
    return (alpha * f).sum(-1)
    # END EXERCISE


class WordDiscriminator(Discriminator):
    r"""SSA-GAN's discriminator plus the word-level head of the module docstring.

    ``features_and_regions(images) -> ((B, 16 ndf, 4, 4), (B, C, 8, 8))``: D's trunk, also
    returning the regions one block before its end; ``word_logits(regions, words, lengths)
    -> (B,)``. ``features``, ``logits`` and ``forward`` are the sentence-level D's.
    """

    def __init__(self, config: SSAGANConfig):
        super().__init__(config)
        if len(self.blocks) < 2:
            raise ValueError(f"the word head needs 8x8 regions: resolution >= 32, "
                             f"got {config.resolution}")
        c, d = discriminator_channels(config.resolution, config.ndf)[-2], config.sentence_dim
        self.word_key = nn.Conv2d(c, d, 1, bias=False)
        self.word_value = nn.Conv2d(c, d, 1, bias=False)
        self.word_score = nn.Linear(d, d + 1)
        self.word_importance = nn.Linear(d, 1, bias=False)

    def features_and_regions(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, 3, R, R) -> ((B, 16 ndf, 4, 4), (B, C, 8, 8))``."""
        regions = self.blocks[:-1](self.stem(images))
        return self.blocks[-1](regions), regions

    def word_logits(self, regions: Tensor, words: Tensor, lengths: Tensor) -> Tensor:
        """``(B, C, 8, 8), (B, D, T), (B,) -> (B,)``; words at ``t >= lengths[b]`` are padding."""
        if words.shape[0] != regions.shape[0] or words.shape[1] != self.config.sentence_dim:
            raise ValueError(f"words must be ({regions.shape[0]}, {self.config.sentence_dim}, "
                             f"T), got {tuple(words.shape)}")
        return word_logits(regions, words, real_words(lengths, words), self.word_key,
                           self.word_value,
                           self.word_score, self.word_importance)
