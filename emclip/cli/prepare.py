"""``emclip prepare --task fundus --root DIR``: check a downloaded real-data tree.

Prints what was found per domain and what is missing; exits 1 when the tree is incomplete.
Where to download the data and how to lay it out: ``data/README.md``.
"""

from __future__ import annotations

from emclip.cli.common import task_name


def register(subparsers) -> None:
    parser = subparsers.add_parser("prepare", help="check a downloaded Fundus-DG / M&Ms tree and report what is missing")
    parser.add_argument("--task", required=True, type=task_name, help="fundus or cardiac")
    parser.add_argument("--root", default=None, help="data root (default: $EMCLIP_DATA_DIR)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from emclip.data.checks import check_tree
    from emclip.errors import ConfigError
    from emclip.runtime import DATA_DIR_ENV, data_dir

    root = data_dir(args.root)
    if root is None:
        raise ConfigError(f"Give --root DIR or set {DATA_DIR_ENV}; see data/README.md for the layout.")
    report = check_tree(args.task, root)
    print("\n".join(report.lines()))
    if not report.ok:
        print("See data/README.md for where to download the data and the exact layout.")
    return 0 if report.ok else 1
