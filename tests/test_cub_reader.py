"""The CUB + AttnGAN reader (t2ilib.data.cub) on a fixture tree with the real quirks."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from t2ilib.data.augment import center_crop
from t2ilib.data.caption_files import CaptionNotes
from t2ilib.data.cub import (
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
from t2ilib.data.cub_dataset import CUBDataset
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


def test_a_file_with_too_few_captions_is_used_with_what_it_has(tmp_path):
    fx = make_cub_fixture(tmp_path / "birds", few_captions=True)
    short = fx.train_keys[3]
    path = fx.root / "text" / f"{short}.txt"
    notes = CaptionNotes()
    lines = read_caption_lines(path, notes=notes)
    assert notes.short == [(path, 8)]
    assert lines[:8] == fx.captions[short][:8] and lines[8:] == lines[:2]  # repeated in order
    with pytest.warns(UserWarning, match=r"1 caption file\(s\) have fewer than 10 usable "
                                         rf"captions.*{path.name} \(8\)"):
        data = CUBDataset(fx.root, "train")
    assert len(data.captions) == 10 * len(data)
    path.write_text("\n  \n?!\n")  # nothing usable: refused, naming the file
    with pytest.raises(ValueError, match="no usable caption"):
        read_caption_lines(path)


def test_non_ascii_letters_the_tokenizer_drops_are_counted_in_one_warning(tmp_path):
    fx = make_cub_fixture(tmp_path / "birds")
    notes = CaptionNotes()
    read_caption_lines(fx.root / "text" / f"{fx.border_key}.txt", notes=notes)  # "café", "naïve"
    assert notes.non_ascii == [(fx.root / "text" / f"{fx.border_key}.txt", 1)]
    with pytest.warns(UserWarning, match=r"captions with non-ASCII letters, which the tokenizer "
                                         r"drops \(as AttnGAN's: 'tête' reads 'tte'\)"):
        notes.warn(10)


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


# ------------------------------------------------------------- bad files: named, never raw

def _tree(fx, tmp_path):
    import shutil
    root = tmp_path / "birds"
    shutil.copytree(fx.root, root, ignore=shutil.ignore_patterns("cache", "captions.pickle"))
    return root


def _image(root, key):
    return root / "CUB_200_2011" / "images" / f"{key}.jpg"


def _set_box(root, key, box):
    """Rewrite the line of ``key`` in bounding_boxes.txt; returns its image id."""
    ids = dict(line.split()[::-1] for line in
               (root / "CUB_200_2011" / "images.txt").read_text().splitlines())
    image_id = ids[f"{key}.jpg"]
    path = root / "CUB_200_2011" / "bounding_boxes.txt"
    lines = [f"{image_id} {' '.join(map(str, box))}" if line.split()[0] == image_id else line
             for line in path.read_text().splitlines()]
    path.write_text("\n".join(lines) + "\n")
    return image_id


@pytest.mark.parametrize("damage", ["truncated", "not an image", "empty"])
def test_unreadable_jpeg_names_the_file(fx, tmp_path, damage):
    from t2ilib.io import BadFileError

    root = _tree(fx, tmp_path)
    key = fx.train_keys[2]
    path = _image(root, key)
    data = {"truncated": path.read_bytes()[:400], "empty": b"",
            "not an image": b"<html><body>404 Not Found</body></html>\n"}[damage]
    path.write_bytes(data)
    ds = CUBDataset(root, "train")  # the reader is built from the index files only
    with pytest.raises(BadFileError) as err:
        ds.uint8_image(2)
    assert err.value.path == path and str(path) in str(err.value)
    assert "not a readable image" in str(err.value) and "download_cub.py" in str(err.value)
    with pytest.raises(BadFileError, match="not a readable image"):
        load_cropped_image(path, None, 8)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=key.split("/")[1]):
        ds.uint8_image(2)


@pytest.mark.parametrize("box, reason", [
    ((float("nan"), 3.0, 10.0, 10.0), "not four finite numbers"),
    ((3.0, 3.0, float("inf"), 10.0), "not four finite numbers"),
    ((3.0, 3.0, 0.0, 10.0), "zero or negative width or height"),
    ((3.0, 3.0, 10.0, -4.0), "zero or negative width or height"),
    ((3.0, 3.0, 1.0, 1.0), "too small to crop"),
])
def test_bad_box_values_name_the_box_file_the_image_and_the_box(fx, tmp_path, box, reason):
    from t2ilib.io import BadFileError

    root = _tree(fx, tmp_path)
    key = fx.train_keys[5]
    image_id = _set_box(root, key, box)
    for call in (lambda: read_bboxes(root), lambda: CUBDataset(root, "train")):
        with pytest.raises(BadFileError) as err:
            call()
        message = str(err.value)
        assert err.value.path == root / "CUB_200_2011" / "bounding_boxes.txt"
        assert f"image id {image_id} ({key})" in message and reason in message
        assert "box (x, y, w, h) = (" + ", ".join(f"{v:g}" for v in box) + ")" in message


@pytest.mark.parametrize("where", ["right", "below", "left", "above"])
def test_box_outside_the_image_is_named_when_the_image_is_read(fx, tmp_path, where):
    from t2ilib.io import BadFileError

    root = _tree(fx, tmp_path)
    key = fx.train_keys[6]
    w, h = fx.sizes[key]
    box = {"right": (w, 5.0, 10.0, 10.0), "below": (5.0, h + 3.0, 10.0, 10.0),
           "left": (-20.0, 5.0, 20.0, 10.0), "above": (5.0, -50.0, 10.0, 40.0)}[where]
    _set_box(root, key, box)
    ds = CUBDataset(root, "train")  # finite, positive: the file itself is fine
    with pytest.raises(BadFileError) as err:
        ds.uint8_image(6)
    message = str(err.value)
    assert err.value.path == root / "CUB_200_2011" / "bounding_boxes.txt"
    assert key in message and f"lies entirely outside the {w} x {h} image" in message
    with pytest.raises(BadFileError, match=r"a\.png: image a\.png: box .* entirely outside"):
        Image.new("RGB", (20, 20)).save(tmp_path / "a.png")
        load_cropped_image(tmp_path / "a.png", (30, 0, 5, 5), 8)


def test_partly_outside_and_oversize_boxes_are_clipped_as_before(fx, tmp_path):
    root = _tree(fx, tmp_path)
    key = fx.train_keys[6]
    w, h = fx.sizes[key]
    for box in ((-10.0, -10.0, 20.0, 20.0), (w - 5.0, h - 5.0, 30.0, 30.0),
                (-w, -h, 3.0 * w, 3.0 * h), (0.0, 0.0, float(w), float(h))):
        _set_box(root, key, box)
        assert CUBDataset(root, "train").uint8_image(6).shape == (3, 76, 76)


def test_bbox_problem_by_hand():
    from t2ilib.data.cub_index import bbox_problem

    assert bbox_problem((0, 0, 10, 10), 10, 10) == ""
    assert bbox_problem((9.5, 9.5, 1.5, 1.5), 10, 10) == ""
    assert bbox_problem((-5, -5, 5.5, 5.5), 10, 10) == ""      # overlaps by half a pixel
    assert "outside" in bbox_problem((10, 0, 4, 4), 10, 10)      # touches the right edge only
    assert "outside" in bbox_problem((-5, 0, 5, 4), 10, 10)      # ... the left edge only
    assert bbox_problem((10, 0, 4, 4)) == ""                     # no size: values only
    assert "finite" in bbox_problem((0, 0, 4))
    assert "finite" in bbox_problem((0, float("-inf"), 4, 4))


def test_malformed_index_lines_are_named(fx, tmp_path):
    from t2ilib.data.cub_index import read_index
    from t2ilib.io import BadFileError

    root = _tree(fx, tmp_path)
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    lines = boxes.read_text().splitlines()
    boxes.write_text("\n".join([*lines[:3], "4 1.0 2.0 x 4.0", "99 1 2 3 4", *lines[4:]]) + "\n")
    with pytest.raises(BadFileError, match=r"bounding_boxes.txt: line 4: cannot parse '4 1.0"):
        read_bboxes(root)
    problems = []
    index = read_index(root, problems)
    assert [p.reason for p in problems] == ["line 4: cannot parse '4 1.0 2.0 x 4.0'",
                                            "line 5: image id 99 is not in images.txt"]
    assert len(index) == 12 and sum(box is None for _, box in index.values()) == 1
    (root / "CUB_200_2011" / "images.txt").write_bytes(b"1 a.jpg\n2 \xff\xfe.jpg\n")
    with pytest.raises(BadFileError, match=r"images.txt: not UTF-8 text"):
        read_bboxes(root)


def test_unreadable_caption_files_are_named(fx, tmp_path):
    from t2ilib.io import BadFileError

    root = _tree(fx, tmp_path)
    path = root / "text" / f"{fx.train_keys[1]}.txt"
    good = path.read_bytes()
    path.write_bytes(good[:20] + b"\xff\xfe\xfa" + good[20:])          # not UTF-8
    with pytest.raises(BadFileError) as err:
        read_caption_lines(path)
    assert err.value.path == path and "not UTF-8 text (byte 0xff at offset 20)" in str(err.value)
    with pytest.raises(BadFileError, match=fx.train_keys[1].split("/")[1]):
        CUBDataset(root, "train")                                     # builds captions.pickle
    assert not (root / "captions.pickle").exists()
    path.write_bytes(good.replace(b"\n", b"\x00\n"))                   # UTF-8 but binary
    with pytest.raises(BadFileError, match="not a text file"):
        read_caption_lines(path)
    path.write_bytes(_image(root, fx.train_keys[1]).read_bytes())      # a JPEG named .txt
    with pytest.raises(BadFileError, match="not UTF-8 text"):
        read_caption_lines(path)
    path.unlink()
    with pytest.raises(FileNotFoundError, match=r"no such caption file: .*\.txt"):
        read_caption_lines(path)


class _System:
    """Pickles as a call of os.system (what a malicious pickle does)."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        import os
        return (os.system, (self.command,))


