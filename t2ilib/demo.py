r"""The interactive demo of notebook 10: type a caption, move a seed, see images and masks.

Two tabs of ipywidgets, with all their logic here so that tests drive them from Python:

* **SSA-GAN** (:class:`SSAGANDemo`): a caption box, a seed slider and the number of samples.
  The generator draws $\hat x_i = G(z_i, s)$ for the caption's sentence vector $s$ and noise
  $z_i \sim \mathcal N(0, I)$ taken from a generator seeded with the slider's value (so
  sample $i$ is the same whatever the number of samples), and shows under the images each
  stage's SSACN mask $m_k$ as a red tint $\tilde x = (1 - \alpha m_k)\,\hat x + \alpha m_k c$
  (:func:`t2ilib.viz.mask_overlay`).
* **SISGAN** (:class:`SISGANDemo`): pick a source image of the test split, type a new
  caption, see $G(x, \varphi(\tilde t))$ next to the source $x$.

Captions go through the models' vocabulary (:func:`check_caption`): unknown words are
dropped *and shown* as a warning in the UI (the vocabulary of AttnGAN-style models has no
``<unk>``, so a silently dropped colour word would look like a model failure); a caption
the model cannot read at all (empty, no known word) gives an error message in the UI,
never a traceback.

The models come from notebooks 07 (SSA-GAN) and 09 (SISGAN): :func:`load_or_train_demo_model`
loads notebook 07's checkpoint when one exists and otherwise trains a small SSA-GAN on
ToyBirds (seconds in smoke mode, 6-17 minutes with the defaults) and keeps it under
:func:`t2ilib.runtime.checkpoint_root` for the next time.
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import os
import re
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from t2ilib.data.cub import WORDS_NUM
from t2ilib.runtime import checkpoint_root, data_root, pick_device, repo_root, seed_everything
from t2ilib.text.vocab import Vocabulary, tokenize
from t2ilib.viz import make_grid, mask_overlay

__all__ = ["DEFAULT_CAPTION", "CaptionCheck", "check_caption", "DemoTrainConfig", "DemoModel",
           "notebook07_checkpoints", "load_or_train_demo_model", "SSAGANResult",
           "generate_with_masks", "render_rows", "message_html", "plain_text", "SSAGANDemo",
           "SISGANModel", "load_or_train_sisgan_model", "SISGANDemo",
           "DemoApp", "build_demo"]

DEFAULT_CAPTION = "this bird has a red body and blue wings"
#: Side of one picture in the rendered PNG (pixels); smaller models are upscaled to it.
CELL = 96


# ------------------------------------------------------------------------- captions

@dataclass(frozen=True)
class CaptionCheck:
    """What the model will read of a caption.

    ``ids``: the known words' ids, at most ``words_num`` of them (what the text encoder
    sees); ``unknown``: words not in the vocabulary (dropped); ``truncated``: known words
    cut beyond ``words_num``; ``error``: why the caption cannot be used (``None`` if it can).
    """

    ids: list[int]
    unknown: list[str]
    truncated: int
    error: str | None

    @property
    def ok(self) -> bool:
        return self.error is None


def check_caption(vocab: Vocabulary, caption: str, words_num: int = WORDS_NUM) -> CaptionCheck:
    """Read ``caption`` as the model will: tokenize, drop unknown words, keep ``words_num``.

    Never raises for a bad caption: the vocabulary's ``ValueError`` (empty caption, no word,
    no known word) becomes ``error`` and its unknown-word warning becomes ``unknown``.
    """
    if not isinstance(caption, str):
        return CaptionCheck([], [], 0, f"a caption must be text, got {type(caption).__name__}")
    unknown = [t for t in tokenize(caption) if t not in vocab]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # reported as `unknown` instead
        try:
            ids = vocab.encode(caption)
        except ValueError as err:
            return CaptionCheck([], unknown, 0, str(err))
    return CaptionCheck(ids[:words_num], unknown, max(0, len(ids) - words_num), None)


# ------------------------------------------------------------------------- the SSA-GAN model

@dataclass(frozen=True)
class DemoTrainConfig:
    """The small SSA-GAN trained when notebook 07 left no checkpoint (ToyBirds, CPU).

    Defaults: two DAMSM epochs and ten GAN epochs at 32 px on notebook 07's ToyBirds set,
    enough for bird-shaped blobs; 17 minutes measured on two CPU cores shared with other
    jobs (about 30 s per GAN epoch on an idle pair). :meth:`smoke` takes seconds.
    """

    dataset_dir: str = "toybirds"  # folder under data_root(); made on first use
    n_train: int = 4000
    n_test: int = 1000
    resolution: int = 32
    ngf: int = 16
    text_dim: int = 64  # sentence size (the DAMSM's hidden_dim)
    cnn_width: int = 16  # DAMSM image encoder width
    batch_size: int = 24
    damsm_epochs: int = 2
    epochs: int = 10
    max_steps_per_epoch: int | None = None
    seed: int = 100

    @classmethod
    def smoke(cls) -> DemoTrainConfig:
        """A seconds-long run on the 48-image ToyBirds set the smoke notebooks share."""
        return cls(dataset_dir="toybirds_smoke", n_train=48, n_test=16, ngf=8, text_dim=32,
                   cnn_width=8, batch_size=8, damsm_epochs=1, epochs=1, max_steps_per_epoch=2)

    def run_dir(self) -> Path:
        """``checkpoint_root()/demo_ssagan_<data>_<res>px_<hash of this config>``."""
        digest = hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()
        return (checkpoint_root()
                / f"demo_ssagan_{self.dataset_dir}_{self.resolution}px_{digest[:8]}")


@dataclass
class DemoModel:
    """A text-to-image generator ready for the demo (both networks in eval mode).

    ``source``: where it came from, in words (shown in the UI).
    """

    generator: torch.nn.Module
    text_encoder: torch.nn.Module
    vocab: Vocabulary
    checkpoint: Path | None
    source: str

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
    from torch.utils.data import DataLoader

    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.cub import collate_sorted
    from t2ilib.data.toybirds import ensure_toybirds
    from t2ilib.models.image_encoder import SmallCNNConfig, SmallCNNEncoder
    from t2ilib.models.ssagan import SSAGANConfig
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig
    from t2ilib.train.damsm import DAMSMTrainConfig, load_or_train_damsm
    from t2ilib.train.ssagan import (
        SSAGANTrainConfig,
        SSAGANTrainer,
        TrainData,
        load_or_train_ssagan,
    )

    cfg = config
    root = ensure_toybirds(data_root() / cfg.dataset_dir, n_train=cfg.n_train, n_test=cfg.n_test)
    data = TrainData.from_dataset(
        CachedCUBDataset(root, "train", image_size=cfg.resolution, uint8=True), name="toybirds")
    seed_everything(cfg.seed)
    text_encoder = TextEncoder(TextEncoderConfig(len(data.vocab), hidden_dim=cfg.text_dim))
    image_encoder = SmallCNNEncoder(SmallCNNConfig(embed_dim=cfg.text_dim, width=cfg.cnn_width))
    loader = DataLoader(CachedCUBDataset(root, "train", image_size=cfg.resolution, seed=cfg.seed),
                        batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                        collate_fn=collate_sorted,
                        generator=torch.Generator().manual_seed(cfg.seed))
    load_or_train_damsm(run_dir / "damsm.pt", text_encoder, image_encoder, loader,
                        DAMSMTrainConfig(epochs=cfg.damsm_epochs,
                                         max_steps_per_epoch=cfg.max_steps_per_epoch),
                        extra={"demo": asdict(cfg)}, retrain=retrain, device=device)
    trainer = SSAGANTrainer(
        SSAGANTrainConfig(epochs=cfg.epochs, batch_size=cfg.batch_size, seed=cfg.seed,
                          max_steps_per_epoch=cfg.max_steps_per_epoch, log_every=10),
        SSAGANConfig(resolution=cfg.resolution, ngf=cfg.ngf, ndf=cfg.ngf,
                     sentence_dim=cfg.text_dim),
        text_encoder, image_encoder, data, device=device, run_dir=run_dir)
    result = load_or_train_ssagan(trainer, retrain=retrain, progress_bar=progress_bar)
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
    from t2ilib.train.ssagan import load_generator

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
                g, text_encoder, vocab, _ = load_generator(path, device, use_ema)
            return DemoModel(g, text_encoder, vocab, None, "tiny smoke SSA-GAN" + source)
        path, trained = _train_demo_model(train_config, train_config.run_dir(), device, retrain,
                                          progress_bar)
        source = f"small demo SSA-GAN, trained {'now' if trained else 'earlier'}" + source
    g, text_encoder, vocab, _ = load_generator(path, device, use_ema)
    return DemoModel(g, text_encoder, vocab, path, source)


# ------------------------------------------------------------------------- generating

@dataclass
class SSAGANResult:
    """One press of the demo: the caption's reading and, if it was usable, the pictures.

    ``images`` ``(B, 3, R, R)`` in [-1, 1]; ``masks`` one ``(B, 1, r_k, r_k)`` per SSACN
    stage (4 px up to R); ``png`` the rendered rows; ``seconds`` the generation time.
    """

    check: CaptionCheck
    images: Tensor | None = None
    masks: list[Tensor] = field(default_factory=list)
    png: bytes = b""
    seconds: float = 0.0


@torch.no_grad()
def generate_with_masks(model: DemoModel, caption: str, seed: int, n_samples: int,
                        show_masks: bool = True, cell: int = CELL) -> SSAGANResult:
    """Generate ``n_samples`` images of ``caption`` with noise seeded by ``seed``; render them.

    Noise: ``torch.randn(n, nz)`` from a generator seeded with ``seed``, so sample ``i`` does
    not depend on ``n``. A caption the model cannot read returns a result with
    ``check.error`` set and no images.
    """
    check = check_caption(model.vocab, caption)
    if not check.ok:
        return SSAGANResult(check)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    start = time.perf_counter()
    g = model.generator
    device = next(g.parameters()).device
    ids = torch.tensor([check.ids], dtype=torch.long).repeat(n_samples, 1)   # (B, T)
    lengths = torch.full((n_samples,), len(check.ids), dtype=torch.long)     # (B,)
    z = torch.randn(n_samples, g.config.nz, generator=torch.Generator().manual_seed(seed))
    _, sentence = model.text_encoder(ids.to(device), lengths)                 # (B, D)
    images, masks = g(z.to(device), sentence)
    images, masks = images.float().cpu(), [m.float().cpu() for m in masks]
    rows, labels = [images], ["generated"]
    if show_masks:
        rows += [mask_overlay(images, m) for m in masks]
        labels += [f"mask {m.shape[-1]} px" for m in masks]
    png = render_rows(rows, labels, cell)
    return SSAGANResult(check, images, masks, png, time.perf_counter() - start)


def render_rows(rows: Sequence[Tensor], labels: Sequence[str], cell: int = CELL,
                label_width: int = 84) -> bytes:
    """One PNG: each row ``(B, 3, H, W)`` in [-1, 1] resized to ``cell`` px, label on its left.

    Images smaller than ``cell`` are enlarged with nearest-neighbour (pixels stay visible),
    larger ones shrunk with antialiasing. Rows must hold the same number of images.
    """
    from PIL import Image, ImageDraw, ImageFont

    if len(rows) != len(labels) or not rows:
        raise ValueError(f"{len(rows)} rows and {len(labels)} labels")
    b = rows[0].shape[0]
    if any(r.shape[0] != b for r in rows):
        raise ValueError(f"rows hold different numbers of images: {[r.shape[0] for r in rows]}")
    resized = []
    for r in rows:
        r = r.detach().float().cpu()
        up = r.shape[-1] < cell
        resized.append(F.interpolate(r, size=(cell, cell), mode="nearest" if up else "bilinear",
                                     antialias=not up, align_corners=None if up else False))
    pad = 2
    grid = make_grid(torch.cat(resized), ncol=b, pad=pad)                    # (3, H', W')
    picture = Image.fromarray(grid.permute(1, 2, 0).numpy())
    canvas = Image.new("RGB", (picture.width + label_width, picture.height), "white")
    canvas.paste(picture, (label_width, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for i, label in enumerate(labels):
        top = pad + i * (cell + pad)
        draw.text((4, top + cell // 2 - 6), label, fill=(40, 40, 40), font=font)
    out = io.BytesIO()
    canvas.save(out, format="PNG")
    return out.getvalue()


# ------------------------------------------------------------------------- messages

_STYLES = {
    "ok": "color:#1e4620;background:#edf7ed;border:1px solid #b7dfb9",
    "warning": "color:#663c00;background:#fff4e5;border:1px solid #ffb74d",
    "error": "color:#5f2120;background:#fdeded;border:1px solid #ef9a9a",
}


def message_html(kind: str, text: str) -> str:
    """A coloured box (``kind``: ok, warning or error) around ``text`` (HTML, already escaped)."""
    if kind not in _STYLES:
        raise ValueError(f"kind must be one of {sorted(_STYLES)}, got {kind!r}")
    icon = {"ok": "&#10003;", "warning": "&#9888;", "error": "&#10007;"}[kind]
    return (f'<div class="t2i-{kind}" style="{_STYLES[kind]};padding:4px 8px;'
            f'border-radius:4px;margin:2px 0">{icon} {text}</div>')


def plain_text(markup: str) -> str:
    """The text of an HTML message, one line per box, tags removed and entities decoded."""
    lines = re.sub(r"<[^>]+>", "", re.sub(r"</div>\s*", "\n", markup))
    return html.unescape(lines).strip()


def _caption_messages(check: CaptionCheck, vocab: Vocabulary, picture: int = 0
                      ) -> tuple[str, str]:
    """``(kind, html)`` describing how a caption was read; ``picture`` numbers the picture
    drawn for it (shown, so that a user, or a browser test, sees every redraw)."""
    if not check.ok:
        hint = [w for w in ("red", "blue", "yellow", "wings", "belly", "bird") if w in vocab]
        return "error", message_html(
            "error", f"Cannot use this caption: {html.escape(check.error or '')}."
                     + (f" Try words such as {', '.join(hint)}." if hint else ""))
    notes = []
    if check.unknown:
        words = ", ".join(f"<b>{html.escape(w)}</b>" for w in check.unknown)
        notes.append(message_html(
            "warning", f"Unknown word(s) ignored: {words} (not among the model's "
                       f"{len(vocab)} words)."))
    if check.truncated:
        notes.append(message_html(
            "warning", f"Only the first {len(check.ids)} known words are used "
                       f"({check.truncated} cut)."))
    read = html.escape(vocab.decode(check.ids))
    stamp = f' <span class="t2i-stamp" style="color:#777">(picture {picture})</span>'
    notes.append(message_html("ok", f"The model reads: <i>{read}</i>"
                                    + (stamp if picture else "")))
    return ("warning" if len(notes) > 1 else "ok"), "".join(notes)


# ------------------------------------------------------------------------- SSA-GAN tab

class SSAGANDemo:
    """The SSA-GAN tab: caption, seed, number of samples, masks on/off -> images and masks.

    Every widget change calls :meth:`update` (a traitlets observer), which regenerates and
    replaces ``image.value``. State for tests and notebooks: ``result`` (the last
    :class:`SSAGANResult`), ``status`` (``"ok"``, ``"warning"`` or ``"error"``) and
    ``renders`` (how many images were drawn so far).
    """

    def __init__(self, model: DemoModel, caption: str = DEFAULT_CAPTION, seed: int = 0,
                 n_samples: int = 4, max_samples: int = 8, cell: int = CELL):
        import ipywidgets as w

        self.model, self.cell = model, cell
        self.caption = w.Text(value=caption, description="Caption", continuous_update=False,
                              placeholder="describe a bird, then press Enter",
                              layout=w.Layout(width="95%"))
        self.seed = w.IntSlider(value=seed, min=0, max=999, description="Seed",
                                continuous_update=False)
        self.n_samples = w.IntSlider(value=n_samples, min=1, max=max_samples,
                                     description="Samples", continuous_update=False)
        self.show_masks = w.Checkbox(value=True, description="SSACN masks", indent=False)
        self.message = w.HTML()
        self.image = w.Image(format="png")
        self.info = w.HTML(f"<small>{html.escape(model.describe())}</small>")
        for name, widget in (("caption", self.caption), ("seed", self.seed),
                             ("samples", self.n_samples), ("message", self.message),
                             ("images", self.image)):
            widget.add_class(f"t2i-{name}")
        for widget in (self.caption, self.seed, self.n_samples, self.show_masks):
            widget.observe(self._on_change, names="value")
        self.widget = w.VBox([self.info, self.caption,
                              w.HBox([self.seed, self.n_samples, self.show_masks]),
                              self.message, self.image])
        self.result: SSAGANResult | None = None
        self.status = ""
        self.renders = 0
        self.update()

    def _on_change(self, change: dict[str, Any]) -> None:
        self.update()

    def update(self) -> SSAGANResult:
        """Generate for the current widget values; show the pictures or an error message."""
        try:
            result = generate_with_masks(self.model, self.caption.value, self.seed.value,
                                         self.n_samples.value, self.show_masks.value, self.cell)
        except Exception as err:  # the UI shows every failure as a message, never a traceback
            self.status = "error"
            self.message.value = message_html(
                "error", f"Generation failed: {html.escape(type(err).__name__)}: "
                         f"{html.escape(str(err))}")
            self.image.layout.display = "none"
            self.result = None
            return SSAGANResult(CaptionCheck([], [], 0, str(err)))
        self.result = result
        if result.check.ok:
            self.renders += 1
            self.image.value = result.png
            self.image.layout.display = ""
        else:
            self.image.layout.display = "none"
        self.status, self.message.value = _caption_messages(
            result.check, self.model.vocab, self.renders if result.check.ok else 0)
        return result

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# ------------------------------------------------------------------------- SISGAN tab

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


def load_or_train_sisgan_model(checkpoint: str | os.PathLike[str] | None = None,
                               device: str | torch.device = "cpu", smoke: bool = False,
                               retrain: bool = False, root: str | os.PathLike[str] | None = None,
                               n_sources: int = 16, progress_bar: bool = True) -> SISGANModel:
    """The demo's SISGAN: ``checkpoint`` if given, else notebook 09's ToyBirds model.

    Without ``checkpoint``, :func:`t2ilib.train.sisgan.load_or_train_sisgan` loads notebook
    09's checkpoint (``checkpoint_root()/sisgan_toybirds64.pt``) or, when there is none,
    trains that model now (``smoke``: a tiny one in a temporary file, seconds). The first
    ``n_sources`` images of the test split of ``root`` (default: the ToyBirds set notebook 09
    trains on; pass the CUB folder for a CUB checkpoint) are the sources, at their native
    size, resized to the generator's if they differ.
    """
    from t2ilib.data.toybirds import ensure_toybirds
    from t2ilib.train.sisgan import load_native_split, load_or_train_sisgan, load_sisgan

    device = pick_device(str(device))
    if checkpoint not in (None, ""):
        g, text_encoder, vocab, _ = load_sisgan(checkpoint, device)
        source = f"SISGAN checkpoint {checkpoint}"
    else:
        run = load_or_train_sisgan(device=device, smoke=smoke, retrain=retrain,
                                   progress_bar=progress_bar)
        g, text_encoder, vocab = run.generator.eval(), run.text_encoder.eval(), run.vocab
        name = run.path.name if run.path is not None else "no file"
        source = f"notebook 09's SISGAN ({name}, {'trained now' if run.trained else 'loaded'})"
    if root is None:
        root = (ensure_toybirds(data_root() / "toybirds_smoke", n_train=48, n_test=16) if smoke
                else ensure_toybirds(data_root() / "toybirds"))
    test = load_native_split(root, "test")
    if test.vocab != vocab:
        raise ValueError(f"the test split of {root} has another vocabulary than the SISGAN model")
    n = min(n_sources, len(test))
    sources = test.images[:n].float() / 127.5 - 1.0                       # (n, 3, S, S)
    size = int(g.config.image_size)
    if sources.shape[-1] != size:
        sources = F.interpolate(sources, size=(size, size), mode="bilinear", antialias=True,
                                align_corners=False).clamp(-1, 1)
    captions = [vocab.decode(test.captions[i * test.captions_per_image]) for i in range(n)]
    return SISGANModel(g, text_encoder, vocab, sources, captions, source)


class SISGANDemo:
    """The SISGAN tab: a source image of the test split and a new caption -> the result.

    With ``model=None`` the tab shows why there is no SISGAN instead.
    """

    def __init__(self, model: SISGANModel | None, caption: str = DEFAULT_CAPTION,
                 index: int = 0, cell: int = 2 * CELL,
                 unavailable: str = "SISGAN model not available"):
        import ipywidgets as w

        self.model, self.cell = model, cell
        self.message = w.HTML()
        self.message.add_class("t2i-message")
        self.result: Tensor | None = None
        self.status = ""
        self.renders = 0
        if model is None:
            self.status = "unavailable"
            self.message.value = message_html("warning", html.escape(unavailable))
            self.widget = w.VBox([self.message])
            return
        self.index = w.IntSlider(value=index, min=0, max=len(model.sources) - 1,
                                 description="Source", continuous_update=False)
        self.caption = w.Text(value=caption, description="New caption", continuous_update=False,
                              layout=w.Layout(width="95%"))
        self.caption.add_class("t2i-caption")
        self.source_caption = w.HTML()
        self.image = w.Image(format="png")
        self.image.add_class("t2i-images")
        for widget in (self.index, self.caption):
            widget.observe(lambda change: self.update(), names="value")
        self.widget = w.VBox([w.HTML(f"<small>{html.escape(model.source)}</small>"), self.index,
                              self.source_caption, self.caption, self.message, self.image])
        self.update()

    def update(self) -> Tensor | None:
        """Manipulate the chosen source with the caption; show source and result side by side."""
        if self.model is None:
            return None
        m = self.model
        i = self.index.value
        self.source_caption.value = (f"<small>its caption: <i>"
                                     f"{html.escape(m.source_captions[i])}</i></small>")
        check = check_caption(m.vocab, self.caption.value)
        if not check.ok:
            self.status, self.message.value = _caption_messages(check, m.vocab)
            self.image.layout.display = "none"
            return None
        try:
            source = m.sources[i:i + 1]
            from t2ilib.train.sisgan import manipulate

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # already shown in the message
                result = manipulate(m.generator, m.text_encoder, m.vocab, source,
                                    [self.caption.value]).float().cpu()
        except Exception as err:  # a message, never a traceback
            self.status = "error"
            self.message.value = message_html(
                "error", f"Manipulation failed: {html.escape(type(err).__name__)}: "
                         f"{html.escape(str(err))}")
            self.image.layout.display = "none"
            return None
        self.result = result
        self.image.value = render_rows([torch.cat([source.float().cpu(), result])],
                                       ["source | result"], self.cell, label_width=110)
        self.image.layout.display = ""
        self.renders += 1
        self.status, self.message.value = _caption_messages(check, m.vocab, self.renders)
        return result

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


# ------------------------------------------------------------------------- the app

@dataclass
class DemoApp:
    """Both tabs in one ``ipywidgets.Tab`` (``widget``); display the app to show it."""

    ssagan: SSAGANDemo
    sisgan: SISGANDemo
    widget: Any

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def build_demo(model: DemoModel, sisgan: SISGANModel | None = None,
               caption: str = DEFAULT_CAPTION, seed: int = 0, n_samples: int = 4,
               sisgan_note: str = "SISGAN model not available") -> DemoApp:
    """The two-tab demo app for an SSA-GAN ``model`` and, if given, a SISGAN (else the
    SISGAN tab shows ``sisgan_note``)."""
    import ipywidgets as w

    ssagan = SSAGANDemo(model, caption, seed, n_samples)
    sisgan_tab = SISGANDemo(sisgan, caption, unavailable=sisgan_note)
    tabs = w.Tab(children=[ssagan.widget, sisgan_tab.widget], titles=("SSA-GAN", "SISGAN"))
    tabs.add_class("t2i-demo")
    return DemoApp(ssagan, sisgan_tab, tabs)
