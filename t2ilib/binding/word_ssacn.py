r"""Word-attended SSACN: each position of the image takes its affine from the words it attends to.

SSA-GAN's SSACN (:mod:`t2ilib.ssagan.ssacn`) modulates every masked position with the *same*
$\gamma(s), \beta(s)$ from the sentence vector $s$: where the mask is on, "a red body and blue
wings" asks for red and blue alike. Binding a colour to its part needs the affine to differ
between positions. Here each position $p$ of the features $x \in \mathbb R^{C \times H \times W}$
attends over the caption's words $w_1 \dots w_T$ (the DAMSM text encoder's bi-LSTM features,
which already carry their neighbours: "red" in "a red body" knows "body"), as AttnGAN's
word-region attention does in the other direction:

$$q_p = W_q\,\mathrm{BN}(x)_p, \qquad
\alpha_{p,t} = \frac{\exp(q_p^\top w_t / \sqrt{D})\,[t < L]}
                     {\sum_{t' < L} \exp(q_p^\top w_{t'} / \sqrt{D})}, \qquad
c_p = \sum_t \alpha_{p,t}\, w_t,$$

($L$ the caption's length: padding gets no attention) and the affine parameters come from the
position's word context and the sentence,

$$\gamma_p = W_\gamma^{(2)} \mathrm{ReLU}\big(W_\gamma^{(1)} [c_p; s]\big), \qquad
\beta_p = W_\beta^{(2)} \mathrm{ReLU}\big(W_\beta^{(1)} [c_p; s]\big),$$

(1x1 convolutions, the last layer starting at zero), used exactly as SSACN uses its own:

$$y_p = \big(1 + m_p\,\gamma_p\big) \odot \mathrm{BN}(x)_p + m_p\, \beta_p .$$

With one word (or all words equal) $c_p = w_1$ everywhere and the layer is SSACN with the
condition $[w_1; s]$; at initialisation it is ``BN(x)``, like SSACN's. :class:`WordGenerator` is
SSA-GAN's generator with these affines in every block (same masks, gates and shapes); it needs
the words too: ``G(z, s, words, lengths)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.ssagan.model import Generator, SSAGANConfig, check_generator_inputs
from t2ilib.ssagan.ssacn import SSACNBlock, check_mask

__all__ = ["WordCondition", "word_attention", "WordSpatialAffine", "WordGenerator"]


@dataclass(frozen=True)
class WordCondition:
    """What a word-attended block reads: ``sentence`` ``(B, D)``, ``words`` ``(B, D, T)`` and
    ``lengths`` ``(B,)`` (words at positions ``>= lengths[b]`` are padding)."""

    sentence: Tensor
    words: Tensor
    lengths: Tensor

    def word_mask(self) -> Tensor:
        """``(B, T)`` bool, True on real words."""
        t = torch.arange(self.words.shape[2], device=self.words.device)
        return t[None, :] < self.lengths.to(self.words.device)[:, None]


def word_attention(queries: Tensor, words: Tensor, word_mask: Tensor) -> tuple[Tensor, Tensor]:
    r"""Scaled dot-product attention of every position over the words.

    ``queries`` ``(B, D, H, W)``, ``words`` ``(B, D, T)``, ``word_mask`` ``(B, T)`` bool ->
    ``(context (B, D, H, W), attention (B, H*W, T))``; the attention rows sum to 1 over the
    real words and are 0 on padding.
    """
    b, d, h, w = queries.shape
    q = queries.flatten(2).transpose(1, 2)                        # (B, HW, D)
    scores = q @ words / math.sqrt(d)                             # (B, HW, T)
    scores = scores.masked_fill(~word_mask[:, None, :], float("-inf"))
    attention = torch.softmax(scores, dim=-1)                     # (B, HW, T)
    context = (attention @ words.transpose(1, 2)).transpose(1, 2)  # (B, D, HW)
    return context.reshape(b, d, h, w), attention


class WordSpatialAffine(nn.Module):
    r"""$(1 + m \odot \gamma_p) \odot \mathrm{BN}(x) + m \odot \beta_p$ with per-position
    $\gamma_p, \beta_p$ from the attended words and the sentence (module docstring).

    ``forward(x, cond, mask)``: ``(B, C, H, W), WordCondition, (B, 1, H, W) or None ->
    (B, C, H, W)``. ``last_attention`` keeps the ``(B, H*W, T)`` attention of the last call.
    """

    def __init__(self, num_features: int, word_dim: int, hidden_dim: int = 128):
        super().__init__()
        self.num_features, self.word_dim = num_features, word_dim
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.query = nn.Conv2d(num_features, word_dim, 1, bias=False)
        self.gamma = self._mlp(2 * word_dim, hidden_dim, num_features)
        self.beta = self._mlp(2 * word_dim, hidden_dim, num_features)
        self.last_attention: Tensor | None = None

    @staticmethod
    def _mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
        """1x1 conv -> ReLU -> 1x1 conv, the last one starting at zero."""
        mlp = nn.Sequential(nn.Conv2d(c_in, hidden, 1), nn.ReLU(), nn.Conv2d(hidden, c_out, 1))
        nn.init.zeros_(mlp[-1].weight)
        nn.init.zeros_(mlp[-1].bias)
        return mlp

    def forward(self, x: Tensor, cond: WordCondition, mask: Tensor | None = None) -> Tensor:
        """``(B, C, H, W), WordCondition, (B, 1, H, W) or None -> (B, C, H, W)``."""
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"features must be (B, {self.num_features}, H, W), "
                             f"got {tuple(x.shape)}")
        if cond.words.shape[:2] != (x.shape[0], self.word_dim):
            raise ValueError(f"words must be ({x.shape[0]}, {self.word_dim}, T), "
                             f"got {tuple(cond.words.shape)}")
        normed = self.norm(x)
        context, self.last_attention = word_attention(self.query(normed), cond.words,
                                                      cond.word_mask())
        s = cond.sentence[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, D, H, W)
        both = torch.cat([context, s], dim=1)                            # (B, 2D, H, W)
        gamma, beta = self.gamma(both), self.beta(both)                  # (B, C, H, W) each
        if mask is not None:
            check_mask(mask, x)
            gamma, beta = mask * gamma, mask * beta
        return (1 + gamma) * normed + beta


class WordGenerator(Generator):
    r"""SSA-GAN's generator with :class:`WordSpatialAffine` in every SSACN block.

    ``forward(z, sentence, words, lengths)``: ``(B, nz), (B, D), (B, D, T), (B,) ->
    (images (B, 3, R, R), masks)``, the masks as in :class:`~t2ilib.ssagan.model.Generator`.
    """

    def __init__(self, config: SSAGANConfig, hidden_dim: int = 128):
        if config.block != "ssacn":
            raise ValueError("the word-attended generator replaces SSACN's affines: "
                             f"block must be 'ssacn', got {config.block!r}")
        super().__init__(config)
        for block in self.blocks:
            assert isinstance(block, SSACNBlock)
            block.affine0 = WordSpatialAffine(block.conv1.in_channels, config.sentence_dim,
                                              hidden_dim)
            block.affine1 = WordSpatialAffine(block.conv1.out_channels, config.sentence_dim,
                                              hidden_dim)

    def forward(self, z: Tensor, sentence: Tensor, words: Tensor | None = None,
                lengths: Tensor | None = None) -> tuple[Tensor, list[Tensor]]:
        """``(B, nz), (B, D), (B, D, T), (B,) -> ((B, 3, R, R), [(B, 1, r, r) per block])``."""
        check_generator_inputs(self.config, z, sentence)
        if words is None or lengths is None:
            raise ValueError("the word-attended generator needs the caption's words and "
                             "lengths: G(z, sentence, words, lengths)")
        cond = WordCondition(sentence, words, lengths)
        x = self.fc(z).view(z.shape[0], -1, 4, 4)  # (B, nz) -> (B, 8 ngf, 4, 4)
        logits = self.mask_predictor(x)
        masks: list[Tensor] = []
        for i, block in enumerate(self.blocks):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="nearest")
                logits = F.interpolate(logits, scale_factor=2, mode="bilinear",
                                       align_corners=True)
            mask = torch.sigmoid(logits)  # (B, 1, r, r)
            masks.append(mask)
            x, logits = block(x, cond, mask)  # the block passes cond on to its affines
        return self.to_rgb(x), masks
