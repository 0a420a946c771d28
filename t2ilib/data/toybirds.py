"""ToyBirds: procedurally drawn, captioned birds in the CUB + AttnGAN layout.

A dataset a CPU can learn text-to-image from in minutes, with ground truth that real CUB
lacks. Each image is a cartoon bird on a background (drawn by :mod:`t2ilib.data.toybirds_draw`)
whose attributes are drawn **independently and uniformly** from :data:`ATTRIBUTES`:

.. math:: a = (\\text{body}, \\text{wing}, \\text{crown}, \\text{beak colour}, \\text{beak length},
          \\text{size}, \\text{facing}, \\text{background}) \\sim \\prod_k \\mathcal{U}(A_k),
          \\quad \\text{position} \\sim \\mathcal{U}[0, 1]^2

so a caption carries information the generator can only get from the text. Every caption
names a random non-empty subset of the six :data:`CAPTIONED` attributes, in CUB style
("this small bird has a red belly, blue wings and a short black beak"). Facing, position and
background are never named: they are the free "style" of an image, and a horizontal flip
(the training augmentation) keeps every caption true.

This module holds the attributes, the captions (:func:`make_caption`), the writer
(:func:`write_toybirds`, :func:`ensure_toybirds`) and the ground truth (:func:`load_groundtruth`).
Files written beside the CUB layout (see :mod:`t2ilib.data.cub`)::

    toybirds.json                  parameters; written last, so it marks a complete set
    groundtruth/attributes.json    per image: attributes, position, tight bird box, and
                                   which attributes each of its 10 captions mentions
    groundtruth/masks.npy          bird masks, bit-packed (N, H, ceil(W/8)) uint8, in
                                   images.txt order (np.unpackbits(..., axis=-1))

``bounding_boxes.txt`` holds the **whole frame** for every image, so AttnGAN's bbox crop
leaves ToyBirds untouched (a crop around the bird would erase its size and position); the
tight bird box is in the ground truth.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from t2ilib.data.toybirds_draw import render_bird
from t2ilib.data.toybirds_truth import REBUILD, ToyBirdsTruth, load_groundtruth
from t2ilib.io import read_json, remove_abandoned_folders
from t2ilib.runtime import data_root, progress
from t2ilib.text.vocab import Vocabulary, tokenize, write_captions_pickle

__all__ = ["COLORS", "BEAK_COLORS", "ATTRIBUTES", "CAPTIONED", "TOYBIRDS_VERSION",
           "sample_attributes", "make_caption", "class_of", "class_name", "write_toybirds",
           "ensure_toybirds", "ToyBirdsTruth", "load_groundtruth", "SAMPLE_CAPTIONS"]


TOYBIRDS_VERSION = 1  # bump whenever the drawing or the captions change (ensure_toybirds rebuilds)

COLORS = ("red", "orange", "yellow", "green", "blue", "purple", "brown", "black", "white",
          "grey")
BEAK_COLORS = ("black", "orange", "yellow", "red")

#: The attribute schema: name -> possible values. Attributes are independent and uniform.
ATTRIBUTES: dict[str, tuple[str, ...]] = {
    "body_color": COLORS,
    "wing_color": COLORS,
    "crown_color": COLORS,
    "beak_color": BEAK_COLORS,
    "beak_length": ("short", "long"),
    "size": ("small", "large"),
    "facing": ("left", "right"),
    "background": ("sky", "grass", "water", "sand"),
}

#: Attributes that captions may mention (facing, background and position never are).
CAPTIONED = ("body_color", "wing_color", "crown_color", "beak_color", "beak_length", "size")
MAX_CAPTION_WORDS = 18                            # AttnGAN's WORDS_NUM
#: The captions of every ToyBirds training run's per-epoch sample grid (notebook 07, the CLI).
SAMPLE_CAPTIONS = ("this bird has a red body and blue wings",
                   "a small bird with a yellow belly and black wings",
                   "this bird is green with a red crown",
                   "a large blue bird with white wings",
                   "this bird has an orange body and a short black beak",
                   "a purple bird with grey wings",
                   "this bird is white with a long yellow beak",
                   "a brown bird with green wings and a red crown")


# ------------------------------------------------------------------------- attributes

def sample_attributes(rng: np.random.Generator) -> dict[str, Any]:
    """One bird: each attribute of :data:`ATTRIBUTES` uniformly and independently, plus
    ``position`` ``[u, v]`` in [0, 1]^2 (where the bird sits within the free area)."""
    attrs: dict[str, Any] = {name: values[int(rng.integers(len(values)))]
                             for name, values in ATTRIBUTES.items()}
    attrs["position"] = [round(float(rng.random()), 4), round(float(rng.random()), 4)]
    return attrs


def class_of(attrs: dict[str, Any]) -> int:
    """The CUB-style class id (1..100): the body/wing colour combination."""
    return COLORS.index(attrs["body_color"]) * len(COLORS) + COLORS.index(attrs["wing_color"]) + 1


def class_name(class_id: int) -> str:
    """Folder name of a class, CUB style: ``"013.Red_bodied_Yellow_winged_Toybird"``."""
    body, wing = COLORS[(class_id - 1) // len(COLORS)], COLORS[(class_id - 1) % len(COLORS)]
    return f"{class_id:03d}.{body.capitalize()}_bodied_{wing.capitalize()}_winged_Toybird"


# --------------------------------------------------------------------------- captions

_PART_NOUNS = {  # attribute -> ((noun, is_plural), ...)
    "body_color": (("belly", False), ("breast", False), ("body", False), ("chest", False),
                   ("underbelly", False), ("abdomen", False), ("throat and belly", True)),
    "wing_color": (("wings", True), ("wing feathers", True), ("wings and tail", True),
                   ("secondaries", True), ("coverts", True), ("primaries", True),
                   ("flight feathers", True)),
    "crown_color": (("crown", False), ("head", False), ("cap", False),
                    ("crown feathers", True), ("forehead and crown", True)),
}
_BEAK_NOUNS = ("beak", "bill")
_LENGTH_WORDS = {"short": ("short", "stubby", "short pointed", "small"),
                 "long": ("long", "long pointed", "elongated", "very long")}
_SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big", "very large")}
_SHADES = {"red": "bright", "orange": "bright", "yellow": "bright", "green": "dark",
           "blue": "dark", "purple": "dark", "brown": "dark", "grey": "light"}
_OPENERS = ("this bird has", "a bird with", "this is a bird with", "the bird has",
            "this particular bird has", "this bird features", "here is a bird with",
            "this bird is mostly covered in feathers and has")
_SIZE_OPENERS = ("this {} bird has", "a {} bird with", "this is a {} bird with",
                 "the {} bird has", "this {} bird features", "this bird is {} and has")
_SIZE_ONLY = ("this bird is {}", "a {} bird", "this is a {} bird", "the bird is {}",
              "a {} bird sitting quietly")


def _color_word(color: str, rng: np.random.Generator) -> str:
    """The colour's name, sometimes with a shade ("bright red") or a synonym ("gray")."""
    word = "gray" if color == "grey" and rng.random() < 0.4 else color
    if color in _SHADES and rng.random() < 0.15:
        word = f"{_SHADES[color]} {word}"
    return word


