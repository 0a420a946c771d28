"""The course's command line: ``python -m t2ilib <command> ...``.

Commands::

    python -m t2ilib train ssagan --dataset toybirds --epochs 20 --device cpu   # TOYBIRDS
    python -m t2ilib train sisgan --recipe toybirds --epochs 40    # SISGAN (apps/train_sisgan.py)
    python -m t2ilib train ssagan --recipe paper --dataset cub --data-dir data/birds \\
        --device cuda --damsm DAMSM.pt                                    # the paper's run
    torchrun --nproc_per_node=4 -m t2ilib train ssagan --dataset cub ...   # data parallel
    python -m t2ilib sample --checkpoint runs/ssagan/checkpoint.pt --caption "a red bird" \\
        -n 8 --out grid.png
    python -m t2ilib evaluate --checkpoint runs/ssagan/checkpoint.pt \\
        --metrics fid,is,rprec,toy --n-samples 30000 --out report.json
    python -m t2ilib manipulate --checkpoint data/runs/sisgan_toybirds64/checkpoint.pt \\
        --image bird.jpg --caption "this bird has a red belly and blue wings" --out edited.png
    python -m t2ilib convert-damsm --text text_encoder200.pth --image image_encoder200.pth \\
        --captions data/birds/captions.pickle --out data/checkpoints/damsm_cub_attngan/checkpoint.pt
    python -m t2ilib doctor [--data-root DIR] [--json]   # data, weight files, GPU per run
    python -m t2ilib export data/runs/nb07_toybirds_32px/checkpoint.pt my_model.pt  # G + text
        encoder only, float16 (t2ilib.engine.sampling_file): what sample and manipulate need

Bad arguments and expected failures (missing data, a checkpoint of another configuration)
end with a one-line ``t2ilib: error: ...`` and exit status 2, not a traceback. Ctrl-C ends
any command with one ``t2ilib: interrupted ...`` line and exit status 130 (the training
stages save first and say which; a rerun of the same command resumes them).
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from t2ilib.apps.options import (
    INTERRUPTED,
    add_data_options,
    dataset_root,
    positive,
)
from t2ilib.apps.train_sisgan import add_parser as add_sisgan_parser
from t2ilib.apps.train_sisgan import train_sisgan
from t2ilib.apps.train_ssagan import add_parser as add_ssagan_parser
from t2ilib.apps.train_ssagan import train_ssagan

__all__ = ["build_parser", "main", "MAX_SAMPLES"]

#: ``sample`` writes one PNG grid: at most this many images (memory and file size stay bounded).
MAX_SAMPLES = 1024
#: ``sample`` draws this many images per generator call, and wraps a caption's row after as many.
SAMPLE_BATCH = 64


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (``train ssagan``, ``train sisgan``, ``sample``, ``evaluate``,
    ``manipulate``, ``convert-damsm``, ``doctor``, ``export``)."""
    parser = argparse.ArgumentParser(prog="t2ilib", description="t2i-course command line")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = commands.add_parser("train", help="train a model")
    models = train.add_subparsers(dest="model", required=True, metavar="MODEL")
    add_ssagan_parser(models)
    add_sisgan_parser(models)
    for add in (_add_sample, _add_evaluate, _add_manipulate, _add_convert_damsm, _add_doctor,
                _add_export):
        add(commands)
    return parser


def _add_sample(commands: Any) -> None:
    """``sample``: images for captions from an SSA-GAN checkpoint."""
    sample = commands.add_parser("sample", help="draw images for captions from a checkpoint")
    sample.add_argument("--checkpoint", type=Path, required=True)
    sample.add_argument("--caption", action="append", required=True,
                        help="a caption (repeat for several)")
    sample.add_argument("-n", type=positive, default=8,
                        help=f"images per caption (at most {MAX_SAMPLES} images in all)")
    sample.add_argument("--out", type=Path, default=Path("grid.png"))
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sample.add_argument("--no-ema", action="store_true", help="use G, not its EMA copy")


