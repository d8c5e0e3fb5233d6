"""Does the shipped CLIP help EM-CLIP on unseen domains? Pretrained weights against the random control.

For each task (trained on its first domain), seed and decoder stem input, EM-CLIP is trained in
the ``cpu`` profile twice, once on ``--weights`` (default the shipped ``synth-v2``; a tag or a
weights file, ``clip.pretrained = WEIGHTS``) and once
on the same architecture at random initialisation (``"random"``), and scored on the test split of
every domain. Prints, per task and stem input, the unseen-domain Dice of both and the paired
difference per seed; writes every run to ``--out`` (JSON, resumable: finished runs are kept).

    python benchmarks/bench_pretrained_vs_random.py --seeds 0 1 2 3 4 --stem-input centre standardise local

The committed ``results/pretrained_vs_random.json`` holds the runs of the earlier weights ``synth-v1``
(no longer shipped); ``--weights synth-v1`` prints their table from the stored runs without training.

About 40 s per run on one core of the kit's 2-core machine (cpu profile: 200 steps at 96 px).
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

from paired_runs import measure, model_config, paired_row, start

from emclip.tasks import get_task

RANDOM = "random"


def run_key(task: str, source: str, stem: str, weights: str, seed: int) -> str:
    return f"{task}|{source}|{stem}|{weights}|{seed}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["fundus", "cardiac"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--stem-input", nargs="+", default=["centre", "standardise", "local"], dest="stems")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--weights", default="synth-v2", help="the pretrained weights (tag or file)")
    parser.add_argument("--out", type=Path, default=Path("results/pretrained_vs_random.json"))
    args = parser.parse_args(argv)
    profile, store = start(args.threads, args.out)
    name = args.weights
    rows = [f"| task, stem input | random | {name} | {name} in-domain | {name} - random per seed | mean difference |",
            "|---|---|---|---|---|---|"]
    for task_name in args.tasks:
        source = get_task(task_name).domains[0]
        for stem in args.stems:
            overrides = {w: {"clip": {"pretrained": w}, "decoder": {"stem_input": stem}} for w in (RANDOM, name)}
            runs = {w: [store.get_or_run(run_key(task_name, source, stem, w, seed),
                                         partial(measure, task_name, seed, profile, **overrides[w]),
                                         model_config(profile, **overrides[w]))
                        for seed in args.seeds] for w in (RANDOM, name)}
            rows.append(paired_row(f"{task_name}, {stem}", runs[RANDOM], runs[name]))
    print("\nUnseen-domain Dice of EM-CLIP (cpu profile, trained on the first domain), mean ± std over seeds:\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
