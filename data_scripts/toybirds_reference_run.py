"""The ToyBirds reference run: notebook 07's recipe trained 10x longer, judged at several points.

Notebook 07 trains the ``TOYBIRDS`` recipe for 7 epochs (about 10 CPU minutes). This script
trains the same recipe, with the same DAMSM (notebook 02's) and the same seed, to ``--stages``
epochs by *resuming* one run folder with more epochs each time, exactly what a student does to
continue notebook 07's run::

    python -m t2ilib train ssagan --recipe toybirds --epochs 21 \\
        --damsm data/checkpoints/damsm_toybirds32/checkpoint.pt \\
        --run-dir data/runs/nb07_toybirds_32px

After each stage it keeps a copy of the checkpoint (``epoch_NNN.pt``) and lets the ToyBirds
oracle judge it (``python -m t2ilib evaluate --metrics toy``: alignment per attribute beside its
anchors, and the toy FID). It writes one figure (the sample grids of every stage beside the
curves) and a JSON of the figures; notebook 07 shows both::

    python data_scripts/toybirds_reference_run.py                  # 7, 14, 35, 70 epochs
    python data_scripts/toybirds_reference_run.py --stages 7,14 --threads 1

Every stage that is already done is loaded, not retrained (the run resumes after Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
import time
from pathlib import Path

import torch

from t2ilib.apps import cli
from t2ilib.apps.evaluate import EvalConfig, evaluate_checkpoint
from t2ilib.damsm.pretrain import load_or_train_toybirds_damsm
from t2ilib.data.toybirds import ensure_toybirds
from t2ilib.engine.checkpoint import CHECKPOINT_NAME, read_checkpoint
from t2ilib.io import atomic_write, one_line_error, read_json
from t2ilib.runtime import data_root, repo_root

FIGURE = Path("docs/figures/toybirds_reference.png")
RESULTS = Path("docs/figures/toybirds_reference.json")


def train_stage(run_dir: Path, damsm: Path, epochs: int, device: str) -> float:
    """Train (resume) the run folder to ``epochs`` epochs; returns the wall seconds it took."""
    start = time.perf_counter()
    code = cli.main(["train", "ssagan", "--recipe", "toybirds", "--dataset", "toybirds",
                     "--damsm", str(damsm), "--run-dir", str(run_dir), "--epochs", str(epochs),
                     "--device", device])
    if code != 0:
        raise SystemExit(f"training to {epochs} epochs failed (exit {code})")
    reached = read_checkpoint(run_dir / CHECKPOINT_NAME, "ssagan")["counters"]["epoch"]
    if reached != epochs:  # Ctrl-C / SIGTERM: the engine saved and returned early
        raise SystemExit(f"stopped at epoch {reached} of {epochs}; run this script again to "
                         "resume")
    return time.perf_counter() - start


def judge(checkpoint: Path, root: Path, n_eval: int, device: str) -> dict:
    """The oracle's alignment table and toy FID of one checkpoint (notebook 07, section 8)."""
    report = evaluate_checkpoint(checkpoint, root, EvalConfig(metrics=("toy",), n_samples=n_eval),
                                 device=device)
    toy = report["toy"]
    align = toy["alignment"]
    return {"step": report["step"], "epoch": report["epoch"],
            "generated": {k: align["generated"][k]["accuracy"] for k in toy["judged"]}
            | {"mean": align["generated"]["mean"]},
            "shuffled_mean": align["shuffled"]["mean"], "real_mean": align["real"]["mean"],
            "chance": align["chance"],
            "toy_fid": toy["toy_fid"]["generated"], "toy_fid_floor": toy["toy_fid"]["real_vs_real"]}