def _article(word: str) -> str:
    return "an " if word[0] in "aeiou" else "a "


def _pick(options: Sequence[str], rng: np.random.Generator) -> str:
    return options[int(rng.integers(len(options)))]


def _phrases(attrs: dict[str, Any], names: list[str], rng: np.random.Generator
             ) -> list[tuple[str, str]]:
    """Each mentioned part as ``(noun phrase, clause)``: ("a red belly", "its belly is red")."""
    out = []
    for name in names:
        if name in _PART_NOUNS:
            nouns = _PART_NOUNS[name]
            noun, plural = nouns[int(rng.integers(len(nouns)))]
            color = _color_word(attrs[name], rng)
            article = "" if plural else _article(color)
            verb = "are" if plural else "is"
            out.append((f"{article}{color} {noun}",
                        f"{_pick(('its', 'the'), rng)} {noun} {verb} {color}"))
    beak_color, beak_length = "beak_color" in names, "beak_length" in names
    if beak_color or beak_length:
        noun = _pick(_BEAK_NOUNS, rng)
        words = []
        if beak_length:
            words.append(_pick(_LENGTH_WORDS[attrs["beak_length"]], rng))
        if beak_color:
            words.append(_color_word(attrs["beak_color"], rng))
        out.append((f"{_article(words[0])}{' '.join(words)} {noun}",
                    f"{_pick(('its', 'the'), rng)} {noun} is {' and '.join(words)}"))
    return out


def _join(items: list[str], rng: np.random.Generator) -> str:
    if len(items) == 1:
        return items[0]
    comma = "," if len(items) > 2 and rng.random() < 0.3 else ""
    return ", ".join(items[:-1]) + f"{comma} and {items[-1]}"


