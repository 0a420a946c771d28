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
