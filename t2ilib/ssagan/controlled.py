r"""The controlled grid: change one word of one caption at a time, keep the noise, read the birds.

A sample grid of unrelated captions cannot tell *which word* moved the picture. The controlled
grid can. Its columns are captions of one template that differ from their left neighbour in
exactly one colour word (first the body's, then the wings', then the crown's); its rows are
fixed noise vectors $z_r$, the same in every column, so

$$\hat x_{r,c} = G(z_r, s_c), \qquad s_c = \mathrm{TextEncoder}(t_c)$$

differs from $\hat x_{r,c-1}$ only through the changed word. The ToyBirds oracle reads the
three colours of every image. For the part $a$ whose word column $c$ changed, from $v$ to $v'$:

* **followed**: the share of rows whose oracle reading of $a$ is $v'$;
* **moved**: the share of rows whose reading of $a$ changed from column $c-1$;
* **leak**: the share of rows whose reading of *another* part $b \ne a$ changed (the word
  reached the wrong part, or the whole bird).

A model that binds each word to its part follows and moves near 1 with a leak near 0.

:func:`seed_vs_caption` is notebook 10's coarser measure of the same question: how far the
picture moves when only the caption changes, and when only the noise does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from t2ilib.data.augment import cache_size_for
from t2ilib.data.toybirds import ATTRIBUTES
from t2ilib.metrics.binding import COLOUR_PARTS
from t2ilib.metrics.fid import as_uint8
from t2ilib.metrics.toy_oracle import ToyOracle, predict_attributes
from t2ilib.metrics.toy_scorer import oracle_view
from t2ilib.ssagan.model import Generator
from t2ilib.ssagan.sampling import generate
from t2ilib.text.encoder import TextEncoder
from t2ilib.text.vocab import Vocabulary

__all__ = ["PARTS", "BASE", "CHANGES", "caption_of", "controlled_captions", "ControlledGrid",
           "controlled_grid", "draw_controlled_grid", "DEMO_CAPTIONS", "seed_vs_caption"]

#: The parts whose colour the grid changes, in the order it changes them.
PARTS = COLOUR_PARTS
#: The first column's colours and, for each later column, the part that changes and its colour.
BASE = {"body_color": "red", "wing_color": "blue", "crown_color": "yellow"}
CHANGES = (("body_color", "green"), ("wing_color", "white"), ("crown_color", "red"))


def caption_of(colours: dict[str, str]) -> str:
    """The grid's template, ToyBirds wording: ``this bird has a red body, blue wings and a
    yellow crown`` (``an`` before a vowel)."""
    def art(word: str) -> str:
        return "an" if word[0] in "aeiou" else "a"

    body, wing, crown = (colours[p] for p in PARTS)
    return f"this bird has {art(body)} {body} body, {wing} wings and {art(crown)} {crown} crown"


def controlled_captions(base: dict[str, str] = BASE,
                        changes: Sequence[tuple[str, str]] = CHANGES
                        ) -> list[tuple[str, dict[str, str]]]:
    """``[(caption, colours)]``, one per column: ``base``, then each change applied on top of
    the previous column (so neighbours differ in one word). Unknown parts or colours raise."""
    colours = dict(base)
    if set(colours) != set(PARTS):
        raise ValueError(f"base must give the colours of {PARTS}, got {sorted(colours)}")
    columns = [(caption_of(colours), dict(colours))]
    for part, colour in changes:
        if part not in PARTS or colour not in ATTRIBUTES[part]:
            raise ValueError(f"cannot set {part!r} to {colour!r}: parts {PARTS}, colours "
                             f"{ATTRIBUTES['body_color']}")
        if colours[part] == colour:
            raise ValueError(f"{part} is already {colour}: a column must change one word")
        colours[part] = colour
        columns.append((caption_of(colours), dict(colours)))
    return columns


@dataclass
class ControlledGrid:
    """Images ``(R, C, 3, S, S)`` in [-1, 1] for R noise rows and C caption columns, and the
    oracle's reading ``read[part]`` ``(R, C)`` (colour names as value indices)."""

    captions: list[str]
    wanted: list[dict[str, str]]
    changed: list[str | None]  # the part each column changed (None for the first)
    images: Tensor
    read: dict[str, Tensor]

    def reading(self, r: int, c: int) -> dict[str, str]:
        """The colours the oracle read in image ``(r, c)``."""
        return {p: ATTRIBUTES[p][int(self.read[p][r, c])] for p in PARTS}

    def accuracy(self) -> dict[str, list[float]]:
        """Per part, per column: the share of rows read with the caption's colour."""
        return {p: [float(sum(ATTRIBUTES[p][int(v)] == self.wanted[c][p]
                              for v in self.read[p][:, c]) / len(self.read[p]))
                    for c in range(len(self.captions))] for p in PARTS}

    def effects(self) -> list[dict[str, float | str]]:
        """For each column after the first: ``part``, ``followed``, ``moved``, ``leak``
        (see the module docstring), over all rows."""
        out = []
        for c in range(1, len(self.captions)):
            part = self.changed[c]
            others = [p for p in PARTS if p != part]
            want = ATTRIBUTES[part].index(self.wanted[c][part])
            moved_other = torch.stack([self.read[p][:, c] != self.read[p][:, c - 1]
                                       for p in others]).float()
            out.append({"part": part, "to": self.wanted[c][part],
                        "followed": (self.read[part][:, c] == want).float().mean().item(),
                        "moved": (self.read[part][:, c] != self.read[part][:, c - 1])
                        .float().mean().item(),
                        "leak": moved_other.mean().item()})
        return out