def _phrase(attrs: dict[str, Any], mentioned: tuple[str, ...], rng: np.random.Generator) -> str:
    """One random wording of a caption that names exactly the ``mentioned`` attributes."""
    parts = [n for n in mentioned if n != "size"]
    order = rng.permutation(len(parts)).tolist()
    phrases = _phrases(attrs, [parts[i] for i in order], rng)
    size_word = _pick(_SIZE_WORDS[attrs["size"]], rng) if "size" in mentioned else None
    if not phrases:  # only the size
        return _pick(_SIZE_ONLY, rng).format(size_word)
    n_clauses = int(rng.integers(0, len(phrases) + 1)) if rng.random() < 0.35 else 0
    nps = [np_ for np_, _ in phrases[:len(phrases) - n_clauses]]
    clauses = [cl for _, cl in phrases[len(phrases) - n_clauses:]]
    if nps:
        opener = (_pick(_SIZE_OPENERS, rng).format(size_word) if size_word
                  else _pick(_OPENERS, rng))
        caption = f"{opener} {_join(nps, rng)}"
        if clauses:
            caption += ", and " + _join(clauses, rng)
        return caption
    caption = _join(clauses, rng)
    if size_word:
        caption = f"{_pick(('this bird is', 'the bird is'), rng)} {size_word}, {caption}"
    return caption


def make_caption(attrs: dict[str, Any], rng: np.random.Generator,
                 max_words: int = MAX_CAPTION_WORDS) -> tuple[str, tuple[str, ...]]:
    """A CUB-style caption naming a random non-empty subset of :data:`CAPTIONED` attributes.

    Returns ``(caption, mentioned)`` with ``mentioned`` in :data:`CAPTIONED` order. The
    caption has at most ``max_words`` tokens (wordings that are too long are redrawn, the
    subset is kept), so AttnGAN's 18-word subsampling never drops a mentioned attribute.
    """
    k = int(rng.choice(np.arange(1, 7), p=[0.12, 0.26, 0.28, 0.2, 0.1, 0.04]))
    chosen = set(rng.choice(len(CAPTIONED), size=k, replace=False).tolist())
    mentioned = tuple(name for i, name in enumerate(CAPTIONED) if i in chosen)
    for _ in range(100):
        caption = _phrase(attrs, mentioned, rng)
        if len(tokenize(caption)) <= max_words:
            return caption, mentioned
    raise RuntimeError(f"no wording of {mentioned} fits in {max_words} words")


# ----------------------------------------------------------------------------- writing

def _write_pickle(path: Path, obj: list) -> None:
    import pickle

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """Every image has its own stream: image i of a split does not depend on the set size."""
    return np.random.default_rng([seed, 0 if split == "train" else 1, index])


