"""``python -m t2ilib doctor``: what each run of the course finds on this machine.

For every run (the ToyBirds notebooks, the paper's SSA-GAN run on CUB, SISGAN on CUB and on
Oxford-102, FID evaluation) the report lists its preconditions and whether they are met:

* **data folders** under ``data_root()`` (``$T2I_DATA`` or ``data/``; ``--data-root`` for
  this report): ToyBirds (``toybirds/toybirds.json``, drawn on first use), the CUB + AttnGAN
  layout (``birds/``, :func:`t2ilib.data.cub.missing_layout`), Oxford-102 (``flowers/``,
  :func:`t2ilib.data.flowers.flowers_index`);
* **weight files**, looked up by the library's own functions (never a second copy of the
  paths): where each is expected, whether it is there, and its digest. torchvision's files
  carry the first 8 hex digits of their SHA-256 in their names (``-0cc3c7bd.pth``); where no
  full digest is known only that prefix is checked. The FID Inception has a full published
  SHA-256 (:data:`t2ilib.metrics.fid.FID_WEIGHTS_SHA256`). AttnGAN's DAMSM files have none;
  the converted DAMSM (``convert-damsm``) is checked against ``birds/captions.pickle``;
* **the GPU**: ``torch.cuda.is_available()``, each device's name and memory.

A precondition is *required* (the run cannot start without it), *optional* (made on first
use, or another way exists) or *recommended* (the GPU for the paper-size runs). Nothing is
downloaded, trained or written. The exit status is 0 whatever is missing (2 only for bad
arguments); ``--json`` prints the same report as JSON.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import torch

from t2ilib.damsm.checkpoint import default_checkpoint
from t2ilib.damsm.convert import attngan_release_files, converted_damsm_path
from t2ilib.damsm.image_encoder import (
    INCEPTION_IMAGENET_FILE,
    MissingWeightsError,
    find_inception_weights,
    inception_weights_path,
)
from t2ilib.data.cub import missing_layout
from t2ilib.data.flowers import flowers_index
from t2ilib.io import file_sha256, load_torch
from t2ilib.metrics.fid import (
    FID_WEIGHTS_FILE,
    FID_WEIGHTS_SHA256,
    fid_weights_candidates,
    find_fid_weights,
)
from t2ilib.runtime import data_root
from t2ilib.sisgan.model import find_vgg16_bn_weights, vgg16_bn_weights_path
from t2ilib.text.vocab import read_captions_pickle

__all__ = ["RUNS", "gpu_report", "data_report", "weights_report", "doctor_report",
           "format_report", "run_doctor"]

#: Each run: (key, title, [(precondition, need)]). A precondition names a data folder
#: (``data:...``), a weight file (``weights:...``), ``damsm:cub`` (either a converted DAMSM or
#: the ImageNet Inception to pretrain one) or ``gpu``.
RUNS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("toybirds_notebooks", "ToyBirds notebooks 01-10 (CPU)",
     (("data:toybirds", "optional"), ("weights:damsm_toybirds", "optional"), ("gpu", "optional"))),
    ("ssagan_cub", "SSA-GAN paper run on CUB (train ssagan --recipe paper --dataset cub)",
     (("data:cub", "required"), ("damsm:cub", "required"), ("gpu", "recommended"))),
    ("sisgan_cub", "SISGAN on CUB (notebook 09, -p dataset cub)",
     (("data:cub", "required"), ("weights:vgg16_bn", "optional"),
      ("weights:damsm_cub_attngan", "optional"), ("gpu", "recommended"))),
    ("sisgan_flowers", "SISGAN on Oxford-102 (notebook 09, -p dataset flowers)",
     (("data:flowers", "required"), ("weights:vgg16_bn", "optional"), ("gpu", "recommended"))),
    ("fid_eval", "FID / IS evaluation (evaluate --metrics fid,is; notebook 08)",
     (("weights:fid_inception", "required"), ("gpu", "recommended"))),
)
#: Statuses that count as met.
_GOOD = ("ok", "present")


@contextlib.contextmanager
def _data_root_as(root: str | os.PathLike[str] | None) -> Iterator[None]:
    """Run the library's lookups against ``root`` (``$T2I_DATA``) for the duration."""
    if root is None:
        yield
        return
    old = os.environ.get("T2I_DATA")
    os.environ["T2I_DATA"] = str(root)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("T2I_DATA", None)
        else:
            os.environ["T2I_DATA"] = old


