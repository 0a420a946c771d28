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

``--official-dir DIR`` also times the official step (``main.py`` of a checkout of
wtliao/text2image, imported at run time by ``official_step.py``) against ours at the ``paper``
config, alternating one step of each, and prints the ratio of their images/s (then the table
above runs only for the configs ``--configs`` names)::

    python benchmarks/train_step.py --device cpu --batch-size 4 --official-dir ~/text2image
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import time
import warnings
from collections.abc import Callable

import torch

from t2ilib.damsm.image_encoder import InceptionEncoder, SmallCNNEncoder
from t2ilib.data.trainset import TrainData
from t2ilib.ssagan.recipes import PAPER, TOYBIRDS
from t2ilib.ssagan.step import LOSS_NAMES
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


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def our_step(name: str, path: str, args: argparse.Namespace) -> Callable[[int], torch.Tensor]:
    """Our engine for ``CONFIGS[name]`` on ``path``; returns ``step(i)``, which runs the task's
    step on batch ``i`` under the engine's autocast and returns its losses."""
    fast = path == "fast"
    spec = CONFIGS[name]
    recipe = spec["recipe"].with_(batch_size=args.batch_size, amp=fast, channels_last=fast,
                                  compile=fast and args.compile, log_every=10**9)
    data = random_data(recipe.model.resolution,
                       args.batch_size * (args.steps + args.warmup + 1))
    te = TextEncoder(TextEncoderConfig(N_WORDS))
    ie = InceptionEncoder(pretrained=False) if spec["encoder"] == "inception" else SmallCNNEncoder()
    engine = ssagan_engine(recipe, te, ie, data, device=torch.device(args.device))
    task = engine.task

    def step(i: int) -> torch.Tensor:
        with engine.autocast():
            return task.step(task.batch(0, i))

    return step


def measure(name: str, path: str, args: argparse.Namespace) -> dict:
    """One row of the table; ``path`` is ``"eager fp32"``, ``"fp32 strict"`` or ``"fast"``."""
    torch.backends.cudnn.allow_tf32 = path != "fp32 strict"
    device = torch.device(args.device)
    step = our_step(name, path, args)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def run(k: int, offset: int) -> None:
        for i in range(k):
            step(offset + i)
        sync(device)

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


def table(args: argparse.Namespace, paths: list[str]) -> None:
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


def machine(device: torch.device) -> str:
    """The CUDA card, or the CPU's model, its cores and torch's threads."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads"


def compare_official(args: argparse.Namespace, paths: list[str]) -> None:
    """Ours (the ``paper`` config on each of ``paths``) against the official step, one step
    of each in turn, after ``--warmup`` turns."""
    from official_step import DAMSM_WEIGHT, OfficialStep  # beside this file

    device = torch.device(args.device)
    recipe = CONFIGS["paper"]["recipe"]
    model = recipe.model
    official = OfficialStep(args.official_dir, batch_size=args.batch_size, n_words=N_WORDS,
                            device=device, nf=model.ngf, resolution=model.resolution)
    # name -> (prepare(i), untimed; run(prepared), timed): ours draws its batch in the step
    contestants = {f"ours ({path})": (lambda i: i, our_step("paper", path, args))
                   for path in paths}
    contestants["official"] = (official.batch, official)
    seconds = dict.fromkeys(contestants, 0.0)
    losses = {}
    for i in range(args.warmup + args.steps):
        for name, (prepare, run) in contestants.items():
            batch = prepare(i)
            sync(device)
            start = time.perf_counter()
            losses[name] = run(batch)
            sync(device)
            if i >= args.warmup:
                seconds[name] += time.perf_counter() - start

    print(f"official step vs ours on {machine(device)}, torch {torch.__version__}")
    print(f"paper config: {model.resolution} px, ngf = ndf = {model.ngf}, batch "
          f"{args.batch_size}, DAMSM weight {DAMSM_WEIGHT}; {args.warmup} warm-up + "
          f"{args.steps} timed step(s) each, alternating {' / '.join(contestants)}")
    print(f"official code from {official.where}, patched at run time: "
          + "; ".join(official.patches))
    print(f"{'step':<20}{'s/step':>10}{'images/s':>10}{'D hinge':>10}{'MA-GP':>10}"
          f"{'G hinge':>10}{'w*DAMSM':>10}")
    for name, total in seconds.items():
        if name == "official":
            values = losses[name].tolist()  # errD, d_loss, errG, 0.05 * DAMSM
        else:
            ours = dict(zip(LOSS_NAMES, losses[name].tolist()))
            values = [ours["d_loss"], ours["ma_gp"], ours["g_adv"],
                      recipe.train.damsm_weight * ours["g_damsm"]]
        print(f"{name:<20}{total / args.steps:>10.3f}{args.batch_size * args.steps / total:>10.2f}"
              + "".join(f"{v:>10.4g}" for v in values))
    ratios = [f"{name} {seconds['official'] / total:.2f}x" for name, total in seconds.items()
              if name != "official"]
    print("ratio ours/official (images/s): " + ", ".join(ratios))
    print("timed: ours = the engine's batch (on-device crop/flip) + step; official = "
          "prepare_data (sort, copy to the device) + main.py's loop body (its DataLoader "
          "workers' part untimed), under main.py's cudnn.benchmark = True; losses: last step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--configs", nargs="+", default=None, choices=list(CONFIGS),
                        help="rows of the table (default: all; none with --official-dir)")
    parser.add_argument("--compile", action="store_true", help="torch.compile in the fast path")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (torch)")
    parser.add_argument("--official-dir", metavar="DIR", default=None,
                        help="a checkout of wtliao/text2image: also time its training step "
                             "against ours at the paper config")
    args = parser.parse_args()
    if args.official_dir is not None:
        from official_step import NotOfficialCheckout, code_dir  # beside this file
        try:
            code_dir(args.official_dir)
        except NotOfficialCheckout as e:
            parser.exit(2, f"error: {e}\n")
    if args.configs is None:
        args.configs = [] if args.official_dir else list(CONFIGS)
    if args.threads:
        torch.set_num_threads(args.threads)
    cuda = args.device.startswith("cuda")
    paths = ["fp32 strict", "eager fp32", "fast"] if cuda else ["eager fp32"]  # CPU: fp32
    if args.configs:
        table(args, paths)
    if args.official_dir is not None:  # the official code runs under PyTorch's defaults
        compare_official(args, [path for path in paths if path != "fp32 strict"])


if __name__ == "__main__":
    main()
