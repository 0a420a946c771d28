"""The demo app of notebook 10 (``t2ilib.apps.demo``), driven from Python as a user would.

Widgets get new values (which runs the same observers a browser edit runs) and the tests
look at the pictures, the messages and the state. The models are tiny and untrained
(32 px, ngf 4), with their zero-initialised layers randomised so that the text matters.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from pathlib import Path

import pytest
import torch
from PIL import Image

from t2ilib.apps.demo import (
    CaptionCheck,
    caption_notes,
    check_caption,
    cut_words,
    generate_with_masks,
)
from t2ilib.apps.demo_app import SISGANDemo, SSAGANDemo, build_demo
from t2ilib.apps.demo_models import (
    DemoModel,
    DemoTrainConfig,
    SISGANModel,
    load_or_train_demo_model,
    notebook07_checkpoints,
)
from t2ilib.apps.demo_render import CELL, message_html, plain_text, render_rows
from t2ilib.ssagan.model import Generator, SSAGANConfig
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary, captions_to_ids

from .helpers import randomize_zero_params

CAPTIONS = ["this bird has a red body and blue wings", "a yellow bird with black wings",
            "a green bird with a white belly and a long beak"]


@pytest.fixture(scope="module")
def model() -> DemoModel:
    torch.manual_seed(0)
    vocab = Vocabulary.build(CAPTIONS)
    text_encoder = TextEncoder(TextEncoderConfig(len(vocab), embed_dim=8, hidden_dim=16,
                                                 dropout=0.0)).eval()
    g = Generator(SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=16))
    randomize_zero_params(g)
    return DemoModel(g.eval(), text_encoder, vocab, None, "a tiny untrained test model")


def decode(png: bytes) -> Image.Image:
    return Image.open(io.BytesIO(png))


# ----------------------------------------------------------------------------- captions

def test_check_caption_reads_as_the_model_does(model: DemoModel):
    vocab = model.vocab
    good = check_caption(vocab, "This bird has a RED body!")
    assert good == CaptionCheck(vocab.ids(["this", "bird", "has", "a", "red", "body"]), [], 0, None)
    assert good.ok
    unknown = check_caption(vocab, "a crimson bird with sparkly wings")
    assert unknown.ok and unknown.unknown == ["crimson", "sparkly"]
    assert vocab.decode(unknown.ids) == "a bird with wings"
    long = check_caption(vocab, " ".join(["red"] * 20 + ["blue"]), words_num=18)
    assert long.ok and len(long.ids) == 18 and long.truncated == 3
    for bad, why in [("", "empty"), ("   ", "empty"), ("?!", "no words"),
                     ("qwerty zxcvb", "none of the words")]:
        result = check_caption(vocab, bad)
        assert not result.ok and why in result.error and result.ids == []
    assert not check_caption(vocab, None).ok  # type: ignore[arg-type]


def test_the_words_a_long_caption_loses_are_named(model: DemoModel):
    vocab = model.vocab
    long = " ".join(["red"] * 17 + ["bird", "with", "blue", "wings"])
    assert cut_words(vocab, long) == ["with", "blue", "wings"]  # 18 known words are kept
    assert caption_notes(vocab, long) == ["only the first 18 known words are read; dropped: "
                                          "with blue wings"]
    assert caption_notes(vocab, "a red bird") == []
    with pytest.raises(ValueError, match="none of the words"):
        caption_notes(vocab, "qwerty zxcvb")
    demo = SSAGANDemo(model)
    demo.caption.value = long
    demo.update()
    assert "3 cut: with blue wings" in plain_text(demo.message.value)


def test_check_caption_does_not_leak_the_vocabulary_warning(model: DemoModel):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning would raise here
        assert check_caption(model.vocab, "a sparkly bird").unknown == ["sparkly"]


# ----------------------------------------------------------------------------- generating

def test_generate_with_masks_shapes_and_picture(model: DemoModel):
    result = generate_with_masks(model, CAPTIONS[0], seed=3, n_samples=3)
    assert result.images.shape == (3, 3, 32, 32)
    assert [m.shape for m in result.masks] == [(3, 1, r, r) for r in (4, 8, 16, 32)]
    assert result.images.min() >= -1 and result.images.max() <= 1
    picture = decode(result.png)
    rows = 1 + len(result.masks)
    assert picture.height == rows * (CELL + 2) + 2
    assert picture.width > 3 * CELL
    without = decode(generate_with_masks(model, CAPTIONS[0], 3, 3, show_masks=False).png)
    assert without.height == CELL + 4 and without.width == picture.width


def test_sample_i_does_not_depend_on_the_number_of_samples(model: DemoModel):
    two = generate_with_masks(model, CAPTIONS[1], seed=5, n_samples=2).images
    four = generate_with_masks(model, CAPTIONS[1], seed=5, n_samples=4).images
    torch.testing.assert_close(two, four[:2])
    assert not torch.equal(four[0], four[1])


def test_render_rows_checks_its_input():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(ValueError, match="rows and"):
        render_rows([x], ["a", "b"])
    with pytest.raises(ValueError, match="different numbers"):
        render_rows([x, x[:1]], ["a", "b"])
    big = decode(render_rows([torch.zeros(1, 3, 200, 200)], ["shrunk"], cell=50))
    assert big.height == 54


# ----------------------------------------------------------------------------- the SSA-GAN tab

def test_widgets_redraw_when_seed_caption_and_count_change(model: DemoModel):
    demo = SSAGANDemo(model, caption=CAPTIONS[0], seed=0, n_samples=2)
    assert demo.status == "ok" and demo.renders == 1
    first_png, first = demo.image.value, demo.result.images.clone()

    demo.seed.value = 1
    assert demo.renders == 2 and demo.image.value != first_png
    assert "(picture 2)" in plain_text(demo.message.value)  # every redraw is numbered in the UI
    assert (demo.result.images - first).abs().mean() > 1e-3, "a new seed must change the images"

    demo.seed.value = 0  # back to the first noise, another caption: only the text differs
    torch.testing.assert_close(demo.result.images, first)
    demo.caption.value = CAPTIONS[1]
    assert demo.renders == 4 and demo.status == "ok"
    assert (demo.result.images - first).abs().mean() > 1e-4, "the caption must change the images"
    assert "yellow" in plain_text(demo.message.value)

    demo.n_samples.value = 3
    assert demo.result.images.shape[0] == 3
    assert decode(demo.image.value).width > decode(first_png).width
    demo.show_masks.value = False
    assert decode(demo.image.value).height == CELL + 4


def test_unknown_words_are_a_visible_warning(model: DemoModel):
    demo = SSAGANDemo(model, caption=CAPTIONS[0])
    before = demo.image.value
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        demo.caption.value = "a red bird with sparkly blue wings and a hat"
    assert demo.status == "warning"
    text = plain_text(demo.message.value)
    assert "sparkly" in text and "hat" in text and "Unknown word" in text
    assert 't2i-warning' in demo.message.value
    assert demo.image.value != before and demo.image.layout.display == ""


def test_unusable_caption_is_an_error_message_not_a_traceback(model: DemoModel):
    demo = SSAGANDemo(model, caption=CAPTIONS[0])
    renders = demo.renders
    for bad in ["", "   ", "qwerty zxcvb", "!!!"]:
        demo.caption.value = bad
        assert demo.status == "error", bad
        assert "t2i-error" in demo.message.value
        assert "Cannot use this caption" in plain_text(demo.message.value)
        assert demo.image.layout.display == "none"
        assert demo.result.images is None
    assert demo.renders == renders
    demo.caption.value = CAPTIONS[2]  # a good caption brings the picture back
    assert demo.status == "ok" and demo.image.layout.display == "" and demo.renders == renders + 1


def test_a_failing_model_is_an_error_message(model: DemoModel, monkeypatch):
    demo = SSAGANDemo(model, caption=CAPTIONS[0])

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(model.generator, "forward", broken)
    demo.seed.value = 7
    assert demo.status == "error"
    assert "Generation failed: RuntimeError: out of memory" in plain_text(demo.message.value)
    assert demo.image.layout.display == "none"


def test_user_text_is_escaped_in_messages(model: DemoModel):
    demo = SSAGANDemo(model, caption="a red bird <script>x</script>")
    assert "<script>" not in demo.message.value and "script" in plain_text(demo.message.value)
    with pytest.raises(ValueError):
        message_html("info", "x")


# ----------------------------------------------------------------------------- the app

def test_build_demo_has_two_tabs_and_says_when_sisgan_is_missing(model: DemoModel):
    app = build_demo(model, None, caption=CAPTIONS[1], seed=2, n_samples=3)
    assert app.widget.titles == ("SSA-GAN", "SISGAN")
    assert app.widget.children == (app.ssagan.widget, app.sisgan.widget)
    assert app.ssagan.result.images.shape[0] == 3
    assert app.sisgan.status == "unavailable"
    assert "SISGAN model not available" in plain_text(app.sisgan.message.value)
    assert "application/vnd.jupyter.widget-view+json" in app._repr_mimebundle_()
    assert SISGANDemo(None).update() is None


# ----------------------------------------------------------------------------- loading

def _touch(path: Path, mtime: float) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    os.utime(path, (mtime, mtime))
    return path.resolve()


def test_notebook07_checkpoints_order(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    now = time.time()
    ckpts, runs = tmp_path / "checkpoints", tmp_path / "runs"
    old = _touch(runs / "nb07_toybirds_32px" / "checkpoint.pt", now - 100)
    new = _touch(ckpts / "nb07_toybirds_64px" / "checkpoint.pt", now)
    smoke = _touch(ckpts / "nb07_toybirds_32px_smoke" / "checkpoint.pt", now - 50)
    _touch(ckpts / "demo_ssagan_x" / "checkpoint.pt", now)  # not notebook 07's
    found = [p for p in notebook07_checkpoints() if p.is_relative_to(tmp_path.resolve())]
    assert found == [new, old]
    found = [p for p in notebook07_checkpoints(smoke=True) if p.is_relative_to(tmp_path.resolve())]
    assert found == [smoke, new, old]


def test_missing_explicit_checkpoint_raises(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="no SSA-GAN checkpoint"):
        load_or_train_demo_model(tmp_path / "nope.pt")


TINY_TRAIN = DemoTrainConfig(dataset_dir="toybirds_demo_test", n_train=8, n_test=2, ngf=4, ndf=4,
                             text_dim=16, cnn_width=4, batch_size=4, damsm_epochs=1, epochs=1,
                             max_steps_per_epoch=1)


def test_without_notebook07_a_small_model_is_trained_once_then_loaded(tmp_path: Path,
                                                                       monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    monkeypatch.setattr("t2ilib.apps.demo_models.notebook07_checkpoints", lambda smoke=False: [])
    first = load_or_train_demo_model(train_config=TINY_TRAIN, progress_bar=False)
    assert "trained now" in first.source
    assert first.checkpoint == TINY_TRAIN.run_dir() / "checkpoint.pt"
    assert first.checkpoint.is_relative_to(tmp_path / "checkpoints")
    again = load_or_train_demo_model(train_config=TINY_TRAIN, progress_bar=False)
    assert "trained earlier" in again.source
    for a, b in zip(first.generator.state_dict().values(), again.generator.state_dict().values()):
        torch.testing.assert_close(a, b)
    demo = SSAGANDemo(again, caption="a red bird")
    assert demo.status == "ok" and demo.result.images.shape[-1] == 32

    # smoke runs train in a temporary folder and keep nothing
    before = sorted((tmp_path / "checkpoints").iterdir())
    smoke = load_or_train_demo_model(smoke=True, train_config=TINY_TRAIN, progress_bar=False)
    assert smoke.checkpoint is None and "smoke" in smoke.source
    assert sorted((tmp_path / "checkpoints").iterdir()) == before

    # a notebook-07 checkpoint, once there, wins over the demo's own model
    nb07 = tmp_path / "runs" / "nb07_toybirds_32px" / "checkpoint.pt"  # where notebook 07 writes
    nb07.parent.mkdir(parents=True)
    nb07.write_bytes(first.checkpoint.read_bytes())
    monkeypatch.undo()
    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    assert notebook07_checkpoints()[0] == nb07.resolve()
    loaded = load_or_train_demo_model()
    assert "notebook 07" in loaded.source and loaded.checkpoint == nb07.resolve()


# ----------------------------------------------------------------------------- the SISGAN tab

@pytest.fixture(scope="module")
def sisgan(model: DemoModel) -> SISGANModel:
    from t2ilib.sisgan.model import Generator as SISGANGenerator
    from t2ilib.sisgan.model import SISGANConfig

    torch.manual_seed(1)
    g = SISGANGenerator(SISGANConfig(image_size=16, sentence_dim=16, condition_dim=4, ngf=4,
                                     ndf=4, n_residual=1, d_text_dim=4), pretrained=False)
    randomize_zero_params(g)
    sources = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    # batch-norm statistics of these inputs (untrained defaults make the output near-constant)
    for m in g.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # a plain average over the calibration pass
            m.reset_running_stats()
    with torch.no_grad():
        _, sentence = model.text_encoder(*captions_to_ids(model.vocab, CAPTIONS))
        g.train()(sources, sentence, torch.zeros(3, 4))
    return SISGANModel(g.eval(), model.text_encoder, model.vocab, sources, CAPTIONS,
                       "a tiny untrained SISGAN")


def test_sisgan_tab_redraws_for_source_and_caption(sisgan: SISGANModel):
    tab = SISGANDemo(sisgan, caption=CAPTIONS[0])
    assert tab.status == "ok" and tab.renders == 1 and tab.result.shape == (1, 3, 16, 16)
    picture = decode(tab.image.value)
    assert picture.height == 2 * CELL + 4  # one row: the source and the result, side by side
    first, first_png = tab.result.clone(), tab.image.value
    assert CAPTIONS[0] in plain_text(tab.source_caption.value)

    tab.index.value = 2
    assert tab.renders == 2 and tab.image.value != first_png
    assert (tab.result - first).abs().mean() > 1e-4, "another source must give another result"
    assert CAPTIONS[2] in plain_text(tab.source_caption.value)
    second = tab.result.clone()
    tab.caption.value = CAPTIONS[1]
    assert (tab.result - second).abs().mean() > 1e-6, "another caption must change the result"


def test_sisgan_tab_warns_and_reports_errors(sisgan: SISGANModel):
    tab = SISGANDemo(sisgan, caption=CAPTIONS[0])
    tab.caption.value = "a red bird with a sparkly crown"
    assert tab.status == "warning" and "sparkly" in plain_text(tab.message.value)
    assert tab.image.layout.display == ""
    renders = tab.renders
    tab.caption.value = "   "
    assert tab.status == "error" and "Cannot use this caption" in plain_text(tab.message.value)
    assert tab.image.layout.display == "none" and tab.renders == renders


def test_build_demo_with_sisgan(model: DemoModel, sisgan: SISGANModel):
    app = build_demo(model, sisgan, caption=CAPTIONS[0], n_samples=2)
    assert app.sisgan.status == "ok" and app.sisgan.result is not None
    off = build_demo(model, None, sisgan_note="switched off")
    assert plain_text(off.sisgan.message.value).strip().endswith("switched off")


# ----------------------------------------------------------------------------- several models

def _other_model(model: DemoModel, seed: int) -> DemoModel:
    torch.manual_seed(seed)
    g = Generator(SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=16))
    randomize_zero_params(g, seed=seed)
    return DemoModel(g.eval(), model.text_encoder, model.vocab, None, f"another model {seed}")


def test_the_model_switch_redraws_with_the_chosen_model_and_names_it(model: DemoModel):
    other = _other_model(model, 7)
    demo = SSAGANDemo({"yours": model, "reference": other}, caption=CAPTIONS[0], n_samples=2)
    assert demo.model is model and demo.choice.options == ("yours", "reference")
    first = demo.result.images.clone()
    demo.choice.value = "reference"
    assert demo.model is other and "another model 7" in plain_text(demo.info.value)
    assert demo.renders == 2 and (demo.result.images - first).abs().mean() > 1e-3
    assert SSAGANDemo(model).choice is None  # one model: no switch


def test_sisgan_model_switch(model: DemoModel, sisgan: SISGANModel):
    fewer = SISGANModel(sisgan.generator, sisgan.text_encoder, sisgan.vocab, sisgan.sources[:2],
                        CAPTIONS[:2], "the same SISGAN, two sources")
    tab = SISGANDemo({"yours": sisgan, "reference": fewer}, caption=CAPTIONS[0])
    tab.index.value = 2
    tab.choice.value = "reference"
    assert tab.model is fewer and tab.index.max == 1 and tab.index.value == 1
    assert tab.status == "ok" and "two sources" in plain_text(tab.info.value)


def test_measured_masks_show_the_stage_that_localises_the_bird(model: DemoModel):
    measured = DemoModel(model.generator, model.text_encoder, model.vocab, None, "measured",
                         mask_iou={"stages": [{"size": r, "iou": v} for r, v in
                                              ((4, 0.10), (8, 0.12), (16, 0.41), (32, 0.20))],
                                   "centred_blob": 0.29})
    assert measured.best_mask_stage() == (2, 0.41, 0.29) and model.best_mask_stage() is None
    one = decode(generate_with_masks(measured, CAPTIONS[0], 3, 2).png)
    every = decode(generate_with_masks(model, CAPTIONS[0], 3, 2).png)
    assert one.height == 2 * (CELL + 2) + 2 and every.height == 5 * (CELL + 2) + 2
