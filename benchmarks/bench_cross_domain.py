"""Benchmark: does the kit's pretrained encoder help EM-CLIP on unseen domains? (synthetic data, CPU)

    python benchmarks/bench_cross_domain.py --estimate        # time a few runs, print the projected wall time
    python benchmarks/bench_cross_domain.py                   # the full grid (resumable: run it again after a kill)
    python benchmarks/bench_cross_domain.py --tasks cardiac --protocols single-source --seeds 0 --methods emclip emclip-random
    # a config change for every method whose config has the section; runs record their config, so use another --out
    python benchmarks/bench_cross_domain.py --methods emclip emclip-random --set 'decoder.stem_channels=[]' --out results/cross_domain_no_stem_cpu
    # the single-source figures shipped beside the weights (notebook 02, the model card), from the runs under --out
    python benchmarks/bench_cross_domain.py --methods emclip emclip-random --protocols single-source --weights-figures emclip/clip/weights/emclip-tiny-synth-v2.crossdomain.json

The grid: both tasks; the single-source protocol (train on one domain, test on the other three)
from every domain and the leave-one-domain-out protocol (train on three, test on the fourth);
seeds 0, 1, 2; the ``cpu`` run profile; the methods of :data:`METHODS`:

========================  ==============================================================
``emclip``                EM-CLIP with the kit's pretrained encoder (``synth-v2``)
``emclip-random``         EM-CLIP with the same encoder randomly initialised (the control)
``emclip-no-em``          without EM aggregation (pretrained encoder)
``emclip-no-text``        without text guidance (learned class queries; pretrained encoder)
``clip-linear``           the pretrained encoder + a linear head
``unet``                  a U-Net from scratch
``unet-stylerand``        the same U-Net trained with style randomisation (BigAug-style:
                          every training image gets a fresh style from
                          :mod:`emclip.data.style_prior`), isolating "diverse data" from
                          "vision-language pretraining"
========================  ==============================================================

The full grid is 2 tasks x 8 splits x 7 methods x 3 seeds = 336 training runs. One EM-CLIP run of the
``cpu`` profile (train on one domain, score all four) took 1.5-7 min on the kit's shared 2-core CPU
(2 threads, other jobs running), so the grid is a matter of 8-40 hours there; ``--estimate`` measures it
on your machine.

Every finished run writes its own result file (``<out>/runs/<task>/<protocol>/<split>/<method>/seed<k>.json``,
atomically) before the next starts, and a running one checkpoints under ``<out>/partial/``, so an
interrupted benchmark resumes where it stopped. A result file records the method's complete model
config; a run whose config (or profile) has changed since, e.g. a new default, is run again. After
each run the tables are rewritten: ``<out>/results.csv`` (tidy: one row per run, target domain and
region), ``<out>/README.md`` (mean ± std over seeds of the Dice on unseen domains, per region and per target domain, for each
task and protocol). Design choices, not from the paper: the grid, the seeds, the profile.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path

import pandas as pd
import torch

import emclip
from emclip import reports
from emclip.data import get_protocol
from emclip.fileio import atomic_write, atomic_write_json, atomic_write_text
from emclip.tasks import get_task

PRETRAINED = "synth-v2"
#: factory model -> the CLIP weights it runs with here (None: the config's own, or no CLIP)
METHODS = {
    "emclip": PRETRAINED,
    "emclip-random": None,  # its config: clip.pretrained = "random"
    "emclip-no-em": PRETRAINED,
    "emclip-no-text": PRETRAINED,
    "clip-linear": PRETRAINED,
    "unet": None,
    "unet-stylerand": None,  # its config: train.augment = "style"
}
PROTOCOLS = ("single-source", "leave-one-out")


#: (section, key, value) from ``--set``: config changes applied to every method whose config has the section
SETTINGS: list[tuple[str, str, object]] = []


def parse_setting(text: str) -> tuple[str, str, object]:
    """``"decoder.stem_channels=[]"`` -> ``("decoder", "stem_channels", [])`` (the value read as JSON,
    else kept as a string)."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.partition(".")
    if not (sep and dot and section and key):
        raise argparse.ArgumentTypeError(f"--set {text!r}: expected SECTION.KEY=VALUE, e.g. decoder.stem_channels=[]")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return section, key, value


