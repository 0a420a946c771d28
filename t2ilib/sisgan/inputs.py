"""What a SISGAN run reads: its images and captions, and the frozen DAMSM text encoder.

Notebook 09 (sections 2 and 6) and ``python -m t2ilib train sisgan`` build them the same way:

* **ToyBirds**: the images at their drawn size (64 px, where the masks and the oracle live,
  :func:`~t2ilib.data.trainset.load_native_split`) and notebook 02's DAMSM
  (:func:`~t2ilib.damsm.pretrain.load_or_train_toybirds_damsm`);
* **CUB**: the tensor cache at the model's size (the bird crop of AttnGAN, as notebook 07);
* **Oxford-102**: :class:`~t2ilib.data.flowers.FlowersDataset` (Reed et al.'s class-disjoint
  split, the one SISGAN used).

For CUB and Oxford-102 the DAMSM is a given checkpoint (AttnGAN's, converted, or one pretrained
earlier) or is pretrained here on the training captions first, with ImageNet's Inception-v3 as
its image encoder (the weights file must be on disk; nothing is downloaded).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from t2ilib.damsm.checkpoint import load_damsm, trained_image_size
from t2ilib.damsm.image_encoder import InceptionEncoder, SmallCNNConfig, SmallCNNEncoder
from t2ilib.damsm.pretrain import (
    DAMSMTrainConfig,
    load_or_train_damsm,
    load_or_train_toybirds_damsm,
)
from t2ilib.data.trainset import TrainData, load_native_split
from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

__all__ = ["DATASETS", "SISGANData", "Encoders", "load_data", "load_encoders"]

DATASETS = ("toybirds", "cub", "flowers")


@dataclass
class SISGANData:
    """The training and test images (uint8, ``(N, 3, S, S)``) with their captions, and the
    dataset a DAMSM would be pretrained on (random crops and flips; None for ToyBirds, whose
    DAMSM is notebook 02's)."""

    train: TrainData
    test: TrainData
    damsm_set: Dataset | None


@dataclass
class Encoders:
    """The frozen DAMSM: ``text_encoder`` (eval, no gradients) and its ``image_encoder`` (eval);
    ``image_size`` is the side the image encoder was trained at (None: any, e.g. Inception)."""

    text_encoder: TextEncoder
    image_encoder: nn.Module
    image_size: int | None
    path: Path
    trained: bool  # pretrained by this call (False: loaded)
    interrupted: bool = False  # the pretraining was stopped (Ctrl-C): do not train on it


def load_data(dataset: str, root: str | os.PathLike[str], image_size: int = 64,
              seed: int = 0) -> SISGANData:
    """The splits of ``dataset`` (``toybirds``, ``cub`` or ``flowers``) under ``root``."""
    root = Path(root)
    if dataset == "toybirds":
        return SISGANData(load_native_split(root, "train", name="toybirds"),
                          load_native_split(root, "test", name="toybirds"), None)
    if dataset == "cub":
        from t2ilib.data.cache import CachedCUBDataset

        def split(name: str) -> TrainData:
            return TrainData.from_dataset(CachedCUBDataset(root, name, image_size=image_size,
                                                           uint8=True), name="cub")

        return SISGANData(split("train"), split("test"),
                          CachedCUBDataset(root, "train", image_size=image_size, seed=seed))
    if dataset == "flowers":
        from t2ilib.data.flowers import FlowersDataset

        train_set = FlowersDataset(root, "train", image_size=image_size, seed=seed)
        test = FlowersDataset(root, "test", image_size=image_size)
        return SISGANData(TrainData.from_dataset(train_set, name="flowers"),
                          TrainData.from_dataset(test, name="flowers"), train_set)
    raise ValueError(f"dataset must be one of {', '.join(DATASETS)}, got {dataset!r}")


def load_encoders(data: SISGANData, root: str | os.PathLike[str], folder: str | os.PathLike[str],
                  *, damsm: str | os.PathLike[str] | None = None, epochs: int = 10,
                  batch_size: int = 32, seed: int = 0, image_encoder: str = "inception",
                  tiny: bool = False, retrain: bool = False,
                  device: str | torch.device = "cpu") -> Encoders:
    """The DAMSM a SISGAN run steers its edits with, frozen.

    ``damsm``: a checkpoint to load (its vocabulary must be the data's). Otherwise ToyBirds
    loads (or pretrains) notebook 02's DAMSM, and CUB / Oxford-102 pretrain one in ``folder``
    for ``epochs`` epochs with ``image_encoder`` (``inception``: ImageNet's trunk, whose weights
    file must be on disk; ``small_cnn``). ``tiny``: a one-epoch, narrow DAMSM in ``folder``
    (smoke runs: seconds).
    """
    if damsm is not None:
        from t2ilib.damsm.convert import check_damsm_vocabulary

        text_encoder, image_enc, info = load_damsm(damsm, device)
        check_damsm_vocabulary(info["fingerprint"], data.train.vocab, damsm)
        return Encoders(text_encoder.eval().requires_grad_(False), image_enc,
                        trained_image_size(info["fingerprint"]), Path(damsm), False)
    if data.damsm_set is None:  # ToyBirds: notebook 02's encoders
        tiny_args = ({"epochs": 1, "batch_size": 8, "cnn_width": 8, "path": folder} if tiny
                     else {})
        text_encoder, image_enc, run = load_or_train_toybirds_damsm(root, device=device,
                                                                   retrain=retrain, **tiny_args)
    else:
        text_encoder = TextEncoder(TextEncoderConfig(len(data.train.vocab)))
        dim = text_encoder.config.hidden_dim
        image_enc = (SmallCNNEncoder(SmallCNNConfig(embed_dim=dim, width=8 if tiny else 32))
                     if image_encoder == "small_cnn" or tiny else InceptionEncoder())
        run = load_or_train_damsm(folder, text_encoder, image_enc, data.damsm_set,
                                  DAMSMTrainConfig(epochs=1 if tiny else epochs),
                                  batch_size=batch_size, seed=seed,
                                  extra={"data": data.train.describe()}, retrain=retrain,
                                  device=device)
    return Encoders(text_encoder.eval().requires_grad_(False), image_enc.eval(),
                    trained_image_size(run.fingerprint), run.path, run.trained, run.interrupted)
