r"""Word-attended SSACN: each position of the image takes its affine from the words it attends to.

SSA-GAN's SSACN (:mod:`t2ilib.ssagan.ssacn`) modulates every masked position with the *same*
$\gamma(s), \beta(s)$ from the sentence vector $s$: where the mask is on, "a red body and blue
wings" asks for red and blue alike. Binding a colour to its part needs the affine to differ
between positions. Here each position $p$ of the features $x \in \mathbb R^{C \times H \times W}$
attends over the caption's words $w_1 \dots w_T$ (the DAMSM text encoder's bi-LSTM features,
which already carry their neighbours: "red" in "a red body" knows "body"), as AttnGAN's
word-region attention does in the other direction:

$$q_p = W_q\,\mathrm{BN}(x)_p, \quad k_t = W_k w_t, \qquad
\alpha_{p,t} = \frac{\exp(q_p^\top k_t / \sqrt{d_k})\,[t < L]}
                     {\sum_{t' < L} \exp(q_p^\top k_{t'} / \sqrt{d_k})}, \qquad
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

__all__ = ["WordCondition", "real_words", "word_attention", "WordSpatialAffine", "WordGenerator"]


@dataclass(frozen=True)
class WordCondition:
    """What a word-attended block reads: ``sentence`` ``(B, D)``, ``words`` ``(B, D, T)`` and
    ``lengths`` ``(B,)`` (words at positions ``>= lengths[b]`` are padding)."""

    sentence: Tensor
    words: Tensor
    lengths: Tensor

    def word_mask(self) -> Tensor:
        """``(B, T)`` bool, True on real words."""
        return real_words(self.lengths, self.words)


def real_words(lengths: Tensor, words: Tensor) -> Tensor:
    """``(B,)`` caption lengths, ``(B, D, T)`` words -> ``(B, T)`` bool, True on real words
    (positions ``t < lengths[b]``), on the words' device."""
    t = torch.arange(words.shape[2], device=words.device)
    return t[None, :] < lengths.to(words.device)[:, None]


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

    The first layer of both MLPs, $W^{(1)} [c_p; s] = W^{(1)}_c c_p + W^{(1)}_s s$, is computed
    without forming $c_p$: since the attention weights sum to one, $W^{(1)}_c c_p =
    \sum_t \alpha_{p,t} W^{(1)}_c w_t$, so the words are projected once (``word_in``: $T$
    vectors, not $H W$) and the sentence once (``sentence_in``). Same numbers, a fraction of
    the work at 32 px.
    """

    def __init__(self, num_features: int, word_dim: int, hidden_dim: int = 64,
                 key_dim: int = 64):
        super().__init__()
        self.num_features, self.word_dim, self.hidden_dim = num_features, word_dim, hidden_dim
        self.norm = nn.BatchNorm2d(num_features, affine=False)
        self.query = nn.Conv2d(num_features, key_dim, 1, bias=False)  # W_q
        self.key = nn.Linear(word_dim, key_dim, bias=False)  # W_k
        self.word_in = nn.Linear(word_dim, 2 * hidden_dim, bias=False)  # W_c of gamma, beta
        self.sentence_in = nn.Linear(word_dim, 2 * hidden_dim)  # W_s of gamma, beta (+ bias)
        self.gamma_out = nn.Conv2d(hidden_dim, num_features, 1)
        self.beta_out = nn.Conv2d(hidden_dim, num_features, 1)
        for last in (self.gamma_out, self.beta_out):  # start as BN(x), like SSACN
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
        self.last_attention: Tensor | None = None

    def affine(self, normed: Tensor, cond: WordCondition) -> tuple[Tensor, Tensor]:
        r"""$\gamma_p, \beta_p$: ``(B, C, H, W), WordCondition -> 2 x (B, C, H, W)``."""
        b, _, h, w = normed.shape
        keys = self.key(cond.words.transpose(1, 2)).transpose(1, 2)  # (B, key_dim, T)
        _, self.last_attention = word_attention(self.query(normed), keys,
                                                cond.word_mask())  # (B, HW, T)
        per_word = self.word_in(cond.words.transpose(1, 2))     # (B, T, 2 hidden)
        hidden = self.last_attention @ per_word + self.sentence_in(cond.sentence)[:, None]
        hidden = F.relu(hidden).transpose(1, 2).reshape(b, 2 * self.hidden_dim, h, w)
        gamma_h, beta_h = hidden.chunk(2, dim=1)                # (B, hidden, H, W) each
        return self.gamma_out(gamma_h), self.beta_out(beta_h)

    def forward(self, x: Tensor, cond: WordCondition, mask: Tensor | None = None) -> Tensor:
        """``(B, C, H, W), WordCondition, (B, 1, H, W) or None -> (B, C, H, W)``."""
        if x.ndim != 4 or x.shape[1] != self.num_features:
            raise ValueError(f"features must be (B, {self.num_features}, H, W), "
                             f"got {tuple(x.shape)}")
        if cond.words.shape[:2] != (x.shape[0], self.word_dim):
            raise ValueError(f"words must be ({x.shape[0]}, {self.word_dim}, T), "
                             f"got {tuple(cond.words.shape)}")
        normed = self.norm(x)
        gamma, beta = self.affine(normed, cond)
        if mask is not None:
            check_mask(mask, x)
            gamma, beta = mask * gamma, mask * beta
        return (1 + gamma) * normed + beta


class WordGenerator(Generator):
    r"""SSA-GAN's generator with :class:`WordSpatialAffine` in every SSACN block.

    ``forward(z, sentence, words, lengths)``: ``(B, nz), (B, D), (B, D, T), (B,) ->
    (images (B, 3, R, R), masks)``, the masks as in :class:`~t2ilib.ssagan.model.Generator`.
    """

    reads_words = True  # generate_from_ids passes it the words and lengths too

    def __init__(self, config: SSAGANConfig, hidden_dim: int = 64, key_dim: int = 64):
        if config.block != "ssacn":
            raise ValueError("the word-attended generator replaces SSACN's affines: "
                             f"block must be 'ssacn', got {config.block!r}")
        super().__init__(config)
        for block in self.blocks:
            assert isinstance(block, SSACNBlock)
            block.affine0 = WordSpatialAffine(block.conv1.in_channels, config.sentence_dim,
                                              hidden_dim, key_dim)
            block.affine1 = WordSpatialAffine(block.conv1.out_channels, config.sentence_dim,
                                              hidden_dim, key_dim)

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