def gpu_report() -> dict[str, Any]:
    """``{"available", "torch", "cuda", "devices": [{"name", "memory_gib"}]}``."""
    devices = []
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            devices.append({"name": props.name, "memory_gib": round(props.total_memory / 2**30, 1)})
    return {"available": bool(devices), "torch": torch.__version__, "cuda": torch.version.cuda,
            "devices": devices}


def data_report() -> list[dict[str, Any]]:
    """One entry per data folder: ``name, path, status (ok/missing), detail, missing``."""
    root = data_root()
    toy = root / "toybirds"
    made = (toy / "toybirds.json").is_file()  # written last: marks a complete set
    out = [{"name": "toybirds", "path": str(toy), "missing": [],
            "status": "ok" if made else "missing",
            "detail": "complete (toybirds.json)" if made else "drawn on first use by the "
            "notebooks (or data_scripts/make_toybirds.py)"}]
    cub = root / "birds"
    missing = missing_layout(cub)
    detail = (f"{len(missing)} missing, e.g. {missing[0][0].relative_to(cub)} <- {missing[0][1]}"
              if missing else "CUB-200-2011 + AttnGAN layout complete"
              + ("" if (cub / "captions.pickle").is_file() else
                 " (captions.pickle is built on first use)"))
    out.append({"name": "cub", "path": str(cub), "status": "missing" if missing else "ok",
                "detail": detail, "missing": [str(p) for p, _ in missing]})
    flowers = root / "flowers"
    try:
        index = flowers_index(flowers)
        status, detail = "ok", (f"{len(index.ids['train'])} train / {len(index.ids['test'])} "
                                f"test images ({index.scheme} split)")
    except (OSError, ValueError) as err:  # FileNotFoundError, BadFileError...
        status, detail = "missing", " ".join(str(err).split())
    out.append({"name": "flowers", "path": str(flowers), "status": status, "detail": detail,
                "missing": [] if status == "ok" else [str(flowers)]})
    return out


def _name_prefix(file_name: str) -> str:
    """The SHA-256 prefix torchvision writes into a file name (``-0cc3c7bd.pth``)."""
    found = torch.hub.HASH_REGEX.search(file_name)
    return found.group(1) if found else ""


def _weight(name: str, file: str, used_for: str, looked_at: list[Path], find: Any,
            full: str | None = None, prefix: str | None = None, hint: str | None = None,
            check: str = "none published") -> dict[str, Any]:
    """A weight file's entry: found by ``find()`` (None or raising MissingWeightsError when
    absent), its SHA-256 compared with ``full`` or, failing that, with ``prefix``; ``hint``
    says what to do when it is missing (default: put the file where it is looked for)."""
    try:
        found = find()
    except MissingWeightsError:
        found = None
    check = (f"sha256 {full[:8]}...{full[-6:]} (full)" if full else
             f"sha256 prefix {prefix} (prefix only)" if prefix else check)
    entry = {"name": name, "file": file, "used_for": used_for,
             "looked_at": [str(p) for p in looked_at], "found": str(found) if found else None,
             "check": check, "sha256": None}
    if found is None:
        return {**entry, "status": "missing",
                "detail": hint or f"put {file} into {looked_at[0].parent}"}
    if not (full or prefix):
        return {**entry, "status": "present", "detail": f"{check}: not checked"}
    sha = file_sha256(Path(found))
    expected = full or prefix
    ok = sha == full if full else sha.startswith(prefix or "")
    detail = (f"SHA-256 {sha[:8]}... matches" if ok else
              f"SHA-256 starts {sha[:8]}, expected {expected[:8]}: another or damaged file; "
              "fetch it again")
    return {**entry, "sha256": sha, "status": "ok" if ok else "mismatch", "detail": detail}


