"""Data-parallel SSA-GAN: 2 gloo processes on the CPU keep identical replicas."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp

from t2ilib.engine import ddp

WORLD = 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, data_root: str, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(WORLD), LOCAL_RANK=str(rank), T2I_PROGRESS="0")
    torch.set_num_threads(1)
    from t2ilib.damsm.image_encoder import SmallCNNConfig, SmallCNNEncoder
    from t2ilib.data.cache import CachedCUBDataset
    from t2ilib.data.trainset import TrainData
    from t2ilib.ssagan.model import SSAGANConfig
    from t2ilib.ssagan.recipes import Recipe, SSAGANTrainConfig
    from t2ilib.ssagan.train import ssagan_engine
    from t2ilib.text.encoder import TextEncoder, TextEncoderConfig

    info = ddp.init_distributed("gloo")
    data = TrainData.from_dataset(CachedCUBDataset(None, "train", image_size=32, uint8=True,
                                                   cache_file=data_root), "toy")
    torch.manual_seed(rank)  # different encoder weights per rank: the broadcast must fix them
    te = TextEncoder(TextEncoderConfig(len(data.vocab), embed_dim=16, hidden_dim=32))
    ie = SmallCNNEncoder(SmallCNNConfig(embed_dim=32, width=4))
    config = SSAGANTrainConfig(epochs=1, batch_size=2, finetune_text_encoder=True, seed=5)
    model = SSAGANConfig(resolution=32, ngf=4, ndf=4, nz=8, sentence_dim=32)
    trainer = ssagan_engine(Recipe("test", model, config), te, ie, data, device="cpu",
                            run_dir=os.path.join(out_dir, "run"), dist=info)
    first_batch = trainer.task.batch(0, 0).images
    trainer.fit()
    torch.save({"params": {f"{m}.{k}": v for m in ("G", "D", "text_encoder", "image_encoder")
                           for k, v in getattr(trainer.task, m).state_dict().items()},
                "first_batch": first_batch, "steps": trainer.step},
               os.path.join(out_dir, f"rank{rank}.pt"))
    ddp.shutdown_distributed()


def test_two_gloo_processes_keep_identical_replicas(tmp_path):
    from t2ilib.data.cache import ensure_cache
    from t2ilib.data.toybirds import write_toybirds

    root = write_toybirds(tmp_path / "toy", n_train=8, n_test=2, size=32, seed=4)
    cache = ensure_cache(root, "train", image_size=32)
    mp.spawn(_worker, args=(_free_port(), str(cache), str(tmp_path)), nprocs=WORLD, join=True)

    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(WORLD))
    assert r0["steps"] == r1["steps"] == 2  # 8 images / 2 ranks / batch 2
    assert not torch.equal(r0["first_batch"], r1["first_batch"])  # disjoint data shards
    differing = [k for k in r0["params"] if not torch.equal(r0["params"][k], r1["params"][k])]
    assert not differing, f"replicas drifted apart in {differing[:5]}"
    assert (tmp_path / "run" / "checkpoint.pt").is_file()  # written by rank 0


def test_shards_are_disjoint_and_cover_the_epoch():
    shards = [ddp.shard_permutation(10, epoch=3, seed=1, info=ddp.DistInfo(r, 2, r))
              for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 5
    assert sorted(shards[0] + shards[1]) == list(range(10))
    assert ddp.shard_permutation(10, 3, 1) != ddp.shard_permutation(10, 4, 1)
