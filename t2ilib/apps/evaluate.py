r"""Evaluate a trained SSA-GAN checkpoint: FID, IS, R-precision and the ToyBirds oracle metrics.

One function, :func:`evaluate_checkpoint`, used by ``notebooks/08_evaluate`` and by
``python -m t2ilib evaluate``. It draws images for the **test** captions and streams them,
batch by batch, into every requested metric, so 30,000 samples never sit in memory at once.

**Sampling protocol** (CUB, as the papers: SSA-GAN's and DF-GAN's test scripts). The test set
is walked ``samples_per_image`` times (10: every one of an image's 10 captions once); pass
``k`` gives image ``i`` its caption ``k mod 10`` and fresh noise. The walk repeats until
``n_samples`` images (30,000: CUB's 2,933 test images x 10 captions = 29,330, plus 670 of a
second walk), so a shorter run still covers every test image evenly.

**Metrics** (``metrics``, any of :data:`METRICS`):

* ``fid``: :mod:`t2ilib.metrics.fid` against the real test images at the generator's
  resolution (centre crop, as the training crops are centred on average); needs the FID
  Inception weights, checked *before* any image is generated.
* ``is``: :mod:`t2ilib.metrics.inception_score` with the ImageNet FID Inception, which is not
  the birds Inception of the CUB papers (the report says so).
* ``rprec``: :func:`t2ilib.metrics.rprecision.r_precision` (1 true + 99 other-class captions,
  10 folds) with the DAMSM encoders saved in the checkpoint, labelled *training encoder
  (optimistic)* because G was trained against them, or with a held-out DAMSM (``damsm``).
* ``toy`` (ToyBirds only): the oracle of :mod:`t2ilib.metrics.toy_oracle`, scored by
  :class:`~t2ilib.metrics.toy_scorer.ToyScorer`, each number with its anchors:

  - **alignment**: per attribute the share of generated images in which the oracle reads the
    value the caption asked for (only attributes the caption mentions), beside the *real*
    anchor (the oracle on the real test image with the same caption: the ceiling), *chance*
    (:math:`1/k` for :math:`k` values, as attributes are uniform) and *shuffled* (the same
    generated images against another image's caption: must be about chance). Only
    attributes the oracle reads with at least 95 % accuracy **on real test images seen through
    the same pipeline** are judged. The generator learnt random ``s``-px crops of the frame
    enlarged to ``76/64 s`` px (AttnGAN's crop), so its birds are 1.19x larger than the
    oracle's training images; every image (generated or real) is shrunk by that factor and
    edge-padded back to the oracle's frame before it is judged;
  - **toy FID**: the Fréchet distance of oracle features, generated vs the real test images,
    beside the floor: real training images (as many as generated images, up to the split
    size) vs the same test images;
  - **mask IoU**: each SSACN stage's mask :math:`m_k` (bilinearly upsampled, thresholded at
    0.5) against the oracle's segmentation of the same generated image,
    :math:`\mathrm{IoU} = |A \cap B| / |A \cup B|`, beside a centred disc and the whole
    frame, which know nothing of the image.

The report is a JSON-able ``dict``; see :func:`evaluate_checkpoint`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch import Tensor

from t2ilib.binding.sampling import load_any_generator
from t2ilib.data.augment import center_crop
from t2ilib.data.cache import CachedCUBDataset
from t2ilib.engine.checkpoint import CheckpointMismatch, load_weights
from t2ilib.metrics import toy_oracle as oracle_lib
from t2ilib.metrics.fid import as_uint8
from t2ilib.metrics.rprecision import encode_captions, encode_images, r_precision
from t2ilib.metrics.toy_oracle_train import load_or_train_oracle
from t2ilib.metrics.toy_scorer import ToyScoreConfig, ToyScorer
from t2ilib.runtime import pick_device, progress
from t2ilib.ssagan.sampling import generate

__all__ = ["METRICS", "EvalConfig", "parse_metrics", "sample_plan", "ToyScorer",
           "evaluate_checkpoint"]

METRICS = ("fid", "is", "rprec", "toy")


@dataclass(frozen=True)
class EvalConfig:
    """What to measure and on how many samples (defaults: the CUB protocol of the papers)."""

    metrics: tuple[str, ...] = METRICS
    n_samples: int | None = 30_000  # None: exactly samples_per_image walks over the test set
    samples_per_image: int = 10  # walks over the test set; walk k uses caption k mod 10
    batch_size: int = 100
    seed: int = 0  # noise, R-precision draws, IS splits, the shuffled anchor, the floor subset
    use_ema: bool = True  # evaluate G's EMA copy when the checkpoint has one
    fid_weights: str | None = None  # the FID Inception file (default: searched, see fid.py)
    rprec_candidates: int = 100
    rprec_folds: int = 10
    is_splits: int = 10
    mask_threshold: float = 0.5  # the toy metrics' knobs: see ToyScoreConfig
    blob_radius: float = 0.3
    judge_threshold: float = oracle_lib.JUDGE_THRESHOLD

    def __post_init__(self) -> None:
        parse_metrics(",".join(self.metrics))
        if self.n_samples is not None and self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.samples_per_image < 1 or self.batch_size < 1:
            raise ValueError("samples_per_image and batch_size must be >= 1")
        if "is" in self.metrics and self.n_samples is not None and self.n_samples < self.is_splits:
            raise ValueError(f"IS in {self.is_splits} splits needs at least {self.is_splits} "
                             f"samples, got n_samples={self.n_samples}")

    def toy(self) -> ToyScoreConfig:
        """The settings of the ``toy`` metrics (:class:`~t2ilib.metrics.toy_scorer.ToyScorer`)."""
        return ToyScoreConfig(seed=self.seed, mask_threshold=self.mask_threshold,
                              blob_radius=self.blob_radius, judge_threshold=self.judge_threshold)


def parse_metrics(text: str) -> tuple[str, ...]:
    """``"fid,is,rprec,toy"`` -> ``("fid", "is", "rprec", "toy")`` (checked, duplicates dropped)."""
    names = [t.strip().lower() for t in text.split(",") if t.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown or not names:
        raise ValueError(f"unknown metric(s) {unknown or [text]}; choose from {','.join(METRICS)}")
    return tuple(dict.fromkeys(names))


def sample_plan(n_images: int, captions_per_image: int, samples_per_image: int = 10,
                n_samples: int | None = None) -> Tensor:
    """Which caption each generated image uses: ``(N, 2)`` long rows ``(image, caption)``.

    Walk ``k`` (``k < samples_per_image``) visits every image with caption
    ``k mod captions_per_image``; the walks repeat until ``n_samples`` rows (default: one
    round of ``samples_per_image`` walks, ``n_images * samples_per_image`` rows).
    """
    if min(n_images, captions_per_image, samples_per_image) < 1:
        raise ValueError("need at least one image, caption and sample per image")
    images = torch.arange(n_images)
    walks = [torch.stack([images, torch.full_like(images, k % captions_per_image)], 1)
             for k in range(samples_per_image)]
    one_round = torch.cat(walks)  # (n_images * samples_per_image, 2)
    n = len(one_round) if n_samples is None else n_samples
    reps = math.ceil(n / len(one_round))
    return one_round.repeat(reps, 1)[:n]


def _rprec_encoders(payload: dict[str, Any], checkpoint: str | os.PathLike[str],
                    text_encoder: nn.Module,
                    damsm: str | os.PathLike[str] | None, vocab_size: int,
                    device: torch.device) -> tuple[nn.Module, nn.Module, str]:
    """The DAMSM that judges R-precision: a held-out one (``damsm``) or the checkpoint's."""
    if damsm is not None:
        from t2ilib.damsm.pretrain import load_damsm

        te, ie, _ = load_damsm(damsm, device)
        if te.config.vocab_size != vocab_size:
            raise CheckpointMismatch(f"the DAMSM {damsm} knows {te.config.vocab_size} token ids, "
                                     f"the data set's vocabulary {vocab_size}")
        return te, ie, f"held-out DAMSM ({damsm})"
    from t2ilib.damsm.pretrain import build_image_encoder

    spec = payload["meta"].get("image_encoder_spec")
    if spec is None or "image_encoder" not in payload["state"]:
        raise CheckpointMismatch("the checkpoint holds no DAMSM image encoder; pass a DAMSM")
    ie = build_image_encoder(spec, checkpoint)
    load_weights(ie, payload["state"]["image_encoder"], checkpoint, "image encoder")
    return text_encoder, ie.to(device).eval(), "training encoder (optimistic: G was trained " \
                                                "against it)"


