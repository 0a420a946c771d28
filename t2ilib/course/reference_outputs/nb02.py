"""Reference outputs of notebook 02's exercises: the packed bi-LSTM text encoder, the
word-to-region attention and the DAMSM batch-softmax loss.

Everything in float64 on the CPU. The text encoder's entry holds one set of weights (a
``state_dict``) and its outputs in three modes: eval; train with dropout 1.0 (every
embedded word dropped: no random numbers involved, so any placement of dropout on the
embeddings agrees); and train with dropout 0.5 after ``torch.manual_seed(seed)``, which
pins down the instruction "drop out the embedded words ``(B, T, E)`` with ``self.drop``".
"""

from __future__ import annotations

import torch

from t2ilib.damsm.losses import func_attention, matching_loss, sentence_loss
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig


def _captions(g: torch.Generator, cases: int, batch: int, max_len: int, vocab: int
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(cases, batch, max_len)`` ids padded with 0 and ``(cases, batch)`` lengths; each
    case holds a caption of length 1, and all but the last one of full length (in the last,
    every caption is shorter than ``max_len``: the words must keep the width ``max_len``)."""
    lengths = torch.randint(1, max_len + 1, (cases, batch), generator=g)
    lengths[:, 0], lengths[:, 1] = max_len, 1
    lengths[-1] = lengths[-1].clamp(max=max_len - 2)
    tokens = torch.randint(1, vocab, (cases, batch, max_len), generator=g)
    return tokens * (torch.arange(max_len) < lengths[..., None]), lengths


def _text_encoder() -> dict:
    g = torch.Generator().manual_seed(20)
    vocab, embed, hidden = 20, 7, 10
    sizes = {"vocab_size": vocab, "embed_dim": embed, "hidden_dim": hidden}
    reference = TextEncoder(TextEncoderConfig(**sizes, dropout=0.5)).double()
    with torch.no_grad():
        for param in reference.parameters():  # larger than the default init: outputs of order 1
            param.uniform_(-0.6, 0.6, generator=g)
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    tokens, lengths = _captions(g, 4, 6, 9, vocab)
    seeds = [1000 + k for k in range(len(tokens))]
    outputs: dict[str, list[torch.Tensor]] = {}
    for mode, p in (("eval", 0.5), ("dropout_one", 1.0), ("train", 0.5)):
        encoder = TextEncoder(TextEncoderConfig(**sizes, dropout=p)).double()
        encoder.load_state_dict(state)
        encoder.train(mode != "eval")
        words, sentences = [], []
        for k in range(len(tokens)):
            if mode == "train":
                torch.manual_seed(seeds[k])
            with torch.no_grad():
                w, s = encoder(tokens[k], lengths[k])
            words.append(w)
            sentences.append(s)
        outputs[f"{mode}_words"] = torch.stack(words)  # (cases, B, D, T)
        outputs[f"{mode}_sentence"] = torch.stack(sentences)  # (cases, B, D)
    return {"inputs": {**sizes, "state": state, "tokens": tokens, "lengths": lengths,
                       "seeds": seeds},
            "outputs": {**outputs, "mistakes": _encoder_mistakes(outputs)}}


#: The hidden test's names of the encoder's modes: ``f"{label}: {part} of batch {k}"``.
MODES = {"eval": "eval mode", "dropout_one": "train mode, dropout 1",
         "train": "train mode, dropout 0.5"}


def _encoder_mistakes(outputs: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """Likely wrong answers, as rearranged correct outputs: train mode giving eval mode's
    outputs (no dropout), and sentences that are [backward; forward], the padded output's
    last column, or ``h_n`` flattened with the batch and direction axes mixed."""
    cases, half = len(outputs["eval_words"]), outputs["eval_sentence"].shape[-1] // 2

    def named(part: str, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {f"{MODES[m]}: {part} of batch {k}": values[m][k] for m in values
                for k in range(cases)}

    sentences = {m: outputs[f"{m}_sentence"] for m in MODES}
    words = {m: outputs[f"{m}_words"] for m in MODES}
    h_n = {m: torch.stack(s.split(half, dim=-1), dim=1) for m, s in sentences.items()}
    return {
        "in train mode the outputs are eval mode's: no dropout reaches the embedded words "
        "(apply self.drop to embed(captions), before packing)":
            {**named("words", {m: words["eval"] for m in ("train", "dropout_one")}),
             **named("sentence", {m: sentences["eval"] for m in ("train", "dropout_one")})},
        "the sentence is [backward; forward]: the forward direction's final state (h_n[0]) "
        "comes first": named("sentence", {m: s.roll(half, dims=-1)
                                          for m, s in sentences.items()}),
        "the sentence is the padded output's last column (zeros after a short caption, and "
        "the backward direction's first step): use the final states h_n":
            named("sentence", {m: w[..., -1] for m, w in words.items()}),
        "the sentence mixes captions and directions: h_n is (2, B, D/2), bring the batch "
        "first (transpose) before flattening":
            named("sentence", {m: h.flatten(1).reshape(h.shape[0], h.shape[2], -1)
                               for m, h in h_n.items()})}


def _func_attention() -> dict:
    g = torch.Generator().manual_seed(21)
    cases, n_caps, n_imgs, dim, max_len, n_regions = 5, 4, 3, 8, 7, 10
    words = torch.randn(cases, n_caps, 1, dim, max_len, generator=g, dtype=torch.float64)
    regions = torch.randn(cases, 1, n_imgs, dim, n_regions, generator=g, dtype=torch.float64)
    lengths = torch.randint(1, max_len + 1, (cases, n_caps), generator=g)
    lengths[:, 0] = 2  # short captions: padding matters most there
    mask = (torch.arange(max_len) < lengths[..., None])[:, :, None]  # (cases, Bc, 1, T)
    gamma1 = (1.0 + 9.0 * torch.rand(cases, generator=g, dtype=torch.float64)).tolist()
    contexts, attns = zip(*(func_attention(words[k], regions[k], mask[k], gamma1[k])
                            for k in range(cases)))
    # likely mistakes, as the correct attention on other inputs: every word a real one (no
    # padding mask), and the padded words zero vectors (their scores 0 instead of -inf)
    everyone = torch.ones_like(mask)
    mistakes = {
        "padded words (mask False) get attention: set their scores to -inf before Eq. 8's "
        "softmax over the words": (words, everyone),
        "padded words score 0 instead of -inf: they still take part in Eq. 8's softmax over "
        "the words": (words * mask[:, :, :, None], everyone)}
    return {"inputs": {"words": words, "regions": regions, "mask": mask, "gamma1": gamma1},
            "outputs": {"context": torch.stack(contexts), "attn": torch.stack(attns),
                        "mistakes": {hint: _attention_named(w, regions, m, gamma1, mask)
                                     for hint, (w, m) in mistakes.items()}}}


def _attention_named(words: torch.Tensor, regions: torch.Tensor, mask: torch.Tensor,
                     gamma1: list[float], valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """The correct attention's outputs at the real words (``valid``) in the hidden test's
    names: ``alpha, case k`` ``(words, L)`` and ``contexts, case k`` ``(words, D)``."""
    named = {}
    for k, gamma in enumerate(gamma1):
        context, attn = func_attention(words[k], regions[k], mask[k], gamma)
        real = valid[k].expand(attn.shape[:-1])
        named[f"alpha, case {k}"] = attn[real]
        named[f"contexts, case {k}"] = context.transpose(-1, -2)[real]
    return named


def _matching_loss() -> dict:
    g = torch.Generator().manual_seed(22)
    cases, batch, dim = 8, 6, 12
    scores = torch.randn(cases, batch, batch, generator=g, dtype=torch.float64)
    class_ids = torch.randint(0, 3, (cases, batch), generator=g)
    class_ids[0] = torch.arange(batch)  # every pair a negative
    class_ids[1] = torch.tensor([5, 5, 5, 5, 6, 6])  # few negatives left
    gamma3 = (1.0 + 10.0 * torch.rand(cases, generator=g, dtype=torch.float64)).tolist()
    codes = torch.randn(cases, batch, dim, generator=g, dtype=torch.float64)
    sentences = torch.randn(cases, batch, dim, generator=g, dtype=torch.float64)
    plain = [matching_loss(scores[k], None, gamma3[k]) for k in range(cases)]
    masked = [matching_loss(scores[k], class_ids[k], gamma3[k]) for k in range(cases)]
    sent = [sentence_loss(codes[k], sentences[k], class_ids[k]) for k in range(cases)]
    return {"inputs": {"scores": scores, "class_ids": class_ids, "gamma3": gamma3,
                       "codes": codes, "sentences": sentences},
            "outputs": {"l0": torch.stack([p[0] for p in plain]),  # (cases,)
                        "l1": torch.stack([p[1] for p in plain]),
                        "l0_classes": torch.stack([m[0] for m in masked]),
                        "l1_classes": torch.stack([m[1] for m in masked]),
                        "s0": torch.stack([s[0] for s in sent]),
                        "s1": torch.stack([s[1] for s in sent]),
                        "mistakes": _matching_mistakes(scores, class_ids, plain, masked)}}


def _matching_mistakes(scores: torch.Tensor, class_ids: torch.Tensor, plain: list, masked: list
                       ) -> dict[str, dict[str, torch.Tensor]]:
    """Likely wrong answers in the hidden test's names (``L0, case k``; ``L1 with class ids,
    case k``): the correct losses of the transposed scores (L0 and L1 swapped), L0 twice,
    the correct losses with gamma3 = 1 and without class ids."""
    def named(losses: list, classes: bool) -> dict[str, torch.Tensor]:
        tail = " with class ids" if classes else ""
        return {f"L{i}{tail}, case {k}": pair[i] for k, pair in enumerate(losses)
                for i in (0, 1)}

    cases = range(len(scores))
    return {
        "L0 and L1 are swapped: L0 is the cross-entropy of each row (image a picks its "
        "caption), L1 of each column":
            {**named([(p[1], p[0]) for p in plain], False),
             **named([(m[1], m[0]) for m in masked], True)},
        "L1 equals L0: L1 is the cross-entropy of each COLUMN (transpose the logits)":
            {**named([(p[0], p[0]) for p in plain], False),
             **named([(m[0], m[0]) for m in masked], True)},
        "the scores are not multiplied by gamma3":
            {**named([matching_loss(scores[k], None, 1.0) for k in cases], False),
             **named([matching_loss(scores[k], class_ids[k], 1.0) for k in cases], True)},
        "the class ids change nothing: mask the same-class pairs a != b with -inf":
            named(plain, True)}


def build() -> dict:
    return {"nb02_text_encoder": _text_encoder(),
            "nb02_func_attention": _func_attention(),
            "nb02_matching_loss": _matching_loss()}
