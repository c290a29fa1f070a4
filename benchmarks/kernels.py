"""The fused SE-family kernels against the reference path, timm and torch.compile, in units of LB.

    python benchmarks/kernels.py                       # ResNet-50 stage shapes, every module, all methods
    python benchmarks/kernels.py --quick               # small shapes; no torch.compile (a smoke run)
    python benchmarks/kernels.py --modules se,simam --methods reference,fused --timer process
    python benchmarks/kernels.py --profile coord       # where the fused path's time goes, op by op

For each module and shape, measured side by side in one run (the methods and LB alternate, round after
round, and each figure is a median over the rounds):

* **LB**, the memory roofline unit: one read-only pass (``x.sum()``) plus one read-write pass
  (``torch.mul(x, 1.0, out=y)``) over the input at this machine's bandwidth;
* **forward** (no_grad) and **forward + backward** (``torch.autograd.grad`` w.r.t. the input and every
  parameter, in training mode) for ``reference`` (the plain-autograd path, ``excite.use_reference()``),
  ``timm`` (its module where one exists: SE, cSE, ECA, CBAM, Coordinate Attention), ``compile``
  (``torch.compile`` of the reference; compilation excluded) and ``fused`` (excite's default);
* each as a ratio to LB;
* **saved**: the memory saved for backward beyond the input and the module's own parameters, in units
  of the input's size (``torch.autograd.graph.saved_tensors_hooks``).

The issue's targets: forward <= 1.3 LB and forward + backward <= 4 LB for every module; SimAM, scSE,
Coordinate Attention and ECA at least 3x faster than the reference in training; saved <= 1.

Writes ``kernels.csv`` and ``kernels.png`` into ``--out`` (default ``./benchmark-results``) and prints
two tables (rich if installed): every method's figures, and one line per module and shape with the
methods side by side and the targets checked.
Ratios, not absolute times, are the figures that count: on a machine shared with other work the
absolute times drift, while methods measured in alternation drift together. ``--timer process`` uses
the process's CPU time instead of the wall clock. On a machine shared with other busy processes, run
with ``--threads 1``: with more threads than free cores every parallel op waits at its barrier for a
thread the scheduler has paused (milliseconds even for the gate's tiny ops), and the figures measure
the scheduler. ``--quick`` is a smoke run (about a minute): at its small shapes a call's fixed cost
(Python, the gate's small layers) outweighs the passes, so its LB ratios say little.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

import excite
from excite.fused import backend_name

STAGE_SHAPES = [(8, 256, 56, 56), (8, 512, 28, 28), (8, 1024, 14, 14), (8, 2048, 7, 7)]
QUICK_SHAPES = [(4, 128, 28, 28), (4, 512, 7, 7)]
MODULES = ("se", "cse", "eca", "fca", "spse", "rgse", "cbam", "sse", "scse", "coord", "simam")
METHODS = ("reference", "timm", "compile", "fused")
TARGET_FORWARD = 1.3
TARGET_TRAINING = 4.0


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory instead of returning it to the OS (``mallopt``), for this process.

    With glibc's defaults a freed 25 MB tensor goes back to the OS (mmap threshold, heap trimming), and
    the next output of that size pays a page fault per 4 KiB page on first touch: about 1.5 ms at
    ``[8, 256, 56, 56]`` on this machine, half an LB, paid by every method that returns a fresh tensor
    but not by LB's ``out=`` pass. Keeping freed memory (what jemalloc/tcmalloc, which PyTorch's CPU
    performance guides recommend, do anyway) compares the methods on their passes over memory. Returns
    whether it took effect (glibc only; ``--system-malloc`` skips it).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        trim_threshold, mmap_threshold = -1, -3  # M_TRIM_THRESHOLD, M_MMAP_THRESHOLD (malloc.h)
        return bool(libc.mallopt(trim_threshold, 2**30)) and bool(libc.mallopt(mmap_threshold, 32 * 2**20))
    except (OSError, AttributeError):
        return False


def build_excite(name: str, channels: int, size: int) -> nn.Module:
    """The module with its paper defaults, at a ResNet stage's channels and size."""
    if name == "fca":
        return excite.create("fca", channels, dct_size=min(size, 56))  # FcaNet-50's 56/28/14/7 grids
    if name == "rgse":
        cells = size // 7
        return excite.create("rgse", channels, fusion_kernel=cells if cells > 1 else None)
    return excite.create(name, channels)