@dataclass
class _Metric:
    """One metric fed the generated batches: ``update(uint8 images, masks)``, then ``result()``
    (the report's section). :class:`ToyScorer` has the same two methods."""

    update: Callable[[Tensor, list[Tensor]], None]
    result: Callable[[], dict[str, Any]]


def _fid(test: CachedCUBDataset, resolution: int, config: EvalConfig, device: torch.device,
         extractor: nn.Module | None) -> _Metric:
    """FID against the real test images (centre crops at the generator's resolution)."""
    from t2ilib.metrics.fid import StreamingFID

    fid = StreamingFID(extractor, weights=config.fid_weights, device=device)
    for a in range(0, len(test), config.batch_size):
        fid.update(center_crop(test.images[a:a + config.batch_size], resolution), real=True)
    return _Metric(lambda q, masks: fid.update(q, real=False), lambda: asdict(fid.compute()))


def _inception_score(config: EvalConfig, device: torch.device,
                     classifier: nn.Module | None) -> _Metric:
    from t2ilib.metrics.inception_score import StreamingIS

    inception = StreamingIS(classifier, weights=config.fid_weights, splits=config.is_splits,
                            seed=config.seed, device=device)
    return _Metric(lambda q, masks: inception.update(q), lambda: asdict(inception.compute()))


