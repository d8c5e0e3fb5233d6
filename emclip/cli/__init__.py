"""The ``emclip`` command line: ``emclip --help`` lists the sub-commands.

Each sub-command lives in its own module under ``emclip.cli`` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a function taking the parsed
``argparse.Namespace`` and returning an exit code). Heavy imports happen inside ``func``.

Errors: a user's error (see :data:`emclip.cli.common.USER_ERRORS`) prints one line, ``emclip
COMMAND: error: <problem and fix>``, and exits with 2; Ctrl-C exits with 130. ``--debug`` (before
or after the sub-command) adds the traceback. Any other exception is a bug and shows its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

# Sub-command modules, in the order --help lists them.
COMMANDS = (
    "info",
    "prepare",
    "weights",
    "train",
    "evaluate",
    "run",
    "sweep",
)
DEBUG_HELP = "on an error, show the full traceback as well as the one-line message"


def build_parser() -> argparse.ArgumentParser:
    from emclip import __version__

    parser = argparse.ArgumentParser(
        prog="emclip",
        description="EM-CLIP teaching kit: data, CLIP features, EM aggregation, training and "
        "cross-domain evaluation for medical image segmentation.",
        epilog="Errors are printed as one line with the fix; add --debug for the traceback.",
    )
    parser.add_argument("--version", action="version", version=f"emclip {__version__}")
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"emclip.cli.{name}").register(subparsers)
    for sub in subparsers.choices.values():  # `emclip train ... --debug` works too
        sub.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP)
    return parser


def main(argv: list[str] | None = None) -> int:
    from emclip.cli.common import EXIT_INTERRUPTED, EXIT_USER_ERROR, USER_ERRORS, error_line

    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print(f"emclip {args.command}: interrupted (Ctrl-C).", file=sys.stderr)
        return EXIT_INTERRUPTED
    except USER_ERRORS as err:
        if args.debug:
            traceback.print_exc()
        print(f"emclip {args.command}: error: {error_line(err)}", file=sys.stderr)
        return EXIT_USER_ERROR


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
