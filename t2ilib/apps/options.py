"""Command-line helpers the ``train`` commands share: argument types, recipe overrides, data."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

__all__ = ["positive", "finite", "add_run_options", "add_data_options", "recipe_field",
           "dataset_root", "run_status", "interrupted", "INTERRUPTED"]


def positive(text: str) -> int:
    """An ``argparse`` type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def finite(text: str) -> float:
    """An ``argparse`` type: a finite number (argparse names the option when it is not: ``argument
    --lr-g: must be a finite number, got 'nan'``)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return value


def add_run_options(parser: argparse.ArgumentParser, set_example: str) -> None:
    """The options every ``train`` command has: device, seed, epoch cut, log interval, AMP,
    TensorBoard, retrain and ``--set`` (``set_example``: e.g. ``gate_init_g=0``)."""
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--max-steps-per-epoch", type=positive, default=None)
    parser.add_argument("--log-every", type=positive, default=None)
    parser.add_argument("--no-amp", action="store_true", help="fp32 on CUDA too")
    parser.add_argument("--tensorboard", action="store_true",
                        help="also log losses and samples to RUN_DIR/tensorboard")
    parser.add_argument("--retrain", action="store_true", help="ignore an existing checkpoint")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help=f"any other recipe field, e.g. --set {set_example} (repeatable)")


def recipe_field(recipe: Any, item: str) -> tuple[str, object]:
    """``"gate_init_g=0"`` -> ``("gate_init_g", 0.0)``, typed as the recipe's current value
    (a field of ``recipe.model`` or ``recipe.train``)."""
    field, sep, text = item.partition("=")
    current = {**vars(recipe.model), **vars(recipe.train)}
    if not sep or field not in current:
        raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                         f"{', '.join(sorted(current))}")
    kind = type(current[field])
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"--set {item!r}: {field} is true or false")
        return field, text.lower() in ("true", "1")
    if kind in (int, float, str):
        try:
            return field, kind(text)
        except ValueError:
            raise ValueError(f"--set {item!r}: {field} must be of type {kind.__name__}") from None
    raise ValueError(f"--set {item!r}: {field} ({kind.__name__}) cannot be set from the "
                     "command line")


def dataset_root(args: argparse.Namespace) -> Path:
    """``--data-dir`` or the data set's default folder under ``T2I_DATA``. ToyBirds is drawn in
    the default folder on first use, but in a ``--data-dir`` only with ``--create-data``: a
    mistyped path is an error, not a new data set."""
    from t2ilib.runtime import data_root

    if args.dataset in ("cub", "flowers"):
        return args.data_dir or data_root() / ("birds" if args.dataset == "cub" else "flowers")
    from t2ilib.data.toybirds import ensure_toybirds

    if args.data_dir is not None and (args.data_dir / "toybirds.json").is_file():
        return args.data_dir  # an existing ToyBirds set, whatever its size
    if args.data_dir is not None and not getattr(args, "create_data", False):
        what = "does not exist" if not args.data_dir.exists() else "holds no ToyBirds set"
        raise FileNotFoundError(f"--data-dir {args.data_dir} {what} (no toybirds.json); check "
                                "the path, or add --create-data to draw a new ToyBirds set there")
    return ensure_toybirds(args.data_dir)


def add_data_options(parser: argparse.ArgumentParser, default: str) -> None:
    """``--data-dir`` (help names the ``default`` folders) and ``--create-data``."""
    parser.add_argument("--data-dir", type=Path, default=None,
                        help=f"dataset folder (default: {default})")
    parser.add_argument("--create-data", action="store_true",
                        help="draw a new ToyBirds set in --data-dir if it holds none")


#: The exit status of a command stopped by Ctrl-C or SIGTERM (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def interrupted(stage: str, status: dict[str, Any]) -> int:
    """Report a stage stopped by Ctrl-C / SIGTERM: the JSON status line on stdout, one line on
    stderr saying what was saved and how to go on; returns :data:`INTERRUPTED`. The stages after
    it never run (no GAN is trained on a half-trained DAMSM)."""
    import json
    import sys

    print(json.dumps({"status": "interrupted", "stage": stage, **status}))
    where = f" ({status['checkpoint']})" if "checkpoint" in status else ""
    print(f"t2ilib: interrupted during {stage}: the last checkpoint is saved{where}; run the "
          "same command again to resume", file=sys.stderr)
    return INTERRUPTED


def run_status(result: Any) -> str:
    """The ``status`` a ``train`` command prints for a :class:`~t2ilib.engine.loop.TrainResult`."""
    if result.interrupted:
        return "interrupted"
    return "done" if result.trained else "already trained (loaded)"
