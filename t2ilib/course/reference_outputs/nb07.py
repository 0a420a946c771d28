"""Reference outputs of notebook 07's exercise: SSA-GAN's generator step.

The harness (:func:`t2ilib.course.g_step_harness.run_g_step`: tiny networks, one SGD step at
learning rate 1, so each weight's change is its gradient) is shared with the notebook's tests.
Besides the library's step at a large DAMSM weight (0.7) and at the paper's (0.05), the file
stores, for each, the norm of each weight's change (one tensor, in the order of the case's
``update_norm``) under the likely wrong answers of
``tests/exercise_variants/nb07.json`` (``nb07_g_step_mistakes``): a hidden test whose
student's step matches one of them says what that mistake is
(:func:`t2ilib.course.checks.assert_all_close`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from t2ilib.course.g_step_harness import make_inputs, run_g_step
from t2ilib.damsm.generator_loss import damsm_image_loss
from t2ilib.ssagan.losses import generator_hinge_loss
from t2ilib.ssagan.step import g_step

CASES = (("nb07_g_step", 0.7), ("nb07_g_step_paper_weight", 0.05))
#: hint -> how the wrong step differs: which input is detached, the two terms' weights, and
#: whether the stale gradients are cleared
MISTAKES: dict[str, dict[str, Any]] = {
    "the adversarial term does not reach G: is `fake` detached before D?":
        {"detach_d": True},
    # (a detached input to the image encoder and a loss without the term move G alike)
    "the DAMSM term does not reach G: is `fake` detached before the image encoder, or is "
    "cfg.damsm_weight * g_damsm missing from the loss?": {"detach_damsm": True},
    "the DAMSM term is not weighted: multiply g_damsm by cfg.damsm_weight":
        {"damsm_weight": 1.0},
    "the weight is on the wrong term: cfg.damsm_weight multiplies g_damsm, not g_adv":
        {"swap_weight": True},
    "the adversarial term has the wrong sign: G minimises -mean D(G(z, s), s)":
        {"adv_sign": -1.0},
    "G's stale gradients were kept: call opt_g.zero_grad() before loss.backward()":
        {"zero_grad": False},
}


def wrong_g_step(detach_d: bool = False, detach_damsm: bool = False,
                 damsm_weight: float | None = None, swap_weight: bool = False,
                 adv_sign: float = 1.0, zero_grad: bool = True) -> Callable[..., Any]:
    """A G step (``g_step``'s signature) with one of the mistakes of :data:`MISTAKES`."""

    def step(nets, opt_g, fake, words, sentence, batch, cfg):
        nets.D.requires_grad_(False)
        to_d = fake.detach() if detach_d else fake
        g_adv = adv_sign * generator_hinge_loss(nets.D.logits(nets.D.features(to_d), sentence))
        g_damsm = damsm_image_loss(nets.image_encoder, fake.detach() if detach_damsm else fake,
                                   words, sentence, batch.lengths, batch.class_ids, cfg.gammas,
                                   cfg.damsm_image_size)
        weight = cfg.damsm_weight if damsm_weight is None else damsm_weight
        loss = weight * g_adv + g_damsm if swap_weight else g_adv + weight * g_damsm
        if zero_grad:
            opt_g.zero_grad(set_to_none=True)
        loss.backward()
        opt_g.step()
        nets.D.requires_grad_(True)
        return g_adv, g_damsm

    return step


def build() -> dict:
    """The G step of each case, and the update norms of each mistake in each case."""
    out: dict[str, Any] = {}
    mistakes: dict[str, dict[str, torch.Tensor]] = {}
    for name, weight in CASES:
        inputs = make_inputs(weight)
        out[name] = {"inputs": inputs, "outputs": run_g_step(g_step, inputs)}
        names = list(out[name]["outputs"]["update_norm"])
        mistakes[name] = {hint: torch.stack([run_g_step(wrong_g_step(**how), inputs)
                                             ["update_norm"][n] for n in names])
                          for hint, how in MISTAKES.items()}  # one tensor: a small file
    out["nb07_g_step_mistakes"] = {"inputs": {}, "outputs": mistakes}
    return out
