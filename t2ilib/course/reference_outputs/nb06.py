"""Reference outputs of notebook 06's exercises: the hinge losses, the matching-aware D loss
and MA-GP.

The D of the last two is :class:`CheckD`, a tiny smooth conditional discriminator that the
hidden tests define again (SSA-GAN's own D has an exercise of its own in notebook 05, so a
student's library may not have it). Smooth (tanh), so that MA-GP's penalty depends on D's
inputs: taking the gradient at the inputs themselves instead of detached copies then puts a
gradient on them, which the tests see.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t2ilib.ssagan.losses import (
    HingeTerms,
    discriminator_adversarial_loss,
    discriminator_hinge_loss,
    hinge_fake,
    hinge_real,
    ma_gp_from_grads,
    matching_aware_gp,
)


class CheckD(nn.Module):
    """``features``: ``(B, 3, 8, 8) -> (B, 4, 4, 4)``; ``logits``: ``(B, 4, 4, 4), (B, 5) ->
    (B,)``; ``forward`` chains them."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.head = nn.Sequential(nn.Linear(4 * 16 + 5, 8), nn.Tanh(), nn.Linear(8, 1))

    def features(self, images: Tensor) -> Tensor:
        return F.avg_pool2d(torch.tanh(self.conv(images)), 2)

    def logits(self, features: Tensor, sentence: Tensor) -> Tensor:
        return self.head(torch.cat([features.flatten(1), sentence], dim=1)).squeeze(1)

    def forward(self, images: Tensor, sentence: Tensor) -> Tensor:
        return self.logits(self.features(images), sentence)


def _random_d(g: torch.Generator) -> tuple[CheckD, dict]:
    """A float64 :class:`CheckD` with N(0, 0.5^2) weights (gradients of order 1), and its state."""
    d = CheckD().double()
    with torch.no_grad():
        for param in d.parameters():
            param.normal_(0, 0.5, generator=g)
    return d, {k: v.clone() for k, v in d.state_dict().items()}


#: The logits' names in the hidden tests (the order of ``discriminator_hinge_loss``'s arguments).
LOGITS = ("real", "fake", "mismatch")


def _hinge_named(logits: list[Tensor], case: int, shifts: tuple[float, float, float] = (0, 0, 0),
                 signs: tuple[float, float, float] = (1, 1, 1)) -> dict[str, Tensor]:
    """The correct losses and gradients of logits ``sign * l + shift`` (the gradient taken
    with respect to ``l``), in the hidden test's names (``HingeTerms.real, case 0``)."""
    leaves = [t.detach().clone().requires_grad_(True) for t in logits]
    moved = [sign * t + shift for t, sign, shift in zip(leaves, signs, shifts)]
    terms = discriminator_hinge_loss(*moved)
    grads = torch.autograd.grad(terms.total, leaves)
    return {**{f"HingeTerms.{n}, case {case}": v for n, v in zip(HingeTerms._fields, terms)},
            **{f"dL_D/d({n} logits), case {case}": g for n, g in zip(LOGITS, grads)},
            f"hinge_real, case {case}": hinge_real(moved[0]).detach(),
            f"hinge_fake, case {case}": hinge_fake(moved[1]).detach()}


def _hinge(seed: int) -> tuple[dict, dict, dict]:
    """One case: inputs, outputs, and the likely mistakes' outputs as the correct losses of
    moved logits: hinge_real without the margin is hinge_real(D + 1); hinge_fake with
    hinge_real's sign is hinge_fake(-D); mismatched pairs scored as real, hinge_fake(-D)."""
    g = torch.Generator().manual_seed(seed)
    logits = [(2 * torch.randn(n, generator=g)).requires_grad_(True) for n in (6, 6, 5)]
    terms = discriminator_hinge_loss(*logits)
    terms.total.backward()
    right = _hinge_named(logits, seed)
    swapped = {f"HingeTerms.{a}, case {seed}": right[f"HingeTerms.{b}, case {seed}"]
               for a, b in (("real", "fake"), ("fake", "real"))}
    mismatch_real = {k: v for k, v in _hinge_named(logits, seed, signs=(1, 1, -1)).items()
                     if not k.startswith("hinge_")}
    mistakes = {
        "hinge_real has no margin: it is max(0, 1 - D), so D pushes real pairs above +1":
            _hinge_named(logits, seed, shifts=(1, 0, 0)),
        "hinge_fake has hinge_real's sign: it is max(0, 1 + D), so D pushes fakes below -1":
            _hinge_named(logits, seed, signs=(1, -1, -1)),
        "the mismatched pairs are scored as real: D must reject them (hinge_fake)":
            mismatch_real,
        "HingeTerms.real and .fake are swapped: the fields are (total, real, fake, mismatch)":
            swapped}
    return ({"real": logits[0], "fake": logits[1], "mismatch": logits[2]},
            {"terms": list(terms), "grads": [t.grad for t in logits],
             "hinge_real": hinge_real(logits[0]), "hinge_fake": hinge_fake(logits[1])}, mistakes)


