"""Tensor cache (t2ilib.data.cache) and uint8 augmentation (t2ilib.data.augment)."""

from __future__ import annotations

import pytest
import torch

from t2ilib.data.augment import (
    cache_size_for,
    center_crop,
    crop_flip,
    draw_crop_params,
    random_crop_flip,
    to_unit_range,
)
from t2ilib.data.cache import CachedCUBDataset, build_cache, cache_path, ensure_cache, load_cache
from t2ilib.data.cub import collate_sorted, load_captions
from t2ilib.data.cub_dataset import CUBDataset
from t2ilib.data.fixtures import make_cub_fixture
from t2ilib.io import BadFileError, load_torch


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_cub_fixture(tmp_path_factory.mktemp("cub") / "birds")


# ------------------------------------------------------------------------ augmentation

def test_cache_size_is_attngans_76_64():
    assert [cache_size_for(s) for s in (64, 128, 256)] == [76, 152, 304]


def test_to_unit_range_endpoints():
    x = torch.tensor([0, 255, 51], dtype=torch.uint8)
    assert torch.allclose(to_unit_range(x), torch.tensor([-1.0, 1.0, 51 / 127.5 - 1]))
    with pytest.raises(ValueError):
        to_unit_range(x.float())


def test_crop_flip_matches_a_naive_loop():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (6, 3, 11, 11), dtype=torch.uint8, generator=g)
    top, left, flips = draw_crop_params(6, 11, 7, generator=g)
    flips[0], flips[1] = True, False                               # both cases for sure
    out = crop_flip(images, top, left, flips, 7)
    for b in range(6):
        y, x = int(top[b]), int(left[b])
        expected = images[b, :, y:y + 7, x:x + 7]
        if flips[b]:
            expected = expected.flip(-1)
        assert torch.equal(out[b], expected)


def test_random_crop_flip_covers_offsets_and_flips():
    g = torch.Generator().manual_seed(1)
    top, left, flips = draw_crop_params(2000, 76, 64, generator=g)
    assert top.min() == 0 and top.max() == 12 and left.min() == 0 and left.max() == 12
    assert 0.45 < flips.float().mean() < 0.55
    _, _, none = draw_crop_params(50, 76, 64, flip=False, generator=g)
    assert not none.any()
    x = torch.randint(0, 256, (4, 3, 76, 76), dtype=torch.uint8)
    assert random_crop_flip(x, 64).shape == (4, 3, 64, 64)


def test_center_crop_offset():
    x = torch.arange(76 * 76, dtype=torch.int64).reshape(1, 1, 76, 76).repeat(1, 3, 1, 1) % 256
    out = center_crop(x.to(torch.uint8), 64)
    assert torch.equal(out, to_unit_range(x[..., 6:70, 6:70].to(torch.uint8)))


# ------------------------------------------------------------------------------- cache

def test_cache_round_trip_equals_the_jpeg_path(fx):
    for split in ("train", "test"):
        path = build_cache(fx.root, split, 64)
        assert path == cache_path(fx.root, split, 64) and path.name == f"{split}_76px.pt"
        data = load_torch(path)                                   # weights_only=True
        jpeg = CUBDataset(fx.root, split, 64, seed=5)
        assert data["images"].dtype == torch.uint8
        assert data["images"].shape == (len(jpeg), 3, 76, 76)
        for i in range(len(jpeg)):
            assert torch.equal(data["images"][i], jpeg.uint8_image(i))
        cached = CachedCUBDataset(fx.root, split, 64, seed=5)
        assert cached.keys == jpeg.keys and cached.class_ids == jpeg.class_ids
        assert cached.captions == jpeg.captions and cached.vocab == jpeg.vocab
        for train_mode in (True, False):
            jpeg.train = cached.train = train_mode
            for i in range(len(jpeg)):
                a, b = jpeg[i], cached[i]
                assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2:] == b[2:]


def test_ensure_cache_reuses_and_rebuilds(fx, tmp_path):
    import shutil
    root = tmp_path / "birds"
    shutil.copytree(fx.root, root, ignore=shutil.ignore_patterns("cache"))
    path = ensure_cache(root, "train", 64)
    stamp = path.stat().st_mtime_ns
    assert ensure_cache(root, "train", 64).stat().st_mtime_ns == stamp     # reused
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    boxes.write_text(boxes.read_text().replace(" ", "  ", 1))             # source changed
    ensure_cache(root, "train", 64)
    assert path.stat().st_mtime_ns != stamp
    path.write_bytes(b"not a cache")                                      # corrupt file
    with pytest.raises(BadFileError, match="ensure_cache .* rebuilds it"):
        load_cache(path)
    stale = path.parent / f".{path.name}.x1y2z3.tmp"                      # a killed build's
    stale.write_bytes(b"half a cache")
    assert load_cache(ensure_cache(root, "train", 64))["images"].shape[0] == 8
    assert not stale.exists()


