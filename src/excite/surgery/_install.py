"""The mechanics shared by ``attach`` and ``replace``: building a module for a site, the dry run that
measures feature maps, and putting a module into the model without renaming any existing key."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import torch
from torch import nn

from .._registry import create, lookup
from .sites import conv_dim, join

AttentionSpec = Union[str, type, Callable[..., nn.Module]]

DEFAULT_SPATIAL = {1: 1024, 2: 224, 3: 64}


class ApplyAttention:
    """Forward hook: pass the module's output through its child ``name``.

    The child is looked up at call time, so ``replace`` (or the user) can swap it later. A plain class
    rather than a closure, so that ``copy.deepcopy`` and ``torch.save`` of the whole model keep working.
    """

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        return module._modules[self.name](output)

    def __repr__(self) -> str:
        return f"ApplyAttention({self.name!r})"


def attention_name(attention: AttentionSpec) -> str | None:
    if isinstance(attention, str):
        return attention
    return getattr(attention, "registry_name", None)


def check_attention(attention: AttentionSpec, owner: str) -> None:
    if isinstance(attention, str):
        lookup(attention)
        return
    if isinstance(attention, nn.Module):
        raise ValueError(
            f"{owner}: attention must be a name, a class or a factory "
            f"(channels, dim=..., **options) -> module, "
            f"got a module instance ({type(attention).__name__}); one instance cannot serve sites of "
            f"different widths"
        )
    if not callable(attention):
        raise ValueError(
            f"{owner}: attention must be a name from excite.available(), a class or a callable, "
            f"got {type(attention).__name__}"
        )


def build_attention(
    attention: AttentionSpec,
    channels: int,
    dim: int,
    spatial_size: tuple[int, ...] | None,
    options: Mapping[str, Any],
    owner: str,
) -> nn.Module:
    """One module for a site: registry names (and registered classes) get the per-site options a network
    would choose (FcaNet's DCT grid = the feature-map size, RGSE's window; see
    :func:`excite.models._common.site_options`) unless ``options`` sets them."""
    name = attention_name(attention)
    chosen: dict[str, Any] = {}
    if name is not None:
        from ..models._common import site_options

        chosen = site_options(name, channels, spatial_size, options, owner)
    merged = {**chosen, **options}
    if isinstance(attention, str):
        module = create(attention, channels, dim=dim, **merged)
    else:
        module = attention(channels, dim=dim, **merged)
    if not isinstance(module, nn.Module):
        raise ValueError(
            f"{owner}: the attention factory must return an nn.Module, got {type(module).__name__}"
        )
    if getattr(module, "aggregation", None) == "concat":
        raise ValueError(
            f"{owner}: scSE with aggregation='concat' doubles the channels, so it cannot be inserted into an "
            f"existing network; use 'max' or 'add'"
        )
    return module


def needs_feature_size(attention: AttentionSpec) -> bool:
    """Whether building needs the feature-map size (FcaNet's DCT grid, RGSE's pooling window)."""
    return attention_name(attention) in ("fca", "rgse")


def default_input_size(model: nn.Module) -> tuple[int, ...]:
    """A dry-run input: batch 1, the first convolution's input channels, 224 per axis in 2-D (64 in 3-D,
    1024 in 1-D)."""
    for m in model.modules():
        dim = conv_dim(m) if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) else None
        if dim is not None:
            return (1, m.in_channels) + (DEFAULT_SPATIAL[dim],) * dim
    raise ValueError(
        f"no convolution found in {type(model).__name__} to guess an input size from; "
        f"pass input_size=(N, C, ...)"
    )


def dry_run(
    model: nn.Module, probes: Sequence[str], input_size: Sequence[int] | None, owner: str
) -> dict[str, torch.Size]:
    """Output shapes of the modules at ``probes`` for one input of ``input_size`` (eval mode, no grad;
    every module's train/eval flag and the BatchNorm statistics are left as they were)."""
    if input_size is not None:
        size = tuple(int(s) for s in input_size)
    elif isinstance(getattr(model, "input_size", None), tuple) and hasattr(model, "attention_modules"):
        # excite networks record the size they were built for; their own sites were sized at it.
        first = default_input_size(model)
        size = first[:2] + tuple(model.input_size)
    else:
        size = default_input_size(model)
    modules = dict(model.named_modules())
    shapes: dict[str, torch.Size] = {}
    handles = []
    for path in dict.fromkeys(probes):
        if path not in modules:
            raise ValueError(f"{owner}: no module named {path!r} to measure")

        def record(module: nn.Module, inputs: Any, output: Any, path: str = path) -> None:
            if isinstance(output, torch.Tensor):
                shapes.setdefault(path, output.shape)

        handles.append(modules[path].register_forward_hook(record))
    flags = {m: m.training for m in model.modules()}
    reference = first_tensor(model)
    device = reference.device if reference is not None else torch.device("cpu")
    dtype = reference.dtype if reference is not None and reference.is_floating_point() else torch.float32
    try:
        model.eval()
        shape_only_forward(model, size, device, dtype)
    except Exception as error:
        raise ValueError(
            f"{owner}: the dry run that measures channels and feature-map sizes failed on an input of shape "
            f"{list(size)} ({type(error).__name__}: {error}); "
            f"pass input_size=(N, C, ...) that the model accepts"
        ) from error
    finally:
        for handle in handles:
            handle.remove()
        for m, flag in flags.items():
            m.training = flag
    return shapes


def shape_only_forward(
    model: nn.Module, size: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> None:
    """Run ``model`` for the shapes only: under a fake-tensor mode no arithmetic happens (a ResNet-50 at
    224 takes well under a second instead of seconds on a loaded CPU); models with data-dependent
    control flow that fake tensors cannot follow get a real forward instead."""
    with torch.no_grad():
        try:
            from torch._subclasses.fake_tensor import FakeTensorMode

            with FakeTensorMode(allow_non_fake_inputs=True):
                model(torch.zeros(size, device=device, dtype=dtype))
            return
        except Exception:
            pass
        model(torch.zeros(size, device=device, dtype=dtype))


def first_tensor(model: nn.Module) -> torch.Tensor | None:
    for p in model.parameters():
        return p
    for b in model.buffers():
        return b
    return None


def match_model(module: nn.Module, model: nn.Module) -> nn.Module:
    """Move ``module`` to the model's device and floating dtype, in the model's train/eval mode."""
    reference = first_tensor(model)
    if reference is not None:
        if reference.is_floating_point():
            module.to(device=reference.device, dtype=reference.dtype)
        else:
            module.to(device=reference.device)
    module.train(model.training)
    return module


def free_name(parent: nn.Module, base: str) -> str:
    name, index = base, 1
    while name in parent._modules or hasattr(parent, name):
        name = f"{base}_{index}"
        index += 1
    return name


def split_path(path: str) -> tuple[str, str]:
    if "." in path:
        parent, leaf = path.rsplit(".", 1)
        return parent, leaf
    return "", path


def install(model: nn.Module, target: str, mechanism: str, module: nn.Module) -> tuple[str, str]:
    """Put ``module`` into ``model`` at a site; returns ``(path of the new module, mechanism used)``.

    ``"slot"`` sets the attribute ``target``; ``"insert"`` adds it to the Sequential holding ``target``,
    right after it, under a new name; ``"after"`` adds the module as a child of the target,
    appended when the target is a plain ``Sequential`` (it then runs last) and applied by a forward hook
    otherwise. No existing parameter or buffer changes its name.
    """
    if mechanism == "slot":
        parent_path, leaf = split_path(target)
        setattr(model.get_submodule(parent_path), leaf, module)
        return target, "slot"
    if mechanism == "insert":
        # A named child placed right after ``leaf`` inside its Sequential: later children keep their
        # names (so their keys), only their position moves.
        parent_path, leaf = split_path(target)
        parent = model.get_submodule(parent_path)
        name = free_name(parent, "attention")
        children = list(parent._modules.items())
        parent._modules.clear()
        for child_name, child in children:
            parent._modules[child_name] = child
            if child_name == leaf:
                parent._modules[name] = module
        return join(parent_path, name), "insert"
    host = model.get_submodule(target)
    name = free_name(host, "attention")
    host.add_module(name, module)
    if isinstance(host, nn.Sequential) and type(host).forward is nn.Sequential.forward:
        return join(target, name), "append"
    host.register_forward_hook(ApplyAttention(name))
    return join(target, name), "hook"


def state_keys(model: nn.Module) -> list[str]:
    return list(model.state_dict().keys())


def describe(module: nn.Module) -> str:
    inner = getattr(module, "module", None)
    if type(module).__name__ == "ResidualScale" and isinstance(inner, nn.Module):
        return f"ResidualScale({type(inner).__name__})"
    return type(module).__name__
