"""Reference outputs of notebook 03's exercise: ``ConditionalBatchNorm2d.forward``."""

from __future__ import annotations

import torch

from t2ilib.ssagan.blocks import ConditionalBatchNorm2d


def build() -> dict:
    """Three random layers ``(C=5, D=7)``: the output in training mode (batch statistics),
    then in eval mode (the running statistics that one training call left)."""
    cases, outputs = [], []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        cbn = ConditionalBatchNorm2d(5, cond_dim=7)
        with torch.no_grad():
            for param in cbn.parameters():
                param.normal_(0, 0.5, generator=g)
        state = {k: v.clone() for k, v in cbn.state_dict().items()}
        x, s = 2 + 3 * torch.randn(6, 5, 4, 3, generator=g), torch.randn(6, 7, generator=g)
        with torch.no_grad():
            train = cbn(x, s)
            cbn.eval()
            evaluated = cbn(x, s)
        cases.append({"state": state, "x": x, "s": s})
        outputs.append({"train": train, "eval": evaluated})
    return {"nb03_conditional_bn": {"inputs": {"cases": cases}, "outputs": {"cases": outputs}}}
