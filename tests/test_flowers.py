"""The Oxford-102 reader on a generated fixture with the real data's quirks, and the shipped copy
of Reed et al.'s class split."""

from __future__ import annotations

import hashlib
import re

import numpy as np
import pytest
import torch

import t2ilib.data.flowers as flowers_module
from t2ilib.data.flowers import (
    LIST_NAMES,
    N_CLASSES,
    SPLIT_DIR,
    FlowersDataset,
    caption_file,
    find_text_root,
    flowers_index,
    make_flowers_fixture,
    read_class_list,
    read_labels,
    read_setid,
    reed_class_split,
)
from t2ilib.ssagan.train import TrainData
from t2ilib.text.vocab import tokenize


@pytest.fixture(scope="module")
def fixture(tmp_path_factory):
    return make_flowers_fixture(tmp_path_factory.mktemp("flowers") / "flowers")


def test_mat_files(fixture, tmp_path):
    labels = read_labels(fixture.root / "imagelabels.mat")  # zlib-compressed
    assert labels.tolist() == fixture.labels and labels.dtype == np.int64
    sets = read_setid(fixture.root / "setid.mat")
    assert {k: v.tolist() for k, v in sets.items()} == fixture.setid
    assert sets["valid"].shape == (1,)  # a one-id split is still an array
    plain = make_flowers_fixture(tmp_path / "plain", compress=False)
    assert read_labels(plain.root / "imagelabels.mat").tolist() == plain.labels
    with pytest.raises(ValueError, match="no variable 'labels'"):
        read_labels(fixture.root / "setid.mat")
    with pytest.raises(FileNotFoundError, match="download_flowers"):
        read_labels(tmp_path / "nope.mat")


TEST_CLASSES = list(range(1, 21))  # Reed's 20 test classes (t2ilib/data/flowers_split/README.md)
SHA256 = {"trainvalclasses.txt": "93f3e2d0aff1bb3d4308f112773b2b2a87ca8e4ca063931bcca8696db02521bd",
          "testclasses.txt": "7bbf7b37ff0655e2901a7f5e53ae7f2508a84b3a0c2af20fff4678e914acb1a2"}


def test_shipped_lists_are_reeds_82_plus_20_classes():
    for name in LIST_NAMES:
        path = SPLIT_DIR / name
        assert hashlib.sha256(path.read_bytes()).hexdigest() == SHA256[name]  # the source's bytes
        assert all(re.fullmatch(r"class_\d{5}", line) for line in path.read_text().splitlines())
    trainval, test = (read_class_list(SPLIT_DIR / n) for n in LIST_NAMES)
    assert len(trainval) == len(set(trainval)) == 82 and len(test) == len(set(test)) == 20
    assert not set(trainval) & set(test)
    assert set(trainval) | set(test) == set(range(1, N_CLASSES + 1))
    assert sorted(test) == TEST_CLASSES
    got_train, got_test, files = reed_class_split()
    assert (got_train, got_test) == (set(trainval), set(test))
    assert files == (SPLIT_DIR / LIST_NAMES[0], SPLIT_DIR / LIST_NAMES[1])
    assert (SPLIT_DIR / "README.md").is_file()  # where the lists come from


def test_class_split_is_class_disjoint(fixture):
    train = FlowersDataset(fixture.root, "train", image_size=64)
    test = FlowersDataset(fixture.root, "test", image_size=64)
    assert train.scheme == test.scheme == "classes"
    assert train.class_lists[0].parent == SPLIT_DIR  # ours, checked against the archive's copies
    assert train.image_ids == fixture.train_ids and test.image_ids == fixture.test_ids
    assert set(train.class_ids) == set(fixture.train_classes)
    assert set(test.class_ids) == set(fixture.test_classes) <= set(TEST_CLASSES)
    assert not set(train.class_ids) & set(TEST_CLASSES)
    assert train.keys[0] == f"class_{fixture.labels[0]:05d}/image_00001"
    assert train.vocab == test.vocab  # one vocabulary from every caption, whatever the split
    assert len(train.captions) == 10 * len(train)


def test_without_the_archives_lists_the_shipped_lists_split_the_classes(tmp_path):
    bare = make_flowers_fixture(tmp_path / "bare", class_lists=False)
    assert not any((find_text_root(bare.root).parent / n).exists() for n in LIST_NAMES)
    trainval, test, _ = reed_class_split()
    for scheme in ("classes", "auto"):
        index = flowers_index(bare.root, scheme)
        assert index.scheme == "classes" and index.class_lists[0].parent == SPLIT_DIR
        train_labels = {int(index.labels[i - 1]) for i in index.ids["train"]}
        test_labels = {int(index.labels[i - 1]) for i in index.ids["test"]}
        assert train_labels == set(bare.labels) & trainval  # each fixture class, by our lists
        assert test_labels == set(bare.labels) & test
        assert train_labels and test_labels
        assert sorted(index.ids["train"] + index.ids["test"]) == list(range(1, 13))
    assert FlowersDataset(bare.root, "test").image_ids == bare.test_ids


def test_a_wider_fixture_has_a_twelve_image_test_split(tmp_path):
    wide = make_flowers_fixture(tmp_path / "wide", class_lists=False, images_per_class=12)
    test = FlowersDataset(wide.root, "test", image_size=32)
    assert len(wide.labels) == 36 and len(wide.train_ids) == 24
    assert test.image_ids == wide.test_ids and len(test) == 12 and test.scheme == "classes"
    with pytest.raises(ValueError, match="images_per_class"):
        make_flowers_fixture(tmp_path / "tiny", images_per_class=1)


