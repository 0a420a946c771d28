"""SSA-GAN's recipes: model and training settings together, as single named objects.

=================  ===========================================================================
``PAPER``          the official CUB run (``main.py`` of wtliao/text2image): 256 px, ngf = ndf
                   = 64, batch 24, Adam (0, 0.9), lr G 1e-4 / D 4e-4, 600 epochs, the DAMSM
                   encoders frozen, DAMSM weight 0.05
``PAPER_FINETUNE`` ``main_finetune.py``: the same with both encoders trained (Adam lr 4e-5)
                   and DAMSM weight 0.1
``TOYBIRDS``       notebook 07's CPU run on ToyBirds (32 px, ngf 32, ndf 16; see the notebook
                   and ``docs/toybirds_experiments.md`` for why each value differs)
``SMOKE``          a tiny run for tests (seconds)
=================  ===========================================================================

Change any field with :func:`dataclasses.replace` (or the CLI's ``--recipe NAME`` plus options),
e.g. ``replace(PAPER, train=replace(PAPER.train, epochs=10))``; :meth:`Recipe.with_` does
both halves at once.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

from t2ilib.damsm.losses import SSAGAN_GAMMAS, DAMSMGammas
from t2ilib.ssagan.losses import MA_GP_K, MA_GP_P
from t2ilib.ssagan.model import SSAGANConfig

__all__ = ["GP_MODES", "SSAGANTrainConfig", "Recipe", "PAPER", "PAPER_FINETUNE", "TOYBIRDS",
           "SMOKE", "RECIPES"]

GP_MODES = ("separate", "joint")


@dataclass(frozen=True)
class SSAGANTrainConfig:
    """Training settings of one SSA-GAN run (defaults: the official CUB run, ``PAPER``)."""

    #: Fields a run may change when it resumes another's checkpoint (not fingerprinted).
    RUN_ONLY: ClassVar[tuple[str, ...]] = ("epochs", "log_every", "amp", "channels_last",
                                           "compile", "tensorboard")

    epochs: int = 600
    batch_size: int = 24  # per process
    lr_g: float = 1e-4
    lr_d: float = 4e-4
    betas: tuple[float, float] = (0.0, 0.9)
    damsm_weight: float = 0.05  # lambda of G's DAMSM term (main.py 0.05, main_finetune.py 0.1)
    damsm_image_size: int | None = None  # resize images to this side for the DAMSM image
    # encoder (when G's resolution differs from the one the encoder was pretrained at)
    finetune_text_encoder: bool = False  # main_finetune.py: train the encoders jointly
    lr_encoder: float = 4e-5  # the encoders' Adam learning rate when fine-tuning
    gp_mode: str = "separate"  # "separate": a second D step (SSA-GAN); "joint": one D step
    gp_k: float = MA_GP_K
    gp_p: float = MA_GP_P
    gammas: DAMSMGammas = SSAGAN_GAMMAS
    ema_decay: float = 0.0  # 0 = no EMA of G; e.g. 0.999
    gate_init_g: float = 0.0  # start value of G's residual gates (the official code: 0)
    gate_init_d: float = 0.0  # start value of D's residual gates (the official code: 0)
    mode_seeking_weight: float = 0.0  # MSGAN's diversity term in G's loss (0: off, as the
    # paper; t2ilib.ssagan.diversity): costs a second G pass per step
    seed: int = 100
    max_steps_per_epoch: int | None = None  # cut epochs short (smoke runs)
    log_every: int = 20  # steps between loss-log rows (and host syncs)
    amp: bool = True  # bf16 autocast on CUDA; the CPU always runs fp32
    channels_last: bool = True  # CUDA only
    compile: bool = False  # torch.compile G and the DAMSM image encoder (D stays eager:
    # MA-GP's double backward)
    tensorboard: bool = False  # also log losses and sample grids to run_dir/tensorboard

    def __post_init__(self) -> None:
        if self.gp_mode not in GP_MODES:
            raise ValueError(f"gp_mode must be one of {GP_MODES}, got {self.gp_mode!r}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size must be >= 2 (mismatched pairs), got {self.batch_size}")
        if self.epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {self.epochs}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        for name in ("damsm_weight", "mode_seeking_weight", "lr_g", "lr_d", "lr_encoder"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {self.log_every}")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise ValueError(f"max_steps_per_epoch must be >= 1, got {self.max_steps_per_epoch}")


@dataclass(frozen=True)
class Recipe:
    """A named SSA-GAN configuration: the model's sizes and the training settings."""

    name: str
    model: SSAGANConfig
    train: SSAGANTrainConfig

    def with_(self, **changes: Any) -> Recipe:
        """A copy with fields of either half changed, e.g. ``with_(epochs=3, ngf=16)``."""
        model_fields = {f.name for f in dataclasses.fields(SSAGANConfig)}
        train_fields = {f.name for f in dataclasses.fields(SSAGANTrainConfig)}
        unknown = sorted(set(changes) - model_fields - train_fields)
        if unknown:
            raise TypeError(f"no recipe field named {unknown}")
        model = {k: v for k, v in changes.items() if k in model_fields}
        train = {k: v for k, v in changes.items() if k in train_fields}
        return dataclasses.replace(self, model=dataclasses.replace(self.model, **model),
                                   train=dataclasses.replace(self.train, **train))


PAPER = Recipe("paper", SSAGANConfig(resolution=256, ngf=64, ndf=64), SSAGANTrainConfig())
PAPER_FINETUNE = dataclasses.replace(
    PAPER.with_(finetune_text_encoder=True, lr_encoder=4e-5, damsm_weight=0.1),
    name="paper_finetune")
#: Notebook 07's CPU recipe: the paper's loop and losses with the encoders trained jointly
#: (``main_finetune.py``), learning rates x4, DAMSM weight 1, G's residual gates starting at 1
#: and D at ndf 16, so that about 1,200 steps (under 10 CPU minutes) learn colours from text.
TOYBIRDS = Recipe("toybirds", SSAGANConfig(resolution=32, ngf=32, ndf=16),
                  SSAGANTrainConfig(epochs=7, lr_g=4e-4, lr_d=1.6e-3, damsm_weight=1.0,
                                    finetune_text_encoder=True, gate_init_g=1.0, log_every=10))
SMOKE = Recipe("smoke", SSAGANConfig(resolution=32, ngf=8, ndf=8, sentence_dim=32),
               dataclasses.replace(TOYBIRDS.train, epochs=1, batch_size=8,
                                   max_steps_per_epoch=2, log_every=1))
RECIPES = {r.name: r for r in (PAPER, PAPER_FINETUNE, TOYBIRDS, SMOKE)}
