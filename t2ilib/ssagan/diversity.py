r"""The mode-seeking term (Mao et al., CVPR 2019, "Mode Seeking Generative Adversarial
Networks for Diverse Image Synthesis"): a generator that ignores its noise is penalised.

For one caption $s$ and two noise draws $z_1, z_2$, MSGAN's ratio

$$r = \frac{\operatorname{mean}\lvert G(z_1, s) - G(z_2, s)\rvert}
           {\operatorname{mean}\lvert z_1 - z_2\rvert}$$

is small when G draws the same image whatever the noise (mode collapse), and the term
added to G's loss is $L_\text{ms} = 1 / (r + \epsilon)$. The means run over the whole
batch and every pixel or noise dimension, as in MSGAN's code.

Not part of SSA-GAN: a strong DAMSM term pulls every image of a caption towards one
picture the DAMSM likes, and the ToyBirds recipe uses one (notebook 07, section 9).
"""

from __future__ import annotations

from torch import Tensor

__all__ = ["mode_seeking_loss"]


def mode_seeking_loss(images_1: Tensor, images_2: Tensor, z_1: Tensor, z_2: Tensor,
                      eps: float = 1e-5) -> Tensor:
    r"""$1 / (r + \epsilon)$ with MSGAN's ratio $r$ (see the module docstring).

    ``images_1``, ``images_2`` ``(B, 3, H, W)``: G's images for the same captions from the
    noises ``z_1``, ``z_2`` ``(B, nz)``. Returns a scalar ``()``; gradients reach the images.
    """
    if images_1.shape != images_2.shape:
        raise ValueError(f"the two image batches must have one shape, got "
                         f"{tuple(images_1.shape)} and {tuple(images_2.shape)}")
    if z_1.shape != z_2.shape or z_1.shape[0] != images_1.shape[0]:
        raise ValueError(f"noises {tuple(z_1.shape)} and {tuple(z_2.shape)} must match each "
                         f"other and the batch of {images_1.shape[0]} images")
    ratio = (images_1 - images_2).abs().mean() / (z_1 - z_2).abs().mean()
    return 1.0 / (ratio + eps)
