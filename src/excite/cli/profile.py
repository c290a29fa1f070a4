"""``excite profile``: the cost of every attention on one network, measured side by side."""

from __future__ import annotations

import argparse
import os
import sys


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "profile",
        help="params, counted FLOPs, hidden elementwise work and traffic, latency, memory per attention",
        description=(
            "Profile a network without attention and with each attention module, side by side: parameters, "
            "FLOPs (torch.utils.flop_counter), the elementwise FLOPs and memory traffic the counter misses, "
            "median forward and forward+backward latency (arms interleaved), and peak training memory."
        ),
    )
    parser.add_argument(
        "model",
        help="an excite.models builder (resnet50, mobilenet_v2, ...), or torchvision:NAME / timm:NAME",
    )
    parser.add_argument(
        "--attention",
        default="all",
        help="'all' or a comma-separated list of names from excite.available() (default: all)",
    )
    parser.add_argument(
        "--input-size",
        default="224",
        help="spatial size: one int for every axis or a comma list, e.g. 224 or 32,128,128 (default: 224)",
    )
    parser.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    parser.add_argument("--channels", type=int, default=3, help="input channels (default: 3)")
    parser.add_argument(
        "--dim", type=int, default=2, help="spatial dims when --input-size is one int (default: 2)"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds over all arms (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps per arm first (default: 1)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default: cpu)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for PyTorch (torch.set_num_threads); 1 gives steadier timings on a busy machine",
    )
    parser.add_argument(
        "--no-presets", action="store_true", help="always use builder(attention=...), never presets"
    )
    parser.add_argument("--out", default=None, help="directory for profile.csv, profile.json and profile.png")
    return parser


def parse_input_size(text: str, batch: int, channels: int, dim: int) -> tuple[int, ...]:
    """``"224"`` with dim 2 gives ``(batch, channels, 224, 224)``; ``"32,128,128"`` gives three axes."""
    try:
        sizes: list[int] = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ValueError(
            f"excite profile: --input-size must be integers separated by commas, got {text!r}"
        ) from None
    if not sizes:
        raise ValueError(f"excite profile: --input-size is empty ({text!r})")
    if len(sizes) == 1:
        sizes = sizes * dim
    return (batch, channels, *sizes)


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import profiling

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"excite profile: --threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    size = parse_input_size(args.input_size, args.batch, args.channels, args.dim)
    attentions = (
        "all" if args.attention == "all" else [a.strip() for a in args.attention.split(",") if a.strip()]
    )
    table = profiling.profile(
        args.model,
        size,
        attentions=attentions,
        device=args.device,
        warmup=args.warmup,
        repeats=args.repeats,
        presets=not args.no_presets,
        progress=True,
    )
    try:
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console = Console(width=200)  # piped or captured: no terminal width to fit, keep every column
        console.print(table)
    except ImportError:
        print(table)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        written = [
            table.to_csv(os.path.join(args.out, "profile.csv")),
            table.to_json(os.path.join(args.out, "profile.json")),
        ]
        try:
            written.append(table.plot(os.path.join(args.out, "profile.png")))
        except ImportError:
            print("matplotlib is not installed: no plot", file=sys.stderr)
        print("wrote " + ", ".join(written))
    return 0
