"""One ResNet-50 training step with no attention against every attention, reference vs fused path.

    python benchmarks/resnet_step.py                         # batch 8, 224x224, CPU (and CUDA if present)
    python benchmarks/resnet_step.py --attentions se,simam --rounds 5 --devices cpu
    python benchmarks/resnet_step.py --batch 2 --size 112    # a quick look

A step is ``zero_grad``, forward, cross-entropy, backward and an SGD (momentum 0.9) update of
``excite.models.resnet50(attention=...)`` (each attention at its paper's placement) on random images
and labels, in training mode. For every attention the plain network, the attention network on the
reference path (``excite.use_reference()``) and on the fused path are timed in alternation, round after
round; each figure is a median. The overhead is ``(t_attention / t_plain - 1) * 100`` percent; the
issue's target is at most 5% for every attention.

Writes ``resnet_step.csv`` into ``--out`` and prints the table (rich if installed).
"""

from __future__ import annotations

import argparse
import csv
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

import excite
import excite.models as models

ATTENTIONS = ("se", "cse", "eca", "fca", "spse", "rgse", "cbam", "sse", "scse", "coord", "simam")


def make_step(
    net: nn.Module, batch: int, size: int, device: torch.device, reference: bool
) -> Callable[[], None]:
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, size, size, generator=generator).to(device)
    labels = torch.randint(0, 1000, (batch,), generator=generator).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    def step() -> None:
        with excite.use_reference(reference):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(net(images), labels)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    return step


def timed(step: Callable[[], None]) -> float:
    start = time.perf_counter()
    step()
    return time.perf_counter() - start


def measure(attention: str, batch: int, size: int, device: torch.device, rounds: int) -> dict[str, object]:
    torch.manual_seed(0)
    plain = models.resnet50().to(device).train()
    torch.manual_seed(0)
    net = models.resnet50(attention=attention).to(device).train()
    steps = {
        "plain": make_step(plain, batch, size, device, reference=False),
        "reference": make_step(net, batch, size, device, reference=True),
        "fused": make_step(net, batch, size, device, reference=False),
    }
    for step in steps.values():  # warm-up: allocator, oneDNN/cuDNN plans, the C++ extension
        step()
    samples: dict[str, list[float]] = {key: [] for key in steps}
    for _ in range(rounds):
        for key, step in steps.items():
            samples[key].append(timed(step))
    median = {key: statistics.median(values) for key, values in samples.items()}
    return {
        "device": device.type,
        "attention": attention,
        "plain_s": median["plain"],
        "reference_s": median["reference"],
        "fused_s": median["fused"],
        "reference_overhead_pct": 100 * (median["reference"] / median["plain"] - 1),
        "fused_overhead_pct": 100 * (median["fused"] / median["plain"] - 1),
    }


def print_table(rows: list[dict[str, object]], title: str) -> None:
    headers = ["device", "attention", "plain s", "reference s", "fused s", "reference +%", "fused +%"]

    def cells(row: dict[str, object]) -> list[str]:
        return [
            str(row["device"]),
            str(row["attention"]),
            f"{row['plain_s']:.3f}",
            f"{row['reference_s']:.3f}",
            f"{row['fused_s']:.3f}",
            f"{row['reference_overhead_pct']:+.1f}",
            f"{row['fused_overhead_pct']:+.1f}",
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
        table.add_column(header, justify="left" if header in ("device", "attention") else "right")
    for row in rows:
        table.add_row(*cells(row))
    Console().print(table)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--attentions", default=",".join(ATTENTIONS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--devices", default=None, help="cpu, cuda or cpu,cuda (default: cpu, and cuda if present)"
    )
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default="benchmarks/results")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = (
        args.devices.split(",") if args.devices else ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    )
    attentions = args.attentions.split(",")
    unknown = sorted(set(attentions) - set(excite.available()))
    if unknown:
        parser.error(f"--attentions: unknown {unknown}")
    title = (
        f"ResNet-50 training step, batch {args.batch}, {args.size}x{args.size}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, median of {args.rounds}"
    )
    jobs = [(d, a) for d in devices for a in attentions]
    try:
        from tqdm import tqdm

        iterator = tqdm(jobs, desc="resnet50 steps", file=sys.stderr)
    except ImportError:
        iterator = jobs
    rows = [measure(a, args.batch, args.size, torch.device(d), args.rounds) for d, a in iterator]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "resnet_step.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print_table(rows, title)
    print(f"wrote {out / 'resnet_step.csv'}", file=sys.stderr)


if __name__ == "__main__":
    main()
