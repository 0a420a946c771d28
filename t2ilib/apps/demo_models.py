"""Where the demo's models come from (notebook 10).

:func:`load_or_train_demo_model` loads notebook 07's SSA-GAN checkpoint when one exists and
otherwise trains a small SSA-GAN on ToyBirds with one of the recipes of
:mod:`t2ilib.ssagan.recipes` (seconds in smoke mode) and keeps it under
:func:`t2ilib.runtime.checkpoint_root` for the next time; :func:`load_or_train_sisgan_model`
does the same for notebook 09's SISGAN and picks the source images to edit.
:func:`load_reference_ssagan` and :func:`load_reference_sisgan` load the course's reference
models, shipped in ``models/`` as sampling-only files (:mod:`t2ilib.engine.sampling_file`), and
:func:`measure_masks` scores a model's SSACN masks against the ToyBirds oracle's segmentation.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from t2ilib.io import file_sha256
from t2ilib.runtime import checkpoint_root, data_root, pick_device, repo_root, seed_everything
from t2ilib.ssagan.recipes import RECIPES, Recipe
from t2ilib.text.vocab import Vocabulary

__all__ = ["DemoTrainConfig", "DemoModel", "notebook07_checkpoints", "load_or_train_demo_model",
           "SISGANModel", "load_or_train_sisgan_model", "REFERENCE_FILES",
           "reference_model_file", "reference_entry",
           "load_reference_ssagan", "load_reference_sisgan",
           "measure_masks"]

#: The course's reference models (``models/README.md`` says how each was made).
REFERENCE_FILES = {"ssagan": "ssagan_toybirds_reference.pt",
                   "sisgan": "sisgan_toybirds_reference.pt"}

# ------------------------------------------------------------------------- the SSA-GAN model

@dataclass(frozen=True)
class DemoTrainConfig:
    """The small SSA-GAN trained when notebook 07 left no checkpoint (ToyBirds, CPU).

    The GAN trains with one of :mod:`t2ilib.ssagan.recipes` (default ``TOYBIRDS``, notebook
    07's recipe); the fields set to ``None`` keep the recipe's value. The DAMSM it needs is
    pretrained here (two epochs). :meth:`smoke` takes seconds.
    """

    dataset_dir: str = "toybirds"  # folder under data_root(); made on first use
    n_train: int = 4000
    n_test: int = 1000
    resolution: int = 32
    text_dim: int = 64  # sentence size (the DAMSM's hidden_dim)
    cnn_width: int = 16  # DAMSM image encoder width
    damsm_epochs: int = 2
    recipe: str = "toybirds"  # t2ilib.ssagan.recipes.RECIPES
    ngf: int | None = None
    ndf: int | None = None
    batch_size: int | None = None
    epochs: int | None = None
    max_steps_per_epoch: int | None = None
    seed: int = 100

    @classmethod
    def smoke(cls) -> DemoTrainConfig:
        """A seconds-long run on the 48-image ToyBirds set the smoke notebooks share."""
        return cls(dataset_dir="toybirds_smoke", n_train=48, n_test=16, text_dim=32,
                   cnn_width=8, damsm_epochs=1, recipe="smoke")

    def gan_recipe(self) -> Recipe:
        """The recipe with this config's sizes and overrides."""
        changes = {k: getattr(self, k) for k in ("ngf", "ndf", "batch_size", "epochs",
                                                 "max_steps_per_epoch")
                   if getattr(self, k) is not None}
        return RECIPES[self.recipe].with_(resolution=self.resolution, sentence_dim=self.text_dim,
                                          seed=self.seed, **changes)

    def run_dir(self) -> Path:
        """``checkpoint_root()/demo_ssagan_<data>_<res>px_<hash of this config>``."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return (checkpoint_root()
                / f"demo_ssagan_{self.dataset_dir}_{self.resolution}px_{digest[:8]}")


@dataclass
class DemoModel:
    """A text-to-image generator ready for the demo (both networks in eval mode).

    ``source``: where it came from, in words (shown in the UI). ``mask_iou``: the oracle's
    mask report (:func:`measure_masks`) once measured; the demo then shows the SSACN stage
    that localises the bird best, labelled with its IoU, instead of every stage.
    """

    generator: torch.nn.Module
    text_encoder: torch.nn.Module
    vocab: Vocabulary
    checkpoint: Path | None
    source: str
    mask_iou: dict[str, Any] = field(default_factory=dict)

    def best_mask_stage(self) -> tuple[int, float, float] | None:
        """``(stage index, its IoU, the centred disc's IoU)`` of the stage whose mask best
        matches the oracle's bird, or ``None`` before :func:`measure_masks`."""
        stages = self.mask_iou.get("stages") or []
        if not stages:
            return None
        k = max(range(len(stages)), key=lambda i: stages[i]["iou"])
        return k, float(stages[k]["iou"]), float(self.mask_iou["centred_blob"])

    @property
    def resolution(self) -> int:
        return int(self.generator.config.resolution)

    def describe(self) -> str:
        cfg = self.generator.config
        n = sum(p.numel() for p in self.generator.parameters())
        return (f"{self.source}: {cfg.resolution} px, ngf {cfg.ngf}, {cfg.block} blocks, "
                f"{n:,} generator parameters, {len(self.vocab)} words")


def notebook07_checkpoints(smoke: bool = False) -> list[Path]:
    """Checkpoints notebook 07 wrote (``nb07_*/checkpoint.pt``), best first.

    Looks in ``data_root()/runs`` (where notebook 07 writes), :func:`checkpoint_root` and, for
    older runs, ``runs/`` at the repository root. Smoke runs (``*_smoke``) count only when
    ``smoke``, and then come first (they are tiny); otherwise the newest comes first.
    """
    bases = (data_root() / "runs", checkpoint_root(), repo_root() / "runs")
    found = {p.resolve() for base in bases for p in base.glob("nb07_*/checkpoint.pt")
             if p.is_file()}
    if not smoke:
        found = {p for p in found if not p.parent.name.endswith("_smoke")}
    return sorted(found, key=lambda p: (not (smoke and p.parent.name.endswith("_smoke")),
                                        -p.stat().st_mtime, str(p)))


def _train_demo_model(config: DemoTrainConfig, run_dir: Path, device: torch.device,
                      retrain: bool, progress_bar: bool) -> tuple[Path, bool]:
    """Train (or finish, or find) the fallback SSA-GAN in ``run_dir``; returns
    ``(checkpoint, trained)``."""

    from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
    from t2ilib.damsm.pretrain import DAMSMTrainConfig, load_or_train_damsm
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.toybirds import ensure_toybirds
    from t2ilib.data.trainset import TrainData
    from t2ilib.engine.loop import load_or_train
    from t2ilib.ssagan.train import ssagan_engine
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

    cfg = config
    recipe = cfg.gan_recipe()
    root = ensure_toybirds(data_root() / cfg.dataset_dir, n_train=cfg.n_train, n_test=cfg.n_test)
    data = TrainData.from_dataset(
        CachedCUBDataset(root, "train", image_size=cfg.resolution, uint8=True), name="toybirds")
    seed_everything(cfg.seed)
    text_encoder = TextEncoder(TextEncoderConfig(len(data.vocab), hidden_dim=cfg.text_dim))
    image_encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=cfg.text_dim, width=cfg.cnn_width))
    load_or_train_damsm(run_dir / "damsm", text_encoder, image_encoder,
                        CachedCUBDataset(root, "train", image_size=cfg.resolution, seed=cfg.seed),
                        DAMSMTrainConfig(epochs=cfg.damsm_epochs,
                                         max_steps_per_epoch=recipe.train.max_steps_per_epoch),
                        batch_size=recipe.train.batch_size, seed=cfg.seed,
                        extra={"demo": asdict(cfg)}, retrain=retrain, device=device)
    engine = ssagan_engine(recipe, text_encoder, image_encoder, data, device=device,
                           run_dir=run_dir)
    result = load_or_train(engine, retrain=retrain, progress_bar=progress_bar)
    return run_dir / "checkpoint.pt", result.trained


