"""Helpers shared by several test modules."""

from __future__ import annotations

import torch


def randomize_zero_params(module: torch.nn.Module, seed: int = 0) -> None:
    """Give every all-zero parameter (gates, zero-initialised last layers) random values."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            if not p.any():
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))


def assert_one_line_error(exit_info, capsys, expected: str) -> None:
    """A CLI call ended with exit status 2 and a one-line ``error: ...`` naming ``expected``."""
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and expected in last


def tiny_toybirds_train(tmp_path_factory):
    """A 16-image ToyBirds training split at 32 px as :class:`~t2ilib.data.trainset.TrainData`
    (the tiny data set the training tests share)."""
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.toybirds import write_toybirds
    from t2ilib.data.trainset import TrainData

    root = write_toybirds(tmp_path_factory.mktemp("toy") / "toybirds", n_train=16, n_test=4,
                          size=32, seed=1)
    return TrainData.from_dataset(CachedCUBDataset(root, "train", image_size=32, uint8=True),
                                  "toybirds32")


def tiny_sisgan_run(tmp):
    """A one-step SISGAN run on an 8-image ToyBirds set at 64 px, in ``tmp``: returns
    ``(checkpoint path, a source bird PNG)`` (the CLI tests' model)."""
    from PIL import Image

    from t2ilib.data.toybirds import write_toybirds
    from t2ilib.data.trainset import load_native_split
    from t2ilib.sisgan.model import SISGANConfig
    from t2ilib.sisgan.recipes import SISGANTrainConfig
    from t2ilib.sisgan.train import sisgan_engine
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

    root = write_toybirds(tmp / "toybirds", n_train=8, n_test=2, size=64, seed=4)
    data = load_native_split(root, "train")
    torch.manual_seed(0)
    te = TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=8, hidden_dim=8))
    model = SISGANConfig(sentence_dim=8, condition_dim=4, ngf=2, ndf=2, n_residual=1,
                         d_text_dim=4)
    config = SISGANTrainConfig(epochs=1, batch_size=4, max_steps_per_epoch=1)
    engine = sisgan_engine(config, te, data, model_config=model, device="cpu",
                           run_dir=tmp / "run")
    engine.fit(config.epochs, progress_bar=False)
    Image.fromarray(data.images[0].permute(1, 2, 0).numpy()).save(tmp / "bird.png")
    return engine.checkpoint_path, tmp / "bird.png"


def tiny_train(tmp_path, epochs: int = 1, damsm_epochs: int = 1) -> tuple[list[str], object]:
    """``train ssagan`` on an 8-image ToyBirds set at 32 px, one step per epoch, its DAMSM
    pretrained into the run folder: ``(argv, run folder)``."""
    from t2ilib.data.toybirds import write_toybirds

    data = write_toybirds(tmp_path / "toy", n_train=8, n_test=4, size=32, seed=2)
    run = tmp_path / "run"
    return ["train", "ssagan", "--dataset", "toybirds", "--data-dir", str(data),
            "--run-dir", str(run), "--resolution", "32", "--ngf", "4", "--batch-size", "4",
            "--epochs", str(epochs), "--max-steps-per-epoch", "1",
            "--damsm-epochs", str(damsm_epochs), "--device", "cpu"], run