def _rprecision(encoders: tuple[nn.Module, nn.Module, str], test: CachedCUBDataset,
                plan: Tensor, config: EvalConfig, device: torch.device) -> _Metric:
    """R-precision of the generated images among their true and other-class test captions."""
    text_encoder, image_encoder, judge = encoders
    codes: list[Tensor] = []

    def update(q: Tensor, masks: list[Tensor]) -> None:
        codes.append(encode_images(image_encoder, q.float().div(127.5).sub(1.0), device=device))

    def result() -> dict[str, Any]:
        flat = [c for i in range(len(test)) for c in test.captions_of(i)]
        classes = torch.tensor([int(c) for c in test.class_ids])
        pool = encode_captions(text_encoder, flat, test.words_num, device=device)  # (M, D)
        pool_classes = classes.repeat_interleave(test.captions_per_image)  # (M,)
        index = plan[:, 0] * test.captions_per_image + plan[:, 1]  # (N,) true caption rows
        rp = r_precision(torch.cat(codes), pool[index], classes[plan[:, 0]], pool, pool_classes,
                         config.rprec_candidates, config.rprec_folds,
                         torch.Generator().manual_seed(config.seed))
        return {"mean": rp.mean, "std": rp.std, "chance": rp.chance, "n_images": rp.n_images,
                "n_candidates": rp.n_candidates, "n_folds": rp.n_folds, "judge": judge,
                "note": rp.note}

    return _Metric(update, result)


def _toy(root: Path, oracle: str | os.PathLike[str] | None, test: CachedCUBDataset,
         plan: Tensor, config: EvalConfig, device: torch.device) -> ToyScorer:
    """The ToyBirds oracle metrics: ``oracle`` if given, else the course's (trained once)."""
    judge_net, report = (oracle_lib.load_oracle(oracle, device)[:2] if oracle is not None
                         else load_or_train_oracle(root, device=device))
    return ToyScorer(judge_net, report, root, test, plan, config.toy())


def _stream(g: nn.Module, text_encoder: nn.Module, vocab: Any, test: CachedCUBDataset,
            plan: Tensor, config: EvalConfig, scorers: list[Any]) -> None:
    """Generate for every ``(image, caption)`` row of ``plan``, batch by batch, and feed each
    batch (uint8, what a saved PNG would hold) and its masks to every scorer."""
    gen = torch.Generator().manual_seed(config.seed)
    for a in progress(range(0, len(plan), config.batch_size), desc="evaluate", leave=False):
        rows = plan[a:a + config.batch_size]
        captions = [test.vocab.decode(test.captions_of(i)[j]) for i, j in rows.tolist()]
        z = torch.randn(len(rows), g.config.nz, generator=gen)
        images, masks = generate(g, text_encoder, vocab, captions, z)
        q = as_uint8(images)
        for scorer in scorers:
            scorer.update(q, masks)


