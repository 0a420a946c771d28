"""DAMSM pretraining on the engine, and its checkpoints, on a tiny synthetic caption/colour task."""

from __future__ import annotations

import copy
from dataclasses import replace

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from t2ilib.damsm import pretrain as damsm_train
from t2ilib.damsm.generator_loss import resize_for_encoder
from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.damsm.pretrain import (
    DAMSMTask,
    DAMSMTrainConfig,
    batch_to_device,
    build_image_encoder,
    damsm_batch_losses,
    damsm_step,
    epoch_lr,
    evaluate_damsm,
    image_encoder_spec,
    load_damsm,
    load_or_train_damsm,
    save_damsm,
    train_damsm,
)
from t2ilib.data.cub import collate_sorted
from t2ilib.engine.checkpoint import CheckpointMismatch, read_checkpoint
from t2ilib.engine.loop import Engine, step_generator
from t2ilib.io import load_torch
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

COLOURS = torch.tensor([[1.0, -1, -1], [-1, 1, -1], [-1, -1, 1], [1, 1, -1]])  # class k -> RGB


class ToyItems(Dataset):
    """Item ``i``: a noisy 16 px square of colour ``i % 4`` and the caption "<colour> bird" or
    "bird <colour> bird" (ids 1..4 name the colour, 5 = "bird"), drawn from ``(seed, epoch, i)``
    like a seeded CachedCUBDataset."""

    def __init__(self, n: int = 32, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self) -> int:
        return self.n

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> tuple:
        g = step_generator(self.seed, self.epoch, i)
        k = i % 4
        image = (COLOURS[k][:, None, None] + 0.3 * torch.randn(3, 16, 16, generator=g)).clamp(-1, 1)
        words = [k + 1, 5] if torch.rand(1, generator=g) < 0.5 else [5, k + 1, 5]
        caption = torch.zeros(4, dtype=torch.long)
        caption[: len(words)] = torch.tensor(words)
        return image, caption, len(words), k, f"img{i}"


def toy_batches(n: int = 16, seed: int = 1) -> DataLoader:
    return DataLoader(ToyItems(n, seed), batch_size=8, collate_fn=collate_sorted)


def toy_encoders(seed: int = 0, dropout: float = 0.0) -> tuple[TextEncoder, SmallCNNEncoder]:
    torch.manual_seed(seed)
    text = TextEncoder(TextEncoderConfig(vocab_size=6, embed_dim=8, hidden_dim=16,
                                         dropout=dropout))
    image = SmallCNNEncoder(SmallCNNConfig(embed_dim=16, width=4))
    return text, image


FAST = DAMSMTrainConfig(epochs=5, lr=1e-2)


def test_training_lowers_the_damsm_loss_on_held_out_batches():
    text, image = toy_encoders()
    before = evaluate_damsm(text, image, toy_batches())
    history = train_damsm(text, image, ToyItems(32), FAST, batch_size=8, progress_bar=False)
    after = evaluate_damsm(text, image, toy_batches())
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5]
    assert all(h["steps"] == 4 for h in history)
    assert history[-1]["total"] < 0.5 * history[0]["total"]
    assert after["total"] < 0.5 * before["total"]
    for h in history:
        assert h["total"] == pytest.approx(h["w0"] + h["w1"] + h["s0"] + h["s1"])


def test_learning_rate_decays_per_epoch_down_to_a_tenth():
    cfg = DAMSMTrainConfig(epochs=4, lr=1e-3, lr_decay=0.5, min_lr_ratio=0.2, max_steps_per_epoch=1)
    assert [epoch_lr(cfg, e) for e in range(4)] == pytest.approx([1e-3, 5e-4, 2.5e-4, 2e-4])
    history = train_damsm(*toy_encoders(), ToyItems(16), cfg, batch_size=8, progress_bar=False)
    assert [h["lr"] for h in history] == pytest.approx([1e-3, 5e-4, 2.5e-4, 2e-4])
    assert [h["steps"] for h in history] == [1, 1, 1, 1]
    assert DAMSMTrainConfig().lr == 2e-3 and DAMSMTrainConfig().betas == (0.5, 0.999)
    assert DAMSMTrainConfig().lr_decay == 0.98 and DAMSMTrainConfig().grad_clip == 0.25


