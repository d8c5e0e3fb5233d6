"""Does the shipped CLIP help EM-CLIP on unseen domains? synth-v1 against the random control.

For each task (trained on its first domain), seed and decoder stem input, EM-CLIP is trained in
the ``cpu`` profile twice, once on the shipped weights (``clip.pretrained = "synth-v1"``) and once
on the same architecture at random initialisation (``"random"``), and scored on the test split of
every domain. Prints, per task and stem input, the unseen-domain Dice of both and the paired
difference per seed; writes every run to ``--out`` (JSON, resumable: finished runs are kept).

    python benchmarks/bench_pretrained_vs_random.py --seeds 0 1 2 3 4 --stem-input centre standardise

About 40 s per run on one core of the kit's 2-core machine (cpu profile: 200 steps at 96 px).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from emclip.engine import train_from_profile
from emclip.evaluation import evaluate_model
from emclip.evaluation.scoring import domain_test_set
from emclip.fileio import atomic_write_text
from emclip.runtime import get_profile
from emclip.tasks import get_task

WEIGHTS = ("random", "synth-v1")


def run_key(task: str, source: str, stem: str, weights: str, seed: int) -> str:
    return f"{task}|{source}|{stem}|{weights}|{seed}"


def measure(task_name: str, stem: str, weights: str, seed: int, profile) -> dict:
    """Train EM-CLIP on the task's first domain and return the Dice per test domain and the unseen mean."""
    task = get_task(task_name)
    source = task.domains[0]
    start = time.perf_counter()
    result = train_from_profile("emclip", task, [source], profile=profile, seed=seed, progress=False,
                                clip={"pretrained": weights}, decoder={"stem_input": stem})
    dice = {}
    for domain in task.domains:
        test = domain_test_set(task, domain, "synthetic", None, profile.image_size, profile.test_per_domain)
        dice[domain] = float(evaluate_model(result.model, task, test, device="cpu").dice.mean())
    unseen = statistics.mean(v for d, v in dice.items() if d != source)
    return {"per_domain": dice, "unseen": unseen, "seconds": round(time.perf_counter() - start, 1)}


def summarise(runs: dict, tasks, stems, seeds) -> list[str]:
    lines = ["| task | stem input | random | synth-v1 | synth-v1 - random per seed | mean difference |",
             "|---|---|---|---|---|---|"]
    for task_name in tasks:
        source = get_task(task_name).domains[0]
        for stem in stems:
            pairs = [(runs.get(run_key(task_name, source, stem, "random", s)),
                      runs.get(run_key(task_name, source, stem, "synth-v1", s))) for s in seeds]
            pairs = [(a["unseen"], b["unseen"]) for a, b in pairs if a and b]
            if not pairs:
                continue
            rand, pre = [a for a, _ in pairs], [b for _, b in pairs]
            diffs = [b - a for a, b in pairs]
            spread = lambda xs: f" ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else ""  # noqa: E731
            lines.append(f"| {task_name} | {stem} | {statistics.mean(rand):.3f}{spread(rand)} | "
                         f"{statistics.mean(pre):.3f}{spread(pre)} | {', '.join(f'{d:+.3f}' for d in diffs)} | "
                         f"{statistics.mean(diffs):+.3f} ({sum(d > 0 for d in diffs)} of {len(diffs)} seeds higher) |")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["fundus", "cardiac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--stem-input", nargs="+", default=["centre", "standardise"], dest="stems")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/pretrained_vs_random.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    profile = get_profile("cpu")
    runs = json.loads(args.out.read_text()) if args.out.exists() else {}
    for task_name in args.tasks:
        source = get_task(task_name).domains[0]
        for stem in args.stems:
            for seed in args.seeds:
                for weights in WEIGHTS:
                    key = run_key(task_name, source, stem, weights, seed)
                    if key not in runs:
                        runs[key] = measure(task_name, stem, weights, seed, profile)
                        args.out.parent.mkdir(parents=True, exist_ok=True)
                        atomic_write_text(args.out, json.dumps(runs, indent=1))
                    print(f"{key}: unseen {runs[key]['unseen']:.3f} ({runs[key]['seconds']} s)", flush=True)
    print("\nUnseen-domain Dice of EM-CLIP (cpu profile, trained on the first domain), mean ± std over seeds:\n")
    print("\n".join(summarise(runs, args.tasks, args.stems, args.seeds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