def _scorers(metrics: tuple[str, ...], checkpoint: str | os.PathLike[str],
             payload: dict[str, Any], text_encoder: nn.Module, root: Path,
             test: CachedCUBDataset, plan: Tensor, config: EvalConfig, device: torch.device,
             damsm: str | os.PathLike[str] | None, oracle: str | os.PathLike[str] | None,
             fid_extractor: nn.Module | None, is_classifier: nn.Module | None
             ) -> dict[str, _Metric | ToyScorer]:
    """Every metric of ``metrics`` set up before any image is drawn, so a missing weight file
    fails first (the arguments are :func:`evaluate_checkpoint`'s)."""
    scorers: dict[str, _Metric | ToyScorer] = {}
    if "fid" in metrics:
        scorers["fid"] = _fid(test, test.image_size, config, device, fid_extractor)
    if "is" in metrics:
        scorers["is"] = _inception_score(config, device, is_classifier)
    if "rprec" in metrics:
        encoders = _rprec_encoders(payload, checkpoint, text_encoder, damsm, len(test.vocab),
                                   device)
        scorers["rprec"] = _rprecision(encoders, test, plan, config, device)
    if "toy" in metrics:
        scorers["toy"] = _toy(root, oracle, test, plan, config, device)
    return scorers


def evaluate_checkpoint(checkpoint: str | os.PathLike[str], root: str | os.PathLike[str],
                        config: EvalConfig = EvalConfig(), *, device: str | torch.device = "auto",
                        damsm: str | os.PathLike[str] | None = None,
                        oracle: str | os.PathLike[str] | None = None,
                        fid_extractor: nn.Module | None = None,
                        is_classifier: nn.Module | None = None) -> dict[str, Any]:
    """Generate for the test captions of ``root`` and measure ``config.metrics``.

    ``checkpoint``: an SSA-GAN (or DF-GAN variant) checkpoint; ``root``: the CUB-format data it
    was trained on (ToyBirds for ``toy``); ``damsm``: a held-out DAMSM for R-precision (default:
    the checkpoint's encoders); ``oracle``: a ToyBirds oracle file (default: the course's,
    trained on first use); ``fid_extractor``, ``is_classifier``: networks replacing the FID
    Inception / IS classifier (uint8 images in), e.g. tiny ones in tests.

    Returns:
        ``{"checkpoint", "step", "epoch", "model", "data", "protocol", "seconds"}`` plus one
        section per metric: ``fid`` (:class:`~t2ilib.metrics.fid.FIDResult` fields), ``is``
        (:class:`~t2ilib.metrics.inception_score.ISResult` fields), ``rprec`` (mean, std,
        chance, judge...), ``toy`` (see :meth:`ToyScorer.result`).
    """
    start = time.perf_counter()
    metrics = parse_metrics(",".join(config.metrics))
    device = pick_device(str(device)) if not isinstance(device, torch.device) else device
    root = Path(root)
    if "toy" in metrics and not (root / "toybirds.json").is_file():
        raise ValueError(f"the toy metrics need a ToyBirds folder; {root} has no toybirds.json "
                         "(drop 'toy' from the metrics)")
    g, text_encoder, vocab, payload = load_any_generator(checkpoint, device, config.use_ema)
    resolution = g.config.resolution
    test = CachedCUBDataset(root, "test", image_size=resolution)
    if vocab.fingerprint() != test.vocab.fingerprint():
        raise CheckpointMismatch(f"{checkpoint} was trained with another vocabulary than "
                                 f"{root}'s captions.pickle; token ids would mean other words")
    plan = sample_plan(len(test), test.captions_per_image, config.samples_per_image,
                       config.n_samples)

    scorers = _scorers(metrics, checkpoint, payload, text_encoder, root, test, plan, config,
                       device, damsm, oracle, fid_extractor, is_classifier)
    _stream(g, text_encoder, vocab, test, plan, config, list(scorers.values()))
    generated_s = time.perf_counter() - start

    report_dict: dict[str, Any] = {
        "checkpoint": str(checkpoint), "step": int(payload["counters"]["step"]),
        "epoch": int(payload["counters"]["epoch"]),
        "model": dict(payload["meta"]["model_config"]), "data": str(root),
        "protocol": {"split": "test", "n_samples": len(plan), "n_test_images": len(test),
                     "samples_per_image": config.samples_per_image,
                     "captions_per_image": test.captions_per_image, "resolution": resolution,
                     "seed": config.seed, "use_ema": config.use_ema, "metrics": list(metrics)},
        **{name: scorer.result() for name, scorer in scorers.items()}}
    report_dict["seconds"] = {"generate_and_stream": round(generated_s, 2),
                              "total": round(time.perf_counter() - start, 2)}
    return report_dict