def _write_tree(out: Path, n_train: int, n_test: int, size: int, seed: int) -> None:
    cub = out / "CUB_200_2011"
    entries = []   # (split, key, attrs, captions, mentions, box)
    masks = []
    total = n_train + n_test
    splits = [("train", i) for i in range(n_train)] + [("test", i) for i in range(n_test)]
    for number, (split, i) in enumerate(progress(splits, total=total, desc="ToyBirds",
                                                 unit="img"), start=1):
        rng = _image_rng(seed, split, i)
        attrs = sample_attributes(rng)
        image, mask = render_bird(attrs, size, rng)
        captions, mentions = zip(*(make_caption(attrs, rng) for _ in range(10)))
        key = f"{class_name(class_of(attrs))}/Toybird_{number:05d}"
        path = cub / "images" / f"{key}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path, quality=95, subsampling=0)
        text = out / "text" / f"{key}.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text("\n".join(captions) + "\n", encoding="utf-8")
        ys, xs = np.nonzero(mask)
        box = [int(xs.min()), int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]
        entries.append((split, key, attrs, list(captions), [list(m) for m in mentions], box))
        masks.append(np.packbits(mask, axis=-1))                                # (H, ceil(W/8))
    lines = [f"{n} {key}.jpg" for n, (_, key, *_rest) in enumerate(entries, start=1)]
    (cub / "images.txt").write_text("\n".join(lines) + "\n")
    (cub / "bounding_boxes.txt").write_text(
        "".join(f"{n} 0.0 0.0 {size:.1f} {size:.1f}\n" for n in range(1, total + 1)))
    (cub / "image_class_labels.txt").write_text(
        "".join(f"{n} {class_of(e[2])}\n" for n, e in enumerate(entries, start=1)))
    (cub / "train_test_split.txt").write_text(
        "".join(f"{n} {int(e[0] == 'train')}\n" for n, e in enumerate(entries, start=1)))
    n_classes = len(COLORS) ** 2
    (cub / "classes.txt").write_text(
        "".join(f"{c} {class_name(c)}\n" for c in range(1, n_classes + 1)))
    tokens = {"train": [], "test": []}
    for split in ("train", "test"):
        rows = [e for e in entries if e[0] == split]
        _write_pickle(out / split / "filenames.pickle", [e[1] for e in rows])
        _write_pickle(out / split / "class_info.pickle", [class_of(e[2]) for e in rows])
        tokens[split] = [tokenize(c) for e in rows for c in e[3]]
    vocab = Vocabulary.build(tokens["train"] + tokens["test"])
    write_captions_pickle(out / "captions.pickle", [vocab.ids(t) for t in tokens["train"]],
                          [vocab.ids(t) for t in tokens["test"]], vocab)
    gt = out / "groundtruth"
    gt.mkdir(exist_ok=True)
    truth = {
        "version": TOYBIRDS_VERSION, "size": size,
        "schema": {k: list(v) for k, v in ATTRIBUTES.items()}, "captioned": list(CAPTIONED),
        "keys": [e[1] for e in entries],
        "images": {key: {"split": split, "attributes": attrs, "bird_box": box,
                         "mentions": mentions}
                   for split, key, attrs, _caps, mentions, box in entries},
    }
    (gt / "attributes.json").write_text(json.dumps(truth, indent=0, sort_keys=True))
    np.save(gt / "masks.npy", np.stack(masks))                                 # (N, H, W/8)
    manifest = {"generator": "t2ilib.data.toybirds", "version": TOYBIRDS_VERSION, "seed": seed,
                "n_train": n_train, "n_test": n_test, "size": size}
    (out / "toybirds.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")


def _manifest(root: Path) -> dict[str, Any] | None:
    path = root / "toybirds.json"
    return read_json(path, REBUILD) if path.is_file() else None


def write_toybirds(out_dir: str | os.PathLike[str], n_train: int = 4000, n_test: int = 1000,
                   size: int = 64, seed: int = 0, overwrite: bool = False) -> Path:
    """Render a ToyBirds set into ``out_dir`` (CUB + AttnGAN layout + ground truth).

    The set is built in a temporary sibling folder and renamed into place when complete.
    An existing ToyBirds folder is replaced only with ``overwrite=True``; any other
    non-empty folder is refused. Deterministic: equal arguments give identical bytes.
    """
    if n_train < 1 or n_test < 1:
        raise ValueError(f"need at least one train and one test image, got {n_train}/{n_test}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        if _manifest(out) is None:
            raise FileExistsError(f"{out} exists, is not empty and is not a ToyBirds folder")
        if not overwrite:
            raise FileExistsError(f"{out} already holds a ToyBirds set (pass overwrite=True)")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_folders(out.parent, f".{out.name}.tmp-")  # left by a killed build
    tmp = out.parent / f".{out.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _write_tree(tmp, n_train, n_test, size, seed)
        if overwrite and out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)  # fails if another process has meanwhile filled `out`
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def ensure_toybirds(root: str | os.PathLike[str] | None = None, size: int = 64,
                    n_train: int = 4000, n_test: int = 1000, seed: int = 0) -> Path:
    """The ToyBirds folder for these parameters, made on first use.

    ``root`` defaults to ``data_root()/"toybirds"`` (``"toybirds_<size>"`` for other sizes).
    A folder made with other parameters raises ``ValueError`` (choose another root).
    """
    if root is None:
        root = data_root() / ("toybirds" if size == 64 else f"toybirds_{size}")
    root = Path(root)
    wanted = {"generator": "t2ilib.data.toybirds", "version": TOYBIRDS_VERSION, "seed": seed,
              "n_train": n_train, "n_test": n_test, "size": size}
    found = _manifest(root)
    if found is None:
        try:
            write_toybirds(root, n_train, n_test, size, seed)
        except (FileExistsError, OSError):
            found = _manifest(root)  # another process may have finished it first
            if found is None:
                raise
        else:
            return root
    if found != wanted:
        raise ValueError(f"{root} holds ToyBirds {found}, not {wanted}; pass another root "
                         "or remove the folder")
    return root
