"""The controlled grid (t2ilib.ssagan.controlled): one word changed per column, the oracle's
readings, and the followed / moved / leak figures computed from them."""

from __future__ import annotations

import pytest
import torch

from t2ilib.data.toybirds import ATTRIBUTES, write_toybirds
from t2ilib.data.trainset import load_native_split
from t2ilib.metrics.toy_oracle import OracleConfig, ToyOracle
from t2ilib.ssagan.controlled import (
    BASE,
    CHANGES,
    PARTS,
    ControlledGrid,
    caption_of,
    controlled_captions,
    controlled_grid,
    draw_controlled_grid,
)
from t2ilib.ssagan.model import Generator, SSAGANConfig
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import tokenize


def test_neighbouring_columns_differ_in_exactly_one_word():
    columns = controlled_captions()
    assert len(columns) == 1 + len(CHANGES)
    assert columns[0] == (caption_of(BASE), BASE)
    for (before, _), (after, colours), (part, colour) in zip(columns, columns[1:], CHANGES):
        a, b = tokenize(before), tokenize(after)
        assert len(a) == len(b) and sum(x != y for x, y in zip(a, b)) == 1
        assert colours[part] == colour and colour in tokenize(after)
    assert caption_of({"body_color": "orange", "wing_color": "red", "crown_color": "orange"}) == (
        "this bird has an orange body, red wings and an orange crown")


@pytest.mark.parametrize("base, changes, message", [
    ({"body_color": "red"}, CHANGES, "base must give"),
    (BASE, [("beak_color", "red")], "cannot set"),
    (BASE, [("body_color", "crimson")], "cannot set"),
    (BASE, [("body_color", "red")], "already red"),
])
def test_bad_grids_are_refused(base, changes, message):
    with pytest.raises(ValueError, match=message):
        controlled_captions(base, changes)


def test_the_grid_words_are_toybirds_words(tmp_path):
    root = write_toybirds(tmp_path / "toy", n_train=200, n_test=4, size=32, seed=0)
    vocab = load_native_split(root, "train").vocab
    for caption, _ in controlled_captions():
        assert all(word in vocab for word in tokenize(caption)), caption


def _grid(read_names: dict[str, list[list[str]]]) -> ControlledGrid:
    """A grid with the given oracle readings (rows x columns of colour names) and no images."""
    columns = controlled_captions()
    read = {p: torch.tensor([[ATTRIBUTES[p].index(v) for v in row] for row in rows])
            for p, rows in read_names.items()}
    n_rows = len(next(iter(read_names.values())))
    return ControlledGrid([c for c, _ in columns], [w for _, w in columns],
                          [None, *(p for p, _ in CHANGES)],
                          torch.zeros(n_rows, len(columns), 3, 8, 8), read)


def test_followed_moved_and_leak_count_what_the_oracle_read():
    # Row 0 binds every word to its part; row 1 paints every word on the whole bird.
    grid = _grid({
        "body_color": [["red", "green", "green", "green"], ["red", "green", "white", "red"]],
        "wing_color": [["blue", "blue", "white", "white"], ["red", "green", "white", "red"]],
        "crown_color": [["yellow", "yellow", "yellow", "red"], ["red", "green", "white", "red"]],
    })
    body, wing, crown = grid.effects()
    assert (body["part"], body["to"]) == ("body_color", "green")
    assert body == {"part": "body_color", "to": "green", "followed": 1.0, "moved": 1.0,
                    "leak": 0.5}  # row 1 moved both other parts: 2 of 4 (row, part) pairs
    assert (wing["followed"], wing["moved"], wing["leak"]) == (1.0, 1.0, 0.5)
    assert (crown["followed"], crown["moved"], crown["leak"]) == (1.0, 1.0, 0.5)
    acc = grid.accuracy()
    assert acc["body_color"] == [1.0, 1.0, 0.5, 0.5]
    assert acc["crown_color"] == [0.5, 0.5, 0.5, 1.0]
    assert grid.reading(1, 2) == dict.fromkeys(PARTS, "white")


def test_controlled_grid_keeps_the_noise_and_reads_every_image(tmp_path):
    root = write_toybirds(tmp_path / "toy", n_train=200, n_test=4, size=32, seed=0)
    vocab = load_native_split(root, "train").vocab
    torch.manual_seed(0)
    te = TextEncoder(TextEncoderConfig(len(vocab), embed_dim=8, hidden_dim=8)).eval()
    g = Generator(SSAGANConfig(resolution=32, ngf=4, sentence_dim=8)).eval()
    oracle = ToyOracle(OracleConfig(widths=(4, 8, 8, 8), groups=2)).eval()
    grid = controlled_grid(g, te, vocab, oracle, n_rows=3, seed=5)
    assert grid.images.shape == (3, 4, 3, 32, 32)
    assert all(grid.read[p].shape == (3, 4) for p in PARTS)
    again = controlled_grid(g, te, vocab, oracle, n_rows=3, seed=5)
    assert torch.equal(again.images, grid.images)  # the rows are the seed's noise vectors
    assert len(grid.effects()) == 3
    figure = draw_controlled_grid(grid, n_show=2, title="tiny")
    assert len(figure.axes) == 2 * 4
