"""Session-wide test settings (applies to tests/ and to nbval's collection of notebooks/).

* Kernels started by papermill and nbval inherit this process's environment, so setting
  ``T2I_SMOKE=1`` here makes every notebook run its tiny configuration, and
  ``T2I_PROGRESS=0`` keeps progress bars out of the outputs nbval compares.
* Test data (ToyBirds smoke sets, checkpoints) go to ``build/test-data`` unless ``T2I_DATA``
  is already set, so tests never touch ``data/``.
* Each pytest-xdist worker and each kernel uses one CPU thread (``OMP_NUM_THREADS=1``):
  two workers on two cores run 5-10x faster than two workers fighting over two threads
  each. Set ``OMP_NUM_THREADS`` yourself to override.
* nbval compares text outputs only: stderr (warnings, progress) and HTML are skipped.
"""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def pytest_configure(config) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    os.environ["T2I_SMOKE"] = "1"
    os.environ["T2I_PROGRESS"] = "0"
    os.environ.setdefault("T2I_DATA", str(ROOT / "build" / "test-data"))
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")


def pytest_collectstart(collector) -> None:
    if hasattr(collector, "skip_compare"):  # an nbval notebook
        collector.skip_compare = (*collector.skip_compare, "stderr", "text/html",
                                  "application/vnd.jupyter.widget-view+json")
