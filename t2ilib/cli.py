"""The course's command line: ``python -m t2ilib <command> ...``.

Commands::

    python -m t2ilib train ssagan --dataset toybirds --epochs 20 --device cpu --resolution 64
    python -m t2ilib train ssagan --dataset cub --data-dir data/birds --device cuda \\
        --resolution 256 --epochs 600 --damsm DAMSM.pt
    torchrun --nproc_per_node=4 -m t2ilib train ssagan --dataset cub ...   # data parallel
    python -m t2ilib sample --checkpoint runs/ssagan/checkpoint.pt --caption "a red bird" \\
        -n 8 --out grid.png
    python -m t2ilib evaluate --checkpoint runs/ssagan/checkpoint.pt \\
        --metrics fid,is,rprec,toy --n-samples 30000 --out report.json
    python -m t2ilib manipulate --checkpoint data/checkpoints/sisgan_toybirds64.pt \\
        --image bird.jpg --caption "this bird has a red belly and blue wings" --out edited.png

Bad arguments and expected failures (missing data, a checkpoint of another configuration)
end with a one-line ``t2ilib: error: ...`` and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
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
    """The argument parser (sub-commands ``train ssagan``, ``sample`` and ``evaluate``)."""
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
    ssa.add_argument("--ndf", type=_positive, default=None,
                     help="default: 16 (toy), as ngf (cub)")
    ssa.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ssa.add_argument("--damsm", type=Path, default=None,
                     help="pretrained DAMSM checkpoint (t2ilib.train.damsm); "
                          "default: pretrain one into the run folder")
    ssa.add_argument("--damsm-epochs", type=_positive, default=10)
    ssa.add_argument("--image-encoder", choices=("small_cnn", "inception"), default=None,
                     help="for a DAMSM pretrained here (default: small_cnn, inception for cub)")
    ssa.add_argument("--lr-g", type=float, default=None,
                     help="G's learning rate (default: 4e-4 toybirds, the paper's 1e-4 cub)")
    ssa.add_argument("--lr-d", type=float, default=None,
                     help="D's learning rate (default: 1.6e-3 toybirds, the paper's 4e-4 cub)")
    ssa.add_argument("--damsm-weight", type=float, default=None,
                     help="lambda of G's DAMSM term (default: 1 toybirds, the paper's 0.05 cub)")
    ssa.add_argument("--finetune-text-encoder", action=argparse.BooleanOptionalAction,
                     default=None, help="train the DAMSM encoders jointly (main_finetune.py; "
                     "default: on for toybirds, off for cub)")
    ssa.add_argument("--gp-mode", choices=("separate", "joint"), default="separate")
    ssa.add_argument("--ema-decay", type=float, default=0.0)
    ssa.add_argument("--mode-seeking-weight", type=float, default=0.0,
                     help="weight of MSGAN's diversity term in G's loss (default 0: off)")
    ssa.add_argument("--seed", type=int, default=100)
    ssa.add_argument("--max-steps-per-epoch", type=_positive, default=None)
    ssa.add_argument("--log-every", type=_positive, default=20)
    ssa.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    ssa.add_argument("--compile", action="store_true", help="torch.compile G and D")
    ssa.add_argument("--tensorboard", action="store_true",
                     help="also log losses and samples to RUN_DIR/tensorboard")
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

    ev = commands.add_parser("evaluate", help="FID, IS, R-precision, ToyBirds oracle metrics "
                                              "of a checkpoint (t2ilib.metrics.evaluate)")
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--dataset", choices=("toybirds", "cub"), default="toybirds")
    ev.add_argument("--data-dir", type=Path, default=None,
                    help="dataset folder (default: $T2I_DATA/toybirds or $T2I_DATA/birds)")
    ev.add_argument("--metrics", default="fid,is,rprec,toy",
                    help="comma-separated: fid, is, rprec, toy (toy: ToyBirds only)")
    ev.add_argument("--n-samples", type=_positive, default=30_000,
                    help="generated images (the papers: 30,000)")
    ev.add_argument("--samples-per-image", type=_positive, default=10,
                    help="walks over the test set; walk k uses each image's caption k mod 10")
    ev.add_argument("--batch-size", type=_positive, default=100)
    ev.add_argument("--seed", type=int, default=0)
    ev.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    ev.add_argument("--no-ema", action="store_true", help="use G, not its EMA copy")
    ev.add_argument("--fid-weights", type=Path, default=None,
                    help="pt_inception-2015-12-05-6726825d.pth (default: $T2I_FID_WEIGHTS, "
                         "then the torch hub cache)")
    ev.add_argument("--damsm", type=Path, default=None,
                    help="a held-out DAMSM for R-precision (default: the checkpoint's encoders)")
    ev.add_argument("--oracle", type=Path, default=None,
                    help="ToyBirds oracle file (default: load or train the data set's oracle)")
    ev.add_argument("--out", type=Path, default=Path("report.json"))

    man = commands.add_parser("manipulate", help="edit an image to match a caption with a "
                                                 "SISGAN checkpoint (t2ilib.train.sisgan)")
    man.add_argument("--checkpoint", type=Path, required=True)
    man.add_argument("--image", type=Path, required=True,
                     help="source image (centre-cropped to a square, resized to the model's size)")
    man.add_argument("--caption", required=True, help="what the edited image should show")
    man.add_argument("--out", type=Path, default=Path("edited.png"))
    man.add_argument("--seed", type=int, default=None,
                     help="draw the augmentation noise with this seed (default: its mean, 0)")
    man.add_argument("--side-by-side", action="store_true",
                     help="write the source and the edit next to each other")
    man.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
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
    from t2ilib.train.damsm import (
        DAMSMTrainConfig,
        load_damsm,
        load_or_train_damsm,
        trained_image_size,
    )
    from t2ilib.train.ssagan import (
        TOYBIRDS_TRAIN,
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
    damsm_size = args.resolution
    if args.damsm is not None:
        text_encoder, image_encoder, damsm_info = load_damsm(args.damsm)
        damsm_size = trained_image_size(damsm_info["fingerprint"]) or args.resolution
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
    ndf = args.ndf or (16 if args.dataset == "toybirds" else ngf)
    model = SSAGANConfig(resolution=args.resolution, ngf=ngf, ndf=ndf)
    base = TOYBIRDS_TRAIN if args.dataset == "toybirds" else SSAGANTrainConfig()
    small_cnn = isinstance(image_encoder, SmallCNNEncoder)
    finetune = (base.finetune_text_encoder if args.finetune_text_encoder is None
                else args.finetune_text_encoder)
    config = dataclasses.replace(  # the recipe, with what the command line sets
        base, epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
        lr_g=base.lr_g if args.lr_g is None else args.lr_g,
        lr_d=base.lr_d if args.lr_d is None else args.lr_d,
        damsm_weight=base.damsm_weight if args.damsm_weight is None else args.damsm_weight,
        finetune_damsm_weight=(base.finetune_damsm_weight if args.damsm_weight is None
                               else args.damsm_weight),
        damsm_image_size=damsm_size if small_cnn and damsm_size != args.resolution else None,
        finetune_text_encoder=finetune, gp_mode=args.gp_mode, ema_decay=args.ema_decay,
        mode_seeking_weight=args.mode_seeking_weight,
        max_steps_per_epoch=args.max_steps_per_epoch, log_every=args.log_every,
        amp=not args.no_amp, compile=args.compile, tensorboard=args.tensorboard)
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


def _evaluate(args: argparse.Namespace) -> int:
    from t2ilib.io import atomic_write
    from t2ilib.metrics.evaluate import EvalConfig, parse_metrics

    metrics = parse_metrics(args.metrics)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"no such file: {args.checkpoint}")
    from t2ilib.metrics.evaluate import evaluate_checkpoint

    config = EvalConfig(metrics=metrics, n_samples=args.n_samples,
                        samples_per_image=args.samples_per_image, batch_size=args.batch_size,
                        seed=args.seed, use_ema=not args.no_ema,
                        fid_weights=str(args.fid_weights) if args.fid_weights else None)
    report = evaluate_checkpoint(args.checkpoint, _dataset_root(args), config,
                                 device=args.device, damsm=args.damsm, oracle=args.oracle)
    with atomic_write(args.out, "w") as f:
        json.dump(report, f, indent=1)
    summary = {"n_samples": report["protocol"]["n_samples"]}
    if "fid" in report:
        summary["fid"] = round(report["fid"]["value"], 3)
    if "is" in report:
        summary["is"] = [round(report["is"]["mean"], 3), round(report["is"]["std"], 3)]
    if "rprec" in report:
        summary["rprec"] = round(report["rprec"]["mean"], 4)
    if "toy" in report:
        toy = report["toy"]
        summary["toy_alignment"] = {k: toy["alignment"][k]["mean"]
                                    for k in ("generated", "real", "shuffled", "chance")}
        summary["toy_fid"] = [toy["toy_fid"]["generated"], toy["toy_fid"]["real_vs_real"]]
    print(json.dumps(summary))
    print(f"wrote {args.out}")
    return 0


def _manipulate(args: argparse.Namespace) -> int:
    import torch

    from t2ilib.train.sisgan import images_from_files, load_sisgan, manipulate
    from t2ilib.viz import save_grid

    if not args.image.is_file():
        raise FileNotFoundError(f"no such image: {args.image}")
    g, text_encoder, vocab, _ = load_sisgan(args.checkpoint, args.device)
    source = images_from_files([args.image], g.config.image_size)  # (1, 3, S, S)
    edited = manipulate(g, text_encoder, vocab, source, [args.caption], seed=args.seed)
    images = torch.cat([source, edited]) if args.side_by_side else edited
    save_grid(images, args.out, ncol=len(images))
    print(f"wrote {args.out}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 with a one-line error on failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    from t2ilib.train.checkpoint import CheckpointMismatch

    try:
        if args.command == "train":
            return _train_ssagan(args)
        if args.command == "evaluate":
            return _evaluate(args)
        if args.command == "manipulate":
            return _manipulate(args)
        return _sample(args)
    except (ValueError, FileNotFoundError, CheckpointMismatch) as err:
        message = " ".join(str(err).split())  # one line
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