def build_timm(name: str, channels: int) -> nn.Module | None:
    """timm's implementation of the same module, where timm has one (None otherwise or without timm)."""
    import importlib

    places = {
        "se": ("timm.layers.squeeze_excite", "SEModule", {"rd_ratio": 1 / 16}),
        "cse": ("timm.layers.squeeze_excite", "SEModule", {"rd_ratio": 1 / 2}),
        "eca": ("timm.layers.eca", "EcaModule", {}),
        "cbam": ("timm.layers.cbam", "CbamModule", {}),
        "coord": ("timm.layers.coord_attn", "CoordAttn", {}),
    }
    if name not in places:
        return None
    module_name, class_name, options = places[name]
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError):
        return None
    return cls(channels, **options)


class Timer:
    """Wall or process time of one call; on CUDA the device is synchronised before and after."""

    def __init__(self, kind: str, device: torch.device | None = None) -> None:
        self.clock = time.perf_counter if kind == "wall" else time.process_time
        self.cuda = device is not None and device.type == "cuda"

    def __call__(self, fn: Callable[[], object]) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = self.clock()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return self.clock() - start


def peak_bandwidth(device: torch.device) -> float | None:
    """The device's theoretical memory bandwidth in GB/s (CUDA: double data rate x bus width), or None."""
    if device.type != "cuda":
        return None
    props = torch.cuda.get_device_properties(device)
    clock_khz = getattr(props, "memory_clock_rate", 0)
    bus_bits = getattr(props, "memory_bus_width", 0)
    if not clock_khz or not bus_bits:
        return None
    return 2 * clock_khz * 1e3 * bus_bits / 8 / 1e9


def fused_kernel_names() -> tuple[str, ...]:
    """Names under which the fused kernels show up in torch.profiler: the C++ ops, the Triton kernels."""
    names = ["excite_fused::"]
    try:
        from excite.fused import _triton

        names += [n for n in dir(_triton) if n.endswith("_kernel")]
    except ImportError:
        pass
    return tuple(names)


def profiled_training(
    module: nn.Module, x: torch.Tensor, grad: torch.Tensor, iterations: int, cuda_only: bool = False
) -> Any:
    """torch.profiler over ``iterations`` forward+backward steps of ``module`` (input and every trainable
    parameter), after one unprofiled step (a first call may build or compile the kernels). CPU ops are
    recorded, and CUDA kernels when ``x`` is on a GPU; ``cuda_only`` records the kernels alone."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    cuda = x.device.type == "cuda"
    activities = [ProfilerActivity.CUDA] if cuda_only else [ProfilerActivity.CPU]
    if cuda and not cuda_only:
        activities.append(ProfilerActivity.CUDA)
    inputs = [x] + [p for p in module.parameters() if p.requires_grad]
    torch.autograd.grad(module(x), inputs, grad)
    with torch_profile(activities=activities) as prof:
        for _ in range(iterations):
            torch.autograd.grad(module(x), inputs, grad)
        if cuda:
            torch.cuda.synchronize()
    return prof


def kernel_share(
    module: nn.Module, x: torch.Tensor, grad: torch.Tensor, device: torch.device, iterations: int = 3
) -> tuple[float, float]:
    """``(share, seconds)``: the share of the fused path's forward+backward time spent inside excite's
    fused kernels, and those kernels' time per forward+backward.

    The rest is what the passes over the feature map do not explain: the gate's small layers on the
    statistics (matrix products, convolutions on pooled maps), autograd and Python. torch.profiler's
    self times (CPU ops, or CUDA kernels on a GPU) are summed; the profiler's own overhead inflates the
    small ops a little, so the share is a lower bound for the kernels. On a GPU the seconds are the
    kernels' device time, which is what their bandwidth is measured against.
    """
    cuda = device.type == "cuda"
    prof = profiled_training(module, x, grad, iterations, cuda_only=cuda)
    names = fused_kernel_names()
    total = inside = 0.0
    for event in prof.key_averages():
        spent = event.self_device_time_total if cuda else event.self_cpu_time_total
        if cuda and event.device_type != torch.autograd.DeviceType.CUDA:
            continue
        total += spent
        if any(n in event.key for n in names):
            inside += spent
    share = inside / total if total else math.nan
    return share, inside * 1e-6 / iterations  # the profiler's times are in microseconds


def gate_flops_per_element(module: nn.Module, x: torch.Tensor) -> float:
    """Forward FLOPs of the fused path (``torch.utils.flop_counter``: the gate's matrix products and
    convolutions; the elementwise passes count 0) per element of the feature map; the backward of those
    products costs twice as much again. Where this approaches the machine's FLOP/byte balance times
    4 bytes, the gate is compute-bound and no fusion of the passes can hide it.

    Forward only: the counter's module hooks do not survive the nested ``autograd.grad`` inside the
    fused backward.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        module(x)
    return counter.get_total_flops() / x.numel()


