"""SSA-GAN's recipes pinned to the official runs (``main.py`` / ``main_finetune.py`` of
wtliao/text2image), and how a recipe is changed.

Any change to ``PAPER`` or ``PAPER_FINETUNE`` must be a deliberate change to this file too.
"""

from __future__ import annotations

import dataclasses

import pytest

from t2ilib.damsm.losses import DAMSMGammas
from t2ilib.ssagan.model import SSAGANConfig
from t2ilib.ssagan.recipes import (
    PAPER,
    PAPER_FINETUNE,
    RECIPES,
    SMOKE,
    TOYBIRDS,
    Recipe,
    SSAGANTrainConfig,
)

#: The official CUB model: 256 px, ngf = ndf = 64, 100-d noise, 256-d sentence, SSACN blocks.
PAPER_MODEL = {"resolution": 256, "ngf": 64, "ndf": 64, "nz": 100, "sentence_dim": 256,
               "block": "ssacn"}

#: Every training setting of the official run (main.py).
PAPER_TRAIN = {
    "epochs": 600,
    "batch_size": 24,
    "lr_g": 1e-4,
    "lr_d": 4e-4,
    "betas": (0.0, 0.9),
    "damsm_weight": 0.05,
    "damsm_image_size": None,
    "finetune_text_encoder": False,  # the DAMSM encoders stay frozen
    "lr_encoder": 4e-5,  # unused while frozen
    "gp_mode": "separate",  # MA-GP in a second D step
    "gp_k": 2.0,
    "gp_p": 6.0,
    "gammas": DAMSMGammas(gamma1=5.0, gamma2=5.0, gamma3=10.0),
    "ema_decay": 0.0,  # no EMA of G
    "gate_init_g": 0.0,  # ReZero gates start at 0
    "gate_init_d": 0.0,
    "mode_seeking_weight": 0.0,  # no mode seeking
    "seed": 100,
    "max_steps_per_epoch": None,
    "log_every": 20,
    "amp": True,
    "channels_last": True,
    "compile": False,
    "tensorboard": False,
}

#: main_finetune.py: the same, with the encoders trained (Adam 4e-5) and DAMSM weight 0.1.
FINETUNE_CHANGES = {"finetune_text_encoder": True, "lr_encoder": 4e-5, "damsm_weight": 0.1}


def model_fields(recipe: Recipe) -> dict:
    return dataclasses.asdict(recipe.model)


def train_fields(recipe: Recipe) -> dict:
    return {f.name: getattr(recipe.train, f.name) for f in dataclasses.fields(recipe.train)}


def test_paper_recipe_is_the_official_run():
    assert PAPER.name == "paper"
    assert model_fields(PAPER) == PAPER_MODEL
    assert train_fields(PAPER) == PAPER_TRAIN
    # the defaults are the paper's too
    assert PAPER.train == SSAGANTrainConfig() and PAPER.model == SSAGANConfig()


@pytest.mark.parametrize("field,value", [
    ("resolution", 256), ("ngf", 64), ("ndf", 64), ("batch_size", 24), ("betas", (0.0, 0.9)),
    ("lr_g", 1e-4), ("lr_d", 4e-4), ("epochs", 600), ("finetune_text_encoder", False),
    ("damsm_weight", 0.05), ("gp_k", 2.0), ("gp_p", 6.0), ("gp_mode", "separate"),
    ("ema_decay", 0.0), ("gate_init_g", 0.0), ("gate_init_d", 0.0),
    ("mode_seeking_weight", 0.0),
])
def test_paper_value(field, value):
    """One test per headline value, so a failure names the setting."""
    half = PAPER.model if hasattr(PAPER.model, field) else PAPER.train
    assert getattr(half, field) == value


def test_paper_finetune_recipe_is_the_official_finetuning_run():
    assert PAPER_FINETUNE.name == "paper_finetune"
    assert model_fields(PAPER_FINETUNE) == PAPER_MODEL
    assert train_fields(PAPER_FINETUNE) == {**PAPER_TRAIN, **FINETUNE_CHANGES}
    assert PAPER_FINETUNE.train.finetune_text_encoder
    assert PAPER_FINETUNE.train.lr_encoder == 4e-5
    assert PAPER_FINETUNE.train.damsm_weight == 0.1


def test_recipes_registry():
    assert set(RECIPES) == {"paper", "paper_finetune", "toybirds", "smoke"}
    assert RECIPES["paper"] is PAPER and RECIPES["paper_finetune"] is PAPER_FINETUNE
    assert RECIPES["toybirds"] is TOYBIRDS and RECIPES["smoke"] is SMOKE
    assert all(name == recipe.name for name, recipe in RECIPES.items())


def differences(a: Recipe, b: Recipe) -> dict:
    """``{field: (a's value, b's value)}`` for the fields of the train configs that differ."""
    fa, fb = train_fields(a), train_fields(b)
    return {k: (fa[k], fb[k]) for k in fa if fa[k] != fb[k]}


def test_train_configs_differ_only_where_documented():
    # PAPER_FINETUNE: the encoders trained, DAMSM weight 0.1 (recipes' docstring)
    assert differences(PAPER, PAPER_FINETUNE) == {"finetune_text_encoder": (False, True),
                                                  "damsm_weight": (0.05, 0.1)}
    # TOYBIRDS: the fine-tuning loop, lr x4, DAMSM weight 1, G's gates at 1, 7 short epochs
    assert differences(PAPER, TOYBIRDS) == {
        "epochs": (600, 7), "lr_g": (1e-4, 4e-4), "lr_d": (4e-4, 1.6e-3),
        "damsm_weight": (0.05, 1.0), "finetune_text_encoder": (False, True),
        "gate_init_g": (0.0, 1.0), "log_every": (20, 10)}
    # SMOKE: TOYBIRDS cut down to seconds
    assert differences(TOYBIRDS, SMOKE) == {
        "epochs": (7, 1), "batch_size": (24, 8), "max_steps_per_epoch": (None, 2),
        "log_every": (10, 1)}
    # the models
    assert model_fields(TOYBIRDS) == {**PAPER_MODEL, "resolution": 32, "ngf": 32, "ndf": 16}
    assert model_fields(SMOKE) == {**PAPER_MODEL, "resolution": 32, "ngf": 8, "ndf": 8,
                                   "sentence_dim": 32}


def test_with_changes_either_half_and_keeps_the_rest():
    changed = PAPER.with_(epochs=3, ngf=16)
    assert changed.name == "paper"
    assert changed.train == dataclasses.replace(PAPER.train, epochs=3)
    assert changed.model == dataclasses.replace(PAPER.model, ngf=16)
    assert PAPER.train.epochs == 600 and PAPER.model.ngf == 64  # the original is untouched
    only_model = PAPER.with_(resolution=64)
    assert only_model.train == PAPER.train
    assert only_model.model.resolution == 64
    only_train = PAPER.with_(damsm_weight=0.2)
    assert only_train.model == PAPER.model and only_train.train.damsm_weight == 0.2
    assert PAPER.with_() == PAPER


def test_with_refuses_unknown_fields_and_bad_values():
    with pytest.raises(TypeError, match="learning_rate"):
        PAPER.with_(learning_rate=1e-3)
    with pytest.raises(TypeError, match="name"):
        PAPER.with_(name="other")  # the name is no field of either half
    with pytest.raises(ValueError, match="gp_mode"):
        PAPER.with_(gp_mode="both")  # each half still checks its values
    with pytest.raises(ValueError, match="resolution"):
        PAPER.with_(resolution=100)


def test_recipes_are_immutable():
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.train.epochs = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        PAPER.name = "x"  # type: ignore[misc]
