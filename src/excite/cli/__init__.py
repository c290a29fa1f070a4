"""The ``excite`` command line: ``excite study``, ``profile``, ``recommend``, ``search`` and ``data``.

Each verb lives in its own module here and provides ``add_parser(subparsers)`` and ``run(args)``;
heavy imports happen inside ``run`` so that ``excite --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

VERBS = ("study", "profile", "recommend", "search", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="excite",
        description="Squeeze-and-Excitation family attention: study, profile, recommend and search modules.",
    )
    parser.add_argument("--version", action="version", version=f"excite {_version()}")
    subparsers = parser.add_subparsers(dest="verb", metavar="VERB")
    for verb in VERBS:
        module = importlib.import_module(f"excite.cli.{verb}")
        sub = module.add_parser(subparsers)
        sub.set_defaults(_run=module.run)
    return parser


def _version() -> str:
    from .. import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except ValueError as error:
        # The library raises ValueError for what the user can fix (an unknown name, a bad option, a
        # size the model cannot take) with a message that says what and how; a traceback would bury
        # it. EXCITE_DEBUG=1 keeps the traceback.
        if os.environ.get("EXCITE_DEBUG", "0") == "1":
            raise
        message = str(error)
        if not message.startswith("excite"):
            message = f"excite {args.verb}: {message.removeprefix(f'{args.verb}: ')}"
        print(message, file=sys.stderr)
        print("(EXCITE_DEBUG=1 shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
