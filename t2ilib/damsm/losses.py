r"""DAMSM matching losses: word-to-region attention, word and sentence losses (AttnGAN, §3.3-3.4).

AttnGAN (Xu et al., CVPR 2018) scores a caption :math:`Q` against an image :math:`D` at two
levels; SSA-GAN (Liao et al., CVPR 2022) adds these losses to its generator loss.

**Word level.** Words :math:`e \in \mathbb{R}^{D \times T}`, regions :math:`v \in
\mathbb{R}^{D \times L}` (:math:`L = h w`):

.. math::

    s = e^\top v \;(T \times L), \qquad
    \bar s_{ij} = \frac{\exp s_{ij}}{\sum_k \exp s_{kj}} \quad\text{(Eq. 8: over words)}

    \alpha_{ij} = \frac{\exp(\gamma_1 \bar s_{ij})}{\sum_k \exp(\gamma_1 \bar s_{ik})}, \qquad
    c_i = \sum_j \alpha_{ij} v_j \quad\text{(Eq. 9: over regions)}

    R(Q, D) = \log \sum_{i=1}^{T} \exp\big(\gamma_2 \cos(c_i, e_i)\big) \quad\text{(Eq. 10)}

The paper's Eq. 10 raises the sum to the power :math:`1/\gamma_2`; AttnGAN's and SSA-GAN's
code leave that out, and so do we.

**Sentence level.** :math:`R(Q, D) = \cos(\bar v, \bar e)` for the global image code and the
sentence vector.

**Loss.** In a batch of :math:`B` matching pairs, :math:`S_{ab} = \gamma_3 R(Q_b, D_a)` for
image :math:`a` and caption :math:`b`. Pairs of *different* images of the *same class* are
not negatives: :math:`S_{ab} = -\infty` there (:math:`a \ne b`). Then

.. math::

    L_0 = -\frac1B \sum_a \log \frac{e^{S_{aa}}}{\sum_b e^{S_{ab}}}, \qquad
    L_1 = -\frac1B \sum_b \log \frac{e^{S_{bb}}}{\sum_a e^{S_{ab}}}

(each image picks its caption; each caption picks its image; Eq. 11-13), and
:math:`L_{DAMSM} = L^w_0 + L^w_1 + L^s_0 + L^s_1`.

Smoothing factors: SSA-GAN uses :math:`\gamma_1 = 5, \gamma_2 = 5, \gamma_3 = 10`
(:data:`SSAGAN_GAMMAS`); AttnGAN pretrained its DAMSM with :math:`\gamma_1 = 4`
(:data:`ATTNGAN_GAMMAS`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

__all__ = [
    "DAMSMGammas",
    "SSAGAN_GAMMAS",
    "ATTNGAN_GAMMAS",
    "DAMSMLosses",
    "cosine",
    "word_mask",
    "func_attention",
    "word_attention_maps",
    "word_scores",
    "sentence_scores",
    "matching_loss",
    "words_loss",
    "sentence_loss",
    "check_damsm_inputs",
    "damsm_loss",
]


@dataclass(frozen=True)
class DAMSMGammas:
    """The DAMSM smoothing factors."""

    gamma1: float = 5.0  # sharpness of word-to-region attention (Eq. 9)
    gamma2: float = 5.0  # how much the best-matching words dominate R(Q, D) (Eq. 10)
    gamma3: float = 10.0  # inverse temperature of the batch softmax (Eq. 11)


SSAGAN_GAMMAS = DAMSMGammas(gamma1=5.0, gamma2=5.0, gamma3=10.0)
ATTNGAN_GAMMAS = DAMSMGammas(gamma1=4.0, gamma2=5.0, gamma3=10.0)


def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = -1, eps: float = 1e-8) -> torch.Tensor:
    """Cosine similarity along ``dim`` (broadcasting), ``a.b / max(|a| |b|, eps)`` as in AttnGAN."""
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim)).clamp(min=eps)


def word_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """``(B,)`` lengths -> ``(B, T)`` bool, True at the first ``lengths[b]`` positions."""
    return torch.arange(max_len, device=lengths.device) < lengths[:, None]  # (B, T)


def func_attention(
    words: torch.Tensor, regions: torch.Tensor, mask: torch.Tensor, gamma1: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Word-to-region attention (Eq. 8-9); leading dimensions ``*`` broadcast.

    ``words (*, D, T)``, ``regions (*, D, L)``, ``mask (*, T)`` (False = padding) ->
    region context ``c (*, D, T)`` and attention ``alpha (*, T, L)``. Padded words take no
    part in the normalisation over words; their own outputs are meaningless.
    """
    # einsum, unlike `@`, turns broadcast leading dimensions into one large matrix product
    # BEGIN EXERCISE 02:nb02_func_attention
    sim = torch.einsum("...dt,...dl->...tl", words, regions)  # (*, T, L): s = e^T v
    sim = sim.masked_fill(~mask[..., None], float("-inf"))
    sim = sim.softmax(dim=-2)  # Eq. 8: normalise over the words, for each region
    attn = (gamma1 * sim).softmax(dim=-1)  # Eq. 9: attention over the regions, for each word
    context = torch.einsum("...dl,...tl->...dt", regions, attn)  # (*, D, T): c_i = sum_j a_ij v_j
    return context, attn
    # END EXERCISE


