"""The course's command line: ``python -m t2ilib <command> ...``.

Commands::

    python -m t2ilib train ssagan --dataset toybirds --epochs 20 --device cpu --resolution 64
    python -m t2ilib train ssagan --dataset cub --data-dir data/birds --device cuda \\
        --resolution 256 --epochs 600 --damsm DAMSM.pt
    torchrun --nproc_per_node=4 -m t2ilib train ssagan --dataset cub ...   # data parallel
    python -m t2ilib sample --checkpoint runs/ssagan/checkpoint.pt --caption "a red bird" \\
        -n 8 --out grid.png

``evaluate`` and ``manipulate`` join later as further sub-commands. Bad arguments and
expected failures (missing data, a checkpoint of another configuration) end with a one-line
``t2ilib: error: ...`` and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["build_parser", "main"]

RESOLUTIONS = (32, 64, 128, 256)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (sub-commands ``train ssagan`` and ``sample``)."""
    parser = argparse.ArgumentParser(prog="t2ilib", description="t2i-course command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a model")
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    ssa = models.add_parser("ssagan", help="train SSA-GAN (t2ilib.train.ssagan)")
    ssa.add_argument("--dataset", choices=("toybirds", "cub"), default="toybirds")
    ssa.add_argument("--data-dir", type=Path, default=None,
                     help="dataset folder (default: $T2I_DATA/toybirds or $T2I_DATA/birds)")
    ssa.add_argument("--run-dir", type=Path, default=None,
                     help="checkpoints, loss log, sample grids (default: runs/ssagan_<dataset>)")
    ssa.add_argument("--epochs", type=_positive, default=20)
    ssa.add_argument("--batch-size", type=_positive, default=24, help="per process")
    ssa.add_argument("--resolution", type=int, choices=RESOLUTIONS, default=64)
    ssa.add_argument("--ngf", type=_positive, default=None, help="default: 32 (toy), 64 (cub)")
    ssa.add_argument("--ndf", type=_positive, default=None, help="default: as ngf")
    ssa.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ssa.add_argument("--damsm", type=Path, default=None,
                     help="pretrained DAMSM checkpoint (t2ilib.train.damsm); "
                          "default: pretrain one into the run folder")
    ssa.add_argument("--damsm-epochs", type=_positive, default=10)
    ssa.add_argument("--image-encoder", choices=("small_cnn", "inception"), default=None,
                     help="for a DAMSM pretrained here (default: small_cnn, inception for cub)")
    ssa.add_argument("--finetune-text-encoder", action="store_true")
    ssa.add_argument("--gp-mode", choices=("separate", "joint"), default="separate")
    ssa.add_argument("--ema-decay", type=float, default=0.0)
    ssa.add_argument("--seed", type=int, default=100)
    ssa.add_argument("--max-steps-per-epoch", type=_positive, default=None)
    ssa.add_argument("--log-every", type=_positive, default=20)
    ssa.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    ssa.add_argument("--compile", action="store_true", help="torch.compile G and D")
    ssa.add_argument("--retrain", action="store_true", help="ignore an existing checkpoint")

    sample = commands.add_parser("sample", help="draw images for captions from a checkpoint")
    sample.add_argument("--checkpoint", type=Path, required=True)
    sample.add_argument("--caption", action="append", required=True,
                        help="a caption (repeat for several)")
    sample.add_argument("-n", type=_positive, default=8, help="images per caption")
    sample.add_argument("--out", type=Path, default=Path("grid.png"))
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sample.add_argument("--no-ema", action="store_true", help="use G, not its EMA copy")
    return parser


def _dataset_root(args: argparse.Namespace) -> Path:
    from t2ilib.runtime import data_root

    if args.dataset == "cub":
        return args.data_dir or data_root() / "birds"
    from t2ilib.data.toybirds import ensure_toybirds

    if args.data_dir is not None and (args.data_dir / "toybirds.json").is_file():
        return args.data_dir  # an existing ToyBirds set, whatever its size
    return ensure_toybirds(args.data_dir)


