"""Reference outputs of notebook 04's exercises: ``SemanticSpatialAffine.forward`` and
``MaskPredictor``."""

from __future__ import annotations

import torch
from torch import nn

from t2ilib.ssagan.ssacn import MaskPredictor, SemanticSpatialAffine


def _randomise(module: nn.Module, g: torch.Generator) -> dict:
    """Draw every parameter from N(0, 0.5^2) (the zero-initialised layers too); the state."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0, 0.5, generator=g)
    return {k: v.clone() for k, v in module.state_dict().items()}


def build() -> dict:
    """The affine: three random layers ``(C=6, D=7, hidden 5)``, each called in training
    mode with a soft mask, no mask and a binary mask, then in eval mode with the same three.
    The predictor ``(C=6, hidden 7)``: one call in training mode, then one in eval mode."""
    cases, outputs = [], []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        affine = SemanticSpatialAffine(6, cond_dim=7, hidden_dim=5)
        state = _randomise(affine, g)
        x, s = torch.randn(5, 6, 4, 7, generator=g), torch.randn(5, 7, generator=g)
        soft = torch.rand(5, 1, 4, 7, generator=g)
        masks = [soft, None, (soft > 0.5).float()]
        with torch.no_grad():
            train = [affine(x, s, m) for m in masks]
            affine.eval()
            evaluated = [affine(x, s, m) for m in masks]
        cases.append({"state": state, "x": x, "s": s, "masks": masks})
        outputs.append({"train": train, "eval": evaluated})

    g = torch.Generator().manual_seed(6)
    predictor = MaskPredictor(6, hidden=7)
    state = _randomise(predictor, g)
    x = torch.randn(3, 6, 5, 5, generator=g)
    with torch.no_grad():
        train = predictor(x)
        predictor.eval()
        evaluated = predictor(x)
    return {
        "nb04_semantic_spatial_affine": {"inputs": {"cases": cases},
                                         "outputs": {"cases": outputs}},
        "nb04_mask_predictor": {"inputs": {"state": state, "x": x, "in_ch": 6, "hidden": 7},
                                "outputs": {"train": train, "eval": evaluated}},
    }
