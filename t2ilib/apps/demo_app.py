"""The demo's app (notebook 10): ipywidgets tabs around :mod:`t2ilib.apps.demo`.

* **SSA-GAN** (:class:`SSAGANDemo`): a caption box, a seed slider and the number of samples;
  every change redraws :func:`~t2ilib.apps.demo.generate_with_masks`'s picture.
* **SISGAN** (:class:`SISGANDemo`): pick a source image of the test split, type a new caption,
  see $G(x, \\varphi(\\tilde t))$ next to the source $x$.

Given several models (yours and the course's reference models), each tab gets a *Model*
switch and says which model drew the picture. How a caption was read is shown as coloured
messages (green: what the model reads, orange: dropped words, red: errors), never a traceback.
"""

from __future__ import annotations

import html
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from t2ilib.apps.demo import (
    DEFAULT_CAPTION,
    CaptionCheck,
    SSAGANResult,
    check_caption,
    cut_words,
    generate_with_masks,
)
from t2ilib.apps.demo_models import DemoModel, SISGANModel
from t2ilib.apps.demo_render import CELL, message_html, render_rows
from t2ilib.text.vocab import Vocabulary

__all__ = ["SSAGANDemo", "SISGANDemo", "DemoApp", "build_demo"]


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