def load_or_train_demo_model(checkpoint: str | os.PathLike[str] | None = None,
                             device: str | torch.device = "cpu", smoke: bool = False,
                             train_config: DemoTrainConfig | None = None, retrain: bool = False,
                             use_ema: bool = True, progress_bar: bool = True) -> DemoModel:
    """The demo's SSA-GAN: ``checkpoint`` if given, else notebook 07's, else a small one.

    * ``checkpoint``: an SSA-GAN training checkpoint (``FileNotFoundError`` if missing);
    * otherwise the first of :func:`notebook07_checkpoints` (``smoke`` admits smoke runs);
    * otherwise the small model of ``train_config`` (default :class:`DemoTrainConfig`, or
      :meth:`DemoTrainConfig.smoke` when ``smoke``), trained now, or loaded when an earlier
      call trained it (``retrain=True`` trains it again). With ``smoke`` it is trained in a
      temporary folder and never kept, so parallel test runs cannot share a half-written one.
    """
    from t2ilib.binding.sampling import load_any_generator

    device = pick_device(str(device))
    if checkpoint not in (None, ""):
        path, source = Path(checkpoint), f"checkpoint {checkpoint}"
        if not path.is_file():
            raise FileNotFoundError(f"no SSA-GAN checkpoint at {path}")
    elif (found := notebook07_checkpoints(smoke)) and not retrain:
        path, source = found[0], f"notebook 07's checkpoint ({found[0].parent.name})"
    else:
        if train_config is None:
            train_config = DemoTrainConfig.smoke() if smoke else DemoTrainConfig()
        source = " (no notebook-07 checkpoint)"
        if smoke:
            with tempfile.TemporaryDirectory(prefix="t2i_demo_smoke_") as tmp:
                path, _ = _train_demo_model(train_config, Path(tmp), device, True, progress_bar)
                g, text_encoder, vocab, _ = load_any_generator(path, device, use_ema)
            return DemoModel(g, text_encoder, vocab, None, "tiny smoke SSA-GAN" + source)
        path, trained = _train_demo_model(train_config, train_config.run_dir(), device, retrain,
                                          progress_bar)
        source = f"small demo SSA-GAN, trained {'now' if trained else 'earlier'}" + source
    g, text_encoder, vocab, _ = load_any_generator(path, device, use_ema)
    return DemoModel(g, text_encoder, vocab, path, source)


