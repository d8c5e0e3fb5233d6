"""``emclip evaluate``: cross-domain tables from saved checkpoints or from a whole protocol.

Examples::

    emclip evaluate --task fundus --checkpoints results/checkpoints/*.pt --out results/eval
    emclip evaluate --task cardiac --protocol single-source --models emclip unet \\
        --seeds 0 1 --profile ci --out results/eval_cardiac

Writes ``results.csv/.json`` (one row per method, seed, split, target domain, region),
``summary.md`` (the comparison, per-domain and gap tables) and, for a protocol,
``per_image.csv/.json`` and the checkpoints it trained (reused on the next call). The output
folder is checked before any work. With several checkpoints, one that cannot be evaluated
(missing, damaged, for another task) is reported by name and reason, the others' results are
written, and the exit code is 1.
"""

from __future__ import annotations

import sys

from emclip.cli.common import task_name
from emclip.data.splits import PROTOCOLS


def register(subparsers) -> None:
    parser = subparsers.add_parser("evaluate", help="evaluate checkpoints or run a cross-domain protocol; "
                                   "writes CSV/JSON/Markdown tables")
    parser.add_argument("--task", required=True, type=task_name, help="fundus or cardiac")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoints", nargs="+", metavar="PATH", help="saved model checkpoints to evaluate")
    what.add_argument("--protocol", choices=PROTOCOLS, help="train (or reuse) and evaluate every split")
    parser.add_argument("--models", nargs="+", default=None, help="model names (default: every factory model)")
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="training seeds (default: the profile's)")
    parser.add_argument("--splits", nargs="+", default=None, help="only these splits of the protocol")
    parser.add_argument("--targets", nargs="+", default=None, help="target domains (default: all)")
    parser.add_argument("--profile", default=None, help="protocol only: ci, cpu, gpu or auto (default: "
                        "$EMCLIP_PROFILE); checkpoints are evaluated at their recorded sizes")
    parser.add_argument("--source", default=None, choices=("synthetic", "real"),
                        help="data source (default: synthetic for a protocol, each checkpoint's recorded source)")
    parser.add_argument("--root", default=None, help="real data root (default: $EMCLIP_DATA_DIR)")
    parser.add_argument("--out", default=None, help="output folder (default: results/evaluation/<task>_<what>)")
    parser.add_argument("--metrics", nargs="+", default=["dice", "hd95"], help="metrics of the Markdown tables")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from emclip import reports
    from emclip.cli.common import check_domains, check_models, resolve_profile
    from emclip.fileio import check_output_path
    from emclip.runlog import results_dir

    what = args.protocol or "checkpoints"
    out = Path(args.out) if args.out else results_dir("evaluation") / f"{args.task}_{what}"
    check_output_path(out, "dir")
    if args.targets:
        check_domains(args.task, args.targets)
    resolve_profile(args.profile)
    skipped = []
    if args.checkpoints:
        from emclip.evaluation import evaluate_checkpoints

        chosen = {"source": args.source} if args.source else {}  # default: each checkpoint's recorded source
        table = evaluate_checkpoints(args.checkpoints, args.task, domains=args.targets, root=args.root,
                                     device=args.device, **chosen)  # skips bad files, saying why
        skipped = table.attrs.get("skipped", [])
        reports.save_frame(table, out, "results")
        reports.write_report(table, out, metrics=args.metrics, title=f"{args.task}: checkpoints")
    else:
        from emclip.evaluation import run_protocol
        from emclip.models import list_models

        models = check_models(args.models or list_models())
        table = run_protocol(args.task, args.protocol, models, seeds=args.seeds, profile=args.profile,
                             source=args.source or "synthetic", root=args.root, out_dir=out,
                             target_domains=args.targets, progress=not args.quiet, splits=args.splits,
                             device=args.device)
        reports.write_report(table, out, metrics=args.metrics, title=f"{args.task}: {args.protocol}")
    print(reports.to_markdown(reports.comparison_table(table, args.metrics[0]), index_name="method")
          if (~table["in_domain"].astype(bool)).any() else table.to_string())
    print(f"\nwrote {out}/results.csv, results.json and summary.md")
    if skipped:
        print(f"emclip evaluate: {len(skipped)} of {len(args.checkpoints)} checkpoint(s) skipped (listed above); "
              "the tables hold the others.", file=sys.stderr)
        return 1
    return 0
