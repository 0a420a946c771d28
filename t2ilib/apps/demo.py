r"""The interactive demo of notebook 10: type a caption, move a seed, see images and masks.

Two tabs of ipywidgets, with all their logic here so that tests drive them from Python:

* **SSA-GAN** (:class:`SSAGANDemo`): a caption box, a seed slider and the number of samples.
  The generator draws $\hat x_i = G(z_i, s)$ for the caption's sentence vector $s$ and noise
  $z_i \sim \mathcal N(0, I)$ taken from a generator seeded with the slider's value (so
  sample $i$ is the same whatever the number of samples), and shows under the images each
  stage's SSACN mask $m_k$ as a red tint $\tilde x = (1 - \alpha m_k)\,\hat x + \alpha m_k c$
  (:func:`t2ilib.viz.mask_overlay`); once the masks are measured
  (:func:`t2ilib.apps.demo_models.measure_masks`), only the stage that localises the bird
  best, labelled with its IoU.
* **SISGAN** (:class:`SISGANDemo`): pick a source image of the test split, type a new
  caption, see $G(x, \varphi(\tilde t))$ next to the source $x$.

Given several models (yours and the course's reference models), each tab gets a *Model*
switch and says which model drew the picture.

Captions go through the models' vocabulary (:func:`check_caption`): unknown words are
dropped *and shown* as a warning in the UI (the vocabulary of AttnGAN-style models has no
``<unk>``, so a silently dropped colour word would look like a model failure); a caption
the model cannot read at all (empty, no known word) gives an error message in the UI,
never a traceback.

The models come from notebooks 07 (SSA-GAN) and 09 (SISGAN), through
:mod:`t2ilib.apps.demo_models`.
"""

from __future__ import annotations

import html
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from t2ilib.apps.demo_models import DemoModel, SISGANModel
from t2ilib.apps.demo_render import CELL, message_html, plain_text, render_rows
from t2ilib.data.cub import WORDS_NUM
from t2ilib.text.vocab import Vocabulary, tokenize
from t2ilib.viz import mask_overlay

__all__ = ["DEFAULT_CAPTION", "CaptionCheck", "check_caption", "cut_words", "caption_notes",
           "SSAGANResult",
           "generate_with_masks", "render_rows", "message_html", "plain_text", "SSAGANDemo",
           "SISGANDemo", "DemoApp", "build_demo"]

DEFAULT_CAPTION = "this bird has a red body and blue wings"


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


def cut_words(vocab: Vocabulary, caption: str, words_num: int = WORDS_NUM) -> list[str]:
    """The known words of ``caption`` after the first ``words_num``: what the model never
    reads (the CLI and the demo name them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        try:
            ids = vocab.encode(caption)
        except ValueError:
            return []
    return [vocab.idx2word[i] for i in ids[words_num:]]


def caption_notes(vocab: Vocabulary, caption: str, words_num: int = WORDS_NUM) -> list[str]:
    """Plain-text warnings about how ``caption`` is read (unknown words, words cut); raises
    ``ValueError`` for a caption the model cannot read at all."""
    check = check_caption(vocab, caption, words_num)
    if not check.ok:
        raise ValueError(f"caption {caption!r}: {check.error}")
    notes = []
    if check.unknown:
        notes.append(f"unknown word(s) ignored: {', '.join(check.unknown)} (not among the "
                     f"model's {len(vocab)} words)")
    if check.truncated:
        notes.append(f"only the first {len(check.ids)} known words are read; dropped: "
                     f"{' '.join(cut_words(vocab, caption, words_num))}")
    return notes


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
    best = model.best_mask_stage()
    if show_masks and best is not None:  # measured: the stage that localises the bird best
        k, iou, disc = best
        rows.append(mask_overlay(images, masks[k]))
        labels.append(f"mask {masks[k].shape[-1]} px\nIoU {iou:.2f}\n(disc {disc:.2f})")
    elif show_masks:
        rows += [mask_overlay(images, m) for m in masks]
        labels += [f"mask {m.shape[-1]} px" for m in masks]
    png = render_rows(rows, labels, cell)
    return SSAGANResult(check, images, masks, png, time.perf_counter() - start)


def _caption_messages(check: CaptionCheck, vocab: Vocabulary, picture: int = 0,
                      caption: str = "") -> tuple[str, str]:
    """``(kind, html)`` describing how ``caption`` was read; ``picture`` numbers the picture
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
                       f"({check.truncated} cut: <b>"
                       f"{html.escape(' '.join(cut_words(vocab, caption)))}</b>)."))
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

    def __init__(self, model: DemoModel | Mapping[str, DemoModel],
                 caption: str = DEFAULT_CAPTION, seed: int = 0, n_samples: int = 4,
                 max_samples: int = 8, cell: int = CELL):
        import ipywidgets as w

        self.models = _named(model)
        self.model, self.cell = next(iter(self.models.values())), cell
        self.choice = _model_switch(self.models, self._on_model)
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
        self.info = w.HTML(f"<small>{html.escape(self.model.describe())}</small>")
        for name, widget in (("caption", self.caption), ("seed", self.seed),
                             ("samples", self.n_samples), ("message", self.message),
                             ("images", self.image)):
            widget.add_class(f"t2i-{name}")
        for widget in (self.caption, self.seed, self.n_samples, self.show_masks):
            widget.observe(self._on_change, names="value")
        self.widget = w.VBox([*([self.choice] if self.choice else []), self.info, self.caption,
                              w.HBox([self.seed, self.n_samples, self.show_masks]),
                              self.message, self.image])
        self.result: SSAGANResult | None = None
        self.status = ""
        self.renders = 0
        self.update()

    def _on_change(self, change: dict[str, Any]) -> None:
        self.update()

    def _on_model(self, change: dict[str, Any]) -> None:
        self.model = self.models[change["new"]]
        self.info.value = f"<small>{html.escape(self.model.describe())}</small>"
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
            result.check, self.model.vocab, self.renders if result.check.ok else 0,
            self.caption.value)
        return result

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)


