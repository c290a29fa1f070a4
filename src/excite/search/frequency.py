"""FcaNet frequency search: learn which 2-D DCT frequencies each FCA layer should pool with.

FcaNet (Qin et al., ICCV 2021) chooses 16 of the 7x7 = 49 DCT frequencies once, for every layer: the
released "top16" table ranks single frequencies by ImageNet accuracy (two-step selection, FcaNet-TS);
"low16" takes the lowest frequencies; the FcaNet-NAS variant was never released. Here every FCA layer
gets its own learnable weights over the whole grid, trained DARTS-style on held-out data, and then
keeps its top K (the per-layer search proposed in applications.md §8 of the project spec).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._nd import (
    GateTap,
    check_channels,
    check_dim,
    check_input,
    fold_adaptive_pool,
    reduced_width,
    scale_channels,
)
from ..layers.fca import FCA, REFERENCE_GRID, dct_filters
from .attention_search import ModelFn, _json_default
from .mixed import architecture_parameters, find_slots
from .report import markdown_table, plot_frequency_maps
from .training import (
    bilevel,
    cross_entropy,
    default_metric,
    evaluate,
    retrain_and_save,
    to_device,
)

RELAXATIONS = ("softmax", "sparsemax")


def candidate_grid(
    spatial_size: Sequence[int], grid: int = REFERENCE_GRID
) -> tuple[tuple[int, ...], list[tuple[int, ...]], list[tuple[int, ...]]]:
    """The DCT size of a layer whose input is ``spatial_size``, and its candidate frequencies.

    ``dct_size = max(grid, S)`` per axis: the feature-map size, as FcaNet sets it per stage, but never
    below the reference grid (a 4x4 map is pooled adaptively up to 7x7, as FCA does, so that all
    ``grid^dim`` candidates stay distinct). Candidate ``r`` on the reference grid is the absolute index
    ``r · (dct_size // grid)``, FCA's own scaling of its named tables, so the searched frequencies and
    ``"top16"``/``"low16"``/``"bot16"`` live on the same grid.

    Returns ``(dct_size, reference indices, absolute indices)``, the indices in row-major order.
    """
    dct_size = tuple(max(grid, int(s)) for s in spatial_size)
    scale = [d // grid for d in dct_size]
    reference = [tuple(r) for r in product(range(grid), repeat=len(dct_size))]
    absolute = [tuple(i * s for i, s in zip(r, scale)) for r in reference]
    return dct_size, reference, absolute


def sparsemax(logits: Tensor) -> Tensor:
    r"""Sparsemax (Martins & Astudillo, ICML 2016): the Euclidean projection of ``logits`` onto the
    simplex, :math:`p_i = \max(0, z_i - \tau)`, exactly zero outside its support."""
    ordered, _ = torch.sort(logits, descending=True)
    cumulative = ordered.cumsum(0)
    ks = torch.arange(1, logits.numel() + 1, device=logits.device, dtype=logits.dtype)
    support = (1 + ks * ordered) > cumulative
    k = int(support.nonzero().max()) + 1
    tau = (cumulative[k - 1] - 1) / k
    return torch.clamp(logits - tau, min=0)


class FrequencySearchFCA(nn.Module):
    r"""FCA whose pooling filter is a learnt mixture of all DCT frequencies of the reference grid.

    .. math::

        p = \mathrm{relax}(\theta) \in \Delta^{G^d - 1},\qquad
        z_c = \sum_{i,j} \tilde x_{c,i,j} \sum_f p_f B^{f}_{i,j},\qquad
        y = x \odot \sigma\big(W_2\,\mathrm{ReLU}(W_1 z)\big)

    ``θ`` (``arch_logits``, ``G^d`` entries: 49 in 2-D) is an architecture parameter; ``relax`` is
    softmax (DARTS) or sparsemax (exact zeros). Every channel pools with the same mixed filter; by
    linearity this equals the ``p``-weighted sum of the 49 single-frequency descriptors, so ``p_f`` is how
    much the layer's gate relies on frequency ``f``. The basis is FCA's (orthonormal DCT-II, descriptor a
    sum not a mean, inputs adaptively pooled to ``dct_size``), on the grid of :func:`candidate_grid`,
    fixed at the first forward pass from the input size. FCs as FCA: no bias, width ``C // reduction``.

    After the search, :meth:`selected` gives the top ``k`` frequencies, which an FCA with
    ``frequencies=[...]`` (absolute indices) and ``dct_size=self.dct_size`` uses as fixed bases.

    Raises:
        ValueError: unknown relaxation, ``C < reduction``, wrong rank or channel count, an input of
            another size than the first one.
    """

    def __init__(
        self,
        channels: int | None = None,
        *,
        dim: int = 2,
        reduction: int = 16,
        grid: int = REFERENCE_GRID,
        relaxation: str = "softmax",
        slot_index: int = 0,
    ) -> None:
        super().__init__()
        check_dim(dim, "FrequencySearchFCA")
        channels = check_channels(channels, "FrequencySearchFCA")
        if relaxation not in RELAXATIONS:
            raise ValueError(
                f"FrequencySearchFCA: relaxation must be one of {RELAXATIONS}, got {relaxation!r}"
            )
        if grid < 1:
            raise ValueError(f"FrequencySearchFCA: grid must be >= 1, got {grid}")
        hidden = reduced_width(channels, reduction, "FrequencySearchFCA")
        self.dim = dim
        self.channels = channels
        self.reduction = reduction
        self.grid = grid
        self.relaxation = relaxation
        self.slot_index = slot_index
        self.arch_logits = nn.Parameter(torch.zeros(grid**dim))
        self.fc1 = nn.Linear(channels, hidden, bias=False)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels, bias=False)
        self.tap = GateTap()
        self.input_size: tuple[int, ...] | None = None
        self.dct_size: tuple[int, ...] | None = None
        self.reference: list[tuple[int, ...]] = []
        self.absolute: list[tuple[int, ...]] = []
        self._bank: Tensor | None = None

    def weights(self) -> Tensor:
        """``relax(θ)``: one weight per candidate frequency, summing to 1."""
        if self.relaxation == "sparsemax":
            return sparsemax(self.arch_logits)
        return torch.softmax(self.arch_logits, dim=0)

    def _filters(self, x: Tensor) -> Tensor:
        size = tuple(int(s) for s in x.shape[2:])
        if self.input_size is None:
            self.input_size = size
            self.dct_size, self.reference, self.absolute = candidate_grid(size, self.grid)
        elif size != self.input_size:
            raise ValueError(
                f"FrequencySearchFCA: the search fixes the DCT grid from the first input size "
                f"{list(self.input_size)}, got {list(size)}"
            )
        if self._bank is None or self._bank.device != x.device:
            # One filter per candidate (the "channels" of dct_filters), adaptive pooling folded in.
            bank = dct_filters(len(self.absolute), self.dct_size, self.absolute)
            self._bank = fold_adaptive_pool(bank, list(size)).to(x.device)
        return self._bank

    def forward(self, x: Tensor) -> Tensor:
        check_input(x, self.dim, self.channels, "FrequencySearchFCA")
        bank = self._filters(x)
        mixed = torch.tensordot(self.weights().to(bank.dtype), bank, dims=1)
        axes = list(range(2, x.dim()))
        z = (x.float() * mixed.unsqueeze(0).unsqueeze(0)).sum(dim=axes)
        gate = self.tap(torch.sigmoid(self.fc2(self.act(self.fc1(z.to(x.dtype))))))
        return scale_channels(x, gate)

    def selected(self, k: int) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
        """The ``k`` heaviest frequencies, heaviest first: ``(reference indices, absolute indices)``.

        Ties (sparsemax zeros, or untrained uniform weights) are broken towards lower frequencies,
        in row-major order, which is deterministic.
        """
        if self.dct_size is None:
            raise ValueError("FrequencySearchFCA: run a forward pass before selecting frequencies")
        if not 1 <= k <= len(self.reference):
            raise ValueError(f"FrequencySearchFCA: k must be in 1..{len(self.reference)}, got {k}")
        weights = self.weights().detach().cpu().tolist()
        order = sorted(range(len(weights)), key=lambda i: (-weights[i], i))[:k]
        return [self.reference[i] for i in order], [self.absolute[i] for i in order]

    def extra_repr(self) -> str:
        return f"channels={self.channels}, dim={self.dim}, grid={self.grid}, relaxation={self.relaxation}"


def search_factory(reduction: int, grid: int, relaxation: str) -> Callable[..., FrequencySearchFCA]:
    counter = [0]

    def make(channels: int, dim: int = 2, **_ignored) -> FrequencySearchFCA:
        module = FrequencySearchFCA(
            channels, dim=dim, reduction=reduction, grid=grid, relaxation=relaxation, slot_index=counter[0]
        )
        counter[0] += 1
        return module

    return make


@dataclass
class FrequencyLayer:
    """One FCA layer: its input, DCT grid, learnt weights over the reference grid and its selection."""

    name: str
    channels: int
    input_shape: list[int]
    dct_size: list[int]
    weights: list[float]
    reference: list[list[int]]
    frequencies: list[list[int]]


@dataclass
class FrequencySearchResult:
    """The outcome of :func:`frequencies`: the selected frequencies per FCA layer, and the evidence.

    ``frequencies`` lists per layer the absolute ``(u, v)`` indices on that layer's ``dct_size`` grid, in
    decreasing weight. :meth:`attention_factory` builds FCA layers with them as fixed bases;
    :meth:`named_factory` builds the same layers with FcaNet's tables (``"top16"``, ...) on the same
    grids, for comparison.
    """

    k: int
    grid: int
    relaxation: str
    reduction: int
    layers: list[FrequencyLayer]
    steps: list[int]
    weight_history: list[list[list[float]]]
    losses: list[tuple[float, float]]
    supernet_metric: float
    metric_name: str
    retrain: dict[str, Any] | None = None
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def frequencies(self) -> list[list[tuple[int, ...]]]:
        return [[tuple(f) for f in layer.frequencies] for layer in self.layers]

    def _factory(self, frequencies_of: Callable[[int], Any]) -> Callable[..., nn.Module]:
        counter = [0]

        def make(channels: int, dim: int = 2, **_ignored) -> nn.Module:
            index = counter[0]
            if index >= len(self.layers):
                raise ValueError(
                    f"frequency search: the builder asked for layer {index}, the search had "
                    f"{len(self.layers)}"
                )
            layer = self.layers[index]
            if channels != layer.channels:
                raise ValueError(
                    f"frequency search: layer {index} has {channels} channels, the searched one "
                    f"had {layer.channels}"
                )
            counter[0] += 1
            return FCA(
                channels,
                dim=dim,
                dct_size=tuple(layer.dct_size),
                frequencies=frequencies_of(index),
                reduction=self.reduction,
            )

        return make

    def attention_factory(self) -> Callable[..., nn.Module]:
        """FCA layers with the searched frequencies as fixed bases."""
        return self._factory(lambda index: [tuple(f) for f in self.layers[index].frequencies])

    def named_factory(self, method: str) -> Callable[..., nn.Module]:
        """FCA layers with one of FcaNet's tables (``"top16"``, ``"low16"``, ``"bot16"``, ...) on the
        searched layers' DCT grids (the tables are scaled by ``dct_size // 7``, as FcaNet does)."""
        return self._factory(lambda index: method)

    def build(self, model_fn: ModelFn) -> nn.Module:
        return model_fn(attention=self.attention_factory())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model", None)
        return data

    def to_json(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        return path

    def plot(self, path: Path) -> Path | None:
        if self.layers and len(self.layers[0].dct_size) != 2:
            return None
        maps = [torch.tensor(layer.weights).reshape(self.grid, self.grid).tolist() for layer in self.layers]
        return plot_frequency_maps(
            maps,
            [layer.reference for layer in self.layers],
            [f"{layer.name} ({layer.channels}ch, dct {layer.dct_size[0]})" for layer in self.layers],
            Path(path),
            f"Learnt frequency weights ({self.relaxation}); red: the top {self.k} kept",
        )

    def to_markdown(self, figure: str | None = None) -> str:
        rows = []
        for layer in self.layers:
            top = sorted(layer.weights, reverse=True)
            mass = sum(top[: self.k])
            entropy = -sum(w * math.log(w) for w in layer.weights if w > 0)
            rows.append(
                [
                    f"`{layer.name}`",
                    layer.channels,
                    "x".join(str(s) for s in layer.input_shape[2:]),
                    "x".join(str(s) for s in layer.dct_size),
                    f"{mass:.2f}",
                    f"{math.exp(entropy):.1f}",
                    " ".join("(" + ",".join(str(i) for i in f) + ")" for f in layer.reference[:8])
                    + (" ..." if len(layer.reference) > 8 else ""),
                ]
            )
        lines = [
            f"Learnable weights ({self.relaxation}) over the "
            f"{self.grid}^{len(self.layers[0].dct_size) if self.layers else 2} "
            f"reference DCT grid in every FCA layer, trained on the validation split; top {self.k} kept.",
            "",
            markdown_table(
                [
                    "layer",
                    "channels",
                    "input",
                    "dct size",
                    f"weight in top {self.k}",
                    "effective #freq",
                    "selected (u,v), reference grid",
                ],
                rows,
            ),
            "",
            f"Supernet {self.metric_name} on the validation split: {self.supernet_metric:.4f}; search time "
            f"{self.seconds:.0f} s. Effective number of frequencies = exp(entropy of the weights) "
            "(49 = uniform).",
        ]
        if self.retrain is not None:
            parts = [f"{k} {self.metric_name} {v:.4f}" for k, v in self.retrain.get("metrics", {}).items()]
            lines.append(
                f"Retrained with fixed bases for {self.retrain['epochs']:g} epoch(s): {', '.join(parts)}."
            )
        if figure:
            lines += ["", f"![learnt frequency weights]({figure})"]
        return "\n".join(lines) + "\n"

    def save(self, folder: Path) -> dict[str, Path]:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": self.to_json(folder / "frequency_search.json")}
        figure = self.plot(folder / "frequency_search.png")
        if figure is not None:
            paths["figure"] = figure
        markdown = folder / "frequency_search.md"
        markdown.write_text(
            "# FcaNet frequency search\n\n" + self.to_markdown("frequency_search.png" if figure else None)
        )
        paths["markdown"] = markdown
        return paths


def frequencies(
    model_fn: ModelFn,
    train_loader: Iterable,
    val_loader: Iterable,
    *,
    k: int = 16,
    grid: int = REFERENCE_GRID,
    reduction: int = 16,
    relaxation: str = "softmax",
    task: str = "classification",
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    metric: Any = None,
    epochs: float = 1.0,
    warmup: float = 0.2,
    weight_lr: float = 2e-3,
    weight_decay: float = 5e-4,
    arch_lr: float = 3e-2,
    arch_weight_decay: float = 0.0,
    retrain_epochs: float = 0.0,
    test_loader: Iterable | None = None,
    device: str = "cpu",
    seed: int = 0,
    record_every: int | None = None,
    progress: bool = True,
    out: Path | None = None,
) -> FrequencySearchResult:
    """Search the DCT frequencies of every FCA layer, keep the top ``k`` per layer, optionally retrain.

    1. ``model_fn(attention=factory)`` builds the network with a :class:`FrequencySearchFCA` at every
       slot (logits over all ``grid^dim`` frequencies, 49 in 2-D).
    2. First-order DARTS: weight steps on training batches, logit steps (Adam, betas 0.5/0.999) on
       validation batches, after ``warmup`` (fraction of steps) of weight steps alone. No weight decay
       on the logits by default: it would pull them to uniform, against the sparsity we want.
    3. Per layer, the ``k`` frequencies with the largest weight, heaviest first (channel block 0 gets the
       heaviest, as FcaNet's ranked tables do).
    4. With ``retrain_epochs > 0``, the network with fixed-basis FCA layers
       (:meth:`FrequencySearchResult.attention_factory`) is trained from scratch and evaluated.

    Arguments as :func:`excite.search.attention`; ``k`` must divide every layer's channel count.

    Raises:
        ValueError: a builder that creates no slot; ``k`` out of range or not dividing a layer's channels.
    """
    started = time.perf_counter()
    metric = metric if metric is not None else default_metric(task)
    loss_fn = loss_fn if loss_fn is not None else cross_entropy
    torch_device = torch.device(device)
    torch.manual_seed(seed)
    supernet = model_fn(attention=search_factory(reduction, grid, relaxation)).to(torch_device)
    slots = find_slots(supernet, FrequencySearchFCA)
    if not slots:
        raise ValueError(
            "frequency search: model_fn built no FrequencySearchFCA; it must use its `attention` argument"
        )
    for name, module in slots:
        if module.channels % k != 0:
            raise ValueError(
                f"frequency search: k={k} must divide the channels of every layer; {name} has "
                f"{module.channels}"
            )
    example, _ = to_device(next(iter(train_loader)), torch_device)
    with torch.no_grad():
        supernet.eval()
        supernet(example)
        supernet.train()
    shapes = {name: [example.shape[0], module.channels, *module.input_size] for name, module in slots}
    modules = [module for _, module in slots]
    steps: list[int] = []
    history: list[list[list[float]]] = []

    def record(step: int) -> None:
        steps.append(step)
        history.append([m.weights().detach().cpu().tolist() for m in modules])

    total_steps = max(1, int(round(epochs * len(train_loader))))  # type: ignore[arg-type]
    losses = bilevel(
        supernet,
        architecture_parameters(supernet),
        train_loader,
        val_loader,
        epochs=epochs,
        weight_lr=weight_lr,
        weight_decay=weight_decay,
        arch_lr=arch_lr,
        arch_weight_decay=arch_weight_decay,
        warmup=warmup,
        loss_fn=loss_fn,
        penalty=lambda: torch.zeros((), device=torch_device),
        record=record,
        record_every=record_every or max(1, total_steps // 50),
        device=torch_device,
        show_progress=progress,
        description="frequency search",
    )
    supernet_metric = evaluate(supernet, val_loader, metric, torch_device)
    layers = []
    for name, module in slots:
        reference, absolute = module.selected(k)
        layers.append(
            FrequencyLayer(
                name=name,
                channels=module.channels,
                input_shape=shapes[name],
                dct_size=list(module.dct_size),
                weights=module.weights().detach().cpu().tolist(),
                reference=[list(r) for r in reference],
                frequencies=[list(a) for a in absolute],
            )
        )
    result = FrequencySearchResult(
        k=k,
        grid=grid,
        relaxation=relaxation,
        reduction=reduction,
        layers=layers,
        steps=steps,
        weight_history=history,
        losses=losses,
        supernet_metric=supernet_metric,
        metric_name=getattr(metric, "name", "metric"),
    )
    return retrain_and_save(
        result,
        model_fn,
        retrain_epochs=retrain_epochs,
        seed=seed,
        train_loader=train_loader,
        val_loader=val_loader,
        test_loader=test_loader,
        metric=metric,
        lr=weight_lr,
        weight_decay=weight_decay,
        loss_fn=loss_fn,
        device=torch_device,
        progress=progress,
        description="retrain with the selected frequencies",
        started=started,
        out=out,
    )
