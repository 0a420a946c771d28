"""SSA-GAN's training step (:mod:`t2ilib.ssagan.step`) against the algorithm it implements.

Each optimiser's gradients are recorded at the moment it steps (a step pre-hook) and
compared with an independent replay of the paper's losses from the same weights: the D
step sees exactly the hinge loss, the MA-GP step exactly the penalty, the G step exactly
``adv + lambda * DAMSM (+ mu * mode seeking)``, the encoder step exactly the DAMSM loss of
real images. Then single properties: which parameters each loss weight reaches, detaching,
mismatched pairs, EMA, the returned losses.

Tiny models (ngf = ndf = 4, 32-d text) at 32 px on a 16-image ToyBirds set, on the CPU.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from functools import partial

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from t2ilib.damsm.generator_loss import damsm_image_loss
from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.data.trainset import TrainData
from t2ilib.ssagan.losses import mismatched_pairs
from t2ilib.ssagan.model import SSAGANConfig
from t2ilib.ssagan.recipes import Recipe, SSAGANTrainConfig
from t2ilib.ssagan.step import (
    LOSS_NAMES,
    Nets,
    d_step,
    ema_update,
    encode_text,
    g_step,
    ma_gp_step,
    train_step,
)
from t2ilib.ssagan.train import SSAGANTask
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

from .helpers import tiny_toybirds_train

MODEL = SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=32)
# Gates at 1 (the paper starts them at 0): every weight of G and D then gets a gradient,
# so a term leaking into the wrong update shows in every tensor.
CONFIG = SSAGANTrainConfig(epochs=1, batch_size=4, log_every=1, max_steps_per_epoch=2, seed=3,
                           gate_init_g=1.0, gate_init_d=1.0)
FINETUNE = replace(CONFIG, finetune_text_encoder=True, damsm_weight=0.1)
NETS = ("G", "D", "text_encoder", "image_encoder")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> TrainData:
    return tiny_toybirds_train(tmp_path_factory)


def make_task(data: TrainData, config: SSAGANTrainConfig = CONFIG,
              model: SSAGANConfig = MODEL) -> SSAGANTask:
    """A run's networks and optimisers; the same initial weights for every config."""
    torch.manual_seed(0)  # the encoders stand in for a pretrained DAMSM: same weights each time
    te = TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=16, hidden_dim=32))
    ie = SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=4))
    return SSAGANTask(Recipe("test", model, config), te, ie, data, device="cpu")


def nets_of(task: SSAGANTask) -> dict[str, nn.Module]:
    return {"G": task.G, "D": task.D, "text_encoder": task.text_encoder,
            "image_encoder": task.image_encoder}


def snapshot(task: SSAGANTask) -> dict[str, dict[str, torch.Tensor]]:
    """Every network's state (weights and buffers), cloned."""
    return {k: {n: t.detach().clone() for n, t in m.state_dict().items()}
            for k, m in nets_of(task).items()}


def grads(task: SSAGANTask, net: str) -> dict[str, torch.Tensor | None]:
    return {n: None if p.grad is None else p.grad.clone()
            for n, p in nets_of(task)[net].named_parameters()}


def zero_all_grads(task: SSAGANTask) -> None:
    for module in nets_of(task).values():
        module.zero_grad(set_to_none=True)


@dataclass
class Event:
    kind: str  # "enc", "d" or "g": the optimiser that stepped
    grads: dict[str, torch.Tensor | None]  # "G.fc.weight" -> its gradient at the step
    state: dict[str, dict[str, torch.Tensor]]  # every network's weights just before the step


