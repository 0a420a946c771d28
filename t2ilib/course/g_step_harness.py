"""The harness of notebook 07's exercise tests: one G step of SSA-GAN on tiny networks.

:func:`run_g_step` is shared by the notebook's visible and hidden tests and by the teacher's
builder of the stored outputs (``t2ilib/course/reference_outputs/nb07.py``); it takes the step
as an argument and calls no exercised function itself. It builds
tiny networks from a seed (G and D at 32 px with ``ngf = ndf = 4``, every residual gate at 1 so
every weight gets a gradient; a small-CNN DAMSM image encoder), takes one G step with **plain SGD
at learning rate 1** (so the change of each weight *is* the gradient the step used; Adam's first
step would hide a wrong scale), and returns the two losses and that change: the norm of each
weight's change, and the change itself of every tensor of at most ``SMALL`` values (gates,
biases, normalisation weights), which keeps the stored file small. G's stale gradients are set to
3 before the step: a step that does not start from zeroed gradients shows in the change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch

from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
from t2ilib.ssagan.model import Discriminator, Generator, SSAGANConfig
from t2ilib.ssagan.recipes import SSAGANTrainConfig
from t2ilib.ssagan.step import Batch, Nets
from t2ilib.ssagan.train import set_gates

MODEL = SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=16)
ENCODER = SmallCNNConfig(embed_dim=16, width=4)
SMALL = 512  # weight tensors up to this size are stored whole


def run_g_step(step: Callable[..., tuple[torch.Tensor, torch.Tensor]],
               inputs: dict[str, Any]) -> dict[str, Any]:
    """One call of ``step`` (``g_step``'s signature) on the stored networks and batch.

    Returns ``{"g_adv": (), "g_damsm": (), "update_norm": {name: ()}, "update": {name:
    tensor}, "d_grads": bool}``: the update is ``before - after`` of each G weight (the
    gradient, with SGD at lr 1), whole for tensors of at most ``SMALL`` values; ``d_grads``
    says whether any weight of D received a gradient.
    """
    model, encoder = SSAGANConfig(**inputs["model"]), SmallCNNConfig(**inputs["encoder"])
    torch.manual_seed(inputs["init_seed"])
    G, D, image_encoder = Generator(model), Discriminator(model), SmallCNNEncoder(encoder)
    set_gates(G, 1.0)
    set_gates(D, 1.0)
    G, D, image_encoder = G.double(), D.double(), image_encoder.double()  # float64: the sums
    # of a gradient do not depend on the machine's thread count
    image_encoder.eval().requires_grad_(False)  # the frozen DAMSM of main.py
    z, words, sentence = (inputs[k].double() for k in ("z", "words", "sentence"))
    fake, _ = G(z, sentence)  # (B, 3, 32, 32), G in train mode
    before = {name: p.detach().clone() for name, p in G.named_parameters()}
    for p in G.parameters():
        p.grad = torch.full_like(p, 3.0)  # stale gradients: the step must clear them
    batch = Batch(images=fake.detach(), captions=torch.zeros(0, dtype=torch.long),
                  lengths=inputs["lengths"], class_ids=inputs["class_ids"], z=z)
    g_adv, g_damsm = step(Nets(G=G, D=D, text_encoder=None, image_encoder=image_encoder),
                          torch.optim.SGD(G.parameters(), lr=1.0), fake, words, sentence, batch,
                          SSAGANTrainConfig(damsm_weight=inputs["damsm_weight"]))
    update = {name: before[name] - p.detach() for name, p in G.named_parameters()}
    return {"g_adv": g_adv.detach(), "g_damsm": g_damsm.detach(),
            "update_norm": {name: u.norm() for name, u in update.items()},
            "update": {name: u for name, u in update.items() if u.numel() <= SMALL},
            "d_grads": any(p.grad is not None for p in D.parameters())}


def make_inputs(damsm_weight: float) -> dict[str, Any]:
    """The networks' seed and a batch (4 captions of 6 words with their lengths and classes)."""
    g = torch.Generator().manual_seed(8)
    return {"model": asdict(MODEL), "encoder": asdict(ENCODER), "damsm_weight": damsm_weight,
            "init_seed": 7, "z": torch.randn(4, MODEL.nz, generator=g),
            "words": torch.randn(4, MODEL.sentence_dim, 6, generator=g),
            "sentence": torch.randn(4, MODEL.sentence_dim, generator=g),
            "lengths": torch.tensor([6, 5, 4, 3]), "class_ids": torch.tensor([0, 1, 2, 3])}
