"""What does each design choice of EM-CLIP do on unseen domains? Paired runs against the default.

Each variant is one change to the ``emclip`` model config (or to the training augmentation); it is
trained in the ``cpu`` profile on the task's first domain with the same seeds as the default and
scored on the test split of every domain. Prints, per variant, the unseen-domain Dice of the
default and of the variant (mean ± std over seeds), the variant's in-domain Dice, and the paired
difference per seed; writes every run to ``--out`` (JSON, resumable).

    python benchmarks/bench_variants.py --group method --tasks fundus --seeds 0 1 2
    python benchmarks/bench_variants.py --group augment --tasks fundus cardiac --seeds 0 1 2
    python benchmarks/bench_variants.py --group encoder --base '{"augment": "style"}' --seeds 0 1 2 3 4

``--base`` (JSON) changes the default and every variant alike; such runs are keyed by it.

Groups:

- ``method``: the EM and text-guidance options of the method-fidelity work (EMANet-exact EM with
  no gradient through the iterations, l2-normalised EM input, centres tied to the text, linear or
  frozen text projection, a background prompt);
- ``encoder``: the shipped pretrained CLIP weights (the default, ``synth-v2``) against the same
  network randomly initialised (as in ``bench_pretrained_vs_random.py``, here with ``--base``);
- ``augment``: the training augmentation's appearance ranges. The default gamma (0.7..1.4) and
  contrast (0.8..1.25) ranges overlap the benchmark's target styles (gamma 0.65..1.4, contrast
  0.65..1.35, :mod:`emclip.data.styles`); ``narrow`` keeps the jitter well inside them, ``geometric``
  has no appearance change at all, ``style`` draws a fresh style from the broad prior per image.

About 30-40 s per run on one core of the kit's 2-core machine (cpu profile: 200 steps at 96 px).
"""

from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from paired_runs import RunStore, measure, model_config, paired_row, start

from emclip.models.factory import merge
from emclip.tasks import get_task

NARROW = {"mode": "both", "gamma": [0.9, 1.1], "contrast": [0.95, 1.05], "brightness": 0.03, "channel_gain": 0.02}
GROUPS = {
    "method": {
        "em.backprop=none (EMANet-exact)": {"em": {"backprop": "none"}},
        "em.input_norm=l2": {"em": {"input_norm": "l2"}},
        "text.tie_centres=true": {"text": {"tie_centres": True}},
        "text.projection=linear": {"text": {"projection": "linear"}},
        "text.projection=fixed": {"text": {"projection": "fixed"}},
        "text.background=true": {"text": {"background": True}},
    },
    "encoder": {
        "clip.pretrained=random": {"clip": {"pretrained": "random"}},
    },
    "augment": {
        "augment=narrow": {"augment": NARROW},
        "augment=geometric": {"augment": "geometric"},
        "augment=style": {"augment": "style"},
    },
}


def seed_runs(store: RunStore, task_name: str, name: str, overrides: dict, base: dict, seeds, profile) -> list[dict]:
    """One variant's runs, seed by seed (stored ones reused while their model config is current)."""
    source = get_task(task_name).domains[0]
    label = f"[{json.dumps(base, sort_keys=True)}]" if base else ""
    merged = merge(base, overrides)
    config = model_config(profile, **merged)
    return [store.get_or_run(f"{task_name}|{source}|{label}{name}|{seed}",
                             partial(measure, task_name, seed, profile, **merged), config) for seed in seeds]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", choices=sorted(GROUPS), required=True)
    parser.add_argument("--variants", nargs="+", help="a subset of the group's variants (default: all)")
    parser.add_argument("--tasks", nargs="+", default=["fundus"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--base", type=json.loads, default={},
                        help='JSON overrides applied to the default and every variant, e.g. \'{"augment": "style"}\'')
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path("results/variants.json"))
    args = parser.parse_args(argv)
    variants = GROUPS[args.group]
    unknown = sorted(set(args.variants or []) - set(variants))
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; the {args.group} group has: {', '.join(variants)}")
    chosen = {name: variants[name] for name in (args.variants or variants)}
    profile, store = start(args.threads, args.out)
    rows = ["| variant | task | default | variant | variant in-domain | variant - default per seed | mean difference |",
            "|---|---|---|---|---|---|---|"]
    for task_name in args.tasks:
        default = seed_runs(store, task_name, "default", {}, args.base, args.seeds, profile)
        for name, overrides in chosen.items():
            variant = seed_runs(store, task_name, name, overrides, args.base, args.seeds, profile)
            rows.append(paired_row(name, default, variant, extra=f" {task_name} |"))
    print(f"\nUnseen-domain Dice of EM-CLIP (cpu profile, trained on the first domain), mean ± std over seeds "
          f"{', '.join(map(str, args.seeds))}{'; both with ' + json.dumps(args.base) if args.base else ''}:\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
