"""Reference outputs of notebook 03's exercise: ``ConditionalBatchNorm2d.forward``.

The likely mistakes are stored as the correct layer's outputs with other weights (the hidden
test's hints): ``1 + gamma`` with a bias lowered by 1 is ``gamma`` alone, swapped weights
swap gamma and beta, a BN frozen at mean 0 and variance 1 normalises nothing; and batch
statistics in eval mode give the training-mode outputs.
"""

from __future__ import annotations

import copy

import torch

from t2ilib.ssagan.blocks import ConditionalBatchNorm2d


def _train_then_eval(cbn: ConditionalBatchNorm2d, x: torch.Tensor, s: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """The outputs in training mode, then in eval mode (the running statistics it left)."""
    with torch.no_grad():
        train = cbn(x, s)
        cbn.eval()
        return train, cbn(x, s)


def _wrong_layers(cbn: ConditionalBatchNorm2d) -> dict[str, ConditionalBatchNorm2d]:
    """Copies of a fresh layer whose correct outputs equal a likely wrong answer's."""
    plain_scale, swapped, unnormalised = (copy.deepcopy(cbn) for _ in range(3))
    with torch.no_grad():
        plain_scale.gamma.bias.sub_(1.0)
        swapped.gamma.load_state_dict(cbn.beta.state_dict())
        swapped.beta.load_state_dict(cbn.gamma.state_dict())
        unnormalised.norm.running_var.fill_(1.0 - unnormalised.norm.eps)
        unnormalised.norm.running_mean.zero_()
    unnormalised.norm.eval()  # stays in eval mode: x / sqrt(1 - eps + eps) = x
    return {"the scale is gamma(s), not 1 + gamma(s): the layer must start as a plain BN":
            plain_scale,
            "gamma and beta are swapped: (1 + gamma(s)) scales BN(x), beta(s) shifts it": swapped,
            "x is not normalised: apply self.norm (BN without its own affine) first":
            unnormalised}


def build() -> dict:
    """Three random layers ``(C=5, D=7)``: the output in training mode (batch statistics),
    then in eval mode (the running statistics that one training call left); and the outputs
    of likely mistakes, named as the hidden test names them (``train mode, layer 0``)."""
    cases, outputs, mistakes = [], [], {}
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        cbn = ConditionalBatchNorm2d(5, cond_dim=7)
        with torch.no_grad():
            for param in cbn.parameters():
                param.normal_(0, 0.5, generator=g)
        state = {k: v.clone() for k, v in cbn.state_dict().items()}
        x, s = 2 + 3 * torch.randn(6, 5, 4, 3, generator=g), torch.randn(6, 7, generator=g)
        wrong = _wrong_layers(cbn)
        train, evaluated = _train_then_eval(cbn, x, s)
        cases.append({"state": state, "x": x, "s": s})
        outputs.append({"train": train, "eval": evaluated})
        for hint, layer in wrong.items():
            values = dict(zip(("train", "eval"), _train_then_eval(layer, x, s)))
            mistakes.setdefault(hint, {}).update(
                {f"{mode} mode, layer {seed}": v for mode, v in values.items()})
        mistakes.setdefault("eval mode gives the training-mode outputs: use self.norm, whose "
                            "running statistics serve in eval mode", {})[
            f"eval mode, layer {seed}"] = train
    return {"nb03_conditional_bn": {"inputs": {"cases": cases},
                                    "outputs": {"cases": outputs, "mistakes": mistakes}}}
