"""The CUB + AttnGAN reader (t2ilib.data.cub) on a fixture tree with the real quirks."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from t2ilib.data.augment import center_crop
from t2ilib.data.cub import (
    CUBDataset,
    bbox_crop_box,
    check_layout,
    collate_sorted,
    fit_caption,
    load_cropped_image,
    read_bboxes,
    read_caption_lines,
    read_split,
    square_box,
)
from t2ilib.data.fixtures import LONG_CAPTION, make_cub_fixture
from t2ilib.text.vocab import tokenize


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_cub_fixture(tmp_path_factory.mktemp("cub") / "birds")


@pytest.fixture(scope="module")
def train(fx):
    return CUBDataset(fx.root, "train", image_size=64, seed=0)


# ----------------------------------------------------------------------- layout, counts

def test_counts_and_class_ids_per_split(fx, train):
    test = CUBDataset(fx.root, "test", image_size=64)
    assert len(train) == 8 and len(test) == 4
    assert train.class_ids == [1, 1, 1, 1, 2, 2, 2, 2] and test.class_ids == [3] * 4
    assert train.keys == fx.train_keys and test.keys == fx.test_keys
    assert len(train.captions) == 80 and len(test.captions) == 40
    assert train.vocab is not None and train.vocab == test.vocab


def test_stray_jpeg_is_ignored(fx):
    assert fx.stray_file.is_file()
    boxes = read_bboxes(fx.root)
    assert len(boxes) == 12
    assert fx.stray_file.stem not in {k.split("/")[1] for k in boxes}


def test_class_ids_fall_back_to_folder_number(fx, tmp_path):
    import shutil
    root = tmp_path / "birds"
    shutil.copytree(fx.root, root)
    (root / "test" / "class_info.pickle").unlink()
    keys, class_ids = read_split(root, "test")
    assert class_ids == [3, 3, 3, 3] and keys == fx.test_keys


def test_check_layout_lists_what_is_missing(tmp_path):
    (tmp_path / "text").mkdir()
    with pytest.raises(FileNotFoundError) as err:
        check_layout(tmp_path)
    message = str(err.value)
    assert "images.txt" in message and "bounding_boxes.txt" in message
    assert "filenames.pickle" in message and "text  <-" not in message


# ----------------------------------------------------------------------------- crops

@pytest.mark.parametrize("bbox, size, expected", [
    # r = int(0.75 * max(w, h)), c = int((2x + w) / 2): worked out by hand
    ((30, 20, 20, 10), (100, 100), (25, 10, 55, 40)),     # r=15, c=(40, 25): inside
    ((10, 20, 40, 30), (100, 80), (0, 5, 60, 65)),        # r=30, c=(30, 35): clipped left
    ((80, 70, 20, 20), (100, 90), (75, 65, 100, 90)),     # r=15, c=(90, 80): clipped right, bottom
    ((85, 40, 10, 20), (100, 100), (75, 35, 100, 65)),    # r=15, c=(90, 50): clipped right only
    ((10.5, 20.5, 33.3, 20.0), (200, 200), (3, 6, 51, 54)),  # r=int(24.975)=24, c=(27, 30)
])
def test_bbox_crop_box_by_hand(bbox, size, expected):
    assert bbox_crop_box(bbox, *size) == expected


@pytest.mark.parametrize("box, center, expected", [
    ((25, 10, 55, 40), (40, 25), (25, 10, 55, 40)),      # square already: unchanged
    ((0, 5, 60, 65), (30, 35), (0, 5, 60, 65)),
    ((0, 0, 40, 100), (20, 30), (0, 10, 40, 50)),        # tall: 40 x 40 centred on y = 30
    ((0, 0, 40, 100), (20, 95), (0, 60, 40, 100)),       # ... pushed inside at the bottom
    ((10, 0, 110, 30), (12, 15), (10, 0, 40, 30)),       # wide: pushed inside at the left
    ((75, 35, 100, 65), (90, 50), (75, 38, 100, 63)),    # 25 x 30: centred on y = 50
])
def test_square_box_by_hand(box, center, expected):
    assert square_box(box, center) == expected


def test_border_bbox_gives_clipped_crop(fx):
    x, y, w, h = fx.bboxes[fx.border_key]
    left, top, right, bottom = bbox_crop_box((x, y, w, h), *fx.sizes[fx.border_key])
    assert x == 0 and left == 0
    assert right - left < 2 * int(0.75 * max(w, h))       # the square was cut by the border


def test_crop_takes_exactly_the_box(tmp_path):
    # a red square exactly where the crop of bbox (30, 20, 20, 10) lands, blue elsewhere
    img = Image.new("RGB", (100, 100), (0, 0, 255))
    img.paste((255, 0, 0), (25, 10, 55, 40))
    img.save(tmp_path / "a.png")
    out = load_cropped_image(tmp_path / "a.png", (30, 20, 20, 10), 19)
    assert out.shape == (3, 19, 19) and out.dtype == torch.uint8
    assert (out[0] == 255).all() and (out[1:] == 0).all()


def test_grayscale_and_cmyk_become_rgb(fx, tmp_path):
    for key in (fx.grayscale_key, fx.cmyk_key):
        with Image.open(fx.root / "CUB_200_2011" / "images" / f"{key}.jpg") as im:
            assert im.mode in {"L", "CMYK"}
        out = load_cropped_image(fx.root / "CUB_200_2011" / "images" / f"{key}.jpg",
                                 fx.bboxes[key], 76)
        assert out.shape == (3, 76, 76)
        if key == fx.grayscale_key:
            assert torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    # a solid CMYK JPEG decodes to its RGB colour (up to JPEG error)
    Image.new("RGB", (40, 40), (200, 60, 20)).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    rgb = load_cropped_image(tmp_path / "c.jpg", None, 8).float().mean((1, 2))
    assert torch.allclose(rgb, torch.tensor([200.0, 60.0, 20.0]), atol=8)


# -------------------------------------------------------------------------- captions

def test_caption_file_quirks(fx, train):
    first = fx.train_keys[0]          # empty line + an 11th caption
    assert train.caption_texts_of(0) == [" ".join(tokenize(c)) for c in fx.captions[first]]
    assert "zzzignored" not in train.vocab and "eleventh" not in train.vocab
    gray = fx.train_keys.index(fx.grayscale_key)   # \ufffd\ufffd + whitespace-only line
    assert train.caption_texts_of(gray)[1] == "this bird s wings are black and its belly is white"
    border = fx.train_keys.index(fx.border_key)    # non-ASCII words
    assert train.caption_texts_of(border)[3] == "a caf brown bird with a nave look"
    cmyk = fx.train_keys.index(fx.cmyk_key)        # CRLF file
    assert len(train.captions_of(cmyk)) == 10
    assert all(w.isascii() and "\r" not in w for w in train.vocab.words)


def test_vocabulary_is_first_seen_over_train_then_test(fx, train):
    words = ["<end>"]
    for key in fx.train_keys + fx.test_keys:
        for caption in fx.captions[key]:
            for w in tokenize(caption):
                if w not in words:
                    words.append(w)
    assert train.vocab.words == words
    assert (fx.root / "captions.pickle").is_file()  # written like AttnGAN does


def test_too_few_captions_is_an_error(tmp_path):
    fx = make_cub_fixture(tmp_path / "birds", few_captions=True)
    bad = fx.train_keys[3]
    with pytest.raises(ValueError, match="8 usable captions, need 10"):
        read_caption_lines(fx.root / "text" / f"{bad}.txt")
    with pytest.raises(ValueError, match=bad.split("/")[1]):
        CUBDataset(fx.root, "train")


def test_fit_caption_pads_short_captions():
    caption, length = fit_caption([5, 6, 7], 18)
    assert length == 3 and caption.tolist() == [5, 6, 7] + [0] * 15
    caption, length = fit_caption(list(range(1, 19)), 18)             # exactly 18: unchanged
    assert length == 18 and caption.tolist() == list(range(1, 19))
    with pytest.raises(ValueError, match="empty"):
        fit_caption([], 18)


def test_bad_arguments(fx):
    with pytest.raises(ValueError, match="split"):
        read_split(fx.root, "val")
    with pytest.raises(ValueError, match="words_num"):
        CUBDataset(fx.root, "train", words_num=0)
    with pytest.raises(IndexError):
        CUBDataset(fx.root, "test")[4]


def test_fit_caption_keeps_an_ordered_random_subset():
    ids = list(range(1, 31))                                      # 30 distinct tokens
    subsets = set()
    for seed in range(20):
        caption, length = fit_caption(ids, 18, torch.Generator().manual_seed(seed))
        kept = caption.tolist()
        assert length == 18 and len(set(kept)) == 18 and 0 not in kept
        assert kept == sorted(kept)                               # original order kept
        subsets.add(tuple(kept))
    assert len(subsets) > 15                                      # and really random


def test_long_fixture_caption_is_subsampled(fx, train):
    assert len(LONG_CAPTION.split()) == 30
    index = fx.train_keys.index(fx.long_caption_key)
    ids = train.captions_of(index)[3]
    assert len(ids) == 30
    caption, length = fit_caption(ids, 18, torch.Generator().manual_seed(0))
    it = iter(ids)
    assert length == 18 and all(any(t == u for u in it) for t in caption.tolist())  # subsequence


# ------------------------------------------------------------------------------ items

def test_items(train):
    for i in range(len(train)):
        image, caption, length, class_id, key = train[i]
        assert image.shape == (3, 64, 64) and image.dtype == torch.float32
        assert -1.0 <= image.min() and image.max() <= 1.0
        assert caption.shape == (18,) and caption.dtype == torch.long
        assert 1 <= length <= 18 and (caption[:length] > 0).all() and (caption[length:] == 0).all()
        assert class_id == train.class_ids[i] and key == train.keys[i]
        assert train.vocab.decode(caption) in train.caption_texts_of(i) or length == 18


def test_seeded_items_are_reproducible_and_change_with_epoch(fx):
    a = CUBDataset(fx.root, "train", seed=3)
    b = CUBDataset(fx.root, "train", seed=3)
    assert all(torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1]) for i in range(8))
    before = [a[i][0] for i in range(8)]
    a.set_epoch(1)
    assert any(not torch.equal(x, a[i][0]) for i, x in enumerate(before))


def test_test_mode_is_the_centre_crop(fx):
    ds = CUBDataset(fx.root, "test", image_size=64, seed=0)
    assert not ds.train and ds.cache_size == 76
    for i in range(len(ds)):
        expected = center_crop(ds.uint8_image(i)[None], 64)[0]
        assert torch.equal(ds[i][0], expected)


def test_collate_sorted_keeps_fields_aligned():
    lengths = [3, 7, 5, 7, 1]
    batch = [(torch.full((3, 4, 4), float(i)), torch.tensor([i + 1] * n + [0] * (8 - n)), n,
              10 + i, f"k{i}") for i, n in enumerate(lengths)]
    images, captions, lens, class_ids, keys = collate_sorted(batch)
    assert lens.tolist() == [7, 7, 5, 3, 1]
    assert keys == ["k1", "k3", "k2", "k0", "k4"]                 # ties keep batch order
    for row, key in enumerate(keys):
        i = int(key[1:])
        assert (images[row] == i).all() and class_ids[row] == 10 + i
        assert captions[row, 0] == i + 1 and (captions[row] > 0).sum() == lens[row]
    assert images.shape == (5, 3, 4, 4) and captions.shape == (5, 8)


def test_dataloader_batch(train):
    from torch.utils.data import DataLoader
    images, captions, lengths, class_ids, keys = next(iter(
        DataLoader(train, batch_size=4, shuffle=True, collate_fn=collate_sorted)))
    assert images.shape == (4, 3, 64, 64) and captions.shape == (4, 18)
    assert (lengths[:-1] >= lengths[1:]).all()
    assert [train.class_ids[train.keys.index(k)] for k in keys] == class_ids.tolist()


# -------------------------------------------------------------------- the fixture itself

def _tree_bytes(root):
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_fixture_and_archives_are_deterministic(tmp_path):
    import tarfile
    import zipfile

    from t2ilib.data.fixtures import write_cub_archives

    a = make_cub_fixture(tmp_path / "a" / "birds")
    b = make_cub_fixture(tmp_path / "b" / "birds")
    assert _tree_bytes(a.root) == _tree_bytes(b.root)
    tgz_a, zip_a = write_cub_archives(a.root, tmp_path / "a")
    tgz_b, zip_b = write_cub_archives(b.root, tmp_path / "b")
    assert tgz_a.read_bytes() == tgz_b.read_bytes() and zip_a.read_bytes() == zip_b.read_bytes()
    with tarfile.open(tgz_a) as tar:
        names = tar.getnames()
    assert "attributes.txt" in names and "CUB_200_2011/images.txt" in names
    assert f"CUB_200_2011/images/{a.grayscale_key}_rgb.jpg" in names
    with zipfile.ZipFile(zip_a) as zf:
        names = zf.namelist()
    assert f"birds/text/{a.train_keys[0]}.txt" in names and "birds/train/filenames.pickle" in names
    assert any(n.startswith("__MACOSX/") for n in names)
    assert not any(n.endswith("captions.pickle") for n in names)
    assert (a.root / "train" / "filenames.pickle").read_bytes()[:3] == b"\x80\x02]"  # protocol 2
