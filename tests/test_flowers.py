"""The Oxford-102 reader on a generated fixture with the real data's quirks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from t2ilib.data.flowers import (
    FlowersDataset,
    find_text_root,
    flowers_index,
    make_flowers_fixture,
    read_class_list,
    read_labels,
    read_setid,
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


def test_class_split_is_class_disjoint(fixture):
    train = FlowersDataset(fixture.root, "train", image_size=64)
    test = FlowersDataset(fixture.root, "test", image_size=64)
    assert train.scheme == test.scheme == "classes"
    assert train.image_ids == fixture.train_ids and test.image_ids == fixture.test_ids
    assert set(train.class_ids) == {1, 2} and set(test.class_ids) == {3}
    assert train.keys[0] == "class_00001/image_00001"
    assert train.vocab == test.vocab  # one vocabulary from every caption, whatever the split
    assert len(train.captions) == 10 * len(train)


def test_setid_split_and_auto_fallback(fixture, tmp_path):
    by_setid = FlowersDataset(fixture.root, "train", scheme="setid")
    assert by_setid.image_ids == [1, 2, 3, 4, 5, 6, 7]  # trnid + the one-id valid
    assert FlowersDataset(fixture.root, "test", scheme="setid").image_ids == [8, 9, 10, 11, 12]
    bare = make_flowers_fixture(tmp_path / "bare", class_lists=False)
    assert flowers_index(bare.root).scheme == "setid"
    with pytest.raises(FileNotFoundError, match="class lists"):
        flowers_index(bare.root, "classes")
    with pytest.raises(ValueError, match="scheme"):
        flowers_index(bare.root, "random")


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
    assert caption.shape == (18,) and 1 <= length <= 18 and class_id == 2
    assert key == f"class_00002/image_{fixture.grayscale_id:05d}"
    assert torch.equal(ds[g][0], x)  # seeded items repeat
    data = TrainData.from_dataset(ds, name="flowers")
    assert data.images.shape == (len(ds), 3, 38, 38) and data.image_size == 32


def test_layout_errors(fixture, tmp_path):
    with pytest.raises(FileNotFoundError, match="102flowers.tgz"):
        flowers_index(tmp_path)
    broken = make_flowers_fixture(tmp_path / "broken")
    (find_text_root(broken.root) / "class_00001" / "image_00004.txt").unlink()
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
