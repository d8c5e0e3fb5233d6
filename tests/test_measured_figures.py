"""Figures quoted in the notebooks and the README are the committed measurements, not typed-in numbers."""

from __future__ import annotations

import json
import re
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CENTRE = '[{"decoder": {"stem_input": "centre"}}]'  # the --base label of runs made with the centred stem
TRIPLE = re.compile(r"(\d\.\d{3}) ± (\d\.\d{3}) \((\d\.\d{3})\)")


def variant_summary(path: Path, task: str, variant: str) -> str:
    """'unseen mean ± std (in-domain mean)' over the seeds of one variant in a bench_variants JSON."""
    runs = [r for key, r in json.loads(path.read_text()).items()
            if key.split("|")[0] == task and key.split("|")[2] == variant]
    assert len(runs) >= 3, f"{path.name} has {len(runs)} runs of {task}/{variant}; the text quotes seeds 0-2"
    unseen = [r["unseen"] for r in runs]
    source = [r["source"] for r in runs]
    return f"{statistics.mean(unseen):.3f} ± {statistics.stdev(unseen):.3f} ({statistics.mean(source):.3f})"


def table_triples(text: str, header: str) -> list[str]:
    """Per row of the markdown table that starts at ``header``: its 'a ± b (c)' cells, joined by spaces."""
    lines = text[text.index(header):].splitlines()[2:]  # skip the header and the |---| line
    rows = []
    for line in lines:
        if not line.lstrip("# ").startswith("|"):
            break
        rows.append(" ".join(f"{a} ± {b} ({c})" for a, b, c in TRIPLE.findall(line)))
    assert rows, f"no table rows after {header!r}"
    return rows


@pytest.mark.parametrize("source", ["notebooks/05_decoder_training.py", "notebooks/05_decoder_training.ipynb",
                                    "README.md"])
def test_notebook_05_augmentation_table_is_the_measurement(source):
    path = ROOT / "results" / "variants_augment.json"
    text = (ROOT / source).read_text()
    if source.endswith(".ipynb"):
        text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
    expected = [" ".join(variant_summary(path, task, CENTRE + v) for task in ("fundus", "cardiac"))
                for v in ("default", "augment=narrow", "augment=geometric", "augment=style")]
    assert table_triples(text, "| `train.augment` |") == expected


METHOD_OPTIONS = ("default", "em.backprop=none (EMANet-exact)", "em.input_norm=l2", "text.tie_centres=true",
                  "text.projection=linear", "text.projection=fixed", "text.background=true")


def test_readme_design_option_table_is_the_measurement():
    path = ROOT / "results" / "variants_method.json"
    expected = [" ".join(variant_summary(path, task, CENTRE + v) for task in ("fundus", "cardiac"))
                for v in METHOD_OPTIONS]
    assert table_triples((ROOT / "README.md").read_text(), "| option (alone) |") == expected


@pytest.mark.parametrize("task", ["fundus", "cardiac"])
@pytest.mark.parametrize("protocol", ["single-source", "leave-one-out"])
@pytest.mark.parametrize(("folder", "label"), [("cross_domain_cpu", "{task}"),
                                               ("cross_domain_stem4_cpu", "{task}, stem to stride 4"),
                                               ("cross_domain_no_stem_cpu", "{task}, no stem")])
def test_readme_grid_table_is_the_measurement(task, protocol, folder, label, monkeypatch):
    """The README's 'on every split' tables: EM-CLIP minus its random-encoder control over the whole grid,
    with the default decoder (stem at stride 2), with the earlier stem that reached stride 4, and without a stem."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_cross_domain as bench

    frame = bench.gather(ROOT / "results" / folder)
    cell = frame[(frame.task == task) & (frame.protocol == protocol)]
    pairs = cell[cell.method.isin(["emclip", "emclip-random"])]
    assert len(pairs.groupby(["split", "method", "seed"])) == 24  # 4 splits x 2 models x seeds 0-2: the whole grid
    paired = bench.paired_control(cell)
    total = paired.loc["all"]
    row = (f"| {label.format(task=task)} | {protocol} | {total['emclip']:.3f} | {total['emclip-random']:.3f} | "
           f"{total['mean difference']:+.3f} | {total['pairs higher']} |").replace("-0.", "−0.")
    readme = (ROOT / "README.md").read_text()
    assert row in readme, row
    line = next(line for line in readme.splitlines() if line.startswith(row))
    for split, diff in paired["mean difference"].drop("all").items():
        label = split.replace("->", "→") if protocol == "single-source" else "→" + split.split("->")[1]
        assert f"{label} {diff:+.3f}".replace("-0.", "−0.") in line, (label, diff)


def test_readme_seven_method_table_is_the_measurement(monkeypatch):
    """The README's grid table of every method: unseen Dice averaged over regions, unseen domains and the
    protocol's splits, mean ± std over seeds, from the committed runs of results/cross_domain_cpu."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_cross_domain as bench

    frame = bench.gather(ROOT / "results" / "cross_domain_cpu")
    per_seed = (frame[~frame.in_domain].groupby(["task", "protocol", "method", "seed", "split"]).dice.mean()
                .groupby(["task", "protocol", "method", "seed"]).mean())
    stats = per_seed.groupby(["task", "protocol", "method"]).agg(["mean", "std", "count"])
    readme = (ROOT / "README.md").read_text()
    for method in bench.METHODS:
        cells = [f"{stats.loc[(t, p, method), 'mean']:.3f} ± {stats.loc[(t, p, method), 'std']:.3f}"
                 for t in ("fundus", "cardiac") for p in ("single-source", "leave-one-out")]
        assert all(stats.loc[(t, p, method), "count"] == 3 for t in ("fundus", "cardiac")
                   for p in ("single-source", "leave-one-out"))
        line = next(line for line in readme.splitlines() if line.startswith(f"| `{method}`"))
        assert line.endswith(" | ".join(cells) + " |"), (method, line, cells)


def test_figures_shipped_beside_the_weights_are_the_grid_runs(monkeypatch):
    """Notebook 02 and the model card read the single-source runs from the JSON beside the weights: they are
    the committed grid's runs of emclip (synth-v2) and emclip-random, not a copy that can drift."""
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    import bench_cross_domain as bench

    from emclip.clip.weights import shipped_figures

    expected = bench.weights_figures(bench.gather(ROOT / "results" / "cross_domain_cpu"))
    shipped = shipped_figures("emclip-tiny", bench.PRETRAINED)["runs"]
    assert len(expected) == 2 * 2 * 4 * 3  # synth-v2 and random, 2 tasks x 4 sources x seeds 0-2
    assert sorted(shipped) == sorted(expected)
    for key, run in expected.items():
        assert shipped[key]["per_domain"] == pytest.approx(run["per_domain"]), key
        assert shipped[key]["unseen"] == pytest.approx(run["unseen"]), key