def saved_bytes(module: nn.Module, call: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> float:
    """Bytes packed for backward beyond the input and the module's parameters and buffers, in units of
    the input's size."""
    owned = {t.untyped_storage().data_ptr() for t in list(module.parameters()) + list(module.buffers())}
    owned.add(x.untyped_storage().data_ptr())
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = call(x)
    del y
    extra = sum(nbytes for pointer, nbytes in seen.items() if pointer not in owned)
    return extra / x.untyped_storage().nbytes()


def method_calls(
    name: str, channels: int, size: int, methods: Sequence[str], device: torch.device | None = None
) -> dict[str, tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]]:
    """``{method: (module, forward function)}`` for the methods available for this module."""
    calls: dict[str, tuple[nn.Module, Callable[[torch.Tensor], torch.Tensor]]] = {}
    device = device or torch.device("cpu")
    module = build_excite(name, channels, size).to(device).train()
    for method in methods:
        if method == "reference":

            def reference(x: torch.Tensor, module: nn.Module = module) -> torch.Tensor:
                with excite.use_reference():
                    return module(x)

            calls[method] = (module, reference)
        elif method == "fused":
            calls[method] = (module, module)
        elif method == "compile":
            # A fresh cache per module: every new instance is a recompile of the same code, and past
            # dynamo's recompile limit it would silently run eager.
            torch._dynamo.reset()
            compiled = torch.compile(module, dynamic=False)
            calls[method] = (module, compiled)
        elif method == "timm":
            peer = build_timm(name, channels)
            if peer is not None:
                peer = peer.to(device).train()
                calls[method] = (peer, peer)
    return calls


