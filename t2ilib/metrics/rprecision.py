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

from t2ilib.runtime import progress

__all__ = [
    "RPrecision",
    "sample_mismatched",
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

    ``image_classes (N,)``, ``caption_classes (M,)`` -> ``(indices (N, k), k)`` with
    ``k = min(n, fewest other-class captions of any image)``.
    """
    image_classes = torch.as_tensor(image_classes).cpu()
    caption_classes = torch.as_tensor(caption_classes).cpu()
    out = torch.empty(len(image_classes), n, dtype=torch.long)
    k = n
    for c in image_classes.unique().tolist():
        rows = (image_classes == c).nonzero().squeeze(1)  # images of class c
        pool = (caption_classes != c).nonzero().squeeze(1)  # captions of other classes
        k = min(k, len(pool))
        order = torch.rand(len(rows), len(pool), generator=generator).argsort(
            dim=1
        )  # random permutations
        take = min(n, len(pool))
        out[rows, :take] = pool[order[:, :take]]  # (n_c, take)
    return out[:, :k], k


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
    """R-precision from features.

    ``image_codes (N, D)``: global image codes; ``true_sentences (N, D)``: the sentence vector
    of each image's ground-truth caption; ``image_classes (N,)``; ``pool_sentences (M, D)`` and
    ``pool_classes (M,)``: the captions mismatched ones are drawn from. ``generator`` fixes
    the draws and the fold shuffle.
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
    img = nn.functional.normalize(image_codes.float().cpu(), dim=1)  # (N, D)
    true = nn.functional.normalize(true_sentences.float().cpu(), dim=1)  # (N, D)
    pool = nn.functional.normalize(pool_sentences.float().cpu(), dim=1)  # (M, D)
    true_score = (img * true).sum(1)  # (N,)
    neg_score = torch.einsum("nd,nkd->nk", img, pool[neg])  # (N, k)
    hits = true_score > neg_score.max(dim=1).values  # (N,)
    shuffled = hits[torch.randperm(n, generator=generator)].float()
    fold_acc = torch.stack([f.mean() for f in shuffled.tensor_split(folds)])  # (folds,)
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
