r"""The Oxford-102 flowers reader, with Reed et al.'s ten captions per image (SISGAN's data).

What ``data_scripts/download_flowers.py`` puts under ``<root>`` (default ``data/flowers``)::

    jpg/image_00001.jpg ... image_08189.jpg     8,189 images (a few are greyscale)
    imagelabels.mat                             'labels': 1 x 8189, classes 1..102
    setid.mat                                   'trnid' / 'valid' / 'tstid': 1-based image ids
    <one folder>/text_c10/class_00001/image_06734.txt ...   10 captions per image
    <one folder>/trainvalclasses.txt, testclasses.txt   (Reed's class split, if the archive has it)

The ``.mat`` files are MATLAB v5 files, read with ``scipy.io.loadmat(squeeze_me=True)``; a
split holding a single id comes back as a 0-d scalar, so every split goes through
``np.atleast_1d`` (``metrics_data.md`` §3.4).

**Splits.** SISGAN and TAGAN train on Reed et al.'s *class-disjoint* split: 82 train+val
classes and 20 test classes, listed in ``trainvalclasses.txt`` / ``testclasses.txt`` (Reed et al.,
CVPR 2016). The package ships these two lists in ``t2ilib/data/flowers_split/`` (see the README
there), so the default ``scheme="classes"`` does not depend on the archive. When the archive's own
copies sit next to ``text_c10``, each must name the same classes as ours; otherwise a
``ValueError`` names both files (:func:`reed_class_split`). ``scheme="setid"`` selects Oxford's
image split instead (``trnid`` + ``valid`` = 2,040 training images, ``tstid`` for testing). That
split is **not** class-disjoint, and a ``UserWarning`` says so every time it is used.

**Captions and vocabulary.** Each caption file keeps its first ten lines that contain a
word (as the CUB reader does); the vocabulary is built from every caption of every image in
image-id order (AttnGAN's rule: train and test words, no minimum count), so it does not
depend on the split. Images are centre-cropped to a square (flowers have no boxes) and
resized like CUB's items, so :class:`FlowersDataset` yields the same
``(image, caption, length, class_id, key)`` items as :class:`~t2ilib.data.cub.CUBDataset`.

:func:`make_flowers_fixture` writes a 12-image tree in exactly this layout, with the quirks
of the real data (a greyscale JPEG, a caption file with an empty line and non-ASCII words,
an 11th caption, a one-id split), for the tests.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import Tensor

from t2ilib.data.caption_files import CAPTIONS_PER_IMAGE, CaptionNotes, read_caption_lines
from t2ilib.data.cub import SPLITS, WORDS_NUM, load_cropped_image
from t2ilib.data.cub_dataset import CaptionedImages
from t2ilib.text.vocab import Vocabulary, tokenize

__all__ = ["N_CLASSES", "SCHEMES", "SPLIT_DIR", "LIST_NAMES", "SETID_WARNING", "read_mat_array",
           "read_labels", "read_setid", "find_text_root", "read_class_list", "reed_class_split",
           "caption_file", "FlowersIndex", "flowers_index", "FlowersDataset", "FlowersFixture",
           "make_flowers_fixture"]

N_CLASSES = 102
#: How to split: Reed's class lists (default), Oxford's setid.mat, or "auto" (the class lists,
#: falling back to setid only when no class list can be found at all).
SCHEMES = ("classes", "setid", "auto")
#: The package's copy of Reed's class split (82 train+val / 20 test classes).
SPLIT_DIR = Path(__file__).resolve().parent / "flowers_split"
LIST_NAMES = ("trainvalclasses.txt", "testclasses.txt")
SETID_WARNING = ("Oxford's setid.mat image split is not class-disjoint: test classes are seen in "
                 "training; the paper's figures use Reed's class split (scheme='classes')")


def read_mat_array(path: str | os.PathLike[str], name: str) -> np.ndarray:
    """Variable ``name`` of a MATLAB v5 file as a 1-D int64 array (a scalar becomes ``(1,)``)."""
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path} (data_scripts/download_flowers.py "
                                "fetches it)")
    mat = loadmat(path, squeeze_me=True)
    if name not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"{path} has no variable {name!r}; it holds {found}")
    return np.atleast_1d(np.asarray(mat[name])).astype(np.int64).ravel()


def read_labels(path: str | os.PathLike[str]) -> np.ndarray:
    """``imagelabels.mat`` -> labels ``(N,)``, image ``i + 1``'s class in 1..102."""
    labels = read_mat_array(path, "labels")
    if labels.size and (labels.min() < 1 or labels.max() > N_CLASSES):
        raise ValueError(f"{path}: labels must lie in 1..{N_CLASSES}, got "
                         f"{labels.min()}..{labels.max()}")
    return labels