def word_scores(
    words: torch.Tensor,
    lengths: torch.Tensor,
    regions: torch.Tensor,
    gamma1: float = SSAGAN_GAMMAS.gamma1,
    gamma2: float = SSAGAN_GAMMAS.gamma2,
) -> torch.Tensor:
    """Word-level match of every image with every caption, Eq. 8-10.

    ``words (Bc, D, T)``, ``lengths (Bc,)`` (on the words' device), ``regions (Bi, D, h, w)``
    -> ``(Bi, Bc)``, entry ``[a, b] = R(caption b, image a)``.
    """
    mask = word_mask(lengths, words.shape[-1])  # (Bc, T)
    e = words[None]  # (1, Bc, D, T)
    v = regions.flatten(2)[:, None]  # (Bi, 1, D, L)
    context, _ = func_attention(e, v, mask[None], gamma1)  # (Bi, Bc, D, T)
    rel = cosine(context, e, dim=2)  # (Bi, Bc, T): R(c_i, e_i)
    rel = (gamma2 * rel).masked_fill(~mask[None], float("-inf"))
    return torch.logsumexp(rel, dim=-1)  # (Bi, Bc): log sum_i exp(gamma2 R(c_i, e_i))


def sentence_scores(image_codes: torch.Tensor, sentences: torch.Tensor) -> torch.Tensor:
    """Sentence-level match: ``(Bi, D)``, ``(Bc, D)`` -> ``(Bi, Bc)`` cosines."""
    return cosine(image_codes[:, None, :], sentences[None, :, :], dim=-1)  # (Bi, Bc)


def word_attention_maps(
    words: torch.Tensor,
    lengths: torch.Tensor,
    regions: torch.Tensor,
    gamma1: float = SSAGAN_GAMMAS.gamma1,
) -> torch.Tensor:
    """Attention of each word of caption ``b`` over the regions of image ``b`` (matching pairs).

    ``words (B, D, T)``, ``lengths (B,)`` (on the words' device), ``regions (B, D, h, w)`` ->
    ``(B, T, h, w)``; rows of padded words are meaningless.
    """
    mask = word_mask(lengths, words.shape[-1])  # (B, T)
    _, attn = func_attention(words, regions.flatten(2), mask, gamma1)  # (B, T, h*w)
    return attn.unflatten(-1, regions.shape[-2:])  # (B, T, h, w)


