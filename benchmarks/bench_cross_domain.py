"""Benchmark: EM-CLIP vs baselines and ablations across domains (synthetic data, both tasks).

    python benchmarks/bench_cross_domain.py --estimate           # time a few steps, print the projected wall time
    python benchmarks/bench_cross_domain.py                      # the committed results/benchmark_cpu table
    python benchmarks/bench_cross_domain.py --splits all --seeds 0 1 --image-size 128 --steps 300   # the full cpu profile

Runs :func:`emclip.evaluation.run_protocol` (single-source protocol by default) for every task,
then writes ``<out>/<task>/`` (results.csv/.json, per_image.csv/.json, summary.md, checkpoints/,
reused by a second call) and ``<out>/README.md`` with the command, the settings, the wall time
and the comparison tables. The defaults shrink the ``cpu`` profile (64 px images, 100 steps, batch 8,
one seed, the first single-source split of each task) so that the whole grid fits in about
25 minutes on 2 shared CPU cores; pass the profile's own values to run it in full.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

import emclip
from emclip import reports
from emclip.data import get_protocol
from emclip.evaluation import run_protocol
from emclip.fileio import atomic_write_text
from emclip.models import list_models
from emclip.tasks import get_task


def build_profile(args) -> emclip.Profile:
    changes = {"image_size": args.image_size, "train_steps": args.steps, "batch_size": args.batch_size,
               "train_per_domain": args.train_per_domain, "test_per_domain": args.test_per_domain,
               "eval_every": args.steps if args.steps else None, "seeds": tuple(args.seeds)}
    prof = emclip.get_profile(args.profile)
    return prof.replace(**{k: v for k, v in changes.items() if v is not None})


def estimate(args, prof) -> float:
    """Seconds the grid would take: a few training steps per (task, model), extrapolated."""
    from emclip.engine import train_from_profile

    probe = prof.replace(train_steps=3, eval_every=10**6, train_per_domain=prof.batch_size, val_per_domain=2)
    total = 0.0
    for task_name in args.tasks:
        splits = selected_splits(task_name, args)
        domain = get_protocol(task_name, args.protocol)[0].train_domains
        for model in args.models:
            start = time.perf_counter()
            train_from_profile(model, task_name, domain, profile=probe.replace(train_steps=1), progress=False)
            base = time.perf_counter() - start
            start = time.perf_counter()
            train_from_profile(model, task_name, domain, profile=probe, progress=False)
            per_step = max(time.perf_counter() - start - base, 0.0) / 2
            runs = len(splits) * len(args.seeds)
            seconds = runs * (base + per_step * prof.train_steps)
            print(f"{task_name:8s} {model:15s} {per_step:6.2f} s/step, {base:5.1f} s overhead -> "
                  f"{seconds / 60:5.1f} min for {runs} run(s)")
            total += seconds
    print(f"projected training time: {total / 60:.1f} min (+ evaluation)")
    return total


def selected_splits(task_name: str, args) -> list[str]:
    names = [s.name for s in get_protocol(task_name, args.protocol)]
    return names if args.splits == "all" else names[:1] if args.splits == "first" else args.splits


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu", help="base run profile (default cpu)")
    parser.add_argument("--tasks", nargs="+", default=["fundus", "cardiac"])
    parser.add_argument("--models", nargs="+", default=list_models())
    parser.add_argument("--protocol", default="single-source", choices=("single-source", "leave-one-out"))
    parser.add_argument("--splits", nargs="+", default=["first"], help="'first', 'all' or split names")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--image-size", type=int, default=None,
                        help="override the profile's value")
    parser.add_argument("--steps", type=int, default=None,
                        help="override the profile's value")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="override the profile's value")
    parser.add_argument("--train-per-domain", type=int, default=None,
                        help="override the profile's value")
    parser.add_argument("--test-per-domain", type=int, default=None,
                        help="override the profile's value")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="results/benchmark_cpu")
    parser.add_argument("--estimate", action="store_true", help="only time a few steps and project the wall time")
    args = parser.parse_args(argv)
    if len(args.splits) == 1 and args.splits[0] in ("first", "all"):
        args.splits = args.splits[0]
    if args.threads:
        torch.set_num_threads(args.threads)
    prof = build_profile(args)
    print(f"profile {prof.name} with {prof.image_size}px, {prof.train_steps} steps, batch {prof.batch_size}, "
          f"{prof.train_per_domain} train / {prof.test_per_domain} test images per domain; "
          f"threads {torch.get_num_threads()}")
    if args.estimate:
        estimate(args, prof)
        return 0
    out = Path(args.out)
    start = time.perf_counter()
    sections = []
    reused = total_runs = 0
    for task_name in args.tasks:
        task_start = time.perf_counter()
        ckpts = out / task_name / "checkpoints"
        reused += len(list(ckpts.glob("*.pt"))) if ckpts.is_dir() else 0
        total_runs += len(selected_splits(task_name, args)) * len(args.models) * len(args.seeds)
        table = run_protocol(task_name, args.protocol, args.models, seeds=args.seeds, profile=prof,
                             out_dir=out / task_name, splits=selected_splits(task_name, args))
        minutes = (time.perf_counter() - task_start) / 60
        task = get_task(task_name)
        sections.append(
            f"## {task_name} ({', '.join(task.region_names)}; splits {', '.join(sorted(table.split.unique()))}; "
            f"{minutes:.1f} min)\n\n### Dice, out-of-domain\n\n"
            f"{reports.to_markdown(reports.comparison_table(table, 'dice'), index_name='method')}\n\n"
            f"### Dice per unseen target domain (region average)\n\n"
            f"{reports.to_markdown(reports.summary_table(table, 'dice', per_region=False), index_name='method')}\n\n"
            f"### Dice in-domain vs out-of-domain\n\n"
            f"{reports.to_markdown(reports.domain_gap_table(table, 'dice'), index_name='method')}\n\n"
            f"### HD95 (pixels), out-of-domain\n\n"
            f"{reports.to_markdown(reports.comparison_table(table, 'hd95'), index_name='method')}\n\n"
            f"### What the numbers say (Dice)\n\n{reports.describe_effects(table, 'dice')}\n\n"
            f"Full tables: [`{task_name}/summary.md`]({task_name}/summary.md), raw rows: `{task_name}/results.csv`, "
            f"`{task_name}/per_image.csv`.")
    total = (time.perf_counter() - start) / 60
    command = "python benchmarks/bench_cross_domain.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    settings = ", ".join(f"{k}={v}" for k, v in prof.as_dict().items())
    readme = (
        "# Cross-domain benchmark (synthetic data, CPU)\n\n"
        f"Produced by\n\n```bash\n{command.strip()}\n```\n\n"
        f"on {platform.processor() or platform.machine()} ({os.cpu_count()} cores, torch "
        f"{torch.__version__}, {torch.get_num_threads()} threads) in {total:.1f} min wall time "
        f"({reused} of {total_runs} trained models loaded from checkpoints of an earlier call, the rest trained). "
        f"Profile: {settings}. "
        f"Protocol {args.protocol}; seeds {args.seeds}; models {', '.join(args.models)}. "
        "Tiny randomly initialised CLIP (offline default), so these numbers test the pipeline and the relative "
        "behaviour of the components on synthetic domain shift, not the paper's claims.\n\n"
        "Cells: mean over the test images of each domain (± std over seeds when there are several); "
        "out-of-domain = the domains the model never saw, in-domain = test images of its training domain.\n\n"
        + "\n\n".join(sections) + "\n")
    atomic_write_text(out / "README.md", readme)
    print(readme)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