class Recorder:
    """Each optimiser step of a task as it happens (a step pre-hook on every optimiser)."""

    def __init__(self, task: SSAGANTask):
        self.task, self.events = task, []
        self.names = {id(p): f"{k}.{n}" for k, m in nets_of(task).items()
                      for n, p in m.named_parameters()}
        for kind, opt in (("enc", task.opts.enc), ("d", task.opts.d), ("g", task.opts.g)):
            if opt is not None:
                opt.register_step_pre_hook(partial(self._record, kind))

    def _record(self, kind, opt, args, kwargs) -> None:
        seen = {self.names[id(p)]: None if p.grad is None else p.grad.detach().clone()
                for group in opt.param_groups for p in group["params"]}
        self.events.append(Event(kind, seen, snapshot(self.task)))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def assert_grads_close(seen: dict, expected: dict, what: str, rtol: float = 5e-4) -> None:
    """The same parameters, each gradient equal to the replay's (None counts as 0).

    The replay computes D's hinge terms in another order (rounding: up to 2e-5 relative);
    every mutation of the step tried so far is off by far more than ``rtol``."""
    assert seen.keys() == expected.keys(), what
    scale = max(float(g.abs().max()) for g in expected.values() if g is not None)
    assert scale > 0, f"{what}: the replay has no gradient at all"
    for name, e in expected.items():
        s = seen[name]
        e = torch.zeros_like(s) if e is None and s is not None else e
        s = torch.zeros_like(e) if s is None and e is not None else s
        if e is None:
            continue
        err = float((s - e).abs().max())
        assert err <= rtol * max(float(e.abs().max()), scale * 1e-3), (
            f"{what}: {name} differs by {err:.3g} (gradient scale {scale:.3g})")


def assert_grads_differ(a: dict, b: dict) -> None:
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k] is not None)


def assert_grads_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] is None) == (b[k] is None) and (a[k] is None or torch.equal(a[k], b[k])), k


