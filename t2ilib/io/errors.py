"""The course's errors for bad files, and the one line a command prints for them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["BriefError", "MissingWeightsError", "BadFileError", "REMAKE", "one_line_error"]


class BriefError(Exception):
    """Mixin for errors whose message says everything: IPython and Jupyter show them as one
    line (``Name: message``) instead of a 40-line traceback (IPython's ``_render_traceback_``
    hook). Scripts still print the full traceback; the CLI prints ``t2ilib: error: ...``."""

    def _render_traceback_(self) -> list[str]:
        return [f"{type(self).__name__}: {self}"]


class MissingWeightsError(BriefError, FileNotFoundError):
    """Pretrained weights were asked for but no local file holds them (nothing is downloaded)."""


class BadFileError(BriefError, ValueError):
    """A file the course reads back cannot be used: empty, truncated, corrupt, of another kind.

    The message names the file, says what is wrong and what to do (usually: remake it, with
    the command that made it). ``path``, ``problem`` and ``remedy`` keep the three parts.
    The CLI prints it as one ``t2ilib: error: ...`` line (exit 2).
    """

    def __init__(self, path: str | os.PathLike[str], problem: str, remedy: str = "") -> None:
        self.path, self.problem, self.remedy = Path(path), problem, remedy
        super().__init__(f"{path}: {problem}" + (f". {remedy}" if remedy else ""))


def one_line_error(prog: str, err: BaseException | str) -> int:
    """Print ``<prog>: error: <message>`` as one line on stderr; returns exit status 2.
    The scripts' answer to a bad file or argument (the CLI's argparse prints the same)."""
    print(f"{prog}: error: {' '.join(str(err).split())}", file=sys.stderr)
    return 2


REMAKE = ("Remake it: re-run the notebook or command that wrote it (retrain=True / --retrain), "
          "or delete it")
