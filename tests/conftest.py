"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# Fixture notebooks are inputs to tests, not notebooks of the course: nbval must not run them.
collect_ignore_glob = ["fixtures/*"]


@pytest.fixture(scope="session")
def repo() -> Path:
    """The repository root."""
    return REPO