# ---------------------------------------------------------------------------- the replay
def at(module: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """An independent copy of ``module`` with ``state``."""
    twin = copy.deepcopy(module)
    twin.load_state_dict(state)
    return twin


def grads_of(loss: torch.Tensor, module: nn.Module, prefix: str) -> dict:
    named = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    got = torch.autograd.grad(loss, [p for _, p in named], retain_graph=True, allow_unused=True)
    return {f"{prefix}.{n}": g for (n, _), g in zip(named, got)}


def logit(d: nn.Module, images: torch.Tensor, sentence: torch.Tensor) -> torch.Tensor:
    return d.logits(d.features(images), sentence)


def penalty(d: nn.Module, images, sentence, k: float, p: float) -> torch.Tensor:
    """MA-GP, written out: k * mean ||(grad_x D, grad_s D)||^p at real, matching pairs."""
    x = images.detach().requires_grad_(True)
    s = sentence.detach().requires_grad_(True)
    gx, gs = torch.autograd.grad(logit(d, x, s).sum(), (x, s), create_graph=True)
    norm2 = torch.cat([gx.flatten(1), gs.flatten(1)], 1).pow(2).sum(1)
    return k * norm2.pow(p / 2).mean()


def expected_kinds(cfg: SSAGANTrainConfig) -> list[str]:
    return (["enc"] * cfg.finetune_text_encoder + ["d"]
            + ["d"] * (cfg.gp_mode == "separate") + ["g"])


def replay(task: SSAGANTask, start: dict, rng: torch.Tensor, batch, cfg: SSAGANTrainConfig,
           events: list[Event]) -> tuple[list[dict], dict[str, float]]:
    """The gradients each optimiser should see in one step from the weights ``start`` (the
    recorded ``events`` give the weights after each earlier optimiser step), and the losses."""
    expected, losses = [], {}
    i = iter(events[1:] + [None])  # weights at the next step = after this one
    te = at(task.text_encoder, start["text_encoder"])
    torch.set_rng_state(rng)  # the text encoder's dropout draws the same masks
    if cfg.finetune_text_encoder:  # 0. the encoder step
        ie = at(task.image_encoder, start["image_encoder"]).train()
        words, sentence = te.train()(batch.captions, batch.lengths)
        enc = damsm_image_loss(ie, batch.images, words, sentence, batch.lengths,
                               batch.class_ids, cfg.gammas, cfg.damsm_image_size)
        expected.append({**grads_of(enc, te, "text_encoder"),
                         **grads_of(enc, ie, "image_encoder")})
        words, sentence = words.detach(), sentence.detach()
        next(i)
    else:
        with torch.no_grad():
            words, sentence = te.eval()(batch.captions, batch.lengths)
        enc = torch.zeros(())
    losses["enc_damsm"] = enc

    g = at(task.G, start["G"])
    fake, _ = g(batch.z, sentence)
    d = at(task.D, start["D"])  # 1. the D step: hinge on real, fake, mismatched pairs
    real_l = F.relu(1 - logit(d, batch.images, sentence)).mean()
    fake_l = F.relu(1 + logit(d, fake.detach(), sentence)).mean()
    mis_l = F.relu(1 + logit(d, batch.images[:-1], sentence[1:])).mean()  # x_i with s_{i+1}
    d_loss = real_l + (fake_l + mis_l) / 2
    if cfg.gp_mode == "joint":
        gp = penalty(d, batch.images, sentence, cfg.gp_k, cfg.gp_p)
        d_loss = d_loss + gp
    expected.append(grads_of(d_loss, d, "D"))
    after = next(i)
    if cfg.gp_mode == "separate":  # 2. the MA-GP step, from D after the D step
        d = at(task.D, after.state["D"])
        gp = penalty(d, batch.images, sentence, cfg.gp_k, cfg.gp_p)
        expected.append(grads_of(gp, d, "D"))
        after = next(i)
    losses.update(d_loss=d_loss, d_real=real_l, d_fake=fake_l, d_mismatch=mis_l, ma_gp=gp)

    d = at(task.D, after.state["D"])  # 3. the G step, from D after its steps
    ie = at(task.image_encoder, after.state["image_encoder"]).eval()
    g_adv = -logit(d, fake, sentence).mean()
    g_damsm = damsm_image_loss(ie, fake, words, sentence, batch.lengths, batch.class_ids,
                               cfg.gammas, cfg.damsm_image_size)
    loss = g_adv + cfg.damsm_weight * g_damsm
    if cfg.mode_seeking_weight > 0:
        fake_2, _ = g(batch.z2, sentence)
        ratio = (fake - fake_2).abs().mean() / (batch.z - batch.z2).abs().mean()
        loss = loss + cfg.mode_seeking_weight / (ratio + 1e-5)
    expected.append(grads_of(loss, g, "G"))
    losses.update(g_adv=g_adv, g_damsm=g_damsm)
    return expected, {k: float(v.detach()) for k, v in losses.items()}


# gp_k = 1e3: the penalty's gradient as large as the hinge's (at k = 2 it is ~1e-3 of it),
# so one D step's gradient left over in the other stands far above rounding.
REPLAYED = {
    "official": CONFIG,
    "official-gates-0": replace(CONFIG, gate_init_g=0.0, gate_init_d=0.0),
    "separate-big-gp": replace(CONFIG, gp_k=1e3),
    "finetune": replace(FINETUNE, gp_k=1e3),
    "finetune-joint-ms-ema": replace(FINETUNE, gp_mode="joint", gp_k=1e3,
                                     mode_seeking_weight=1.0, ema_decay=0.5),
}


@pytest.mark.parametrize("cfg", REPLAYED.values(), ids=REPLAYED.keys())
def test_each_optimiser_steps_on_exactly_its_own_loss(data, cfg):
    """Two steps (leftover gradients would show in the second), each replayed."""
    task = make_task(data, cfg)
    recorder = Recorder(task)
    for step in range(2):
        batch = task.batch(0, step)
        start, rng = snapshot(task), torch.get_rng_state()
        recorder.events.clear()
        losses = train_step(task.nets, task.opts, batch, cfg)
        assert recorder.kinds() == expected_kinds(cfg), f"step {step}: optimiser steps"
        expected, expected_losses = replay(task, start, rng, batch, cfg, recorder.events)
        for event, want in zip(recorder.events, expected):
            assert_grads_close(event.grads, want, f"step {step}, {event.kind} step")
        assert dict(zip(LOSS_NAMES, losses.tolist())) == pytest.approx(expected_losses,
                                                                       rel=1e-4, abs=1e-6)
        # after the G step: D's gradients are still the last D step's (G's loss adds none),
        # the text encoder's still the encoder step's (the GAN steps see detached text)
        assert_grads_equal(grads(task, "D"), {k[2:]: v for k, v in
                                               recorder.of("d")[-1].grads.items()})
        enc = recorder.of("enc")
        te_grads = grads(task, "text_encoder")
        if enc:
            assert_grads_equal(te_grads, {k[len("text_encoder."):]: v for k, v in
                                          enc[0].grads.items() if k.startswith("text_enc")})
        else:
            assert all(v is None for v in te_grads.values())
        assert not task.text_encoder.training and not task.image_encoder.training


# ---------------------------------------------------------------------------- loss weights
def step_grads(data, cfg: SSAGANTrainConfig, batch=None) -> tuple[list[Event], object]:
    """The events of one train_step from the common initial weights (fixed dropout)."""
    task = make_task(data, cfg)
    recorder = Recorder(task)
    batch = task.batch(0, 0) if batch is None else batch
    torch.manual_seed(7)
    train_step(task.nets, task.opts, batch, cfg)
    return recorder.events, batch


@pytest.mark.parametrize("base,field,value", [
    (CONFIG, "damsm_weight", 0.5),
    (FINETUNE, "damsm_weight", 0.5),
    (CONFIG, "mode_seeking_weight", 1.0),
    (FINETUNE, "mode_seeking_weight", 1.0),
])
def test_a_g_loss_weight_changes_only_gs_gradient(data, base, field, value):
    """Switching a G term on changes what opt_g sees and nothing any other optimiser sees."""
    on_cfg = replace(base, **{field: value})
    on, batch = step_grads(data, on_cfg)  # draws z2 when mode seeking
    off, _ = step_grads(data, replace(base, **{field: 0.0}), batch)
    assert [e.kind for e in on] == [e.kind for e in off] == expected_kinds(base)
    for a, b in zip(on, off):
        if a.kind == "g":
            assert_grads_differ(a.grads, b.grads)
        else:
            assert_grads_equal(a.grads, b.grads)  # encoders (fine-tuned or frozen) and D


def test_g_gradient_is_linear_in_the_damsm_weight(data):
    """G's gradient at lambda is adv + lambda * DAMSM: the term is in G's loss, once."""
    g = {w: step_grads(data, replace(CONFIG, damsm_weight=w))[0][-1].grads
         for w in (0.0, 1.0, 0.3)}
    damsm = {k: g[1.0][k] - g[0.0][k] for k in g[0.0]}
    assert any(float(v.abs().max()) > 0 for v in damsm.values())
    assert_grads_close(g[0.3], {k: g[0.0][k] + 0.3 * damsm[k] for k in g[0.0]},
                       "G at damsm_weight 0.3", rtol=1e-3)


def test_ma_gp_reaches_only_d_and_joint_mode_adds_it_to_the_d_step(data):
    cfg = replace(CONFIG, gp_k=1e3)  # a penalty as large as the hinge terms' gradients
    task = make_task(data, cfg)
    batch = task.batch(0, 0)
    words, sentence, _ = encode_text(task.nets, task.opts, batch, cfg)
    zero_all_grads(task)
    before = snapshot(task)["D"]
    gp = ma_gp_step(task.nets, task.opts.d, batch.images, sentence, cfg)
    assert gp > 0
    for net in ("G", "text_encoder", "image_encoder"):
        assert all(v is None for v in grads(task, net).values()), net
    gp_grads = {"D." + k: v for k, v in grads(task, "D").items()}
    assert all(v is not None for v in gp_grads.values())
    assert any(not torch.equal(before[k], v) for k, v in task.D.state_dict().items())  # stepped
    # joint mode: the D step's gradient = hinge's + MA-GP's, at the same weights
    joint = {}
    for k in (0.0, cfg.gp_k):
        events, _ = step_grads(data, replace(cfg, gp_mode="joint", gp_k=k), batch)
        assert [e.kind for e in events] == ["d", "g"]
        joint[k] = events[0].grads
    assert_grads_close({n: joint[cfg.gp_k][n] - joint[0.0][n] for n in gp_grads}, gp_grads,
                       "joint D step minus hinge", rtol=1e-3)


# ---------------------------------------------------------------------------- detaching
def test_d_step_detaches_the_fakes_and_g_step_gives_d_no_gradient(data):
    task = make_task(data, FINETUNE)
    batch = task.batch(0, 0)
    words, sentence, _ = encode_text(task.nets, task.opts, batch, FINETUNE)
    assert not words.requires_grad and not sentence.requires_grad  # the GAN steps' text
    fake, _ = task.G(batch.z, sentence)
    assert fake.requires_grad
    zero_all_grads(task)
    d_step(task.nets, task.opts.d, batch.images, fake, sentence, FINETUNE)
    assert all(v is None for v in grads(task, "G").values())  # no gradient reached G
    assert all(v is not None for v in grads(task, "D").values())
    zero_all_grads(task)
    g_step(task.nets, task.opts.g, fake, words, sentence, batch, FINETUNE)
    assert all(v is None for v in grads(task, "D").values())  # D's weights were frozen
    assert all(v is None for v in grads(task, "text_encoder").values())  # text detached
    assert all(v is not None for v in grads(task, "G").values())
    assert all(p.requires_grad for p in task.D.parameters())  # and unfrozen again after


@pytest.mark.parametrize("cfg", [CONFIG, FINETUNE], ids=["frozen", "finetune"])
def test_encoder_step_runs_only_when_finetuning_and_moves_the_text_encoder(data, cfg):
    task = make_task(data, cfg)
    recorder = Recorder(task)
    before = snapshot(task)
    losses = task.step(task.batch(0, 0))
    after = snapshot(task)
    moved = {net for net in NETS if any(not torch.equal(before[net][k], after[net][k])
                                        for k in before[net])}
    enc_loss = losses[LOSS_NAMES.index("enc_damsm")]
    if cfg.finetune_text_encoder:
        assert recorder.kinds()[0] == "enc" and recorder.kinds().count("enc") == 1
        assert {"G", "D", "text_encoder", "image_encoder"} == moved
        assert enc_loss > 0
    else:
        assert "enc" not in recorder.kinds()
        assert moved == {"G", "D"} and enc_loss == 0


# ---------------------------------------------------------------------------- mismatched pairs
class SpyD(nn.Module):
    """D, recording every (features, sentence) pair its conditional head scores."""

    def __init__(self, d: nn.Module):
        super().__init__()
        self.d, self.calls, self.inputs = d, [], []

    def features(self, images):
        return self.d.features(images)

    def logits(self, features, sentence):
        self.calls.append((features.detach().clone(), sentence.detach().clone()))
        return self.d.logits(features, sentence)

    def forward(self, images, sentence):
        self.inputs.append((images.detach().clone(), sentence.detach().clone()))
        return self.logits(self.features(images), sentence)


def row_index(row: torch.Tensor, table: torch.Tensor) -> int | None:
    hits = [i for i in range(len(table)) if torch.allclose(row, table[i], atol=1e-6)]
    return hits[0] if len(hits) == 1 else None


def test_d_step_scores_matching_fake_and_shifted_pairs(data):
    task = make_task(data)
    batch = task.batch(0, 0)
    b = batch.images.shape[0]
    sentence = torch.randn(b, MODEL.sentence_dim)  # distinct rows
    with torch.no_grad():
        fake, _ = task.G(batch.z, sentence)
        real_f, fake_f = task.D.features(batch.images), task.D.features(fake)
    spy = SpyD(task.D)
    nets = Nets(G=task.G, D=spy, text_encoder=task.text_encoder,
                image_encoder=task.image_encoder)
    d_step(nets, task.opts.d, batch.images, fake, sentence, CONFIG)
    calls = []
    for features, sent in spy.calls:
        pairs = []
        for f, s in zip(features, sent):
            i_real, i_fake, j = row_index(f, real_f), row_index(f, fake_f), row_index(s, sentence)
            assert (i_real is None) != (i_fake is None) and j is not None
            pairs.append(("real", i_real, j) if i_real is not None else ("fake", i_fake, j))
        calls.append(pairs)
    assert sorted(calls) == sorted([
        [("real", i, i) for i in range(b)],  # matching pairs
        [("real", i, i + 1) for i in range(b - 1)],  # x_i with s_{i+1}, no wrap (official)
        [("fake", i, i) for i in range(b)],  # fakes with their own captions
    ])
    # and the MA-GP step scores real, matching pairs
    assert not spy.inputs  # D(x, s) is only called by MA-GP
    ma_gp_step(nets, task.opts.d, batch.images, sentence, CONFIG)
    (images, sent), = spy.inputs
    assert torch.equal(images, batch.images) and torch.equal(sent, sentence)


def test_mismatched_pairs_never_pair_an_image_with_its_own_caption():
    b = 5
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 3, 2, 2)
    sentence = torch.arange(b, dtype=torch.float32).view(b, 1).expand(b, 4)
    for wrap, n in ((False, b - 1), (True, b)):
        x, s = mismatched_pairs(images, sentence, wrap=wrap)
        i, j = x[:, 0, 0, 0].long(), s[:, 0].long()
        assert len(i) == n and (i != j).all()
        assert j.tolist() == [(k + 1) % b for k in i.tolist()]


