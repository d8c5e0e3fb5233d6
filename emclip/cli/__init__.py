"""The ``emclip`` command line: ``emclip --help`` lists the sub-commands.

Each sub-command lives in its own module under ``emclip.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a function taking the parsed
``argparse.Namespace`` and returning an exit code). Heavy imports happen inside ``func``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Sub-command modules, in the order --help lists them.
COMMANDS = (
    "info",
    "prepare",
    "weights",
    "pretrain",
    "train",
    "evaluate",
    "run",
    "sweep",
)


def build_parser() -> argparse.ArgumentParser:
    from emclip import __version__

    parser = argparse.ArgumentParser(
        prog="emclip",
        description="EM-CLIP teaching kit: data, CLIP features, EM aggregation, training and "
        "cross-domain evaluation for medical image segmentation.",
    )
    parser.add_argument("--version", action="version", version=f"emclip {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"emclip.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError, TypeError) as err:
        print(f"emclip {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
