"""Per-layer attention search: which module (or none) goes at each insertion point of a network."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Union

import torch
from torch import Tensor, nn

from .costs import UNITS, candidate_costs, check_cost, slot_input_shapes, uniform_costs
from .mixed import (
    DEFAULT_CANDIDATES,
    MixedAttention,
    architecture_parameters,
    choice_factory,
    find_slots,
    mixture_factory,
)
from .report import format_cost, markdown_table, plot_probability_evolution
from .training import (
    bilevel,
    cross_entropy,
    default_metric,
    evaluate,
    retrain_and_save,
    to_device,
)

ModelFn = Callable[..., nn.Module]


@dataclass
class Slot:
    """One insertion point: where it is, what each candidate costs there, what the search learnt."""

    name: str
    index: int
    channels: int
    dim: int
    input_shape: list[int]
    costs: dict[str, float]
    probabilities: dict[str, float]
    choice: str = ""


@dataclass
class SearchResult:
    """The outcome of :func:`attention`: the per-slot choice, the evidence for it, and the report.

    ``choices`` maps slot names (module paths in the search network) to the chosen candidate.
    ``build(model_fn)`` rebuilds the derived network; ``save(folder)`` writes ``search.md``,
    ``search.json`` and ``search_alpha.png``.
    """

    candidates: list[str]
    slots: list[Slot]
    cost: str
    budget: float | None
    cost_weight: float
    metric_name: str
    steps: list[int]
    probability_history: list[list[list[float]]]
    losses: list[tuple[float, float]]
    supernet_metric: float
    derived_cost: float
    uniform_costs: dict[str, float]
    notes: list[str] = field(default_factory=list)
    candidate_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    retrain: dict[str, Any] | None = None
    seconds: float = 0.0
    model: nn.Module | None = field(default=None, repr=False, compare=False)

    @property
    def choices(self) -> dict[str, str]:
        return {slot.name: slot.choice for slot in self.slots}

    @property
    def cost_unit(self) -> str:
        return UNITS[self.cost]

    def attention_factory(self) -> Callable[..., nn.Module]:
        """The ``attention`` callable that makes a network builder build the derived network."""
        return choice_factory(
            [s.choice for s in self.slots], [s.channels for s in self.slots], self.candidate_options
        )

    def build(self, model_fn: ModelFn) -> nn.Module:
        """``model_fn(attention=...)`` with the chosen module at every slot (fresh weights)."""
        return model_fn(attention=self.attention_factory())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("model", None)
        data["choices"] = self.choices
        data["cost_unit"] = self.cost_unit
        return data

    def to_json(self, path: Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=1, default=_json_default))
        return path

    def plot(self, path: Path) -> Path | None:
        """The α evolution figure (PNG); None when matplotlib is missing."""
        return plot_probability_evolution(
            self.steps,
            self.probability_history,
            [f"{s.index}: {s.name} ({s.channels}ch)" for s in self.slots],
            self.candidates,
            Path(path),
            f"Attention search: softmax(α) per slot (cost={self.cost}, λ={self.cost_weight:g})",
        )

    def to_markdown(self, figure: str | None = None) -> str:
        unit = self.cost_unit
        header = ["slot", "channels", "input"] + self.candidates + ["choice"]
        rows = []
        for slot in self.slots:
            cells = [f"`{slot.name}`", slot.channels, "x".join(str(s) for s in slot.input_shape[2:])]
            for name in self.candidates:
                mark = "**" if name == slot.choice else ""
                cells.append(
                    f"{mark}{slot.probabilities[name]:.2f}{mark} ({format_cost(slot.costs[name], unit)})"
                )
            cells.append(f"**{slot.choice}**")
            rows.append(cells)
        budget = "none" if self.budget is None else format_cost(self.budget, unit)
        lines = [
            f"Candidates: {', '.join(self.candidates)}. Cost: {self.cost} ({unit}), measured per "
            "candidate at each "
            f"slot's input shape; penalty weight λ = {self.cost_weight:g}; budget: {budget}.",
            "",
            "Final softmax(α) per slot, with each candidate's cost at that slot in brackets:",
            "",
            markdown_table(header, rows),
            "",
            f"Derived network: added {self.cost} {format_cost(self.derived_cost, unit)}. "
            "Uniform choices for comparison: "
            + ", ".join(f"{k} {format_cost(v, unit)}" for k, v in self.uniform_costs.items())
            + ".",
            f"Supernet {self.metric_name} on the validation split at the end of the search: "
            f"{self.supernet_metric:.4f}. Search time {self.seconds:.0f} s.",
        ]
        if self.retrain is not None:
            parts = [f"{k} {self.metric_name} {v:.4f}" for k, v in self.retrain.get("metrics", {}).items()]
            lines.append(
                f"Derived network retrained from scratch for {self.retrain['epochs']:g} epoch(s): "
                f"{', '.join(parts)}."
            )
        for note in self.notes:
            lines.append(f"Note: {note}")
        if figure:
            lines += ["", f"![softmax(α) during the search]({figure})"]
        return "\n".join(lines) + "\n"

    def save(self, folder: Path) -> dict[str, Path]:
        """Write ``search.json``, ``search_alpha.png`` (if matplotlib is installed) and ``search.md``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {"json": self.to_json(folder / "search.json")}
        figure = self.plot(folder / "search_alpha.png")
        if figure is not None:
            paths["figure"] = figure
        markdown = folder / "search.md"
        markdown.write_text(
            "# Per-layer attention search\n\n" + self.to_markdown("search_alpha.png" if figure else None)
        )
        paths["markdown"] = markdown
        return paths