def draw_figure(run_dir: Path, stages: list[dict], captions: list[str], path: Path) -> None:
    """Sample grids of every stage (left, each column's caption under the last grid) beside
    alignment and toy FID over epochs (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n = len(stages)
    fig = plt.figure(figsize=(11, 1.25 * n + 0.6))
    grid = fig.add_gridspec(n, 2, width_ratios=(2.6, 1), wspace=0.25)
    for row, stage in enumerate(stages):
        ax = fig.add_subplot(grid[row, 0])
        ax.imshow(Image.open(run_dir / "samples" / f"epoch_{stage['epoch']:03d}.png"),
                  interpolation="nearest")
        gen = stage["generated"]
        ax.set_title(f"epoch {stage['epoch']} (step {stage['step']:,}): body "
                     f"{gen['body_color']:.2f}, mean {gen['mean']:.2f}, "
                     f"toy FID {stage['toy_fid']:.0f}", fontsize=8, loc="left")
        ax.axis("off")
        if row == n - 1:  # the grid is one row of len(captions) cells: caption each column
            width, height = ax.images[0].get_size()[1], ax.images[0].get_size()[0]
            cell = width / len(captions)
            for i, caption in enumerate(captions):
                ax.text((i + 0.5) * cell, height + 2, textwrap.fill(caption, 14),
                        ha="center", va="top", fontsize=5.2)
    epochs = [s["epoch"] for s in stages]
    ax = fig.add_subplot(grid[: max(1, n // 2), 1])
    for key, style in (("body_color", "o-"), ("mean", "s-")):
        ax.plot(epochs, [s["generated"][key] for s in stages], style, label=f"generated: {key}")
    ax.plot(epochs, [s["shuffled_mean"] for s in stages], "k:", label="shuffled captions (mean)")
    ax.plot(epochs, [s["real_mean"] for s in stages], "g--", label="real images (mean)")
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("oracle alignment", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(grid[max(1, n // 2):, 1])
    ax.plot(epochs, [s["toy_fid"] for s in stages], "o-", label="generated")
    ax.plot(epochs, [s["toy_fid_floor"] for s in stages], "g--", label="real vs real (floor)")
    ax.set_ylabel("toy FID", fontsize=8)
    ax.set_xlabel("epoch", fontsize=8)
    ax.legend(fontsize=6)
    ax.tick_params(labelsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="7,14,35,70",
                        help="epochs after which the run is judged (ascending)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="default: $T2I_DATA/runs/toybirds_reference")
    parser.add_argument("--n-eval", type=int, default=1000, help="images the oracle judges")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args(argv)
    try:
        return run(args, argv)
    except (ValueError, OSError) as err:  # a bad or missing file, a mismatched checkpoint
        return one_line_error("toybirds_reference_run.py", err)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Train and judge every stage (resuming what is done), then write the figure + JSON."""
    stages = sorted({int(s) for s in args.stages.split(",")})
    if args.threads:
        torch.set_num_threads(args.threads)
    root = ensure_toybirds()
    damsm_run = load_or_train_toybirds_damsm(root)[2]
    run_dir = args.run_dir or data_root() / "runs" / "toybirds_reference"
    results_file = run_dir / "stages.json"
    done = read_json(results_file) if results_file.is_file() else {}
    for epochs in stages:
        kept = run_dir / f"epoch_{epochs:03d}.pt"
        if str(epochs) not in done:
            seconds = train_stage(run_dir, damsm_run.path, epochs, args.device)
            shutil.copyfile(run_dir / CHECKPOINT_NAME, kept)
            stage = judge(kept, root, args.n_eval, args.device)
            stage |= {"train_seconds": seconds, "threads": torch.get_num_threads()}
            done[str(epochs)] = stage
            with atomic_write(results_file, "w") as f:
                json.dump(done, f, indent=1)
        print(json.dumps({"epoch": epochs, **done[str(epochs)]["generated"],
                          "toy_fid": round(done[str(epochs)]["toy_fid"], 1)}))
    ordered = [done[str(e)] for e in stages]
    captions = read_checkpoint(run_dir / f"epoch_{stages[-1]:03d}.pt",
                               "ssagan")["meta"]["sample_captions"]
    draw_figure(run_dir, ordered, captions, repo_root() / FIGURE)
    (repo_root() / RESULTS).write_text(json.dumps(
        {"command": " ".join(["python data_scripts/toybirds_reference_run.py",
                                *(sys.argv[1:] if argv is None else argv)]),
         "stages": ordered}, indent=1) + "\n")
    print("wrote", FIGURE, "and", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
