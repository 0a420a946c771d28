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
* ``toy`` (ToyBirds only): the oracle of :mod:`t2ilib.metrics.toy_oracle`, each number with
  its anchors:

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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from t2ilib.data.augment import center_crop
from t2ilib.data.cache import CachedCUBDataset
from t2ilib.data.toybirds import ATTRIBUTES, CAPTIONED, load_groundtruth
from t2ilib.engine.checkpoint import CheckpointMismatch, load_weights
from t2ilib.metrics import toy_oracle as oracle_lib
from t2ilib.metrics.fid import as_uint8
from t2ilib.metrics.rprecision import encode_captions, encode_images, r_precision
from t2ilib.metrics.toy_oracle_train import load_or_train_oracle
from t2ilib.runtime import pick_device, progress
from t2ilib.ssagan.sampling import generate, load_generator

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
    mask_threshold: float = 0.5
    blob_radius: float = 0.3  # the centred-disc baseline, as a fraction of the image side
    judge_threshold: float = oracle_lib.JUDGE_THRESHOLD  # oracle accuracy needed to score an
    # attribute; lowering it lets an oracle judge what it cannot read (tests only)

    def __post_init__(self) -> None:
        parse_metrics(",".join(self.metrics))
        if self.n_samples is not None and self.n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {self.n_samples}")
        if self.samples_per_image < 1 or self.batch_size < 1:
            raise ValueError("samples_per_image and batch_size must be >= 1")
        if "is" in self.metrics and self.n_samples is not None and self.n_samples < self.is_splits:
            raise ValueError(f"IS in {self.is_splits} splits needs at least {self.is_splits} "
                             f"samples, got n_samples={self.n_samples}")


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


def _ci95(correct: int, total: int) -> float | None:
    """Half-width of the normal-approximation 95 % interval of a proportion."""
    if total == 0:
        return None
    p = correct / total
    return 1.96 * math.sqrt(p * (1 - p) / total)


def _scores(counts: dict[str, tuple[int, int]]) -> dict[str, Any]:
    """``{attr: (correct, counted)}`` -> ``{attr: {accuracy, n, ci95}, "mean": ...}``."""
    out: dict[str, Any] = {
        name: {"accuracy": c / t if t else None, "n": t, "ci95": _ci95(c, t)}
        for name, (c, t) in counts.items()}
    scored = [v["accuracy"] for v in out.values() if v["n"]]
    out["mean"] = sum(scored) / len(scored) if scored else None
    return out