def _json_default(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def derive(
    probabilities: Sequence[Mapping[str, float]],
    costs: Sequence[Mapping[str, float]],
    budget: float | None,
) -> tuple[list[str], list[str]]:
    """The discrete network: argmax of softmax(α) per slot, then, while the total cost exceeds
    ``budget``, the single switch to a cheaper candidate that gives up the least log-probability per
    unit of cost saved (a greedy knapsack step). Returns the choices and notes on what was changed."""
    choices = [max(p, key=lambda name: p[name]) for p in probabilities]
    notes: list[str] = []
    if budget is None:
        return choices, notes

    def total() -> float:
        return sum(c[choice] for c, choice in zip(costs, choices))

    while total() > budget:
        best: tuple[float, int, str] | None = None
        for s, (p, c) in enumerate(zip(probabilities, costs)):
            current = choices[s]
            for name in p:
                saved = c[current] - c[name]
                if saved <= 0:
                    continue
                lost = math.log(max(p[current], 1e-12)) - math.log(max(p[name], 1e-12))
                score = lost / saved
                if best is None or score < best[0]:
                    best = (score, s, name)
        if best is None:
            notes.append(
                f"even the cheapest candidate at every slot costs {total():g}, above the budget {budget:g}"
            )
            break
        _, s, name = best
        notes.append(f"slot {s}: {choices[s]} -> {name} to meet the budget")
        choices[s] = name
    return choices, notes


def attention(
    model_fn: ModelFn,
    train_loader: Iterable,
    val_loader: Iterable,
    candidates: Sequence[str] = DEFAULT_CANDIDATES,
    budget: Union[float, str, None] = None,
    *,
    cost: str = "latency",
    cost_weight: float = 0.1,
    candidate_options: Mapping[str, Mapping[str, Any]] | None = None,
    task: str = "classification",
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
    metric: Any = None,
    epochs: float = 1.0,
    warmup: float = 0.2,
    weight_lr: float = 2e-3,
    weight_decay: float = 5e-4,
    arch_lr: float = 3e-2,
    arch_weight_decay: float = 1e-3,
    retrain_epochs: float = 0.0,
    test_loader: Iterable | None = None,
    device: str = "cpu",
    seed: int = 0,
    cost_repeats: int = 10,
    record_every: int | None = None,
    progress: bool = True,
    out: Path | None = None,
) -> SearchResult:
    r"""Search which attention module (or none) to put at every insertion point of a network.

    A DARTS/SEM-style search (Att-DARTS, Nakai et al. 2020, for attention choices per edge; cost term in
    the spirit of MnasNet, Tan et al. 2019):

    1. ``model_fn(attention=factory)`` builds the network with a :class:`MixedAttention` at every slot,
       :math:`y = \sum_i \mathrm{softmax}(\alpha_s)_i\,\mathrm{op}_i(x)`.
    2. The cost :math:`c_{s,i}` of every candidate at every slot is measured at the slot's actual input
       shape (one forward pass of the first training batch records the shapes): ``cost="latency"``
       (forward ms, :func:`excite.profiling.measure`), ``"flops"`` (FLOPs + elementwise work, the same
       profiler) or ``"params"``. ``"none"`` costs 0.
    3. First-order bilevel training: a weight step on a training batch, then an α step on a validation
       batch minimising

       .. math:: L_{val} + \lambda\,\frac{\sum_s \sum_i \mathrm{softmax}(\alpha_s)_i c_{s,i}}{R}
                 + \frac{\max(0,\ E[c] - B)}{B}

       with ``λ = cost_weight``, ``R = B`` when a budget ``B`` is given and the cost of the most
       expensive candidate at every slot otherwise; the hinge term exists only with a budget.
    4. The derived network takes the argmax per slot; if it exceeds the budget, :func:`derive` swaps
       slots to cheaper candidates greedily. With ``retrain_epochs > 0`` it is rebuilt with fresh
       weights, trained on the training loader, and evaluated on the validation (and test) loaders.

    Args:
        model_fn: ``model_fn(attention=callable) -> nn.Module``. Builders in :mod:`excite.models`
            qualify directly (``functools.partial(excite.models.resnet18, stem="small", ...)``); for
            timm or torchvision models use :func:`excite.search.via_attach`.
        train_loader, val_loader: loaders of ``(input, target)``; α never sees the training batches.
        candidates: registered names and ``"none"``; every one must keep the input shape.
        budget: the most added cost the derived network may have, in the units of ``cost``; or a
            candidate's name, meaning the cost of that candidate at every slot as measured in this
            search (``budget="se"``: "no more than uniform SE"), the equal-cost comparison.
        cost: ``"latency"``, ``"flops"`` or ``"params"``.
        cost_weight: λ; 0 searches for accuracy alone.
        candidate_options: per-candidate options, e.g. ``{"se": {"reduction": 4}}``.
        task: ``"classification"`` (cross-entropy, accuracy) or ``"segmentation"`` (cross-entropy over
            pixels, mean foreground Dice); ``loss_fn`` and ``metric`` (an object with ``reset``,
            ``update(logits, target)`` and ``compute()``) override them.
        epochs: search length in passes over ``train_loader`` (fractions allowed).
        warmup: fraction of the search steps with weight updates only.
        weight_lr, weight_decay: AdamW for the weights (cosine schedule).
        arch_lr, arch_weight_decay: Adam (betas 0.5, 0.999) for α, as DARTS; a larger rate than DARTS's
            3e-4 because a CPU search runs hundreds of steps, not tens of thousands.
        retrain_epochs: retraining of the derived network; 0 skips it.
        test_loader: also evaluated after retraining.
        seed: seeds the construction of both networks.
        cost_repeats: timing repeats per candidate and slot (latency cost).
        record_every: steps between α snapshots (default: about 100 snapshots).
        out: a folder for the report (``search.md``, ``search.json``, ``search_alpha.png``).

    Raises:
        ValueError: unknown cost or task, a non-positive budget, a builder that creates no slot, or a
            candidate that cannot be used at some slot.
    """
    check_cost(cost)
    if isinstance(budget, str) and budget not in candidates:
        raise ValueError(
            f"search: a budget given by name must be one of the candidates {list(candidates)}, got {budget!r}"
        )
    if isinstance(budget, (int, float)) and budget <= 0:
        raise ValueError(
            f"search: budget must be positive (added {cost} of the derived network), got {budget}"
        )
    if cost_weight < 0:
        raise ValueError(f"search: cost_weight must be >= 0, got {cost_weight}")
    started = time.perf_counter()
    candidates = list(candidates)
    options = {k: dict(v) for k, v in (candidate_options or {}).items()}
    metric = metric if metric is not None else default_metric(task)
    loss_fn = loss_fn if loss_fn is not None else cross_entropy
    torch_device = torch.device(device)

    torch.manual_seed(seed)
    supernet = model_fn(attention=mixture_factory(candidates, options)).to(torch_device)
    slots = find_slots(supernet)
    if not slots:
        raise ValueError(
            "search: model_fn built no MixedAttention; it must pass its `attention` argument to "
            "every insertion point"
        )
    example, _ = to_device(next(iter(train_loader)), torch_device)
    shapes = slot_input_shapes(supernet, slots, example)
    slot_costs = [
        candidate_costs(candidates, module.ops, shape, cost, device=device, repeats=cost_repeats)
        for (_, module), shape in zip(slots, shapes)
    ]
    if isinstance(budget, str):
        budget = uniform_costs(slot_costs, candidates)[budget]
    if budget is not None and budget <= 0:
        # A named budget of zero cost (uniform "none" or a parameter-free module under cost="params"):
        # only free candidates fit. A tiny positive budget keeps the penalty finite (Adam rescales it).
        budget = 1e-9
    reference = budget if budget is not None else sum(max(c.values()) for c in slot_costs)
    reference = reference if reference > 0 else 1.0
    cost_matrix = torch.tensor([[c[name] for name in candidates] for c in slot_costs], device=torch_device)
    mixtures: list[MixedAttention] = [module for _, module in slots]

    def expected_cost() -> Tensor:
        probabilities = torch.stack([m.probabilities() for m in mixtures])
        return (probabilities * cost_matrix).sum()

    def penalty() -> Tensor:
        expected = expected_cost()
        term = cost_weight * expected / reference
        if budget is not None:
            term = term + torch.relu(expected - budget) / budget
        return term

    steps: list[int] = []
    history: list[list[list[float]]] = []

    def record(step: int) -> None:
        steps.append(step)
        history.append([m.probabilities().detach().cpu().tolist() for m in mixtures])

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
        penalty=penalty,
        record=record,
        record_every=record_every or max(1, total_steps // 100),
        device=torch_device,
        show_progress=progress,
        description="attention search",
    )
    supernet_metric = evaluate(supernet, val_loader, metric, torch_device)

    final = [dict(zip(candidates, m.probabilities().detach().cpu().tolist())) for m in mixtures]
    choices, notes = derive(final, slot_costs, budget)
    result_slots = [
        Slot(
            name=name,
            index=i,
            channels=module.channels,
            dim=module.dim,
            input_shape=shape,
            costs=costs,
            probabilities=probabilities,
            choice=choice,
        )
        for i, ((name, module), shape, costs, probabilities, choice) in enumerate(
            zip(slots, shapes, slot_costs, final, choices)
        )
    ]
    result = SearchResult(
        candidates=candidates,
        slots=result_slots,
        cost=cost,
        budget=budget,
        cost_weight=cost_weight,
        metric_name=getattr(metric, "name", "metric"),
        steps=steps,
        probability_history=history,
        losses=losses,
        supernet_metric=supernet_metric,
        derived_cost=float(sum(c[choice] for c, choice in zip(slot_costs, choices))),
        uniform_costs=uniform_costs(slot_costs, candidates),
        notes=notes,
        candidate_options=options,
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
        description="retrain derived network",
        started=started,
        out=out,
    )


def via_attach(build: Callable[[], nn.Module], **attach_options: Any) -> ModelFn:
    """A ``model_fn`` for networks without an ``attention`` argument (timm, torchvision, MONAI):
    ``build()`` makes the plain network and :func:`excite.attach` puts the slot at every block it
    recognises.

        >>> import torchvision
        >>> model_fn = via_attach(lambda: torchvision.models.resnet18(num_classes=10))
        >>> result = excite.search.attention(model_fn, train_loader, val_loader)
    """

    def model_fn(attention: Callable[..., nn.Module]) -> nn.Module:
        from ..surgery import attach

        model = build()
        attach(model, attention, **attach_options)
        return model

    return model_fn
