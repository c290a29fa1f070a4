"""``excite data``: show where the real data sets are, and install them where possible."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "data",
        help="locate (and with --install, apt-get) the Fashion-MNIST and brain-MRI data",
        description=(
            "Locate the real data sets; --install fetches the Debian packages where apt-get is usable."
        ),
    )
    parser.add_argument("--install", action="store_true", help="apt-get the missing Debian data packages")
    return parser


def run(args: argparse.Namespace) -> int:
    from ..datasets import SOURCES, install_debian_packages

    if args.install:
        install_debian_packages()
    status = 0
    for source in SOURCES:
        found = source.find()
        if found is None:
            status = 1
            print(f"{source.name}: missing. {source.how_to_get}")
        else:
            print(f"{source.name}: {found}")
    return status
