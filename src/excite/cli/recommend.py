"""``excite recommend``: which SE-family module to use for a task, model and budget, and why."""

from __future__ import annotations

import argparse
import sys

TASKS = ("classification", "segmentation", "detection")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "recommend",
        help="rank attention modules for a task under parameter and latency budgets, with reasons",
        description=(
            "Rank SE-family modules for a task. Costs are measured here on your model (excite.profile); "
            "the order comes from a study's results.json when given (--study), else from the survey's "
            "advice. Every reason says its source: 'measured here', 'study' or 'survey advice'."
        ),
    )
    parser.add_argument("--task", required=True, choices=TASKS, help="what the network is for")
    parser.add_argument(
        "--model",
        default=None,
        help="excite model name (resnet50, mobilenet_v2, unet, ...) or torchvision:NAME / timm:NAME "
        "(default: resnet50, or unet for segmentation)",
    )
    parser.add_argument(
        "--budget-params", type=float, default=None, metavar="N", help="most parameters added"
    )
    parser.add_argument(
        "--budget-latency-ms", type=float, default=None, metavar="T", help="most forward latency added (ms)"
    )
    parser.add_argument(
        "--study", default=None, metavar="DIR", help="an excite study folder (its results.json)"
    )
    parser.add_argument(
        "--input-size",
        default=None,
        metavar="N,C,H,W",
        help="input shape for the measurement (default 1,3,224,224; 1,1,128,128 for a U-Net)",
    )
    parser.add_argument(
        "--candidates",
        default=None,
        help="comma-separated module names, or 'all' (default: the survey's modules for the task)",
    )
    parser.add_argument(
        "--context",
        action="append",
        default=[],
        choices=("mobile", "medical"),
        help="add the survey's advice",
    )
    parser.add_argument("--no-measure", action="store_true", help="skip profiling; survey and study only")
    parser.add_argument("--repeats", type=int, default=3, help="timed rounds per module (default 3)")
    parser.add_argument("--device", default="cpu", help="profiling device (default cpu)")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the table as JSON")
    parser.add_argument("--markdown", default=None, metavar="PATH", help="also write the table as markdown")
    return parser


def _parse_size(text: str):
    try:
        size = [int(part) for part in text.replace("x", ",").split(",") if part.strip()]
    except ValueError as error:
        raise ValueError(f"--input-size: expected integers like 1,3,224,224, got {text!r}") from error
    if len(size) < 3:
        raise ValueError(f"--input-size: expected N,C,H[,W[,D]], got {text!r}")
    return size


def run(args: argparse.Namespace) -> int:
    from ..recommend import recommend

    candidates = args.candidates
    if candidates is not None and candidates != "all":
        candidates = [name.strip() for name in candidates.split(",") if name.strip()]
    try:
        table = recommend(
            args.task,
            model=args.model,
            budget_params=args.budget_params,
            budget_latency_ms=args.budget_latency_ms,
            study=args.study,
            input_size=None if args.input_size is None else _parse_size(args.input_size),
            candidates=candidates,
            contexts=args.context,
            measure=not args.no_measure,
            device=args.device,
            repeats=args.repeats,
        )
    except (ValueError, FileNotFoundError) as error:
        print(f"excite recommend: {error}", file=sys.stderr)
        return 2
    try:
        from rich.console import Console

        Console().print(table)
    except ImportError:
        print(table)
    if args.json:
        table.to_json(args.json)
    if args.markdown:
        with open(args.markdown, "w") as handle:
            handle.write(table.to_markdown())
    return 0