@pytest.mark.parametrize("name", ["filenames.pickle", "class_info.pickle"])
def test_bad_split_pickles_are_named(fx, tmp_path, name):
    import pickle

    from t2ilib.io import BadFileError

    root = _tree(fx, tmp_path)
    path = root / "train" / name
    good = path.read_bytes()
    marker = tmp_path / "ran"
    path.write_bytes(pickle.dumps([_System(f"touch {marker}")], protocol=2))
    with pytest.raises(BadFileError) as err:
        read_split(root, "train")
    assert err.value.path == path and not marker.exists()
    assert "refusing to load global" in str(err.value) and "system" in str(err.value)
    assert "download it again" in str(err.value)
    for data, problem in ((b"", "empty"), (good[:len(good) // 2], "truncated"),
                          (good[:2], "truncated"), (b"GIF89a garbage", "not a pickle"),
                          (pickle.dumps({"a": 1}), "not a list of")):
        path.write_bytes(data)
        with pytest.raises(BadFileError, match=problem) as err:
            read_split(root, "train")
        assert err.value.path == path and str(path) in str(err.value)


def test_check_files_finds_nothing_in_a_good_tree(fx, tmp_path):
    from t2ilib.data.cub_check import check_files

    root = _tree(fx, tmp_path)
    before = sorted(p.relative_to(root) for p in root.rglob("*"))
    assert check_files(root) == []
    assert sorted(p.relative_to(root) for p in root.rglob("*")) == before   # wrote nothing
