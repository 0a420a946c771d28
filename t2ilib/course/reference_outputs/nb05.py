"""Reference outputs of notebook 05's exercise: ``Discriminator.logits``."""

from __future__ import annotations

import torch

from t2ilib.ssagan.model import Discriminator, SSAGANConfig


def build() -> dict:
    """Two 32 px discriminators (``ndf, sentence_dim`` = 2, 6 and 1, 3), random features and
    sentences (a batch of 4, and of 1), the logits of the head."""
    cases, outputs = [], []
    g = torch.Generator().manual_seed(7)
    for ndf, dim, batch in ((2, 6, 4), (1, 3, 1)):
        d = Discriminator(SSAGANConfig(resolution=32, ndf=ndf, sentence_dim=dim))
        features = torch.randn(batch, 16 * ndf, 4, 4, generator=g)
        sentence = torch.randn(batch, dim, generator=g)
        with torch.no_grad():
            logits = d.logits(features, sentence)
        cases.append({"ndf": ndf, "sentence_dim": dim, "state": d.state_dict(),
                      "features": features, "sentence": sentence})
        outputs.append({"logits": logits})
    return {"nb05_discriminator_head": {"inputs": {"cases": cases},
                                        "outputs": {"cases": outputs}}}
