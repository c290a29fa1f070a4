"""``excite study``: train and compare the SE-family modules on real data and write the report.

excite study                                   # quick preset, under 15 min on a 2-core CPU
excite study --with-3d --search quick          # quick, plus the 3-D U-Net task and the search section
excite study --preset full --device cuda       # every arm and section, 5 seeds, meant for a GPU
torchrun --nproc_per_node=2 -m excite study    # the engine's runs on 2 processes (DDP; gloo / NCCL)
"""

from __future__ import annotations

import argparse
import sys


def _comma_list(text: str) -> list:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "study",
        help="train and compare the modules on Fashion-MNIST and brain MRI; write report.md with verdicts",
        description=(
            "Train every arm (no attention and each module, the ECA+CA hybrid, a small ViT with and without "
            "SE) with several seeds under the same budget on Fashion-MNIST (classification) and the Colin27 "
            "brain MRI (atlas segmentation, 2-D and optionally 3-D), compare LightGCN / SimGCL / WeightedGCL "
            "on MovieLens-100K and optionally run the attention and frequency search, then write report.md, "
            "plots and results.json with a verdict on each claim. Finished runs in --out are reused and "
            "interrupted runs resume from their checkpoints."
        ),
    )
    parser.add_argument("--out", default="excite-study", help="output folder (default: excite-study)")
    parser.add_argument(
        "--preset",
        choices=("quick", "full"),
        default="quick",
        help="quick (default): about 15 min on a 2-core CPU; full: every arm, 5 seeds, meant for a GPU",
    )
    parser.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="PATH",
        help="a folder with Fashion-MNIST's IDX files or MRIcron's templates (repeatable); default: "
        "$EXCITE_FASHION_MNIST / $EXCITE_BRAIN_MRI, then the Debian package locations",
    )
    parser.add_argument(
        "--seeds", type=_comma_list, default=None, help="comma list, e.g. 0,1,2 (default: the preset's)"
    )
    parser.add_argument(
        "--tasks",
        type=_comma_list,
        default=None,
        help="comma list among classification, segmentation, segmentation3d, graphs, search (default: the "
        "preset's; quick: classification,segmentation,graphs)",
    )
    parser.add_argument(
        "--arms", type=_comma_list, default=None, help="comma list of arms, e.g. none,se,eca,cse,sse,scse"
    )
    parser.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="reuse finished runs and resume interrupted ones; --no-resume retrains everything",
    )
    parser.add_argument("--sweep-reduction", action="store_true", help="add SE with r in {2, 4, 8, 16, 32}")
    parser.add_argument(
        "--dim",
        type=int,
        choices=(2, 3),
        default=None,
        help="segmentation U-Net on 2-D slices or 3-D patches",
    )
    parser.add_argument(
        "--with-3d",
        dest="with_3d",
        action="store_const",
        const=True,
        default=None,
        help="add the 3-D U-Net task (none vs scSE on 3-D patches of the brain MRI; on in --preset full)",
    )
    parser.add_argument(
        "--no-3d", dest="with_3d", action="store_const", const=False, help="leave the 3-D U-Net task out"
    )
    parser.add_argument(
        "--graphs",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="the LightGCN / SimGCL / WeightedGCL table on MovieLens-100K (on in both presets; quick: 3 "
        "seeds x 8 epochs, about 1.5 min); --no-graphs leaves it out",
    )
    parser.add_argument(
        "--interactions",
        default=None,
        metavar="PATH",
        help="the graph table's data: a RecBole .inter file or a folder with train.txt/test.txt; default "
        "$EXCITE_INTERACTIONS, then the MovieLens-100K copy inside the recbole package",
    )
    parser.add_argument(
        "--search",
        choices=("none", "quick", "standard", "full"),
        default=None,
        help="add the search section (per-layer attention search vs uniform choices at equal cost, FcaNet "
        "frequency search vs top16/low16/bot16) with this search preset; quick adds about 10 min on 2 "
        "cores; none removes it (default: off in quick, standard in full)",
    )
    parser.add_argument(
        "--search-parts",
        type=_comma_list,
        default=None,
        metavar="PARTS",
        help="the search section's parts, a comma list among attention, frequency, segmentation (the "
        "brain-MRI search: about 19 min more on 2 cores at --search quick); default: attention,frequency, "
        "and all three in the full preset",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch CPU threads per process (default: torch's, i.e. the cores; see the README on 1 vs 2)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--no-amp", action="store_true", help="train in float32 on CUDA too")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def run(args: argparse.Namespace) -> int:
    # A bad option or a run folder of another configuration raises ValueError, which excite.cli.main
    # reports as one line (exit 2); missing data gets its own message with how to install it.
    from ..study import customise, preset, run_study

    config = customise(
        preset(args.preset),
        seeds=[int(s) for s in args.seeds] if args.seeds is not None else None,
        tasks=args.tasks,
        arms=args.arms,
        sweep_reduction=True if args.sweep_reduction else None,
        dim=args.dim,
        with_3d=args.with_3d,
        search=args.search,
        graphs=args.graphs,
        search_parts=args.search_parts,
    )
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be at least 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    try:
        run_study(
            config,
            args.out,
            data=args.data,
            resume=args.resume,
            device=args.device,
            amp=not args.no_amp,
            progress=not args.no_progress,
            interactions=args.interactions,
        )
    except FileNotFoundError as error:
        print(f"excite study: data missing.\n{error}", file=sys.stderr)
        return 1
    return 0