def test_the_task_sets_each_epochs_learning_rate_before_its_steps():
    cfg = DAMSMTrainConfig(epochs=3, lr=1e-3, lr_decay=0.5, min_lr_ratio=0.1)
    task = DAMSMTask(*toy_encoders(), ToyItems(16), cfg, batch_size=8)
    seen = []
    step = task.step
    task.step = lambda batch: (seen.append(task.optimizer.param_groups[0]["lr"]), step(batch))[1]
    Engine(task).fit(3, progress_bar=False)
    assert seen == pytest.approx([1e-3] * 2 + [5e-4] * 2 + [2.5e-4] * 2)
    task.start_epoch(40)  # the floor
    assert task.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)


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
    train_damsm(text, image, ToyItems(16), DAMSMTrainConfig(epochs=1), batch_size=8,
                progress_bar=False)
    assert calls == [(len(list(text.parameters())), 0.25)] * 2


def test_each_step_starts_from_fresh_gradients():
    text, image = toy_encoders()
    batch = next(iter(toy_batches()))
    cfg = DAMSMTrainConfig()
    expected_text, expected_image = copy.deepcopy(text), copy.deepcopy(image)
    damsm_batch_losses(expected_text, expected_image, batch, cfg.gammas).total.backward()
    torch.nn.utils.clip_grad_norm_(list(expected_text.parameters()), cfg.grad_clip)
    for p in [*text.parameters(), *image.parameters()]:
        p.grad = torch.full_like(p, 1e3)  # left over from an earlier step
    optimizer = torch.optim.SGD([*text.parameters(), *image.parameters()], lr=0.0)
    damsm_step(text, image, optimizer, batch, cfg)
    for model, ref in ((text, expected_text), (image, expected_image)):
        for (name, p), q in zip(model.named_parameters(), ref.parameters()):
            torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_batches_are_reproducible_per_epoch_and_step():
    task = DAMSMTask(*toy_encoders(), ToyItems(32), DAMSMTrainConfig(), batch_size=8, seed=5)
    first = task.batch(1, 2)
    task.batch(0, 0), task.batch(3, 1)  # other epochs in between
    again = task.batch(1, 2)
    assert first[4] == again[4]
    for a, b in zip(first[:4], again[:4]):
        assert torch.equal(torch.as_tensor(a), torch.as_tensor(b))
    assert first[4] != task.batch(2, 2)[4] or not torch.equal(first[0], task.batch(2, 2)[0])
    keys = [k for s in range(4) for k in task.batch(1, s)[4]]
    assert sorted(keys) == sorted(f"img{i}" for i in range(32))  # an epoch sees each item once
    assert list(first[2]) == sorted(first[2], reverse=True)  # collate_sorted: longest first


def test_exact_resume_equals_an_uninterrupted_run(tmp_path):
    cfg = DAMSMTrainConfig(epochs=2, lr=1e-2, lr_decay=0.5)

    def task(seed: int) -> DAMSMTask:  # dropout on: the global RNG must be resumed too
        return DAMSMTask(*toy_encoders(seed, dropout=0.3), ToyItems(32), cfg, batch_size=8)

    whole = task(0)
    Engine(whole, tmp_path / "whole").fit(2, progress_bar=False)  # 8 steps

    first = task(0)
    half = Engine(first, tmp_path / "half").fit(2, stop_after=3, progress_bar=False)
    assert half.interrupted and half.step == 3  # mid-epoch
    resumed = task(1)  # other initial weights: all must come from the checkpoint
    engine = Engine(resumed, tmp_path / "half")
    engine.load()
    assert (engine.step, engine.epoch, engine.step_in_epoch) == (3, 0, 3)
    engine.fit(2, progress_bar=False)
    for name, obj in whole.state().items():
        a, b = obj.state_dict(), resumed.state()[name].state_dict()
        if name == "history":
            strip = [{k: v for k, v in r.items() if k != "seconds"} for r in a["rows"]]
            assert strip == [{k: v for k, v in r.items() if k != "seconds"} for r in b["rows"]]
        elif name == "optimizer":
            for s, t in zip(a["state"].values(), b["state"].values()):
                for key in s:
                    torch.testing.assert_close(s[key], t[key], rtol=0, atol=0)
        else:
            for key in a:
                torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=f"{name}.{key}")


