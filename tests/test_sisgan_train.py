"""SISGAN training loop: exact resume, checkpoint checks, load-or-train, load_sisgan, manipulate.

Tiny models (ngf = ndf = 4, 16-d text) at 64 px on a 16-image ToyBirds set, on the CPU.
"""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np
import pytest
import torch

from t2ilib.data.toybirds import write_toybirds
from t2ilib.models.sisgan import SISGANConfig
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.train.checkpoint import CheckpointMismatch
from t2ilib.train.sisgan import (
    LOSS_NAMES,
    SISGANTrainConfig,
    SISGANTrainer,
    images_from_files,
    load_native_split,
    load_or_train_sisgan,
    load_sisgan,
    manipulate,
)
from t2ilib.train.ssagan import TrainData

MODEL = SISGANConfig(image_size=64, sentence_dim=16, condition_dim=4, ngf=4, ndf=4,
                     n_residual=1, d_text_dim=4)
CONFIG = SISGANTrainConfig(epochs=2, batch_size=4, max_steps_per_epoch=2, log_every=1, seed=5,
                           recon_weight=0.2)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=12, n_test=4,
                          size=64, seed=1)


@pytest.fixture(scope="module")
def data(root) -> TrainData:
    return load_native_split(root, "train")


def text_encoder(data: TrainData) -> TextEncoder:
    torch.manual_seed(0)  # stands in for a pretrained DAMSM: the same weights every time
    return TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=8, hidden_dim=16))


def make(data, checkpoint=None, config=CONFIG, model=MODEL, **kw) -> SISGANTrainer:
    return SISGANTrainer(config, model, text_encoder(data), data, device="cpu",
                         checkpoint=checkpoint, **kw)


def weights(trainer: SISGANTrainer) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v.clone() for k, v in trainer.G.state_dict().items()}
    out.update({f"D.{k}": v.clone() for k, v in trainer.D.state_dict().items()})
    return out


def test_native_split_keeps_the_drawn_pixels(root, data):
    from PIL import Image

    assert data.images.shape == (12, 3, 64, 64) and data.image_size == 64
    assert len(data.captions) == 120 and data.captions_per_image == 10
    key = "/".join(sorted((root / "CUB_200_2011" / "images").glob("*/*.jpg"))[0].parts[-2:])
    with Image.open(root / "CUB_200_2011" / "images" / key) as im:
        first = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    assert any(torch.equal(first, img) for img in data.images)


def test_one_step_changes_both_networks_and_logs_every_loss(data):
    trainer = make(data)
    before = weights(trainer)
    te_before = {k: v.clone() for k, v in trainer.text_encoder.state_dict().items()}
    losses = trainer.train_step(trainer.batch(0, 0))
    assert losses.shape == (len(LOSS_NAMES),) and torch.isfinite(losses).all()
    after = weights(trainer)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("G."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("D."))
    for k, v in trainer.text_encoder.state_dict().items():
        assert torch.equal(v, te_before[k])  # the text encoder stays frozen
    named = dict(zip(LOSS_NAMES, losses.tolist()))
    assert 0 <= named["p_real"] <= 1 and named["recon"] > 0


def test_batches_are_deterministic_and_differ_between_steps(data):
    trainer = make(data)
    a, b, c = trainer.batch(1, 0), trainer.batch(1, 0), trainer.batch(1, 1)
    for key in a:
        assert torch.equal(a[key], b[key])
    assert not torch.equal(a["images"], c["images"])
    assert (a["other"] != torch.arange(4)).all()  # mismatching captions come from other images


def test_split_run_equals_straight_run(data, tmp_path):
    straight = make(data, tmp_path / "a.pt")
    straight.fit(progress_bar=False)
    first = make(data, tmp_path / "b.pt")
    result = first.fit(stop_after=3, progress_bar=False)
    assert result.interrupted and result.step == 3
    second = make(data, tmp_path / "b.pt")
    second.load()
    assert (second.step, second.epoch, second.step_in_epoch) == (3, 1, 1)
    result = second.fit(progress_bar=False)
    assert not result.interrupted and result.step == 4 and result.epoch == 2
    a, b = weights(straight), weights(second)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight.result(True).log["d_loss"] == second.result(True).log["d_loss"]


