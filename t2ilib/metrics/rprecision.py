r"""R-precision: can the DAMSM pick an image's caption out of 100? (AttnGAN §5; DM-GAN's code).

For every (usually generated) image :math:`x_i` with ground-truth caption :math:`q_i`:

1. draw 99 *mismatched* captions, from images of classes other than :math:`x_i`'s;
2. encode the 100 candidates with the DAMSM text encoder (sentence vectors :math:`\bar e`)
   and the image with the DAMSM image encoder (global code :math:`\bar v`);
3. rank the candidates by :math:`\cos(\bar v_i, \bar e)`; a *hit* when :math:`q_i` ranks first
   (a tie with a mismatched caption counts as a miss).

The hits are shuffled and split into folds (DM-GAN: 30,000 images in 10 folds of 3,000);
R-precision is the mean of the fold accuracies :math:`\pm` their standard deviation
(population std, ``np.std``). Chance level is :math:`1/100`.

Two caveats the course repeats: the judge is a DAMSM, and if the generator was trained
with the same DAMSM the score is optimistic; and with fewer than 99 captions of other
classes available (tiny data sets) there are fewer candidates, chance rises to
:math:`1/K`, and :class:`RPrecision` says so in its ``note``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from t2ilib.runtime import progress

__all__ = [
    "RPrecision",
    "sample_mismatched",
    "r_precision_hits",
    "fold_accuracies",
    "r_precision",
    "encode_captions",
    "encode_images",
    "dataset_r_precision",
]


@dataclass
class RPrecision:
    """The result of :func:`r_precision`."""

    mean: float  # mean over folds of the top-1 accuracy
    std: float  # population std over folds
    n_images: int
    n_candidates: int  # per image: 1 true caption + (n_candidates - 1) mismatched ones
    n_folds: int
    hits: torch.Tensor  # (N,) bool, in the input order
    note: str = ""  # non-empty when the protocol had to be shrunk (few candidates or images)

    @property
    def chance(self) -> float:
        """Accuracy of a random ranking: ``1 / n_candidates``."""
        return 1.0 / self.n_candidates

    def __str__(self) -> str:
        text = (
            f"R-precision {100 * self.mean:.2f} ± {100 * self.std:.2f} % "
            f"({self.n_images} images, {self.n_candidates} candidates, {self.n_folds} folds; "
            f"chance {100 * self.chance:.2g} %)"
        )
        return text + (f"\nnote: {self.note}" if self.note else "")


def sample_mismatched(
    image_classes: torch.Tensor,
    caption_classes: torch.Tensor,
    n: int = 99,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, int]:
    """For each image, ``k`` distinct caption indices of *other* classes, without replacement.

    ``image_classes (N,)``, ``caption_classes (M,)`` (CPU) -> ``(indices (N, k), k)`` with
    ``k = min(n, fewest other-class captions of any image)``.
    """
    out = torch.empty(len(image_classes), n, dtype=torch.long)  # (N, n)
    k = n
    for c in image_classes.unique().tolist():
        rows = (image_classes == c).nonzero().squeeze(1)  # images of class c
        pool = (caption_classes != c).nonzero().squeeze(1)  # captions of other classes
        k = min(k, len(pool))
        order = torch.rand(len(rows), len(pool), generator=generator).argsort(dim=1)
        take = min(n, len(pool))  # a random permutation of the pool per image, cut
        out[rows, :take] = pool[order[:, :take]]  # (n_c, take)
    return out[:, :k], k


def r_precision_hits(
    image_codes: torch.Tensor, true_sentences: torch.Tensor, negatives: torch.Tensor
) -> torch.Tensor:
    """Does each image rank its true caption first?

    ``image_codes (N, D)``, ``true_sentences (N, D)``, ``negatives (N, K, D)`` (sentence
    vectors of each image's mismatched captions) -> ``(N,)`` bool; a tie is a miss.
    """
    img = F.normalize(image_codes, dim=-1)  # (N, D)
    true_score = (img * F.normalize(true_sentences, dim=-1)).sum(-1)  # (N,): cos(v, e_true)
    neg_score = torch.einsum("nd,nkd->nk", img, F.normalize(negatives, dim=-1))  # (N, K)
    return true_score > neg_score.max(dim=1).values  # (N,)


def fold_accuracies(
    hits: torch.Tensor, n_folds: int, generator: torch.Generator | None = None
) -> torch.Tensor:
    """``(N,)`` bool hits, shuffled and split into ``n_folds`` folds -> ``(n_folds,)``
    accuracies (the folds differ in size by at most one)."""
    shuffled = hits[torch.randperm(len(hits), generator=generator)].float()  # (N,)
    return torch.stack([fold.mean() for fold in shuffled.tensor_split(n_folds)])


def r_precision(
    image_codes: torch.Tensor,
    true_sentences: torch.Tensor,
    image_classes: torch.Tensor,
    pool_sentences: torch.Tensor,
    pool_classes: torch.Tensor,
    n_candidates: int = 100,
    n_folds: int = 10,
    generator: torch.Generator | None = None,
) -> RPrecision:
    """R-precision from features: checks, then :func:`sample_mismatched`,
    :func:`r_precision_hits` and :func:`fold_accuracies` on the CPU.

    ``image_codes (N, D)``: global image codes; ``true_sentences (N, D)``: the sentence vector
    of each image's ground-truth caption; ``image_classes (N,)``; ``pool_sentences (M, D)`` and
    ``pool_classes (M,)``: the captions mismatched ones are drawn from. ``generator`` fixes
    the draws and the fold shuffle. With fewer images than folds, or fewer other-class
    captions than ``n_candidates - 1``, the protocol shrinks and ``note`` says so.
    """
    n = image_codes.shape[0]
    if true_sentences.shape != image_codes.shape or image_classes.shape != (n,):
        raise ValueError(
            f"image_codes {tuple(image_codes.shape)}, true_sentences "
            f"{tuple(true_sentences.shape)} and image_classes {tuple(image_classes.shape)} "
            f"do not fit together"
        )
    if pool_sentences.shape[0] != pool_classes.shape[0]:
        raise ValueError("pool_sentences and pool_classes differ in length")
    if n == 0 or n_candidates < 2 or n_folds < 1:
        raise ValueError("need at least one image, n_candidates >= 2 and n_folds >= 1")
    image_classes = torch.as_tensor(image_classes).cpu()
    pool_classes = torch.as_tensor(pool_classes).cpu()
    notes = []
    neg, k = sample_mismatched(image_classes, pool_classes, n_candidates - 1, generator)
    if k == 0:
        raise ValueError("no caption of another class to compare with: R-precision is undefined")
    if k < n_candidates - 1:
        notes.append(
            f"only {k + 1} candidates per image (fewer than {n_candidates}): too few "
            f"captions of other classes; chance is {100 / (k + 1):.2g} %, not "
            f"{100 / n_candidates:.2g} %"
        )
    folds = min(n_folds, n)
    if folds < n_folds:
        notes.append(f"only {n} images: {folds} folds instead of {n_folds}")
    pool = pool_sentences.float().cpu()  # (M, D)
    hits = r_precision_hits(image_codes.float().cpu(), true_sentences.float().cpu(), pool[neg])
    fold_acc = fold_accuracies(hits, folds, generator)  # (folds,)
    note = "; ".join(notes)
    if note:
        warnings.warn(f"R-precision: {note}", stacklevel=2)
    return RPrecision(
        mean=fold_acc.mean().item(),
        std=fold_acc.std(correction=0).item(),
        n_images=n,
        n_candidates=k + 1,
        n_folds=folds,
        hits=hits,
        note=note,
    )


@torch.no_grad()
def encode_captions(
    text_encoder: nn.Module,
    captions: Sequence[Sequence[int]],
    words_num: int = 18,
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Sentence vectors of token-id lists: ``M`` captions -> ``(M, D)`` (eval mode, no dropout).

    Captions longer than ``words_num`` keep their first ``words_num`` tokens (AttnGAN keeps
    a random ordered subset; a fixed rule keeps the metric deterministic).
    """
    text_encoder.eval()
    out = []
    for start in range(0, len(captions), batch_size):
        chunk = [list(c)[:words_num] for c in captions[start : start + batch_size]]
        if any(len(c) == 0 for c in chunk):
            raise ValueError("empty caption")
        lengths = torch.tensor([len(c) for c in chunk])
        ids = torch.zeros(len(chunk), words_num, dtype=torch.long)  # (b, T), 0 = padding
        for row, c in enumerate(chunk):
            ids[row, : len(c)] = torch.tensor(c)
        out.append(text_encoder(ids.to(device), lengths)[1].cpu())  # (b, D)
    if not out:
        raise ValueError("no captions")
    return torch.cat(out)


@torch.no_grad()
def encode_images(
    image_encoder: nn.Module,
    images: torch.Tensor,
    batch_size: int = 128,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Global codes of ``(N, 3, H, W)`` images in ``[-1, 1]`` -> ``(N, D)`` (eval mode)."""
    image_encoder.eval()
    return torch.cat(
        [
            image_encoder(images[i : i + batch_size].to(device))[1].cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


def dataset_r_precision(
    text_encoder: nn.Module,
    image_encoder: nn.Module,
    dataset,
    *,
    images: torch.Tensor | None = None,
    n_candidates: int = 100,
    n_folds: int = 10,
    rounds: int = 1,
    seed: int = 0,
    device: torch.device | str = "cpu",
    max_images: int | None = None,
) -> RPrecision:
    """R-precision over a captioned data set (real images unless ``images`` is given).

    ``dataset`` follows :class:`t2ilib.data.cub.CUBDataset`'s interface: ``len``, items
    ``(image, caption, length, class_id, key)``, ``class_ids``, ``captions_of(i)`` and
    ``words_num``. ``images (N, 3, H, W)`` replaces the data set's images (e.g. images
    generated from its captions, in the same order). Each of ``rounds`` passes draws one
    ground-truth caption per image (DM-GAN loops the test set until 30,000 images).
    The mismatched captions come from all captions of the data set.
    """
    g = torch.Generator().manual_seed(seed)
    n = len(dataset) if max_images is None else min(len(dataset), max_images)
    if images is None:
        images = torch.stack(
            [dataset[i][0] for i in progress(range(n), desc="images", leave=False)]
        )
    images = images[:n]
    words_num = getattr(dataset, "words_num", 18)
    per_image = [dataset.captions_of(i) for i in range(n)]
    flat = [c for caps in per_image for c in caps]  # (M,) all captions
    flat_classes = torch.tensor(
        [int(dataset.class_ids[i]) for i, caps in enumerate(per_image) for _ in caps]
    )
    offsets = torch.tensor([0] + [len(c) for c in per_image]).cumsum(0)[
        :-1
    ]  # (N,) first caption of image i
    counts = torch.tensor([len(c) for c in per_image])  # (N,)
    pool = encode_captions(text_encoder, flat, words_num, device=device)  # (M, D)
    codes = encode_images(image_encoder, images, device=device)  # (N, D)
    classes = torch.tensor([int(dataset.class_ids[i]) for i in range(n)])
    picks = [
        offsets + (torch.rand(n, generator=g) * counts).long() for _ in range(rounds)
    ]  # rounds x (N,)
    pick = torch.cat(picks)  # (rounds * N,)
    return r_precision(
        codes.repeat(rounds, 1),
        pool[pick],
        classes.repeat(rounds),
        pool,
        flat_classes,
        n_candidates,
        n_folds,
        g,
    )
