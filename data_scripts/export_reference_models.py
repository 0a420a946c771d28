"""Ship the course's reference models: sampling-only copies of the reference runs, measured.

The reference runs (``toybirds_reference_run.py``, ``sisgan_reference_run.py``) keep a training
checkpoint per stage. This script exports the chosen stage of each with ``python -m t2ilib
export`` (G and the text encoder in float16, :mod:`t2ilib.engine.sampling_file`) into
``models/``, refuses a file over 12 MiB, and records what each file is and what it does in
``models/reference_models.json``::

    python data_scripts/export_reference_models.py \\
        --ssagan data/runs/toybirds_reference/epoch_070.pt \\
        --sisgan data/runs/sisgan_reference/epoch_020.pt

The SSA-GAN file itself (not the checkpoint it came from) is judged as notebook 07 judges its
run: the oracle on ``--n-eval`` test captions (alignment, binding, toy FID, the IoU of every
SSACN stage's mask with the oracle's segmentation of the bird), and notebook 10's seed/caption
measure. The SISGAN entry copies that stage's row of the reference run's table
(``docs/figures/sisgan_reference.json``), measured on the training checkpoint.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from t2ilib.apps.demo_models import REFERENCE_FILES
from t2ilib.apps.evaluate import EvalConfig, evaluate_checkpoint
from t2ilib.data.toybirds import ensure_toybirds
from t2ilib.engine.checkpoint import checkpoint_id, read_checkpoint
from t2ilib.engine.sampling_file import export_sampling_file
from t2ilib.io import atomic_write, file_sha256, one_line_error
from t2ilib.runtime import repo_root
from t2ilib.ssagan.controlled import seed_vs_caption
from t2ilib.ssagan.sampling import load_generator

MODELS = Path("models")
RESULTS = MODELS / "reference_models.json"
MAX_BYTES = 12 * 2**20


def export(kind: str, checkpoint: Path) -> tuple[Path, dict]:
    """Export ``checkpoint`` to ``models/``; returns the file and its entry (no figures)."""
    out = repo_root() / MODELS / REFERENCE_FILES[kind]
    export_sampling_file(checkpoint, out)
    if out.stat().st_size > MAX_BYTES:
        out.unlink()
        raise ValueError(f"{kind}: the sampling-only file is over 12 MiB; export a smaller model")
    counters = read_checkpoint(out, kind)["counters"]
    return out, {"file": str(MODELS / out.name), "sha256": file_sha256(out),
                 "bytes": out.stat().st_size, "source": checkpoint_id(checkpoint),
                 "epoch": int(counters["epoch"]), "step": int(counters["step"]),
                 "train_seconds": int(counters.get("train_seconds", 0))}


def judge_ssagan(path: Path, n_eval: int) -> dict:
    """The oracle's table, mask IoU per stage, and the seed/caption measure of one file."""
    report = evaluate_checkpoint(path, ensure_toybirds(),
                                 EvalConfig(metrics=("toy",), n_samples=n_eval), device="cpu")
    toy = report["toy"]
    align = toy["alignment"]
    g, text_encoder, vocab, _ = load_generator(path)
    return {"n_eval": n_eval,
            "generated": {k: align["generated"][k]["accuracy"] for k in toy["judged"]}
            | {"mean": align["generated"]["mean"]},
            "shuffled_mean": align["shuffled"]["mean"], "real_mean": align["real"]["mean"],
            "toy_fid": toy["toy_fid"]["generated"], "mask_iou": toy["mask_iou"],
            "binding": toy["binding"],
            "seed_vs_caption": seed_vs_caption(g, text_encoder, vocab)}


def sisgan_figures(epoch: int) -> dict:
    """The reference run's table row for ``epoch`` (docs/figures/sisgan_reference.json)."""
    table = json.loads((repo_root() / "docs/figures/sisgan_reference.json").read_text())
    rows = [s for s in table["stages"] if s["epoch"] == epoch]
    if not rows:
        raise ValueError(f"docs/figures/sisgan_reference.json has no stage at epoch {epoch}")
    row = rows[0]
    return {"measured_by": table["command"], "n_eval": row["n_eval"], "edit": row["edit"],
            "caption_effect": row["caption_effect"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ssagan", type=Path, required=True, help="an SSA-GAN checkpoint")
    parser.add_argument("--sisgan", type=Path, required=True, help="a SISGAN checkpoint")
    parser.add_argument("--n-eval", type=int, default=1000, help="captions the oracle judges")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        path, ssagan = export("ssagan", args.ssagan)
        ssagan["figures"] = judge_ssagan(path, args.n_eval)
        _, sisgan = export("sisgan", args.sisgan)
        sisgan["figures"] = sisgan_figures(sisgan["epoch"])
    except (ValueError, OSError) as err:
        return one_line_error("export_reference_models.py", err)
    command = " ".join(["python data_scripts/export_reference_models.py",
                        *(sys.argv[1:] if argv is None else argv)])
    with atomic_write(repo_root() / RESULTS, "w") as f:
        json.dump({"command": command, "ssagan": ssagan, "sisgan": sisgan}, f, indent=1)
        f.write("\n")
    for entry in (ssagan, sisgan):
        print(f"{entry['file']}: {entry['bytes'] / 2**20:.1f} MiB, sha256 "
              f"{entry['sha256'][:12]}, from {entry['source']} (epoch {entry['epoch']})")
    print("wrote", RESULTS)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
