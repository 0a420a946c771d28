r"""Does the discriminator read the caption? Ranking matching above mismatched captions.

SSA-GAN's generator learns *what the text says* from two teachers: the conditional
discriminator $D(x, s)$, trained to reject real images paired with another image's caption
(the matching-aware "mismatch" term), and the DAMSM term. A discriminator that ignores
the sentence still separates real from fake, and then only the DAMSM teaches colours.

Two views of how much $D$ uses the text:

* **caption ranking** (:func:`caption_ranking`): on held-out real images $x_i$, the share
  with $D(x_i, s_i) > D(x_i, s_{i-1})$, its own caption scored above the previous image's.
  A text-blind $D$ gives the same logit to both: 0.5 (ties count half). Some mismatched
  captions are still true of the image (a caption that only says "a small bird" fits every
  small bird); :func:`consistent_fraction` counts them on ToyBirds, so a perfect reader
  scores $1 - c/2$, not 1.
* **the loss log**: with the hinge terms $L_\text{real} = \mathbb E[\max(0, 1 - D(x, s))]$ and
  $L_\text{mis} = \mathbb E[\max(0, 1 + D(x_i, s_{i+1}))]$, a text-blind $D$ whose logits
  stay in $[-1, 1]$ has $L_\text{real} + L_\text{mis} = (1 - \ell) + (1 + \ell) = 2$; a $D$
  that reads the text pushes the sum towards 0 (:func:`text_blind_gap`).

Used by ``notebooks/07_train_ssagan`` (section 9).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from t2ilib.data.cub import read_split
from t2ilib.data.toybirds import load_groundtruth
from t2ilib.metrics.rprecision import encode_captions

__all__ = ["caption_ranking", "consistent_fraction", "text_blind_gap"]


@torch.no_grad()
def caption_ranking(discriminator: torch.nn.Module, text_encoder: torch.nn.Module,
                    images: Tensor, captions: Sequence[Sequence[int]], words_num: int = 18,
                    batch_size: int = 200, device: torch.device | str = "cpu") -> float:
    r"""Share of images whose own caption $D$ scores above the previous image's caption.

    ``images`` ``(N, 3, R, R)`` in [-1, 1] (real, held out), ``captions`` ``N`` token-id
    lists (caption ``i`` describes image ``i``); ``discriminator(images, sentences) -> (B,)``
    and ``text_encoder`` with the :class:`~t2ilib.text.encoder.TextEncoder` interface.
    Image ``i`` meets caption ``i - 1`` (image 0 the last one). Ties count half. Both
    networks are left in eval mode. Returns a float in [0, 1].
    """
    if len(images) != len(captions) or len(images) < 2:
        raise ValueError(f"need N >= 2 images and as many captions, got {len(images)} images "
                         f"and {len(captions)} captions")
    sentences = encode_captions(text_encoder, captions, words_num, device=device)  # (N, D)
    others = sentences.roll(1, dims=0)  # row i <- caption of image i - 1
    discriminator.eval()
    wins = 0.0
    for a in range(0, len(images), batch_size):
        x = images[a:a + batch_size].to(device)
        own = discriminator(x, sentences[a:a + batch_size].to(device)).float()  # (b,)
        other = discriminator(x, others[a:a + batch_size].to(device)).float()  # (b,)
        wins += float((own > other).sum() + 0.5 * (own == other).sum())
    return wins / len(images)


def consistent_fraction(root: str | os.PathLike[str], split: str, caption_index: Sequence[int]
                        ) -> float:
    """ToyBirds: share of images ``i`` whose mismatched caption (the one of image ``i - 1``,
    number ``caption_index[i - 1]``) is nevertheless true of image ``i``.

    ``caption_index[i]`` is which of image ``i``'s captions was used (0..9). A perfect
    caption reader ranks these as ties, so its :func:`caption_ranking` is ``1 - c / 2``.
    """
    keys, _ = read_split(root, split)
    n = len(caption_index)
    if not 2 <= n <= len(keys):
        raise ValueError(f"caption_index must have 2..{len(keys)} entries, got {n}")
    truth = load_groundtruth(root)
    consistent = 0
    for i in range(n):
        j = (i - 1) % n
        named = truth.mentions[keys[j]][caption_index[j]]
        consistent += all(truth.attributes[keys[i]][a] == truth.attributes[keys[j]][a]
                          for a in named)
    return consistent / n


def text_blind_gap(d_real: Sequence[float], d_mismatch: Sequence[float]) -> list[float]:
    r"""$2 - (L_\text{real} + L_\text{mis})$ per loss-log row: about 0 for a text-blind D,
    up to 2 for one that separates every matching pair from every mismatched one."""
    if len(d_real) != len(d_mismatch):
        raise ValueError(f"{len(d_real)} d_real values but {len(d_mismatch)} d_mismatch")
    return [2.0 - (r + m) for r, m in zip(d_real, d_mismatch)]
