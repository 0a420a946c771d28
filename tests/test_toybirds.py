"""ToyBirds (t2ilib.data.toybirds): determinism, layout, ground truth, legibility, captions."""

from __future__ import annotations

import hashlib
from collections import Counter

import numpy as np
import pytest

from t2ilib.data.cub import read_bboxes
from t2ilib.data.cub_dataset import CUBDataset
from t2ilib.data.toybirds import (
    ATTRIBUTES,
    CAPTIONED,
    ensure_toybirds,
    load_groundtruth,
    make_caption,
    sample_attributes,
    write_toybirds,
)
from t2ilib.data.toybirds_draw import RGB, render_bird
from t2ilib.text.vocab import tokenize


def _hashes(root):
    return {p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=12, n_test=4,
                          size=64, seed=0)


def test_two_builds_are_byte_identical(toy, tmp_path):
    again = write_toybirds(tmp_path / "again", n_train=12, n_test=4, size=64, seed=0)
    assert _hashes(toy) == _hashes(again)
    other = write_toybirds(tmp_path / "other", n_train=12, n_test=4, size=64, seed=1)
    assert _hashes(toy)["captions.pickle"] != _hashes(other)["captions.pickle"]


def test_cub_layout_is_readable_by_the_reader(toy):
    train, test = CUBDataset(toy, "train", seed=0), CUBDataset(toy, "test", seed=0)
    assert (len(train), len(test)) == (12, 4)
    for ds in (train, test):
        for i in range(len(ds)):
            lines = (toy / "text" / f"{ds.keys[i]}.txt").read_text().splitlines()
            assert ds.caption_texts_of(i) == [" ".join(tokenize(c)) for c in lines]
        image, *_ = ds[0]
        assert image.shape == (3, 64, 64)
    # the bbox is the whole frame, so AttnGAN's crop keeps the whole image
    assert set(read_bboxes(toy).values()) == {(0.0, 0.0, 64.0, 64.0)}
    assert all(ds.class_ids[i] == int(ds.keys[i][:3]) for ds in (train, test)
               for i in range(len(ds)))


def test_groundtruth(toy):
    truth = load_groundtruth(toy)
    assert len(truth.keys) == 16 and truth.packed_masks.shape == (16, 64, 8)
    for key in truth.keys:
        attrs = truth.attributes[key]
        assert all(attrs[name] in values for name, values in ATTRIBUTES.items())
        mask = truth.mask(key)
        ys, xs = np.nonzero(mask)
        assert truth.boxes[key] == [xs.min(), ys.min(), xs.max() - xs.min() + 1,
                                    ys.max() - ys.min() + 1]
        assert 8 <= xs.min() and xs.max() < 56 and 8 <= ys.min() and ys.max() < 56  # margins
        lines = (toy / "text" / f"{key}.txt").read_text().splitlines()
        assert len(truth.mentions[key]) == 10 == len(lines)
        for line, mentioned in zip(lines, truth.mentions[key]):
            _check_caption(line, mentioned, attrs)
    assert np.array_equal(truth.masks()[3], truth.mask(truth.keys[3]))


def _check_caption(caption, mentioned, attrs):
    """The caption names what it claims to mention, with the right values."""
    assert mentioned and set(mentioned) <= set(CAPTIONED)
    words = set(tokenize(caption))
    for name in mentioned:
        value = attrs[name]
        if name.endswith("color"):
            assert value in words or (value == "grey" and "gray" in words), (caption, name)
        elif name == "beak_length":
            assert words & ({"short", "stubby", "small"} if value == "short"
                            else {"long", "elongated"})
            assert words & {"beak", "bill"}
        else:
            assert words & ({"small", "tiny", "little"} if value == "small"
                            else {"large", "big"}), caption
    for name in set(CAPTIONED) - set(mentioned) - {"size"}:
        noun = {"beak_color": {"beak", "bill"}, "beak_length": {"beak", "bill"}}.get(name)
        if noun and not ({"beak_color", "beak_length"} & set(mentioned)):
            assert not words & noun, caption


def test_attributes_are_uniform_and_independent():
    rng = np.random.default_rng(123)
    draws = [sample_attributes(rng) for _ in range(4000)]
    for name, values in ATTRIBUTES.items():
        counts = Counter(d[name] for d in draws)
        assert set(counts) == set(values)
        expected = 4000 / len(values)
        assert all(abs(c - expected) < 5 * expected ** 0.5 for c in counts.values()), name
    same = np.mean([d["body_color"] == d["wing_color"] for d in draws])
    assert abs(same - 0.1) < 0.03                        # independent: P(equal) = 1/10