def _d_loss_named(d: CheckD, real: Tensor, fake: Tensor, sentence: Tensor) -> dict[str, Tensor]:
    """The correct terms and D's gradients in the hidden test's names."""
    d = copy.deepcopy(d)
    d.zero_grad()
    terms = discriminator_adversarial_loss(d, real, fake, sentence)
    terms.total.backward()
    return {**{f"HingeTerms.{n}": v.detach() for n, v in zip(HingeTerms._fields, terms)},
            **{f"dL_D/d{n}": p.grad for n, p in d.named_parameters()}}


def _d_loss_mistakes(d: CheckD, real: Tensor, fake: Tensor, sentence: Tensor) -> dict:
    """Likely wrong answers as the correct loss of reordered batches (each term is a mean
    over pairs): fake b scored with sentence b - 1 is the correct loss of the fakes rolled
    by one; image i + 1 with sentence i, that of the three batches reversed."""
    return {"the fakes are scored with another sample's sentence: pair fake b with sentence "
            "b, its own": _d_loss_named(d, real, fake.roll(-1, 0), sentence),
            "the mismatched pairs are image i + 1 with sentence i: use mismatched_pairs "
            "(image i, sentence i + 1)": _d_loss_named(d, real.flip(0), fake.flip(0),
                                                       sentence.flip(0))}


def build() -> dict:
    hinge = [_hinge(seed) for seed in range(5)]
    hinge_mistakes: dict[str, dict[str, Tensor]] = {}
    for _, _, wrong in hinge:
        for hint, values in wrong.items():
            hinge_mistakes.setdefault(hint, {}).update(values)

    g = torch.Generator().manual_seed(8)
    d, state = _random_d(g)
    real = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    sentence = torch.randn(5, 5, generator=g, dtype=torch.float64)
    d_loss_mistakes = _d_loss_mistakes(d, real, fake, sentence)
    terms = discriminator_adversarial_loss(d, real, fake, sentence)
    terms.total.backward()
    d_loss = {"inputs": {"state": state, "real": real, "fake": fake, "sentence": sentence},
              "outputs": {"terms": list(terms), "grads": [p.grad for p in d.parameters()],
                          "mistakes": d_loss_mistakes}}

    grads = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        gx = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
        gs = torch.randn(4, 6, generator=g, dtype=torch.float64)
        k, p = 0.5 + torch.rand((), generator=g).item(), float(seed + 1)
        grads.append(({"grad_images": gx, "grad_sentence": gs, "k": k, "p": p},
                      ma_gp_from_grads(gx, gs, k, p), ma_gp_from_grads(gx, gs, k, 2 * p)))
    # a sample whose gradient is exactly zero (D flat there): the penalty's own gradient
    # must be finite (0), which computing ||g||^p through a square root breaks (NaN)
    gx = torch.randn(3, 3, 2, 2, generator=g, dtype=torch.float64)
    gs = torch.randn(3, 6, generator=g, dtype=torch.float64)
    gx[1], gs[1] = 0.0, 0.0
    gx.requires_grad_(True)
    gs.requires_grad_(True)
    flat = ma_gp_from_grads(gx, gs, 2.0, 6.0)
    flat_grads = torch.autograd.grad(flat, (gx, gs))

    d, state = _random_d(g)
    x = torch.randn(6, 3, 8, 8, generator=g, dtype=torch.float64)
    s = torch.randn(6, 5, generator=g, dtype=torch.float64)
    penalty = matching_aware_gp(d, x, s)
    penalty.backward()
    squared = {f"ma_gp_from_grads(k={i['k']:.3f}, p={i['p']:g})": o for i, _, o in grads}
    ma_gp = {"inputs": {"from_grads": [i for i, _, _ in grads],
                        "flat": {"grad_images": gx, "grad_sentence": gs},
                        "state": state, "images": x, "sentence": s},
             "outputs": {"from_grads": [o for _, o, _ in grads],
                         "flat": flat, "flat_grads": list(flat_grads),
                         "penalty": penalty, "grads": [p.grad for p in d.parameters()],
                         "mistakes": {"the penalty is ||g||^(2p): (||g||^2)^(p/2) is ||g||^p, "
                                      "the norm's square already holds one power 2": squared}}}
    return {
        "nb06_hinge_losses": {"inputs": {"cases": [i for i, _, _ in hinge]},
                              "outputs": {"cases": [o for _, o, _ in hinge],
                                          "mistakes": hinge_mistakes}},
        "nb06_matching_aware_d_loss": d_loss,
        "nb06_ma_gp": ma_gp,
    }
