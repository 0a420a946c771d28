#!/usr/bin/env bash
# Everything in the course that needs a CUDA GPU, in one run (a few minutes on one H200):
#   bash benchmarks/gpu_checks.sh            # PY=.venv/bin/python bash benchmarks/gpu_checks.sh
# 1. the CUDA tests (the training step never waits for the GPU; other CUDA-only tests);
# 2. the training-step table: strict fp32, eager fp32 (PyTorch's defaults) and the fast path,
#    with host syncs per step, for notebook 07's config and the paper's (256 px, batch 24);
# 3. the same with torch.compile in the fast path (the first steps compile: warm-up 3).
set -euo pipefail
PY=${PY:-python}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA GPU'; print(torch.__version__, torch.cuda.get_device_name())"
"$PY" -m pytest -q -rs tests -k cuda -p no:cacheprovider
"$PY" benchmarks/train_step.py --device cuda --batch-size 24 --configs nb07 paper --steps 10 --warmup 3
"$PY" benchmarks/train_step.py --device cuda --batch-size 24 --configs paper --steps 10 --warmup 3 --compile
