"""Environment self-check for notebook 00: is this machine ready for the course?

Prints one ``[OK]`` / ``[WARN]`` / ``[FAIL]`` line per item: Python, the packages t2ilib
declares (installed versions against pyproject's ranges), PyTorch's devices (CUDA GPU name
and free memory when there is one), the nltk tokenizer and the Jupyter kernel.
"""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from importlib import metadata

__all__ = ["Check", "environment_report", "print_report"]


@dataclass(frozen=True)
class Check:
    """One line of the report."""

    status: str  # "OK", "WARN" or "FAIL"
    item: str
    detail: str

    def __str__(self) -> str:
        return f"[{self.status:>4}] {self.item:<18} {self.detail}"


def _requirements(extras: tuple[str, ...] = ("dev",)) -> list[tuple[str, str, str | None]]:
    """(name, specifier, extra) for each requirement of the installed t2ilib distribution."""
    from packaging.requirements import Requirement

    out = []
    for line in metadata.requires("t2ilib") or []:
        req = Requirement(line)
        extra = None
        if req.marker is not None:
            extra = next((e for e in extras if req.marker.evaluate({"extra": e})), "other")
        if extra != "other":
            out.append((req.name, str(req.specifier), extra))
    return out


def environment_report() -> list[Check]:
    """Collect the checks; nothing is printed (see :func:`print_report`)."""
    from packaging.version import Version

    checks = []
    py_ok = sys.version_info >= (3, 10)
    checks.append(Check("OK" if py_ok else "FAIL", "python",
                        f"{platform.python_version()} ({sys.executable})"))
    try:
        requirements = _requirements()
    except metadata.PackageNotFoundError:
        requirements = []
        checks.append(Check("FAIL", "t2ilib",
                            "not installed: run `make install` (pip install -e .[dev])"))
    for name, spec, extra in requirements:
        label = name + (" [dev]" if extra else "")
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            checks.append(Check("WARN" if extra else "FAIL", label, "missing"))
            continue
        from packaging.specifiers import SpecifierSet

        ok = SpecifierSet(spec).contains(Version(version), prereleases=True)
        checks.append(Check("OK" if ok else "FAIL", label,
                            version + ("" if ok else f" (needs {spec})")))

    import torch

    if torch.cuda.is_available():
        free, total = torch.cuda.mem_get_info()
        name = torch.cuda.get_device_name()
        bf16 = "yes" if torch.cuda.is_bf16_supported() else "no"
        checks.append(Check("OK", "cuda", f"{name}: {free / 2**30:.1f} of {total / 2**30:.1f} GiB "
                                          f"free, bf16 {bf16}"))
    else:
        checks.append(Check("OK", "cuda", "no GPU: the notebooks' defaults run on the CPU "
                                          f"({torch.get_num_threads()} threads)"))
    try:
        from nltk.tokenize import RegexpTokenizer

        tokens = RegexpTokenizer(r"\w+").tokenize("this bird has a red belly.")
        checks.append(Check("OK", "nltk tokenize", " | ".join(tokens)))
    except Exception as err:  # noqa: BLE001 - report any failure as a line
        checks.append(Check("FAIL", "nltk tokenize", repr(err)))
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        spec = KernelSpecManager().get_kernel_spec("python3")
        same = spec.argv[0] in (sys.executable, "python", "python3")
        checks.append(Check("OK" if same else "WARN", "kernel python3",
                            spec.argv[0] + ("" if same else
                                            " (not this Python: run `make install`)")))
    except Exception as err:  # noqa: BLE001
        checks.append(Check("WARN", "kernel python3", f"not found ({err.__class__.__name__})"))
    return checks


def print_report() -> bool:
    """Print the report; return True when nothing failed."""
    checks = environment_report()
    for check in checks:
        print(check)
    failed = [c for c in checks if c.status == "FAIL"]
    print(f"\n{len(checks) - len(failed)} of {len(checks)} checks passed"
          + ("" if not failed else f"; fix: {', '.join(c.item for c in failed)}"))
    return not failed
