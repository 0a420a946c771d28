"""Check a CUB + AttnGAN tree and build its tensor caches (no downloading).

    python data_scripts/prepare_cub.py --root data/birds --image-size 64
    python data_scripts/prepare_cub.py --root data/birds --image-size 256 --workers 4

Steps: check the layout (``images.txt``, ``bounding_boxes.txt``, ``text/``, split pickles);
check every file (decode every image, check every box, caption file and pickle) and, if
anything is wrong, list all the problems and stop (exit status 2) without writing anything;
then read the captions (building ``captions.pickle`` the AttnGAN way if it is absent) and
decode, bbox-crop and resize every image once into ``<root>/cache/<split>_<S>px.pt``.
Run ``data_scripts/download_cub.py`` first to fetch and extract the archives.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from t2ilib.data.cache import ensure_cache, load_cache
from t2ilib.data.cub import SPLITS, load_captions, missing_layout, read_split
from t2ilib.data.cub_check import check_files
from t2ilib.data.cub_index import Problem
from t2ilib.io import BadFileError, one_line_error
from t2ilib.runtime import data_root

PROG = "prepare_cub.py"
MAX_LISTED = 50  # problems listed one per line; the rest are counted
FIX = ("fix or replace these files (data_scripts/download_cub.py downloads and extracts the "
       "archives again), then run prepare_cub.py again")


def _shown(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else str(path)


def missing_message(root: Path, missing: Sequence[tuple[Path, str]]) -> str:
    """One line: what is missing under ``root``, grouped by where it comes from."""
    by_source: dict[str, list[str]] = {}
    for path, source in missing:
        by_source.setdefault(source, []).append(_shown(path, root))
    return (f"{root} is not a complete CUB + AttnGAN tree; missing "
            + "; ".join(f"{', '.join(paths)} (from {source})"
                        for source, paths in by_source.items()))


def report_problems(root: Path, problems: Sequence[Problem], limit: int = MAX_LISTED) -> str:
    """The report printed for a tree with problems: a count, one line per problem, the fix."""
    s = "" if len(problems) == 1 else "s"
    lines = [f"{PROG}: error: {len(problems)} problem{s} in {root}; nothing was written:"]
    lines += [f"  {_shown(p.path, root)}: {p.reason}" for p in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    lines.append(FIX)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--root", type=Path, default=data_root() / "birds",
                        help="the CUB + AttnGAN folder (default: %(default)s)")
    parser.add_argument("--image-size", type=int, nargs="+", default=[64],
                        help="training resolution(s); caches hold int(size * 76 / 64) px")
    parser.add_argument("--workers", type=int, default=0, help="decoding processes")
    args = parser.parse_args(argv)
    if min(args.image_size) < 1 or args.workers < 0:
        parser.error("--image-size must be positive and --workers at least 0")
    root = args.root
    missing = missing_layout(root)
    if missing:
        return one_line_error(PROG, missing_message(root, missing))
    problems = check_files(root)
    if problems:
        print(report_problems(root, problems), file=sys.stderr)
        return 2
    try:  # the check passed: what is left can only fail for reasons outside the tree
        data = load_captions(root)
        for split in SPLITS:
            keys, classes = read_split(root, split)
            print(f"{split}: {len(keys)} images, {len(set(classes))} classes, "
                  f"{len(data.train if split == 'train' else data.test)} captions")
        print(f"vocabulary: {len(data.vocab)} words "
              f"(fingerprint {data.vocab.fingerprint()[:16]})")
        for size in args.image_size:
            for split in SPLITS:
                start = time.perf_counter()
                path = ensure_cache(root, split, size, num_workers=args.workers)
                images = load_cache(path)["images"]
                print(f"cache {path}: {tuple(images.shape)} uint8, "
                      f"{path.stat().st_size / 2**20:.1f} MiB "
                      f"({time.perf_counter() - start:.1f} s)")
    except (BadFileError, OSError, ValueError) as err:
        return one_line_error(PROG, err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