def matching_loss(
    scores: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gamma3: float = SSAGAN_GAMMAS.gamma3,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Batch-softmax losses (Eq. 11-13) from a ``(B, B)`` score matrix whose diagonal holds the
    matching pairs.

    ``scores[a, b]`` is image ``a`` vs caption ``b``; ``class_ids (B,)`` on the same device,
    or None. Scaled by ``gamma3``; entries with ``class_ids[a] == class_ids[b]`` and
    ``a != b`` are excluded. Returns ``(L0, L1)``: cross-entropy over each row (image picks
    caption) and over each column (caption picks image).
    """
    # BEGIN EXERCISE 02:nb02_matching_loss
    logits = gamma3 * scores  # (B, B)
    if class_ids is not None:
        same = class_ids[:, None] == class_ids[None, :]  # (B, B)
        same.fill_diagonal_(False)  # a pair is never its own negative
        logits = logits.masked_fill(same, float("-inf"))
    labels = torch.arange(len(scores), device=scores.device)  # the diagonal
    return F.cross_entropy(logits, labels), F.cross_entropy(logits.t(), labels)
    # END EXERCISE


def words_loss(
    regions: torch.Tensor,
    words: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gammas: DAMSMGammas = SSAGAN_GAMMAS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAMSM word loss ``(L^w_0, L^w_1)`` for ``B`` matching pairs.

    ``regions (B, D, h, w)``, ``words (B, D, T)``, ``lengths (B,)``, ``class_ids (B,)`` or None.
    """
    scores = word_scores(words, lengths, regions, gammas.gamma1, gammas.gamma2)  # (B, B)
    return matching_loss(scores, class_ids, gammas.gamma3)


def sentence_loss(
    image_codes: torch.Tensor,
    sentences: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gammas: DAMSMGammas = SSAGAN_GAMMAS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DAMSM sentence loss ``(L^s_0, L^s_1)``: ``image_codes (B, D)``, ``sentences (B, D)``."""
    return matching_loss(sentence_scores(image_codes, sentences), class_ids, gammas.gamma3)


@dataclass
class DAMSMLosses:
    """The four DAMSM terms (scalars); ``total = w0 + w1 + s0 + s1``."""

    w0: torch.Tensor  # words: each image picks its caption
    w1: torch.Tensor  # words: each caption picks its image
    s0: torch.Tensor  # sentence: each image picks its caption
    s1: torch.Tensor  # sentence: each caption picks its image

    @property
    def total(self) -> torch.Tensor:
        return self.w0 + self.w1 + self.s0 + self.s1


def check_damsm_inputs(
    regions: torch.Tensor,
    image_codes: torch.Tensor,
    words: torch.Tensor,
    sentences: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check the inputs of :func:`damsm_loss` (one batch size ``B``, ``class_ids (B,)``);
    return ``lengths`` and ``class_ids`` as tensors on the device of ``words``."""
    lengths = torch.as_tensor(lengths).to(words.device)  # (B,)
    batch = regions.shape[0]
    if not (batch == image_codes.shape[0] == words.shape[0] == sentences.shape[0]
            == lengths.shape[0]):
        raise ValueError(
            "regions, image_codes, words, sentences and lengths need the same batch size"
        )
    if class_ids is not None:
        class_ids = torch.as_tensor(class_ids).to(words.device)  # (B,)
        if class_ids.shape != (batch,):
            raise ValueError(f"class_ids must have shape ({batch},), got {tuple(class_ids.shape)}")
    return lengths, class_ids


def damsm_loss(
    regions: torch.Tensor,
    image_codes: torch.Tensor,
    words: torch.Tensor,
    sentences: torch.Tensor,
    lengths: torch.Tensor,
    class_ids: torch.Tensor | None = None,
    gammas: DAMSMGammas = SSAGAN_GAMMAS,
) -> DAMSMLosses:
    """All four DAMSM terms for ``B`` matching (image, caption) pairs.

    ``regions (B, D, h, w)`` and ``image_codes (B, D)`` from an image encoder; ``words
    (B, D, T)``, ``sentences (B, D)`` and ``lengths (B,)`` from the text encoder; ``class_ids
    (B,)`` or None. The inputs are checked by :func:`check_damsm_inputs`.
    """
    lengths, class_ids = check_damsm_inputs(regions, image_codes, words, sentences, lengths,
                                            class_ids)
    w0, w1 = words_loss(regions, words, lengths, class_ids, gammas)
    s0, s1 = sentence_loss(image_codes, sentences, class_ids, gammas)
    return DAMSMLosses(w0, w1, s0, s1)