def measure(
    name: str,
    shape: tuple[int, ...],
    methods: Sequence[str],
    rounds: int,
    timer: Timer,
    device: torch.device | None = None,
    breakdown: bool = True,
) -> list[dict[str, object]]:
    batch, channels, height, width = shape
    device = device or torch.device("cpu")
    torch.manual_seed(0)
    x = torch.randn(shape, device=device).requires_grad_()
    grad = torch.randn(shape, device=device)
    scratch = torch.empty(shape, device=device)
    calls = method_calls(name, channels, height, methods, device)

    def forward(call: Callable) -> Callable[[], object]:
        def run() -> None:
            with torch.no_grad():
                call(x)

        return run

    def training(module: nn.Module, call: Callable) -> Callable[[], object]:
        inputs = [x] + [p for p in module.parameters() if p.requires_grad]

        def run() -> None:
            torch.autograd.grad(call(x), inputs, grad)

        return run

    tasks: dict[tuple[str, str], Callable[[], object]] = {
        ("LB", "read"): lambda: x.detach().sum(),
        ("LB", "write"): lambda: torch.mul(x.detach(), 1.0, out=scratch),
    }
    for method, (module, call) in calls.items():
        tasks[(method, "forward")] = forward(call)
        tasks[(method, "training")] = training(module, call)
    for task in tasks.values():  # warm-up: compilation, allocator, caches
        task()
        task()
    samples: dict[tuple[str, str], list[float]] = {key: [] for key in tasks}
    for _ in range(rounds):
        for key, task in tasks.items():
            samples[key].append(timer(task))
    median = {key: statistics.median(values) for key, values in samples.items()}
    lb = median[("LB", "read")] + median[("LB", "write")]
    nbytes = x.numel() * x.element_size()
    rows = []
    for method, (module, call) in calls.items():
        share = kernel_seconds = flops = math.nan
        if method == "fused" and breakdown:
            share, kernel_seconds = kernel_share(module, x, grad, device)
            flops = gate_flops_per_element(module, x)
        rows.append(
            {
                "module": name,
                "shape": "x".join(str(s) for s in shape),
                "method": method,
                "forward_ms": 1e3 * median[(method, "forward")],
                "training_ms": 1e3 * median[(method, "training")],
                "forward_LB": median[(method, "forward")] / lb,
                "training_LB": median[(method, "training")] / lb,
                "saved_x": saved_bytes(module, call, x),
                "LB_ms": 1e3 * lb,
                # Bandwidth of the minimal passes (3 forward, 8 forward+backward) at the measured time.
                "LB_GBps": 3 * nbytes / lb / 1e9,
                "forward_GBps": 3 * nbytes / median[(method, "forward")] / 1e9,
                "training_GBps": 8 * nbytes / median[(method, "training")] / 1e9,
                "kernel_share": share,
                # The minimal 8 passes over the kernels' own time (profiler), not the step's.
                "kernels_GBps": 8 * nbytes / kernel_seconds / 1e9 if kernel_seconds > 0 else math.nan,
                "gate_flops_per_element": flops,
            }
        )
    reference = next((r for r in rows if r["method"] == "reference"), None)
    for row in rows:
        row["training_speedup"] = reference["training_ms"] / row["training_ms"] if reference else math.nan
    return rows


def print_table(rows: list[dict[str, object]], title: str) -> None:
    headers = ["module", "shape", "method", "fwd LB", "fwd+bwd LB", "speed-up", "saved x", "LB ms"]

    def cells(row: dict[str, object]) -> list[str]:
        return [
            str(row["module"]),
            str(row["shape"]),
            str(row["method"]),
            f"{row['forward_LB']:.2f}",
            f"{row['training_LB']:.2f}",
            f"{row['training_speedup']:.1f}x",
            f"{row['saved_x']:.2f}",
            f"{row['LB_ms']:.2f}",
        ]

    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print(title)
        print(" | ".join(headers))
        for row in rows:
            print(" | ".join(cells(row)))
        return
    table = Table(title=title)
    for header in headers:
        table.add_column(header, justify="left" if header in ("module", "shape", "method") else "right")
    for row in rows:
        values = cells(row)
        if row["method"] == "fused":
            values = [f"[bold]{v}[/bold]" for v in values]
        table.add_row(*values)
    Console(width=max(Console().width, 120)).print(table)


THREE_X_MODULES = ("simam", "scse", "coord", "eca")


