"""Run the course notebooks: re-execute committed copies in place, or run a series with papermill.

Two jobs, two tools:

* ``execute`` (nbclient): re-runs a notebook top to bottom *in place* with its default
  parameters and writes it back clean: execution counts 1..n, no papermill metadata. This
  is how committed notebooks are produced (``make notebooks``).
* ``series`` (papermill): runs notebooks into an output folder with parameters injected,
  as a batch job (``make demo``); the executed copies carry papermill's metadata and stay
  out of git.

Usage::

    python -m t2ilib.course.notebooks execute notebooks/01_data.ipynb [...]
    python -m t2ilib.course.notebooks series --out runs/NOW notebooks/0*.ipynb
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["execute_in_place", "run_series", "extract_figures", "checkpoint_ids",
           "checkpoint_disagreements", "KERNEL_NAME"]

#: Every notebook is committed with, and executed under, this kernelspec name.
KERNEL_NAME = "python3"


def execute_in_place(path: str | os.PathLike[str], timeout: int = 3600) -> float:
    """Execute ``path`` top to bottom with its default parameters and save it back.

    The working directory is the notebook's folder. Returns the wall time in seconds.
    Raises ``nbclient.exceptions.CellExecutionError`` (the file is left untouched) when a
    cell fails.
    """
    import nbformat
    from nbclient import NotebookClient

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("papermill", None)
        cell.metadata.pop("execution", None)
    nb.metadata["kernelspec"] = {"name": KERNEL_NAME, "display_name": "Python 3",
                                 "language": "python"}
    start = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name=KERNEL_NAME,
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute()
    elapsed = time.perf_counter() - start
    nbformat.write(nb, path)
    return elapsed


def run_series(notebooks: Sequence[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
               parameters: dict | None = None) -> list[Path]:
    """Run ``notebooks`` in order with papermill into ``out_dir``; stop at the first failure.

    Each notebook runs with its own folder as working directory and gets
    ``T2I_RUN_DIR=<out_dir>`` in its environment. Every figure a notebook shows is also
    written to ``out_dir/figures/<notebook>_cell<NN>_<k>.png``. Returns the executed
    notebooks' paths.
    """
    import papermill as pm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("T2I_RUN_DIR")
    os.environ["T2I_RUN_DIR"] = str(out.resolve())  # inherited by each kernel
    done = []
    try:
        for nb_path in map(Path, notebooks):
            target = out / nb_path.name
            start = time.perf_counter()
            print(f"[t2i] running {nb_path} ...", flush=True)
            pm.execute_notebook(str(nb_path), str(target), parameters=parameters or {},
                                kernel_name=KERNEL_NAME, cwd=str(nb_path.parent),
                                progress_bar=False)
            figures = extract_figures(target, out / "figures")
            print(f"[t2i]   done in {time.perf_counter() - start:.0f} s -> {target}"
                  f" ({len(figures)} figures)", flush=True)
            done.append(target)
    finally:
        if previous is None:
            os.environ.pop("T2I_RUN_DIR", None)
        else:
            os.environ["T2I_RUN_DIR"] = previous
    return done


def extract_figures(notebook: str | os.PathLike[str],
                    out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write every PNG output of an executed notebook to ``out_dir``; return the paths."""
    import base64

    import nbformat

    notebook, out = Path(notebook), Path(out_dir)
    nb = nbformat.read(notebook, as_version=4)
    written = []
    for index, cell in enumerate(nb.cells):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", [])
                if "image/png" in o.get("data", {})]
        for k, png in enumerate(pngs):
            out.mkdir(parents=True, exist_ok=True)
            path = out / f"{notebook.stem}_cell{index:02d}_{k}.png"
            path.write_bytes(base64.b64decode(png))
            written.append(path)
    return written


#: What :func:`t2ilib.engine.checkpoint.checkpoint_id` prints: run folder and file digest.
CHECKPOINT_ID = re.compile(r"checkpoint ([\w.-]+)@([0-9a-f]{12})")


def checkpoint_ids(notebook: str | os.PathLike[str]) -> dict[str, set[str]]:
    """``{run folder: {digests}}`` printed in a notebook's committed outputs."""
    import nbformat

    found: dict[str, set[str]] = {}
    for cell in nbformat.read(Path(notebook), as_version=4).cells:
        for output in cell.get("outputs", []):
            text = output.get("text", "") or output.get("data", {}).get("text/plain", "")
            for run, digest in CHECKPOINT_ID.findall(text):
                found.setdefault(run, set()).add(digest)
    return found


def checkpoint_disagreements(notebooks: Sequence[str | os.PathLike[str]]) -> list[str]:
    """One line per run whose checkpoint digest differs between (or within) the notebooks'
    outputs: a notebook executed against another run's file than the one its producer
    printed. Empty when the series is one consistent run."""
    seen: dict[str, dict[str, list[str]]] = {}
    for notebook in notebooks:
        for run, digests in checkpoint_ids(notebook).items():
            for digest in digests:
                seen.setdefault(run, {}).setdefault(digest, []).append(Path(notebook).name)
    return [f"{run}: " + "; ".join(f"{d} in {', '.join(names)}" for d, names in by.items())
            for run, by in sorted(seen.items()) if len(by) > 1]


def _main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m t2ilib.course.notebooks",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    ex = sub.add_parser("execute", help="re-execute notebooks in place (clean, for committing)")
    ex.add_argument("notebooks", nargs="+")
    se = sub.add_parser("series", help="run notebooks with papermill into an output folder")
    se.add_argument("notebooks", nargs="+")
    se.add_argument("--out", default=None, help="output folder (default runs/<timestamp>)")
    args = parser.parse_args(argv)

    missing = [p for p in args.notebooks if not Path(p).is_file()]
    if missing:
        parser.error(f"no such notebook: {', '.join(missing)}")
    if args.cmd == "execute":
        for p in args.notebooks:
            print(f"executing {p} ...", flush=True)
            print(f"  {execute_in_place(p):.0f} s", flush=True)
        return 0
    out = args.out or os.path.join("runs", _dt.datetime.now().strftime("%Y%m%d-%H%M%S"))
    done = run_series(sorted(args.notebooks), out)
    print(f"\nExecuted notebooks and figures are in {Path(out).resolve()}/")
    for p in done:
        print(f"  {p}")
    return 0


if __name__ == "__main__":
    sys.exit(_main())
