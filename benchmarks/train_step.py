"""Images/s and peak memory of one SSA-GAN training step (D adversarial + MA-GP + G with DAMSM).

Three configurations:

* ``nb07``:  the ``TOYBIRDS`` recipe (notebook 07: 32 px, ngf 32, ndf 16, small-CNN DAMSM
  image encoder, with the encoder step of joint training);
* ``toy``:   the ``PAPER`` recipe's training at 64 px, ngf = ndf = 32, small-CNN DAMSM;
* ``paper``: the ``PAPER`` recipe (256 px, ngf = ndf = 64, Inception-v3 DAMSM image encoder
  with random weights).

Each runs eager fp32 and, on CUDA, the fast path (bf16 autocast, channels_last, fused Adam,
optionally torch.compile) side by side, with random data (the step's cost does not depend
on the data). On CUDA, eager fp32 runs twice: with PyTorch's defaults (cuDNN convolutions
already use TF32 tensor cores) and strict (``cudnn.allow_tf32 = False``: true fp32
arithmetic). A benchmark, not a test::

    python benchmarks/train_step.py --device cpu --batch-size 4 --configs paper --steps 2
    python benchmarks/train_step.py --device cuda --batch-size 24 --compile
"""

from __future__ import annotations

import argparse
import resource
import time
import warnings

import torch

from t2ilib.damsm.image_encoder import InceptionEncoder, SmallCNNEncoder
from t2ilib.data.trainset import TrainData
from t2ilib.ssagan.recipes import PAPER, TOYBIRDS
from t2ilib.ssagan.train import ssagan_engine
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
from t2ilib.text.vocab import Vocabulary

CONFIGS = {"nb07": dict(encoder="small_cnn", recipe=TOYBIRDS),
           "toy": dict(encoder="small_cnn", recipe=PAPER.with_(resolution=64, ngf=32, ndf=32)),
           "paper": dict(encoder="inception", recipe=PAPER)}
N_WORDS = 5450  # CUB's vocabulary size


def random_data(resolution: int, n: int) -> TrainData:
    g = torch.Generator().manual_seed(0)
    s = int(resolution * 76 / 64)
    vocab = Vocabulary.from_words(["<end>"] + [f"w{i}" for i in range(1, N_WORDS)])
    captions = [torch.randint(1, N_WORDS, (int(torch.randint(8, 19, (1,), generator=g)),),
                              generator=g).tolist() for _ in range(n * 10)]
    return TrainData(images=torch.randint(0, 256, (n, 3, s, s), dtype=torch.uint8, generator=g),
                     captions=captions, captions_per_image=10,
                     class_ids=torch.arange(n), vocab=vocab, image_size=resolution, name="random")


def measure(name: str, path: str, args: argparse.Namespace) -> dict:
    """One row of the table; ``path`` is ``"eager fp32"``, ``"fp32 strict"`` or ``"fast"``."""
    fast = path == "fast"
    torch.backends.cudnn.allow_tf32 = path != "fp32 strict"
    spec = CONFIGS[name]
    device = torch.device(args.device)
    recipe = spec["recipe"].with_(batch_size=args.batch_size, amp=fast, channels_last=fast,
                                  compile=fast and args.compile, log_every=10**9)
    data = random_data(recipe.model.resolution,
                       args.batch_size * (args.steps + args.warmup + 1))
    te = TextEncoder(TextEncoderConfig(N_WORDS))
    ie = InceptionEncoder(pretrained=False) if spec["encoder"] == "inception" else SmallCNNEncoder()
    engine = ssagan_engine(recipe, te, ie, data, device=device)
    task = engine.task
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def run(k: int, offset: int) -> None:  # the engine's step: the task's under its autocast
        for i in range(k):
            with engine.autocast():
                task.step(task.batch(0, offset + i))
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    run(args.warmup, 0)
    start = time.perf_counter()
    run(args.steps, args.warmup)
    seconds = (time.perf_counter() - start) / args.steps
    syncs = None
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        with warnings.catch_warnings(record=True) as caught:  # CUDA warns at every host sync
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            try:
                run(1, args.warmup + args.steps)
            finally:
                torch.cuda.set_sync_debug_mode("default")
        syncs = len(caught) - 1  # minus run()'s own synchronize at the end
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # process RSS, GiB
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default
    return {"config": name, "path": path, "s/step": seconds,
            "images/s": args.batch_size / seconds, "peak GiB": peak, "syncs": syncs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--compile", action="store_true", help="torch.compile in the fast path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = (["fp32 strict", "eager fp32", "fast"] if args.device.startswith("cuda")
             else ["eager fp32"])  # the CPU: fp32 only
    rows = [measure(name, path, args) for name in args.configs for path in paths]
    print(f"device={args.device} batch={args.batch_size} threads={torch.get_num_threads()} "
          f"torch={torch.__version__}")
    print(f"{'config':<8}{'path':<12}{'s/step':>10}{'images/s':>10}{'peak GiB':>10}"
          f"{'syncs':>7}{'speed-up':>10}")
    eager = {r["config"]: r["s/step"] for r in rows if r["path"] == "eager fp32"}
    for r in rows:
        syncs = "-" if r["syncs"] is None else str(r["syncs"])
        print(f"{r['config']:<8}{r['path']:<12}{r['s/step']:>10.3f}{r['images/s']:>10.2f}"
              f"{r['peak GiB']:>10.2f}{syncs:>7}{eager[r['config']] / r['s/step']:>9.2f}x")
    note = ("CPU peak = the process's max RSS (all configs so far); CUDA: max allocated; "
            "syncs = host synchronisations in one more step (CUDA's sync debug mode); "
            "speed-up = eager fp32 s/step / this row's")
    print(note)


if __name__ == "__main__":
    main()
