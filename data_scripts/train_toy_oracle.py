"""Train (or load) the ToyBirds oracle and print its own accuracy on the real test images.

The oracle (``t2ilib.metrics.toy_oracle``) is the judge of notebooks 07-09: it reads every
attribute of a ToyBirds image and segments the bird. It is trained on real training images
only, by the course's training engine; its run folder ``$T2I_DATA/checkpoints/toy_oracle_<hash>/``
(``checkpoint.pt``, ``losses.csv``) is where the notebooks find it, and an interrupted run
(Ctrl-C) resumes from it::

    python data_scripts/train_toy_oracle.py                      # data/toybirds, defaults
    python data_scripts/train_toy_oracle.py --steps 3000 --retrain

Exit status 1 when the oracle misses the course's gates (mean attribute accuracy >= 98 %,
every attribute >= 95 %, segmentation IoU >= 0.9), so a script can rely on it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from t2ilib.data.toybirds import ensure_toybirds
from t2ilib.io import one_line_error
from t2ilib.metrics.toy_oracle import JUDGE_THRESHOLD
from t2ilib.metrics.toy_oracle_train import OracleTrainConfig, load_or_train_oracle
from t2ilib.runtime import pick_device

MEAN_GATE, IOU_GATE = 0.98, 0.9


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="a ToyBirds folder (default: $T2I_DATA/toybirds, built if missing)")
    parser.add_argument("--steps", type=int, default=OracleTrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=OracleTrainConfig.batch_size)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--retrain", action="store_true")
    args = parser.parse_args(argv)
    try:
        root = args.data_dir if args.data_dir is not None else ensure_toybirds()
        config = OracleTrainConfig(steps=args.steps, batch_size=args.batch_size)
        _, report = load_or_train_oracle(root, config=config, retrain=args.retrain,
                                         device=pick_device(args.device))
    except KeyboardInterrupt as stop:  # Ctrl-C: the checkpoint is saved, a rerun resumes
        print(stop)
        return 130
    except (ValueError, OSError) as err:  # a bad or missing file: named in one line
        return one_line_error("train_toy_oracle.py", err)
    print(report)
    if report.train_seconds:
        print(f"trained in {report.train_seconds:.0f} s")
    ok = (report.mean_accuracy >= MEAN_GATE and report.mask_iou >= IOU_GATE
          and min(report.accuracy.values()) >= JUDGE_THRESHOLD)
    print("gates (mean >= 98 %, each >= 95 %, IoU >= 0.9):", "met" if ok else "MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
