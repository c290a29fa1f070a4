"""The small training engine shared by both searches: metrics, weight training, the bilevel loop."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TASKS = ("classification", "segmentation")


class Accuracy:
    """Top-1 accuracy over everything seen since the last :meth:`reset`."""

    name = "accuracy"

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, logits: Tensor, target: Tensor) -> None:
        self.correct += int((logits.argmax(dim=1) == target).sum())
        self.total += int(target.numel())

    def compute(self) -> float:
        return self.correct / max(1, self.total)


class MeanDice:
    r"""Mean Dice over the foreground classes present, from counts pooled over the whole data set.

    :math:`D_k = 2 TP_k / (2 TP_k + FP_k + FN_k)` for every class ``k > 0`` that occurs in the targets
    or the predictions; classes absent from both are left out of the mean rather than counted as 1.
    """

    name = "mean_dice"

    def __init__(self, ignore_background: bool = True) -> None:
        self.ignore_background = ignore_background
        self.reset()

    def reset(self) -> None:
        self.counts: Tensor | None = None

    def update(self, logits: Tensor, target: Tensor) -> None:
        classes = logits.shape[1]
        prediction = logits.argmax(dim=1).flatten()
        target = target.flatten().long()
        tp = torch.bincount(target[prediction == target], minlength=classes)
        predicted = torch.bincount(prediction, minlength=classes)
        actual = torch.bincount(target, minlength=classes)
        batch = torch.stack([tp, predicted - tp, actual - tp]).double().cpu()
        self.counts = batch if self.counts is None else self.counts + batch

    def compute(self) -> float:
        if self.counts is None:
            return 0.0
        tp, fp, fn = self.counts
        start = 1 if self.ignore_background else 0
        denominator = 2 * tp + fp + fn
        present = denominator[start:] > 0
        if not bool(present.any()):
            return 0.0
        return float((2 * tp[start:][present] / denominator[start:][present]).mean())


def default_metric(task: str):
    if task not in TASKS:
        raise ValueError(f"search: task must be one of {TASKS}, got {task!r}")
    return Accuracy() if task == "classification" else MeanDice()


def cross_entropy(logits: Tensor, target: Tensor) -> Tensor:
    """Cross-entropy for class logits ``(N, K)`` or dense logits ``(N, K, *spatial)``."""
    return F.cross_entropy(logits, target.long())


def progress(iterable: Iterable, total: int, description: str, enabled: bool) -> Iterable:
    """A tqdm bar when tqdm is installed and ``enabled``; the plain iterable otherwise."""
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=description, leave=False, dynamic_ncols=True)


def cycle(loader: Iterable) -> Iterator:
    """Iterate a loader forever (a new pass, with the loader's own shuffling, each time it ends)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError("search: a data loader produced no batches")


def to_device(batch: Sequence[Tensor], device: torch.device) -> tuple[Tensor, Tensor]:
    if not isinstance(batch, (tuple, list)) or len(batch) < 2:
        raise ValueError("search: loaders must yield (input, target) pairs")
    return batch[0].to(device), batch[1].to(device)


def loader_length(loader: Iterable) -> int:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError as error:
        raise ValueError("search: loaders need a length (a DataLoader over a sized data set)") from error


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, metric, device: torch.device) -> float:
    """The metric of ``model`` in eval mode over ``loader``."""
    was_training = model.training
    model.eval()
    metric.reset()
    for batch in loader:
        x, y = to_device(batch, device)
        metric.update(model(x), y)
    model.train(was_training)
    return metric.compute()


