"""Notebook 11's runs: SSA-GAN and its word-level variants at notebook 07's budget, several seeds.

Each run is one ``train ssagan`` command (the ``TOYBIRDS`` recipe, 7 epochs = 1,162 steps,
notebook 02's DAMSM, the seed given) with the variant's options, judged by the ToyBirds oracle
on 1,000 test captions (``evaluate --metrics toy``: alignment, binding, toy FID)::

    python -m t2ilib train ssagan --recipe toybirds --damsm DAMSM --seed 101 \\
        --run-dir $T2I_DATA/runs/binding/swap_s101 --swap-weight 1
    python -m t2ilib evaluate --metrics toy --n-samples 1000 \\
        --checkpoint $T2I_DATA/runs/binding/swap_s101/checkpoint.pt --out ...swap_s101.eval.json

This script runs every (variant, seed) not yet judged, then writes the table of medians and
ranges to ``docs/figures/binding_runs.json`` (notebook 11 and ``docs/binding_experiments.md``
read it)::

    python data_scripts/binding_runs.py                                   # every variant, 3 seeds
    python data_scripts/binding_runs.py --variants baseline,swap --seeds 100 --threads 1

A run that is done is read, not trained again; Ctrl-C stops after saving (run it again to go on).
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from t2ilib.apps import cli
from t2ilib.binding.variants import VARIANTS, train_options
from t2ilib.damsm.pretrain import load_or_train_toybirds_damsm
from t2ilib.data.toybirds import ensure_toybirds
from t2ilib.engine.checkpoint import CHECKPOINT_NAME, read_checkpoint
from t2ilib.io import atomic_write, one_line_error, read_json
from t2ilib.runtime import data_root, repo_root

RESULTS = Path("docs/figures/binding_runs.json")

PARTS = ("body_color", "wing_color", "crown_color")


def run_one(variant: str, seed: int, damsm: Path, out: Path) -> dict[str, Any]:
    """Train (or resume) and judge one run, skipping what is done (a finished checkpoint, its
    ``.eval.json``); returns its figures (also written to ``out``)."""
    run_dir, eval_file = out.with_suffix(""), out.with_suffix(".eval.json")
    checkpoint = run_dir / CHECKPOINT_NAME
    start = time.perf_counter()
    done = checkpoint.is_file() and read_checkpoint(checkpoint, "ssagan")["counters"]["epoch"] >= 7
    if not done:
        code = cli.main(["train", "ssagan", "--recipe", "toybirds", "--dataset", "toybirds",
                         "--damsm", str(damsm), "--run-dir", str(run_dir), "--seed", str(seed),
                         *train_options(VARIANTS[variant])])
        payload = read_checkpoint(checkpoint, "ssagan")
        if code != 0 or payload["counters"]["epoch"] < 7:
            raise SystemExit(f"{variant} seed {seed} stopped (exit {code}); run again to resume")
    if not eval_file.is_file() and cli.main(
            ["evaluate", "--metrics", "toy", "--n-samples", "1000", "--checkpoint",
             str(checkpoint), "--out", str(eval_file)]) != 0:
        raise SystemExit(f"judging {variant} seed {seed} failed")
    counters = read_checkpoint(checkpoint, "ssagan")["counters"]
    toy = read_json(eval_file)["toy"]
    gen, bind = toy["alignment"]["generated"], toy["binding"]["generated"]
    figures = {"variant": variant, "seed": seed, "step": counters["step"],
               "train_seconds": counters.get("train_seconds", time.perf_counter() - start),
               **{p: gen[p]["accuracy"] for p in PARTS}, "mean": gen["mean"],
               "own": bind["mean"]["own"], "leak": bind["mean"]["leak"],
               **{f"{p}_own": bind[p]["own"] for p in PARTS},
               **{f"{p}_leak": bind[p]["leak"] for p in PARTS},
               "toy_fid": toy["toy_fid"]["generated"], "losses": loss_trend(run_dir / "losses.csv")}
    with atomic_write(out, "w") as f:
        json.dump(figures, f, indent=1)
    return figures


def loss_trend(log: Path) -> dict[str, list[float]]:
    """Each loss column's mean over the first 5 and the last 10 rows of the loss log (a row
    every 10 steps): ``{name: [start, end]}``, for the terms that were on."""
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    trend = {}
    for name in rows[0]:
        if name in ("step", "epoch"):
            continue
        start = statistics.mean(float(r[name]) for r in rows[:5])
        end = statistics.mean(float(r[name]) for r in rows[-10:])
        if start or end:
            trend[name] = [round(start, 3), round(end, 3)]
    return trend


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant and figure: median, min and max over its seeds."""
    keys = (*PARTS, "mean", "own", "leak", "toy_fid", "train_seconds")
    table: dict[str, dict[str, Any]] = {}
    for variant in dict.fromkeys(r["variant"] for r in runs):
        rows = [r for r in runs if r["variant"] == variant]
        table[variant] = {"seeds": [r["seed"] for r in rows]} | {
            k: {"median": statistics.median(r[k] for r in rows),
                "min": min(r[k] for r in rows), "max": max(r[k] for r in rows)} for k in keys}
    return table


def markdown(table: dict[str, dict[str, Any]]) -> str:
    """The summary as the markdown table of ``docs/binding_experiments.md``: median [min-max]."""
    keys = (*PARTS, "mean", "own", "leak", "toy_fid")
    lines = ["| variant | seeds | " + " | ".join(k.replace("_color", "") for k in keys) + " |",
             "|---" * (len(keys) + 2) + "|"]
    for variant, row in table.items():
        cells = [f"{row[k]['median']:.3f} [{row[k]['min']:.3f}-{row[k]['max']:.3f}]"
                 if k != "toy_fid" else f"{row[k]['median']:.1f} [{row[k]['min']:.1f}-"
                 f"{row[k]['max']:.1f}]" for k in keys]
        seeds = ", ".join(str(s) for s in row["seeds"])
        lines.append(f"| {variant} | {seeds} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, of {', '.join(VARIANTS)}")
    parser.add_argument("--seeds", default="100,101,102")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--done-only", action="store_true",
                        help="table the runs that are judged already; train nothing")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        damsm = load_or_train_toybirds_damsm(ensure_toybirds())[2].path
        folder = data_root() / "runs" / "binding"
        runs = []
        for variant in variants:
            for seed in (int(s) for s in args.seeds.split(",")):
                out = folder / f"{variant}_s{seed}.json"
                if args.done_only and not out.with_suffix(".eval.json").is_file():
                    continue
                runs.append(read_json(out) if out.is_file() else
                            run_one(variant, seed, damsm, out))
                print(json.dumps({k: runs[-1][k] for k in ("variant", "seed", *PARTS, "own",
                                                             "leak")}))
    except (ValueError, OSError) as err:
        return one_line_error("binding_runs.py", err)
    command = " ".join(["python data_scripts/binding_runs.py",
                        *(sys.argv[1:] if argv is None else argv)])
    (repo_root() / RESULTS).write_text(json.dumps(
        {"command": command, "summary": summary(runs), "runs": runs}, indent=1) + "\n")
    print(markdown(summary(runs)))
    print("wrote", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
