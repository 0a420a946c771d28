"""Reference outputs of notebook 05's exercise: ``Discriminator.logits``."""

from __future__ import annotations

import copy

import torch

from t2ilib.ssagan.model import Discriminator, SSAGANConfig


def _sentence_first(d: Discriminator, dim: int) -> Discriminator:
    """A copy whose correct head on ``[features, sentence]`` equals ``d``'s head on
    ``[sentence, features]`` (the first conv's input channels rotated by ``dim``): the
    likely mistake of concatenating the sentence first."""
    wrong = copy.deepcopy(d)
    with torch.no_grad():
        weight = d.head[0].weight
        wrong.head[0].weight.copy_(torch.cat([weight[:, dim:], weight[:, :dim]], dim=1))
    return wrong


def build() -> dict:
    """Two 32 px discriminators (``ndf, sentence_dim`` = 2, 6 and 1, 3), random features and
    sentences (a batch of 4, and of 1), the logits of the head, and those of a likely
    mistake in the hidden test's names (``logits of a batch of 4``)."""
    cases, outputs, first = [], [], {}
    g = torch.Generator().manual_seed(7)
    for ndf, dim, batch in ((2, 6, 4), (1, 3, 1)):
        d = Discriminator(SSAGANConfig(resolution=32, ndf=ndf, sentence_dim=dim))
        features = torch.randn(batch, 16 * ndf, 4, 4, generator=g)
        sentence = torch.randn(batch, dim, generator=g)
        with torch.no_grad():
            logits = d.logits(features, sentence)
            first[f"logits of a batch of {batch}"] = _sentence_first(d, dim).logits(features,
                                                                                   sentence)
        cases.append({"ndf": ndf, "sentence_dim": dim, "state": d.state_dict(),
                      "features": features, "sentence": sentence})
        outputs.append({"logits": logits})
    mistakes = {"the head reads [sentence, features]: concatenate the features first, then "
                "the tiled sentence (the weights expect that order)": first}
    return {"nb05_discriminator_head": {"inputs": {"cases": cases},
                                        "outputs": {"cases": outputs, "mistakes": mistakes}}}
