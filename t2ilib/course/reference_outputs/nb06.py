"""Reference outputs of notebook 06's exercises: the hinge losses, the matching-aware D loss
and MA-GP.

The D of the last two is :class:`CheckD`, a tiny smooth conditional discriminator that the
hidden tests define again (SSA-GAN's own D has an exercise of its own in notebook 05, so a
student's library may not have it). Smooth (tanh), so that MA-GP's penalty depends on D's
inputs: taking the gradient at the inputs themselves instead of detached copies then puts a
gradient on them, which the tests see.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from t2ilib.ssagan.losses import (
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


def _hinge(seed: int) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    logits = [(2 * torch.randn(n, generator=g)).requires_grad_(True) for n in (6, 6, 5)]
    terms = discriminator_hinge_loss(*logits)
    terms.total.backward()
    return ({"real": logits[0], "fake": logits[1], "mismatch": logits[2]},
            {"terms": list(terms), "grads": [t.grad for t in logits],
             "hinge_real": hinge_real(logits[0]), "hinge_fake": hinge_fake(logits[1])})


def build() -> dict:
    hinge = [_hinge(seed) for seed in range(5)]

    g = torch.Generator().manual_seed(8)
    d, state = _random_d(g)
    real = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    fake = torch.randn(5, 3, 8, 8, generator=g, dtype=torch.float64)
    sentence = torch.randn(5, 5, generator=g, dtype=torch.float64)
    terms = discriminator_adversarial_loss(d, real, fake, sentence)
    terms.total.backward()
    d_loss = {"inputs": {"state": state, "real": real, "fake": fake, "sentence": sentence},
              "outputs": {"terms": list(terms), "grads": [p.grad for p in d.parameters()]}}

    grads = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        gx = torch.randn(4, 3, 2, 2, generator=g, dtype=torch.float64)
        gs = torch.randn(4, 6, generator=g, dtype=torch.float64)
        k, p = 0.5 + torch.rand((), generator=g).item(), float(seed + 1)
        grads.append(({"grad_images": gx, "grad_sentence": gs, "k": k, "p": p},
                      ma_gp_from_grads(gx, gs, k, p)))
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
    ma_gp = {"inputs": {"from_grads": [i for i, _ in grads],
                        "flat": {"grad_images": gx, "grad_sentence": gs},
                        "state": state, "images": x, "sentence": s},
             "outputs": {"from_grads": [o for _, o in grads],
                         "flat": flat, "flat_grads": list(flat_grads),
                         "penalty": penalty, "grads": [p.grad for p in d.parameters()]}}
    return {
        "nb06_hinge_losses": {"inputs": {"cases": [i for i, _ in hinge]},
                              "outputs": {"cases": [o for _, o in hinge]}},
        "nb06_matching_aware_d_loss": d_loss,
        "nb06_ma_gp": ma_gp,
    }