def test_archive_lists_that_disagree_are_an_error_naming_both_files(tmp_path):
    fx = make_flowers_fixture(tmp_path / "fx")
    archive_dir = find_text_root(fx.root).parent
    test_list = archive_dir / "testclasses.txt"  # Reed's file with one class moved
    test_list.write_text("".join(f"class_{c:05d}\n" for c in [*TEST_CLASSES[1:], 21]))
    for scheme in ("classes", "auto"):  # a disagreement is never a reason to fall back
        with pytest.raises(ValueError) as err:
            flowers_index(fx.root, scheme)
        text = str(err.value)
        assert str(test_list) in text and str(SPLIT_DIR / "testclasses.txt") in text
        assert "disagree" in text and "[21]" in text and "[1]" in text
    with pytest.raises(ValueError, match="disagree"):
        FlowersDataset(fx.root, "train")
    test_list.unlink()  # only the train+val list left in the archive: it agrees, so fine
    assert flowers_index(fx.root).ids["test"] == fx.test_ids


def test_setid_split_warns_that_it_is_not_class_disjoint(fixture):
    message = ("not class-disjoint: test classes are seen in training; the paper's figures use "
               "Reed's class split")
    with pytest.warns(UserWarning, match=re.escape(message)):
        by_setid = FlowersDataset(fixture.root, "train", scheme="setid")
    assert by_setid.image_ids == [1, 2, 3, 4, 5, 6, 7]  # trnid + the one-id valid
    assert by_setid.scheme == "setid" and by_setid.class_lists is None
    with pytest.warns(UserWarning, match="not class-disjoint"):
        assert FlowersDataset(fixture.root, "test", scheme="setid").image_ids == [8, 9, 10, 11,
                                                                                 12]


def test_without_any_class_list_auto_falls_back_loudly(tmp_path, monkeypatch):
    bare = make_flowers_fixture(tmp_path / "bare", class_lists=False)
    monkeypatch.setattr(flowers_module, "SPLIT_DIR", tmp_path / "not_installed")
    with pytest.raises(FileNotFoundError, match="class lists are missing"):
        flowers_index(bare.root, "classes")
    with pytest.warns(UserWarning, match="falling back to Oxford's setid.mat split.*not "
                                         "class-disjoint"):
        assert flowers_index(bare.root, "auto").scheme == "setid"
    with pytest.raises(ValueError, match="scheme"):
        flowers_index(bare.root, "random")


def test_an_install_without_the_lists_uses_the_archives(tmp_path, monkeypatch):
    fx = make_flowers_fixture(tmp_path / "fx")  # writes copies of our lists next to text_c10
    monkeypatch.setattr(flowers_module, "SPLIT_DIR", tmp_path / "not_installed")
    index = flowers_index(fx.root)
    assert index.scheme == "classes"
    assert index.class_lists[0] == find_text_root(fx.root).parent / "trainvalclasses.txt"
    assert index.ids == {"train": fx.train_ids, "test": fx.test_ids}


def test_items_captions_and_quirks(fixture):
    ds = FlowersDataset(fixture.root, "train", image_size=32, seed=0)
    i = ds.image_ids.index(fixture.quirky_caption_id)
    expected = [" ".join(tokenize(c)) for c in fixture.captions[fixture.quirky_caption_id]]
    assert ds.caption_texts_of(i) == expected  # empty lines skipped, 11th dropped, ASCII only
    assert "caf" in ds.vocab and "lait" in ds.vocab
    g = ds.image_ids.index(fixture.grayscale_id)
    image = ds.uint8_image(g)
    assert image.shape == (3, 38, 38) and image.dtype == torch.uint8  # grey -> RGB, 76/64 * 32
    assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])
    x, caption, length, class_id, key = ds[g]
    assert x.shape == (3, 32, 32) and -1 <= x.min() and x.max() <= 1
    label = fixture.labels[fixture.grayscale_id - 1]
    assert caption.shape == (18,) and 1 <= length <= 18 and class_id == label
    assert label in fixture.train_classes
    assert key == f"class_{label:05d}/image_{fixture.grayscale_id:05d}"
    assert torch.equal(ds[g][0], x)  # seeded items repeat
    data = TrainData.from_dataset(ds, name="flowers")
    assert data.images.shape == (len(ds), 3, 38, 38) and data.image_size == 32


def test_layout_errors(fixture, tmp_path):
    with pytest.raises(FileNotFoundError, match="102flowers.tgz"):
        flowers_index(tmp_path)
    broken = make_flowers_fixture(tmp_path / "broken")
    caption_file(find_text_root(broken.root), broken.labels[3], 4).unlink()  # a train image
    with pytest.raises(FileNotFoundError, match="caption files of the train split"):
        FlowersDataset(broken.root, "train")
    FlowersDataset(broken.root, "test")  # the test split does not need image 4
    bad = tmp_path / "classes.txt"
    bad.write_text("class_00001\n42\n")
    with pytest.raises(ValueError, match="class_00001"):
        read_class_list(bad)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="text_c10"):
        find_text_root(tmp_path / "empty")
