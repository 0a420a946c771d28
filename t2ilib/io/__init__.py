"""Safe file I/O, one module per job: :mod:`~t2ilib.io.errors` (what a bad file raises, the
one-line message), :mod:`~t2ilib.io.writing` (atomic writes, clean-up after a killed writer)
and :mod:`~t2ilib.io.reading` (``weights_only`` checkpoint loading, images, JSON, digests).
Import from here: ``from t2ilib.io import atomic_write, load_torch``.
"""

from t2ilib.io.errors import REMAKE, BadFileError, BriefError, MissingWeightsError, one_line_error
from t2ilib.io.reading import file_sha256, load_torch, open_image, read_json
from t2ilib.io.writing import (
    atomic_write,
    remove_abandoned_folders,
    remove_stale_temporaries,
    save_torch,
)

__all__ = ["BriefError", "MissingWeightsError", "BadFileError", "REMAKE", "atomic_write",
           "save_torch", "load_torch", "open_image", "read_json", "one_line_error",
           "remove_stale_temporaries", "remove_abandoned_folders", "file_sha256"]
