"""Notebook 11's word-level parts: colour-swapped captions, the word-level D head, the step, the
task on the engine and loading its checkpoints (t2ilib.binding)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from t2ilib.binding.sampling import load_any_generator
from t2ilib.binding.step import (
    BINDING_LOSS_NAMES,
    BindingConfig,
    _d_loss,
    _Text,
    binding_g_step,
)
from t2ilib.binding.swaps import colour_word_ids, swap_colour_words, swapped_damsm_loss
from t2ilib.binding.train import binding_engine
from t2ilib.binding.word_d import WordDiscriminator
from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.damsm.losses import word_scores
from t2ilib.engine.checkpoint import CheckpointMismatch
from t2ilib.engine.loop import load_or_train
from t2ilib.ssagan.losses import discriminator_adversarial_loss
from t2ilib.ssagan.model import Discriminator, SSAGANConfig
from t2ilib.ssagan.recipes import Recipe, SSAGANTrainConfig
from t2ilib.ssagan.sampling import generate, load_generator
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary

from .helpers import randomize_zero_params, tiny_toybirds_train

MODEL = SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=32)
CONFIG = SSAGANTrainConfig(epochs=2, batch_size=4, log_every=1, max_steps_per_epoch=2, seed=3)


def _ids(vocab: Vocabulary, caption: str) -> list[int]:
    return [vocab.word2idx[w] for w in caption.split()]


def test_swapping_exchanges_two_different_colour_words_and_nothing_else():
    vocab = Vocabulary.from_words(["<end>", "a", "red", "body", "and", "blue", "wings",
                                   "crown", "small"])
    colours = colour_word_ids(vocab)
    assert colours == {vocab.word2idx["red"], vocab.word2idx["blue"]}
    rows = [_ids(vocab, "a red body and blue wings"), _ids(vocab, "a red body and red crown"),
            _ids(vocab, "a small body")]
    ids = torch.zeros(3, 7, dtype=torch.long)
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(row)
    lengths = torch.tensor([len(r) for r in rows])
    swapped, has = swap_colour_words(ids, lengths, colours, torch.Generator().manual_seed(0))
    assert has.tolist() == [True, False, False]  # one colour only / none: no swap
    assert swapped[0, :6].tolist() == _ids(vocab, "a blue body and red wings")
    torch.testing.assert_close(swapped[1:], ids[1:])
    with pytest.raises(ValueError, match="CPU"):
        swap_colour_words(ids.to("meta"), lengths, colours, torch.Generator())


def test_the_word_head_is_the_docstring_formula_and_ignores_padding():
    d = WordDiscriminator(MODEL).eval()
    g = torch.Generator().manual_seed(1)
    regions = torch.randn(2, d.word_key.in_channels, 8, 8, generator=g)
    words = torch.randn(2, 32, 5, generator=g)
    lengths = torch.tensor([5, 3])
    got = d.word_logits(regions, words, lengths)
    b = 1  # by hand for the second caption (3 real words)
    w = words[b, :, :3].T                                            # (3, D)
    k = d.word_key.weight[:, :, 0, 0] @ regions[b].flatten(1)       # (D, 64)
    v = d.word_value.weight[:, :, 0, 0] @ regions[b].flatten(1)     # (D, 64)
    att = torch.softmax(w @ k / math.sqrt(32), dim=-1)              # (3, 64)
    context = att @ v.T                                             # (3, D)
    wb = d.word_score(w)
    f = (wb[:, :32] * context).sum(-1) / math.sqrt(32) + wb[:, 32]
    alpha = torch.softmax(d.word_importance(w).squeeze(-1), 0)
    torch.testing.assert_close(got[b], (alpha * f).sum())
    padded = words.clone()
    padded[1, :, 3:] = 50.0
    torch.testing.assert_close(d.word_logits(regions, padded, lengths), got)


def test_without_word_parts_the_d_loss_is_ssa_gans():
    torch.manual_seed(2)
    plain = Discriminator(MODEL)
    word_d = WordDiscriminator(MODEL)
    word_d.load_state_dict(plain.state_dict(), strict=False)
    randomize_zero_params(plain, seed=3)
    randomize_zero_params(word_d, seed=3)
    real, fake = torch.randn(4, 3, 32, 32), torch.randn(4, 3, 32, 32)
    text = _Text(torch.randn(4, 32, 6), torch.randn(4, 32), torch.full((4,), 6))
    want = discriminator_adversarial_loss(plain, real, fake, text.sentence).total
    only_g = BindingConfig(word_generator=True)
    loss, _ = _d_loss(plain, real, fake, text, None, None, only_g)
    torch.testing.assert_close(loss, want)
    with_head = BindingConfig(word_discriminator=True, word_d_weight=0.0)
    loss, (hinge, word, _) = _d_loss(word_d, real, fake, text, None, None, with_head)
    torch.testing.assert_close(loss, want)  # the sentence head is SSA-GAN's D exactly
    assert word > 0
    keep = torch.tensor([True, False, True, True])
    swap = _Text(torch.randn(3, 32, 6), torch.randn(3, 32), torch.full((3,), 6))
    loss, (_, _, swapped) = _d_loss(plain, real, fake, text, swap, keep,
                                    BindingConfig(swap_weight=2.0))
    right = plain(real[keep], text.sentence[keep])  # a ranking: own caption above the swap
    wrong = plain(real[keep], swap.sentence)
    torch.testing.assert_close(swapped, torch.relu(1 - right + wrong).mean())
    torch.testing.assert_close(loss, want + 2.0 * swapped)


def test_the_g_step_gives_d_its_gradients_back_after_an_error():
    d = WordDiscriminator(MODEL)
    class Nets:
        D = d
        image_encoder = None
    text = _Text(torch.randn(2, 32, 4), torch.randn(2, 32), torch.full((2,), 4))
    with pytest.raises(AttributeError):  # no batch: the DAMSM term fails after D was frozen
        binding_g_step(Nets(), None, torch.randn(2, 3, 32, 32), text, None, None, None, CONFIG,
                       BindingConfig(word_discriminator=True))
    assert all(p.requires_grad for p in d.parameters())


def test_the_damsm_swap_loss_is_a_logistic_choice_between_the_two_captions():
    torch.manual_seed(4)
    encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=8, width=4)).eval()
    images = torch.randn(3, 3, 32, 32)
    words, sentence = torch.randn(3, 8, 5), torch.randn(3, 8)
    lengths = torch.tensor([5, 4, 2])
    same = swapped_damsm_loss(encoder, images, words, sentence, lengths, words, sentence)
    torch.testing.assert_close(same, torch.tensor(2 * math.log(2)))  # no preference: log 2 each
    other_w, other_s = torch.randn(3, 8, 5), torch.randn(3, 8)
    got = swapped_damsm_loss(encoder, images, words, sentence, lengths, other_w, other_s)
    regions, codes = encoder(images)
    diff_w = torch.stack([word_scores(words[i:i + 1], lengths[i:i + 1], regions[i:i + 1])[0, 0]
                          - word_scores(other_w[i:i + 1], lengths[i:i + 1], regions[i:i + 1])[0, 0]
                          for i in range(3)])
    diff_s = torch.cosine_similarity(codes, sentence) - torch.cosine_similarity(codes, other_s)
    want = (torch.nn.functional.softplus(-10 * diff_w)
            + torch.nn.functional.softplus(-10 * diff_s)).mean()
    torch.testing.assert_close(got, want)


def test_a_binding_config_adds_something_and_checks_its_numbers():
    with pytest.raises(ValueError, match="at least one part"):
        BindingConfig()
    with pytest.raises(ValueError, match=">= 0"):
        BindingConfig(swap_weight=-1.0)
    assert BindingConfig(word_generator=True, swap_weight=1.0).name == "wordG+swap"
    assert BindingConfig(damsm_swap_weight=1.0).name == "swapDAMSM"
    old = BindingConfig(word_discriminator=True, swap_weight=1.0)  # runs made before the field
    assert "damsm_swap_weight" not in old.fingerprint()
    assert BindingConfig(damsm_swap_weight=0.5).fingerprint()["damsm_swap_weight"] == 0.5


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_toybirds_train(tmp_path_factory)


def _engine(data, run_dir, binding):
    torch.manual_seed(0)
    te = TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=16, hidden_dim=32))
    ie = SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=4))
    config = replace(CONFIG, finetune_text_encoder=True)  # the encoder swap step runs too
    return binding_engine(Recipe("test", MODEL, config), binding, te, ie, data, device="cpu",
                          run_dir=run_dir)


def test_a_binding_run_trains_resumes_and_loads_where_ssa_gan_loads(data, tmp_path):
    binding = BindingConfig(word_generator=True, word_discriminator=True, swap_weight=1.0,
                            damsm_swap_weight=1.0)
    engine = _engine(data, tmp_path / "run", binding)
    batch = engine.task.batch(0, 0)
    assert batch.has_swap is not None and batch.has_swap.any()
    assert engine.task.loss_names == BINDING_LOSS_NAMES
    losses = engine.task.step(batch)
    assert losses.shape == (len(BINDING_LOSS_NAMES),) and torch.isfinite(losses).all()
    named = dict(zip(BINDING_LOSS_NAMES, losses.tolist()))
    assert named["enc_swap"] > 0 and named["g_swap"] > 0 and named["d_swap"] > 0
    result = load_or_train(engine, progress_bar=False)
    assert result.trained and result.step == 4
    again = load_or_train(_engine(data, tmp_path / "run", binding), progress_bar=False)
    assert not again.trained  # the same config loads
    with pytest.raises(CheckpointMismatch, match="binding"):  # another config does not
        load_or_train(_engine(data, tmp_path / "run", BindingConfig(word_generator=True)),
                      progress_bar=False)
    with pytest.raises(CheckpointMismatch, match="load_any_generator"):
        load_generator(engine.checkpoint_path)
    g, te, vocab, payload = load_any_generator(engine.checkpoint_path)
    assert payload["meta"]["binding"]["word_generator"] and g.reads_words
    images, masks = generate(g, te, vocab, ["a red body and blue wings"] * 2, seed=0)
    assert images.shape == (2, 3, 32, 32) and len(masks) == 4


def _binding_runs_script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data_scripts" / "binding_runs.py"
    spec = importlib.util.spec_from_file_location("binding_runs", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_runs_table_gives_median_and_range_per_variant():
    script = _binding_runs_script()
    keys = ("body_color", "wing_color", "crown_color", "mean", "own", "leak", "toy_fid",
            "train_seconds")
    runs = [{"variant": v, "seed": s, **{k: x for k in keys}}
            for v, s, x in (("baseline", 100, 0.1), ("baseline", 101, 0.3),
                            ("baseline", 102, 0.2), ("swap", 100, 0.5))]
    table = script.summary(runs)
    assert table["baseline"]["seeds"] == [100, 101, 102]
    assert table["baseline"]["own"] == {"median": 0.2, "min": 0.1, "max": 0.3}
    assert table["swap"]["leak"] == {"median": 0.5, "min": 0.5, "max": 0.5}
    lines = script.markdown(table).splitlines()
    assert lines[2].startswith("| baseline | 100, 101, 102 | 0.200 [0.100-0.300]")
    assert len(lines) == 4 and all(line.count("|") == lines[0].count("|") for line in lines)
    with pytest.raises(SystemExit):
        script.main(["--variants", "nonsense"])


def test_each_variant_is_named_as_its_config_and_its_options_make_it():
    from t2ilib.apps.cli import build_parser
    from t2ilib.apps.train_ssagan import binding_from
    from t2ilib.binding.variants import VARIANTS, train_options

    for name, config in VARIANTS.items():
        args = build_parser().parse_args(["train", "ssagan", *train_options(config)])
        assert binding_from(args) == config
        assert (config.name if config else "baseline") == name
