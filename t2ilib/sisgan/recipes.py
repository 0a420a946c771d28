"""SISGAN's training settings and the course's named recipes (model sizes + training settings).

A :class:`Recipe` is one named object: ``recipe.model`` sizes G and D, ``recipe.train`` says how
to train them. :data:`RECIPES` lists them by name:

* ``"reference"`` (:data:`REFERENCE`): the reference code's values (``woozzu/dong_iccv_2017``,
  ``train.py``, the PyTorch re-implementation of SISGAN; labelled as the reference code's,
  not the paper's): a 64 px model, Adam at 2e-4 halved every 100 epochs, 600 epochs of
  batches of 64;
* ``"toybirds"`` (:data:`TOYBIRDS`): notebook 09's CPU run on ToyBirds (a few minutes);
* ``"smoke"`` (:data:`SMOKE`): seconds, for tests and smoke runs of the notebooks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from t2ilib.damsm.pretrain import TOYBIRDS_DAMSM_SIZE
from t2ilib.sisgan.model import SISGANConfig

__all__ = ["SISGANTrainConfig", "Recipe", "REFERENCE", "TOYBIRDS", "SMOKE", "RECIPES"]


@dataclass(frozen=True)
class SISGANTrainConfig:
    """Training settings (defaults: the reference code's values, ``woozzu/dong_iccv_2017``).
    Fields named in ``RUN_ONLY`` may change when a run resumes a checkpoint."""

    RUN_ONLY: ClassVar[tuple[str, ...]] = ("epochs", "log_every", "amp")

    epochs: int = 600
    batch_size: int = 64
    lr: float = 2e-4  # G and D
    betas: tuple[float, float] = (0.5, 0.999)
    lr_halve_every: int = 100  # epochs between halvings of the learning rate
    kl_weight: float = 1.0  # rho
    recon_weight: float = 0.0  # lambda of the L1 reconstruction (SISGAN 0, TAGAN 0.2)
    p_match: float = 0.5  # probability that G's relevant text is the image's own caption
    damsm_weight: float = 0.0  # not SISGAN: weight of a DAMSM loss on G's edits (0 = off)
    damsm_image_size: int | None = None  # resize edits to this side for the DAMSM image encoder
    flip: bool = True  # random horizontal flips (captions never name the facing)
    seed: int = 0
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke runs)
    log_every: int = 20  # steps between loss-log rows (and host syncs)
    amp: bool = True  # bf16 autocast on CUDA; the CPU always runs fp32

    def __post_init__(self) -> None:
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (mismatched pairs), got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not 0.0 <= self.p_match <= 1.0:
            raise ValueError(f"p_match must lie in [0, 1], got {self.p_match}")
        if self.lr_halve_every < 1 or self.log_every < 1:
            raise ValueError("lr_halve_every and log_every must be >= 1")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")
        if self.kl_weight < 0 or self.recon_weight < 0 or self.damsm_weight < 0:
            raise ValueError("kl_weight, recon_weight and damsm_weight must be >= 0")


@dataclass(frozen=True)
class Recipe:
    """A named SISGAN run: the model's sizes and its training settings."""

    name: str
    model: SISGANConfig
    train: SISGANTrainConfig


#: The reference code's values (the paper gives no hyper-parameters): the default
#: :class:`~t2ilib.sisgan.model.SISGANConfig` and :class:`SISGANTrainConfig`.
REFERENCE = Recipe("reference", SISGANConfig(), SISGANTrainConfig())

#: Notebook 09's CPU run on ToyBirds: the paper's layout, narrower, with TAGAN's
#: encoder-to-decoder skip; a few CPU minutes. Deviations from SISGAN that make so short a run
#: learn something (notebook 09 explains them): lr 1e-3 (reference 2e-4), L1 reconstruction 10
#: (SISGAN none), KL weight 0.1 (reference 1), a DAMSM loss on the edits (0.1).
TOYBIRDS = Recipe(
    "toybirds",
    SISGANConfig(image_size=64, ngf=16, ndf=32, skip=True),
    SISGANTrainConfig(epochs=4, batch_size=32, lr=1e-3, recon_weight=10.0, kl_weight=0.1,
                      damsm_weight=0.1, damsm_image_size=TOYBIRDS_DAMSM_SIZE, seed=0,
                      log_every=10))

#: Smoke-test sizes (seconds): tiny networks, two steps.
SMOKE = Recipe(
    "smoke",
    SISGANConfig(image_size=64, condition_dim=8, ngf=4, ndf=4, n_residual=1, d_text_dim=8),
    SISGANTrainConfig(epochs=1, batch_size=8, max_steps_per_epoch=2, log_every=1,
                      recon_weight=10.0, kl_weight=0.1, damsm_weight=0.1,
                      damsm_image_size=TOYBIRDS_DAMSM_SIZE, seed=0))

#: The recipes by name.
RECIPES: dict[str, Recipe] = {r.name: r for r in (REFERENCE, TOYBIRDS, SMOKE)}
