"""Seconds per training step of SSA-GAN and of its word-level variants (notebook 11), side by side.

Notebook 11's goal is a variant within 1.2x SSA-GAN's wall time at the same number of steps.
This times one ``TOYBIRDS`` training step (notebook 07's recipe: 32 px, batch 24, the encoder
step of joint training) of each variant on the real ToyBirds training set with notebook 02's
DAMSM, alternating one step of each variant per round so that a busy machine slows them alike,
and prints the median seconds per step and its ratio to SSA-GAN's. A benchmark, not a test::

    python benchmarks/binding_step.py                       # every variant, 2 threads
    python benchmarks/binding_step.py --variants baseline,swapDAMSM --rounds 12 --threads 1

The first round is a warm-up and is not counted.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from t2ilib.binding.step import BindingConfig
from t2ilib.binding.train import BindingTask
from t2ilib.binding.variants import VARIANTS
from t2ilib.damsm.pretrain import load_or_train_toybirds_damsm
from t2ilib.data.cache import CachedCUBDataset
from t2ilib.data.toybirds import ensure_toybirds
from t2ilib.data.trainset import TrainData
from t2ilib.runtime import machine
from t2ilib.ssagan.recipes import TOYBIRDS
from t2ilib.ssagan.train import SSAGANTask


def make_task(binding: BindingConfig | None, data: TrainData, root: Path) -> SSAGANTask:
    """The training task of one variant, with notebook 02's DAMSM (a fresh copy each)."""
    text_encoder, image_encoder, _ = load_or_train_toybirds_damsm(root, device="cpu")
    recipe = TOYBIRDS.with_(sentence_dim=text_encoder.config.hidden_dim)
    if binding is None:
        return SSAGANTask(recipe, text_encoder, image_encoder, data, "cpu")
    return BindingTask(recipe, binding, text_encoder, image_encoder, data, "cpu")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="baseline,swap,swapDAMSM,wordD+swap,wordG+swap")
    parser.add_argument("--rounds", type=int, default=8, help="steps of each variant")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    names = args.variants.split(",")
    unknown = sorted(set(names) - set(VARIANTS))
    if unknown or "baseline" not in names:
        parser.error(f"variants must include baseline and be of {', '.join(VARIANTS)}")
    torch.set_num_threads(args.threads)
    root = ensure_toybirds()
    data = TrainData.from_dataset(CachedCUBDataset(root, "train", image_size=32, uint8=True),
                                  name="toybirds")
    tasks = {name: make_task(VARIANTS[name], data, root) for name in names}
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for step in range(args.rounds + 1):
        for name, task in tasks.items():
            task.start_epoch(0)
            batch = task.batch(0, step)
            start = time.perf_counter()
            task.step(batch)
            if step > 0:  # the first round warms up
                seconds[name].append(time.perf_counter() - start)
    base = statistics.median(seconds["baseline"])
    print(f"{machine()}; {args.rounds} steps of each variant, batch 24, 32 px")
    print(f"{'variant':<18}{'s / step':>10}{'x SSA-GAN':>11}")
    for name in names:
        median = statistics.median(seconds[name])
        print(f"{name:<18}{median:>10.3f}{median / base:>11.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
