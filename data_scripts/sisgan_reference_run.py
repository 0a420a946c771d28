"""The SISGAN reference run: notebook 09's run resumed to 10x its length, judged at several points.

Notebook 09 trains the ``toybirds`` recipe for 4 epochs (a few CPU minutes). This script copies
that run's checkpoint (when notebook 09 has written it) into its own run folder and *resumes* it
to each of ``--stages`` epochs, exactly what a student does to continue notebook 09's run::

    python -m t2ilib train sisgan --recipe toybirds --epochs 40 \\
        --run-dir data/runs/sisgan_toybirds64

After each stage it keeps a copy of the checkpoint (``epoch_NNN.pt``), edits the same held-out
test birds with the same captions (notebook 09, section 9) and lets the ToyBirds oracle judge the
edits of ``--n-eval`` test birds (section 10: target accuracy of the requested changes, and what
is kept). It writes one figure (the edits of every stage and the curves) and a JSON table;
notebook 09 shows both::

    python data_scripts/sisgan_reference_run.py                   # 4, 8, 20, 40 epochs
    python data_scripts/sisgan_reference_run.py --stages 4,8 --threads 1
    python data_scripts/sisgan_reference_run.py --stages 4,20 --set recon_weight=1 \
        --name sisgan_recon1                                        # a variant, from scratch

Every stage that is already done is loaded, not retrained (the run resumes after Ctrl-C).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import textwrap
from pathlib import Path

import torch

from t2ilib.apps import cli
from t2ilib.data.augment import center_crop
from t2ilib.data.cub import read_caption_lines
from t2ilib.data.toybirds import ensure_toybirds
from t2ilib.data.trainset import load_native_split
from t2ilib.engine.checkpoint import CHECKPOINT_NAME, read_checkpoint
from t2ilib.io import atomic_write, one_line_error, read_json
from t2ilib.metrics.manipulation import make_pairs, score_manipulation, to_unit
from t2ilib.metrics.toy_oracle_train import load_or_train_oracle
from t2ilib.runtime import data_root, pick_device, repo_root
from t2ilib.sisgan.sampling import load_sisgan, manipulate

FIGURES = Path("docs/figures")
#: The captions of notebook 09's before/after grid (section 9), one column each.
CAPTIONS = ["this bird has a red belly and blue wings",
            "a bird with a yellow body and black wings",
            "this bird has a white belly, green wings and a red crown",
            "a purple bird with an orange beak"]
N_SOURCES = 2  # held-out test birds shown per stage (the first of the test split)


def train_stage(run_dir: Path, epochs: int, device: str, changes: list[str]) -> None:
    """Train (resume) the run folder to ``epochs`` epochs with ``train sisgan`` (``changes``:
    recipe fields to set, ``FIELD=VALUE``)."""
    code = cli.main(["train", "sisgan", "--recipe", "toybirds", "--run-dir", str(run_dir),
                     "--epochs", str(epochs), "--device", device,
                     *(arg for change in changes for arg in ("--set", change))])
    if code != 0:
        raise SystemExit(f"training to {epochs} epochs failed (exit {code})")
    reached = read_checkpoint(run_dir / CHECKPOINT_NAME, "sisgan")["counters"]["epoch"]
    if reached != epochs:  # Ctrl-C / SIGTERM: the engine saved and returned early
        raise SystemExit(f"stopped at epoch {reached} of {epochs}; run this script again to "
                         "resume")


def shown_sources(root: Path) -> torch.Tensor:
    """The held-out birds every stage edits: the first of the test split, ``(N, 3, S, S)``."""
    test = load_native_split(root, "test", name="toybirds")
    return center_crop(test.images[:N_SOURCES], test.image_size)


def judge(checkpoint: Path, root: Path, n_eval: int, device: str) -> tuple[dict, torch.Tensor]:
    """The oracle's edit and preservation figures of one checkpoint (notebook 09, section 10)
    and its edits of the shown sources, ``(N_SOURCES, len(CAPTIONS), 3, S, S)``."""
    g, text_encoder, vocab, _ = load_sisgan(checkpoint, device)
    oracle, report = load_or_train_oracle(root, device=device)
    pairs = make_pairs(root, "test", n=n_eval, seed=0)
    x = to_unit(pairs.images)
    own = [read_caption_lines(root / "text" / f"{k}.txt")[0] for k in pairs.keys]
    edited = manipulate(g, text_encoder, vocab, x, pairs.captions)
    rebuilt = manipulate(g, text_encoder, vocab, x, own)
    sources = shown_sources(root)
    shown = torch.stack([manipulate(g, text_encoder, vocab, sources, [c]) for c in CAPTIONS], 1)
    payload = read_checkpoint(checkpoint, "sisgan")
    counters = payload["counters"]
    stage = {"epoch": int(counters["epoch"]), "step": int(counters["step"]),
             "train_seconds": int(counters.get("train_seconds", 0)),
             "trained_on": payload["meta"].get("trained_on", ""), "n_eval": len(pairs),
             "edit": (edits := score_manipulation(oracle, report, pairs, edited)).row(),
             "own_caption": score_manipulation(oracle, report, pairs, rebuilt).row(),
             # how far the new caption moves the output from the own caption's (0-255)
             "caption_effect": 127.5 * (edited - rebuilt).abs().mean().item(),
             "target_per_attribute": {a: list(c) for a, c in edits.target.items() if c[1]}}
    return stage, shown


def draw_figure(stages: list[dict], edits: list[torch.Tensor], sources: torch.Tensor,
                path: Path) -> None:
    """Per stage: the shown sources and their edits (left); the figures over epochs (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def pic(x: torch.Tensor):
        return ((x.permute(1, 2, 0) + 1) * 127.5).clamp(0, 255).byte().numpy()

    n, cols = len(stages), 1 + len(CAPTIONS)
    fig = plt.figure(figsize=(12, 1.1 * N_SOURCES * n + 1.0))
    grid = fig.add_gridspec(n * N_SOURCES, cols + 4, wspace=0.05, hspace=0.12)
    for k, (stage, shown) in enumerate(zip(stages, edits)):
        for r in range(N_SOURCES):
            for c in range(cols):
                ax = fig.add_subplot(grid[k * N_SOURCES + r, c])
                ax.imshow(pic(sources[r] if c == 0 else shown[r, c - 1]), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if k == 0 and r == 0:
                    title = "source" if c == 0 else CAPTIONS[c - 1]
                    ax.set_title("\n".join(textwrap.wrap(title, 22)), fontsize=6)
                if c == 0 and r == 0:
                    ax.set_ylabel(f"epoch {stage['epoch']}", fontsize=7)
    epochs = [s["epoch"] for s in stages]
    ax = fig.add_subplot(grid[:, cols + 1:])
    for key, style in (("target acc. (edits)", "o-"), ("kept unnamed colours", "s-"),
                       ("kept facing/size/bg", "^-"), ("mask IoU", "d:")):
        ax.plot(epochs, [s["edit"][key] for s in stages], style, label=key)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("epoch", fontsize=8)
    ax.set_ylabel("oracle (edits of held-out birds)", fontsize=8)
    ax.legend(fontsize=6, loc="lower right")
    ax.tick_params(labelsize=7)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=72, bbox_inches="tight")
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="4,8,20,40",
                        help="epochs after which the run is judged (ascending)")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="default: $T2I_DATA/runs/NAME")
    parser.add_argument("--n-eval", type=int, default=300, help="test birds the oracle judges")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                        help="a recipe field for a variant run (trained from scratch)")
    parser.add_argument("--name", default="sisgan_reference",
                        help="stem of the figure and JSON in docs/figures/")
    args = parser.parse_args(argv)
    try:
        return run(args, argv)
    except (ValueError, OSError) as err:  # a bad or missing file, a mismatched checkpoint
        return one_line_error("sisgan_reference_run.py", err)


