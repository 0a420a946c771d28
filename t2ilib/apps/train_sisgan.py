"""``python -m t2ilib train sisgan``: SISGAN with a named recipe, on the course's one engine.

The same run folder, resume, checkpoints and errors as ``train ssagan``::

    python -m t2ilib train sisgan --recipe toybirds --epochs 40          # notebook 09, longer
    python -m t2ilib train sisgan --recipe reference --dataset cub --device cuda \\
        --damsm data/checkpoints/damsm_cub_attngan/checkpoint.pt --encoder vgg  # reference code
    python -m t2ilib train sisgan --recipe reference --dataset flowers --device cuda

``--recipe`` names one of :data:`t2ilib.sisgan.recipes.RECIPES` (default: ``toybirds`` on
ToyBirds, ``reference`` on CUB and Oxford-102); every other option overrides one of its fields.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from t2ilib.apps.options import (
    add_data_options,
    add_run_options,
    dataset_root,
    finite,
    interrupted,
    positive,
    recipe_field,
    run_status,
)
from t2ilib.sisgan.recipes import RECIPES

__all__ = ["add_parser", "train_sisgan"]

#: Options that override the recipe field of the same name (model or training settings).
MODEL_OPTIONS = ("ngf", "ndf", "skip", "encoder")
TRAIN_OPTIONS = ("epochs", "batch_size", "lr", "recon_weight", "kl_weight", "damsm_weight",
                 "p_match", "seed", "max_steps_per_epoch", "log_every")


def add_parser(models: Any) -> None:
    """Add ``sisgan`` to the ``train`` command's sub-parsers."""
    p = models.add_parser("sisgan", help="train SISGAN (t2ilib.sisgan)",
                          description="Train SISGAN with a recipe (t2ilib.sisgan.recipes); every "
                          "option below that is not given keeps the recipe's value.")
    p.add_argument("--recipe", choices=tuple(RECIPES), default=None,
                   help="default: toybirds for --dataset toybirds, else reference")
    p.add_argument("--dataset", choices=("toybirds", "cub", "flowers"), default="toybirds")
    add_data_options(p, "$T2I_DATA/toybirds, $T2I_DATA/birds or $T2I_DATA/flowers")
    p.add_argument("--run-dir", type=Path, default=None, help="checkpoints, loss log, sample "
                   "grids (default: runs/sisgan_<dataset>_<size>)")
    p.add_argument("--epochs", type=positive, default=None)
    p.add_argument("--batch-size", type=positive, default=None)
    p.add_argument("--lr", type=finite, default=None, help="Adam learning rate of G and D")
    p.add_argument("--ngf", type=positive, default=None, help="generator width")
    p.add_argument("--ndf", type=positive, default=None, help="discriminator width")
    p.add_argument("--skip", action=argparse.BooleanOptionalAction, default=None,
                   help="TAGAN's encoder-to-decoder skip")
    p.add_argument("--encoder", choices=("plain", "vgg"), default=None,
                   help="G's image encoder (vgg: VGG-16-BN's ImageNet weights on disk)")
    p.add_argument("--vgg-weights", type=Path, default=None,
                   help="vgg16_bn-6c64b313.pth (default: the torch hub cache)")
    p.add_argument("--recon-weight", type=finite, default=None, help="L1 reconstruction weight")
    p.add_argument("--kl-weight", type=finite, default=None, help="KL weight (rho)")
    p.add_argument("--damsm-weight", type=finite, default=None,
                   help="DAMSM loss on the edits (not SISGAN's; 0: off)")
    p.add_argument("--p-match", type=finite, default=None,
                   help="share of G's inputs that get their own caption")
    p.add_argument("--damsm", type=Path, default=None, help="a DAMSM checkpoint; default: "
                   "notebook 02's on ToyBirds, else pretrain one into RUN_DIR/damsm")
    p.add_argument("--damsm-epochs", type=positive, default=10)
    p.add_argument("--image-encoder", choices=("small_cnn", "inception"), default="inception",
                   help="for a DAMSM pretrained here on CUB or Oxford-102")
    add_run_options(p, "lr_halve_every=50")


def recipe_from(args: argparse.Namespace):
    """The named recipe with every option the command line gives."""
    recipe = RECIPES[args.recipe or ("toybirds" if args.dataset == "toybirds" else "reference")]
    changes = {k: getattr(args, k) for k in MODEL_OPTIONS + TRAIN_OPTIONS
               if getattr(args, k) is not None}
    if args.no_amp:
        changes["amp"] = False
    changes.update(recipe_field(recipe, item) for item in args.set)
    model_fields = {f.name for f in fields(recipe.model)}
    return replace(recipe,
                   model=replace(recipe.model, **{k: v for k, v in changes.items()
                                                  if k in model_fields}),
                   train=replace(recipe.train, **{k: v for k, v in changes.items()
                                                  if k not in model_fields}))


def train_sisgan(args: argparse.Namespace) -> int:
    """Load the data and the DAMSM, then train (or resume, or load) the run; prints one JSON
    line with the status, as ``train ssagan`` does."""
    from t2ilib.runtime import pick_device, repo_root, seed_everything
    from t2ilib.sisgan.inputs import load_data, load_encoders
    from t2ilib.sisgan.train import load_or_train_sisgan, sisgan_engine

    recipe = recipe_from(args)
    size = recipe.model.image_size
    device = pick_device(args.device)
    root = dataset_root(args)
    run_dir = args.run_dir or repo_root() / "runs" / f"sisgan_{args.dataset}_{size}"
    seed_everything(recipe.train.seed)
    data = load_data(args.dataset, root, image_size=size, seed=recipe.train.seed)
    encoders = load_encoders(data, root, run_dir / "damsm", damsm=args.damsm,
                             epochs=args.damsm_epochs, batch_size=recipe.train.batch_size,
                             seed=recipe.train.seed, image_encoder=args.image_encoder,
                             tiny=recipe.name == "smoke", device=device)
    status = {"recipe": recipe.name, "damsm": str(encoders.path)}
    if encoders.interrupted:  # never train on a half-trained DAMSM
        return interrupted("DAMSM pretraining", {**status, "checkpoint": str(encoders.path)})
    resize = encoders.image_size if encoders.image_size not in (None, size) else None
    recipe = replace(recipe, model=replace(recipe.model,
                                           sentence_dim=encoders.text_encoder.config.hidden_dim),
                     train=replace(recipe.train, damsm_image_size=resize))
    engine = sisgan_engine(recipe, encoders.text_encoder, data.train, device=device,
                           run_dir=run_dir, image_encoder=encoders.image_encoder,
                           vgg_weights=args.vgg_weights, tensorboard=args.tensorboard)
    result = load_or_train_sisgan(engine, retrain=args.retrain).result
    status |= {"step": result.step, "epoch": result.epoch,
               "train_seconds": round(result.train_seconds),
               "checkpoint": str(engine.checkpoint_path)}
    if result.interrupted:
        return interrupted("SISGAN training", status)
    print(json.dumps({"status": run_status(result), **status}))
    return 0
