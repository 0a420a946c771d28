"""Data-loading throughput: JPEG reader vs tensor cache (images per second). Not a test.

    python benchmarks/data_loading.py                       # ToyBirds (made on first use)
    python benchmarks/data_loading.py --root data/birds --image-size 256 --workers 4

Four ways to get training batches of ``(image, caption, length, class, key)``:

1. ``jpeg``:         ``CUBDataset`` (decode + bbox crop + resize every item) in a DataLoader;
2. ``cache``:        ``CachedCUBDataset`` (uint8 tensor slice + crop/flip per item);
3. ``cache-uint8``:  ``CachedCUBDataset(uint8=True)``, crop/flip once per batch
                     (``random_crop_flip``), as a GPU training loop does on the device;
4. ``tensor``:       no DataLoader: index the cached uint8 tensor, crop/flip the batch.

Each is timed over ``--batches`` batches after one warm-up batch. Timings on a shared
machine are noisy; compare ratios, and run twice.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from t2ilib.data.augment import random_crop_flip
from t2ilib.data.cache import CachedCUBDataset, ensure_cache
from t2ilib.data.cub import collate_sorted
from t2ilib.data.cub_dataset import CUBDataset
from t2ilib.data.toybirds import ensure_toybirds


def _rate(batches, n_batches: int, batch_size: int, step=lambda b: b) -> float:
    it = iter(batches)
    step(next(it))                                   # warm-up (workers start, caches fill)
    start = time.perf_counter()
    for _ in range(n_batches):
        step(next(it))
    return n_batches * batch_size / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=None,
                        help="CUB-format folder (default: the ToyBirds set, made on first use)")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=20, help="timed batches per loader")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch intra-op threads (0: torch's default); on a busy shared "
                             "machine 1 avoids OpenMP threads waiting for each other")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    root = args.root or ensure_toybirds()
    ensure_cache(root, "train", args.image_size)
    torch.manual_seed(0)
    loader = lambda ds: DataLoader(ds, batch_size=args.batch_size, shuffle=True,  # noqa: E731
                                   num_workers=args.workers, collate_fn=collate_sorted,
                                   drop_last=True)
    need = (args.batches + 1) * args.batch_size
    jpeg = CUBDataset(root, "train", args.image_size)
    cached = CachedCUBDataset(root, "train", args.image_size)
    raw = CachedCUBDataset(root, "train", args.image_size, uint8=True)
    if len(jpeg) < need:
        raise SystemExit(f"need {need} training images for this many batches, "
                         f"{root} has {len(jpeg)}")
    images = raw.images

    def from_tensor():
        while True:
            idx = torch.randint(len(raw), (args.batch_size,))
            yield idx

    def tensor_step(idx):
        batch = random_crop_flip(images[idx], args.image_size)           # (B, 3, s, s)
        caps = [raw.sample_caption(int(i), None) for i in idx]
        return batch, caps

    s = args.batch_size
    results = {
        "jpeg": _rate(loader(jpeg), args.batches, s),
        "cache": _rate(loader(cached), args.batches, s),
        "cache-uint8": _rate(loader(raw), args.batches, s,
                             lambda b: random_crop_flip(b[0], args.image_size)),
        "tensor": _rate(from_tensor(), args.batches, s, tensor_step),
    }
    print(f"{root}: train split, {len(jpeg)} images, {args.image_size}px "
          f"(cache {cached.cache_size}px), batch {s}, workers {args.workers}, "
          f"torch threads {torch.get_num_threads()}")
    for name, rate in results.items():
        print(f"  {name:12s} {rate:9.0f} images/s   ({rate / results['jpeg']:5.1f}x jpeg)")


if __name__ == "__main__":
    main()
