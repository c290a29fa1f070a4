r"""Excitation analysis: what the channel gates do, per class and per depth.

Hu et al. (SE-Nets, CVPR 2018, §6.4 and Fig. 6; TPAMI 2019 Fig. 7) plot, for several SE blocks, the
mean excitation of each channel over the images of each class, and observe that early blocks excite
channels in a class-agnostic way while later blocks become increasingly class-specific (the very last
blocks saturate and are less informative). :func:`excitations` records the same statistics for any model
built from excite modules and scores each layer's class specificity.

Recording. Every excite module passes its channel gate ``s ∈ [0, 1]^{N×C}`` through a ``GateTap``
submodule (:class:`excite._nd.GateTap`); a forward hook on each tap collects it. Modules without a channel
gate (sSE, SimAM) have no tap and do not appear; scSE's cSE branch does, and CBAM's channel gate. The
layers come in ``named_modules`` order, which for excite's networks is the forward order (depth).

Class specificity of a layer: the mean over channels of the correlation ratio

.. math::

    \eta^2_c = \frac{\sum_k \frac{n_k}{n} (\mu_{kc} - \mu_c)^2}{\frac1n \sum_i (s_{ic} - \mu_c)^2}
             = \frac{\text{between-class variance}}{\text{total variance}} \in [0, 1],

where :math:`\mu_{kc}` is channel ``c``'s mean excitation over the ``n_k`` samples of class ``k`` and
:math:`\mu_c` its mean over all ``n`` samples. 0 means the gate does not depend on the class (every class
has the same mean excitation), 1 means the class determines it completely. A channel whose gate is
constant over the data (total variance < 1e-12; e.g. behind a dead one-unit SE bottleneck) is the same
for every class and scores 0. With no class effect the finite-sample expectation of :math:`\eta^2` is
about ``(K - 1) / (n - 1)`` (0.0009 for 10 classes and 10,000 images), a floor to keep in mind when
reading small scores.

:math:`\eta^2` is scale-free: a gate that barely moves but moves with the class scores high. The report
therefore also gives the *spread*, the mean over channels of the between-class standard deviation
:math:`\sqrt{\sum_k \frac{n_k}{n} (\mu_{kc} - \mu_c)^2}` in gate units, which is what the distance between
the class curves of the SE paper's figure shows. The study's verdict on the depth claim uses η².
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from .._nd import GateTap


@dataclass
class LayerExcitation:
    """Statistics of one gate: per-class means ``(K, C)``, all-sample mean ``(C,)`` and the score."""

    name: str
    depth: int
    class_means: Tensor
    mean: Tensor
    counts: Tensor
    per_channel: Tensor
    specificity: float
    spread: float = 0.0

    @property
    def channels(self) -> int:
        return int(self.mean.shape[0])


@dataclass
class ExcitationReport:
    """The result of :func:`excitations`: one :class:`LayerExcitation` per gate, in depth order."""

    layers: list[LayerExcitation]
    classes: list[str]
    samples: int
    notes: list[str] = field(default_factory=list)

    def scores(self) -> list[tuple[str, float]]:
        return [(layer.name, layer.specificity) for layer in self.layers]

    def to_dict(self, with_means: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "classes": self.classes,
            "samples": self.samples,
            "layers": [
                {
                    "name": layer.name,
                    "depth": layer.depth,
                    "channels": layer.channels,
                    "specificity": layer.specificity,
                    "spread": layer.spread,
                }
                for layer in self.layers
            ],
        }
        if with_means:
            for entry, layer in zip(out["layers"], self.layers):
                entry["class_means"] = layer.class_means.tolist()
                entry["mean"] = layer.mean.tolist()
        return out

    def plot(self, path: Union[str, Path], layers: Sequence[int] | None = None, title: str = "") -> Path:
        """The SE paper's figure: per layer, the mean excitation of each channel for each class.

        One panel per layer (``layers`` picks indices; default all, at most 12 spread over the depth), one
        line per class and a thick black line for all classes; the panel title gives the layer and its
        class-specificity score. Written as PNG with matplotlib's Agg backend.
        """
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if layers is None:
            count = len(self.layers)
            picks = sorted(
                {round(i * (count - 1) / max(1, min(count, 12) - 1)) for i in range(min(count, 12))}
            )
        else:
            picks = list(layers)
        columns = min(3, max(1, len(picks)))
        rows = (len(picks) + columns - 1) // columns
        figure, axes = plt.subplots(rows, columns, figsize=(5.2 * columns, 3.2 * rows), squeeze=False)
        colours = plt.get_cmap("tab10")
        for panel, index in zip(axes.flat, picks):
            layer = self.layers[index]
            channels = torch.arange(layer.channels)
            for k, name in enumerate(self.classes):
                if layer.counts[k] > 0:
                    panel.plot(channels, layer.class_means[k], lw=0.9, color=colours(k % 10), label=name)
            panel.plot(channels, layer.mean, lw=2.0, color="black", label="all")
            panel.set_title(f"{layer.name}  (η² = {layer.specificity:.3f})", fontsize=9)
            panel.set_xlabel("channel index", fontsize=8)
            panel.set_ylabel("mean excitation", fontsize=8)
            panel.set_ylim(-0.02, 1.02)
            panel.tick_params(labelsize=7)
        for panel in list(axes.flat)[len(picks) :]:
            panel.axis("off")
        handles, labels = axes.flat[0].get_legend_handles_labels()
        figure.legend(
            handles, labels, loc="lower center", ncol=min(11, len(labels)), fontsize=8, frameon=False
        )
        if title:
            figure.suptitle(title, fontsize=11)
        figure.tight_layout(rect=(0, 0.06, 1, 0.97 if title else 1))
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=110)
        plt.close(figure)
        return path


def gate_taps(model: nn.Module) -> list[tuple[str, GateTap]]:
    """The ``GateTap`` submodules of ``model`` with their owner's name (``layer1.0.attention``)."""
    taps = []
    for name, module in model.named_modules():
        if isinstance(module, GateTap):
            taps.append((name[: -len(".tap")] if name.endswith(".tap") else name, module))
    return taps


