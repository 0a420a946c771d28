"""Run fingerprints: the one rule that decides whether a checkpoint may be resumed.

A run's fingerprint is its settings as flat plain data (:func:`run_fingerprint`): configs,
data, vocabulary. A run may resume a checkpoint only when the two fingerprints are equal;
:func:`check_compatible` names every field that differs otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from typing import Any

from t2ilib.io import BriefError

__all__ = ["CheckpointMismatch", "run_fingerprint", "check_compatible", "plain"]


class CheckpointMismatch(BriefError, ValueError):
    """The checkpoint was made by a run with another configuration or vocabulary."""


def run_fingerprint(**sections: Any) -> dict[str, Any]:
    """The one fingerprint rule: ``{"section.field": value}`` of plain data.

    Each keyword is a section: a dataclass (its fields, less those named in its
    ``RUN_ONLY`` class attribute, such as the number of epochs), a dict, or a plain value.
    Two runs whose fingerprints are equal may resume each other's checkpoints.
    """
    flat: dict[str, Any] = {}
    for name, value in sections.items():
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            skip = set(getattr(value, "RUN_ONLY", ()))
            value = plain({f.name: getattr(value, f.name) for f in dataclasses.fields(value)
                            if f.name not in skip})
        if isinstance(value, Mapping):
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    return plain(flat)


def plain(obj: Any) -> Any:
    """Round-trip through JSON (tuples become lists, dataclasses dicts): stored and fresh
    data compare equal."""
    return json.loads(json.dumps(obj, default=_as_dict))


def _as_dict(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    raise TypeError(f"{type(obj).__name__} is not plain data (JSON)")


def check_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], *,
                     path: str | os.PathLike[str] | None = None) -> None:
    """Raise :class:`CheckpointMismatch` naming every field where the fingerprints ``saved``
    and ``current`` differ."""
    keys = set(saved) | set(current)
    diffs = [f"{k}: checkpoint has {saved.get(k, '<missing>')!r}, this run has "
             f"{current.get(k, '<missing>')!r}"
             for k in sorted(keys) if saved.get(k) != current.get(k)]
    if diffs:
        where = f"{path} was" if path is not None else "the checkpoint was"
        raise CheckpointMismatch(f"{where} made with another configuration:\n  "
                                 + "\n  ".join(diffs)
                                 + "\nUse the same settings, another checkpoint path, or retrain.")
