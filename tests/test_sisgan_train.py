"""SISGAN on the engine: the step's algorithm, exact resume, checkpoint checks, load-or-train,
load_sisgan, manipulate.

Tiny models (ngf = ndf = 4, 16-d text) at 64 px on a 12-image ToyBirds set, on the CPU.
"""

from __future__ import annotations

import copy
import gc
import warnings
from dataclasses import fields, replace

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from t2ilib.damsm.generator_loss import damsm_image_loss
from t2ilib.data.toybirds import write_toybirds
from t2ilib.data.trainset import TrainData, load_native_split
from t2ilib.engine.checkpoint import CheckpointMismatch
from t2ilib.engine.loop import Engine
from t2ilib.sisgan.losses import kl_loss, reconstruction_loss
from t2ilib.sisgan.model import SISGANConfig
from t2ilib.sisgan.recipes import RECIPES, REFERENCE, SMOKE, TOYBIRDS, Recipe, SISGANTrainConfig
from t2ilib.sisgan.sampling import images_from_files, load_sisgan, manipulate
from t2ilib.sisgan.step import LOSS_NAMES, choose_captions, lr_at
from t2ilib.sisgan.train import (
    SISGANTask,
    default_run_dir,
    load_or_train_sisgan,
    sisgan_engine,
)
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

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


def image_encoder():
    from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder

    torch.manual_seed(1)
    return SmallCNNEncoder(SmallCNNConfig(embed_dim=16, width=4))


def make_task(data, config=CONFIG, model=MODEL, **kw) -> SISGANTask:
    return SISGANTask(Recipe("test", model, config), text_encoder(data), data, device="cpu", **kw)


def make_engine(data, run_dir=None, config=CONFIG, model=MODEL, **kw) -> Engine:
    return sisgan_engine(config, text_encoder(data), data, model_config=model, device="cpu",
                         run_dir=run_dir, **kw)


def weights(task: SISGANTask) -> dict[str, torch.Tensor]:
    out = {f"G.{k}": v.clone() for k, v in task.G.state_dict().items()}
    out.update({f"D.{k}": v.clone() for k, v in task.D.state_dict().items()})
    return out


def grads(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p))
            for n, p in module.named_parameters()}


def term_grads(module: torch.nn.Module, term: torch.Tensor) -> dict[str, torch.Tensor]:
    names, params = zip(*[(n, p) for n, p in module.named_parameters() if p.requires_grad])
    out = torch.autograd.grad(term, params, allow_unused=True)
    return {n: (g if g is not None else torch.zeros_like(p))
            for n, p, g in zip(names, params, out)}


def mixed_batch(task: SISGANTask, p_match: float = CONFIG.p_match):
    """The first batch in which some images keep their own caption as relevant and some not."""
    for epoch in range(10):
        for k in range(task.steps_per_epoch):
            batch = task.batch(epoch, k)
            coins = batch.coins < p_match
            if coins.any() and not coins.all():
                return batch
    raise AssertionError("no batch mixes matched and mismatched relevant captions")


