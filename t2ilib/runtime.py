"""Run-time helpers every notebook and script shares: seeds, devices, data folder, progress bars.

No global state is kept here: each function reads its inputs (arguments, environment
variables) and returns a value (:func:`scratch_dir` also registers its folder's removal at exit).

Environment variables the course reads:

``T2I_DATA``
    Where datasets live. Default: ``data/`` at the repository root (so notebooks, which
    run with ``notebooks/`` as their working directory, and scripts find the same folder).
``T2I_SMOKE``
    ``1`` makes every notebook run its tiny "smoke" configuration (seconds instead of
    minutes); the test-suite sets it.
``T2I_PROGRESS``
    ``0`` turns progress bars off (batch jobs, CI logs).
``T2I_MIRROR``
    Base URL of a mirror that serves the course's archives by file name; read only by
    ``data_scripts/download_*.py`` (see :mod:`t2ilib.data.download`).
"""

from __future__ import annotations

import atexit
import hashlib
import os
import platform
import random
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

__all__ = ["step_generator", "seed_everything", "pick_device", "data_root", "checkpoint_root",
           "repo_root", "is_smoke", "progress", "machine"]

T = TypeVar("T")


def step_generator(seed: int, *keys: int) -> torch.Generator:
    """A CPU generator seeded by ``(seed, *keys)`` (e.g. epoch, step, rank; or epoch, index)
    through a hash: reproducible draws for any position without saving generator states."""
    text = "/".join(str(k) for k in (seed, *keys))
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and PyTorch (CPU and CUDA); return a torch generator with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def pick_device(device: str = "auto") -> torch.device:
    """``"auto"`` gives CUDA when available, else CPU; anything else is checked and returned.

    Raises ``ValueError`` when ``"cuda"`` is asked for on a machine without a GPU.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' was asked for, but PyTorch sees no CUDA GPU here; "
                         "use device='cpu' (or 'auto')")
    return dev


def machine(device: str | torch.device = "cpu") -> str:
    """The machine a timing was measured on, in words: the CPU model, its cores and PyTorch's
    threads, or the GPU's name (``"Intel(R) Xeon(R) ... (2 cores), 2 threads"``).

    Timings differ 3-4x between 2-core machines, so every printed time names its machine.
    """
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name(device)
    model = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:  # not Linux
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{' '.join(model.split())} ({cores} cores), {torch.get_num_threads()} threads"


def repo_root() -> Path:
    """The repository root (the folder holding ``pyproject.toml`` above this package),
    or the current directory when t2ilib is installed elsewhere."""
    here = Path(__file__).resolve().parent.parent
    return here if (here / "pyproject.toml").is_file() else Path.cwd()


def data_root() -> Path:
    """Folder for datasets: ``$T2I_DATA`` or ``<repo>/data``."""
    env = os.environ.get("T2I_DATA")
    return Path(env).expanduser() if env else repo_root() / "data"


def checkpoint_root() -> Path:
    """Folder for trained models (DAMSM encoders, the oracle): ``data_root()/checkpoints``."""
    return data_root() / "checkpoints"


def scratch_dir(prefix: str = "t2i_scratch_") -> Path:
    """A new folder in the temporary directory, removed with its contents when the interpreter
    (a notebook's kernel, a script) exits: where smoke runs keep their tiny models, so that
    none survives the run."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _env_flag(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in {"0", "false", "no", "off"}


def is_smoke() -> bool:
    """True when ``T2I_SMOKE`` asks for the tiny configuration of every notebook."""
    return _env_flag("T2I_SMOKE", False)


def progress(iterable: Iterable[T] | None = None, **kwargs) -> Iterable[T]:
    """``tqdm.auto.tqdm`` over ``iterable``, switched off when ``T2I_PROGRESS=0``.

    Keyword arguments go to tqdm (``total``, ``desc``, ``leave``...). With no iterable it
    returns a bar to advance by hand with ``.update(n)`` (e.g. bytes downloaded).
    """
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", not _env_flag("T2I_PROGRESS", True))
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, **kwargs)