def _train_ssagan(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.cub import collate_sorted
    from t2ilib.models.image_encoder import InceptionEncoder, SmallCNNEncoder
    from t2ilib.models.ssagan import SSAGANConfig
    from t2ilib.runtime import pick_device, repo_root, seed_everything
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
    from t2ilib.train import ddp
    from t2ilib.train.damsm import DAMSMTrainConfig, load_damsm, load_or_train_damsm
    from t2ilib.train.ssagan import (
        SSAGANTrainConfig,
        SSAGANTrainer,
        TrainData,
        load_or_train_ssagan,
    )

    info = ddp.init_distributed()
    device = pick_device(args.device)
    if info.distributed and device.type == "cuda":
        device = torch.device("cuda", info.local_rank)
    root = _dataset_root(args)
    run_dir = args.run_dir or repo_root() / "runs" / f"ssagan_{args.dataset}_{args.resolution}"
    seed_everything(args.seed)
    dataset = CachedCUBDataset(root, "train", image_size=args.resolution, uint8=True)
    data = TrainData.from_dataset(dataset, name=f"{args.dataset}:{root.name}")
    if args.damsm is not None:
        text_encoder, image_encoder, _ = load_damsm(args.damsm)
    else:
        if info.distributed:
            raise ValueError("pretrain the DAMSM first (one process), then pass --damsm")
        text_encoder = TextEncoder(TextEncoderConfig(len(data.vocab)))
        kind = args.image_encoder or ("inception" if args.dataset == "cub" else "small_cnn")
        image_encoder = InceptionEncoder() if kind == "inception" else SmallCNNEncoder()
        loader = DataLoader(CachedCUBDataset(root, "train", image_size=args.resolution,
                                             seed=args.seed),
                            batch_size=args.batch_size, shuffle=True, drop_last=True,
                            collate_fn=collate_sorted)
        config = DAMSMTrainConfig(epochs=args.damsm_epochs,
                                  max_steps_per_epoch=args.max_steps_per_epoch)
        load_or_train_damsm(run_dir / "damsm.pt", text_encoder, image_encoder, loader, config,
                            extra={"data": data.describe(), "seed": args.seed}, device=device)
    ngf = args.ngf or (64 if args.dataset == "cub" else 32)
    model = SSAGANConfig(resolution=args.resolution, ngf=ngf, ndf=args.ndf or ngf)
    config = SSAGANTrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        finetune_text_encoder=args.finetune_text_encoder, gp_mode=args.gp_mode,
        ema_decay=args.ema_decay, max_steps_per_epoch=args.max_steps_per_epoch,
        log_every=args.log_every, amp=not args.no_amp, compile=args.compile)
    trainer = SSAGANTrainer(config, model, text_encoder, image_encoder, data, device=device,
                            run_dir=run_dir, dist=info)
    result = load_or_train_ssagan(trainer, retrain=args.retrain)
    if info.is_main:
        state = "interrupted" if result.interrupted else ("done" if result.trained else
                                                          "already trained (loaded)")
        print(json.dumps({"status": state, "step": result.step, "epoch": result.epoch,
                          "checkpoint": str(trainer.checkpoint_path)}))
    ddp.shutdown_distributed()
    return 0


def _sample(args: argparse.Namespace) -> int:
    import torch

    from t2ilib.train.ssagan import generate, load_generator
    from t2ilib.viz import save_grid

    g, text_encoder, vocab, _ = load_generator(args.checkpoint, args.device, not args.no_ema)
    captions = [c for c in args.caption for _ in range(args.n)]
    z = torch.randn(len(captions), g.config.nz,
                    generator=torch.Generator().manual_seed(args.seed))
    images, _ = generate(g, text_encoder, vocab, captions, z)
    save_grid(images, args.out, ncol=args.n)
    print(f"wrote {len(captions)} images to {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 with a one-line error on failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from t2ilib.train.checkpoint import CheckpointMismatch

    try:
        if args.command == "train":
            return _train_ssagan(args)
        return _sample(args)
    except (ValueError, FileNotFoundError, CheckpointMismatch) as err:
        message = " ".join(str(err).split())  # one line
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