def read_setid(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """``setid.mat`` -> ``{"trnid", "valid", "tstid"}``, each a 1-D array of 1-based image ids."""
    return {name: read_mat_array(path, name) for name in ("trnid", "valid", "tstid")}


def find_text_root(root: str | os.PathLike[str]) -> Path:
    """The ``text_c10`` folder: ``<root>/text_c10`` or ``<root>/<one folder>/text_c10``."""
    root = Path(root)
    candidates = [root / "text_c10", *sorted(root.glob("*/text_c10"))]
    for c in candidates:
        if c.is_dir():
            return c
    raise FileNotFoundError(f"no text_c10/ folder in {root} or its subfolders: extract Reed et "
                            "al.'s cvpr2016_flowers.tar.gz there "
                            "(data_scripts/download_flowers.py)")


def read_class_list(path: str | os.PathLike[str]) -> list[int]:
    """A Reed class list (``class_00001`` per line) -> class numbers ``[1, ...]``."""
    out = []
    for line in Path(path).read_text().split("\n"):
        line = line.strip()
        if not line:
            continue
        if not line.startswith("class_") or not line[6:].isdigit():
            raise ValueError(f"{path}: expected lines like 'class_00001', got {line!r}")
        out.append(int(line[6:]))
    return out


def reed_class_split(archive_dir: str | os.PathLike[str] | None = None,
                     shipped_dir: str | os.PathLike[str] | None = None,
                     ) -> tuple[set[int], set[int], tuple[Path, Path]]:
    """Reed's train+val and test classes, from the package's lists, checked against the archive's.

    ``shipped_dir`` (default :data:`SPLIT_DIR`) holds the package's ``trainvalclasses.txt`` and
    ``testclasses.txt``; ``archive_dir`` is the folder of ``text_c10``, where Reed's archive keeps
    its own copies. Each archive list that is present must name the same classes as the package's
    one, else ``ValueError`` naming both files. If the package's lists are missing (an install
    without its data files), the archive's are used; if there are none, ``FileNotFoundError``.

    Returns ``(trainval_classes, test_classes, (trainval_file, test_file))``.
    """
    ours = [Path(shipped_dir if shipped_dir is not None else SPLIT_DIR) / n for n in LIST_NAMES]
    theirs = [Path(archive_dir) / n for n in LIST_NAMES] if archive_dir is not None else []
    if all(p.is_file() for p in ours):
        used = ours
        for mine, other in zip(ours, theirs):
            if not other.is_file():
                continue
            a, b = set(read_class_list(other)), set(read_class_list(mine))
            if a != b:
                raise ValueError(f"Reed's class lists disagree: {other} (the archive's) and {mine} "
                                 f"(the package's) differ: only in the archive's "
                                 f"{sorted(a - b)}, only in the package's {sorted(b - a)}; one "
                                 "of them is not Reed's cvpr2016_flowers split")
    elif theirs and all(p.is_file() for p in theirs):
        used = theirs
    else:
        missing = [str(p) for p in [*ours, *theirs] if not p.is_file()]
        raise FileNotFoundError(f"Reed's class lists are missing: {missing} (the package's copy "
                                "belongs in t2ilib/data/flowers_split/: reinstall t2ilib; "
                                "scheme='setid' needs no list but is not class-disjoint)")
    train, test = (set(read_class_list(p)) for p in used)
    if train & test:
        raise ValueError(f"classes in both {used[0]} and {used[1]}: {sorted(train & test)}")
    return train, test, (used[0], used[1])


def caption_file(text_root: Path, label: int, image_id: int) -> Path:
    """``text_c10/class_<label:05d>/image_<id:05d>.txt``."""
    return text_root / f"class_{label:05d}" / f"image_{image_id:05d}.txt"


@dataclass
class FlowersIndex:
    """Which images belong to a split, with their labels (see :func:`flowers_index`)."""

    root: Path
    text_root: Path
    scheme: str  # "classes" (Reed's class split) or "setid" (Oxford's image split)
    labels: np.ndarray  # (8189,) class of image id i + 1
    ids: dict[str, list[int]] = field(default_factory=dict)  # split -> sorted 1-based ids
    class_lists: tuple[Path, Path] | None = None  # the two lists used ("classes" only)


def flowers_index(root: str | os.PathLike[str], scheme: str = "classes") -> FlowersIndex:
    """Read the labels and the split of an Oxford-102 folder, and locate its captions.

    ``scheme``:

    * ``"classes"`` (default): Reed et al.'s class-disjoint split (82 train+val / 20 test
      classes), from the package's lists, checked against the archive's copies next to
      ``text_c10`` when those are there (:func:`reed_class_split`).
    * ``"setid"``: Oxford's image split, ``trnid`` + ``valid`` for training and ``tstid`` for
      testing. It is not class-disjoint, so a ``UserWarning`` (:data:`SETID_WARNING`) is issued.
    * ``"auto"``: ``"classes"``, falling back to ``"setid"`` (with the warning) only when no
      class list can be found.
    """
    if scheme not in SCHEMES:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    root = Path(root)
    if not (root / "jpg").is_dir():
        raise FileNotFoundError(f"{root / 'jpg'} is missing: extract 102flowers.tgz into {root} "
                                "(data_scripts/download_flowers.py)")
    labels = read_labels(root / "imagelabels.mat")
    text_root = find_text_root(root)
    all_ids = np.arange(1, len(labels) + 1)
    lists = None
    if scheme in ("classes", "auto"):
        try:
            train_classes, test_classes, lists = reed_class_split(text_root.parent)
            scheme = "classes"
        except FileNotFoundError as err:
            if scheme == "classes":
                raise
            warnings.warn(f"{err}; falling back to Oxford's setid.mat split. {SETID_WARNING}",
                          UserWarning, stacklevel=2)
            scheme = "setid"
    elif scheme == "setid":
        warnings.warn(SETID_WARNING, UserWarning, stacklevel=2)
    if scheme == "classes":
        unlisted = sorted(set(labels.tolist()) - train_classes - test_classes)
        if unlisted:
            raise ValueError(f"classes {unlisted[:10]} of {root / 'imagelabels.mat'} are in "
                             f"neither {lists[0]} nor {lists[1]}")
        ids = {"train": all_ids[np.isin(labels, list(train_classes))].tolist(),
               "test": all_ids[np.isin(labels, list(test_classes))].tolist()}
    else:
        sets = read_setid(root / "setid.mat")
        bad = [int(i) for s in sets.values() for i in s if not 1 <= i <= len(labels)]
        if bad:
            raise ValueError(f"setid.mat names image ids outside 1..{len(labels)}: {bad[:5]}")
        ids = {"train": sorted(int(i) for i in np.concatenate([sets["trnid"], sets["valid"]])),
               "test": sorted(int(i) for i in sets["tstid"])}
    return FlowersIndex(root, text_root, scheme, labels, ids, lists)


class FlowersDataset(CaptionedImages):
    """Oxford-102 with Reed's captions: ``(image, caption, length, class_id, key)`` items.

    Args:
        root: the flowers folder (layout in this module's docstring).
        split: ``"train"`` or ``"test"``.
        image_size: output side ``s`` (images are resized to ``int(s * 76 / 64)`` first).
        train: random crop + flip if True, centre crop if False (default: ``split == "train"``).
        words_num, seed: as for :class:`~t2ilib.data.cub.CUBDataset`.
        scheme: the split: ``"classes"`` (Reed's class-disjoint split, the default), ``"setid"``
            (Oxford's image split, not class-disjoint: warns) or ``"auto"`` (see
            :func:`flowers_index`).

    Keys are ``"class_00077/image_00001"``; ``class_ids`` are the labels 1..102.
    ``class_lists`` names the two class lists used (``None`` for setid).
    """

    def __init__(self, root: str | os.PathLike[str], split: str = "train", image_size: int = 64,
                 train: bool | None = None, words_num: int = WORDS_NUM, seed: int | None = None,
                 scheme: str = "classes", captions_per_image: int = CAPTIONS_PER_IMAGE):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        index = flowers_index(root, scheme)
        self.root, self.text_root, self.scheme = index.root, index.text_root, index.scheme
        self.class_lists = index.class_lists
        self.split = split
        labels = index.labels
        self.image_ids = index.ids[split]
        if not self.image_ids:
            raise ValueError(f"the {split} split of {self.root} ({self.scheme}) is empty")
        # the vocabulary: every caption of every image, in image-id order
        texts: dict[int, list[str]] = {}
        missing: list[Path] = []
        notes = CaptionNotes()
        for image_id in range(1, len(labels) + 1):
            path = caption_file(self.text_root, int(labels[image_id - 1]), image_id)
            if not path.is_file():
                missing.append(path)
                continue
            texts[image_id] = read_caption_lines(path, captions_per_image, notes)
        notes.warn(captions_per_image)
        needed = [p for p in missing if int(p.stem[6:]) in set(self.image_ids)]
        if needed:
            raise FileNotFoundError(f"{len(needed)} caption files of the {split} split are "
                                    f"missing, e.g. {[str(p) for p in needed[:3]]}")
        tokens = {i: [tokenize(t) for t in caps] for i, caps in texts.items()}
        self.vocab = Vocabulary.build([t for i in sorted(tokens) for t in tokens[i]])
        self.keys = [f"class_{int(labels[i - 1]):05d}/image_{i:05d}" for i in self.image_ids]
        self.class_ids = [int(labels[i - 1]) for i in self.image_ids]
        self.captions = [self.vocab.ids(t) for i in self.image_ids for t in tokens[i]]
        self._set_sampling(split, captions_per_image, image_size, train, words_num, seed)

    def image_path(self, index: int) -> Path:
        """``<root>/jpg/image_<id:05d>.jpg`` of item ``index``."""
        return self.root / "jpg" / f"image_{self.image_ids[index]:05d}.jpg"

    def uint8_image(self, index: int) -> Tensor:
        """Decode (greyscale becomes RGB), centre-crop to a square, resize: uint8 ``(3, S, S)``."""
        return load_cropped_image(self.image_path(index), None, self.cache_size)


# ------------------------------------------------------------------------------ fixtures

FIXTURE_WORDS = ("petals", "stamen", "pistil", "leaves", "center", "sepals")
FIXTURE_COLORS = ("pink", "yellow", "white", "purple", "orange", "red")


@dataclass
class FlowersFixture:
    """What :func:`make_flowers_fixture` made (for tests to assert against)."""

    root: Path
    labels: list[int]  # class of image id i + 1
    train_classes: list[int]  # two of Reed's train+val classes
    test_classes: list[int]  # one of Reed's test classes
    train_ids: list[int]  # by Reed's class lists
    test_ids: list[int]
    setid: dict[str, list[int]]
    grayscale_id: int
    quirky_caption_id: int  # empty line, non-ASCII words, an 11th caption
    captions: dict[int, list[str]]  # the 10 captions the reader must keep


def make_flowers_fixture(out_dir: str | os.PathLike[str], seed: int = 0,
                         class_lists: bool = True, compress: bool = True,
                         images_per_class: int = 4) -> FlowersFixture:
    """Write a small Oxford-102 + ``text_c10`` tree (12 images) in the real layout, for tests.

    Three classes with ``images_per_class`` images each (4: 12 images; 12 gives a 12-image test
    split), ids interleaved as in the real file: the first two train+val classes and the first
    test class of the package's lists (:func:`reed_class_split`), so the class split has both
    halves. ``class_lists`` also writes the two lists next to
    ``text_c10`` as Reed's archive does (copies of the package's lists; ``False`` leaves them out).
    ``setid.mat`` has a **one-id** ``valid`` split; image 2 (a train class) is a **greyscale**
    JPEG; image 5's caption file has an empty line, a whitespace line, a non-ASCII word and 11
    captions. ``compress`` writes ``imagelabels.mat`` zlib-compressed (as MATLAB 7 does).
    """
    from PIL import Image
    from scipy.io import savemat

    if images_per_class < 2:
        raise ValueError(f"images_per_class must be at least 2, got {images_per_class}")
    rng = np.random.default_rng(seed)
    root = Path(out_dir)
    (root / "jpg").mkdir(parents=True, exist_ok=True)
    trainval, test, lists = reed_class_split()
    train_classes, test_classes = sorted(trainval)[:2], sorted(test)[:1]
    labels = [*train_classes, *test_classes] * images_per_class  # image id i + 1 -> class
    text_root = root / "cvpr2016_flowers" / "text_c10"
    captions: dict[int, list[str]] = {}
    grayscale_id, quirky_id = 2, 5
    for image_id, label in enumerate(labels, start=1):
        w, h = int(rng.integers(40, 90)), int(rng.integers(40, 90))  # not square
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if image_id == grayscale_id:
            image = image.convert("L")
        image.save(root / "jpg" / f"image_{image_id:05d}.jpg", quality=90)
        lines = [f"this flower has {FIXTURE_COLORS[int(rng.integers(6))]} "
                 f"{FIXTURE_WORDS[int(rng.integers(6))]} and a "
                 f"{FIXTURE_COLORS[int(rng.integers(6))]} {FIXTURE_WORDS[int(rng.integers(6))]}"
                 for _ in range(11)]
        kept = lines[:10]
        if image_id == quirky_id:
            lines = [lines[0], "", "   ", "the petals are caf\u00e9 au lait colored", *lines[1:]]
            kept = [lines[0], lines[3], *lines[4:12]]
        captions[image_id] = kept
        path = caption_file(text_root, label, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    savemat(root / "imagelabels.mat", {"labels": np.asarray(labels, dtype=np.float64)[None]},
            do_compression=compress)
    setid = {"trnid": [1, 2, 3, 4, 5, 6], "valid": [7], "tstid": [8, 9, 10, 11, 12]}
    savemat(root / "setid.mat", {k: np.asarray(v, dtype=np.float64)[None]
                                 for k, v in setid.items()})
    if class_lists:
        for name, path in zip(LIST_NAMES, lists):
            (text_root.parent / name).write_bytes(path.read_bytes())
    train_ids = [i for i, c in enumerate(labels, start=1) if c in train_classes]
    test_ids = [i for i, c in enumerate(labels, start=1) if c in test_classes]
    return FlowersFixture(root, labels, train_classes, test_classes, train_ids, test_ids, setid,
                          grayscale_id, quirky_id, captions)