def test_uint8_items_for_device_augmentation(fx):
    ds = CachedCUBDataset(fx.root, "train", 64, uint8=True, seed=0)
    images, captions, lengths, _, keys = collate_sorted([ds[i] for i in range(4)])
    assert images.dtype == torch.uint8 and images.shape == (4, 3, 76, 76)
    for row, key in enumerate(keys):
        assert torch.equal(images[row], ds.images[ds.keys.index(key)])
    assert random_crop_flip(images, 64).shape == (4, 3, 64, 64)


def test_mismatched_cache_is_refused(fx):
    path = build_cache(fx.root, "test", 64)
    with pytest.raises(ValueError, match="holds split 'test'"):
        CachedCUBDataset(None, "train", 64, cache_file=path)
    with pytest.raises(ValueError, match="version"):
        torch.save({"images": torch.zeros(1)}, fx.root / "cache" / "foreign.pt")
        load_cache(fx.root / "cache" / "foreign.pt")


def _script(name):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data_scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_prepare_cub_script(fx, tmp_path, capsys):
    import shutil
    root = tmp_path / "birds"
    shutil.copytree(fx.root, root, ignore=shutil.ignore_patterns("cache", "captions.pickle"))
    prepare = _script("prepare_cub")
    assert prepare.main(["--root", str(root), "--image-size", "64"]) == 0
    out = capsys.readouterr().out
    assert "train: 8 images, 2 classes, 80 captions" in out and "test: 4 images" in out
    assert (root / "captions.pickle").is_file()
    assert load_cache(root / "cache" / "test_76px.pt")["images"].shape == (4, 3, 76, 76)
    assert prepare.main(["--root", str(tmp_path / "nothing")]) == 2
    assert "images.txt" in capsys.readouterr().err


def test_make_scripts(tmp_path, capsys):
    assert _script("make_toybirds").main(["--out", str(tmp_path / "toy"), "--n-train", "2",
                                          "--n-test", "1"]) == 0
    assert (tmp_path / "toy" / "toybirds.json").is_file()
    assert _script("make_toybirds").main(["--out", str(tmp_path / "toy"), "--n-train", "2",
                                          "--n-test", "1"]) == 1      # refuses to overwrite
    assert _script("make_cub_fixture").main(["--out", str(tmp_path / "fx"), "--archives"]) == 0
    assert (tmp_path / "fx" / "CUB_200_2011.tgz").is_file()
    assert (tmp_path / "fx" / "birds" / "text").is_dir()


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.parametrize("num_workers", [0, 1])
def test_a_bad_image_midway_leaves_no_cache_file(fx, tmp_path, num_workers):
    import shutil


    root = tmp_path / "birds"
    shutil.copytree(fx.root, root, ignore=shutil.ignore_patterns("cache"))
    load_captions(root)                                       # captions.pickle is not the cache
    bad = root / "CUB_200_2011" / "images" / f"{fx.train_keys[-1]}.jpg"   # the last image
    bad.write_bytes(bad.read_bytes()[:500])
    before = _files(root)
    with pytest.raises(BadFileError) as err:                  # not a RuntimeError from a worker
        build_cache(root, "train", 64, num_workers=num_workers)
    assert err.value.path == bad and str(bad) in str(err.value)
    assert "not a readable image" in str(err.value)
    assert _files(root) == before                             # no cache file, no temporary
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=bad.name):
        build_cache(root, "train", 64, num_workers=num_workers)
    assert _files(root) == [f for f in before if f != bad.relative_to(root).as_posix()]


def test_a_failed_rebuild_keeps_the_old_cache_file(fx, tmp_path):
    import shutil


    root = tmp_path / "birds"
    shutil.copytree(fx.root, root, ignore=shutil.ignore_patterns("cache"))
    path = build_cache(root, "test", 64)
    old = path.read_bytes()
    key = fx.test_keys[1]
    boxes = root / "CUB_200_2011" / "bounding_boxes.txt"
    ids = {k: i for i, k in enumerate(fx.train_keys + fx.test_keys, start=1)}
    boxes.write_text("".join(f"{line.split()[0]} 500 500 5 5\n"
                             if line.split()[0] == str(ids[key]) else line + "\n"
                             for line in boxes.read_text().splitlines()))  # outside the image
    with pytest.raises(BadFileError, match=rf"bounding_boxes.txt: image {key}: box .* outside"):
        ensure_cache(root, "test", 64)                       # the source changed: rebuild
    assert path.read_bytes() == old and _files(root / "cache") == [path.name]
