"""Check a CUB + AttnGAN tree and build its tensor caches (no downloading).

    python data_scripts/prepare_cub.py --root data/birds --image-size 64
    python data_scripts/prepare_cub.py --root data/birds --image-size 256 --workers 4

Steps: check the layout (``images.txt``, ``bounding_boxes.txt``, ``text/``, split pickles),
read the captions (building ``captions.pickle`` the AttnGAN way if it is absent), then
decode, bbox-crop and resize every image once into ``<root>/cache/<split>_<S>px.pt``.
Run ``data_scripts/download_cub.py`` first to fetch and extract the archives.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from t2ilib.data.cache import ensure_cache, load_cache
from t2ilib.data.cub import SPLITS, check_layout, load_captions, read_split
from t2ilib.runtime import data_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=data_root() / "birds",
                        help="the CUB + AttnGAN folder (default: %(default)s)")
    parser.add_argument("--image-size", type=int, nargs="+", default=[64],
                        help="training resolution(s); caches hold int(size * 76 / 64) px")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes")
    args = parser.parse_args(argv)
    try:
        root = check_layout(args.root)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    data = load_captions(root)
    for split in SPLITS:
        keys, classes = read_split(root, split)
        print(f"{split}: {len(keys)} images, {len(set(classes))} classes, "
              f"{len(data.train if split == 'train' else data.test)} captions")
    print(f"vocabulary: {len(data.vocab)} words (fingerprint {data.vocab.fingerprint()[:16]})")
    for size in args.image_size:
        for split in SPLITS:
            start = time.perf_counter()
            path = ensure_cache(root, split, size, num_workers=args.workers)
            images = load_cache(path)["images"]
            print(f"cache {path}: {tuple(images.shape)} uint8, "
                  f"{path.stat().st_size / 2**20:.1f} MiB ({time.perf_counter() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