def correlation_ratio(class_sums: Tensor, counts: Tensor, sum_squares: Tensor) -> Tensor:
    r"""Per-channel :math:`\eta^2` from per-class sums ``(K, C)``, counts ``(K,)``, sums of squares ``(C,)``.

    Computed in float64; channels with (near) zero total variance (a constant gate) give 0.
    """
    class_sums, counts, sum_squares = class_sums.double(), counts.double(), sum_squares.double()
    n = counts.sum()
    mean = class_sums.sum(dim=0) / n
    total = sum_squares / n - mean**2
    present = counts > 0
    class_means = class_sums[present] / counts[present, None]
    between = (counts[present, None] / n * (class_means - mean) ** 2).sum(dim=0)
    constant = total < 1e-12
    ratio = between / torch.where(constant, torch.ones_like(total), total)
    ratio[constant] = 0.0
    return ratio.clamp(min=0.0, max=1.0)


def between_class_spread(class_sums: Tensor, counts: Tensor) -> Tensor:
    """Per channel, the standard deviation of the class means around the overall mean (weights ``n_k/n``)."""
    class_sums, counts = class_sums.double(), counts.double()
    n = counts.sum()
    mean = class_sums.sum(dim=0) / n
    present = counts > 0
    class_means = class_sums[present] / counts[present, None]
    return (counts[present, None] / n * (class_means - mean) ** 2).sum(dim=0).sqrt()


