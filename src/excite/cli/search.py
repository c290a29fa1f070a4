"""``excite search``: the per-layer attention search and the FcaNet frequency search on real data.

It runs :func:`excite.search.study_section`, the same comparison that the study's ``--search`` adds to its
report (searched network against uniform choices at equal cost; searched frequencies against top16, low16
and bot16), and writes it on its own: ``OUT/search.md``, ``OUT/search/search_results.json`` and plots.
Finished runs are cached in ``OUT/search``, so an interrupted command resumes where it stopped.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PARTS = ("attention", "frequency", "segmentation")
PRESETS = ("quick", "standard", "full")


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "search",
        help="search which module goes at each layer, and FcaNet's frequencies; compare with uniform choices",
        description=(
            "Per-layer attention search (a DARTS-style mixture over none/se/eca/coord/simam/scse/eca_coord "
            "with a cost penalty, then retrained) and FcaNet frequency search, each compared on real data "
            "with uniform choices at equal cost. Presets: quick (3,000 Fashion-MNIST images, 2 epochs, "
            "3 seeds, about 9 minutes for attention and frequency on 2 cores; segmentation about 5 minutes "
            "per seed), standard (5,000 images, 2 seeds), full (the whole split, "
            "3 seeds, latency cost; meant for a GPU)."
        ),
    )
    parser.add_argument("--preset", default="quick", choices=PRESETS, help="budget (default: quick)")
    parser.add_argument(
        "--parts",
        default="attention,frequency",
        help="comma-separated among attention (Fashion-MNIST), frequency (Fashion-MNIST) and "
        "segmentation (brain MRI) (default: attention,frequency)",
    )
    parser.add_argument("--out", default="excite-search", help="output folder (default: excite-search)")
    parser.add_argument("--data", default=None, help="Fashion-MNIST folder (default: the Debian location)")
    parser.add_argument(
        "--brain-data", default=None, help="MRIcron templates folder (default: the Debian location)"
    )
    parser.add_argument("--seeds", default=None, help="comma-separated seeds (default: the preset's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def parse_parts(text: str) -> list[str]:
    parts = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [part for part in parts if part not in PARTS]
    if not parts or unknown:
        raise ValueError(f"excite search: --parts must be a comma list among {PARTS}, got {text!r}")
    return parts


def run(args: argparse.Namespace) -> int:
    from ..search import study_section

    parts = parse_parts(args.parts)
    seeds = None if args.seeds is None else [int(seed) for seed in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    section = study_section(
        out,
        preset=args.preset,
        data=None if args.data is None else Path(args.data),
        brain_data=None if args.brain_data is None else Path(args.brain_data),
        parts=parts,
        seeds=seeds,
        progress=not args.no_progress,
    )
    report = out / "search.md"
    report.write_text(section.markdown + "\n")
    print(section.markdown)
    print(f"\nwritten: {report}")
    return 0