def _add_evaluate(commands: Any) -> None:
    """``evaluate``: FID, IS, R-precision and the ToyBirds metrics of a checkpoint."""
    ev = commands.add_parser("evaluate", help="FID, IS, R-precision, ToyBirds oracle metrics "
                                              "of a checkpoint (t2ilib.apps.evaluate)")
    ev.add_argument("--checkpoint", type=Path, required=True)
    ev.add_argument("--dataset", choices=("toybirds", "cub"), default="toybirds")
    add_data_options(ev, "$T2I_DATA/toybirds or $T2I_DATA/birds")
    ev.add_argument("--metrics", default="fid,is,rprec,toy",
                    help="comma-separated: fid, is, rprec, toy (toy: ToyBirds only)")
    ev.add_argument("--n-samples", type=positive, default=30_000,
                    help="generated images (the papers: 30,000)")
    ev.add_argument("--samples-per-image", type=positive, default=10,
                    help="walks over the test set; walk k uses each image's caption k mod 10")
    ev.add_argument("--batch-size", type=positive, default=100)
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


def _add_manipulate(commands: Any) -> None:
    """``manipulate``: edit an image with a SISGAN checkpoint."""
    man = commands.add_parser("manipulate", help="edit an image to match a caption with a "
                                                 "SISGAN checkpoint (t2ilib.sisgan)")
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


def _add_export(commands: Any) -> None:
    """``export``: the sampling-only copy of a training checkpoint."""
    exp = commands.add_parser("export", help="keep only G and the text encoder of an SSA-GAN or "
                              "SISGAN checkpoint, in float16 (t2ilib.engine.sampling_file)")
    exp.add_argument("checkpoint", type=Path, help="a training checkpoint or its run folder")
    exp.add_argument("out", type=Path, help="the file to write (.pt)")


def _add_convert_damsm(commands: Any) -> None:
    """``convert-damsm``: import AttnGAN's released DAMSM for CUB."""
    conv = commands.add_parser("convert-damsm", help="import AttnGAN's released DAMSM for CUB "
                                                     "(t2ilib.damsm.convert)")
    conv.add_argument("--text", type=Path, default=None, help="text_encoder200.pth (default: "
                      "$T2I_DATA/checkpoints/DAMSMencoders/bird/text_encoder200.pth)")
    conv.add_argument("--image", type=Path, default=None, help="image_encoder200.pth (default: "
                      "beside the text encoder)")
    conv.add_argument("--captions", type=Path, default=None, help="AttnGAN's birds "
                      "captions.pickle, the encoder's vocabulary (default: $T2I_DATA/birds/)")
    conv.add_argument("--out", type=Path, default=None, help="default: $T2I_DATA/checkpoints/"
                      "damsm_cub_attngan/checkpoint.pt (then: train ssagan --damsm OUT)")


def _add_doctor(commands: Any) -> None:
    """``doctor``: which data, weight files and GPU each run finds."""
    doc = commands.add_parser("doctor", help="which data, weight files and GPU each run "
                                             "finds (t2ilib.apps.doctor)")
    doc.add_argument("--data-root", type=Path, default=None, help="default: $T2I_DATA or data/")
    doc.add_argument("--json", action="store_true", help="print JSON instead of tables")


def _warn_captions(vocab, captions: Sequence[str]) -> None:
    """Say on stderr how each caption is read: unknown words ignored, words cut after 18
    (named); a caption the model cannot read raises ``ValueError`` (exit 2). The
    vocabulary's own unknown-word warning is then silenced (``main`` does it)."""
    from t2ilib.apps.demo import caption_notes

    for i, caption in enumerate(captions, 1):
        for note in caption_notes(vocab, caption):
            print(f"t2ilib: warning: caption {i}: {note}", file=sys.stderr)


def _sample(args: argparse.Namespace) -> int:
    import torch

    from t2ilib.binding.sampling import load_any_generator
    from t2ilib.ssagan.sampling import generate
    from t2ilib.viz import save_grid, to_uint8

    total = args.n * len(args.caption)
    if total > MAX_SAMPLES:
        raise ValueError(f"-n {args.n} x {len(args.caption)} caption(s) = {total:,} images; one "
                         f"grid holds at most {MAX_SAMPLES:,} (run sample several times with "
                         "other --seed values for more)")
    g, text_encoder, vocab, _ = load_any_generator(args.checkpoint, args.device, not args.no_ema)
    _warn_captions(vocab, args.caption)
    captions = [c for c in args.caption for _ in range(args.n)]
    z = torch.randn(len(captions), g.config.nz,
                    generator=torch.Generator().manual_seed(args.seed))
    images = torch.cat([to_uint8(generate(g, text_encoder, vocab, captions[a:a + SAMPLE_BATCH],
                                          z[a:a + SAMPLE_BATCH])[0])
                        for a in range(0, len(captions), SAMPLE_BATCH)])  # uint8: 1/4 the memory
    save_grid(images, args.out, ncol=min(args.n, SAMPLE_BATCH))
    print(f"wrote {len(captions)} images to {args.out}")
    return 0


