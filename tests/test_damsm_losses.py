"""DAMSM losses against hand computations and a naive per-pair loop (AttnGAN's recipe)."""

from __future__ import annotations

import math

import pytest
import torch

from t2ilib.damsm.losses import (
    ATTNGAN_GAMMAS,
    SSAGAN_GAMMAS,
    DAMSMGammas,
    cosine,
    damsm_loss,
    func_attention,
    matching_loss,
    sentence_loss,
    word_attention_maps,
    word_scores,
    words_loss,
)


def softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [x / sum(e) for x in e]


def cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b))
    return dot / max(math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)), 1e-8)


def naive_r(words: list[list[float]], regions: list[list[float]], g1: float, g2: float) -> float:
    """R(Q, D) of one caption (T word vectors) and one image (L region vectors), plain floats."""
    s = [[sum(x * y for x, y in zip(e, v)) for v in regions] for e in words]  # T x L
    T, L = len(words), len(regions)
    s_bar = [
        [math.exp(s[i][j]) / sum(math.exp(s[k][j]) for k in range(T)) for j in range(L)]
        for i in range(T)
    ]  # Eq. 8
    alpha = [softmax([g1 * s_bar[i][j] for j in range(L)]) for i in range(T)]  # Eq. 9
    D = len(words[0])
    c = [[sum(alpha[i][j] * regions[j][d] for j in range(L)) for d in range(D)] for i in range(T)]
    return math.log(
        sum(math.exp(g2 * cos(c[i], words[i])) for i in range(T))
    )  # Eq. 10, as the code


def ce_rows(S: list[list[float]], allowed) -> float:
    """Mean over rows a of -log softmax over allowed columns b of S[a][b], target b = a."""
    out = 0.0
    for a, row in enumerate(S):
        cols = [b for b in range(len(row)) if allowed(a, b)]
        out += -(row[a] - math.log(sum(math.exp(row[b]) for b in cols)))
    return out / len(S)


def test_gamma_defaults():
    assert (SSAGAN_GAMMAS.gamma1, SSAGAN_GAMMAS.gamma2, SSAGAN_GAMMAS.gamma3) == (5.0, 5.0, 10.0)
    assert (ATTNGAN_GAMMAS.gamma1, ATTNGAN_GAMMAS.gamma2, ATTNGAN_GAMMAS.gamma3) == (4.0, 5.0, 10.0)
    assert DAMSMGammas() == SSAGAN_GAMMAS


def test_cosine_by_hand():
    a, b = torch.tensor([3.0, 4.0]), torch.tensor([4.0, 3.0])
    assert cosine(a, b).item() == pytest.approx(24 / 25)
    assert cosine(torch.zeros(2), b).item() == 0.0  # eps clamp, no NaN