def train_weights(
    model: nn.Module,
    loader: Iterable,
    *,
    epochs: float,
    lr: float,
    weight_decay: float,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device,
    show_progress: bool,
    description: str,
) -> list[float]:
    """Train every parameter with AdamW and a cosine schedule for ``epochs`` passes (fractions allowed);
    returns the training loss per step."""
    steps = max(1, int(round(epochs * loader_length(loader))))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps)
    model.train()
    losses: list[float] = []
    batches = cycle(loader)
    for _ in progress(range(steps), steps, description, show_progress):
        x, y = to_device(next(batches), device)
        loss = loss_fn(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    return losses


def bilevel(
    model: nn.Module,
    architecture: list[nn.Parameter],
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    epochs: float,
    weight_lr: float,
    weight_decay: float,
    arch_lr: float,
    arch_weight_decay: float,
    warmup: float,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    penalty: Callable[[], Tensor],
    record: Callable[[int], None],
    record_every: int,
    device: torch.device,
    show_progress: bool,
    description: str,
) -> list[tuple[float, float]]:
    """First-order DARTS: alternate a weight step on a training batch and an architecture step on a
    validation batch (``loss + penalty()``), after ``warmup`` (a fraction of the steps) of weight steps
    only, so that parametric candidates are trained a little before they are judged.

    Optimisers follow DARTS (``train_search.py``): Adam with betas (0.5, 0.999) and weight decay for α;
    here AdamW with a cosine schedule for the weights, which converges in the few epochs a CPU allows.
    Returns ``(train loss, val loss)`` per step (val loss is NaN during warm-up).
    """
    ids = {id(p) for p in architecture}
    weights = [p for p in model.parameters() if id(p) not in ids]
    steps = max(1, int(round(epochs * loader_length(train_loader))))
    warmup_steps = int(warmup * steps)
    weight_optimizer = torch.optim.AdamW(weights, lr=weight_lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(weight_optimizer, T_max=steps)
    arch_optimizer = torch.optim.Adam(
        architecture, lr=arch_lr, betas=(0.5, 0.999), weight_decay=arch_weight_decay
    )
    train_batches, val_batches = cycle(train_loader), cycle(val_loader)
    model.train()
    losses: list[tuple[float, float]] = []
    record(0)
    for step in progress(range(1, steps + 1), steps, description, show_progress):
        x, y = to_device(next(train_batches), device)
        loss = loss_fn(model(x), y)
        weight_optimizer.zero_grad(set_to_none=True)
        arch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        weight_optimizer.step()
        schedule.step()
        val_loss = float("nan")
        if step > warmup_steps:
            xv, yv = to_device(next(val_batches), device)
            objective = loss_fn(model(xv), yv) + penalty()
            weight_optimizer.zero_grad(set_to_none=True)
            arch_optimizer.zero_grad(set_to_none=True)
            objective.backward()
            arch_optimizer.step()
            val_loss = float(objective.detach())
        losses.append((float(loss.detach()), val_loss))
        if step % record_every == 0 or step == steps:
            record(step)
    return losses


def retrain_and_save(
    result,
    model_fn: Callable[..., nn.Module],
    *,
    retrain_epochs: int,
    seed: int,
    train_loader: Iterable,
    val_loader: Iterable,
    test_loader: Iterable | None,
    metric,
    lr: float,
    weight_decay: float,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    device: torch.device,
    progress: bool,
    description: str,
    started: float,
    out=None,
):
    """The common tail of both searches: retrain what ``result`` derived from scratch, score it, save.

    Retraining is what makes a searched architecture comparable with a uniform one trained alone; the
    supernet's own score is kept beside it (``result.supernet_metric``) but never used as the verdict.
    """
    import time
    from pathlib import Path

    if retrain_epochs > 0:
        torch.manual_seed(seed)
        derived = result.build(model_fn).to(device)
        retrain_losses = train_weights(
            derived,
            train_loader,
            epochs=retrain_epochs,
            lr=lr,
            weight_decay=weight_decay,
            loss_fn=loss_fn,
            device=device,
            show_progress=progress,
            description=description,
        )
        metrics = {"val": evaluate(derived, val_loader, metric, device)}
        if test_loader is not None:
            metrics["test"] = evaluate(derived, test_loader, metric, device)
        result.retrain = {"epochs": retrain_epochs, "metrics": metrics, "final_loss": retrain_losses[-1]}
        result.model = derived
    result.seconds = time.perf_counter() - started
    if out is not None:
        result.save(Path(out))
    return result
