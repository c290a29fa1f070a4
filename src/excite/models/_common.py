"""What every reference network shares: building its attention modules, choosing where they go, the
dimension-generic layer classes, feature-size arithmetic and the release initialisations.

Attention is given to a network as ``attention=None | name | callable`` with ``attention_options``:

* a name goes through :func:`excite.create` as ``create(name, C, dim=dim, **options)``. The network adds
  the per-site settings that only it knows, unless ``attention_options`` sets them: FcaNet's DCT grid
  (``dct_size`` = the feature-map size at that site, and fewer frequencies where C is not divisible by
  16) and RGSE's pooling window and fusion kernel (see :func:`site_options`);
* a callable is called as ``attention(C, dim=dim, **options)`` and must return an ``nn.Module``.

``stage_options`` (one dict per stage) are merged over ``attention_options`` in the sites of that stage;
the official presets use it for ECA-ResNet's hand-set kernel sizes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

from torch import nn

from .._registry import create as create_attention
from .._registry import lookup

AttentionSpec = Union[None, str, Callable[..., nn.Module]]
SizeSpec = Union[None, int, Sequence[int]]

_BATCHNORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}
_INSTANCENORM = {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}
_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_CONV_TRANSPOSE = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}
CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)


def check_network_dim(dim: int, owner: str) -> None:
    if dim not in (1, 2, 3):
        raise ValueError(f"{owner}: dim must be 1, 2 or 3, got {dim}")


def conv(dim: int) -> type:
    return _CONV[dim]


def conv_transpose(dim: int) -> type:
    return _CONV_TRANSPOSE[dim]


def batch_norm(dim: int) -> type:
    return _BATCHNORM[dim]


def instance_norm(dim: int) -> type:
    return _INSTANCENORM[dim]


def max_pool(dim: int) -> type:
    return _MAXPOOL[dim]


def avg_pool(dim: int) -> type:
    return _AVGPOOL[dim]


def spatial_mean(x):
    """Global average pooling to ``(N, C)`` for any number of spatial axes."""
    return x.mean(dim=list(range(2, x.dim())))


# ----------------------------------------------------------------------------------------------------------
# Feature-map sizes


def as_size(size: SizeSpec, dim: int, owner: str) -> tuple[int, ...] | None:
    """``None``, an int (the same on every axis) or one entry per axis, as a tuple of ``dim`` ints."""
    if size is None:
        return None
    if isinstance(size, int):
        size = (size,) * dim
    size = tuple(int(s) for s in size)
    if len(size) != dim or min(size) < 1:
        raise ValueError(f"{owner}: input_size needs {dim} positive entries for dim={dim}, got {size}")
    return size


def default_input_size(size: SizeSpec, dim: int, small_stem: bool) -> SizeSpec:
    """``size``, or where it is None the size a 1-D/2-D network is usually fed: 224, or 28 (the study's
    Fashion-MNIST) for a small stem. 3-D has no such default (a 224³ FcaNet filter bank would take
    gigabytes), so it stays None there: FcaNet then uses its 7-grid default and RGSE asks for the size."""
    if size is not None or dim == 3:
        return size
    return 28 if small_stem else 224


def conv_output_size(
    size: tuple[int, ...] | None, kernel: int, stride: int, padding: int, ceil_mode: bool = False
) -> tuple[int, ...] | None:
    """The output size of a convolution or pooling layer, per axis (PyTorch's formula)."""
    if size is None:
        return None
    out = []
    for s in size:
        span = s + 2 * padding - kernel
        cells = -(-span // stride) if ceil_mode else span // stride
        length = cells + 1
        # PyTorch drops a last ceil-mode window that would start inside the right padding only.
        if ceil_mode and (length - 1) * stride >= s + padding:
            length -= 1
        out.append(max(length, 1))
    return tuple(out)


# ----------------------------------------------------------------------------------------------------------
# Attention construction


def attention_name(attention: AttentionSpec) -> str | None:
    """The registry name behind a name or a registered class (``excite.SE`` gives ``"se"``)."""
    if attention is None:
        return None
    if isinstance(attention, str):
        return attention
    return getattr(attention, "registry_name", None)


def output_channels(module: nn.Module, channels: int) -> int:
    """How many channels ``module`` returns for a ``channels``-channel input.

    Every excite module keeps the count except scSE with ``aggregation="concat"``, which returns 2C. A
    custom module that changes the count says so with an integer ``out_channels`` attribute.
    """
    declared = getattr(module, "out_channels", None)
    if isinstance(declared, int):
        return declared
    if getattr(module, "aggregation", None) == "concat":
        return 2 * channels
    return channels


def fca_frequency_count(channels: int) -> int:
    """The largest of FcaNet's 16, 8, 4, 2, 1 frequencies that divides ``channels`` (16 in every release)."""
    for count in (16, 8, 4, 2, 1):
        if channels % count == 0:
            return count
    return 1


def rgse_settings(spatial_size: tuple[int, ...], owner: str) -> dict[str, Any]:
    """RGSE's ``pool_size`` and ``fusion_kernel`` for a site whose feature map is ``spatial_size``.

    The official ResNets pool with a fixed 7-wide window and fuse the ``S/7`` cells per axis with a
    ``S/7``-wide strided depthwise conv (8, 4, 2 at 224 input; none in the last stage, where one cell is
    left). This rule reproduces that: ``pool_size = min(7, min(S))`` and ``fusion_kernel = S // pool_size``
    (None when that is 1). Maps smaller than 7 (the 4x4 last stage of a small-stem ResNet at 28x28) are
    pooled whole, so their descriptor is the global average.

    Raises:
        ValueError: a map whose axes give different cell counts (e.g. 56x35 gives 8x5 cells): RGSE's
            fusion kernel is square.
    """
    pool = min(7, min(spatial_size))
    cells = sorted({s // pool for s in spatial_size})
    if len(cells) != 1:
        raise ValueError(
            f"{owner}: RGSE fuses its pooled cells with one square kernel, but a {list(spatial_size)} map "
            f"pooled with a {pool}-wide window gives {cells} cells per axis; use an input_size whose axes "
            f"agree after dividing by 7 (e.g. crop or pad to a square), or pass pool_size and fusion_kernel "
            f"in attention_options"
        )
    return {"pool_size": pool, "fusion_kernel": cells[0] if cells[0] > 1 else None}


def site_options(
    name: str, channels: int, spatial_size: tuple[int, ...] | None, given: Mapping[str, Any], owner: str
) -> dict[str, Any]:
    """Options a network chooses for one attention site, where the user has not set them.

    * ``fca``: ``dct_size`` = the site's feature-map size (FcaNet's ``c2wh`` = 56, 28, 14, 7 at 224 input;
      28, 14, 7, 4 for a small-stem ResNet at 28x28), and ``frequencies = "top{K}"`` with the largest K in
      16, 8, 4, 2, 1 dividing C when 16 does not (e.g. MobileNetV2's 24-channel blocks get ``top8``).
    * ``rgse``: :func:`rgse_settings`; the feature size must be known (``input_size``).
    """
    chosen: dict[str, Any] = {}
    if name == "fca":
        if "dct_size" not in given and spatial_size is not None:
            chosen["dct_size"] = tuple(spatial_size)
        if "frequencies" not in given and channels % 16 != 0:
            chosen["frequencies"] = f"top{fca_frequency_count(channels)}"
    elif name == "rgse" and "pool_size" not in given and "fusion_kernel" not in given:
        if spatial_size is None:
            raise ValueError(
                f"{owner}: 'rgse' pools with a fixed window whose fusion kernel depends on the feature-map "
                f"size; pass input_size=... (or pool_size and fusion_kernel in attention_options)"
            )
        chosen.update(rgse_settings(spatial_size, owner))
    return chosen


class AttentionBuilder:
    """Builds the attention modules of one network from ``attention`` and its options.

    Args:
        attention: None, a registered name, or a callable ``(C, dim=..., **options) -> nn.Module``.
        options: ``attention_options``, passed to every module.
        dim: spatial dimensions of the network.
        owner: the network's name, for error messages.
        stage_options: optional per-stage dicts merged over ``options``.
        stages: how many stages the network has (to check ``stage_options``).

    Raises:
        ValueError: an unknown name, a non-callable, ``stage_options`` of the wrong length, or a
            callable that does not return an ``nn.Module``.
    """

    def __init__(
        self,
        attention: AttentionSpec,
        options: Mapping[str, Any] | None,
        *,
        dim: int,
        owner: str,
        stage_options: Sequence[Mapping[str, Any]] | None = None,
        stages: int | None = None,
    ) -> None:
        if isinstance(attention, str):
            lookup(attention)
        elif attention is not None and not callable(attention):
            raise ValueError(
                f"{owner}: attention must be None, a name from excite.available() or a callable returning an "
                f"nn.Module, got {type(attention).__name__}"
            )
        if options is not None and not isinstance(options, Mapping):
            raise ValueError(f"{owner}: attention_options must be a dict, got {type(options).__name__}")
        if stage_options is not None:
            stage_options = [dict(o or {}) for o in stage_options]
            if stages is not None and len(stage_options) != stages:
                raise ValueError(
                    f"{owner}: stage_options needs one dict per stage ({stages}), got {len(stage_options)}"
                )
        self.attention = attention
        self.name = attention_name(attention)
        self.options = dict(options or {})
        self.stage_options = stage_options
        self.dim = dim
        self.owner = owner

    @property
    def enabled(self) -> bool:
        return self.attention is not None

    def options_for(self, stage: int | None) -> dict[str, Any]:
        options = dict(self.options)
        if self.stage_options is not None and stage is not None:
            options.update(self.stage_options[stage])
        return options

    def build(
        self, channels: int, *, spatial_size: tuple[int, ...] | None = None, stage: int | None = None
    ) -> nn.Module:
        """One attention module for a ``channels``-channel site whose feature map is ``spatial_size``."""
        options = self.options_for(stage)
        if isinstance(self.attention, str):
            chosen = site_options(self.attention, channels, spatial_size, options, self.owner)
            return create_attention(self.attention, channels, dim=self.dim, **{**chosen, **options})
        module = self.attention(channels, dim=self.dim, **options)
        if not isinstance(module, nn.Module):
            raise ValueError(
                f"{self.owner}: the attention callable must return an nn.Module, got {type(module).__name__}"
            )
        return module


def resolve_placement(
    placement: str | None,
    name: str | None,
    defaults: Mapping[str, str],
    fallback: str,
    allowed: Sequence[str],
    owner: str,
) -> str:
    """The placement to use: the user's, else the paper's for this attention name, else ``fallback``."""
    if placement is None:
        return defaults.get(name or "", fallback)
    if placement not in allowed:
        raise ValueError(f"{owner}: placement must be one of {tuple(allowed)}, got {placement!r}")
    return placement


def require_same_channels(module: nn.Module, channels: int, owner: str, where: str) -> None:
    out = output_channels(module, channels)
    if out != channels:
        raise ValueError(
            f"{owner}: the attention at {where} turns {channels} channels into {out}, but {where} must keep "
            f"the channel count (a residual sum or a fixed-width layer follows); use an aggregation that "
            f"keeps C (e.g. scSE 'max' or 'add') or a network that widens, such as excite.models.unet"
        )


# ----------------------------------------------------------------------------------------------------------
# Small blocks and initialisation


class ConvNormAct(nn.Sequential):
    """``conv → [attention] → norm → [activation]`` with named children (``conv``, ``attention``, ``norm``,
    ``act``). The optional attention slot between the convolution and its norm is SimAM's placement."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        dim: int,
        stride: int = 1,
        groups: int = 1,
        activation: nn.Module | None = None,
        attention: nn.Module | None = None,
        norm_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        padding = (kernel_size - 1) // 2
        self.add_module(
            "conv",
            conv(dim)(in_channels, out_channels, kernel_size, stride, padding, groups=groups, bias=False),
        )
        if attention is not None:
            self.add_module("attention", attention)
        self.add_module("norm", batch_norm(dim)(out_channels, eps=norm_eps))
        if activation is not None:
            self.add_module("act", activation)


def kaiming_conv_init(module: nn.Module, skip: Sequence[nn.Module] = ()) -> None:
    """torchvision's ResNet/MobileNetV2 init: every convolution ``kaiming_normal_(fan_out, relu)`` with
    zero bias, every BatchNorm/GroupNorm weight 1 and bias 0. Modules in ``skip`` and their children are
    left alone."""
    skipped = {id(m) for s in skip for m in s.modules()}
    for m in module.modules():
        if id(m) in skipped:
            continue
        if isinstance(m, CONV_TYPES + tuple(_CONV_TRANSPOSE.values())):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, NORM_TYPES) and m.weight is not None:
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def check_input_rank(x, dim: int, owner: str) -> None:
    """A network built for ``dim`` spatial axes refuses other ranks, naming both."""
    if x.dim() != dim + 2:
        raise ValueError(
            f"{owner}: built for dim={dim}, expected a {dim + 2}-D input (N, C, ...), "
            f"got shape {list(x.shape)}"
        )


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters, the unit of every published count (buffers such as BN statistics and
    FcaNet's fixed DCT filters excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """The TF-slim channel rounding used by MobileNetV2/MobileNeXt: nearest multiple of ``divisor``, at
    least ``min_value`` (default ``divisor``), and never more than 10% below ``value``."""
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def list_of(value: Any, length: int, owner: str, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != length:
            raise ValueError(f"{owner}: {what} needs {length} entries, got {len(value)}")
        return list(value)
    return [value] * length


__all__ = ["AttentionBuilder", "ConvNormAct", "count_parameters", "output_channels"]
