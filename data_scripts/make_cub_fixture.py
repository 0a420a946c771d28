"""Write a tiny CUB + AttnGAN-format tree (12 images, real quirks) for tests and demos.

    python data_scripts/make_cub_fixture.py --out /tmp/cub_fixture            # extracted tree
    python data_scripts/make_cub_fixture.py --out /tmp/cub_fixture --archives  # + .tgz / .zip

The tree lands in ``<out>/birds`` (the layout ``CUBDataset`` reads); with ``--archives`` the
same content is also packed as ``<out>/CUB_200_2011.tgz`` and ``<out>/birds.zip``, laid out
like the real downloads. See t2ilib/data/fixtures.py for the list of quirks.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

from t2ilib.data.fixtures import make_cub_fixture, write_cub_archives


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--few-captions", action="store_true",
                        help="give one image only 8 captions (the reader must refuse it)")
    parser.add_argument("--archives", action="store_true",
                        help="also write CUB_200_2011.tgz and birds.zip")
    args = parser.parse_args(argv)
    tree = args.out / "birds"
    if tree.exists():
        print(f"error: {tree} exists; choose an empty --out", file=sys.stderr)
        return 1
    fixture = make_cub_fixture(tree, seed=args.seed, few_captions=args.few_captions)
    print(f"tree: {fixture.root} ({len(fixture.train_keys)} train / {len(fixture.test_keys)} test)")
    if args.archives:
        for path in write_cub_archives(tree, args.out):
            md5 = hashlib.md5(path.read_bytes()).hexdigest()
            print(f"archive: {path}  {path.stat().st_size} bytes  md5 {md5}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
