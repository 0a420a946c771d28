"""SSA-GAN training loop: exact resume, interruption, mismatch errors, load-or-train, steps.

Tiny models (ngf = ndf = 4, 32-d text) at 32 px on a 16-image ToyBirds set, on the CPU.
"""

from __future__ import annotations

import csv
import os
import signal
import threading
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.data.trainset import TrainData
from t2ilib.engine.checkpoint import CheckpointMismatch
from t2ilib.engine.loop import Engine, load_or_train
from t2ilib.ssagan.model import SSAGANConfig
from t2ilib.ssagan.recipes import Recipe, SSAGANTrainConfig
from t2ilib.ssagan.sampling import generate, load_generator
from t2ilib.ssagan.step import LOSS_NAMES
from t2ilib.ssagan.train import SSAGANTask, ssagan_engine
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary, captions_to_ids

from .helpers import tiny_toybirds_train

MODEL = SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=32)
CONFIG = SSAGANTrainConfig(epochs=2, batch_size=4, log_every=2, max_steps_per_epoch=2, seed=3)


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainData:
    return tiny_toybirds_train(tmp_path_factory)


def make_trainer(data: TrainData, run_dir: Path | None, config: SSAGANTrainConfig = CONFIG,
                 model: SSAGANConfig = MODEL) -> Engine:
    """An engine running SSA-GAN on ``data`` (``.task`` holds the networks)."""
    torch.manual_seed(0)  # the encoders stand in for a pretrained DAMSM: same weights each time
    te = TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=16, hidden_dim=32))
    ie = SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=4))
    return ssagan_engine(Recipe("test", model, config), te, ie, data, device="cpu",
                         run_dir=run_dir)


def make_task(data: TrainData, config: SSAGANTrainConfig = CONFIG,
              model: SSAGANConfig = MODEL) -> SSAGANTask:
    return make_trainer(data, None, config, model).task


def state(run: Engine | SSAGANTask) -> dict[str, torch.Tensor]:
    """Every tensor of the run's models and optimiser states, cloned."""
    task = run.task if isinstance(run, Engine) else run
    out = {}
    for name, obj in task.state().items():
        if isinstance(obj, torch.optim.Optimizer):
            for i, s in obj.state_dict()["state"].items():
                out.update({f"{name}.{i}.{k}": torch.as_tensor(v).clone() for k, v in s.items()})
        else:
            out.update({f"{name}.{k}": v.clone() for k, v in obj.state_dict().items()})
    return out