def model_overrides(method: str) -> dict:
    """Factory overrides of one method: the CLIP weights (``config["clip"]["pretrained"]``) and the
    ``--set`` changes of the sections its config has (a U-Net has no ``decoder`` section, say)."""
    from emclip.models import get_model_config

    overrides = {"clip": {"pretrained": METHODS[method]}} if METHODS[method] else {}
    sections = get_model_config(method) if SETTINGS else {}
    for section, key, value in SETTINGS:
        if isinstance(sections.get(section), dict):
            overrides.setdefault(section, {})[key] = value
    return overrides


def run_one(task, split, method: str, seed: int, prof, out: Path) -> list[dict]:
    """Train one (split, method, seed), score it on every domain's test set; the tidy rows."""
    from emclip.engine import train_from_profile
    from emclip.evaluation import evaluate_model
    from emclip.evaluation.scoring import domain_test_set

    partial = out / "partial" / f"{task.name}_{split.name.replace('->', '-')}_{method}_seed{seed}.pt"
    partial.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = train_from_profile(method, task, list(split.train_domains), profile=prof, seed=seed,
                                checkpoint_path=partial, progress=False, **model_overrides(method))
    train_seconds = time.perf_counter() - start
    rows = []
    for domain in task.domains:
        dataset = domain_test_set(task, domain, "synthetic", None, prof.image_size, prof.test_per_domain)
        per_image = evaluate_model(result.model, task, dataset, device="cpu", batch_size=prof.batch_size)
        for region, group in per_image.groupby("region", sort=False):
            rows.append({"task": task.name, "split": split.name, "source_domains": "+".join(split.train_domains),
                         "method": method, "seed": seed, "target_domain": domain,
                         "in_domain": domain in split.train_domains, "region": region, "n": len(group),
                         "dice": float(group.dice.mean()), "hd95": float(group.hd95.mean()),
                         "assd": float(group.assd.mean()), "train_seconds": round(train_seconds, 1),
                         "seconds": round(time.perf_counter() - start, 1)})
    partial.unlink(missing_ok=True)
    return rows


def method_config(method: str, prof) -> dict:
    """The complete model config a method runs with here (JSON round-tripped, as stored in run files)."""
    from paired_runs import model_config

    return model_config(prof, method, **model_overrides(method))


def is_current(path: Path, method: str, prof) -> bool:
    """A finished run counts only if it ran the method's current config and profile (else it is redone)."""
    if not path.is_file():
        return False
    record = json.loads(path.read_text())
    return (record.get("model_config") == method_config(method, prof)
            and record.get("profile") == json.loads(json.dumps(prof.as_dict())))


def result_path(out: Path, task: str, protocol: str, split: str, method: str, seed: int) -> Path:
    return out / "runs" / task / protocol / split.replace("->", "-") / method / f"seed{seed}.json"