def test_captions_mention_a_nonempty_random_subset():
    rng = np.random.default_rng(0)
    attrs = sample_attributes(rng)
    seen = Counter()
    lengths = []
    for _ in range(600):
        caption, mentioned = make_caption(attrs, rng)
        _check_caption(caption, mentioned, attrs)
        seen.update(mentioned)
        lengths.append(len(tokenize(caption)))
    assert set(seen) == set(CAPTIONED) and min(seen.values()) > 150   # every one used often
    assert max(lengths) <= 18 and np.mean(lengths) > 8             # fits AttnGAN's 18 words


def _render(**overrides):
    attrs = sample_attributes(np.random.default_rng(7))
    attrs.update(position=[0.5, 0.5], **overrides)
    return render_bird(attrs, 64, np.random.default_rng(11))


def _count_near(image, mask, rgb, tol=40):
    near = np.abs(image.astype(int) - np.array(rgb)).max(-1) <= tol
    return int((near & mask).sum())


def test_every_attribute_is_legible_at_64px():
    base = dict(size="small", beak_length="short", facing="right", background="sky",
                body_color="blue", wing_color="green", crown_color="red", beak_color="yellow")
    image, mask = _render(**base)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8 and mask.dtype == bool
    # the smallest bird still shows several pixels of crown and of a short beak
    assert _count_near(image, mask, RGB["red"]) >= 10
    assert _count_near(image, mask, RGB["yellow"]) >= 4
    # a long beak makes the bird >= 4 px longer than a short one (same bird otherwise)
    _, long_mask = _render(**{**base, "beak_length": "long"})
    width = lambda m: np.ptp(np.nonzero(m)[1])  # noqa: E731
    assert width(long_mask) - width(mask) >= 4
    # a large bird covers > 1.5x the area of a small one
    _, large_mask = _render(**{**base, "size": "large"})
    assert large_mask.sum() > 1.5 * mask.sum()
    # facing left puts the beak on the left: the yellow pixels move to the left half
    left, left_mask = _render(**{**base, "facing": "left"})
    near = lambda im, m: np.nonzero(m & (np.abs(im.astype(int) - RGB["yellow"]).max(-1) <= 40))[1]  # noqa: E731
    assert near(left, left_mask).mean() < 32 < near(image, mask).mean()


def test_render_is_deterministic_and_sizes_scale():
    attrs = sample_attributes(np.random.default_rng(3))
    a = render_bird(attrs, 64, np.random.default_rng(4))
    b = render_bird(attrs, 64, np.random.default_rng(4))
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])
    big, big_mask = render_bird(attrs, 128, np.random.default_rng(4))
    assert big.shape == (128, 128, 3) and abs(big_mask.mean() - a[1].mean()) < 0.02
    with pytest.raises(ValueError):
        render_bird(attrs, 16)


def test_ensure_toybirds_makes_once_and_checks_parameters(tmp_path):
    root = ensure_toybirds(tmp_path / "tb", n_train=3, n_test=2)
    stamp = (root / "toybirds.json").stat().st_mtime_ns
    assert ensure_toybirds(tmp_path / "tb", n_train=3, n_test=2) == root
    assert (root / "toybirds.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="another root"):
        ensure_toybirds(tmp_path / "tb", n_train=4, n_test=2)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="not a ToyBirds folder"):
        write_toybirds(tmp_path / "other", 3, 2)
    assert not list(tmp_path.glob(".*tmp*"))                       # no leftovers


def test_a_killed_build_leaves_nothing_behind_at_the_next_build(tmp_path):
    """``write_toybirds`` builds in ``.<name>.tmp-<pid>``; a build killed with -9 leaves that
    folder; the next build removes it, but never the folder of a process still running."""
    import os
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    abandoned = tmp_path / f".toy.tmp-{int(dead.stdout)}"
    (abandoned / "CUB_200_2011").mkdir(parents=True)
    running = tmp_path / f".toy.tmp-{os.getppid()}"  # pytest's parent: alive
    running.mkdir()
    write_toybirds(tmp_path / "toy", n_train=2, n_test=1, size=32)
    assert not abandoned.exists() and running.is_dir()
