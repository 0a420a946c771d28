"""DAMSM pretraining loop and checkpoints, on a tiny synthetic caption/colour task."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from t2ilib.io import load_torch
from t2ilib.models.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.train import damsm as damsm_train
from t2ilib.train.damsm import (
    DAMSMTrainConfig,
    build_image_encoder,
    evaluate_damsm,
    image_encoder_spec,
    load_damsm,
    load_or_train_damsm,
    save_damsm,
    train_damsm,
)

COLOURS = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])  # class k -> RGB


def toy_loader(n_batches: int = 4, batch: int = 8, seed: int = 0) -> list[tuple]:
    """Batches ``(images (B,3,16,16), captions (B,4), lengths, class_ids, keys)``.

    Class k is a noisy square of colour k; its caption is "<word k+1> bird" or "bird <word k+1>
    bird" (ids 1..4 name the colour, 5 = "bird"), sorted by length like collate_sorted.
    """
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        classes = torch.arange(batch) % 4
        images = COLOURS[classes][:, :, None, None] + 0.3 * torch.randn(
            batch, 3, 16, 16, generator=g
        )
        captions = torch.zeros(batch, 4, dtype=torch.long)
        lengths = torch.empty(batch, dtype=torch.long)
        for i, k in enumerate(classes.tolist()):
            words = [k + 1, 5] if torch.rand(1, generator=g) < 0.5 else [5, k + 1, 5]
            captions[i, : len(words)] = torch.tensor(words)
            lengths[i] = len(words)
        order = torch.argsort(lengths, descending=True, stable=True)
        out.append(
            (
                images[order].clamp(-1, 1),
                captions[order],
                lengths[order],
                classes[order],
                [f"img{i}" for i in order.tolist()],
            )
        )
    return out


def toy_encoders(seed: int = 0) -> tuple[TextEncoder, SmallCNNEncoder]:
    torch.manual_seed(seed)
    text = TextEncoder(TextEncoderConfig(vocab_size=6, embed_dim=8, hidden_dim=16, dropout=0.0))
    image = SmallCNNEncoder(SmallCNNConfig(embed_dim=16, width=4))
    return text, image


FAST = DAMSMTrainConfig(epochs=3, lr=1e-2)


def test_training_lowers_the_damsm_loss_on_held_out_batches():
    text, image = toy_encoders()
    loader, held_out = toy_loader(seed=0), toy_loader(n_batches=2, seed=1)
    before = evaluate_damsm(text, image, held_out)
    history = train_damsm(text, image, loader, FAST)
    after = evaluate_damsm(text, image, held_out)
    assert [h["epoch"] for h in history] == [1, 2, 3]
    assert all(h["steps"] == 4 for h in history)
    assert history[-1]["total"] < 0.5 * history[0]["total"]
    assert after["total"] < 0.5 * before["total"]
    for h in history:
        assert h["total"] == pytest.approx(h["w0"] + h["w1"] + h["s0"] + h["s1"])


def test_learning_rate_decays_per_epoch_down_to_a_tenth():
    text, image = toy_encoders()
    cfg = DAMSMTrainConfig(epochs=4, lr=1e-3, lr_decay=0.5, min_lr_ratio=0.2, max_steps_per_epoch=1)
    history = train_damsm(text, image, toy_loader(n_batches=2), cfg)
    assert [h["lr"] for h in history] == pytest.approx([1e-3, 5e-4, 2.5e-4, 2e-4])
    assert [h["steps"] for h in history] == [1, 1, 1, 1]
    assert DAMSMTrainConfig().lr == 2e-3 and DAMSMTrainConfig().betas == (0.5, 0.999)
    assert DAMSMTrainConfig().lr_decay == 0.98 and DAMSMTrainConfig().grad_clip == 0.25


def test_gradient_clipping_applies_to_the_text_encoder(monkeypatch):
    calls = []
    real = torch.nn.utils.clip_grad_norm_

    def spy(params, max_norm, *args, **kwargs):
        params = list(params)
        calls.append((len(params), max_norm))
        norm = real(params, max_norm, *args, **kwargs)
        total = torch.sqrt(sum(p.grad.square().sum() for p in params if p.grad is not None))
        assert total <= max_norm * (1 + 1e-4)  # the clipped norm
        return norm

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", spy)
    text, image = toy_encoders()
    train_damsm(text, image, toy_loader(n_batches=2), DAMSMTrainConfig(epochs=1))
    assert calls == [(len(list(text.parameters())), 0.25)] * 2


def test_checkpoint_round_trip(tmp_path):
    text, image = toy_encoders()
    train_damsm(text, image, toy_loader(n_batches=1), DAMSMTrainConfig(epochs=1))
    path = save_damsm(
        tmp_path / "ck" / "damsm.pt", text, image, {"data": "toy"}, [{"epoch": 1, "total": 1.0}]
    )
    assert [p.name for p in path.parent.iterdir()] == ["damsm.pt"]  # atomic: no temporary left over
    assert isinstance(load_torch(path), dict)  # readable with weights_only=True
    text2, image2, info = load_damsm(path)
    assert info == {"fingerprint": {"data": "toy"}, "history": [{"epoch": 1, "total": 1.0}]}
    assert not text2.training and not image2.training
    batch = toy_loader(n_batches=1, seed=3)[0]
    text.eval(), image.eval()
    with torch.no_grad():
        for a, b in zip(text(batch[1], batch[2]), text2(batch[1], batch[2])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(image(batch[0]), image2(batch[0])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_load_checkpoint_refuses_other_files(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a t2ilib.damsm"):
        load_damsm(tmp_path / "other.pt")


def test_load_or_train_trains_once_then_loads(tmp_path, monkeypatch):
    path = tmp_path / "damsm.pt"
    cfg = DAMSMTrainConfig(epochs=1, max_steps_per_epoch=2)
    loader = toy_loader(n_batches=2)
    text, image = toy_encoders(seed=0)
    run = load_or_train_damsm(path, text, image, loader, cfg, extra={"data": "toy"})
    assert run.trained and path.is_file() and len(run.history) == 1

    text2, image2 = toy_encoders(seed=1)  # different random weights
    calls = []
    monkeypatch.setattr(damsm_train, "train_damsm", lambda *a, **k: calls.append(1) or [])
    run2 = load_or_train_damsm(path, text2, image2, loader, cfg, extra={"data": "toy"})
    assert not run2.trained and calls == [] and run2.history == run.history
    for a, b in zip(text.state_dict().values(), text2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    for a, b in zip(image.state_dict().values(), image2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)

    # anything in the fingerprint changes -> train again; so does retrain=True
    assert load_or_train_damsm(path, *toy_encoders(), loader, cfg, extra={"data": "other"}).trained
    assert load_or_train_damsm(
        path, *toy_encoders(), loader, replace(cfg, lr=1e-4), extra={"data": "other"}
    ).trained
    assert load_or_train_damsm(
        path, *toy_encoders(), loader, replace(cfg, lr=1e-4), extra={"data": "other"}, retrain=True
    ).trained
    assert len(calls) == 3


def test_image_encoder_spec_round_trip():
    _, image = toy_encoders()
    spec = image_encoder_spec(image)
    assert spec == {"kind": "small_cnn", "config": {"embed_dim": 16, "width": 4}}
    rebuilt = build_image_encoder(spec)
    assert type(rebuilt) is SmallCNNEncoder and rebuilt.config == image.config
    with pytest.raises(ValueError, match="unknown image encoder"):
        build_image_encoder({"kind": "resnet", "config": {}})
    with pytest.raises(ValueError, match="unknown image encoder"):
        image_encoder_spec(torch.nn.Linear(1, 1))


def test_negative_epochs_raise():
    with pytest.raises(ValueError, match="epochs"):
        train_damsm(*toy_encoders(), toy_loader(1), DAMSMTrainConfig(epochs=-1))


def test_default_checkpoint_lives_under_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    assert damsm_train.default_checkpoint() == tmp_path / "checkpoints" / "damsm_toybirds32.pt"
    assert damsm_train.default_checkpoint("cub", 256).name == "damsm_cub256.pt"


def test_resize_for_encoder_keeps_gradients_and_skips_equal_sizes():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    assert damsm_train.resize_for_encoder(x, None) is x
    assert damsm_train.resize_for_encoder(x, 16) is x
    y = damsm_train.resize_for_encoder(x, 32)
    assert y.shape == (2, 3, 32, 32)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    flat = torch.full((1, 3, 8, 8), 0.25)
    torch.testing.assert_close(damsm_train.resize_for_encoder(flat, 4),
                               torch.full((1, 3, 4, 4), 0.25))


def test_trained_image_size_reads_the_fingerprint():
    assert damsm_train.trained_image_size({"extra": {"image_size": 32}}) == 32
    assert damsm_train.trained_image_size({"extra": {}}) is None
    assert damsm_train.trained_image_size({}) is None