def _converted_damsm(captions: Path) -> dict[str, Any]:
    """The converted AttnGAN DAMSM: present, from AttnGAN's release, for this vocabulary?"""
    path = converted_damsm_path()
    entry = {"name": "damsm_cub_attngan", "file": path.name, "looked_at": [str(path)],
             "used_for": "--damsm of the CUB runs (python -m t2ilib convert-damsm)",
             "found": str(path) if path.is_file() else None,
             "check": "vocabulary vs birds/captions.pickle", "sha256": None}
    if not path.is_file():
        return {**entry, "status": "missing",
                "detail": "python -m t2ilib convert-damsm (AttnGAN's files below)"}
    try:
        payload = load_torch(path, mmap=True)
        if not isinstance(payload, dict) or payload.get("kind") != "damsm":
            return {**entry, "status": "mismatch", "detail": "not a t2ilib DAMSM checkpoint"}
        fingerprint = payload.get("fingerprint") or {}
        source = fingerprint.get("extra.source")
        if not captions.is_file():
            return {**entry, "status": "present", "detail": f"source {source}; vocabulary not "
                    f"checked: no {captions}"}
        same = fingerprint.get("vocab") == read_captions_pickle(captions).vocab.fingerprint()
    except (OSError, ValueError) as err:
        return {**entry, "status": "mismatch", "detail": " ".join(str(err).split())[:200]}
    detail = (f"source {source}; vocabulary of {captions.name} "
              + ("matches" if same else "differs: convert again with the data's captions.pickle"))
    return {**entry, "status": "ok" if same else "mismatch", "detail": detail}


def weights_report() -> list[dict[str, Any]]:
    """One entry per weight file: ``name, file, used_for, looked_at, found, check, status
    (ok/mismatch/missing/present), detail, sha256``."""
    vgg = vgg16_bn_weights_path()
    release = attngan_release_files()
    toy_damsm = default_checkpoint()
    return [
        _weight("inception_imagenet", INCEPTION_IMAGENET_FILE,
                "DAMSM image encoder on CUB (pretraining a DAMSM with --image-encoder inception)",
                [inception_weights_path()], find_inception_weights,
                prefix=_name_prefix(INCEPTION_IMAGENET_FILE)),
        _weight("fid_inception", FID_WEIGHTS_FILE, "FID and IS (evaluate, notebook 08)",
                fid_weights_candidates(), find_fid_weights, full=FID_WEIGHTS_SHA256),
        _weight("vgg16_bn", vgg.name, "SISGAN's paper image encoder (-p encoder vgg)", [vgg],
                find_vgg16_bn_weights, prefix=_name_prefix(vgg.name)),
        _converted_damsm(release["captions"]),
        *(_weight(f"attngan_{role}", release[role].name, "input of convert-damsm (optional)",
                  [release[role]], lambda p=release[role]: p if p.is_file() else None)
          for role in ("text", "image")),
        _weight("damsm_toybirds", toy_damsm.name, "notebook 02's DAMSM",
                [toy_damsm], lambda: toy_damsm if toy_damsm.is_file() else None,
                hint="trained on first use by notebook 02 (about 7 CPU minutes)",
                check="- (made here)"),
    ]


def _precondition(item: str, need: str, data: dict[str, dict], weights: dict[str, dict],
                  gpu: dict[str, Any]) -> dict[str, Any]:
    kind, _, name = item.partition(":")
    if kind == "gpu":
        status = "ok" if gpu["available"] else "none"
        detail = (", ".join(d["name"] for d in gpu["devices"]) if gpu["available"]
                  else "CPU only")
    elif kind == "data":
        status, detail = data[name]["status"], data[name]["path"]
    elif kind == "damsm":  # a converted DAMSM, or the ImageNet Inception to pretrain one
        converted, imagenet = weights["damsm_cub_attngan"], weights["inception_imagenet"]
        if converted["status"] in _GOOD:
            status, detail = "ok", f"--damsm {converted['found']}"
        elif imagenet["status"] in _GOOD:
            status, detail = "ok", "pretrains a DAMSM on the ImageNet Inception-v3"
        else:
            status = "missing"
            detail = (f"neither {converted['looked_at'][0]} (convert-damsm) nor "
                      f"{INCEPTION_IMAGENET_FILE} ({imagenet['status']})")
    else:
        entry = weights[name]
        status, detail = entry["status"], entry["found"] or entry["looked_at"][0]
    return {"item": item, "need": need, "ok": status in _GOOD, "status": status,
            "detail": detail}