def test_checkpoint_round_trip(tmp_path):
    text, image = toy_encoders()
    train_damsm(text, image, ToyItems(8), DAMSMTrainConfig(epochs=1), batch_size=8,
                progress_bar=False)
    path = save_damsm(
        tmp_path / "ck" / "damsm.pt", text, image, {"data": "toy"}, [{"epoch": 1, "total": 1.0}]
    )
    assert [p.name for p in path.parent.iterdir()] == ["damsm.pt"]  # atomic: no temporary left over
    payload = read_checkpoint(path, "damsm")  # the engine's one format, weights only
    assert payload["rng"] is None and set(payload["state"]) == {"text_encoder", "image_encoder"}
    assert isinstance(load_torch(path), dict)  # readable with weights_only=True
    text2, image2, info = load_damsm(path)
    assert info == {"fingerprint": {"data": "toy"}, "history": [{"epoch": 1, "total": 1.0}]}
    assert not text2.training and not image2.training
    batch = next(iter(toy_batches(8, seed=3)))
    text.eval(), image.eval()
    with torch.no_grad():
        for a, b in zip(text(batch[1], batch[2]), text2(batch[1], batch[2])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(image(batch[0]), image2(batch[0])):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_load_damsm_refuses_other_files_and_old_formats(tmp_path):
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatch, match="no t2ilib checkpoint format"):
        load_damsm(tmp_path / "other.pt")
    text, image = toy_encoders()
    torch.save({"format": "t2ilib.damsm.v1", "text_config": {}, "image_spec": {},
                "text_encoder": text.state_dict(), "image_encoder": image.state_dict(),
                "fingerprint": {}, "history": []}, tmp_path / "old.pt")
    with pytest.raises(CheckpointMismatch, match="t2ilib.damsm.v1") as err:
        load_damsm(tmp_path / "old.pt")
    assert "retrain=True" in str(err.value)  # says how to remake it
    with pytest.raises(ValueError):  # CheckpointMismatch is a ValueError
        load_damsm(tmp_path / "old.pt")


