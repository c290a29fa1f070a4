"""LightGCN vs SimGCL vs WeightedGCL on real interactions: Recall@20 / NDCG@20, full ranking.

    python benchmarks/graphs.py                       # quick preset on RecBole's MovieLens-100K
    python benchmarks/graphs.py --preset official     # the WeightedGCL protocol (hours on CPU)
    python benchmarks/graphs.py --data DIR_OR_FILE --plot curves.png

Data: ``--data`` (a RecBole ``.inter`` file or a LightGCN-style folder), else ``$EXCITE_INTERACTIONS``,
else the MovieLens-100K copy inside the ``recbole`` wheel (``pip install --no-deps recbole``). All models
share the split, the seed and the recommendation loss; the table prints each model's change against the
first row. ``--plot`` draws validation Recall@20 against epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def plot_curves(results, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for row in results:
        epochs = [h["epoch"] for h in row["history"]]
        for axis, metric in zip(axes, ("recall@20", "ndcg@20")):
            axis.plot(epochs, [h[metric] for h in row["history"]], marker="o", label=row["model"])
            axis.set_xlabel("epoch")
            axis.set_ylabel(f"validation {metric}")
    axes[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="a .inter file, or a folder with train.txt/test.txt")
    parser.add_argument("--format", default="lightgcn", choices=("lightgcn", "pairs"), help="txt line format")
    parser.add_argument("--preset", default="quick", choices=("quick", "official"))
    parser.add_argument("--models", default="lightgcn,simgcl,weightedgcl")
    parser.add_argument("--epochs", type=int, help="override the preset's epoch budget")
    parser.add_argument("--lr", type=float, help="override the preset's learning rate")
    parser.add_argument("--seed", type=int, default=2023)
    parser.add_argument(
        "--threads", type=int, help="torch CPU threads (1 avoids oversubscription on busy machines)"
    )
    parser.add_argument("--device", help="cpu (default) or cuda")
    parser.add_argument("--plot", type=Path, help="write validation curves to this PNG")
    parser.add_argument("--json", type=Path, help="write the full results to this JSON file")
    args = parser.parse_args(argv)

    import torch

    from excite.graphs import compare, format_table, load_interactions

    if args.threads:
        torch.set_num_threads(args.threads)
    data = load_interactions(args.data, format=args.format, seed=args.seed)
    stats = data.summary()
    print(
        f"{data.name}: {stats['users']} users, {stats['items']} items, {stats['interactions']} interactions"
        f" (train {stats['train']}, valid {stats['valid']}, test {stats['test']};"
        f" density {stats['density']:.4f})"
    )
    overrides = {key: value for key, value in (("epochs", args.epochs), ("lr", args.lr)) if value is not None}
    results = compare(
        data,
        models=args.models.split(","),
        preset=args.preset,
        seed=args.seed,
        device=args.device,
        **overrides,
    )
    print(format_table(results, ks=(10, 20)))
    if args.plot:
        plot_curves(results, args.plot)
        print(f"curves: {args.plot}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