@pytest.mark.parametrize("config,split", [
    (CONFIG, 3),
    (replace(CONFIG, epochs=1, finetune_text_encoder=True, ema_decay=0.9, gp_mode="joint"), 1),
], ids=["official", "finetune-ema-joint"])
def test_resume_is_exact_bit_for_bit(data, tmp_path, config, split):
    """N steps in one run == ``split`` steps, checkpoint, a new trainer, the rest.

    The split falls inside an epoch (2 steps per epoch), so the batch order, the captions,
    crops, noise and the dropout RNG (fine-tuning trains the text encoder with dropout)
    must all continue exactly.
    """
    full = make_trainer(data, tmp_path / "full", config)
    initial = state(full)
    full.fit()
    n = 2 * config.epochs
    assert full.step == n and full.epoch == config.epochs

    first = make_trainer(data, tmp_path / "split", config)
    result = first.fit(stop_after=split)
    assert result.interrupted and result.step == split and result.epoch == split // 2
    torch.manual_seed(12345)  # a fresh process has another RNG state: resume must restore it
    second = make_trainer(data, tmp_path / "split", config)
    second.load()
    assert (second.step, second.epoch, second.step_in_epoch) == (split, split // 2, split % 2)
    second.fit()

    a, b = state(full), state(second)
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f"resumed run differs in {differing[:5]}"
    # the run really trained: G moved away from its initial weights
    assert any(not torch.equal(initial[k], a[k]) for k in initial if k.startswith("G."))
    # the loss log has no duplicate rows after the resume
    steps = second.result(True).log["step"]
    assert steps == sorted(set(steps)) and steps[-1] == n


def test_signal_saves_a_checkpoint_and_stops(data, tmp_path):
    trainer = make_trainer(data, tmp_path, replace(CONFIG, epochs=50))
    timer = threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        result = trainer.fit()
    finally:
        timer.cancel()
    assert result.interrupted and 0 < result.step < 100
    reloaded = make_trainer(data, tmp_path, replace(CONFIG, epochs=50))
    reloaded.load()
    assert reloaded.step == result.step
    assert torch.equal(reloaded.task.G.fc.weight, trainer.task.G.fc.weight)


def test_checkpoint_of_another_config_or_vocabulary_is_refused(data, tmp_path):
    trainer = make_trainer(data, tmp_path)
    trainer.fit(stop_after=1)
    other = make_trainer(data, tmp_path, replace(CONFIG, lr_g=2e-4))
    with pytest.raises(CheckpointMismatch, match=r"train.lr_g: checkpoint has 0.0001"):
        other.load()
    with pytest.raises(CheckpointMismatch, match="ngf"):
        make_trainer(data, tmp_path, model=replace(MODEL, ngf=8)).load()
    # the same words in another order: same size, other ids
    words = data.vocab.words
    shuffled = Vocabulary.from_words([words[0], *reversed(words[1:])])
    with pytest.raises(CheckpointMismatch, match="vocab"):
        make_trainer(replace(data, vocab=shuffled), tmp_path).load()
    # run-only settings may change: more epochs, another log interval
    make_trainer(data, tmp_path, replace(CONFIG, epochs=9, log_every=5)).load()


def test_load_or_train_skips_a_finished_run_and_retrain_restarts(data, tmp_path):
    config = replace(CONFIG, max_steps_per_epoch=1)  # 2 epochs of 1 step
    first = make_trainer(data, tmp_path, config)
    done = load_or_train(first)
    assert done.trained and done.epoch == 2 and len(done.sample_files) == 2
    again = make_trainer(data, tmp_path, config)
    skipped = load_or_train(again)
    assert not skipped.trained and skipped.step == 2
    assert torch.equal(again.task.G.fc.weight, first.task.G.fc.weight)  # the trained weights
    retrained = load_or_train(make_trainer(data, tmp_path, config), retrain=True)
    assert retrained.trained and retrained.log["step"] == [1.0, 2.0]


def test_one_step_updates_every_trained_model_and_only_those(data):
    config = replace(CONFIG, finetune_text_encoder=False)
    trainer = make_task(data, config)
    before = state(trainer)
    losses = trainer.step(trainer.batch(0, 0))
    assert losses.shape == (len(LOSS_NAMES),) and torch.isfinite(losses).all()
    after = state(trainer)
    changed = {k.split(".")[0] for k in before if not torch.equal(before[k], after[k])}
    assert {"G", "D"} <= changed
    assert "text_encoder" not in changed and "image_encoder" not in changed  # frozen DAMSM
    assert losses[LOSS_NAMES.index("enc_damsm")] == 0
    # the logged D loss is real + (fake + mismatch) / 2
    d, real, fake, mis = (losses[LOSS_NAMES.index(k)].item()
                          for k in ("d_loss", "d_real", "d_fake", "d_mismatch"))
    assert d == pytest.approx(real + (fake + mis) / 2, rel=1e-5)


def test_finetuning_moves_the_text_encoder(data):
    trainer = make_task(data, replace(CONFIG, finetune_text_encoder=True))
    before = trainer.text_encoder.embed.weight.clone()
    trainer.step(trainer.batch(0, 0))
    assert not torch.equal(before, trainer.text_encoder.embed.weight)


def test_gate_init_sets_each_networks_residual_gates(data):
    def gates(module):
        return [float(p) for n, p in module.named_parameters() if n.endswith(".gate")]

    official = make_task(data)
    assert set(gates(official.G)) == {0.0} and set(gates(official.D)) == {0.0}
    trainer = make_task(data, replace(CONFIG, gate_init_g=1.0, gate_init_d=0.5, ema_decay=0.9))
    assert len(gates(trainer.G)) == 4 and set(gates(trainer.G)) == {1.0}  # one per block
    assert len(gates(trainer.D)) == 3 and set(gates(trainer.D)) == {0.5}
    assert set(gates(trainer.G_ema)) == {1.0}  # the EMA copy starts from the same G
    # only the gates differ: the same seed gives the same weights otherwise
    z, s = torch.randn(2, MODEL.nz), torch.randn(2, MODEL.sentence_dim)
    trainer.G.eval()
    official.G.eval()
    with torch.no_grad():
        for block in official.G.blocks:
            block.gate.fill_(1.0)
        assert torch.allclose(official.G(z, s)[0], trainer.G(z, s)[0])


def test_mode_seeking_draws_a_second_noise_and_changes_only_gs_step(data):
    plain = make_task(data)
    seeking = make_task(data, replace(CONFIG, mode_seeking_weight=1.0))
    a, b = plain.batch(0, 0), seeking.batch(0, 0)
    assert a.z2 is None and b.z2.shape == b.z.shape
    assert torch.equal(a.z, b.z) and not torch.equal(b.z, b.z2)  # z unchanged
    before = state(plain)
    plain.step(a)
    seeking.step(b)
    after_plain, after_seeking = state(plain), state(seeking)
    changed = [k for k in before if not torch.equal(after_plain[k], after_seeking[k])]
    assert changed and all(k.startswith("G.") for k in changed)  # D and encoders: the same


@pytest.mark.parametrize("finetune", [False, True])
def test_damsm_image_size_resizes_what_the_image_encoder_sees(data, finetune):
    trainer = make_task(data, replace(CONFIG, damsm_image_size=64,
                                      finetune_text_encoder=finetune))
    seen = []
    trainer.image_encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    trainer.step(trainer.batch(0, 0))
    assert seen and all(tuple(s[-2:]) == (64, 64) for s in seen)  # G makes 32 px images


def test_batches_are_deterministic_and_epochs_differ(data):
    trainer = make_task(data)
    a, b, c = trainer.batch(0, 1), trainer.batch(0, 1), trainer.batch(1, 1)
    for k in ("images", "captions", "lengths", "class_ids", "z"):
        assert torch.equal(getattr(a, k), getattr(b, k))
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (4, 3, 32, 32) and a.images.min() >= -1


def test_saved_generator_reproduces_the_trainers_samples(data, tmp_path):
    trainer = make_trainer(data, tmp_path)
    trainer.fit(stop_after=2)
    g, te, vocab, _ = load_generator(tmp_path / "checkpoint.pt")
    captions = trainer.task.sample_captions[:3]
    z = torch.randn(3, MODEL.nz, generator=torch.Generator().manual_seed(0))
    ours, masks = generate(g, te, vocab, captions, z)
    theirs, _ = trainer.task.sample(captions, z)
    assert ours.shape == (3, 3, 32, 32) and torch.equal(ours, theirs)
    assert [m.shape[-1] for m in masks] == [4, 8, 16, 32]


def test_bad_settings_are_refused(data):
    with pytest.raises(ValueError, match="gp_mode"):
        SSAGANTrainConfig(gp_mode="both")
    with pytest.raises(ValueError, match="batch_size"):
        SSAGANTrainConfig(batch_size=1)
    with pytest.raises(ValueError, match="mode_seeking_weight"):
        SSAGANTrainConfig(mode_seeking_weight=-1.0)
    with pytest.raises(ValueError, match="resolution"):
        make_trainer(data, None, model=replace(MODEL, resolution=64))
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_trainer(data, None, replace(CONFIG, batch_size=32))
    with pytest.raises(ValueError, match="damsm_weight"):
        SSAGANTrainConfig(damsm_weight=-0.1)
    ids, lengths = captions_to_ids(data.vocab, ["a red bird"])
    assert ids.shape == (1, 18) and lengths.tolist() == [3]


def test_tensorboard_logs_the_losses_and_the_sample_grids(data, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    trainer = make_trainer(data, tmp_path, replace(CONFIG, tensorboard=True))
    trainer.fit(progress_bar=False)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"images": 0})
    events.Reload()
    d_loss = events.Scalars("loss/d_loss")
    assert [e.step for e in d_loss] == [2, 4]  # log_every=2, 2 epochs of 2 steps
    with open(tmp_path / "losses.csv") as f:  # the same numbers as the CSV log
        rows = list(csv.DictReader(f))
    assert [round(e.value, 4) for e in d_loss] == [round(float(r["d_loss"]), 4) for r in rows]
    assert [e.step for e in events.Images("samples")] == [2, 4]  # one grid per epoch
    assert trainer.task.fingerprint() == make_task(data).fingerprint()  # a run-only setting


def test_train_data_checks_token_ids_once(data):
    captions = [list(ids) for ids in data.captions]
    captions[5] = captions[5][:2] + [len(data.vocab)]
    with pytest.raises(ValueError, match="outside"):
        replace(data, captions=captions)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_step_never_waits_for_the_gpu(data):
    """The fast path's promise: no host synchronisation inside a training step."""
    config = replace(CONFIG, finetune_text_encoder=True, ema_decay=0.9, mode_seeking_weight=1.0)
    trainer = SSAGANTask(Recipe("test", MODEL, config),
                         TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=16,
                                                       hidden_dim=32)),
                         SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=4)), data,
                         device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):  # as the engine runs it
        trainer.step(trainer.batch(0, 0))  # warm-up: cuDNN/cuBLAS set-up may synchronise
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            trainer.step(trainer.batch(0, 1))
    finally:
        torch.cuda.set_sync_debug_mode("default")
