"""Word-attended SSACN (t2ilib.binding.word_ssacn): attention over real words only, the
per-position affine, and a generator that starts as SSA-GAN's."""

from __future__ import annotations

import pytest
import torch

from t2ilib.binding.word_ssacn import (
    WordCondition,
    WordGenerator,
    WordSpatialAffine,
    word_attention,
)
from t2ilib.ssagan.model import Generator, SSAGANConfig

from .helpers import randomize_zero_params


def _cond(b=2, d=6, t=5, lengths=(5, 3), seed=0) -> WordCondition:
    g = torch.Generator().manual_seed(seed)
    return WordCondition(torch.randn(b, d, generator=g), torch.randn(b, d, t, generator=g),
                         torch.tensor(lengths))


def test_word_attention_sums_to_one_over_the_real_words_and_matches_its_formula():
    cond = _cond()
    queries = torch.randn(2, 6, 3, 4, generator=torch.Generator().manual_seed(1))
    context, attention = word_attention(queries, cond.words, cond.word_mask())
    assert context.shape == (2, 6, 3, 4) and attention.shape == (2, 12, 5)
    torch.testing.assert_close(attention.sum(-1), torch.ones(2, 12))
    assert (attention[1, :, 3:] == 0).all()  # padding of the second caption
    b, p = 1, 7  # one position by hand
    q = queries[b].flatten(1)[:, p]
    scores = q @ cond.words[b, :, :3] / 6 ** 0.5
    want = torch.softmax(scores, 0) @ cond.words[b, :, :3].T
    torch.testing.assert_close(context[b].flatten(1)[:, p], want)


def test_the_affine_starts_as_batch_norm_and_ignores_padding():
    layer = WordSpatialAffine(4, word_dim=6, hidden_dim=8).train()
    x = torch.randn(2, 4, 3, 3, generator=torch.Generator().manual_seed(2))
    cond = _cond()
    torch.testing.assert_close(layer(x, cond), layer.norm(x))  # last layers start at zero
    randomize_zero_params(layer, seed=3)
    out = layer(x, cond)
    padded = cond.words.clone()
    padded[1, :, 3:] = 100.0  # change only the padding of caption 2
    torch.testing.assert_close(layer(x, WordCondition(cond.sentence, padded, cond.lengths)), out)
    mask = torch.zeros(2, 1, 3, 3)
    torch.testing.assert_close(layer(x, cond, mask), layer.norm(x))  # mask 0: no text at all


def test_positions_get_different_affines_unless_every_word_is_the_same():
    layer = WordSpatialAffine(4, word_dim=6, hidden_dim=8).eval()
    randomize_zero_params(layer, seed=4)
    x = torch.randn(1, 4, 4, 4, generator=torch.Generator().manual_seed(5))
    cond = _cond(b=1, lengths=(5,))
    gamma, _ = layer.affine(layer.norm(x), cond)
    assert gamma.flatten(2).std(-1).mean() > 1e-3  # positions attend to different words
    same = WordCondition(cond.sentence, cond.words[:, :, :1].expand(-1, -1, 5).contiguous(),
                         cond.lengths)
    gamma, _ = layer.affine(layer.norm(x), same)
    torch.testing.assert_close(gamma, gamma[:, :, :1, :1].expand_as(gamma))  # one word: SSACN


def test_the_affine_equals_the_docstring_mlp_on_the_attended_context():
    """The projected-words shortcut computes W2 ReLU(W1 [c_p; s]) exactly."""
    layer = WordSpatialAffine(4, word_dim=6, hidden_dim=8).eval()
    randomize_zero_params(layer, seed=8)
    x = torch.randn(2, 4, 3, 5, generator=torch.Generator().manual_seed(9))
    cond = _cond()
    normed = layer.norm(x)
    gamma, beta = layer.affine(normed, cond)
    keys = layer.key(cond.words.transpose(1, 2)).transpose(1, 2)  # (B, d_k, T)
    _, attention = word_attention(layer.query(normed), keys, cond.word_mask())  # (B, HW, T)
    context = (attention @ cond.words.transpose(1, 2)).transpose(1, 2).reshape(2, 6, 3, 5)
    s = cond.sentence[:, :, None, None].expand(-1, -1, 3, 5)
    w1 = torch.cat([layer.word_in.weight, layer.sentence_in.weight], dim=1)  # (2h, 2D)
    first = torch.einsum("ok,bkhw->bohw", w1, torch.cat([context, s], 1))
    hidden = torch.relu(first + layer.sentence_in.bias[None, :, None, None])
    torch.testing.assert_close(gamma, layer.gamma_out(hidden[:, :8]))
    torch.testing.assert_close(beta, layer.beta_out(hidden[:, 8:]))


def test_the_word_generator_starts_as_ssa_gan_and_needs_the_words():
    config = SSAGANConfig(resolution=32, ngf=4, nz=8, sentence_dim=6)
    torch.manual_seed(0)
    word_g = WordGenerator(config, hidden_dim=8).eval()
    plain = Generator(config).eval()
    shared = {k: v for k, v in word_g.state_dict().items() if k in plain.state_dict()
              and plain.state_dict()[k].shape == v.shape}
    plain.load_state_dict(shared, strict=False)
    z = torch.randn(2, 8, generator=torch.Generator().manual_seed(6))
    cond = _cond()
    images, masks = word_g(z, cond.sentence, cond.words, cond.lengths)
    want, want_masks = plain(z, cond.sentence)
    assert images.shape == (2, 3, 32, 32) and [m.shape[-1] for m in masks] == [4, 8, 16, 32]
    torch.testing.assert_close(images, want)  # gates start at 0: every block is its shortcut
    for a, b in zip(masks, want_masks):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="needs the caption's words"):
        word_g(z, cond.sentence)
    with pytest.raises(ValueError, match="block must be 'ssacn'"):
        WordGenerator(SSAGANConfig(resolution=32, ngf=4, block="df"))


def test_gradients_reach_the_words_once_the_gates_open():
    config = SSAGANConfig(resolution=32, ngf=4, nz=8, sentence_dim=6)
    g = WordGenerator(config, hidden_dim=8)
    randomize_zero_params(g, seed=7)
    cond = _cond()
    words = cond.words.clone().requires_grad_(True)
    images, _ = g(torch.randn(2, 8), cond.sentence, words, cond.lengths)
    images.sum().backward()
    assert words.grad is not None and words.grad[:, :, :3].abs().sum() > 0
    assert (words.grad[1, :, 3:] == 0).all()  # padding gets no gradient
