r"""Data-parallel training under ``torchrun``: process group, sharding, gradient averaging.

Each of the $W$ processes (one per GPU) holds a full replica of every model, trains on its
own shard of each batch, and before every optimiser step the gradients are averaged,

$$g \leftarrow \frac{1}{W} \sum_{r=1}^{W} g_r ,$$

so the replicas take identical steps and stay identical (they start identical: rank 0's
weights are broadcast). This is what ``DistributedDataParallel`` does; we call the
all-reduce ourselves because SSA-GAN's discriminator is entered through two methods
(``features`` and ``logits``, so the mismatched pairs reuse real features) and MA-GP needs
a double backward, and DDP supports neither. The gradients are flattened into one buffer
per call (one collective, as DDP's buckets).

The rest is the usual DDP recipe: ``torch.utils.data.DistributedSampler`` shards each
epoch's permutation (see :func:`shard_permutation`), batch-norm layers become
``SyncBatchNorm`` on GPUs (batch statistics over the global batch; PyTorch implements
it for GPUs only, so CPU/gloo runs keep per-process statistics), and only rank 0 writes
checkpoints, logs and sample grids.

Launch: ``torchrun --nproc_per_node=N -m t2ilib train ssagan ...``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.utils.data import DistributedSampler

__all__ = ["DistInfo", "SINGLE", "init_distributed", "shutdown_distributed", "shard_permutation",
           "broadcast_module", "average_gradients", "any_flag", "convert_sync_batchnorm"]


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` in ``0..world_size-1``, ``local_rank`` on its node."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0 writes checkpoints, logs and figures."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


SINGLE = DistInfo()  # a plain single-process run


def init_distributed(backend: str | None = None) -> DistInfo:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``).

    Without those variables (a plain ``python`` run) returns :data:`SINGLE` and starts
    nothing. ``backend`` defaults to ``nccl`` when CUDA is available, else ``gloo``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return SINGLE
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        if backend is None:
            backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend, rank=info.rank, world_size=world)
    return info


def shutdown_distributed() -> None:
    """Leave the process group (no-op outside one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def shard_permutation(n: int, epoch: int, seed: int, info: DistInfo = SINGLE) -> list[int]:
    """This rank's share of epoch ``epoch``'s random order of ``0..n-1``.

    ``DistributedSampler`` semantics: one permutation per ``(seed, epoch)``, shared by all
    ranks, trimmed to a multiple of ``world_size`` and dealt round-robin; ranks get
    disjoint shares of equal length ``n // world_size``.
    """
    if n < info.world_size:
        raise ValueError(f"{n} items cannot be shared by {info.world_size} processes")
    sampler = DistributedSampler(range(n), num_replicas=info.world_size, rank=info.rank,
                                 shuffle=True, seed=seed, drop_last=True)
    sampler.set_epoch(epoch)
    return list(sampler)


def broadcast_module(module: nn.Module, info: DistInfo, src: int = 0,
                     buffers_only: bool = False) -> None:
    """Copy rank ``src``'s parameters and buffers to every rank (no-op when single).

    ``buffers_only=True`` copies only the buffers (batch-norm running statistics, which
    drift apart on CPU runs without SyncBatchNorm; DDP broadcasts them the same way).
    """
    if not info.distributed:
        return
    tensors = [*module.buffers()] if buffers_only else [*module.parameters(), *module.buffers()]
    with torch.no_grad():
        for t in tensors:
            dist.broadcast(t.data, src)


def average_gradients(params: list[nn.Parameter], info: DistInfo) -> None:
    """Average ``.grad`` over all ranks in place (one all-reduce of a flat buffer).

    A parameter without a gradient on this rank takes part as zeros (every rank must
    send the same layout) and receives the average.
    """
    if not info.distributed or not params:
        return
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])                     # (sum numel,)
    dist.all_reduce(flat)
    flat.div_(info.world_size)
    offset = 0
    for p, g in zip(params, grads):
        n = g.numel()
        chunk = flat[offset:offset + n].view_as(g)
        if p.grad is None:
            p.grad = chunk.clone()
        else:
            p.grad.copy_(chunk)
        offset += n


def any_flag(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """True on every rank if it is True on any (e.g. one rank got SIGTERM: all stop together)."""
    if not info.distributed:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def convert_sync_batchnorm(module: nn.Module, info: DistInfo, device: torch.device) -> nn.Module:
    """``SyncBatchNorm`` in place of every batch norm, for multi-process GPU runs only."""
    if info.distributed and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module
