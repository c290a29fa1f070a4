"""Dice and HD95 against definitions written out independently here."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from excite.study.metrics import dice_per_class, hausdorff95

pytest.importorskip("torchmetrics")


def _surface_points(mask: np.ndarray) -> np.ndarray:
    """Voxels of the mask with a face neighbour outside the mask or outside the array."""
    points = []
    for index in zip(*np.nonzero(mask)):
        for axis, step in itertools.product(range(mask.ndim), (-1, 1)):
            neighbour = list(index)
            neighbour[axis] += step
            if not 0 <= neighbour[axis] < mask.shape[axis] or not mask[tuple(neighbour)]:
                points.append(index)
                break
    return np.array(points, dtype=np.float64)


def _hd95_reference(pred: np.ndarray, target: np.ndarray, spacing) -> float:
    a = _surface_points(pred) * np.asarray(spacing)
    b = _surface_points(target) * np.asarray(spacing)
    distances = np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return max(np.percentile(distances.min(axis=1), 95), np.percentile(distances.min(axis=0), 95))


def test_hd95_matches_the_definition_in_2d_and_3d():
    rng = np.random.default_rng(0)
    for shape, spacing in (((24, 20), (1.0, 1.0)), ((12, 14, 10), (2.0, 2.0, 1.5))):
        for _ in range(3):
            pred = rng.random(shape) > 0.7
            target = np.zeros(shape, dtype=bool)
            target[tuple(slice(2, s - 3) for s in shape)] = True
            expected = _hd95_reference(pred, target, spacing)
            assert hausdorff95(torch.from_numpy(pred), torch.from_numpy(target), spacing) == pytest.approx(
                expected
            )


def test_hd95_hand_cases():
    a = torch.zeros(10, 10, dtype=torch.bool)
    b = torch.zeros(10, 10, dtype=torch.bool)
    a[1, 1] = True
    b[4, 5] = True
    assert hausdorff95(a, b, (1.0, 1.0)) == pytest.approx(5.0)
    assert hausdorff95(a, b, (2.0, 1.0)) == pytest.approx((36 + 16) ** 0.5)
    assert hausdorff95(a, a, (1.0, 1.0)) == 0.0
    assert hausdorff95(a, torch.zeros_like(a), (1.0, 1.0)) == float("inf")
    assert np.isnan(hausdorff95(torch.zeros_like(a), torch.zeros_like(a), (1.0, 1.0)))


def test_dice_per_class_is_global_and_skips_background():
    target = torch.tensor([[0, 1, 1, 2], [2, 2, 0, 0]])
    pred = torch.tensor([[0, 1, 2, 2], [2, 0, 0, 3]])
    dice = dice_per_class(pred, target, num_classes=4)
    # class 1: |P∩G| = 1, |P| = 1, |G| = 2; class 2: 2, 3, 3; class 3: 0, 1, 0.
    assert dice[0].item() == pytest.approx(2 * 1 / 3)
    assert dice[1].item() == pytest.approx(2 * 2 / 6)
    assert dice[2].item() == pytest.approx(0.0)