def run(args: argparse.Namespace, argv: list[str] | None) -> int:
    """Train and judge every stage (resuming what is done), then write the figure + JSON."""
    stages = sorted({int(s) for s in args.stages.split(",")})
    device = str(pick_device(args.device))
    if args.threads:
        torch.set_num_threads(args.threads)
    root = ensure_toybirds()
    run_dir = args.run_dir or data_root() / "runs" / args.name
    notebook_run = data_root() / "runs" / "sisgan_toybirds64" / CHECKPOINT_NAME
    if not (run_dir / CHECKPOINT_NAME).is_file() and notebook_run.is_file() and not args.set:
        run_dir.mkdir(parents=True, exist_ok=True)  # start from notebook 09's own run
        shutil.copyfile(notebook_run, run_dir / CHECKPOINT_NAME)
    results_file = run_dir / "stages.json"
    done = read_json(results_file) if results_file.is_file() else {}
    shown = []
    for epochs in stages:
        kept = run_dir / f"epoch_{epochs:03d}.pt"
        if not kept.is_file():
            train_stage(run_dir, epochs, device, args.set)
            shutil.copyfile(run_dir / CHECKPOINT_NAME, kept)
        stage, edits = judge(kept, root, args.n_eval, device)
        done[str(epochs)] = stage
        shown.append(edits)
        with atomic_write(results_file, "w") as f:
            json.dump(done, f, indent=1)
        print(json.dumps({"epoch": epochs, **{k: round(v, 3) for k, v in stage["edit"].items()},
                          "caption effect": round(stage["caption_effect"], 3)}))
    ordered = [done[str(e)] for e in stages]
    figure, results = FIGURES / f"{args.name}.png", FIGURES / f"{args.name}.json"
    draw_figure(ordered, shown, shown_sources(root), repo_root() / figure)
    (repo_root() / results).write_text(json.dumps(
        {"command": " ".join(["python data_scripts/sisgan_reference_run.py",
                              *(sys.argv[1:] if argv is None else argv)]),
         "captions": CAPTIONS, "changes": args.set, "stages": ordered}, indent=1) + "\n")
    print("wrote", figure, "and", results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
