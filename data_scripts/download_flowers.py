"""Download Oxford-102 flowers and Reed et al.'s flower captions, verified (SISGAN's data).

    python data_scripts/download_flowers.py                  # into data/ (or $T2I_DATA)
    python data_scripts/download_flowers.py --root /big/disk/t2i
    python data_scripts/download_flowers.py --mirror http://host/t2i-files

Result (reference notes ``metrics_data.md`` §3.4, ``sisgan.md`` §3.5)::

    <root>/downloads/102flowers.tgz, cvpr2016_flowers.tar.gz, cvpr2016_flowers.tar.gz.sha256
    <root>/flowers/jpg/image_00001.jpg ... image_08189.jpg     102 classes
    <root>/flowers/imagelabels.mat     'labels' 1 x 8189, classes 1..102
    <root>/flowers/setid.mat           'trnid' / 'valid' / 'tstid', 1-based image ids
    <root>/flowers/.../text_c10/class_XXXXX/image_XXXXX.txt   10 captions per image
    <root>/flowers/.../trainvalclasses.txt, testclasses.txt   Reed's class split (82 / 20)

The images and ``.mat`` files are checked against the MD5s torchvision's ``Flowers102`` uses.
Reed's caption archive has no published checksum: its first download is trusted and its SHA-256
recorded beside it (trust on first use). The script prints where ``text_c10`` ended up (the
archive may wrap it in one folder) and checks the archive's class lists against the copy of Reed's
class split that t2ilib ships (``t2ilib/data/flowers_split/``): a disagreement is an error naming
both files. Rerunning is cheap: verified files are reused, extracted archives skipped.
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


def files_needed(root: str | os.PathLike[str],
                 resources: Mapping[str, Resource] = RESOURCES) -> list[tuple[Resource, Path]]:
    """Every file this script fetches, with the folder it goes to, in download order.

    The ``.mat`` files are used as they are, so they go straight to ``<root>/flowers``.
    """
    root = Path(root)
    return [(resources["flowers_labels"], root / "flowers"),
            (resources["flowers_splits"], root / "flowers"),
            (resources["flowers_images"], root / "downloads"),
            (resources["flowers_captions"], root / "downloads")]


def download_flowers(root: str | os.PathLike[str], *, mirror: str | None = None,
                     resources: Mapping[str, Resource] = RESOURCES, timeout: float = 30.0,
                     retries: int = 3, log: Callable[[str], None] = print) -> Path:
    """Fetch, verify and extract Oxford-102 and its captions; return the ``text_c10`` folder.

    ``resources`` is the download table (tests pass one describing their own archives).
    Raises ``DownloadError`` / ``ChecksumError`` / ``ArchiveError`` with instructions,
    ``FileNotFoundError`` when the archives do not produce the expected layout, and
    ``ValueError`` when the archive's class lists disagree with the package's copy of Reed's split.
    """
    from t2ilib.data.flowers import LIST_NAMES, reed_class_split

    flowers = Path(root) / "flowers"
    needed = files_needed(root, resources)
    got = [fetch(res, folder, mirror=mirror, timeout=timeout, retries=retries, log=log,
                 pin=False) for res, folder in needed]  # archives: trusted once extracted
    for (res, _), fetched in zip(needed[:2], got[:2]):  # the two lists are used as they are
        pin_first_use(res, fetched.path, fetched.digests, log=log)
    images, caps = got[2:]
    extract(images.path, flowers, sha256=images.digests.sha256, log=log)  # -> flowers/jpg/
    pin_first_use(needed[2][0], images.path, images.digests, log=log)
    report = extract(caps.path, flowers, sha256=caps.digests.sha256, log=log)
    pin_first_use(needed[3][0], caps.path, caps.digests, log=log)

    if not (flowers / "jpg").is_dir():
        raise FileNotFoundError(f"{images.path.name} did not unpack to {flowers / 'jpg'}")
    candidates = [flowers / top / "text_c10" for top in report.top_level] + [flowers / "text_c10"]
    text = next((c for c in candidates if c.is_dir()), None)
    if text is None:
        raise FileNotFoundError(f"no text_c10/ folder in {caps.path.name} (its top level is "
                                f"{list(report.top_level)}, extracted into {flowers})")
    n_images = sum(1 for _ in (flowers / "jpg").glob("*.jpg"))
    n_classes = sum(1 for c in text.iterdir() if c.is_dir())
    log(f"[flowers] ready: {n_images:,} images in {flowers / 'jpg'}; captions for {n_classes} "
        f"classes in {text}")
    train, test, _ = reed_class_split(text.parent)  # ValueError if the archive's lists disagree
    shipped = [n for n in LIST_NAMES if (text.parent / n).is_file()]
    log(f"[flowers] Reed's class split: {len(train)} train+val / {len(test)} test classes"
        + (f" (the archive's {' and '.join(shipped)}: same classes as ours)" if shipped else ""))
    return text


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_download_arguments(parser)
    args = parser.parse_args(argv)
    try:
        download_flowers(args.root, mirror=args.mirror, timeout=args.timeout,
                         retries=args.retries)
    except DownloadError as err:
        print(explain_failure(err, files_needed(args.root)), file=sys.stderr)
        return 2
    except (ArchiveError, ValueError, OSError) as err:  # ArchiveError: a damaged or unsafe archive
        return one_line_error("download_flowers.py", err)
    return 0


if __name__ == "__main__":
    sys.exit(main())
