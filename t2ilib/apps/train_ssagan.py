"""``python -m t2ilib train ssagan``: SSA-GAN with a named recipe, on the course's one engine.

::

    python -m t2ilib train ssagan --dataset toybirds --epochs 20 --device cpu   # TOYBIRDS
    python -m t2ilib train ssagan --recipe paper --dataset cub --data-dir data/birds \\
        --device cuda --damsm DAMSM.pt                                    # the paper's run
    torchrun --nproc_per_node=4 -m t2ilib train ssagan --dataset cub ...   # data parallel

``--recipe`` names one of :data:`t2ilib.ssagan.recipes.RECIPES` (default: ``toybirds`` on
ToyBirds, ``paper`` on CUB); every other option overrides one of its fields. Without
``--damsm`` a DAMSM is pretrained into the run folder first; Ctrl-C in either stage saves its
checkpoint, stops the command (exit 130) and the same command resumes that stage.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from t2ilib.apps.options import (
    INTERRUPTED,
    add_data_options,
    add_run_options,
    dataset_root,
    finite,
    interrupted,
    positive,
    recipe_field,
    run_status,
)
from t2ilib.ssagan.model import RESOLUTIONS
from t2ilib.ssagan.recipes import RECIPES

__all__ = ["add_parser", "recipe_from", "binding_from", "train_ssagan"]


def add_parser(models: Any) -> None:
    """``train ssagan``: every option overrides one field of the recipe."""
    ssa = models.add_parser("ssagan", help="train SSA-GAN (t2ilib.ssagan)",
                            description="Train SSA-GAN with a recipe (t2ilib.ssagan.recipes); "
                            "every option below that is not given keeps the recipe's value.")
    ssa.add_argument("--recipe", choices=tuple(RECIPES),
                     default=None, help="default: toybirds for --dataset toybirds, paper for cub")
    ssa.add_argument("--dataset", choices=("toybirds", "cub"), default="toybirds")
    add_data_options(ssa, "$T2I_DATA/toybirds or $T2I_DATA/birds")
    ssa.add_argument("--run-dir", type=Path, default=None, help="checkpoints, loss log, sample "
                     "grids (default: runs/ssagan_<dataset>_<resolution>)")
    ssa.add_argument("--epochs", type=positive, default=None)
    ssa.add_argument("--batch-size", type=positive, default=None, help="per process")
    ssa.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=None)
    ssa.add_argument("--ngf", type=positive, default=None, help="generator width")
    ssa.add_argument("--ndf", type=positive, default=None, help="discriminator width")
    ssa.add_argument("--damsm", type=Path, default=None,
                     help="pretrained DAMSM checkpoint (t2ilib.damsm.pretrain); "
                          "default: pretrain one into the run folder")
    ssa.add_argument("--damsm-epochs", type=positive, default=10)
    ssa.add_argument("--image-encoder", choices=("small_cnn", "inception"), default=None,
                     help="for a DAMSM pretrained here (default: small_cnn, inception for cub)")
    ssa.add_argument("--lr-g", type=finite, default=None, help="G's learning rate")
    ssa.add_argument("--lr-d", type=finite, default=None, help="D's learning rate")
    ssa.add_argument("--damsm-weight", type=finite, default=None, help="lambda of G's DAMSM term")
    ssa.add_argument("--finetune-text-encoder", action=argparse.BooleanOptionalAction,
                     default=None, help="train the DAMSM encoders jointly (main_finetune.py)")
    ssa.add_argument("--gp-mode", choices=("separate", "joint"), default=None)
    ssa.add_argument("--ema-decay", type=finite, default=None)
    ssa.add_argument("--mode-seeking-weight", type=finite, default=None,
                     help="weight of MSGAN's diversity term in G's loss (0: off)")
    ssa.add_argument("--compile", action="store_true",
                     help="torch.compile G and the DAMSM image encoder")
    words = ssa.add_argument_group("word-level parts (notebook 11, t2ilib.binding)")
    words.add_argument("--word-generator", action="store_true",
                       help="word-attended SSACN affines in G")
    words.add_argument("--word-discriminator", action="store_true",
                       help="a word-level head in D (one local discriminator per word)")
    words.add_argument("--swap-weight", type=finite, default=0.0,
                       help="weight of D's ranking of each caption above its colour swap (0: off)")
    words.add_argument("--word-d-weight", type=finite, default=1.0,
                       help="weight of D's word-level head in D's and G's losses")
    words.add_argument("--damsm-swap-weight", type=finite, default=0.0,
                       help="weight of the DAMSM's caption-vs-swap loss in the encoder step "
                            "and G's loss (0: off)")
    add_run_options(ssa, "gate_init_g=0")


def binding_from(args: argparse.Namespace) -> Any:
    """The run's :class:`~t2ilib.binding.step.BindingConfig`, or None for plain SSA-GAN."""
    if not (args.word_generator or args.word_discriminator or args.swap_weight > 0
            or args.damsm_swap_weight > 0):
        return None
    from t2ilib.binding.step import BindingConfig

    return BindingConfig(word_generator=args.word_generator,
                         word_discriminator=args.word_discriminator,
                         swap_weight=args.swap_weight, word_d_weight=args.word_d_weight,
                         damsm_swap_weight=args.damsm_swap_weight)


