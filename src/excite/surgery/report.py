"""What a surgery did: one :class:`SurgeryPoint` per inserted or swapped module, gathered in a
:class:`SurgeryReport` that prints as a table and loads the pre-surgery checkpoint leniently."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor, nn


@dataclass
class SurgeryPoint:
    """One module that :func:`excite.attach` inserted or :func:`excite.replace` swapped in.

    Attributes:
        path: where the new module lives in the model (``model.get_submodule(path)``).
        after: the module whose output the new module recalibrates (for a filled slot, the slot itself;
            for a replacement, the replaced module's path, which equals ``path``).
        block: the recognised block (``""`` for ``where=`` insertions and replacements).
        block_type: what the block was recognised as, e.g. ``"torchvision Bottleneck"``.
        mechanism: ``"slot"`` (an empty ``se``/``attention`` attribute was filled), ``"append"`` (added
            as the last child of a ``Sequential``), ``"insert"`` (a named child of a ``Sequential``,
            right after ``after``), ``"hook"`` (a child of ``after`` applied by a forward hook) or
            ``"swap"`` (``replace``).
        module_type: class name of the new module (``"ResidualScale(SE)"`` for identity-wrapped ones).
        channels: C at the point; ``spatial_size`` when a dry run measured it.
        identity: ``"residual-scale"``, ``"gate-sum"`` or ``""`` (``init="default"``).
        new_parameters: parameter names the model did not have before.
        new_keys: every new state-dict key (parameters and persistent buffers).
        removed_keys: state-dict keys that disappeared (``replace`` only).
        replaced_type: class name of the module that was swapped out (``replace`` only).
    """

    path: str
    after: str
    block: str
    block_type: str
    mechanism: str
    module_type: str
    channels: int
    spatial_size: tuple[int, ...] | None = None
    identity: str = ""
    new_parameters: list[str] = field(default_factory=list)
    new_keys: list[str] = field(default_factory=list)
    removed_keys: list[str] = field(default_factory=list)
    replaced_type: str = ""
    parameter_count: int = 0


class SurgeryReport:
    """The insertion points of one :func:`excite.attach` or :func:`excite.replace` call.

    ``len(report)`` is the number of points, iteration yields :class:`SurgeryPoint`. ``print(report)``
    shows a table; ``report.new_keys`` lists the state-dict keys a pre-surgery checkpoint lacks, and
    :meth:`load_pretrained` loads such a checkpoint with exactly those keys missing.

    Attributes:
        operation: ``"attach"`` or ``"replace"``.
        points: the :class:`SurgeryPoint` list, in model order.
        skipped: ``(block, reason)`` for recognised blocks that got nothing (e.g. MobileNetV2's
            expand-ratio-1 block for channel attention).
    """

    def __init__(
        self,
        operation: str,
        model: nn.Module,
        points: Sequence[SurgeryPoint],
        skipped: Sequence[tuple[str, str]] = (),
        description: str = "",
    ) -> None:
        self.operation = operation
        self.model = model
        self.points: list[SurgeryPoint] = list(points)
        self.skipped: list[tuple[str, str]] = list(skipped)
        self.description = description

    def __len__(self) -> int:
        return len(self.points)

    def __iter__(self) -> Iterator[SurgeryPoint]:
        return iter(self.points)

    def __getitem__(self, index: int) -> SurgeryPoint:
        return self.points[index]

    @property
    def new_keys(self) -> list[str]:
        """State-dict keys added by the surgery (parameters and persistent buffers)."""
        return [key for point in self.points for key in point.new_keys]

    @property
    def new_parameters(self) -> list[str]:
        """Parameter names added by the surgery (what an optimizer group for "new weights" needs)."""
        return [name for point in self.points for name in point.new_parameters]

    @property
    def removed_keys(self) -> list[str]:
        """State-dict keys the surgery removed (the replaced modules' weights)."""
        return [key for point in self.points for key in point.removed_keys]

    @property
    def parameter_count(self) -> int:
        """Parameters added, net of the ones removed by ``replace``."""
        return sum(point.parameter_count for point in self.points)

    def load_pretrained(self, state_dict: Mapping[str, Tensor], model: nn.Module | None = None) -> None:
        """Load a checkpoint of the model *before* surgery into the model after it.

        Exactly the keys in :attr:`new_keys` may be missing and exactly those in :attr:`removed_keys`
        may be unexpected; the new modules keep their initialisation (with ``init="identity"`` the
        model then computes what the checkpoint computed). Any other missing or unexpected key raises,
        and nothing is loaded. A checkpoint saved *after* the same surgery loads too (nothing missing).

        Args:
            state_dict: the pre-surgery state dict, e.g.
                ``torchvision.models.resnet50(weights=...).state_dict()``.
            model: the model to load into; defaults to the one this report was made for.

        Raises:
            ValueError: keys other than the surgery's are missing or unexpected; the message lists them.
        """
        target = self.model if model is None else model
        expected_missing = set(self.new_keys)
        allowed_unexpected = set(self.removed_keys)
        ours_state = target.state_dict()
        ours = set(ours_state.keys())
        given = set(state_dict.keys())
        missing = sorted(ours - given - expected_missing)
        unexpected = sorted(given - ours - allowed_unexpected)
        if missing or unexpected:
            raise ValueError(
                f"load_pretrained: the checkpoint does not match the model outside the surgery's keys; "
                f"missing {len(missing)} (first: {missing[:5]}), unexpected {len(unexpected)} "
                f"(first: {unexpected[:5]}). Was it saved from the same architecture?"
            )
        # A removed key can share its name with a new one (timm's ``se.fc1.weight`` conv and a new
        # module's ``se.fc1.weight`` Linear): it is loaded only where the shapes agree.
        kept = {}
        for key, value in state_dict.items():
            if key in allowed_unexpected and (key not in ours_state or ours_state[key].shape != value.shape):
                continue
            kept[key] = value
        target.load_state_dict(kept, strict=False)

    def rows(self) -> list[dict[str, Any]]:
        """One dict per point, for tables and JSON."""
        rows = []
        for point in self.points:
            rows.append(
                {
                    "path": point.path,
                    "after": point.after,
                    "block_type": point.block_type,
                    "mechanism": point.mechanism,
                    "module": point.module_type,
                    "channels": point.channels,
                    "spatial_size": list(point.spatial_size) if point.spatial_size else None,
                    "replaced": point.replaced_type,
                    "params": point.parameter_count,
                    "new_keys": len(point.new_keys),
                }
            )
        return rows

    def _columns(self) -> list[tuple[str, str]]:
        if self.operation == "replace":
            return [
                ("path", "path"),
                ("replaced", "replaced"),
                ("module", "new module"),
                ("channels", "C"),
                ("params", "Δ params"),
            ]
        return [
            ("path", "new module at"),
            ("block_type", "block"),
            ("mechanism", "how"),
            ("module", "module"),
            ("channels", "C"),
            ("params", "params"),
        ]

    def summary(self) -> str:
        verb = "inserted" if self.operation == "attach" else "replaced"
        text = (
            f"{self.operation}: {verb} {len(self.points)} module(s), {self.parameter_count:+,d} parameters, "
        )
        text += f"{len(self.new_keys)} new state-dict key(s)"
        if self.removed_keys:
            text += f", {len(self.removed_keys)} removed"
        if self.description:
            text += f"; {self.description}"
        return text

    def __str__(self) -> str:
        columns = self._columns()
        table = [[title for _, title in columns]]
        for row in self.rows():
            table.append([_cell(row[key]) for key, _ in columns])
        widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
        lines = [self.summary()]
        for index, line in enumerate(table):
            lines.append("  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * width for width in widths))
        for block, reason in self.skipped:
            lines.append(f"skipped {block}: {reason}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"SurgeryReport({self.summary()!r})"

    def __rich__(self) -> Any:
        from rich.table import Table

        table = Table(title=self.summary(), title_justify="left")
        columns = self._columns()
        for key, title in columns:
            table.add_column(title, justify="right" if key in ("channels", "params") else "left")
        for row in self.rows():
            table.add_row(*[_cell(row[key]) for key, _ in columns])
        if self.skipped:
            table.caption = "; ".join(f"skipped {block}: {reason}" for block, reason in self.skipped)
        return table


def _cell(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,d}"
    return "" if value is None else str(value)
