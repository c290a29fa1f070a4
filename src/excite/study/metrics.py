"""Segmentation metrics: Dice per region (torchmetrics) and the 95th-percentile Hausdorff distance.

Dice is computed globally over all voxels of a split (``aggregation_level="global"`` in torchmetrics), per
foreground class: ``2|P∩G| / (|P| + |G|)``. A class absent from both prediction and ground truth has no
Dice (``nan``) and is left out of the mean; the mean Dice averages the classes present in the ground truth.

HD95 follows the definition of MONAI's ``compute_hausdorff_distance(percentile=95)``: the surface of a mask
is its voxels removed by one binary erosion with the face-connected (cross) structuring element, the
border of the array counting as background; the distances from every surface voxel of one mask to the
nearest surface voxel of the other are taken in millimetres (``spacing``), and the result is the larger of
the two directed 95th percentiles. It is ``inf`` when exactly one mask is empty and ``nan`` when both are.
torchmetrics' ``HausdorffDistance`` only gives the maximum (HD100), hence this small implementation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor


def dice_per_class(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Global Dice of each class ``1..K-1`` over all voxels of ``pred``/``target`` (label maps, "
    "same shape)."""
    from torchmetrics.functional.segmentation import dice_score

    return dice_score(
        pred.reshape(1, -1),
        target.reshape(1, -1),
        num_classes=num_classes,
        include_background=False,
        average="none",
        input_format="index",
        aggregation_level="global",
    ).reshape(-1)


def surface(mask: Tensor) -> Tensor:
    """The voxels of a boolean ``mask`` that one cross-shaped erosion removes (array border = background)."""
    padded = torch.nn.functional.pad(mask.to(torch.uint8), [1, 1] * mask.dim())
    eroded = mask.clone()
    center = tuple(slice(1, s + 1) for s in mask.shape)
    for axis in range(mask.dim()):
        for shift in (-1, 1):
            index = list(center)
            index[axis] = slice(1 + shift, mask.shape[axis] + 1 + shift)
            eroded &= padded[tuple(index)].bool()
    return mask & ~eroded


def _directed_distances(source: Tensor, target: Tensor, chunk: int = 4096) -> Tensor:
    """For each point of ``source`` (P, d), the distance to its nearest point of ``target`` (Q, d)."""
    out: list[Tensor] = []
    for start in range(0, source.shape[0], chunk):
        out.append(torch.cdist(source[start : start + chunk], target).min(dim=1).values)
    return torch.cat(out)


def hausdorff95(pred: Tensor, target: Tensor, spacing: Sequence[float]) -> float:
    """HD95 in millimetres between two boolean masks of the same shape (see the module docstring)."""
    pred, target = pred.bool(), target.bool()
    if not pred.any() and not target.any():
        return float("nan")
    if not pred.any() or not target.any():
        return float("inf")
    scale = torch.tensor(list(spacing), dtype=torch.float64)
    pred_points = torch.nonzero(surface(pred)).to(torch.float64) * scale
    target_points = torch.nonzero(surface(target)).to(torch.float64) * scale
    forward = torch.quantile(_directed_distances(pred_points, target_points), 0.95)
    backward = torch.quantile(_directed_distances(target_points, pred_points), 0.95)
    return float(torch.maximum(forward, backward))


def mean_finite(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else float("nan")