#: Options of ``train ssagan`` that override the recipe field of the same name.
RECIPE_OPTIONS = ("epochs", "batch_size", "resolution", "ngf", "ndf", "lr_g", "lr_d",
                  "damsm_weight", "finetune_text_encoder", "gp_mode", "ema_decay",
                  "mode_seeking_weight", "seed", "max_steps_per_epoch", "log_every")


def recipe_from(args: argparse.Namespace):
    """The named recipe with every option the command line gives."""
    name = args.recipe or ("toybirds" if args.dataset == "toybirds" else "paper")
    changes = {k: getattr(args, k) for k in RECIPE_OPTIONS if getattr(args, k) is not None}
    if args.no_amp:
        changes["amp"] = False
    if args.compile:
        changes["compile"] = True
    if args.tensorboard:
        changes["tensorboard"] = True
    recipe = RECIPES[name]
    for item in args.set:
        field, value = recipe_field(recipe, item)
        changes[field] = value
    return recipe.with_(**changes)


def _ssagan_damsm(args: argparse.Namespace, recipe: Any, data: Any, root: Path, run_dir: Path,
                  distributed: bool, device: Any) -> tuple[Any, Any, int]:
    """The run's DAMSM: ``--damsm`` (its vocabulary checked against the data's), else one
    pretrained into ``run_dir/damsm``. Returns the two encoders and the side the image encoder
    was trained at."""
    from t2ilib.damsm.image_encoder import (
        InceptionEncoder,
        InceptionEncoderConfig,
        SmallCNNConfig,
        SmallCNNEncoder,
    )
    from t2ilib.damsm.pretrain import (
        DAMSMTrainConfig,
        load_damsm,
        load_or_train_damsm,
        trained_image_size,
    )
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

    cfg, resolution = recipe.train, recipe.model.resolution
    if args.damsm is not None:
        from t2ilib.damsm.convert import check_damsm_vocabulary

        text_encoder, image_encoder, damsm_info = load_damsm(args.damsm)
        check_damsm_vocabulary(damsm_info["fingerprint"], data.vocab, args.damsm)
        return (text_encoder, image_encoder,
                trained_image_size(damsm_info["fingerprint"]) or resolution)
    if distributed:
        raise ValueError("pretrain the DAMSM first (one process), then pass --damsm")
    text_encoder = TextEncoder(TextEncoderConfig(len(data.vocab),
                                                 hidden_dim=recipe.model.sentence_dim))
    kind = args.image_encoder or ("inception" if args.dataset == "cub" else "small_cnn")
    dim = text_encoder.config.hidden_dim  # both encoders map into the sentence's space
    image_encoder = (InceptionEncoder(InceptionEncoderConfig(embed_dim=dim))
                     if kind == "inception" else SmallCNNEncoder(SmallCNNConfig(embed_dim=dim)))
    config = DAMSMTrainConfig(epochs=args.damsm_epochs, max_steps_per_epoch=cfg.max_steps_per_epoch)
    run = load_or_train_damsm(run_dir / "damsm", text_encoder, image_encoder,
                              CachedCUBDataset(root, "train", image_size=resolution,
                                               seed=cfg.seed),
                              config, batch_size=cfg.batch_size, seed=cfg.seed,
                              extra={"data": data.describe()}, device=device)
    if run.interrupted:
        raise _Interrupted("DAMSM pretraining", {"checkpoint": str(run.path)})
    return text_encoder, image_encoder, resolution


