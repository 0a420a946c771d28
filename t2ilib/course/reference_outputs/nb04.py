"""Reference outputs of notebook 04's exercises: ``SemanticSpatialAffine.forward`` and
``MaskPredictor``."""

from __future__ import annotations

import copy

import torch
from torch import nn

from t2ilib.ssagan.ssacn import MaskPredictor, SemanticSpatialAffine


def _randomise(module: nn.Module, g: torch.Generator) -> dict:
    """Draw every parameter from N(0, 0.5^2) (the zero-initialised layers too); the state."""
    with torch.no_grad():
        for param in module.parameters():
            param.normal_(0, 0.5, generator=g)
    return {k: v.clone() for k, v in module.state_dict().items()}


#: The hidden test's names of the affine's three calls (soft mask, no mask, binary mask).
MASK_KINDS = ("a soft mask", "no mask", "a binary mask")


def _affine_outputs(affine: SemanticSpatialAffine, x: torch.Tensor, s: torch.Tensor,
                    masks: list[torch.Tensor | None]) -> dict[str, list[torch.Tensor]]:
    """The outputs for each mask in training mode, then in eval mode."""
    with torch.no_grad():
        train = [affine(x, s, m) for m in masks]
        affine.eval()
        return {"train": train, "eval": [affine(x, s, m) for m in masks]}


def _unnormalised(module: nn.Module, norm: nn.BatchNorm2d) -> nn.Module:
    """``module`` with ``norm`` frozen at mean 0, variance 1 - eps (eval mode): no
    normalisation, as if the BN were left out."""
    with torch.no_grad():
        norm.running_mean.zero_()
        norm.running_var.fill_(1.0 - norm.eps)
    norm.eval()
    return module


def _affine_mistakes(affine: SemanticSpatialAffine, x: torch.Tensor, s: torch.Tensor,
                     masks: list[torch.Tensor | None]) -> dict[str, dict[str, list[torch.Tensor]]]:
    """Likely wrong answers, as the correct layer's outputs: with an unused BN, with a zero
    mask in place of ``None``; batch statistics in eval mode give the training outputs."""
    plain = copy.deepcopy(affine)
    train = _affine_outputs(copy.deepcopy(affine), x, s, masks)["train"]
    zero = [torch.zeros_like(masks[0]) if m is None else m for m in masks]
    return {
        "x is not normalised: apply self.norm (BN without its own affine) first":
            _affine_outputs(_unnormalised(plain, plain.norm), x, s, masks),
        "with no mask (None) the output is BN(x) alone: None means m = 1, the plain "
        "conditional BN": {m: [v[1]] for m, v in _affine_outputs(
            copy.deepcopy(affine), x, s, zero).items()},
        "eval mode gives the training-mode outputs: use self.norm, whose running statistics "
        "serve in eval mode": {"eval": train}}


def build() -> dict:
    """The affine: three random layers ``(C=6, D=7, hidden 5)``, each called in training
    mode with a soft mask, no mask and a binary mask, then in eval mode with the same three.
    The predictor ``(C=6, hidden 7)``: one call in training mode, then one in eval mode.
    Likely mistakes are stored in the hidden tests' names (``eval mode, no mask, layer 0``)."""
    cases, outputs, mistakes = [], [], {}
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        affine = SemanticSpatialAffine(6, cond_dim=7, hidden_dim=5)
        state = _randomise(affine, g)
        x, s = torch.randn(5, 6, 4, 7, generator=g), torch.randn(5, 7, generator=g)
        soft = torch.rand(5, 1, 4, 7, generator=g)
        masks = [soft, None, (soft > 0.5).float()]
        for hint, wrong in _affine_mistakes(affine, x, s, masks).items():
            kinds = MASK_KINDS if len(next(iter(wrong.values()))) == 3 else ("no mask",)
            mistakes.setdefault(hint, {}).update(
                {f"{mode} mode, {kind}, layer {seed}": v for mode, values in wrong.items()
                 for kind, v in zip(kinds, values)})
        cases.append({"state": state, "x": x, "s": s, "masks": masks})
        outputs.append(_affine_outputs(affine, x, s, masks))

    g = torch.Generator().manual_seed(6)
    predictor = MaskPredictor(6, hidden=7)
    state = _randomise(predictor, g)
    x = torch.randn(3, 6, 5, 5, generator=g)
    with torch.no_grad():
        train = predictor(x)
        predictor.eval()
        evaluated = predictor(x)
    sigmoid = {"training mode": train.sigmoid(), "eval mode": evaluated.sigmoid()}
    return {
        "nb04_semantic_spatial_affine": {"inputs": {"cases": cases},
                                         "outputs": {"cases": outputs, "mistakes": mistakes}},
        "nb04_mask_predictor": {
            "inputs": {"state": state, "x": x, "in_ch": 6, "hidden": 7},
            "outputs": {"train": train, "eval": evaluated, "mistakes": {
                "the outputs are the sigmoid of the reference: return the raw mask logits "
                "(the SSACN block takes the sigmoid itself)": sigmoid}}},
    }
