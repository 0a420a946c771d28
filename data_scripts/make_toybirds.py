"""Render the ToyBirds dataset in the CUB + AttnGAN layout (see t2ilib/data/toybirds.py).

    python data_scripts/make_toybirds.py --out data/toybirds --n-train 4000 --n-test 1000 \
        --size 64 --seed 0

Deterministic: the same arguments give byte-identical files. Notebooks call
``t2ilib.data.toybirds.ensure_toybirds()``, which runs the same code on first use.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from t2ilib.data.toybirds import write_toybirds
from t2ilib.runtime import data_root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=data_root() / "toybirds",
                        help="output folder (default: %(default)s)")
    parser.add_argument("--n-train", type=int, default=4000, help="training images")
    parser.add_argument("--n-test", type=int, default=1000, help="test images")
    parser.add_argument("--size", type=int, default=64, help="image side in pixels (64, 128, 256)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing ToyBirds folder")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        out = write_toybirds(args.out, args.n_train, args.n_test, args.size, args.seed,
                             overwrite=args.overwrite)
    except (FileExistsError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {args.n_train} + {args.n_test} ToyBirds at {args.size}px to {out} "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
