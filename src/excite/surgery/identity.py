"""Identity initialisation of inserted attention: a pretrained network computes exactly what it computed
before the surgery, until fine-tuning moves the new weights.

Which module gets which strategy, and why:

=====================================  ================================================================
module                                 ``init="identity"``
=====================================  ================================================================
scSE with ``aggregation="add"``        **gate-sum**: cSE's last FC and sSE's conv start at zero weight
                                       and bias, so both gates are σ(0) = 1/2 and ``x·s + x·q = x``
                                       exactly; the sigmoids sit at their steepest point (σ' = 1/4).
every other module (SE, cSE, sSE,      **residual-scale**: wrapped as :class:`ResidualScale`,
scSE max/mul, ECA, FcaNet, CA,         ``y = x + α·(f(x) − x)`` with a scalar α = 0, so ``y = x``
SimAM, SPSE, RGSE, CBAM, any           exactly. One extra parameter per site.
callable)
=====================================  ================================================================

Why not "gate starts at 1" for the others: a sigmoid gate reaches 1 only in the limit (a pre-activation
of 10 still scales by 0.99995 and has a gradient of 4.5e-5, so the module is both inexact and nearly
frozen), and a hard-sigmoid gate is 1 only on its flat part, where its gradient is exactly zero and the
module would never train. SimAM has no parameters at all. scSE with ``"add"`` is the one family whose
effective gate ``s + q`` is exactly 1 at a point where it still learns.

A ResidualScale module's own weights get no gradient while α = 0 (the output does not depend on them);
α does (``∂L/∂α = ⟨∂L/∂y, f(x) − x⟩``), so the first step moves α and the module trains from then on,
like ReZero/LayerScale with zero init.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class ResidualScale(nn.Module):
    r"""``y = x + α·(f(x) − x)``: a module blended with the identity by a learned scalar.

    With ``alpha=0`` (the default) the output equals the input exactly; ``alpha=1`` is the plain module.
    Computed as ``torch.lerp(x, f(x), α)``, one fused pass over the map.

    Args:
        module: the attention module ``f``; it must keep the input's shape.
        alpha: the initial α.

    The wrapped module is ``self.module``, so its state-dict keys gain a ``module.`` segment
    (``...attention.module.fc1.weight``) next to ``...attention.alpha``.
    """

    def __init__(self, module: nn.Module, alpha: float = 0.0) -> None:
        super().__init__()
        self.module = module
        self.alpha = nn.Parameter(torch.tensor(float(alpha)))

    def forward(self, x: Tensor) -> Tensor:
        return torch.lerp(x, self.module(x), self.alpha.to(x.dtype))

    def extra_repr(self) -> str:
        return f"alpha={float(self.alpha.detach()):.4g}"


def identity_init(module: nn.Module) -> tuple[nn.Module, str]:
    """Make ``module`` start as the identity; returns the module to insert and the strategy's name
    (``"gate-sum"`` or ``"residual-scale"``, see the module docstring)."""
    from ..layers import SCSE

    if isinstance(module, SCSE) and module.aggregation == "add":
        with torch.no_grad():
            for layer in (module.cse.fc2, module.sse.conv):
                layer.weight.zero_()
                if layer.bias is not None:
                    layer.bias.zero_()
        return module, "gate-sum"
    return ResidualScale(module), "residual-scale"
