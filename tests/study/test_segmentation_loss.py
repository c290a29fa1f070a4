"""The study's segmentation loss against a per-class transcription of its formula."""

from __future__ import annotations

import math

import torch

from excite.study.tasks import cross_entropy_soft_dice


def transcribed(logits: torch.Tensor, target: torch.Tensor) -> float:
    """Cross-entropy averaged over voxels, plus 1 − mean over foreground classes of
    (2·Σ p·t + 1) / (Σ p + Σ t + 1), sums over the batch and every voxel; written with loops."""
    classes = logits.shape[1]
    flat_logits = logits.movedim(1, -1).reshape(-1, classes).double()
    flat_target = target.reshape(-1)
    nll = 0.0
    for row, label in zip(flat_logits, flat_target):
        nll += math.log(sum(math.exp(v) for v in row.tolist())) - row[int(label)].item()
    nll /= flat_target.numel()
    probabilities = flat_logits.softmax(dim=1)
    dices = []
    for k in range(1, classes):
        p = probabilities[:, k]
        t = (flat_target == k).double()
        dices.append((2 * (p * t).sum().item() + 1) / (p.sum().item() + t.sum().item() + 1))
    return nll + 1 - sum(dices) / len(dices)


def test_matches_the_transcription_in_2d_and_3d() -> None:
    torch.manual_seed(0)
    for shape in [(2, 4, 5, 6), (1, 3, 3, 4, 2)]:
        logits = torch.randn(*shape)
        target = torch.randint(0, shape[1], (shape[0], *shape[2:]))
        assert math.isclose(
            cross_entropy_soft_dice(logits, target).item(), transcribed(logits, target), rel_tol=1e-5
        )


def test_near_zero_for_a_confident_correct_prediction() -> None:
    target = torch.tensor([[[0, 1], [2, 1]]])
    logits = torch.nn.functional.one_hot(target, 3).movedim(-1, 1).float() * 40.0
    # The +1 smoothing leaves (2n + 1) / (2n + 1) = 1 for each present class: the loss vanishes.
    assert cross_entropy_soft_dice(logits, target).item() < 1e-6
    # Predicting background everywhere loses every foreground class.
    background = torch.zeros(1, 3, 2, 2)
    background[:, 0] = 40.0
    loss = cross_entropy_soft_dice(background, target).item()
    # Three of four voxels cost 40 nats each; Dice (0 + 1) / (0 + 2 + 1) for class 1, (0 + 1) / (0 + 1 + 1)
    # for class 2.
    assert math.isclose(loss, 3 * 40 / 4 + 1 - (1 / 3 + 1 / 2) / 2, rel_tol=1e-5)
