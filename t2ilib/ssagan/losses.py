r"""Adversarial losses of SSA-GAN: hinge with matching-aware pairs, and MA-GP.

SSA-GAN (Liao et al., CVPR 2022) takes its adversarial objective unchanged from DF-GAN
(Tao et al., arXiv:2008.05865, the 2020 code SSA-GAN was forked from). With a conditional
discriminator $D(x, s) \in \mathbb{R}$ (one logit per image-sentence pair), real images
$x$, their sentence embeddings $s$, fakes $\hat x = G(z, s)$ and the *mismatched* pairs
$(x_i, s_{i+1})$ (a real image with another image's caption):

$$L_D = \underbrace{\mathbb{E}\,[\max(0, 1 - D(x, s))]}_{\text{real}}
      + \tfrac12\Big(\underbrace{\mathbb{E}\,[\max(0, 1 + D(\hat x, s))]}_{\text{fake}}
      + \underbrace{\mathbb{E}\,[\max(0, 1 + D(x_i, s_{i+1}))]}_{\text{mismatch}}\Big)$$

$$L_G = -\,\mathbb{E}\,[D(\hat x, s)] \quad (+\ 0.05\,L_\text{DAMSM}\text{, added by the
training loop})$$

and the **matching-aware zero-centred gradient penalty** (MA-GP), taken at real, matching
pairs only, over image *and* sentence:

$$L_\text{MA-GP} = k\,\mathbb{E}\big[\lVert \nabla_{(x, s)} D(x, s) \rVert_2^{\,p}\big],
\qquad k = 2,\ p = 6 .$$

What follows the official code rather than the paper (``main.py`` of wtliao/text2image):

* **Mismatched pairs** shift the captions by one *without wrapping*: image $i$ meets
  caption $i+1$ for $i = 1..B-1$, so there are $B-1$ pairs and no check that the two
  captions differ in meaning. The image features are the real ones, computed once.
  (DF-GAN's 2022 code rolls the batch instead, $B$ pairs: ``wrap=True`` here.)
* **Fakes are detached** for the D loss: D's step must not push gradients into G.
* **MA-GP's norm is the joint one**: the image gradient is flattened per sample,
  concatenated with the sentence gradient, and one L2 norm is taken. The paper writes
  $(\lVert\nabla_x D\rVert + \lVert\nabla_s D\rVert)^p$; the code, and this module, use
  $\lVert(\nabla_x D, \nabla_s D)\rVert^p$. The gradient is taken at detached copies of
  the inputs, so the penalty trains D only (never the text encoder). SSA-GAN applies it
  in a second backward pass and optimiser step on D; DF-GAN's 2022 code adds it to $L_D$.

Taught in ``notebooks/06_losses.ipynb``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "ConditionalDiscriminator",
    "HingeTerms",
    "discriminator_adversarial_loss",
    "discriminator_hinge_loss",
    "generator_hinge_loss",
    "hinge_fake",
    "hinge_real",
    "check_gp_arguments",
    "check_logits",
    "ma_gp",
    "ma_gp_from_grads",
    "matching_aware_gp",
    "mismatched_pairs",
]

MA_GP_K = 2.0  # weight k of the penalty (SSA-GAN / DF-GAN)
MA_GP_P = 6.0  # power p of the gradient norm


def check_logits(logits: Tensor, name: str) -> Tensor:
    """Check ``logits`` is ``(B,)`` with ``B >= 1``; return it in at least float32."""
    if logits.ndim != 1 or logits.shape[0] == 0:
        raise ValueError(f"{name} must have shape (B,) with B >= 1, "
                         f"got {tuple(logits.shape)}")
    # autocast may hand us float16/bfloat16 logits: reduce in float32 (float64 stays)
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def hinge_real(logits: Tensor) -> Tensor:
    r"""Hinge loss for pairs D should call real: $\mathbb{E}[\max(0, 1 - D)]$.

    ``(B,) -> ()``. Zero once every logit is at least 1.
    """
    # BEGIN EXERCISE 06:nb06_hinge_losses
    return F.relu(1.0 - check_logits(logits, "logits")).mean()
    # END EXERCISE


def hinge_fake(logits: Tensor) -> Tensor:
    r"""Hinge loss for pairs D should reject: $\mathbb{E}[\max(0, 1 + D)]$.

    ``(B,) -> ()``. Used for fakes $(\hat x, s)$ and mismatched pairs
    $(x_i, s_{i+1})$ alike. Zero once every logit is at most -1.
    """
    # BEGIN EXERCISE 06:nb06_hinge_losses
    return F.relu(1.0 + check_logits(logits, "logits")).mean()
    # END EXERCISE


class HingeTerms(NamedTuple):
    """The discriminator's hinge loss and its three parts (all scalars ``()``)."""

    total: Tensor  # real + (fake + mismatch) / 2
    real: Tensor
    fake: Tensor
    mismatch: Tensor