def test_checkpoint_of_another_configuration_is_refused(data, tmp_path):
    trainer = make(data, tmp_path / "c.pt")
    trainer.fit(epochs=1, progress_bar=False)
    other = make(data, tmp_path / "c.pt", config=replace(CONFIG, p_match=0.3))
    with pytest.raises(CheckpointMismatch, match="p_match"):
        other.load()
    later = make(data, tmp_path / "c.pt", config=replace(CONFIG, epochs=5, log_every=7))
    later.load()  # run-only fields may change
    assert later.epoch == 1


def test_load_or_train_then_load_sisgan_and_manipulate(data, root, tmp_path):
    run_dir = tmp_path / "run"
    first = load_or_train_sisgan(make(data, tmp_path / "m.pt", run_dir=run_dir),
                                 progress_bar=False)
    assert first.trained and first.result.epoch == 2
    assert [f.name for f in first.result.sample_files] == ["epoch_001.png", "epoch_002.png"]
    second = load_or_train_sisgan(make(data, tmp_path / "m.pt"), progress_bar=False)
    assert not second.trained and second.result.log == first.result.log
    for k, v in first.generator.state_dict().items():
        assert torch.equal(v, second.generator.state_dict()[k])

    g, te, vocab, meta = load_sisgan(tmp_path / "m.pt")
    assert not g.training and not te.training and vocab == data.vocab
    assert meta["epoch"] == 2 and meta["model_config"]["ngf"] == 4 and meta["log"]
    images = data.images[:3].float() / 127.5 - 1
    captions = ["this bird has a red belly", "a small bird with blue wings", "a bird"]
    out = manipulate(g, te, vocab, images, captions)
    assert out.shape == (3, 3, 64, 64) and out.abs().max() <= 1
    assert torch.equal(out, manipulate(g, te, vocab, images, captions))  # eps = 0: deterministic
    noisy = manipulate(g, te, vocab, images, captions, seed=1)
    assert torch.equal(noisy, manipulate(g, te, vocab, images, captions, seed=1))
    assert not torch.equal(noisy, out)
    with torch.no_grad():
        first.generator.eval()
        expected = manipulate(first.generator, first.text_encoder, data.vocab, images, captions)
    torch.testing.assert_close(out, expected)
    one = manipulate(g, te, vocab, images, ["this bird has a red belly"])  # one caption for all
    assert torch.equal(one[0], out[0])

    with pytest.warns(UserWarning, match="dropping words"):
        manipulate(g, te, vocab, images[:1], ["a red zyzzyva bird"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(ValueError, match="none of the words"):
            manipulate(g, te, vocab, images[:1], ["zyzzyva qwerty"])
    with pytest.raises(ValueError, match="2 captions for 3 images"):
        manipulate(g, te, vocab, images, ["a", "b"])
    with pytest.raises(ValueError, match="uint8"):
        manipulate(g, te, vocab, data.images[:1], ["a red bird"])

    retrained = load_or_train_sisgan(make(data, tmp_path / "m.pt"), retrain=True,
                                     epochs=1, progress_bar=False)
    assert retrained.trained and retrained.result.epoch == 1


def test_load_sisgan_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_sisgan(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatch, match="not a SISGAN"):
        load_sisgan(tmp_path / "other.pt")


def test_learning_rate_halves_on_schedule():
    config = SISGANTrainConfig(lr=1e-3, lr_halve_every=100)
    assert [config.lr_at(e) for e in (0, 99, 100, 250)] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    for bad in ({"batch_size": 1}, {"p_match": 2.0}, {"recon_weight": -1.0}):
        with pytest.raises(ValueError):
            SISGANTrainConfig(**bad)


def test_trainer_checks_its_inputs(data):
    with pytest.raises(ValueError, match="image_size"):
        make(data, model=replace(MODEL, image_size=32))
    with pytest.raises(ValueError, match="16-d sentences"):
        make(data, model=replace(MODEL, sentence_dim=8))
    with pytest.raises(ValueError, match="fewer than one batch"):
        make(data, config=replace(CONFIG, batch_size=64))


def test_images_from_files(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (10, 10), 0).save(tmp_path / "black.jpg")
    (tmp_path / "text.png").write_text("not an image")
    x = images_from_files([tmp_path / "red.png", tmp_path / "black.jpg"], 16)
    assert x.shape == (2, 3, 16, 16)
    torch.testing.assert_close(x[0, :, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
    assert (x[1] == -1).all()
    with pytest.raises(ValueError, match="not an image"):
        images_from_files([tmp_path / "text.png"], 16)


def test_the_toybirds_recipe_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path / "data"))
    run = load_or_train_sisgan(device="cpu", smoke=True, progress_bar=False)
    assert run.trained and run.result.step == 2 and run.path.is_file()
    assert not (tmp_path / "data" / "checkpoints").exists()  # smoke models stay out of it
    g, te, vocab, meta = load_sisgan(run.path)
    out = manipulate(g, te, vocab, torch.zeros(2, 3, 64, 64), ["a red bird"])
    assert out.shape == (2, 3, 64, 64)


def test_run_checkpoint_names(tmp_path, monkeypatch):
    from t2ilib.train.sisgan import TOYBIRDS_MODEL, TOYBIRDS_TRAIN, run_checkpoint

    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    default = run_checkpoint("toybirds", replace(TOYBIRDS_TRAIN, epochs=99), TOYBIRDS_MODEL)
    assert default == tmp_path / "checkpoints" / "sisgan_toybirds64.pt"
    other = run_checkpoint("toybirds", replace(TOYBIRDS_TRAIN, p_match=0.3), TOYBIRDS_MODEL)
    wider = run_checkpoint("toybirds", TOYBIRDS_TRAIN, replace(TOYBIRDS_MODEL, ngf=32))
    assert other.name.startswith("sisgan_toybirds64_") and len({default, other, wider}) == 3
    assert run_checkpoint("cub", TOYBIRDS_TRAIN, TOYBIRDS_MODEL).name.startswith("sisgan_cub64_")


def test_the_optional_damsm_term_needs_and_uses_the_image_encoder(data):
    from t2ilib.models.image_encoder import SmallCNNConfig, SmallCNNEncoder

    config = replace(CONFIG, damsm_weight=0.5)
    with pytest.raises(ValueError, match="image encoder"):
        make(data, config=config)
    torch.manual_seed(1)
    image_encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=16, width=4))
    trainer = make(data, config=config, image_encoder=image_encoder)
    frozen = {k: v.clone() for k, v in image_encoder.state_dict().items()}
    named = dict(zip(LOSS_NAMES, trainer.train_step(trainer.batch(0, 0)).tolist()))
    assert named["g_damsm"] > 0
    for k, v in trainer.image_encoder.state_dict().items():
        assert torch.equal(v, frozen[k])  # frozen: only G learns from it
    assert "image_encoder.weights" in trainer.fingerprint()
    assert make(data).train_step(make(data).batch(0, 0))[LOSS_NAMES.index("g_damsm")] == 0


def test_damsm_image_size_resizes_the_edits_for_the_image_encoder(data):
    from t2ilib.models.image_encoder import SmallCNNConfig, SmallCNNEncoder

    image_encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=16, width=4))
    seen = []
    image_encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    config = replace(CONFIG, damsm_weight=0.5, damsm_image_size=32)
    trainer = make(data, config=config, image_encoder=image_encoder)
    named = dict(zip(LOSS_NAMES, trainer.train_step(trainer.batch(0, 0)).tolist()))
    assert named["g_damsm"] > 0
    assert seen and all(tuple(s[-2:]) == (32, 32) for s in seen)  # the edits are 64 px