@dataclass
class SISGANModel:
    """Notebook 09's SISGAN generator with its frozen text encoder, vocabulary and sources.

    ``sources`` ``(N, 3, S, S)`` in [-1, 1]: test-split images to manipulate, at the
    generator's size; ``source_captions``: the first caption of each.
    """

    generator: torch.nn.Module
    text_encoder: torch.nn.Module
    vocab: Vocabulary
    sources: Tensor
    source_captions: list[str]
    source: str
    checkpoint: Path | None = None  # the file it was loaded from (None: not saved)


def load_or_train_sisgan_model(checkpoint: str | os.PathLike[str] | None = None,
                               device: str | torch.device = "cpu", smoke: bool = False,
                               retrain: bool = False, root: str | os.PathLike[str] | None = None,
                               n_sources: int = 16, progress_bar: bool = True) -> SISGANModel:
    """The demo's SISGAN: ``checkpoint`` if given, else notebook 09's ToyBirds model.

    Without ``checkpoint``, :func:`t2ilib.sisgan.train.load_or_train_sisgan` loads notebook
    09's run (``data_root()/runs/sisgan_toybirds64/checkpoint.pt``) or, when there is none,
    trains that model now (``smoke``: a tiny one in a temporary folder, seconds). The first
    ``n_sources`` images of the test split of ``root`` (default: the ToyBirds set notebook 09
    trains on; pass the CUB folder for a CUB checkpoint) are the sources, at their native
    size, resized to the generator's if they differ.
    """
    from t2ilib.data.toybirds import ensure_toybirds
    from t2ilib.data.trainset import load_native_split
    from t2ilib.sisgan.sampling import load_sisgan
    from t2ilib.sisgan.train import load_or_train_sisgan

    device = pick_device(str(device))
    if checkpoint not in (None, ""):
        g, text_encoder, vocab, _ = load_sisgan(checkpoint, device)
        source, path = f"SISGAN checkpoint {checkpoint}", Path(checkpoint)
    else:
        run = load_or_train_sisgan(device=device, smoke=smoke, retrain=retrain,
                                   progress_bar=progress_bar)
        g, text_encoder, vocab = run.generator.eval(), run.text_encoder.eval(), run.vocab
        name = run.path.parent.name if run.path is not None else "no file"  # the run folder
        source = f"notebook 09's SISGAN ({name}, {'trained now' if run.trained else 'loaded'})"
        path = None if smoke else run.path  # a smoke run's folder goes with its engine
    if root is None:
        root = (ensure_toybirds(data_root() / "toybirds_smoke", n_train=48, n_test=16) if smoke
                else ensure_toybirds(data_root() / "toybirds"))
    test = load_native_split(root, "test")
    if test.vocab != vocab:
        raise ValueError(f"the test split of {root} has another vocabulary than the SISGAN model")
    n = min(n_sources, len(test))
    sources = _resized(test.images[:n].float() / 127.5 - 1.0, int(g.config.image_size))
    captions = [vocab.decode(test.captions[i * test.captions_per_image]) for i in range(n)]
    return SISGANModel(g, text_encoder, vocab, sources, captions, source, path)


