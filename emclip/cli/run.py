"""``emclip run``: the main job. Execute every notebook in order and write results/summary.md."""

from __future__ import annotations

from emclip.cli.common import non_negative_float


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "run", help="execute every notebook (papermill) and write executed copies, HTML, figures, summary.md",
        description="Execute notebooks/NN_*.ipynb in order on the embedded default parameters; write the "
        "executed notebooks, HTML copies, figures, metrics records and summary.md under OUTPUT.")
    parser.add_argument("--output", "-o", default="results", help="output folder (default: results)")
    parser.add_argument("--only", nargs="+", default=None, metavar="NN",
                        help="run only these notebooks (number prefixes or name parts, e.g. --only 03 05)")
    parser.add_argument("--profile", default=None, help="ci, cpu, gpu or auto (default: $EMCLIP_PROFILE or auto)")
    parser.add_argument("--notebooks", default="notebooks", help="folder of the notebooks (default: notebooks)")
    parser.add_argument("--timeout", type=non_negative_float, default=1800,
                        help="per-cell timeout in seconds (default 1800; 0 for none)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from emclip.cli.common import resolve_profile
    from emclip.fileio import check_output_path
    from emclip.runner import run_notebooks

    check_output_path(args.output, "dir")
    resolve_profile(args.profile)
    runs = run_notebooks(args.notebooks, args.output, only=args.only, profile=args.profile, timeout=args.timeout or None)
    return 0 if all(r.ok for r in runs) else 1
