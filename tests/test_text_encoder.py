"""TextEncoder: parameter count, a hand-written LSTM, order/padding invariance, interop."""

from __future__ import annotations

import math

import pytest
import torch

from t2ilib.text.encoder import TextEncoder, TextEncoderConfig, convert_attngan_text_state_dict


def tiny_encoder(seed: int = 0, vocab: int = 9, embed: int = 3, hidden: int = 4) -> TextEncoder:
    torch.manual_seed(seed)
    return TextEncoder(
        TextEncoderConfig(vocab_size=vocab, embed_dim=embed, hidden_dim=hidden)
    ).eval()


def padded(captions: list[list[int]], max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.zeros(len(captions), max_len, dtype=torch.long)
    for i, c in enumerate(captions):
        ids[i, : len(c)] = torch.tensor(c)
    return ids, torch.tensor([len(c) for c in captions])


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def lstm_by_hand(xs: list[list[float]], w_ih, w_hh, b_ih, b_hh) -> list[list[float]]:
    """One LSTM direction with plain floats: gates i, f, g, o (PyTorch's row order)."""
    n = len(b_ih) // 4
    h, c, out = [0.0] * n, [0.0] * n, []
    for x in xs:
        pre = [
            sum(w_ih[r][k] * x[k] for k in range(len(x)))
            + sum(w_hh[r][k] * h[k] for k in range(n))
            + b_ih[r]
            + b_hh[r]
            for r in range(4 * n)
        ]
        i = [sigmoid(v) for v in pre[0:n]]
        f = [sigmoid(v) for v in pre[n : 2 * n]]
        g = [math.tanh(v) for v in pre[2 * n : 3 * n]]
        o = [sigmoid(v) for v in pre[3 * n : 4 * n]]
        c = [f[j] * c[j] + i[j] * g[j] for j in range(n)]
        h = [o[j] * math.tanh(c[j]) for j in range(n)]
        out.append(h)
    return out


def test_cub_sized_encoder_has_the_official_parameter_count():
    enc = TextEncoder(TextEncoderConfig(vocab_size=5450))
    assert sum(p.numel() for p in enc.parameters()) == 2_075_320
    # and the count splits as documented: embedding + two LSTM directions
    assert enc.embed.weight.numel() == 5450 * 300
    assert sum(p.numel() for p in enc.lstm.parameters()) == 2 * (
        4 * 128 * (300 + 128) + 2 * 4 * 128
    )


def test_embedding_initialised_uniform_pm_0_1():
    w = TextEncoder(TextEncoderConfig(vocab_size=2000)).embed.weight
    assert w.abs().max() <= 0.1 and w.std() > 0.05  # U(-0.1, 0.1) has std 0.0577


def test_outputs_match_a_hand_written_bidirectional_lstm():
    enc = tiny_encoder()
    caps = [[3, 1, 4, 1], [5, 2], [8, 6, 7]]  # unsorted lengths 4, 2, 3
    ids, lengths = padded(caps, 5)
    words, sentence = enc(ids, lengths)
    assert words.shape == (3, 4, 5) and sentence.shape == (3, 4)
    p = {k: v.tolist() for k, v in enc.lstm.named_parameters()}
    emb = enc.embed.weight.tolist()
    for b, cap in enumerate(caps):
        xs = [emb[t] for t in cap]
        fwd = lstm_by_hand(
            xs, p["weight_ih_l0"], p["weight_hh_l0"], p["bias_ih_l0"], p["bias_hh_l0"]
        )
        bwd = lstm_by_hand(
            xs[::-1],
            p["weight_ih_l0_reverse"],
            p["weight_hh_l0_reverse"],
            p["bias_ih_l0_reverse"],
            p["bias_hh_l0_reverse"],
        )[::-1]
        for t in range(len(cap)):
            expected = torch.tensor(fwd[t] + bwd[t])
            torch.testing.assert_close(words[b, :, t], expected, atol=1e-6, rtol=1e-5)
        # sentence = last forward state (at the caption's end) + last backward state (at word 0)
        torch.testing.assert_close(
            sentence[b], torch.tensor(fwd[-1] + bwd[0]), atol=1e-6, rtol=1e-5
        )
        assert torch.all(words[b, :, len(cap) :] == 0)  # padding positions are zero


def test_output_order_equals_input_order_sorted_or_not():
    enc = tiny_encoder(seed=1)
    caps = [[1, 2], [3, 4, 5, 6], [7], [2, 2, 2]]
    ids, lengths = padded(caps, 6)
    words, sentence = enc(ids, lengths)
    order = torch.argsort(lengths, descending=True)
    words_s, sentence_s = enc(ids[order], lengths[order])  # AttnGAN's sorted batch
    torch.testing.assert_close(words_s, words[order])
    torch.testing.assert_close(sentence_s, sentence[order])
    for b in range(len(caps)):  # each caption alone, no padding at all
        w1, s1 = enc(ids[b : b + 1, : len(caps[b])], lengths[b : b + 1])
        torch.testing.assert_close(w1[0], words[b, :, : len(caps[b])], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(s1[0], sentence[b], atol=1e-6, rtol=1e-5)


def test_tokens_after_the_length_are_ignored():
    enc = tiny_encoder(seed=2)
    ids, lengths = padded([[1, 2, 3], [4, 5]], 4)
    noisy = ids.clone()
    noisy[0, 3], noisy[1, 2:] = 8, 7  # garbage where padding should be
    for a, b in zip(enc(ids, lengths), enc(noisy, lengths)):
        torch.testing.assert_close(a, b)


def test_lengths_may_live_on_any_device_and_dtype():
    enc = tiny_encoder()
    ids, lengths = padded([[1, 2, 3], [4]], 3)
    a = enc(ids, lengths)
    b = enc(ids, lengths.to(torch.int32))
    c = enc(ids, [3, 1])
    for x, y, z in zip(a, b, c):
        torch.testing.assert_close(x, y)
        torch.testing.assert_close(x, z)


def test_dropout_only_in_train_mode():
    enc = tiny_encoder(vocab=50, embed=32, hidden=8)
    ids, lengths = padded([[1, 2, 3, 4, 5, 6]], 6)
    torch.testing.assert_close(enc(ids, lengths)[1], enc(ids, lengths)[1])
    enc.train()
    torch.manual_seed(0)
    a = enc(ids, lengths)[1]
    b = enc(ids, lengths)[1]
    assert not torch.allclose(a, b)


def test_gradients_reach_the_embeddings_of_used_words_only():
    enc = tiny_encoder()
    ids, lengths = padded([[1, 2], [3]], 3)
    words, sentence = enc(ids, lengths)
    (words.sum() + sentence.sum()).backward()
    grad_rows = enc.embed.weight.grad.abs().sum(1)
    assert torch.all(grad_rows[[1, 2, 3]] > 0)
    assert torch.all(grad_rows[[0, 4, 5, 6, 7, 8]] == 0)  # padding id 0 never enters the LSTM


@pytest.mark.parametrize(
    "ids, lengths, match",
    [
        (torch.ones(2, 3), torch.tensor([1, 2]), "int64"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([0, 2]), "lengths"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([4, 2]), "lengths"),
        (torch.ones(2, 3, dtype=torch.long), torch.tensor([1, 2, 3]), "shape"),
        (torch.full((2, 3), 9, dtype=torch.long), torch.tensor([1, 2]), "token ids"),
        (torch.ones(3, dtype=torch.long), torch.tensor([1, 2, 3]), r"\(B, T\)"),
    ],
)
def test_bad_input_raises(ids, lengths, match):
    with pytest.raises(ValueError, match=match):
        tiny_encoder()(ids, lengths)


def test_check_ids_false_skips_only_the_id_check():
    enc = tiny_encoder().eval()
    ids, lengths = torch.tensor([[1, 2, 3], [4, 5, 0]]), torch.tensor([3, 2])
    for a, b in zip(enc(ids, lengths), enc(ids, lengths, check_ids=False)):
        assert torch.equal(a, b)
    bad = torch.full((2, 3), 9, dtype=torch.long)
    with pytest.raises(IndexError):  # the embedding's own error, not the friendly check
        enc(bad, lengths, check_ids=False)
    with pytest.raises(ValueError, match="lengths"):  # lengths are still checked (on the CPU)
        enc(ids, torch.tensor([0, 2]), check_ids=False)


def test_bad_config_raises():
    with pytest.raises(ValueError, match="even"):
        TextEncoder(TextEncoderConfig(vocab_size=10, hidden_dim=5))
    with pytest.raises(ValueError, match="vocab_size"):
        TextEncoder(TextEncoderConfig(vocab_size=1))


# --- AttnGAN interop -----------------------------------------------------------------------
# AttnGAN's RNN_ENCODER(ntoken=5450, ninput=300, nhidden=256, nlayers=1, bidirectional=True,
# rnn_type='LSTM') as published: ``self.encoder = nn.Embedding(ntoken, ninput)`` and
# ``self.rnn = nn.LSTM(ninput, nhidden // 2, nlayers, batch_first=True, bidirectional=True)``.
# Its state dict (text_encoder200.pth), written out from that definition:
ATTNGAN_TEXT_ENCODER_200 = {
    "encoder.weight": (5450, 300),
    "rnn.weight_ih_l0": (512, 300),
    "rnn.weight_hh_l0": (512, 128),
    "rnn.bias_ih_l0": (512,),
    "rnn.bias_hh_l0": (512,),
    "rnn.weight_ih_l0_reverse": (512, 300),
    "rnn.weight_hh_l0_reverse": (512, 128),
    "rnn.bias_ih_l0_reverse": (512,),
    "rnn.bias_hh_l0_reverse": (512,),
}


def test_attngan_text_encoder_state_dict_loads_exactly():
    g = torch.Generator().manual_seed(0)
    theirs = {k: torch.randn(shape, generator=g) for k, shape in ATTNGAN_TEXT_ENCODER_200.items()}
    enc = TextEncoder(TextEncoderConfig(vocab_size=5450))
    enc.load_state_dict(convert_attngan_text_state_dict(theirs), strict=True)
    torch.testing.assert_close(enc.embed.weight, theirs["encoder.weight"], rtol=0, atol=0)
    torch.testing.assert_close(
        enc.lstm.weight_hh_l0_reverse, theirs["rnn.weight_hh_l0_reverse"], rtol=0, atol=0
    )
    assert sum(math.prod(s) for s in ATTNGAN_TEXT_ENCODER_200.values()) == 2_075_320


def test_attngan_conversion_rejects_foreign_keys():
    with pytest.raises(ValueError, match="unexpected key"):
        convert_attngan_text_state_dict(
            {"rnn.weight_ih_l0": torch.zeros(1), "decoder.weight": torch.zeros(1)}
        )


def test_check_captions_returns_cpu_int64_lengths():
    from t2ilib.text.encoder import check_captions

    ids = torch.tensor([[1, 2, 0], [3, 0, 0]])
    lengths = check_captions(ids, [2, 1], vocab_size=4)
    assert lengths.dtype == torch.long and lengths.device.type == "cpu"
    assert lengths.tolist() == [2, 1]
    check_captions(torch.full((1, 2), 9), torch.tensor([2]))  # no vocabulary: ids not checked
    with pytest.raises(ValueError, match="token ids"):
        check_captions(torch.full((1, 2), 9), torch.tensor([2]), vocab_size=4)