@torch.no_grad()
def excitations(
    model: nn.Module,
    loader: Iterable[tuple[Tensor, Tensor]],
    *,
    num_classes: int | None = None,
    classes: Sequence[str] | None = None,
    device: Union[str, torch.device] = "cpu",
    max_batches: int | None = None,
) -> ExcitationReport:
    """Record the mean excitation per attention layer and class, and each layer's class specificity.

    Args:
        model: any network whose attention modules route their channel gate through a ``GateTap``.
        loader: yields ``(inputs, labels)`` with integer class labels ``(N,)``.
        num_classes: K; default ``len(classes)``, else the largest label seen plus one.
        classes: class names for plots and reports.
        device: where the forward passes run.
        max_batches: stop after this many batches.

    Returns:
        An :class:`ExcitationReport` (``.layers``, ``.scores()``, ``.plot(path)``, ``.to_dict()``).

    Raises:
        ValueError: the model has no channel gate to record (no excite module with a ``GateTap``), or a
            gate that is not ``(N, C)``.
    """
    taps = gate_taps(model)
    if not taps:
        raise ValueError(
            "excitations: the model has no GateTap (no excite channel-gate module); spatial-only modules "
            "such as sse and simam have no channel excitation to record"
        )
    if num_classes is None and classes is not None:
        num_classes = len(classes)
    device = torch.device(device)
    was_training = model.training
    model.to(device).eval()
    current: dict[int, Tensor] = {}

    def hook_for(index: int):
        def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
            if output.dim() != 2:
                raise ValueError(
                    f"excitations: gate {taps[index][0]} is not (N, C): shape {list(output.shape)}"
                )
            current[index] = output.detach().double().cpu()

        return hook

    handles = [tap.register_forward_hook(hook_for(i)) for i, (_, tap) in enumerate(taps)]
    sums: list[Tensor | None] = [None] * len(taps)
    squares: list[Tensor | None] = [None] * len(taps)
    all_labels: list[Tensor] = []
    try:
        for batch_index, (inputs, labels) in enumerate(loader):
            if max_batches is not None and batch_index >= max_batches:
                break
            current.clear()
            model(inputs.to(device))
            labels = labels.long().cpu()
            all_labels.append(labels)
            width = int(labels.max()) + 1 if num_classes is None else num_classes
            for i in range(len(taps)):
                gate = current[i]
                if sums[i] is None:
                    sums[i] = torch.zeros(width, gate.shape[1], dtype=torch.float64)
                    squares[i] = torch.zeros(gate.shape[1], dtype=torch.float64)
                if sums[i].shape[0] < width:
                    sums[i] = torch.cat([sums[i], sums[i].new_zeros(width - sums[i].shape[0], gate.shape[1])])
                sums[i].index_add_(0, labels, gate)
                squares[i] += (gate**2).sum(dim=0)
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if not all_labels:
        raise ValueError("excitations: the loader yielded no batches")
    labels = torch.cat(all_labels)
    k = max(s.shape[0] for s in sums if s is not None)
    counts = torch.bincount(labels, minlength=k).double()
    layers = []
    for depth, ((name, _), class_sums, sum_squares) in enumerate(zip(taps, sums, squares)):
        if class_sums.shape[0] < k:
            class_sums = torch.cat(
                [class_sums, class_sums.new_zeros(k - class_sums.shape[0], class_sums.shape[1])]
            )
        ratio = correlation_ratio(class_sums, counts, sum_squares)
        layers.append(
            LayerExcitation(
                name=name,
                depth=depth,
                class_means=(class_sums / counts.clamp(min=1)[:, None]).float(),
                mean=(class_sums.sum(dim=0) / counts.sum()).float(),
                counts=counts.long(),
                per_channel=ratio.float(),
                specificity=float(ratio.mean()),
                spread=float(between_class_spread(class_sums, counts).mean()),
            )
        )
    names = list(classes) if classes is not None else [str(i) for i in range(k)]
    return ExcitationReport(layers=layers, classes=names, samples=int(labels.numel()))


__all__ = [
    "ExcitationReport",
    "LayerExcitation",
    "between_class_spread",
    "correlation_ratio",
    "excitations",
    "gate_taps",
]