@torch.no_grad()
def controlled_grid(g: Generator, text_encoder: TextEncoder, vocab: Vocabulary,
                    oracle: ToyOracle, n_rows: int = 64, seed: int = 0,
                    base: dict[str, str] = BASE, changes: Sequence[tuple[str, str]] = CHANGES,
                    oracle_size: int = 64) -> ControlledGrid:
    """Draw the grid (``n_rows`` noise vectors from ``seed``, the same in every column) and let
    the oracle read each image's colours, seen as the course's toy metrics see them
    (:func:`t2ilib.metrics.toy_scorer.oracle_view`; ``oracle_size``: the side of the ToyBirds
    images the oracle was trained on)."""
    columns = controlled_captions(base, changes)
    z = torch.randn(n_rows, g.config.nz, generator=torch.Generator().manual_seed(seed))
    images = torch.stack([generate(g, text_encoder, vocab, [caption] * n_rows, z)[0]
                          for caption, _ in columns], dim=1)            # (R, C, 3, S, S)
    side = images.shape[-1]
    inner = min(oracle_size, round(oracle_size * side / cache_size_for(side)))
    flat = predict_attributes(oracle, oracle_view(as_uint8(images.flatten(0, 1)), oracle_size,
                                                  inner))
    read = {p: flat[p].view(n_rows, len(columns)) for p in PARTS}
    return ControlledGrid([c for c, _ in columns], [w for _, w in columns],
                          [None, *(p for p, _ in changes)], images, read)


def draw_controlled_grid(grid: ControlledGrid, n_show: int = 4, title: str | None = None):
    """A matplotlib figure: the first ``n_show`` rows, each column headed by its caption (the
    changed word in capitals), each image labelled with the oracle's reading (a tick where it
    is the caption's colour). Returns the figure."""
    import matplotlib.pyplot as plt

    from t2ilib.viz import to_uint8

    n_show = min(n_show, grid.images.shape[0])
    n_cols = len(grid.captions)
    fig, axes = plt.subplots(n_show, n_cols, squeeze=False,
                             figsize=(2.3 * n_cols, 1.9 * n_show + 0.9))
    short = {"body_color": "body", "wing_color": "wings", "crown_color": "crown"}
    for c in range(n_cols):
        wanted = grid.wanted[c]
        words = [f"{short[p]} {wanted[p].upper() if p == grid.changed[c] else wanted[p]}"
                 for p in PARTS]
        axes[0, c].set_title("\n".join(words), fontsize=8)
        for r in range(n_show):
            ax = axes[r, c]
            ax.imshow(to_uint8(grid.images[r, c][None])[0].permute(1, 2, 0).numpy(),
                      interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            seen = grid.reading(r, c)
            ax.set_xlabel(" ".join(f"{seen[p]}{'✓' if seen[p] == grid.wanted[c][p] else '✗'}"
                                   for p in PARTS), fontsize=6.5)
        axes[0, 0].set_ylabel("z0", fontsize=7)
    for r in range(1, n_show):
        axes[r, 0].set_ylabel(f"z{r}", fontsize=7)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


#: Notebook 10's captions (section 4): they differ in their colour words.
DEMO_CAPTIONS = ("this bird has a red body and blue wings", "a yellow bird with black wings",
                 "a green bird with a red crown", "a blue bird with white wings")


@torch.no_grad()
def seed_vs_caption(g: Generator, text_encoder: TextEncoder, vocab: Vocabulary,
                    captions: Sequence[str] = DEMO_CAPTIONS, n: int = 4,
                    seed: int = 0) -> dict[str, float]:
    r"""Mean absolute pixel change (range [-1, 1]) when only the caption changes and when only
    the noise does, over ``captions`` x ``n`` noise vectors from ``seed``:

    $$\text{by\_caption} = \overline{|\hat x_{c,i} - \hat x_{0,i}|}_{c > 0}, \qquad
    \text{by\_seed} = \overline{|\hat x_{c,i} - \hat x_{c,0}|}_{i > 0}.$$
    """
    z = torch.randn(n, g.config.nz, generator=torch.Generator().manual_seed(seed))
    grid = torch.stack([generate(g, text_encoder, vocab, [c] * n, z)[0] for c in captions])
    return {"by_caption": (grid[1:] - grid[:1]).abs().mean().item(),
            "by_seed": (grid[:, 1:] - grid[:, :1]).abs().mean().item()}
