"""data_scripts/prepare_cub.py: every problem of a bad tree in one report, nothing written."""

from __future__ import annotations

import importlib.util
import os
import pickle
import shutil
from pathlib import Path

import pytest

from t2ilib.data.cache import load_cache
from t2ilib.data.cub_index import Problem
from t2ilib.data.fixtures import make_cub_fixture

SCRIPT = Path(__file__).resolve().parent.parent / "data_scripts" / "prepare_cub.py"


@pytest.fixture(scope="module")
def prepare():
    spec = importlib.util.spec_from_file_location("prepare_cub", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def fx(tmp_path_factory):
    return make_cub_fixture(tmp_path_factory.mktemp("cub") / "birds")


@pytest.fixture
def root(fx, tmp_path):
    root = tmp_path / "birds"
    shutil.copytree(fx.root, root)
    return root


def _tree(root):
    """Every file and folder under ``root`` with its bytes (folders: None)."""
    return {p.relative_to(root).as_posix(): None if p.is_dir() else p.read_bytes()
            for p in sorted(root.rglob("*"))}


def _image(root, key):
    return root / "CUB_200_2011" / "images" / f"{key}.jpg"


def _set_box(root, image_id, box):
    path = root / "CUB_200_2011" / "bounding_boxes.txt"
    path.write_text("".join(f"{image_id} {box}\n" if line.split()[0] == str(image_id)
                            else f"{line}\n" for line in path.read_text().splitlines()))


class _System:
    def __reduce__(self):
        import os
        return (os.system, ("echo this must never run",))


def test_a_good_tree_prepares_fine(prepare, root, capsys):
    assert not (root / "captions.pickle").exists() and not (root / "cache").exists()
    assert prepare.main(["--root", str(root), "--image-size", "64", "32"]) == 0
    out, err = capsys.readouterr()
    assert "error" not in err and "train: 8 images, 2 classes, 80 captions" in out
    assert (root / "captions.pickle").is_file()
    for split, n in (("train", 8), ("test", 4)):
        for s in (76, 38):
            assert load_cache(root / "cache" / f"{split}_{s}px.pt")["images"].shape == (n, 3, s, s)
    assert prepare.main(["--root", str(root)]) == 0           # again: reuses what is there


def test_every_problem_is_reported_and_nothing_is_written(prepare, fx, root, capsys):
    truncated = _image(root, fx.train_keys[0])
    truncated.write_bytes(truncated.read_bytes()[:300])
    not_jpeg = _image(root, fx.test_keys[2])
    not_jpeg.write_text("<html>404 Not Found</html>\n")
    _set_box(root, 6, "500.0 3.0 10.0 10.0")                   # outside the image
    _set_box(root, 7, "4.0 3.0 0.0 10.0")                      # zero width
    _set_box(root, 8, "nan 3.0 10.0 10.0")
    caption = root / "text" / f"{fx.test_keys[0]}.txt"
    caption.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    missing_caption = root / "text" / f"{fx.train_keys[3]}.txt"
    missing_caption.unlink()
    class_info = root / "test" / "class_info.pickle"
    class_info.write_bytes(pickle.dumps([_System()], protocol=2))
    before = _tree(root)
    assert prepare.main(["--root", str(root)]) == 2
    out, err = capsys.readouterr()
    assert "Traceback" not in err and out == "" and "this must never run" not in out + err
    lines = err.strip().splitlines()
    assert lines[0] == f"prepare_cub.py: error: 8 problems in {root}; nothing was written:"
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    expected = [
        ("CUB_200_2011/bounding_boxes.txt",
         f"image id 6 ({fx.train_keys[5]}): box (x, y, w, h) = (500, 3, 10, 10) lies entirely "
         f"outside the {fx.sizes[fx.train_keys[5]][0]} x {fx.sizes[fx.train_keys[5]][1]} image"),
        ("CUB_200_2011/bounding_boxes.txt",
         f"image id 7 ({fx.train_keys[6]}): box (x, y, w, h) = (4, 3, 0, 10) has a zero or "
         "negative width or height"),
        ("CUB_200_2011/bounding_boxes.txt",
         f"image id 8 ({fx.train_keys[7]}): box (x, y, w, h) = (nan, 3, 10, 10) is not four "
         "finite numbers"),
        (rel(truncated), "not a readable image"),
        (rel(not_jpeg), "not a readable image"),
        ("test/class_info.pickle", f"refusing to load global {os.system.__module__}.system"),
        (rel(missing_caption), "missing caption file"),        # sorted by path: 001 < 003
        (rel(caption), "not UTF-8 text (byte 0x89 at offset 0)"),
    ]
    assert len(lines) == 1 + len(expected) + 1
    for line, (path, reason) in zip(lines[1:], expected):
        assert line.startswith(f"  {path}: {reason}"), line
    assert "download_cub.py" in lines[-1]
    assert _tree(root) == before                               # no cache, no captions.pickle
    assert not (root / "captions.pickle").exists() and not (root / "cache").exists()


def test_a_bad_captions_pickle_is_reported(prepare, root, capsys):
    (root / "captions.pickle").write_bytes(b"")
    before = _tree(root)
    assert prepare.main(["--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert "1 problem in" in err and "  captions.pickle: the file is empty" in err
    assert _tree(root) == before
    (root / "captions.pickle").write_bytes(pickle.dumps([[[1]], [], {0: "<end>", 1: "a"},
                                                         {"<end>": 0, "a": 1}], protocol=2))
    assert prepare.main(["--root", str(root)]) == 2
    assert "captions.pickle: not AttnGAN's captions.pickle for this tree (1 train captions for 8 " \
           "images x 10" in capsys.readouterr().err
    assert not (root / "cache").exists()


def test_a_missing_layout_is_one_line(prepare, tmp_path, capsys):
    (tmp_path / "birds" / "text").mkdir(parents=True)
    assert prepare.main(["--root", str(tmp_path / "birds")]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith(f"prepare_cub.py: error: {tmp_path / 'birds'} is not a complete CUB")
    assert "CUB_200_2011/images.txt, CUB_200_2011/bounding_boxes.txt, CUB_200_2011/images " \
           "(from CUB_200_2011.tgz" in err
    assert "train/filenames.pickle, test/filenames.pickle (from the AttnGAN birds" in err
    assert "text (from" not in err
    assert sorted(p.name for p in (tmp_path / "birds").iterdir()) == ["text"]


def test_a_long_report_is_cut(prepare, tmp_path):
    problems = [Problem(tmp_path / "text" / f"{i}.txt", "missing caption file") for i in range(73)]
    lines = prepare.report_problems(tmp_path, problems).splitlines()
    assert lines[0] == f"prepare_cub.py: error: 73 problems in {tmp_path}; nothing was written:"
    assert lines[1] == "  text/0.txt: missing caption file" and len(lines) == 1 + 50 + 2
    assert lines[-2] == "  ... and 23 more"


def test_bad_arguments_exit_2(prepare, root, capsys):
    for argv in (["--image-size", "0"], ["--workers", "-1"]):
        with pytest.raises(SystemExit) as exit_info:
            prepare.main(["--root", str(root), *argv])
        assert exit_info.value.code == 2
    assert "prepare_cub.py: error:" in capsys.readouterr().err