class ToyScorer:
    """The ToyBirds oracle metrics, fed one batch of generated images at a time.

    Args:
        oracle, report: the frozen judge and its own accuracy on real test images.
        root: the ToyBirds folder (ground truth: attributes, what each caption mentions).
        test: the test split at the generator's resolution (``CachedCUBDataset``).
        plan: ``(N, 2)`` ``(image, caption)`` rows, in the order batches will come.
        config: thresholds, seed.

    Images reach the oracle quantised to uint8 and put back to the scale of the frames the
    oracle was trained on (:meth:`view`); real anchor images take the same path (the centre
    crop of the training cache at ``s``). Masks are compared inside the image's own part of
    that frame (:meth:`crop`).
    """

    def __init__(self, oracle: oracle_lib.ToyOracle, report: oracle_lib.OracleReport,
                 root: str | os.PathLike[str], test: CachedCUBDataset, plan: Tensor,
                 config: EvalConfig = EvalConfig()):
        self.oracle, self.report, self.root, self.test = oracle, report, Path(root), test
        self.plan, self.config = plan, config
        truth = load_groundtruth(root)
        self.size = truth.size  # S: the oracle's side (the data set's images)
        self.resolution = test.image_size  # s: the generator's side
        cache = test.images.shape[-1]  # training crops of side s come from this side
        self.inner = min(self.size, round(self.size * self.resolution / cache))
        self.pad = (self.size - self.inner) // 2
        keys = test.keys
        self.targets = [{name: truth.attributes[keys[i]][name]
                         for name in truth.mentions[keys[i]][j]}
                        for i, j in plan.tolist()]  # N x {attribute: value asked for}
        real = self.view(as_uint8(center_crop(test.images, self.resolution)))  # (n_test, 3, S, S)
        real_pred = oracle_lib.predict_attributes(oracle, real)
        labels = {name: torch.tensor([ATTRIBUTES[name].index(truth.attributes[k][name])
                                      for k in keys]) for name in ATTRIBUTES}
        self.pipeline_accuracy = {name: float((real_pred[name] == labels[name]).double().mean())
                                  for name in ATTRIBUTES}
        self.judged = tuple(n for n in CAPTIONED
                            if self.pipeline_accuracy[n] >= config.judge_threshold)
        self.real_pred_plan = {name: p[plan[:, 0]] for name, p in real_pred.items()}  # (N,)
        self.real_features = oracle_lib.oracle_features(oracle, real)  # (n_test, F)
        self.pred: dict[str, list[Tensor]] = {name: [] for name in ATTRIBUTES}
        self.features: list[Tensor] = []
        self.stage_sizes: list[int] = []
        self.stage_iou: list[float] = []
        self.baseline_iou = {"centred_blob": 0.0, "whole_image": 0.0}
        self.bird_fraction = 0.0
        self.n = 0

    def view(self, images: Tensor) -> Tensor:
        """uint8 ``(B, 3, s, s)`` -> float ``(B, 3, S, S)`` in [-1, 1], the oracle's input.

        A generated (or centre-cropped real) image shows the middle ``s / S_cache`` of a
        frame: it is resized to ``inner`` px and edge-padded to ``S``, so the bird has the
        scale the oracle was trained on. (At s = 32 and S = 64, bicubic enlarging lets the
        oracle read the body colour of real birds 95.8 % of the time, bilinear 94.2 %.)
        """
        x = images.float().div(127.5).sub(1.0)
        if x.shape[-1] > self.inner:  # shrink: antialiased bilinear
            x = F.interpolate(x, size=(self.inner, self.inner), mode="bilinear",
                              align_corners=False, antialias=True)
        elif x.shape[-1] < self.inner:  # enlarge: bicubic keeps small parts' colours readable
            x = F.interpolate(x, size=(self.inner, self.inner), mode="bicubic",
                              align_corners=False).clamp(-1.0, 1.0)
        rest = self.size - self.inner - self.pad
        return F.pad(x, (self.pad, rest, self.pad, rest), mode="replicate")

    def crop(self, masks: Tensor) -> Tensor:
        """``(B, S, S)`` in the oracle's frame -> ``(B, inner, inner)``, the image's own part."""
        return masks[:, self.pad:self.pad + self.inner, self.pad:self.pad + self.inner]

    def update(self, images: Tensor, masks: list[Tensor]) -> None:
        """One batch: uint8 images ``(B, 3, s, s)`` and G's masks ``[(B, 1, r, r)]`` (or ``[]``)."""
        x = self.view(images)
        for name, p in oracle_lib.predict_attributes(self.oracle, x).items():
            self.pred[name].append(p)
        self.features.append(oracle_lib.oracle_features(self.oracle, x))
        seg = self.crop(oracle_lib.segment(self.oracle, x))  # (B, inner, inner) bool
        b, s = seg.shape[0], self.inner
        if not self.stage_sizes:
            self.stage_sizes = [int(m.shape[-1]) for m in masks]
            self.stage_iou = [0.0] * len(masks)
        for k, m in enumerate(masks):
            up = F.interpolate(m.float().cpu(), size=(s, s), mode="bilinear",
                               align_corners=False)[:, 0] > self.config.mask_threshold
            self.stage_iou[k] += float(oracle_lib.mask_iou(up, seg).sum())
        blob = oracle_lib.centred_blob(b, s, self.config.blob_radius)
        self.baseline_iou["centred_blob"] += float(oracle_lib.mask_iou(blob, seg).sum())
        whole = torch.ones(b, s, s, dtype=torch.bool)
        self.baseline_iou["whole_image"] += float(oracle_lib.mask_iou(whole, seg).sum())
        self.bird_fraction += float(seg.float().mean((1, 2)).sum())
        self.n += b

    def _floor(self, m: int) -> tuple[float, int]:
        """Toy FID of ``m`` real training images vs the real test images (the floor)."""
        train = CachedCUBDataset(self.root, "train", image_size=self.resolution)
        m = min(m, len(train))
        pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(
            self.config.seed))[:m].sort().values
        feats = [oracle_lib.oracle_features(self.oracle, self.view(as_uint8(
            center_crop(train.images[pick[a:a + 256]], self.resolution))))
            for a in range(0, m, 256)]
        return oracle_lib.frechet_distance(torch.cat(feats), self.real_features), m

    def result(self) -> dict[str, Any]:
        """The ``toy`` section of the report."""
        if self.n != len(self.plan):
            raise ValueError(f"the scorer got {self.n} images for a plan of {len(self.plan)}")
        pred = {name: torch.cat(p) for name, p in self.pred.items()}
        judged = self.judged
        generated = oracle_lib.alignment(pred, self.targets, judged)
        real = oracle_lib.alignment(self.real_pred_plan, self.targets, judged)
        shuffled = oracle_lib.alignment(
            pred, oracle_lib.shuffled(self.targets, self.config.seed), judged)
        chance: dict[str, Any] = {name: 1.0 / len(ATTRIBUTES[name]) for name in judged}
        chance["mean"] = sum(chance.values()) / len(judged) if judged else None
        features = torch.cat(self.features)
        floor, m = self._floor(len(features))
        n = self.n
        return {
            "oracle": {"accuracy": self.report.accuracy, "mask_iou": self.report.mask_iou,
                       "n_test": self.report.n_test, "mean_accuracy": self.report.mean_accuracy},
            "pipeline": {"generator_resolution": self.resolution, "oracle_resolution": self.size,
                         "resized_to": self.inner, "real_accuracy": self.pipeline_accuracy},
            "judged": list(judged),
            "not_judged": [name for name in CAPTIONED if name not in judged],
            "alignment": {"generated": _scores(generated), "real": _scores(real),
                          "shuffled": _scores(shuffled), "chance": chance},
            "toy_fid": {"generated": oracle_lib.frechet_distance(features, self.real_features),
                        "real_vs_real": floor, "n_generated": len(features),
                        "n_real_split": m, "n_reference": len(self.real_features),
                        "feature_dim": int(features.shape[1])},
            "mask_iou": {
                "stages": [{"size": r, "iou": v / n}
                           for r, v in zip(self.stage_sizes, self.stage_iou)],
                "centred_blob": self.baseline_iou["centred_blob"] / n,
                "whole_image": self.baseline_iou["whole_image"] / n,
                "bird_fraction": self.bird_fraction / n,
                "threshold": self.config.mask_threshold,
                "blob_radius": self.config.blob_radius,
                "note": "" if self.stage_sizes else "this generator predicts no masks "
                                                    "(DF-GAN blocks)",
            },
        }


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


