"""``python -m t2ilib manipulate``: end to end on a tiny checkpoint; one-line errors."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from t2ilib.apps.cli import main

from .helpers import assert_one_line_error, tiny_sisgan_run


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_sisgan_run(tmp_path_factory.mktemp("sisgan_cli"))


def test_manipulate_writes_the_edited_image(checkpoint, tmp_path, capsys):
    ckpt, bird = checkpoint
    out = tmp_path / "edited.png"
    assert main(["manipulate", "--checkpoint", str(ckpt), "--image", str(bird), "--caption",
                 "this bird has a red belly", "--out", str(out), "--device", "cpu"]) == 0
    assert Image.open(out).size == (68, 68)  # one 64 px cell, 2 px border
    side = tmp_path / "side.png"
    assert main(["manipulate", "--checkpoint", str(ckpt), "--image", str(bird), "--caption",
                 "a bird with blue wings", "--out", str(side), "--side-by-side", "--seed", "3",
                 "--device", "cpu"]) == 0
    assert Image.open(side).size == (2 * 66 + 2, 68)
    assert f"wrote {side}" in capsys.readouterr().out


@pytest.mark.parametrize("problem", ["missing image", "not an image", "missing checkpoint",
                                     "not a checkpoint", "unknown words", "no caption"])
def test_bad_input_gives_a_one_line_error(problem, checkpoint, tmp_path, capsys):
    ckpt, bird = checkpoint
    args = {"--checkpoint": str(ckpt), "--image": str(bird), "--caption": "a red bird",
            "--out": str(tmp_path / "o.png"), "--device": "cpu"}
    expected = {"missing image": "no such image", "not an image": "not a readable image",
                "missing checkpoint": "no such file",
                "not a checkpoint": "is not a SISGAN training checkpoint",
                "unknown words": "none of the words", "no caption": "--caption"}[problem]
    if problem == "missing image":
        args["--image"] = str(tmp_path / "nope.png")
    elif problem == "not an image":
        (tmp_path / "notes.png").write_text("hello")
        args["--image"] = str(tmp_path / "notes.png")
    elif problem == "missing checkpoint":
        args["--checkpoint"] = str(tmp_path / "nope.pt")
    elif problem == "not a checkpoint":
        torch.save({"something": torch.zeros(1)}, tmp_path / "x.pt")
        args["--checkpoint"] = str(tmp_path / "x.pt")
    elif problem == "unknown words":
        args["--caption"] = "zyzzyva qwerty"
    else:
        del args["--caption"]
    argv = ["manipulate", *[x for kv in args.items() for x in kv]]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert_one_line_error(exit_info, capsys, expected)
    assert not (tmp_path / "o.png").exists()