def gather(out: Path) -> pd.DataFrame:
    """Every finished run's rows (with ``protocol``) as one tidy frame."""
    frames = []
    for path in sorted((out / "runs").glob("*/*/*/*/seed*.json")):
        record = json.loads(path.read_text())
        frames.append(pd.DataFrame(record["rows"]).assign(protocol=record["protocol"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def paired_control(df: pd.DataFrame, method: str = "emclip", control: str = "emclip-random") -> pd.DataFrame:
    """Unseen-domain Dice (regions and unseen domains averaged) of ``method`` minus ``control``, paired
    by split and seed: one row per split (mean difference, pairs where ``method`` is higher), and ``all``."""
    unseen = (df[~df.in_domain & df.method.isin([method, control])]
              .groupby(["split", "seed", "method"]).dice.mean().unstack("method").dropna())
    if unseen.empty or method not in unseen or control not in unseen:
        return pd.DataFrame()
    diff = unseen[method] - unseen[control]

    def row(d: pd.Series) -> dict:
        return {method: unseen.loc[d.index, method].mean(), control: unseen.loc[d.index, control].mean(),
                "mean difference": d.mean(), "pairs higher": f"{int((d > 0).sum())} of {len(d)}"}

    rows = {split: row(d) for split, d in diff.groupby(level="split")}
    rows["all"] = row(diff)
    return pd.DataFrame(rows).T.rename_axis("split")


def weights_figures(frame: pd.DataFrame) -> dict:
    """The single-source runs of ``emclip`` and ``emclip-random`` in the form shipped beside the weights
    (``emclip/clip/weights/*.crossdomain.json``, read by notebook 02): ``{"task|source|weights|seed":
    {"per_domain": {domain: Dice, regions averaged}, "unseen": mean over the other domains, "seconds": s}}``."""
    names = {"emclip": PRETRAINED, "emclip-random": "random"}
    df = frame[(frame.protocol == "single-source") & frame.method.isin(list(names))]
    runs = {}
    for (task, source, method, seed), run in df.groupby(["task", "source_domains", "method", "seed"]):
        per_domain = run.groupby("target_domain").dice.mean()
        runs[f"{task}|{source}|{names[method]}|{seed}"] = {
            "per_domain": {domain: float(d) for domain, d in per_domain.items()},
            "seconds": float(run.seconds.max()),
            "unseen": float(per_domain.drop(source).mean())}
    return runs


def tables(frame: pd.DataFrame) -> str:
    """Markdown sections: per task and protocol, the method comparison and the per-domain table."""
    sections = []
    for (task, protocol), df in frame.groupby(["task", "protocol"], sort=False):
        seeds = sorted(df.seed.unique())
        sections.append(
            f"## {task}, {protocol} ({df.split.nunique()} splits, seeds {', '.join(map(str, seeds))})\n\n"
            "### Dice on unseen domains (mean ± std over seeds)\n\n"
            f"{reports.to_markdown(reports.comparison_table(df, 'dice', reference='emclip'), index_name='method')}\n\n"
            "### Dice per unseen target domain (regions averaged)\n\n"
            f"{reports.to_markdown(reports.summary_table(df, 'dice', per_region=False), index_name='method')}\n\n"
            "### HD95 (pixels) on unseen domains\n\n"
            f"{reports.to_markdown(reports.summary_table(df, 'hd95', per_region=False), index_name='method')}")
        paired = paired_control(df)
        if not paired.empty:
            sections[-1] += ("\n\n### EM-CLIP (pretrained) minus EM-CLIP (random encoder), paired by split and seed\n\n"
                             + reports.to_markdown(paired.round(3), index_name="split"))
    return "\n\n".join(sections)


def write_report(out: Path, frame: pd.DataFrame, command: str, prof, seconds: float, todo: int) -> None:
    with atomic_write(out / "results.csv") as tmp:
        frame.to_csv(tmp, index=False)
    status = "complete" if todo == 0 else f"**incomplete: {todo} run(s) still to do** (run the command again)"
    per_run = frame.groupby(["task", "protocol", "split", "method", "seed"]).seconds.max()
    atomic_write_text(out / "README.md", (
        "# Cross-domain benchmark: pretrained vs random encoder (synthetic data, CPU)\n\n"
        f"Produced by\n\n```bash\n{command}\n```\n\non {platform.processor() or platform.machine()} "
        f"({os.cpu_count()} cores, torch {torch.__version__}, {torch.get_num_threads()} threads); "
        f"{len(per_run)} runs, {per_run.sum() / 60:.0f} min of training and scoring in all (each run timed on its "
        f"own, some in parallel; {seconds / 60:.1f} min in this call); {status}. Profile: "
        + ", ".join(f"{k}={v}" for k, v in prof.as_dict().items()) + ". Methods: see the script's docstring; "
        f"`emclip` uses the kit's pretrained `emclip-tiny` weights (`{PRETRAINED}`), `emclip-random` the same "
        "architecture randomly initialised, `unet-stylerand` the U-Net trained with style-prior augmentation.\n\n" + tables(frame) + "\n"))


def grid(args) -> list[tuple]:
    out = []
    for task_name in args.tasks:
        task = get_task(task_name)
        for protocol in args.protocols:
            for split in get_protocol(task.name, protocol):
                if args.splits and split.name not in args.splits:
                    continue
                for method in args.methods:
                    for seed in args.seeds:
                        out.append((task, protocol, split, method, seed))
    return out


def estimate(args, prof, out: Path) -> None:
    """Time one run per (task, method) at the full profile and project the whole grid."""
    runs = grid(args)
    per_kind = {}
    for task, _protocol, split, method, seed in runs:
        key = (task.name, method)
        if key in per_kind:
            continue
        start = time.perf_counter()
        run_one(task, split, method, seed, prof, out / "estimate")
        per_kind[key] = time.perf_counter() - start
        print(f"{task.name:8s} {method:15s} one run: {per_kind[key]:6.1f} s", flush=True)
    total = sum(per_kind[(task.name, method)] for task, _, _, method, _ in runs)
    print(f"{len(runs)} runs, projected {total / 3600:.1f} h on this machine ({torch.get_num_threads()} threads)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="cpu")
    parser.add_argument("--tasks", nargs="+", default=["fundus", "cardiac"])
    parser.add_argument("--protocols", nargs="+", default=list(PROTOCOLS), choices=PROTOCOLS)
    parser.add_argument("--splits", nargs="+", default=None, help="split names (default: every split)")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--out", default="results/cross_domain_cpu")
    parser.add_argument("--estimate", action="store_true", help="time one run per task and method, project the grid")
    parser.add_argument("--weights-figures", type=Path, default=None, metavar="JSON",
                        help="rewrite the runs of the figures shipped beside the weights (e.g. emclip/clip/weights/"
                             "emclip-tiny-synth-v2.crossdomain.json) from the single-source runs under --out")
    parser.add_argument("--set", dest="settings", action="append", type=parse_setting, default=[],
                        metavar="SECTION.KEY=VALUE",
                        help="change a model-config key of every method that has the section (value as JSON), e.g. "
                             "--set decoder.stem_channels=[]; use another --out: runs record their config")
    args = parser.parse_args(argv)
    SETTINGS[:] = args.settings
    if args.threads:
        torch.set_num_threads(args.threads)
    prof = emclip.get_profile(args.profile)
    out = Path(args.out)
    if args.estimate:
        estimate(args, prof, out)
        return 0
    command = "python benchmarks/bench_cross_domain.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    runs = grid(args)
    todo = [r for r in runs if not is_current(result_path(out, r[0].name, r[1], r[2].name, r[3], r[4]), r[3], prof)]
    print(f"{len(runs)} runs in the grid, {len(runs) - len(todo)} already done with the current configs, "
          f"{len(todo)} to do", flush=True)
    for index, (task, protocol, split, method, seed) in enumerate(todo, start=1):
        rows = run_one(task, split, method, seed, prof, out)
        atomic_write_json(result_path(out, task.name, protocol, split.name, method, seed),
                          {"protocol": protocol, "profile": prof.as_dict(),
                           "model_config": method_config(method, prof), "rows": rows})
        unseen = pd.DataFrame(rows).query("not in_domain").dice.mean()
        print(f"[{index}/{len(todo)}] {task.name} {protocol} {split.name} {method} seed {seed}: "
              f"unseen Dice {unseen:.3f} ({rows[0]['seconds']:.0f} s)", flush=True)
        write_report(out, gather(out), command, prof, time.perf_counter() - start, len(todo) - index)
    if not todo and runs:
        write_report(out, gather(out), command, prof, 0.0, 0)
    if args.weights_figures is not None:
        shipped = json.loads(args.weights_figures.read_text())
        shipped["runs"] = weights_figures(gather(out))
        atomic_write_json(args.weights_figures, shipped)
        print(f"{len(shipped['runs'])} single-source runs written to {args.weights_figures}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