def summary_rows(rows: list[dict[str, object]], peak_gbps: float | None = None) -> list[dict[str, str]]:
    """One line per module and shape: every method's forward and forward+backward in LB side by side,
    the fused path's training speed-up over the reference, the saved memory, where the fused path's
    forward+backward time goes (inside the fused kernels / the rest: the gate's layers, autograd,
    Python), the gate's FLOPs per element, the bandwidth of the minimal passes (and its share of
    ``peak_gbps`` where known), and the targets missed."""
    lines = []
    keys = list(dict.fromkeys((r["module"], r["shape"]) for r in rows))
    for module, shape in keys:
        by_method = {r["method"]: r for r in rows if r["module"] == module and r["shape"] == shape}
        line = {"module": str(module), "shape": str(shape)}
        for method in METHODS:
            row = by_method.get(method)
            line[method] = f"{row['forward_LB']:.2f} / {row['training_LB']:.2f}" if row else "-"
        fused = by_method.get("fused")
        reference = by_method.get("reference")
        missed = []
        if fused is not None:
            if fused["forward_LB"] > TARGET_FORWARD:
                missed.append("fwd")
            if fused["training_LB"] > TARGET_TRAINING:
                missed.append("f+b")
            if fused["saved_x"] > 1.0:
                missed.append("mem")
            if module in THREE_X_MODULES and reference is not None and fused["training_speedup"] < 3.0:
                missed.append("3x")
        line["speed-up"] = f"{fused['training_speedup']:.1f}x" if fused is not None and reference else "-"
        line["saved ref / fused"] = (
            f"{reference['saved_x']:.2f} / {fused['saved_x']:.2f}" if fused is not None and reference else "-"
        )
        if fused is not None and not math.isnan(float(fused.get("kernel_share", math.nan))):
            inside = fused["training_LB"] * fused["kernel_share"]
            line["f+b kernels / rest"] = f"{inside:.2f} / {fused['training_LB'] - inside:.2f}"
            line["gate FLOP/elem fwd"] = f"{fused['gate_flops_per_element']:.1f}"
        else:
            line["f+b kernels / rest"] = line["gate FLOP/elem fwd"] = "-"
        if fused is not None and "training_GBps" in fused:
            # 8 passes is the minimum of forward+backward; modules that need more (CBAM) move more
            # bytes than this counts, so the figures are lower bounds on the achieved bandwidth.
            kernels = float(fused.get("kernels_GBps", math.nan))
            shown = "-" if math.isnan(kernels) else f"{kernels:.0f}"
            bandwidth = f"{fused['LB_GBps']:.0f} / {fused['training_GBps']:.0f} / {shown}"
            if peak_gbps:
                share = 100 * kernels / peak_gbps
                bandwidth += f" ({share:.0f}% of {peak_gbps:.0f})"
                if not share >= 80:
                    missed.append("80% HBM")
            line["GB/s LB / f+b / kernels"] = bandwidth
        line["targets missed"] = ", ".join(missed) if missed else "none"
        lines.append(line)
    return lines


def print_summary(
    rows: list[dict[str, object]], title: str, path: Path | None, peak_gbps: float | None = None
) -> None:
    """The side-by-side table on the console, and as Markdown in ``path`` (for the issue's note)."""
    lines = summary_rows(rows, peak_gbps)
    headers = list(lines[0])
    markdown = [
        f"{title}; each cell is forward / forward+backward in LB",
        "",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ] + ["| " + " | ".join(line[h] for h in headers) + " |" for line in lines]
    if path is not None:
        path.write_text("\n".join(markdown) + "\n")
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print("\n".join(markdown))
        return
    table = Table(
        title=f"{title}\nforward / forward+backward in LB (targets: {TARGET_FORWARD} / {TARGET_TRAINING})"
    )
    for header in headers:
        table.add_column(
            header, justify="left" if header in ("module", "shape", "targets missed") else "right"
        )
    for line in lines:
        table.add_row(*[line[h] for h in headers])
    Console(width=max(Console().width, 150)).print(table)