def _resized(images: Tensor, size: int) -> Tensor:
    """``(N, 3, S, S)`` in [-1, 1] at ``size`` px (bilinear, antialiased; unchanged if S fits)."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                         align_corners=False).clamp(-1, 1)


# -------------------------------------------------------------------- the reference models

def reference_model_file(kind: str) -> Path:
    """``models/<file>`` of the repository for ``kind`` (``"ssagan"`` or ``"sisgan"``);
    ``FileNotFoundError`` naming the script that makes it when it is missing."""
    if kind not in REFERENCE_FILES:
        raise ValueError(f"no reference model of kind {kind!r}: {sorted(REFERENCE_FILES)}")
    path = repo_root() / "models" / REFERENCE_FILES[kind]
    if not path.is_file():
        script = {"ssagan": "toybirds_reference_run.py", "sisgan": "sisgan_reference_run.py"}
        raise FileNotFoundError(f"no reference model at {path}: make it with "
                                f"python data_scripts/{script[kind]} (models/README.md)")
    return path


def reference_entry(kind: str) -> dict[str, Any]:
    """What ``models/reference_models.json`` records of the reference model of ``kind`` (its
    file's SHA-256, where it came from, its measured figures), or ``{}`` when the record is
    missing or describes another file."""
    record = repo_root() / "models" / "reference_models.json"
    if not record.is_file():
        return {}
    entry = json.loads(record.read_text()).get(kind, {})
    path = repo_root() / "models" / REFERENCE_FILES[kind]
    return entry if path.is_file() and entry.get("sha256") == file_sha256(path) else {}


def _trained_for(payload_counters: dict[str, Any]) -> str:
    return f"{int(payload_counters['epoch'])} epochs, {int(payload_counters['step']):,} steps"


def load_reference_ssagan(device: str | torch.device = "cpu") -> DemoModel:
    """The course's reference SSA-GAN (notebook 07's recipe trained 10x longer), from
    ``models/ssagan_toybirds_reference.pt``, with its masks' measured IoU
    (:func:`reference_entry`)."""
    from t2ilib.binding.sampling import load_any_generator

    path = reference_model_file("ssagan")
    g, text_encoder, vocab, payload = load_any_generator(path, pick_device(str(device)))
    source = (f"reference SSA-GAN ({_trained_for(payload['counters'])}; "
              f"models/{path.name})")
    measured = reference_entry("ssagan").get("figures", {}).get("mask_iou", {})
    return DemoModel(g, text_encoder, vocab, path, source, dict(measured))


def load_reference_sisgan(device: str | torch.device = "cpu",
                          like: SISGANModel | None = None) -> SISGANModel:
    """The course's reference SISGAN (notebook 09's run continued; the stage whose edits the
    oracle reads best), from ``models/sisgan_toybirds_reference.pt``. Its source images are
    ``like``'s (resized to its size) or, without ``like``, the ToyBirds test split's."""
    from t2ilib.sisgan.sampling import load_sisgan

    path = reference_model_file("sisgan")
    g, text_encoder, vocab, info = load_sisgan(path, pick_device(str(device)))
    source = f"reference SISGAN ({_trained_for(info)}; models/{path.name})"
    if like is None:
        from t2ilib.data.toybirds import ensure_toybirds
        from t2ilib.data.trainset import load_native_split

        test = load_native_split(ensure_toybirds(data_root() / "toybirds"), "test")
        n = min(16, len(test))
        images = test.images[:n].float() / 127.5 - 1.0
        captions = [test.vocab.decode(test.captions[i * test.captions_per_image])
                    for i in range(n)]
    else:
        images, captions = like.sources, like.source_captions
    return SISGANModel(g, text_encoder, vocab, _resized(images, int(g.config.image_size)),
                       list(captions), source, path)


def measure_masks(model: DemoModel, root: str | os.PathLike[str], n_samples: int = 256,
                  device: str | torch.device = "cpu",
                  oracle: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Score ``model``'s SSACN masks against the ToyBirds oracle's segmentation of its images
    (the ``mask_iou`` part of :func:`t2ilib.apps.evaluate.evaluate_checkpoint`'s toy report,
    on ``n_samples`` test captions of ``root``; ``oracle``: a saved oracle, default the
    course's); stores it in ``model.mask_iou`` and returns it."""
    from t2ilib.apps.evaluate import EvalConfig, evaluate_checkpoint

    if model.checkpoint is None:
        raise ValueError(f"{model.source} has no checkpoint file to evaluate")
    report = evaluate_checkpoint(model.checkpoint, root,
                                 EvalConfig(metrics=("toy",), n_samples=n_samples),
                                 device=device, oracle=oracle)
    model.mask_iou = dict(report["toy"]["mask_iou"])
    return model.mask_iou
