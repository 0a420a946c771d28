"""The official SSA-GAN training step (``main.py`` of wtliao/text2image), for
``train_step.py --official-dir DIR``.

No official code lives in this repository: :func:`load_official` imports the modules of the
user's checkout at run time, from ``DIR/code/`` or, as in the repository itself, ``DIR/``:
``model.py`` (``NetG``, ``NetD`` with its ``COND_DNET``), ``DAMSM.py`` (``RNN_ENCODER``,
``CNN_ENCODER``) and ``miscc/losses.py`` (``DAMSM_loss``, which calls ``words_loss`` and
``sent_loss``), with ``miscc/config.py``'s ``cfg``.

:class:`OfficialStep` builds those modules with random weights and runs, per call, the body of
``train()``'s loop in ``main.py``: ``prepare_data`` (sort by caption length, copy to the
device), the text encoder, D's hinge step (real, mismatched, detached fake), the MA-GP step
(a second Adam step on D) and G's step (hinge + 0.05 ``DAMSM_loss``), calling their modules
and loss function in the same order with the same tensor operations.

Patched at run time, never in their files (:attr:`OfficialStep.patches` lists what applied):

* ``easydict`` (imported by ``miscc/config.py``), when it is not installed: a dict with
  attribute access stands in, so ``cfg``'s defaults load unchanged;
* ``cfg``: ``cfg/bird.yml``'s values the step reads (``TRAIN.NF``, ``TEXT.EMBEDDING_DIM``,
  ``TREE.BASE_SIZE``), the batch size, and ``CUDA`` (``main.py --gpu -1`` clears it on CPU);
* ``torchvision.models.inception_v3`` while ``CNN_ENCODER()`` runs: ``pretrained=True``
  would download ImageNet weights; it gets the same architecture with random weights;
* MA-GP's ``grad_outputs=torch.ones(...).cuda()`` becomes ``.to(device)`` (the same on
  CUDA; it lets the step run on the CPU).

``main.py`` is not imported (it imports tensorboardX, nltk and pandas, and sets the
multiprocessing start method); neither is ``datasets.py`` (``prepare_data``'s few lines are
re-expressed here). The ``DataParallel`` wrappers of ``main.py`` are left out: one device.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import sys
import types
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

__all__ = ["OFFICIAL_REPO", "NotOfficialCheckout", "code_dir", "load_official", "OfficialStep"]

OFFICIAL_REPO = "wtliao/text2image"
REQUIRED = ("model.py", "DAMSM.py", "miscc/losses.py", "miscc/config.py")
TOP_LEVEL = ("model", "DAMSM", "GlobalAttention", "miscc", "sync_batchnorm")  # their modules
NZ = 100  # main.py: NetG(cfg.TRAIN.NF, 100), torch.randn(batch_size, 100)
BIRD_YML = {"NF": 64, "EMBEDDING_DIM": 256, "BASE_SIZE": 256}  # cfg/bird.yml
LR_G, LR_D, BETAS = 1e-4, 4e-4, (0.0, 0.9)  # main.py's optimisers
DAMSM_WEIGHT = 0.05  # main.py: errG + 0.05 * DAMSM_loss(...)


class NotOfficialCheckout(ValueError):
    """``DIR`` holds no ``code/model.py`` (nor the repository's top-level layout)."""


def code_dir(root: str | Path) -> Path:
    """The folder of ``root`` holding the official modules: ``root/code`` or ``root``."""
    root = Path(root)
    for where in (root / "code", root):
        if all((where / name).is_file() for name in REQUIRED):
            return where
    raise NotOfficialCheckout(
        f"--official-dir {root} is not a checkout of {OFFICIAL_REPO}: no code/model.py "
        f"(nor model.py, DAMSM.py, miscc/losses.py and miscc/config.py at its top)")


class _EasyDict(dict):
    """Stand-in for ``easydict.EasyDict``, as far as ``miscc/config.py`` uses it."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value


@contextlib.contextmanager
def _imports_from(where: Path, patches: list[str]) -> Iterator[None]:
    """Import their top-level modules (``model``, ``miscc``...) from ``where``; afterwards
    ``sys.path`` and ``sys.modules`` are as before (the imported modules stay alive through
    the references the caller keeps), so a second checkout loads afresh."""
    def theirs(name: str) -> bool:
        return name.split(".")[0] in TOP_LEVEL

    saved = {name: mod for name, mod in sys.modules.items() if theirs(name)}
    for name in saved:
        del sys.modules[name]
    stand_in = importlib.util.find_spec("easydict") is None
    if stand_in:
        sys.modules["easydict"] = types.ModuleType("easydict")
        sys.modules["easydict"].EasyDict = _EasyDict  # type: ignore[attr-defined]
        patches.append("easydict is not installed: a dict with attribute access stands in")
    sys.path.insert(0, str(where))
    try:
        yield
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if theirs(name)]:
            del sys.modules[name]
        sys.modules.update(saved)
        if stand_in:
            del sys.modules["easydict"]


@contextlib.contextmanager
def _random_inception(patches: list[str]) -> Iterator[None]:
    """``torchvision.models.inception_v3(pretrained=True, ...)`` without the download: the
    architecture ``pretrained=True`` builds (aux head, 1000 classes), random weights."""
    import torchvision.models as models

    original = models.inception_v3

    def inception_v3(*args: Any, pretrained: bool = False, weights: Any = None,
                     progress: bool = True, **kwargs: Any) -> torch.nn.Module:
        kwargs.setdefault("aux_logits", True)
        kwargs.setdefault("init_weights", False)
        return models.Inception3(**kwargs)

    models.inception_v3 = inception_v3
    try:
        yield
    finally:
        models.inception_v3 = original
    patches.append("torchvision.models.inception_v3 during CNN_ENCODER(): random weights "
                   "(pretrained=True would download ImageNet's)")


@dataclass
class Official:
    """What the step uses of a checkout."""

    where: Path
    NetG: type
    NetD: type
    RNN_ENCODER: type
    CNN_ENCODER: type
    DAMSM_loss: Any
    cfg: Any
    patches: list[str] = field(default_factory=list)


def load_official(root: str | Path) -> Official:
    """Import the official modules of the checkout ``root`` (see the module's docstring)."""
    where = code_dir(root)
    patches: list[str] = []
    with _imports_from(where, patches):
        model = importlib.import_module("model")
        damsm = importlib.import_module("DAMSM")
        losses = importlib.import_module("miscc.losses")
        config = importlib.import_module("miscc.config")
    return Official(where, model.NetG, model.NetD, damsm.RNN_ENCODER, damsm.CNN_ENCODER,
                    losses.DAMSM_loss, config.cfg, patches)


class OfficialStep:
    """``main.py``'s training step on random weights and data, one device.

    Args:
        root: the checkout of wtliao/text2image.
        batch_size: images per step (``cfg.TRAIN.BATCH_SIZE``; bird.yml: 24).
        n_words: the text encoder's vocabulary size.
        device: where to run.
        nf: ``cfg.TRAIN.NF``, the width of G and D (bird.yml: 64).
        resolution: the side of the real images; the official NetG makes 256 px ones.
    """

    def __init__(self, root: str | Path, *, batch_size: int, n_words: int,
                 device: torch.device, nf: int = BIRD_YML["NF"], resolution: int = 256,
                 seed: int = 100):
        off = load_official(root)
        self.where, self.patches, self.damsm_loss = off.where, off.patches, off.DAMSM_loss
        self.batch_size, self.n_words, self.resolution = batch_size, n_words, resolution
        self.device = device
        cfg = off.cfg
        cfg.CUDA = device.type == "cuda"
        cfg.TRAIN.NF, cfg.TRAIN.BATCH_SIZE = nf, batch_size
        cfg.TEXT.EMBEDDING_DIM, cfg.TREE.BASE_SIZE = BIRD_YML["EMBEDDING_DIM"], resolution
        self.patches.append(f"cfg: bird.yml's TRAIN.NF={nf}, TEXT.EMBEDDING_DIM=256, "
                            f"TRAIN.BATCH_SIZE={batch_size}, CUDA={cfg.CUDA}")
        self.patches.append("MA-GP grad_outputs: torch.ones(...).to(device) for .cuda()")
        self.words_num = cfg.TEXT.WORDS_NUM  # captions are padded to 18 words
        # their softmaxes leave `dim` implicit: PyTorch warns at every call site
        warnings.filterwarnings("ignore", message="Implicit dimension choice for softmax")

        torch.manual_seed(seed)
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            # quiet: CNN_ENCODER's "Load pretrained inception v3 model" (not so here), and
            # PyTorch on RNN_ENCODER's dropout with one LSTM layer
            warnings.filterwarnings("ignore", message="dropout option adds dropout")
            self.netG = off.NetG(cfg.TRAIN.NF, NZ).to(device)
            self.netD = off.NetD(cfg.TRAIN.NF).to(device)
            self.text_encoder = off.RNN_ENCODER(n_words, nhidden=cfg.TEXT.EMBEDDING_DIM)
            with _random_inception(self.patches):
                self.image_encoder = off.CNN_ENCODER(cfg.TEXT.EMBEDDING_DIM)
        for encoder in (self.text_encoder, self.image_encoder):  # frozen, eval mode
            encoder.to(device).requires_grad_(False).eval()
        self.opt_g = torch.optim.Adam(self.netG.parameters(), lr=LR_G, betas=BETAS)
        self.opt_d = torch.optim.Adam(self.netD.parameters(), lr=LR_D, betas=BETAS)
        # main.py's prepare_labels(): real_labels only give DAMSM_loss its batch size
        self.real_labels = torch.ones(batch_size, device=device)
        self.match_labels = torch.arange(batch_size, device=device)

    def batch(self, index: int) -> tuple[torch.Tensor, ...]:
        """Random batch ``index`` as the official DataLoader gives it (on the CPU): images in
        [-1, 1] ``(B, 3, R, R)``, captions ``(B, 18)`` zero-padded, lengths 8-18, distinct
        class ids."""
        g = torch.Generator().manual_seed(index)
        b = self.batch_size
        images = torch.rand(b, 3, self.resolution, self.resolution, generator=g) * 2 - 1
        lengths = torch.randint(8, self.words_num + 1, (b,), generator=g)
        captions = torch.zeros(b, self.words_num, dtype=torch.int64)
        for i, n in enumerate(lengths.tolist()):
            captions[i, :n] = torch.randint(1, self.n_words, (n,), generator=g)
        return images, captions, lengths, torch.arange(b)

    def __call__(self, batch: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """One step of ``main.py``'s loop under its ``cudnn.benchmark = True``; returns
        ``(errD, MA-GP, errG, 0.05 * DAMSM)``, detached."""
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            return self._step(*batch)
        finally:
            torch.backends.cudnn.benchmark = previous

    def _step(self, images: torch.Tensor, captions: torch.Tensor, lengths: torch.Tensor,
              class_ids: torch.Tensor) -> torch.Tensor:
        dev, b = self.device, self.batch_size
        netG, netD, cond = self.netG, self.netD, self.netD.COND_DNET
        # datasets.prepare_data: sort by caption length (for pack_padded_sequence), to device
        lengths, order = torch.sort(lengths, 0, True)
        imgs = images[order].to(dev)
        captions = captions[order].to(dev)
        class_ids = class_ids[order].numpy()
        lengths = lengths.to(dev)

        hidden = self.text_encoder.init_hidden(b)
        words_embs, sent_emb = self.text_encoder(captions, lengths, hidden)
        words_embs, sent_emb = words_embs.detach(), sent_emb.detach()

        # D: real pairs, mismatched pairs (image i, caption i + 1), detached fakes
        real_features = netD(imgs)
        errD_real = torch.relu(1.0 - cond(real_features, sent_emb)).mean()
        errD_mismatch = torch.relu(1.0 + cond(real_features[:b - 1], sent_emb[1:b])).mean()
        noise = torch.randn(b, NZ).to(dev)
        fake, _ = netG(noise, sent_emb)
        if fake.shape[-1] != self.resolution:
            raise ValueError(f"the official NetG makes {fake.shape[-1]} px images, not "
                             f"{self.resolution}")
        errD_fake = torch.relu(1.0 + cond(netD(fake.detach()), sent_emb)).mean()
        errD = errD_real + (errD_fake + errD_mismatch) / 2.0
        self.opt_d.zero_grad()
        errD.backward()
        self.opt_d.step()

        # MA-GP, a second step on D: k = 2, p = 6, joint norm over (image, sentence)
        interpolated = imgs.detach().requires_grad_()
        sent_inter = sent_emb.detach().requires_grad_()
        out = cond(netD(interpolated), sent_inter)
        grads = torch.autograd.grad(outputs=out, inputs=(interpolated, sent_inter),
                                    grad_outputs=torch.ones(out.size()).to(dev),
                                    retain_graph=True, create_graph=True, only_inputs=True)
        grad = torch.cat([g.view(g.size(0), -1) for g in grads], dim=1)
        d_loss = 2.0 * torch.mean(torch.sqrt(torch.sum(grad ** 2, dim=1)) ** 6)
        self.opt_d.zero_grad()
        d_loss.backward()
        self.opt_d.step()

        # G: hinge + 0.05 DAMSM; D is not frozen (its gradients are computed, then dropped
        # by the next zero_grad), as in main.py
        errG = -cond(netD(fake), sent_emb).mean()
        damsm = DAMSM_WEIGHT * self.damsm_loss(self.image_encoder, fake, self.real_labels,
                                               words_embs, sent_emb, self.match_labels,
                                               lengths, class_ids)
        self.opt_g.zero_grad()
        (errG + damsm).backward()
        self.opt_g.step()
        return torch.stack([errD, d_loss, errG, damsm]).detach()