def discriminator_hinge_loss(real_logits: Tensor, fake_logits: Tensor,
                             mismatch_logits: Tensor) -> HingeTerms:
    r"""$L_D = L_\text{real} + \tfrac12 (L_\text{fake} + L_\text{mis})$ on logits.

    ``real_logits`` ``(B,)`` are $D(x, s)$, ``fake_logits`` ``(B,)`` are
    $D(\hat x, s)$ and ``mismatch_logits`` ``(M,)`` are $D(x_i, s_{i+1})$ (``M = B - 1``
    in SSA-GAN, see :func:`mismatched_pairs`). Each term is a mean over its own pairs,
    so the three batch sizes may differ. Returns :class:`HingeTerms`.
    """
    # BEGIN EXERCISE 06:nb06_hinge_losses
    real = hinge_real(real_logits)
    fake = hinge_fake(fake_logits)
    mismatch = hinge_fake(mismatch_logits)
    return HingeTerms(real + 0.5 * (fake + mismatch), real, fake, mismatch)
    # END EXERCISE


def generator_hinge_loss(fake_logits: Tensor) -> Tensor:
    r"""The generator's adversarial loss $L_G = -\mathbb{E}[D(\hat x, s)]$: ``(B,) -> ()``.

    Not clipped: G keeps being pushed to raise D's logit on its fakes. The DAMSM term
    of SSA-GAN is added by the training loop.
    """
    return -check_logits(fake_logits, "fake_logits").mean()


def mismatched_pairs(images: Tensor, sentence: Tensor,
                     wrap: bool = False) -> tuple[Tensor, Tensor]:
    r"""Pair each real image with the *next* sample's sentence: $(x_i, s_{i+1})$.

    ``images`` ``(B, ...)`` (images or D's image features), ``sentence`` ``(B, D_s)``.
    ``wrap=False`` (SSA-GAN, DF-GAN 2020): ``(B-1, ...), (B-1, D_s)``, image $i$ with
    sentence $i+1$ for $i < B-1$. ``wrap=True`` (DF-GAN 2022): ``(B, ...), (B, D_s)``,
    the last image meets the first sentence. Nothing is copied or detached.
    """
    if images.shape[0] != sentence.shape[0]:
        raise ValueError(f"images and sentence must share the batch size, "
                         f"got {images.shape[0]} and {sentence.shape[0]}")
    if images.shape[0] < 2:
        raise ValueError("mismatched pairs need a batch of at least 2 samples, "
                         f"got {images.shape[0]}")
    if wrap:
        return images, torch.roll(sentence, shifts=-1, dims=0)  # row i <- row i+1
    return images[:-1], sentence[1:]  # (B-1, ...), (B-1, D_s)


class ConditionalDiscriminator(Protocol):
    """What :func:`discriminator_adversarial_loss` needs from D (SSA-GAN's D has it).

    ``features(images)``: ``(B, 3, H, W) -> (B, C, 4, 4)``, the image trunk;
    ``logits(features, sentence)``: ``(B, C, 4, 4), (B, D_s) -> (B,)``, the
    conditional head.
    """

    def features(self, images: Tensor) -> Tensor: ...

    def logits(self, features: Tensor, sentence: Tensor) -> Tensor: ...


def discriminator_adversarial_loss(d: ConditionalDiscriminator, real: Tensor,
                                   fake: Tensor, sentence: Tensor) -> HingeTerms:
    r"""SSA-GAN's D step: hinge loss on real, fake and mismatched pairs.

    ``real`` and ``fake`` ``(B, 3, H, W)``, ``sentence`` ``(B, D_s)``. The real
    features are computed once and reused for the mismatched pairs (image $i$,
    sentence $i+1$); ``fake`` is detached so no gradient reaches G. ``sentence`` is
    used as given (detach it before if the text encoder must not learn from D).
    """
    if not (real.shape[0] == fake.shape[0] == sentence.shape[0]):
        raise ValueError(f"real, fake and sentence must share the batch size, got "
                         f"{real.shape[0]}, {fake.shape[0]} and {sentence.shape[0]}")
    # BEGIN EXERCISE 06:nb06_matching_aware_d_loss
    real_features = d.features(real)  # (B, C, 4, 4)
    real_logits = d.logits(real_features, sentence)  # (B,)
    mis_features, mis_sentence = mismatched_pairs(real_features, sentence)
    mismatch_logits = d.logits(mis_features, mis_sentence)  # (B-1,)
    fake_logits = d.logits(d.features(fake.detach()), sentence)  # (B,)
    return discriminator_hinge_loss(real_logits, fake_logits, mismatch_logits)
    # END EXERCISE


