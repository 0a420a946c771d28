"""MSGAN's mode-seeking term: its value, its gradient's direction, bad input."""

from __future__ import annotations

import pytest
import torch

from t2ilib.ssagan.diversity import mode_seeking_loss


def test_value_is_one_over_the_ratio_of_mean_distances():
    a = torch.zeros(2, 3, 4, 4)
    b = torch.full((2, 3, 4, 4), 0.5)  # images 0.5 apart everywhere
    z1, z2 = torch.zeros(2, 8), torch.full((2, 8), 2.0)  # noises 2 apart: ratio 0.25
    assert mode_seeking_loss(a, b, z1, z2, eps=0.0).item() == pytest.approx(4.0)
    # a collapsed generator (the same image for both noises) gets 1 / eps
    assert mode_seeking_loss(a, a, z1, z2, eps=1e-3).item() == pytest.approx(1e3)


def test_descending_it_pushes_the_two_images_apart():
    torch.manual_seed(0)
    a = torch.randn(3, 3, 8, 8, requires_grad=True)
    b = (a.detach() + 0.01 * torch.randn(3, 3, 8, 8)).requires_grad_(True)
    z1, z2 = torch.randn(3, 16), torch.randn(3, 16)
    before = (a - b).abs().mean().item()
    loss = mode_seeking_loss(a, b, z1, z2)
    loss.backward()
    with torch.no_grad():
        a -= 1e-4 * a.grad
        b -= 1e-4 * b.grad
    assert (a - b).abs().mean().item() > before
    assert mode_seeking_loss(a, b, z1, z2).item() < loss.item()


def test_shapes_must_agree():
    x = torch.zeros(2, 3, 4, 4)
    z = torch.zeros(2, 8)
    with pytest.raises(ValueError, match="one shape"):
        mode_seeking_loss(x, torch.zeros(2, 3, 8, 8), z, z)
    with pytest.raises(ValueError, match="noises"):
        mode_seeking_loss(x, x, z, torch.zeros(2, 4))
    with pytest.raises(ValueError, match="noises"):
        mode_seeking_loss(x, x, torch.zeros(3, 8), torch.zeros(3, 8))