def _evaluate(args: argparse.Namespace) -> int:
    from t2ilib.apps.evaluate import EvalConfig, parse_metrics
    from t2ilib.io import atomic_write

    metrics = parse_metrics(args.metrics)
    if not args.checkpoint.is_file():
        raise FileNotFoundError(f"no such file: {args.checkpoint}")
    from t2ilib.apps.evaluate import evaluate_checkpoint

    config = EvalConfig(metrics=metrics, n_samples=args.n_samples,
                        samples_per_image=args.samples_per_image, batch_size=args.batch_size,
                        seed=args.seed, use_ema=not args.no_ema,
                        fid_weights=str(args.fid_weights) if args.fid_weights else None)
    report = evaluate_checkpoint(args.checkpoint, dataset_root(args), config,
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

    from t2ilib.sisgan.sampling import images_from_files, load_sisgan, manipulate
    from t2ilib.viz import save_grid

    if not args.image.is_file():
        raise FileNotFoundError(f"no such image: {args.image}")
    g, text_encoder, vocab, _ = load_sisgan(args.checkpoint, args.device)
    _warn_captions(vocab, [args.caption])
    source = images_from_files([args.image], g.config.image_size)  # (1, 3, S, S)
    edited = manipulate(g, text_encoder, vocab, source, [args.caption], seed=args.seed)
    images = torch.cat([source, edited]) if args.side_by_side else edited
    save_grid(images, args.out, ncol=len(images))
    print(f"wrote {args.out}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from t2ilib.engine.checkpoint import checkpoint_file, checkpoint_id
    from t2ilib.engine.sampling_file import export_sampling_file

    source = checkpoint_file(args.checkpoint)
    if not source.is_file():
        raise FileNotFoundError(f"no checkpoint at {args.checkpoint}")
    out = export_sampling_file(source, args.out)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({size:.1f} MiB, from {source.stat().st_size / 2**20:.1f} MiB; "
          f"{checkpoint_id(out).split('@')[1]}): use it with sample --checkpoint "
          f"or manipulate --checkpoint")
    return 0


def _convert_damsm(args: argparse.Namespace) -> int:
    from t2ilib.damsm.convert import attngan_release_files, convert_attngan_damsm

    default = attngan_release_files()
    text = args.text or default["text"]
    image = args.image or (text.parent / default["image"].name if args.text else default["image"])
    out = convert_attngan_damsm(text, image, args.captions or default["captions"], args.out)
    print(f"wrote {out} (AttnGAN's DAMSM for CUB; use it with: train ssagan --damsm {out})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 with a one-line error on failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "dropping words not in the vocabulary", UserWarning)
            if args.command == "train":
                return train_ssagan(args) if args.model == "ssagan" else train_sisgan(args)
            if args.command == "evaluate":
                return _evaluate(args)
            if args.command == "manipulate":
                return _manipulate(args)
            if args.command == "convert-damsm":
                return _convert_damsm(args)
            if args.command == "export":
                return _export(args)
            if args.command == "doctor":
                from t2ilib.apps.doctor import run_doctor

                return run_doctor(args.data_root, as_json=args.json)
            return _sample(args)
    except (ValueError, OSError) as err:  # BadFileError, CheckpointMismatch are ValueErrors
        message = " ".join(str(err).split())  # one line
        parser.exit(2, f"{parser.prog}: error: {message}\n")
    except KeyboardInterrupt as stop:  # where no stage reports it (evaluate, data loading...)
        said = " ".join(str(stop).split()) or "stopped by Ctrl-C; run the same command again"
        print(f"{parser.prog}: interrupted: {said}", file=sys.stderr)
        return INTERRUPTED
    return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
