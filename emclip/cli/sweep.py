"""``emclip sweep NOTEBOOK -g name=v1,v2 ...``: a papermill parameter grid over one notebook."""

from __future__ import annotations

from emclip.cli.common import non_negative_float, positive_int


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "sweep", help="execute a notebook over a parameter grid (papermill, parallel, resumable)",
        description="Execute NOTEBOOK once per point of the grid; each run writes its executed notebook "
        "and metrics.json under OUTPUT/<run name>; finished runs are skipped on the next call; "
        "the gathered table is OUTPUT/sweep.csv.")
    parser.add_argument("notebook", help="notebook to sweep, e.g. notebooks/04_em_aggregation.ipynb")
    parser.add_argument("-g", "--grid", action="append", default=[], metavar="NAME=V1,V2",
                        help="a parameter and its values (Python literals or plain strings); repeat per parameter")
    parser.add_argument("--jobs", "-j", type=positive_int, default=None, help="parallel runs (default: min(2, CPUs))")
    parser.add_argument("--output", "-o", default=None, help="sweep folder (default: results/sweeps/<notebook>)")
    parser.add_argument("--profile", default=None, help="ci, cpu, gpu or auto (default: $EMCLIP_PROFILE or auto)")
    parser.add_argument("--force", action="store_true", help="execute again the runs that already finished")
    parser.add_argument("--timeout", type=non_negative_float, default=1800,
                        help="per-cell timeout in seconds (default 1800; 0 for none)")
    parser.add_argument("--plot", default=None, metavar="METRIC",
                        help="also save OUTPUT/<METRIC>.png: METRIC against the first grid parameter")
    parser.set_defaults(func=run)


def run(args) -> int:
    from emclip.errors import ConfigError
    from emclip.sweep import parse_grid, run_sweep

    grid = parse_grid(args.grid)
    grid_names = list(grid)
    if args.plot and not grid_names:
        raise ConfigError("--plot needs at least one -g NAME=V1,V2 grid parameter to put on the x axis.")
    result = run_sweep(args.notebook, grid, output=args.output, profile=args.profile, jobs=args.jobs,
                       force=args.force, timeout=args.timeout or None)
    table = result.table
    print(f"\n{len(result.executed)} run(s) executed, {len(result.skipped)} already done, "
          f"{len(result.failed)} failed")
    if len(table):
        print(table.drop(columns=["notebook", "error"], errors="ignore").to_string(index=False))
        print(f"\nTable: {result.output / 'sweep.csv'}")
    if args.plot and len(table):
        from emclip.viz.sweep import plot_metric_vs_param

        fig = plot_metric_vs_param(table, args.plot, grid_names[0], hue=grid_names[1] if len(grid_names) > 1 else None)
        path = result.output / f"{args.plot}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        print(f"Plot: {path}")
    for failed in result.failed:
        print(f"FAILED {failed['params']}: {failed['error']}\n  executed notebook: {failed['output']}")
    return 0 if result.ok else 1
