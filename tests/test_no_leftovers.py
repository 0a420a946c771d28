"""No temporary folder survives a smoke run: the training paths run in a fresh process whose
temporary directory is a folder of this test, which must be empty when the process ends (but
for PyTorch's own ``torchinductor_<user>`` cache)."""

from __future__ import annotations

import os
import subprocess
import sys

SCRIPT = """
from t2ilib.apps.cli import main
from t2ilib.apps.demo_models import load_or_train_demo_model, load_or_train_sisgan_model

load_or_train_sisgan_model(device="cpu", smoke=True, progress_bar=False)   # notebook 09 / 10
load_or_train_demo_model(device="cpu", smoke=True, progress_bar=False)     # notebook 10
assert main(["train", "sisgan", "--recipe", "smoke", "--data-dir", "data/toybirds_smoke",
             "--run-dir", "runs/sisgan", "--device", "cpu"]) == 0
"""


def test_smoke_training_leaves_nothing_in_the_temporary_directory(tmp_path):
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "T2I_DATA": str(tmp_path / "data"),
           "T2I_PROGRESS": "0"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    left = sorted(p.name for p in tmp.iterdir()
                  if not p.name.startswith("torchinductor_"))  # PyTorch's own compile cache
    assert left == []
