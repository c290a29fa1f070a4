"""What FLOP counts hide: attention overhead on reference networks, measured side by side.

For each network, every attention arm and the plain network are timed in one interleaved run
(:func:`excite.profile`), on excite's fused kernels and, with ``--paths fused,reference``, on the plain
PyTorch reference path too. The table prints ratios to the plain network, so that the cost of each module
reads directly: counted FLOPs, analytic memory traffic, forward and forward+backward latency.

    python benchmarks/profile_networks.py --networks resnet50,mobilenet_v2 --size 224 --repeats 5

Timings on a shared machine are noisy; compare arms within one table, not across runs.
"""

from __future__ import annotations

import argparse
import os
from typing import Any


def ratio_rows(table: Any, path: str) -> list:
    base = table.row("none")
    rows = []
    for row in table.rows[1:]:
        rows.append(
            {
                "network": row["model"],
                "path": path,
                "attention": row["attention"],
                "params": row["params"] / base["params"],
                "flops": row["flops"] / base["flops"],
                "fwd": row["latency_fwd_ms"] / base["latency_fwd_ms"],
                "fwdbwd": row["latency_fwdbwd_ms"] / base["latency_fwdbwd_ms"],
                "traffic_mib": row["attention_bytes_fwdbwd"] / 2**20,
            }
        )
    return rows


def print_rows(rows: list) -> None:
    header = (
        f"{'network':<14}{'path':<11}{'attention':<11}{'params':>9}{'FLOPs':>9}{'fwd':>8}{'fwd+bwd':>9}"
        f"{'traffic MiB':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['network']:<14}{r['path']:<11}{r['attention']:<11}{r['params']:>9.4f}{r['flops']:>9.4f}"
            f"{r['fwd']:>8.3f}{r['fwdbwd']:>9.3f}{r['traffic_mib']:>13.1f}"
        )
    print(
        "ratios to the same network without attention, measured in one interleaved run per network and path"
    )


def main() -> None:
    import excite

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--networks", default="resnet50,mobilenet_v2")
    parser.add_argument("--attentions", default="all", help="'all' or a comma list")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--paths", default="fused", help="fused, reference or both (comma list)")
    parser.add_argument("--out", default=None, help="directory for one CSV and PNG per network and path")
    args = parser.parse_args()

    attentions = "all" if args.attentions == "all" else args.attentions.split(",")
    rows = []
    for network in args.networks.split(","):
        for path in args.paths.split(","):
            with excite.use_reference(path == "reference"):
                table = excite.profile(
                    network,
                    (args.batch, 3, args.size, args.size),
                    attentions=attentions,
                    device=args.device,
                    warmup=args.warmup,
                    repeats=args.repeats,
                )
            print(table)
            if args.out:
                os.makedirs(args.out, exist_ok=True)
                table.to_csv(os.path.join(args.out, f"{network}_{path}.csv"))
                table.plot(os.path.join(args.out, f"{network}_{path}.png"))
            rows.extend(ratio_rows(table, path))
    print_rows(rows)


if __name__ == "__main__":
    main()