def evaluate_checkpoint(checkpoint: str | os.PathLike[str], root: str | os.PathLike[str],
                        config: EvalConfig = EvalConfig(), *, device: str | torch.device = "auto",
                        damsm: str | os.PathLike[str] | None = None,
                        oracle: str | os.PathLike[str] | None = None,
                        fid_extractor: nn.Module | None = None,
                        is_classifier: nn.Module | None = None) -> dict[str, Any]:
    """Generate for the test captions of ``root`` and measure ``config.metrics``.

    Args:
        checkpoint: an SSA-GAN (or DF-GAN variant) training checkpoint.
        root: the CUB-format data folder it was trained on (ToyBirds for ``toy``).
        config: metrics, sample counts, seed.
        device: where G and the metric networks run.
        damsm: a held-out DAMSM checkpoint for R-precision (default: the checkpoint's encoders).
        oracle: a ToyBirds oracle file (default: ``toy_oracle.load_or_train_oracle(root)``,
            which trains it on first use).
        fid_extractor, is_classifier: networks replacing the FID Inception / IS classifier
            (uint8 images in; features / logits out), e.g. tiny ones in tests.

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
    g, text_encoder, vocab, payload = load_generator(checkpoint, device, config.use_ema)
    resolution = g.config.resolution
    test = CachedCUBDataset(root, "test", image_size=resolution)
    if vocab.fingerprint() != test.vocab.fingerprint():
        raise CheckpointMismatch(f"{checkpoint} was trained with another vocabulary than "
                                 f"{root}'s captions.pickle; token ids would mean other words")
    plan = sample_plan(len(test), test.captions_per_image, config.samples_per_image,
                       config.n_samples)

    # set everything up first, so a missing weight file fails before any image is drawn
    fid = inception = None
    if "fid" in metrics:
        from t2ilib.metrics.fid import StreamingFID

        fid = StreamingFID(fid_extractor, weights=config.fid_weights, device=device)
        for a in range(0, len(test), config.batch_size):
            fid.update(center_crop(test.images[a:a + config.batch_size], resolution), real=True)
    if "is" in metrics:
        from t2ilib.metrics.inception_score import StreamingIS

        inception = StreamingIS(is_classifier, weights=config.fid_weights,
                                splits=config.is_splits, seed=config.seed, device=device)
    codes: list[Tensor] = []
    if "rprec" in metrics:
        rp_text, rp_image, judge = _rprec_encoders(payload, checkpoint, text_encoder, damsm,
                                                   len(test.vocab), device)
    toy = None
    if "toy" in metrics:
        if oracle is not None:
            judge_net, report, _ = oracle_lib.load_oracle(oracle, device)
        else:
            judge_net, report = load_or_train_oracle(root, device=device)
        toy = ToyScorer(judge_net, report, root, test, plan, config)

    gen = torch.Generator().manual_seed(config.seed)
    bar = progress(range(0, len(plan), config.batch_size), desc="evaluate", leave=False)
    for a in bar:
        rows = plan[a:a + config.batch_size]
        captions = [test.vocab.decode(test.captions_of(i)[j]) for i, j in rows.tolist()]
        z = torch.randn(len(rows), g.config.nz, generator=gen)
        images, masks = generate(g, text_encoder, vocab, captions, z)
        q = as_uint8(images)  # what a saved PNG would hold
        if fid is not None:
            fid.update(q, real=False)
        if inception is not None:
            inception.update(q)
        if "rprec" in metrics:
            codes.append(encode_images(rp_image, q.float().div(127.5).sub(1.0), device=device))
        if toy is not None:
            toy.update(q, masks)
    generated_s = time.perf_counter() - start

    model = dict(payload["meta"]["model_config"])
    report_dict: dict[str, Any] = {
        "checkpoint": str(checkpoint), "step": int(payload["counters"]["step"]),
        "epoch": int(payload["counters"]["epoch"]), "model": model, "data": str(root),
        "protocol": {"split": "test", "n_samples": len(plan), "n_test_images": len(test),
                     "samples_per_image": config.samples_per_image,
                     "captions_per_image": test.captions_per_image, "resolution": resolution,
                     "seed": config.seed, "use_ema": config.use_ema,
                     "metrics": list(metrics)},
    }
    if fid is not None:
        report_dict["fid"] = asdict(fid.compute())
    if inception is not None:
        report_dict["is"] = asdict(inception.compute())
    if "rprec" in metrics:
        flat = [c for i in range(len(test)) for c in test.captions_of(i)]
        classes = torch.tensor([int(c) for c in test.class_ids])
        pool = encode_captions(rp_text, flat, test.words_num, device=device)  # (M, D)
        pool_classes = classes.repeat_interleave(test.captions_per_image)  # (M,)
        index = plan[:, 0] * test.captions_per_image + plan[:, 1]  # (N,) true caption rows
        rp = r_precision(torch.cat(codes), pool[index], classes[plan[:, 0]], pool, pool_classes,
                         config.rprec_candidates, config.rprec_folds,
                         torch.Generator().manual_seed(config.seed))
        report_dict["rprec"] = {"mean": rp.mean, "std": rp.std, "chance": rp.chance,
                                "n_images": rp.n_images, "n_candidates": rp.n_candidates,
                                "n_folds": rp.n_folds, "judge": judge, "note": rp.note}
    if toy is not None:
        report_dict["toy"] = toy.result()
    report_dict["seconds"] = {"generate_and_stream": round(generated_s, 2),
                              "total": round(time.perf_counter() - start, 2)}
    return report_dict
