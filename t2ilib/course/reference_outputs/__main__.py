"""Write (or check) the stored reference outputs of the exercises.

Usage::

    python -m t2ilib.course.reference_outputs              # every builder module
    python -m t2ilib.course.reference_outputs nb06 nb07    # some of them
    python -m t2ilib.course.reference_outputs --check      # compare, write nothing

Exit status 1 when ``--check`` finds a stored file missing or different from a fresh build.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from t2ilib.course.reference_outputs import (
    build_outputs,
    builders,
    differences,
    load,
    reference_path,
    write,
)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2ilib.course.reference_outputs",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="builder modules (nbNN); default: all")
    parser.add_argument("--check", action="store_true",
                        help="compare the stored files with a fresh build, write nothing")
    args = parser.parse_args(argv)
    status = 0
    for name in args.names or builders():
        path = reference_path(name)
        if not args.check:
            write(name)
            print(f"{name}: wrote {path} ({path.stat().st_size / 1024:.1f} kB)")
            continue
        found = differences(load(name), build_outputs(name)) if path.is_file() else ["missing"]
        status |= bool(found)
        print(f"{name}: {path}: " + ("up to date" if not found else "; ".join(found[:5])))
    return status


if __name__ == "__main__":
    sys.exit(_main())
