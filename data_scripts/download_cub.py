"""Download CUB-200-2011 and AttnGAN's birds metadata, verified, into SSA-GAN's data layout.

    python data_scripts/download_cub.py                      # into data/ (or $T2I_DATA)
    python data_scripts/download_cub.py --root /big/disk/t2i --segmentations
    python data_scripts/download_cub.py --mirror http://host/t2i-files   # a copy of the files

The result is the layout AttnGAN, DF-GAN and SSA-GAN read (reference notes ``ssagan.md`` §4.1)::

    <root>/downloads/CUB_200_2011.tgz, birds.zip, birds.zip.sha256
    <root>/birds/text/<class>/<image>.txt            10 captions per image (Reed et al.)
    <root>/birds/{train,test}/filenames.pickle, class_info.pickle
    <root>/birds/captions.pickle                     when the zip ships it
    <root>/birds/CUB_200_2011/images/<key>.jpg, images.txt, bounding_boxes.txt, ...
    <root>/birds/segmentations/<class>/<image>.png   only with --segmentations

Every archive is streamed with a progress bar, resumed after an interruption, checked against
the checksum table in ``t2ilib/data/resources.py`` and extracted safely
(``t2ilib/data/archives.py``).
``birds.zip`` has no published checksum: its first download is trusted and its SHA-256 recorded
in ``downloads/birds.zip.sha256`` (trust on first use). Rerunning is cheap: verified archives are
reused, extracted ones skipped. With ``--mirror URL`` (or ``$T2I_MIRROR``) every file is fetched
from ``URL/<filename>`` instead, checked against the same table.

Next step: ``python data_scripts/prepare_cub.py --root <root>/birds`` checks the layout and builds
the tensor cache.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from t2ilib.data.archives import ArchiveError, extract
from t2ilib.data.download import add_download_arguments, explain_failure, fetch
from t2ilib.data.resources import RESOURCES, DownloadError, Resource, pin_first_use
from t2ilib.io import one_line_error

#: Paths (relative to ``<root>/birds``) the readers need; ``captions.pickle`` is rebuilt if absent.
REQUIRED = ("CUB_200_2011/images", "CUB_200_2011/images.txt", "CUB_200_2011/bounding_boxes.txt",
            "text", "train/filenames.pickle", "test/filenames.pickle")
OPTIONAL = ("captions.pickle", "train/class_info.pickle", "test/class_info.pickle")


def files_needed(root: str | os.PathLike[str], segmentations: bool = False,
                 resources: Mapping[str, Resource] = RESOURCES) -> list[tuple[Resource, Path]]:
    """Every file this script fetches, with the folder it goes to, in download order."""
    names = ["birds_metadata", "cub"] + (["cub_segmentations"] if segmentations else [])
    return [(resources[name], Path(root) / "downloads") for name in names]


def download_cub(root: str | os.PathLike[str], *, mirror: str | None = None,
                 segmentations: bool = False, resources: Mapping[str, Resource] = RESOURCES,
                 timeout: float = 30.0, retries: int = 3,
                 log: Callable[[str], None] = print) -> Path:
    """Fetch, verify and extract everything for the CUB birds; return ``<root>/birds``.

    ``resources`` is the download table (tests pass one describing their own archives).
    Raises ``DownloadError`` / ``ChecksumError`` / ``ArchiveError`` with instructions,
    and ``FileNotFoundError`` when the archives do not produce the expected layout.
    """
    root = Path(root)
    downloads, birds = root / "downloads", root / "birds"
    needed = files_needed(root, segmentations, resources)
    got = [fetch(res, folder, mirror=mirror, timeout=timeout, retries=retries, log=log,
                 pin=False) for res, folder in needed]  # trusted only once extracted
    (meta, cub, *seg), kinds = got, [res for res, _ in needed]

    report = extract(meta.path, root, sha256=meta.digests.sha256, log=log)  # unzips to birds/
    if "birds" not in report.top_level:
        raise FileNotFoundError(f"{meta.path.name} was expected to unpack to birds/, but its "
                                f"top level is {list(report.top_level)} (extracted into {root})")
    pin_first_use(kinds[0], meta.path, meta.digests, log=log)
    extract(cub.path, birds, sha256=cub.digests.sha256, log=log)  # -> birds/CUB_200_2011/
    pin_first_use(kinds[1], cub.path, cub.digests, log=log)
    for res, s in zip(kinds[2:], seg):
        extract(s.path, birds, sha256=s.digests.sha256, log=log)  # -> birds/segmentations/
        pin_first_use(res, s.path, s.digests, log=log)

    missing = [p for p in REQUIRED if not (birds / p).exists()]
    if missing:
        raise FileNotFoundError(f"the archives did not produce {', '.join(missing)} under "
                                f"{birds}; delete {birds} and the markers .*.complete, then rerun")
    absent = [p for p in OPTIONAL if not (birds / p).exists()]
    with (birds / "CUB_200_2011" / "images.txt").open(encoding="utf-8") as f:
        n_images = sum(1 for line in f if line.strip())
    log(f"[cub] ready: {birds} ({n_images:,} images listed in images.txt)"
        + (f"; not shipped, rebuilt later: {', '.join(absent)}" if absent else ""))
    log(f"[cub] the archives in {downloads} may be deleted to free space (a rerun would then "
        f"download them again). Next: python data_scripts/prepare_cub.py --root {birds}")
    return birds


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_download_arguments(parser)
    parser.add_argument("--segmentations", action="store_true",
                        help="also fetch CUB's 11,788 bird masks (39 MB)")
    args = parser.parse_args(argv)
    try:
        download_cub(args.root, mirror=args.mirror, segmentations=args.segmentations,
                     timeout=args.timeout, retries=args.retries)
    except DownloadError as err:
        print(explain_failure(err, files_needed(args.root, args.segmentations)), file=sys.stderr)
        return 2
    except (ArchiveError, ValueError, OSError) as err:  # ArchiveError: a damaged or unsafe archive
        return one_line_error("download_cub.py", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