def test_func_attention_on_a_two_word_two_region_example():
    # words e1 = (1, 0), e2 = (0, 1); regions v1 = (1, 0), v2 = (0, 2): s = [[1, 0], [0, 2]]
    words = torch.tensor([[1.0, 0.0], [0.0, 1.0]])  # (D=2, T=2), columns are words
    regions = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # (D=2, L=2), columns are regions
    g1 = 5.0
    e = math.e
    s_bar = [
        [e / (e + 1), 1 / (1 + e * e)],
        [1 / (e + 1), e * e / (1 + e * e)],
    ]  # over words, per region
    alpha = [softmax([g1 * x for x in row]) for row in s_bar]
    context_by_hand = [
        [alpha[i][0] * 1.0, alpha[i][1] * 2.0] for i in range(2)
    ]  # c_i = sum_j alpha_ij v_j
    context, attn = func_attention(words, regions, torch.tensor([True, True]), g1)
    torch.testing.assert_close(attn, torch.tensor(alpha), atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(context.t(), torch.tensor(context_by_hand), atol=1e-6, rtol=1e-6)


def random_batch(B=3, D=4, T=5, h=2, w=3, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    words = torch.randn(B, D, T, generator=g, dtype=dtype)
    lengths = torch.tensor([5, 2, 3][:B])
    for b in range(B):
        words[b, :, lengths[b] :] = 0  # what the text encoder returns at padding
    regions = torch.randn(B, D, h, w, generator=g, dtype=dtype)
    codes = torch.randn(B, D, generator=g, dtype=dtype)
    sentences = torch.randn(B, D, generator=g, dtype=dtype)
    return words, lengths, regions, codes, sentences


def test_word_scores_match_a_naive_loop_over_pairs():
    words, lengths, regions, _, _ = random_batch()
    got = word_scores(words, lengths, regions, gamma1=4.0, gamma2=5.0)
    B = words.shape[0]
    for a in range(B):
        v = regions[a].flatten(1).t().tolist()  # L region vectors
        for b in range(B):
            e = words[b, :, : lengths[b]].t().tolist()  # the caption's real words only
            assert got[a, b].item() == pytest.approx(naive_r(e, v, 4.0, 5.0), rel=1e-5, abs=1e-5)


def test_word_scores_ignore_whatever_sits_in_padding():
    words, lengths, regions, _, _ = random_batch()
    noisy = words.clone()
    noisy[1, :, 2:] = 7.0  # caption 1 has 2 words
    torch.testing.assert_close(
        word_scores(words, lengths, regions), word_scores(noisy, lengths, regions)
    )


def test_word_attention_maps_are_distributions_over_regions():
    words, lengths, regions, _, _ = random_batch()
    maps = word_attention_maps(words, lengths, regions, gamma1=5.0)
    assert maps.shape == (3, 5, 2, 3)
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(3, 5))
    _, attn = func_attention(words[2], regions[2].flatten(1), torch.arange(5) < 3, 5.0)
    torch.testing.assert_close(maps[2, :3].flatten(1), attn[:3])


def test_sentence_loss_by_hand():
    codes = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    sentences = torch.tensor([[1.0, 1.0], [0.0, 1.0]])
    r = 1 / math.sqrt(2)
    S = [[10 * r, 0.0], [10 * r, 10 * 1.0]]  # gamma3 * cos(image a, caption b)
    l0 = (
        -math.log(math.exp(S[0][0]) / (math.exp(S[0][0]) + math.exp(S[0][1])))
        - math.log(math.exp(S[1][1]) / (math.exp(S[1][0]) + math.exp(S[1][1])))
    ) / 2
    l1 = (
        -math.log(math.exp(S[0][0]) / (math.exp(S[0][0]) + math.exp(S[1][0])))
        - math.log(math.exp(S[1][1]) / (math.exp(S[0][1]) + math.exp(S[1][1])))
    ) / 2
    s0, s1 = sentence_loss(codes, sentences, gammas=DAMSMGammas(gamma3=10.0))
    assert s0.item() == pytest.approx(l0, rel=1e-6)
    assert s1.item() == pytest.approx(l1, rel=1e-6)
    assert l0 != pytest.approx(l1)  # the two directions really differ here


def test_same_class_pairs_are_not_negatives():
    scores = torch.tensor([[0.9, 0.8, 0.1], [0.7, 0.2, 0.3], [0.4, 0.5, 0.6]])
    classes = torch.tensor([4, 4, 1])  # images/captions 0 and 1 share a class
    l0, l1 = matching_loss(scores, classes, gamma3=2.0)
    S = (2 * scores).tolist()
    allowed = lambda a, b: a == b or classes[a] != classes[b]  # noqa: E731
    assert l0.item() == pytest.approx(ce_rows(S, allowed), rel=1e-6)
    St = [list(col) for col in zip(*S)]
    assert l1.item() == pytest.approx(ce_rows(St, allowed), rel=1e-6)
    plain0, _ = matching_loss(scores, None, gamma3=2.0)
    assert plain0.item() == pytest.approx(ce_rows(S, lambda a, b: True), rel=1e-6)
    one_class, _ = matching_loss(scores, torch.tensor([3, 3, 3]))
    assert one_class.item() == pytest.approx(0.0, abs=1e-7)  # no negatives left


def test_words_loss_equals_matching_loss_of_naive_scores():
    words, lengths, regions, _, _ = random_batch(seed=3)
    classes = torch.tensor([0, 1, 0])
    S = [
        [
            10
            * naive_r(
                words[b, :, : lengths[b]].t().tolist(), regions[a].flatten(1).t().tolist(), 5.0, 5.0
            )
            for b in range(3)
        ]
        for a in range(3)
    ]
    allowed = lambda a, b: a == b or classes[a] != classes[b]  # noqa: E731
    w0, w1 = words_loss(regions, words, lengths, classes)
    assert w0.item() == pytest.approx(ce_rows(S, allowed), rel=1e-5)
    assert w1.item() == pytest.approx(ce_rows([list(c) for c in zip(*S)], allowed), rel=1e-5)


def test_damsm_loss_total_and_finite_gradients_with_zero_padding():
    words, lengths, regions, codes, sentences = random_batch()
    for t in (words, regions, codes, sentences):
        t.requires_grad_(True)
    losses = damsm_loss(regions, codes, words, sentences, lengths, torch.tensor([0, 1, 2]))
    torch.testing.assert_close(losses.total, losses.w0 + losses.w1 + losses.s0 + losses.s1)
    losses.total.backward()
    for t in (words, regions, codes, sentences):
        assert torch.isfinite(t.grad).all()
    assert torch.all(words.grad[1, :, 2:] == 0)  # padded words get no gradient


def test_words_loss_gradient_matches_finite_differences():
    words, lengths, regions, _, _ = random_batch(
        B=3, D=2, T=5, h=1, w=2, seed=5, dtype=torch.float64
    )
    words.requires_grad_(True)
    regions.requires_grad_(True)
    classes = torch.tensor([0, 1, 0])

    def f(wd, rg):
        w0, w1 = words_loss(
            rg, wd, lengths, classes, DAMSMGammas(gamma1=4.0, gamma2=5.0, gamma3=10.0)
        )
        return w0 + 0.5 * w1

    assert torch.autograd.gradcheck(f, (words, regions), eps=1e-6, atol=1e-5)


def test_bad_shapes_raise():
    """damsm_loss checks its inputs (the loss functions it calls show the idea only)."""
    words, lengths, regions, codes, sentences = random_batch()
    with pytest.raises(ValueError, match="batch size"):
        damsm_loss(regions, codes[:2], words, sentences, lengths)
    with pytest.raises(ValueError, match="batch size"):
        damsm_loss(regions, codes, words, sentences, lengths[:2])
    with pytest.raises(ValueError, match="class_ids"):
        damsm_loss(regions, codes, words, sentences, lengths, torch.tensor([1, 2]))


def test_damsm_loss_takes_lengths_and_class_ids_as_lists():
    words, lengths, regions, codes, sentences = random_batch()
    a = damsm_loss(regions, codes, words, sentences, lengths, torch.tensor([0, 1, 0]))
    b = damsm_loss(regions, codes, words, sentences, lengths.tolist(), [0, 1, 0])
    torch.testing.assert_close(a.total, b.total)