def _named(models: Any) -> dict[str, Any]:
    """``{label: model}``: a mapping as given, one model as ``{"model": model}``."""
    named = dict(models) if isinstance(models, Mapping) else {"model": models}
    if not named:
        raise ValueError("no model to show")
    return named


def _model_switch(models: Mapping[str, Any], callback: Any) -> Any:
    """A *Model* toggle over ``models``' labels calling ``callback`` on change (``None`` for
    one model)."""
    import ipywidgets as w

    if len(models) < 2:
        return None
    switch = w.ToggleButtons(options=list(models), description="Model",
                             style={"button_width": "auto"})
    switch.add_class("t2i-model")
    switch.observe(callback, names="value")
    return switch


# ------------------------------------------------------------------------- SISGAN tab

class SISGANDemo:
    """The SISGAN tab: a source image of the test split and a new caption -> the result.

    With ``model=None`` the tab shows why there is no SISGAN instead.
    """

    def __init__(self, model: SISGANModel | Mapping[str, SISGANModel] | None,
                 caption: str = DEFAULT_CAPTION, index: int = 0, cell: int = 2 * CELL,
                 unavailable: str = "SISGAN model not available"):
        import ipywidgets as w

        self.models = _named(model) if model is not None else {}
        model = next(iter(self.models.values()), None)
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
        self.info = w.HTML(f"<small>{html.escape(model.source)}</small>")
        self.choice = _model_switch(self.models, self._on_model)
        self.widget = w.VBox([*([self.choice] if self.choice else []), self.info, self.index,
                              self.source_caption, self.caption, self.message, self.image])
        self.update()

    def _on_model(self, change: dict[str, Any]) -> None:
        self.model = self.models[change["new"]]
        self.info.value = f"<small>{html.escape(self.model.source)}</small>"
        self.index.max = len(self.model.sources) - 1
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
            self.status, self.message.value = _caption_messages(check, m.vocab, 0,
                                                                self.caption.value)
            self.image.layout.display = "none"
            return None
        try:
            source = m.sources[i:i + 1]
            from t2ilib.sisgan.sampling import manipulate

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
        self.status, self.message.value = _caption_messages(check, m.vocab, self.renders,
                                                            self.caption.value)
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


def build_demo(model: DemoModel | Mapping[str, DemoModel],
               sisgan: SISGANModel | Mapping[str, SISGANModel] | None = None,
               caption: str = DEFAULT_CAPTION, seed: int = 0, n_samples: int = 4,
               sisgan_note: str = "SISGAN model not available") -> DemoApp:
    """The two-tab demo app for an SSA-GAN ``model`` and, if given, a SISGAN (else the
    SISGAN tab shows ``sisgan_note``). Pass ``{label: model}`` to either for a *Model* switch
    (e.g. ``{"yours (notebook 07)": ..., "reference": ...}``); the first is shown first."""
    import ipywidgets as w

    ssagan = SSAGANDemo(model, caption, seed, n_samples)
    sisgan_tab = SISGANDemo(sisgan, caption, unavailable=sisgan_note)
    tabs = w.Tab(children=[ssagan.widget, sisgan_tab.widget], titles=("SSA-GAN", "SISGAN"))
    tabs.add_class("t2i-demo")
    return DemoApp(ssagan, sisgan_tab, tabs)