def doctor_report(root: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The whole report as plain data (what ``--json`` prints)."""
    with _data_root_as(root):
        data, weights, gpu = data_report(), weights_report(), gpu_report()
        runs = []
        by_name = {d["name"]: d for d in data}, {w["name"]: w for w in weights}
        for key, title, needs in RUNS:
            checks = [_precondition(item, need, *by_name, gpu) for item, need in needs]
            runs.append({"name": key, "title": title, "checks": checks,
                         "ready": all(c["ok"] for c in checks if c["need"] == "required")})
        return {"data_root": str(data_root()), "torch_hub": torch.hub.get_dir(), "gpu": gpu,
                "data": data, "weights": weights, "runs": runs}


def _table(headers: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers) - 1)]
    return ["  ".join([*(str(c).ljust(w) for c, w in zip(r, widths)), str(r[-1])]).rstrip()
            for r in [headers, *rows]]


def format_report(report: dict[str, Any]) -> str:
    """The report as text: GPU, data folders, weight files, runs."""
    gpu = report["gpu"]
    if gpu["available"]:
        gpu_line = "; ".join(f"{d['name']} ({d['memory_gib']} GiB)" for d in gpu["devices"])
    else:
        gpu_line = "none: CPU only (the notebooks' defaults run there; the paper runs want one)"
    lines = [f"t2ilib doctor: data root {report['data_root']}, torch hub {report['torch_hub']}",
             f"GPU: {gpu_line} [torch {gpu['torch']}, built for CUDA {gpu['cuda'] or '-'}]", ""]
    lines += _table(["DATA", "STATUS", "WHERE", "DETAIL"],
                    [[d["name"], d["status"], d["path"], d["detail"]] for d in report["data"]])
    lines.append("")
    rows = []
    for w in report["weights"]:
        where = w["found"] or w["looked_at"][0] + (f" (+{len(w['looked_at']) - 1} more)"
                                                   if len(w["looked_at"]) > 1 else "")
        rows.append([w["name"], w["status"], w["check"], where])
    lines += _table(["WEIGHTS", "STATUS", "DIGEST CHECK", "WHERE"], rows)
    lines += [f"  {w['name']}: {w['detail']}" for w in report["weights"]
              if w["status"] not in _GOOD or w["name"] == "damsm_cub_attngan"]
    lines.append("")
    rows = []
    for run in report["runs"]:
        for i, c in enumerate(run["checks"]):
            rows.append([run["name"] if i == 0 else "", ("yes" if run["ready"] else "no")
                         if i == 0 else "", c["item"], c["need"], c["status"], c["detail"]])
    lines += _table(["RUN", "READY", "PRECONDITION", "NEED", "STATUS", "DETAIL"], rows)
    lines += [""] + [f"  {run['name']}: {run['title']}" for run in report["runs"]]
    return "\n".join(lines)


def run_doctor(root: str | os.PathLike[str] | None = None, as_json: bool = False,
               stream: TextIO | None = None) -> int:
    """Print the report (``as_json``: JSON); returns 0. ``root`` overrides ``$T2I_DATA``;
    one that exists but is not a folder raises ``ValueError`` (a bad argument)."""
    if root is not None and Path(root).exists() and not Path(root).is_dir():
        raise ValueError(f"--data-root {root} is not a folder")
    report = doctor_report(root)
    text = json.dumps(report, indent=1) if as_json else format_report(report)
    print(text, file=stream or sys.stdout)
    return 0