def test_load_or_train_trains_once_then_loads(tmp_path, monkeypatch):
    path = tmp_path / "damsm.pt"  # a .pt name: the run folder tmp_path/damsm/
    cfg = DAMSMTrainConfig(epochs=1, max_steps_per_epoch=2)
    kw = {"batch_size": 8, "extra": {"data": "toy"}, "progress_bar": False}
    text, image = toy_encoders(seed=0)
    run = load_or_train_damsm(path, text, image, ToyItems(32), cfg, **kw)
    assert run.trained and len(run.history) == 1 and not text.training
    assert run.path == tmp_path / "damsm" / "checkpoint.pt" and run.path.is_file()
    assert (tmp_path / "damsm" / "losses.csv").is_file()
    assert run.fingerprint["extra.data"] == "toy" and run.fingerprint["data.batch_size"] == 8

    text2, image2 = toy_encoders(seed=1)  # different random weights
    monkeypatch.setattr(DAMSMTask, "step", lambda *a: pytest.fail("trained again"))
    run2 = load_or_train_damsm(path, text2, image2, ToyItems(32), cfg, **kw)
    assert not run2.trained and run2.history == run.history
    for a, b in zip([*text.state_dict().values(), *image.state_dict().values()],
                    [*text2.state_dict().values(), *image2.state_dict().values()]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    _, _, info = load_damsm(path)  # the .pt name finds the run folder's checkpoint
    assert info["history"] == run.history
    monkeypatch.undo()

    # other settings: refused with the differences named; retrain=True starts afresh
    with pytest.raises(CheckpointMismatch, match="extra.data"):
        load_or_train_damsm(path, *toy_encoders(), ToyItems(32), cfg, **{**kw, "extra": {}})
    with pytest.raises(CheckpointMismatch, match="train.lr"):
        load_or_train_damsm(path, *toy_encoders(), ToyItems(32), replace(cfg, lr=1e-4), **kw)
    assert load_or_train_damsm(path, *toy_encoders(), ToyItems(32), replace(cfg, lr=1e-4),
                               retrain=True, **kw).trained
    # more epochs of the same settings: the finished run goes on
    longer = load_or_train_damsm(path, *toy_encoders(), ToyItems(32), replace(cfg, lr=1e-4,
                                                                              epochs=2), **kw)
    assert longer.trained and [h["epoch"] for h in longer.history] == [1, 2]


def test_toybirds_damsm_with_a_temporary_path(tmp_path):
    from t2ilib.data.toybirds import write_toybirds

    root = write_toybirds(tmp_path / "toybirds", n_train=16, n_test=4, size=32, seed=0)
    text, image, run = damsm_train.load_or_train_toybirds_damsm(
        root, image_size=32, epochs=1, batch_size=8, cnn_width=8, path=tmp_path / "smoke.pt")
    assert run.trained and run.path == tmp_path / "smoke" / "checkpoint.pt"
    assert damsm_train.trained_image_size(run.fingerprint) == 32
    text2, _, info = load_damsm(run.path)
    assert info["fingerprint"] == run.fingerprint and len(info["history"]) == 1
    for a, b in zip(text.state_dict().values(), text2.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


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


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="epochs"):
        train_damsm(*toy_encoders(), ToyItems(8), DAMSMTrainConfig(epochs=-1), batch_size=8)
    with pytest.raises(ValueError, match="no batch"):
        DAMSMTask(*toy_encoders(), ToyItems(4), batch_size=8)


def test_default_checkpoint_lives_under_the_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    assert damsm_train.default_checkpoint() == (tmp_path / "checkpoints" / "damsm_toybirds32"
                                                / "checkpoint.pt")
    assert damsm_train.default_checkpoint("cub", 256).parent.name == "damsm_cub256"


def test_resize_for_encoder_keeps_gradients_and_skips_equal_sizes():
    x = torch.rand(2, 3, 16, 16, requires_grad=True)
    assert resize_for_encoder(x, None) is x
    assert resize_for_encoder(x, 16) is x
    y = resize_for_encoder(x, 32)
    assert y.shape == (2, 3, 32, 32)
    y.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    flat = torch.full((1, 3, 8, 8), 0.25)
    torch.testing.assert_close(resize_for_encoder(flat, 4), torch.full((1, 3, 4, 4), 0.25))


def test_trained_image_size_reads_the_fingerprint():
    assert damsm_train.trained_image_size({"extra.image_size": 32}) == 32  # run_fingerprint's
    assert damsm_train.trained_image_size({"extra": {"image_size": 32}}) == 32  # nested
    assert damsm_train.trained_image_size({"extra": {}}) is None
    assert damsm_train.trained_image_size({}) is None


def test_the_task_runs_the_step_function_it_is_given():
    """Notebook 02 passes its own damsm_step (a students' library has no answers)."""
    calls = []

    def counting_step(*args):
        calls.append(len(args))
        return damsm_step(*args)

    text, image = toy_encoders()
    task = DAMSMTask(text, image, ToyItems(16), DAMSMTrainConfig(epochs=1), batch_size=8,
                     step_fn=counting_step)
    Engine(task).fit(1, progress_bar=False)
    assert calls == [5, 5]


def test_evaluate_damsm_equals_the_batch_losses_in_eval_mode():
    text, image = toy_encoders()
    batch = next(iter(toy_batches()))
    moved = batch_to_device(batch, "cpu")  # lengths stay a CPU tensor, keys untouched
    assert torch.equal(moved[2], batch[2]) and moved[4] == batch[4]
    want = damsm_batch_losses(text.eval(), image.eval(), moved).total
    got = evaluate_damsm(text, image, [batch], device="cpu")["total"]
    assert got == pytest.approx(want.item(), rel=1e-6)


def test_ctrl_c_during_pretraining_saves_and_the_next_call_resumes(tmp_path):
    """Ctrl-C (SIGINT) mid-epoch: the engine saves a checkpoint and returns; calling again
    resumes from that step instead of starting over."""
    import signal

    calls = []

    def interrupting_step(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C
        return damsm_train.damsm_step(*args, **kwargs)

    text, image = toy_encoders()
    run = load_or_train_damsm(tmp_path / "damsm", text, image, ToyItems(32),
                              DAMSMTrainConfig(epochs=1), batch_size=8, progress_bar=False,
                              step_fn=interrupting_step)
    assert run.interrupted and run.path.is_file()
    assert read_checkpoint(run.path, "damsm")["counters"]["step"] == 2
    text, image = toy_encoders(1)
    again = load_or_train_damsm(tmp_path / "damsm", text, image, ToyItems(32),
                                DAMSMTrainConfig(epochs=1), batch_size=8, progress_bar=False)
    assert again.trained and not again.interrupted and len(calls) == 2
    assert read_checkpoint(again.path, "damsm")["counters"]["step"] == 4  # resumed, not redone