# ---------------------------------------------------------------------------- EMA
def test_ema_update_moves_each_weight_toward_g():
    torch.manual_seed(0)
    g = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = copy.deepcopy(g)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(torch.randn_like(p))
    g(torch.randn(8, 3))  # new batch-norm statistics in G
    g_before = {k: v.clone() for k, v in g.state_dict().items()}
    old = [p.clone() for p in ema.parameters()]
    ema_update(ema, g, 0.9)
    for o, e, p in zip(old, ema.parameters(), g.parameters()):
        torch.testing.assert_close(e, 0.9 * o + 0.1 * p)
        assert (e - p).norm() < (o - p).norm()  # closer to G
    for b_ema, b in zip(ema.buffers(), g.buffers()):
        assert torch.equal(b_ema, b)  # buffers copied
    assert all(torch.equal(g_before[k], v) for k, v in g.state_dict().items())  # G untouched
    ema_update(ema, g, 0.0)
    assert all(torch.equal(e, p) for e, p in zip(ema.parameters(), g.parameters()))


def test_train_step_updates_the_ema_of_g(data):
    cfg = replace(CONFIG, ema_decay=0.75)
    task = make_task(data, cfg)
    before = [p.clone() for p in task.G_ema.parameters()]
    task.step(task.batch(0, 0))
    for o, e, p in zip(before, task.G_ema.parameters(), task.G.parameters()):
        torch.testing.assert_close(e, 0.75 * o + 0.25 * p)
    assert any(not torch.equal(o, e) for o, e in zip(before, task.G_ema.parameters()))


# ---------------------------------------------------------------------------- the losses
@pytest.mark.parametrize("gp_mode", ["separate", "joint"])
def test_train_step_returns_detached_losses_in_order(data, gp_mode):
    cfg = replace(CONFIG, gp_mode=gp_mode)
    task = make_task(data, cfg)
    losses = train_step(task.nets, task.opts, task.batch(0, 0), cfg)
    assert losses.shape == (len(LOSS_NAMES),) and not losses.requires_grad
    assert losses.dtype == torch.float32 and torch.isfinite(losses).all()
    v = dict(zip(LOSS_NAMES, losses.tolist()))
    hinge = v["d_real"] + (v["d_fake"] + v["d_mismatch"]) / 2
    assert v["d_loss"] == pytest.approx(hinge + (v["ma_gp"] if gp_mode == "joint" else 0),
                                        rel=1e-5)
    assert v["ma_gp"] > 0 and v["g_damsm"] > 0 and v["enc_damsm"] == 0
    assert LOSS_NAMES == ("d_loss", "d_real", "d_fake", "d_mismatch", "ma_gp", "g_adv",
                          "g_damsm", "enc_damsm")