def plot(rows: list[dict[str, object]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        warnings.warn("matplotlib is not installed: no PNG", stacklevel=2)
        return
    shapes = list(dict.fromkeys(r["shape"] for r in rows))
    modules = list(dict.fromkeys(r["module"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    figure, axes = plt.subplots(2, len(shapes), figsize=(4.2 * len(shapes), 7), squeeze=False, sharey="row")
    width = 0.8 / max(len(methods), 1)
    for column, shape in enumerate(shapes):
        for row_index, (key, target, label) in enumerate(
            [
                ("forward_LB", TARGET_FORWARD, "forward / LB"),
                ("training_LB", TARGET_TRAINING, "forward+backward / LB"),
            ]
        ):
            ax = axes[row_index][column]
            for k, method in enumerate(methods):
                values = [
                    next(
                        (
                            r[key]
                            for r in rows
                            if r["shape"] == shape and r["module"] == m and r["method"] == method
                        ),
                        0,
                    )
                    for m in modules
                ]
                positions = [i + (k - (len(methods) - 1) / 2) * width for i in range(len(modules))]
                ax.bar(positions, values, width=width, label=method)
            ax.axhline(target, color="black", linestyle="--", linewidth=1, label=f"target {target}")
            ax.set_yscale("log")
            ax.set_xticks(range(len(modules)))
            ax.set_xticklabels(modules, rotation=60, fontsize=8)
            if column == 0:
                ax.set_ylabel(label)
            if row_index == 0:
                ax.set_title(shape, fontsize=9)
    axes[0][0].legend(fontsize=7)
    figure.suptitle("SE-family modules in units of LB (one read + one read-write pass); lower is better")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def profile(name: str, shape: tuple[int, ...], device: torch.device | None = None) -> None:
    """The op-level breakdown of the fused path's forward + backward (torch.profiler)."""
    device = device or torch.device("cpu")
    module = build_excite(name, shape[1], shape[2]).to(device).train()
    x = torch.randn(shape, device=device, requires_grad=True)
    grad = torch.randn(shape, device=device)
    prof = profiled_training(module, x, grad, iterations=5)
    sort_by = "self_device_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=sort_by, row_limit=20))


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small shapes; every method but compile")
    parser.add_argument("--modules", default=",".join(MODULES))
    parser.add_argument("--methods", default=None, help=f"comma-separated among {', '.join(METHODS)}")
    parser.add_argument("--shapes", default=None, help="e.g. 8x256x56x56,8x2048x7x7")
    parser.add_argument("--rounds", type=int, default=None, help="alternating rounds per figure (median)")
    parser.add_argument("--timer", choices=("wall", "process"), default="wall")
    parser.add_argument(
        "--system-malloc", action="store_true", help="leave glibc's malloc as it is (see keep_freed_memory)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--out", default="benchmark-results", help="folder for kernels.csv and kernels.png")
    parser.add_argument("--profile", default=None, help="print the fused path's op profile for this module")
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu or cuda (Triton kernels; the 80%%-of-HBM target is checked there)",
    )
    parser.add_argument(
        "--peak-gbps",
        type=float,
        default=None,
        help="the memory's peak bandwidth in GB/s (default on CUDA: from the device's clock and bus width)",
    )
    parser.add_argument(
        "--no-breakdown",
        action="store_true",
        help="skip the profiler's split of the fused time (kernels / rest) and the FLOP count",
    )
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: CUDA is not available here")
    peak_gbps = args.peak_gbps or peak_bandwidth(device)
    malloc = "system" if args.system_malloc else ("kept" if keep_freed_memory() else "system")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.shapes:
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.shapes.split(",")]
    else:
        shapes = QUICK_SHAPES if args.quick else STAGE_SHAPES
    if args.profile:
        profile(args.profile, shapes[0], device)
        return
    methods = (
        args.methods.split(",")
        if args.methods
        else (["reference", "timm", "fused"] if args.quick else list(METHODS))
    )
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"--methods: unknown {unknown}; choose from {METHODS}")
    modules = args.modules.split(",")
    rounds = args.rounds or (7 if args.quick else 31)
    timer = Timer(args.timer, device)
    probe = torch.randn(2, 2, 2, 2, device=device)
    where = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"{torch.get_num_threads()} CPU threads, malloc: {malloc}"
    )
    header = (
        f"torch {torch.__version__}, {where}, kernels: {backend_name(probe)}, "
        f"timer: {args.timer}, {rounds} rounds" + (f", peak {peak_gbps:.0f} GB/s" if peak_gbps else "")
    )
    print(header, file=sys.stderr)
    jobs = [(m, s) for s in shapes for m in modules]
    try:
        from tqdm import tqdm

        jobs_iter = tqdm(jobs, desc="kernels", file=sys.stderr)
    except ImportError:
        jobs_iter = jobs
    rows: list[dict[str, object]] = []
    for name, shape in jobs_iter:
        rows.extend(measure(name, shape, methods, rounds, timer, device, not args.no_breakdown))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "kernels.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, out / "kernels.png")
    print_table(rows, header)
    print_summary(rows, header, out / "kernels.md", peak_gbps)
    print(f"wrote kernels.csv, kernels.md and kernels.png into {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