def record_d(task: SISGANTask) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Make D record ``(images, sentences, logits)`` of every pair it scores, in order."""
    D, calls, last = task.D, [], {}
    features, logits = D.features, D.logits

    def recording_features(x):
        last["x"] = x.detach().clone()
        return features(x)

    def recording_logits(f, phi):
        out = logits(f, phi)
        calls.append((last["x"], phi.detach().clone(), out.detach().clone()))
        return out

    D.features, D.logits = recording_features, recording_logits
    return calls


# ---------------------------------------------------------------------- data and batches

def test_native_split_keeps_the_drawn_pixels(root, data):
    from PIL import Image

    assert data.images.shape == (12, 3, 64, 64) and data.image_size == 64
    assert len(data.captions) == 120 and data.captions_per_image == 10
    key = "/".join(sorted((root / "CUB_200_2011" / "images").glob("*/*.jpg"))[0].parts[-2:])
    with Image.open(root / "CUB_200_2011" / "images" / key) as im:
        first = torch.from_numpy(np.array(im.convert("RGB"))).permute(2, 0, 1)
    assert any(torch.equal(first, img) for img in data.images)


def test_batches_are_deterministic_and_differ_between_steps(data):
    task = make_task(data)
    a, b, c = task.batch(1, 0), task.batch(1, 0), task.batch(1, 1)
    for f in fields(a):
        assert torch.equal(getattr(a, f.name), getattr(b, f.name)), f.name
    assert not torch.equal(a.images, c.images)


def test_the_mismatching_caption_is_never_the_images_own(data):
    task = make_task(data, config=replace(CONFIG, max_steps_per_epoch=None))
    for epoch in range(5):
        for k in range(task.steps_per_epoch):
            batch = task.batch(epoch, k)
            assert (batch.other != torch.arange(4)).all()  # a derangement: no fixed point
            assert sorted(batch.other.tolist()) == [0, 1, 2, 3]  # every caption used once
            text = choose_captions(task.text_encoder, batch, CONFIG.p_match)
            torch.testing.assert_close(text.other, text.own[batch.other])


# ---------------------------------------------------------------------- the step's algorithm

def test_one_step_changes_both_networks_and_logs_every_loss(data):
    task = make_task(data)
    before = weights(task)
    te_before = {k: v.clone() for k, v in task.text_encoder.state_dict().items()}
    losses = task.step(task.batch(0, 0))
    assert losses.shape == (len(LOSS_NAMES),) and torch.isfinite(losses).all()
    after = weights(task)
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("G."))
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("D."))
    for k, v in task.text_encoder.state_dict().items():
        assert torch.equal(v, te_before[k])  # the text encoder stays frozen
    named = dict(zip(LOSS_NAMES, losses.tolist()))
    assert 0 <= named["p_real"] <= 1 and named["recon"] > 0


def test_d_scores_the_three_intended_pairs_and_g_the_relevant_one(data):
    task = make_task(data)
    batch = mixed_batch(task)  # both kinds of relevant caption
    coins = batch.coins < CONFIG.p_match
    with torch.no_grad():
        _, own = task.text_encoder(batch.captions, batch.lengths)
        relevant = torch.where(coins[:, None], own, own[batch.other])
        fake, _, _ = copy.deepcopy(task.G)(batch.images, relevant, batch.eps)
    calls = record_d(task)
    named = dict(zip(LOSS_NAMES, task.step(batch).tolist()))
    assert len(calls) == 4  # D step: 3 pairs; G step: 1
    expected = [(batch.images, own), (batch.images, own[batch.other]), (fake, relevant),
                (fake, relevant)]
    for k, ((x, phi, _), (want_x, want_phi)) in enumerate(zip(calls, expected)):
        torch.testing.assert_close(x, want_x, msg=f"pair {k}: images")
        torch.testing.assert_close(phi, want_phi, msg=f"pair {k}: sentences")
    # and with the intended labels: real-matching 1, real-mismatching 0, fake 0; G wants 1
    logit = [c[2] for c in calls]
    bce = F.binary_cross_entropy_with_logits
    for name, value in (("d_real", bce(logit[0], torch.ones(4))),
                        ("d_mismatch", bce(logit[1], torch.zeros(4))),
                        ("d_fake", bce(logit[2], torch.zeros(4))),
                        ("g_adv", bce(logit[3], torch.ones(4)))):
        assert named[name] == pytest.approx(value.item(), rel=1e-5), name
    assert named["d_loss"] == pytest.approx(
        named["d_real"] + 0.5 * named["d_mismatch"] + 0.5 * named["d_fake"], rel=1e-5)


def test_gradients_are_those_of_the_papers_losses(data):
    """D's gradients are those of L_D alone, G's those of L_G alone, written out here."""
    config = replace(CONFIG, kl_weight=0.7, recon_weight=3.0)
    task = make_task(data, config=config)
    task.step(task.batch(0, 0))  # leaves gradients behind
    batch = mixed_batch(task)
    G0, D0 = copy.deepcopy(task.G), copy.deepcopy(task.D)
    task.step(batch)
    bce = F.binary_cross_entropy_with_logits
    with torch.no_grad():
        _, own = task.text_encoder(batch.captions, batch.lengths)
    matched = batch.coins < config.p_match
    relevant = torch.where(matched[:, None], own, own[batch.other])
    fake, mu, log_sigma = G0(batch.images, relevant, batch.eps)
    features = D0.features(batch.images)
    l_d = (bce(D0.logits(features, own), torch.ones(4))
           + 0.5 * bce(D0.logits(features, own[batch.other]), torch.zeros(4))
           + 0.5 * bce(D0(fake.detach(), relevant), torch.zeros(4)))
    want_d, got_d = term_grads(D0, l_d), grads(task.D)
    for n in want_d:
        torch.testing.assert_close(got_d[n], want_d[n], msg=f"D.{n}")
    D1 = copy.deepcopy(task.D).requires_grad_(False)  # D after its update (G's step used it)
    l1 = ((fake - batch.images).abs().flatten(1).mean(1) * matched).sum() / matched.sum()
    l_g = bce(D1(fake, relevant), torch.ones(4)) + 0.7 * kl_loss(mu, log_sigma) + 3.0 * l1
    want_g, got_g = term_grads(G0, l_g), grads(task.G)
    for n in want_g:
        torch.testing.assert_close(got_g[n], want_g[n], msg=f"G.{n}")


def test_gradients_are_zeroed_before_every_backward_pass(data):
    task = make_task(data)
    task.step(task.batch(0, 0))  # leaves gradients behind
    fresh = copy.deepcopy(task)
    for p in [*fresh.G.parameters(), *fresh.D.parameters()]:
        p.grad = None
    batch = task.batch(0, 1)
    task.step(batch)
    fresh.step(batch)
    for name, net in (("G", "G"), ("D", "D")):
        a, b = grads(getattr(task, net)), grads(getattr(fresh, net))
        for n in a:
            assert torch.equal(a[n], b[n]), f"{name}.{n}: stale gradients were added"
    a, b = weights(task), weights(fresh)
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("weight", ["kl_weight", "recon_weight", "damsm_weight"])
def test_each_loss_weight_changes_only_gs_gradients_by_its_term(data, weight):
    """Switching a weight on adds exactly weight * d(term)/dG to G's gradients; D's stay."""
    base = replace(CONFIG, kl_weight=0.0, recon_weight=0.0, damsm_weight=0.0)
    on = replace(base, **{weight: 0.5})
    runs = []
    for config in (base, on):
        task = make_task(data, config=config, image_encoder=image_encoder())
        batch = mixed_batch(task)
        G0 = copy.deepcopy(task.G)
        task.step(batch)
        runs.append((grads(task.G), grads(task.D), G0, batch, task))
    (g_off, d_off, G0, batch, task), (g_on, d_on, *_) = runs
    for n in d_off:
        assert torch.equal(d_off[n], d_on[n]), f"D.{n} depends on {weight}"
    assert any(not torch.equal(g_off[n], g_on[n]) for n in g_off), f"{weight} changes nothing"
    with torch.no_grad():
        words, own = task.text_encoder(batch.captions, batch.lengths)
    matched = batch.coins < base.p_match
    whose = torch.where(matched, torch.arange(4), batch.other)  # owner of the relevant caption
    fake, mu, log_sigma = G0(batch.images, own[whose], batch.eps)
    if weight == "kl_weight":
        term = kl_loss(mu, log_sigma)
    elif weight == "recon_weight":
        term = reconstruction_loss(fake, batch.images, matched)
    else:  # the edit against its relevant caption (words, lengths and class of its owner)
        term = damsm_image_loss(image_encoder().eval(), fake, words[whose], own[whose],
                                batch.lengths[whose], batch.class_ids[whose])
    want = term_grads(G0, term)
    for n in want:  # (the difference of two sums cancels: tolerance by the sums' size)
        atol = 1e-5 * g_off[n].abs().max().item() + 1e-7
        torch.testing.assert_close(g_on[n] - g_off[n], 0.5 * want[n], atol=atol, rtol=1e-3,
                                   msg=lambda m, n=n: f"G.{n}: {m}")


def test_the_optional_damsm_term_needs_and_uses_the_image_encoder(data):
    config = replace(CONFIG, damsm_weight=0.5)
    with pytest.raises(ValueError, match="image encoder"):
        make_task(data, config=config)
    encoder = image_encoder()
    task = make_task(data, config=config, image_encoder=encoder)
    frozen = {k: v.clone() for k, v in encoder.state_dict().items()}
    named = dict(zip(LOSS_NAMES, task.step(task.batch(0, 0)).tolist()))
    assert named["g_damsm"] > 0
    for k, v in task.image_encoder.state_dict().items():
        assert torch.equal(v, frozen[k])  # frozen: only G learns from it
    assert task.fingerprint()["image_weights"] is not None
    plain = make_task(data)
    assert plain.step(plain.batch(0, 0))[LOSS_NAMES.index("g_damsm")] == 0


def test_damsm_image_size_resizes_the_edits_for_the_image_encoder(data):
    encoder = image_encoder()
    seen = []
    encoder.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    config = replace(CONFIG, damsm_weight=0.5, damsm_image_size=32)
    task = make_task(data, config=config, image_encoder=encoder)
    named = dict(zip(LOSS_NAMES, task.step(task.batch(0, 0)).tolist()))
    assert named["g_damsm"] > 0
    assert seen and all(tuple(s[-2:]) == (32, 32) for s in seen)  # the edits are 64 px


# ---------------------------------------------------------------------- schedule and recipes

def test_learning_rate_halves_on_schedule():
    config = SISGANTrainConfig(lr=1e-3, lr_halve_every=100)
    assert [lr_at(config, e) for e in (0, 99, 100, 250)] == [1e-3, 1e-3, 5e-4, 2.5e-4]
    for bad in ({"batch_size": 1}, {"p_match": 2.0}, {"recon_weight": -1.0}):
        with pytest.raises(ValueError):
            SISGANTrainConfig(**bad)


def test_the_engine_applies_the_schedule_to_both_optimisers(data, tmp_path):
    config = replace(CONFIG, epochs=3, lr=1e-3, lr_halve_every=1)
    engine = make_engine(data, tmp_path / "run", config=config)
    task, seen = engine.task, []
    step = task.step

    def spy(batch):
        seen.append([g["lr"] for opt in (task.opts.g, task.opts.d) for g in opt.param_groups])
        return step(batch)

    task.step = spy
    engine.fit(2, progress_bar=False)
    assert seen == [[1e-3, 1e-3]] * 2 + [[5e-4, 5e-4]] * 2
    resumed = make_engine(data, tmp_path / "run", config=config)
    resumed.load()
    resumed.fit(3, progress_bar=False)
    assert [g["lr"] for g in resumed.task.opts.g.param_groups] == [2.5e-4]


def test_the_named_recipes():
    assert RECIPES == {"reference": REFERENCE, "toybirds": TOYBIRDS, "smoke": SMOKE}
    assert REFERENCE.model == SISGANConfig() and REFERENCE.train == SISGANTrainConfig()
    assert REFERENCE.train.lr == 2e-4 and REFERENCE.train.lr_halve_every == 100
    assert TOYBIRDS.model.skip and TOYBIRDS.train.lr == 1e-3
    assert SMOKE.train.max_steps_per_epoch == 2
    assert SISGANTrainConfig.RUN_ONLY == ("epochs", "log_every", "amp")


def test_run_dir_names(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path))
    default = default_run_dir("toybirds", replace(TOYBIRDS, train=replace(TOYBIRDS.train,
                                                                          epochs=99)))
    assert default == tmp_path / "runs" / "sisgan_toybirds64"
    other = default_run_dir("toybirds", replace(TOYBIRDS, train=replace(TOYBIRDS.train,
                                                                        p_match=0.3)))
    wider = default_run_dir("toybirds", replace(TOYBIRDS, model=replace(TOYBIRDS.model, ngf=32)))
    assert other.name.startswith("sisgan_toybirds64_") and len(other.name) == 26
    assert len({default, other, wider}) == 3
    assert default_run_dir("cub", TOYBIRDS).name.startswith("sisgan_cub64_")


def test_task_checks_its_inputs(data):
    with pytest.raises(ValueError, match="image_size"):
        make_task(data, model=replace(MODEL, image_size=32))
    with pytest.raises(ValueError, match="16-d sentences"):
        make_task(data, model=replace(MODEL, sentence_dim=8))
    with pytest.raises(ValueError, match="fewer than one batch"):
        make_task(data, config=replace(CONFIG, batch_size=64))
    with pytest.raises(ValueError, match="model_config"):
        sisgan_engine(CONFIG, text_encoder(data), data, device="cpu")


# ---------------------------------------------------------------------- runs and checkpoints

def test_split_run_equals_straight_run(data, tmp_path):
    straight = make_engine(data, tmp_path / "a")
    straight.fit(2, progress_bar=False)
    first = make_engine(data, tmp_path / "b")
    result = first.fit(2, stop_after=3, progress_bar=False)
    assert result.interrupted and result.step == 3
    second = make_engine(data, tmp_path / "b")
    second.load()
    assert (second.step, second.epoch, second.step_in_epoch) == (3, 1, 1)
    result = second.fit(2, progress_bar=False)
    assert not result.interrupted and result.step == 4 and result.epoch == 2
    a, b = weights(straight.task), weights(second.task)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert straight.result(True).log["d_loss"] == second.result(True).log["d_loss"]


def test_checkpoint_of_another_configuration_is_refused(data, tmp_path):
    make_engine(data, tmp_path / "c").fit(1, progress_bar=False)
    other = make_engine(data, tmp_path / "c", config=replace(CONFIG, p_match=0.3))
    with pytest.raises(CheckpointMismatch, match="p_match"):
        other.load()
    later = make_engine(data, tmp_path / "c", config=replace(CONFIG, epochs=5, log_every=7))
    later.load()  # run-only fields may change
    assert later.epoch == 1


def test_load_or_train_then_load_sisgan_and_manipulate(data, root, tmp_path):
    run_dir = tmp_path / "run"
    first = load_or_train_sisgan(make_engine(data, run_dir), progress_bar=False)
    assert first.trained and first.result.epoch == 2 and first.path == run_dir / "checkpoint.pt"
    assert [f.name for f in first.result.sample_files] == ["epoch_001.png", "epoch_002.png"]
    second = load_or_train_sisgan(make_engine(data, run_dir), progress_bar=False)
    assert not second.trained and second.result.log == first.result.log
    for k, v in first.generator.state_dict().items():
        assert torch.equal(v, second.generator.state_dict()[k])

    g, te, vocab, meta = load_sisgan(run_dir / "checkpoint.pt")
    assert not g.training and not te.training and vocab == data.vocab
    assert meta["epoch"] == 2 and meta["model_config"]["ngf"] == 4
    assert meta["log"]["d_loss"] == first.result.log["d_loss"]
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

    retrained = load_or_train_sisgan(make_engine(data, run_dir), retrain=True, epochs=1,
                                     progress_bar=False)
    assert retrained.trained and retrained.result.epoch == 1
    assert [f.name for f in retrained.result.sample_files] == ["epoch_001.png"]


def test_the_sample_grid_shows_sources_then_their_edits(data):
    task = make_task(data, sample_captions=["a red bird", "a blue bird", "a bird"])
    images, ncol = task.samples()
    assert ncol == 4 and images.shape == (8 * 4, 3, 64, 64)
    grid = images.view(8, 4, 3, 64, 64)
    assert torch.equal(grid[:, 0], task.sample_sources)
    task.G.eval()
    torch.testing.assert_close(grid[:, 2], manipulate(task.G, task.text_encoder, data.vocab,
                                                      task.sample_sources, ["a blue bird"]))


def test_load_sisgan_refuses_other_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_sisgan(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointMismatch, match="not a SISGAN"):
        load_sisgan(tmp_path / "other.pt")


def test_images_from_files(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    Image.new("L", (10, 10), 0).save(tmp_path / "black.jpg")
    (tmp_path / "text.png").write_text("not an image")
    x = images_from_files([tmp_path / "red.png", tmp_path / "black.jpg"], 16)
    assert x.shape == (2, 3, 16, 16)
    torch.testing.assert_close(x[0, :, 8, 8], torch.tensor([1.0, -1.0, -1.0]))
    assert (x[1] == -1).all()
    with pytest.raises(ValueError, match="text.png: not a readable image"):
        images_from_files([tmp_path / "text.png"], 16)


def test_the_toybirds_recipe_in_smoke_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("T2I_DATA", str(tmp_path / "data"))
    run = load_or_train_sisgan(device="cpu", smoke=True, progress_bar=False)
    assert run.trained and run.result.step == 2 and run.path.is_file()
    assert not (tmp_path / "data" / "checkpoints").exists()  # smoke models stay out of it
    assert not (tmp_path / "data" / "runs").exists()
    g, te, vocab, meta = load_sisgan(run.path)
    out = manipulate(g, te, vocab, torch.zeros(2, 3, 64, 64), ["a red bird"])
    assert out.shape == (2, 3, 64, 64)
    scratch = run.path.parent.parent  # sisgan_smoke_*/run/checkpoint.pt
    assert scratch.name.startswith("sisgan_smoke_") and scratch.is_dir()
    del run, g, te, out
    gc.collect()
    assert not scratch.exists()  # the temporary folder goes with its engine