class _Interrupted(Exception):
    """A stage of ``train ssagan`` stopped by Ctrl-C / SIGTERM (its checkpoint saved)."""

    def __init__(self, stage: str, status: dict[str, Any]):
        super().__init__(stage)
        self.stage, self.status = stage, status


def _same_damsm(checkpoint: Path, damsm: Path, retrain: bool) -> str:
    """The DAMSM checkpoint's id (run folder and digest); raises ``CheckpointMismatch`` when the
    GAN run in ``checkpoint`` started from another DAMSM (e.g. its pretraining went on after
    the GAN began), which a resume or a load would otherwise mix silently."""
    from t2ilib.engine.checkpoint import checkpoint_id, read_checkpoint
    from t2ilib.engine.fingerprint import CheckpointMismatch
    from t2ilib.engine.sampling_file import refuse_sampling_only

    source = checkpoint_id(damsm)
    if checkpoint.is_file() and not retrain:
        payload = read_checkpoint(checkpoint, "ssagan")
        refuse_sampling_only(payload, checkpoint)  # that says more than a DAMSM mismatch
        stored = payload["meta"].get("damsm_source")
        if stored is not None and stored != source:
            raise CheckpointMismatch(
                f"{checkpoint} was trained from the DAMSM {stored}, but the DAMSM is now "
                f"{source} (did its pretraining go on after the GAN started?); train the GAN "
                "again with --retrain, or pass the DAMSM it started from with --damsm")
    return source


def train_ssagan(args: argparse.Namespace) -> int:
    import torch

    from t2ilib.damsm.image_encoder import SmallCNNEncoder
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.toybirds import SAMPLE_CAPTIONS
    from t2ilib.data.trainset import TrainData
    from t2ilib.engine import ddp
    from t2ilib.engine.loop import load_or_train
    from t2ilib.runtime import pick_device, repo_root, seed_everything
    from t2ilib.ssagan.train import ssagan_engine

    recipe = recipe_from(args)
    cfg, resolution = recipe.train, recipe.model.resolution
    info = ddp.init_distributed()
    device = pick_device(args.device)
    if info.distributed and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    root = dataset_root(args)
    run_dir = args.run_dir or repo_root() / "runs" / f"ssagan_{args.dataset}_{resolution}"
    seed_everything(cfg.seed)
    dataset = CachedCUBDataset(root, "train", image_size=resolution, uint8=True)
    toy = args.dataset == "toybirds"  # named as notebook 07 names it: the CLI resumes its runs
    data = TrainData.from_dataset(dataset, name="toybirds" if toy else f"cub:{root.name}")
    try:
        text_encoder, image_encoder, damsm_size = _ssagan_damsm(args, recipe, data, root,
                                                                run_dir, info.distributed, device)
    except _Interrupted as stop:  # never train the GAN on a half-trained DAMSM
        return interrupted(stop.stage, {"recipe": recipe.name, **stop.status})
    small_cnn = isinstance(image_encoder, SmallCNNEncoder)  # Inception resizes to 299 itself
    recipe = recipe.with_(sentence_dim=text_encoder.config.hidden_dim,
                          damsm_image_size=(damsm_size if small_cnn and damsm_size != resolution
                                            else None))
    binding = binding_from(args)
    if binding is None:
        engine = ssagan_engine(recipe, text_encoder, image_encoder, data, device=device,
                               run_dir=run_dir, dist=info,
                               sample_captions=SAMPLE_CAPTIONS if toy else None)
    else:
        from t2ilib.binding.train import binding_engine

        engine = binding_engine(recipe, binding, text_encoder, image_encoder, data,
                                device=device, run_dir=run_dir, dist=info,
                                sample_captions=SAMPLE_CAPTIONS if toy else None)
    engine.task.damsm_source = _same_damsm(engine.checkpoint_path,
                                           args.damsm or run_dir / "damsm", args.retrain)
    result = load_or_train(engine, retrain=args.retrain)
    status = {"recipe": recipe.name, "step": result.step, "epoch": result.epoch,
              "checkpoint": str(engine.checkpoint_path)}
    ddp.shutdown_distributed()
    if not info.is_main:
        return INTERRUPTED if result.interrupted else 0
    if result.interrupted:
        return interrupted("SSA-GAN training", status)
    print(json.dumps({"status": run_status(result), **status}))
    return 0