def check_gp_arguments(grad_images: Tensor, grad_sentence: Tensor, k: float, p: float) -> None:
    """Raise ``ValueError`` unless the two gradients share a batch size ``B >= 1``, ``p > 0``
    and ``k >= 0``."""
    if grad_images.shape[0] != grad_sentence.shape[0]:
        raise ValueError(f"gradients must share the batch size, got "
                         f"{grad_images.shape[0]} and {grad_sentence.shape[0]}")
    if grad_images.shape[0] == 0:
        raise ValueError("MA-GP needs at least one sample")
    if p <= 0 or k < 0:
        raise ValueError(f"MA-GP needs p > 0 and k >= 0, got p={p}, k={k}")


def ma_gp_from_grads(grad_images: Tensor, grad_sentence: Tensor,
                     k: float = MA_GP_K, p: float = MA_GP_P) -> Tensor:
    r"""$k \cdot \operatorname{mean}_b \lVert g_b \rVert_2^{\,p}$ with
    $g_b = (\operatorname{vec}\nabla_{x} D_b, \nabla_{s} D_b)$, the joint gradient.

    ``grad_images`` ``(B, ...)`` and ``grad_sentence`` ``(B, D_s)`` -> ``()``. As in the
    official code, each sample's image gradient is flattened and concatenated with its
    sentence gradient before one L2 norm is taken.
    """
    check_gp_arguments(grad_images, grad_sentence, k, p)
    # BEGIN EXERCISE 06:nb06_ma_gp
    grad = torch.cat([grad_images.flatten(1), grad_sentence.flatten(1)], dim=1)  # (B, N)
    sq_norm = grad.pow(2).sum(dim=1)  # (B,) ||g_b||^2
    # ||g||^p = (||g||^2)^(p/2): same value, but no sqrt, whose derivative is
    # infinite at g = 0 (a D that is flat at a real pair must not give NaN)
    return k * sq_norm.pow(p / 2).mean()
    # END EXERCISE


def matching_aware_gp(d: Callable[[Tensor, Tensor], Tensor], images: Tensor, sentence: Tensor,
                      k: float = MA_GP_K, p: float = MA_GP_P) -> Tensor:
    r"""MA-GP, the idea: $k\,\mathbb{E}\lVert\nabla_{(x,s)} D(x,s)\rVert^p$ at real pairs.

    ``d(images, sentence)``: ``(B, 3, H, W), (B, D_s) -> (B,)``; ``images``
    ``(B, 3, H, W)``, ``sentence`` ``(B, D_s)`` -> ``()``. The gradient is taken at
    detached copies of the inputs (the penalty trains D only) with ``create_graph=True``,
    so that ``backward()`` on the result reaches D's parameters. D must score each sample
    independently (no batch norm): the gradient of the batch sum is then every sample's
    own gradient. Training calls :func:`ma_gp`, which wraps this one.
    """
    # BEGIN EXERCISE 06:nb06_ma_gp
    x = images.detach().requires_grad_(True)
    s = sentence.detach().requires_grad_(True)
    out = d(x, s)  # (B,)
    grad_x, grad_s = torch.autograd.grad(out.sum(), (x, s), create_graph=True)
    return ma_gp_from_grads(grad_x, grad_s, k=k, p=p)
    # END EXERCISE


def ma_gp(d: Callable[[Tensor, Tensor], Tensor], images: Tensor, sentence: Tensor,
          k: float = MA_GP_K, p: float = MA_GP_P) -> Tensor:
    r"""MA-GP as training uses it: :func:`matching_aware_gp` with checks and in float32.

    ``d(images, sentence)``: ``(B, 3, H, W), (B, D_s) -> (B,)``; ``images``
    ``(B, 3, H, W)``, ``sentence`` ``(B, D_s)`` -> ``()``.

    Around the idea: the batch sizes and D's output shape ``(B,)`` are checked
    (``ValueError``), the inputs are promoted to at least float32, and D runs with
    autocast switched off, so the gradient is computed in float32 even when the caller is
    inside ``torch.autocast`` (a sixth power of a half-precision gradient overflows or
    underflows easily); grad mode is switched on, so it also works under
    ``torch.no_grad()``.
    """
    if images.shape[0] != sentence.shape[0]:
        raise ValueError(f"images and sentence must share the batch size, "
                         f"got {images.shape[0]} and {sentence.shape[0]}")
    dtype = torch.promote_types(images.dtype, torch.float32)

    def checked_d(x: Tensor, s: Tensor) -> Tensor:
        out = d(x, s)
        if out.shape != (x.shape[0],):
            raise ValueError(f"d(images, sentence) must return shape ({x.shape[0]},), "
                             f"got {tuple(out.shape)}")
        return out

    # grad mode on even under torch.no_grad() (e.g. when only logging the value)
    with torch.enable_grad(), torch.autocast(device_type=images.device.type, enabled=False):
        return matching_aware_gp(checked_d, images.to(dtype), sentence.to(dtype), k=k, p=p)
