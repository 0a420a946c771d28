r"""The interactive demo of notebook 10: what a model reads of a caption, and its picture.

The app's widgets are :mod:`t2ilib.apps.demo_app`; this module is what they call, so tests
drive it from Python:

* **SSA-GAN** (:func:`generate_with_masks`): a caption, a seed and a number of samples.
  The generator draws $\hat x_i = G(z_i, s)$ for the caption's sentence vector $s$ and noise
  $z_i \sim \mathcal N(0, I)$ taken from a generator seeded with the slider's value (so
  sample $i$ is the same whatever the number of samples), and shows under the images each
  stage's SSACN mask $m_k$ as a red tint $\tilde x = (1 - \alpha m_k)\,\hat x + \alpha m_k c$
  (:func:`t2ilib.viz.mask_overlay`); once the masks are measured
  (:func:`t2ilib.apps.demo_models.measure_masks`), only the stage that localises the bird
  best, labelled with its IoU.
Captions go through the models' vocabulary (:func:`check_caption`): unknown words are
dropped *and shown* as a warning in the UI (the vocabulary of AttnGAN-style models has no
``<unk>``, so a silently dropped colour word would look like a model failure); a caption
the model cannot read at all (empty, no known word) gives an error message in the UI,
never a traceback.

The models come from notebooks 07 (SSA-GAN) and 09 (SISGAN), through
:mod:`t2ilib.apps.demo_models`.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from t2ilib.apps.demo_models import DemoModel
from t2ilib.apps.demo_render import CELL, render_rows
from t2ilib.data.cub import WORDS_NUM
from t2ilib.ssagan.sampling import generate_from_ids
from t2ilib.text.vocab import Vocabulary, tokenize
from t2ilib.viz import mask_overlay

__all__ = ["DEFAULT_CAPTION", "CaptionCheck", "check_caption", "cut_words", "caption_notes",
           "SSAGANResult", "generate_with_masks"]

DEFAULT_CAPTION = "this bird has a red body and blue wings"


# ------------------------------------------------------------------------- captions

@dataclass(frozen=True)
class CaptionCheck:
    """What the model will read of a caption.

    ``ids``: the known words' ids, at most ``words_num`` of them (what the text encoder
    sees); ``unknown``: words not in the vocabulary (dropped); ``truncated``: known words
    cut beyond ``words_num``; ``error``: why the caption cannot be used (``None`` if it can).
    """

    ids: list[int]
    unknown: list[str]
    truncated: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_caption(vocab: Vocabulary, caption: str, words_num: int = WORDS_NUM) -> CaptionCheck:
    """Read ``caption`` as the model will: tokenize, drop unknown words, keep ``words_num``.

    Never raises for a bad caption: the vocabulary's ``ValueError`` (empty caption, no word,
    no known word) becomes ``error`` and its unknown-word warning becomes ``unknown``.
    """
    if not isinstance(caption, str):
        return CaptionCheck([], [], 0, f"a caption must be text, got {type(caption).__name__}")
    unknown = [t for t in tokenize(caption) if t not in vocab]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported as `unknown` instead
        try:
            ids = vocab.encode(caption)
        except ValueError as err:
            return CaptionCheck([], unknown, 0, str(err))
    return CaptionCheck(ids[:words_num], unknown, max(0, len(ids) - words_num), None)


def cut_words(vocab: Vocabulary, caption: str, words_num: int = WORDS_NUM) -> list[str]:
    """The known words of ``caption`` after the first ``words_num``: what the model never
    reads (the CLI and the demo name them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            ids = vocab.encode(caption)
        except ValueError:
            return []
    return [vocab.idx2word[i] for i in ids[words_num:]]


def caption_notes(vocab: Vocabulary, caption: str, words_num: int = WORDS_NUM) -> list[str]:
    """Plain-text warnings about how ``caption`` is read (unknown words, words cut); raises
    ``ValueError`` for a caption the model cannot read at all."""
    check = check_caption(vocab, caption, words_num)
    if not check.ok:
        raise ValueError(f"caption {caption!r}: {check.error}")
    notes = []
    if check.unknown:
        notes.append(f"unknown word(s) ignored: {', '.join(check.unknown)} (not among the "
                     f"model's {len(vocab)} words)")
    if check.truncated:
        notes.append(f"only the first {len(check.ids)} known words are read; dropped: "
                     f"{' '.join(cut_words(vocab, caption, words_num))}")
    return notes


# ------------------------------------------------------------------------- generating

@dataclass
class SSAGANResult:
    """One press of the demo: the caption's reading and, if it was usable, the pictures.

    ``images`` ``(B, 3, R, R)`` in [-1, 1]; ``masks`` one ``(B, 1, r_k, r_k)`` per SSACN
    stage (4 px up to R); ``png`` the rendered rows; ``seconds`` the generation time.
    """

    check: CaptionCheck
    images: Tensor | None = None
    masks: list[Tensor] = field(default_factory=list)
    png: bytes = b""
    seconds: float = 0.0


@torch.no_grad()
def generate_with_masks(model: DemoModel, caption: str, seed: int, n_samples: int,
                        show_masks: bool = True, cell: int = CELL) -> SSAGANResult:
    """Generate ``n_samples`` images of ``caption`` with noise seeded by ``seed``; render them.

    Noise: ``torch.randn(n, nz)`` from a generator seeded with ``seed``, so sample ``i`` does
    not depend on ``n``. A caption the model cannot read returns a result with
    ``check.error`` set and no images.
    """
    check = check_caption(model.vocab, caption)
    if not check.ok:
        return SSAGANResult(check)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    start = time.perf_counter()
    g = model.generator
    ids = torch.tensor([check.ids], dtype=torch.long).repeat(n_samples, 1)   # (B, T)
    lengths = torch.full((n_samples,), len(check.ids), dtype=torch.long)     # (B,)
    z = torch.randn(n_samples, g.config.nz, generator=torch.Generator().manual_seed(seed))
    images, masks = generate_from_ids(g, model.text_encoder, ids, lengths, z)  # CPU, float
    rows, labels = [images], ["generated"]
    best = model.best_mask_stage()
    if show_masks and best is not None:  # measured: the stage that localises the bird best
        k, iou, disc = best
        rows.append(mask_overlay(images, masks[k]))
        labels.append(f"mask {masks[k].shape[-1]} px\nIoU {iou:.2f}\n(disc {disc:.2f})")
    elif show_masks:
        rows += [mask_overlay(images, m) for m in masks]
        labels += [f"mask {m.shape[-1]} px" for m in masks]
    png = render_rows(rows, labels, cell)
    return SSAGANResult(check, images, masks, png, time.perf_counter() - start)
