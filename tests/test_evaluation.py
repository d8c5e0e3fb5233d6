"""Evaluation: evaluate_model on an oracle model, the report tables, the protocol runner (ci)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from emclip import reports
from emclip.evaluation import RESULT_COLUMNS, evaluate_model
from emclip.metrics import compute_dice
from emclip.tasks import get_task
from emclip.viz.evaluation import heatmap_frame, select_cases


class _MaskDataset(torch.utils.data.Dataset):
    """Fundus-like samples whose image encodes the label map (channel 0 = disc, 1 = cup)."""

    def __init__(self, n=5, size=24, domain="domain1", seed=0):
        rng = np.random.default_rng(seed)
        self.samples = []
        for i in range(n):
            mask = torch.zeros(size, size, dtype=torch.long)
            cy, cx, r = rng.integers(8, 16), rng.integers(8, 16), rng.integers(3, 7)
            yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
            dist = ((yy - cy) ** 2 + (xx - cx) ** 2).float().sqrt()
            mask[dist < r] = 1
            mask[dist < r / 2] = 2
            image = torch.stack([(mask >= 1).float(), (mask == 2).float(), torch.zeros(size, size)])
            self.samples.append({"image": image, "mask": mask, "domain": domain, "id": f"{domain}-{i}"})

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        return self.samples[i]


class _Oracle(torch.nn.Module):
    """Reads the regions back from the image; ``shift`` moves the prediction right by pixels."""

    def __init__(self, shift=0):
        super().__init__()
        self.shift = shift

    def forward(self, images):
        logits = images[:, :2] * 20 - 10
        return torch.roll(logits, self.shift, dims=-1)


def test_evaluate_model_oracle_and_shifted():
    task = get_task("fundus")
    data = _MaskDataset()
    perfect = evaluate_model(_Oracle(), task, data, device="cpu", batch_size=2)
    assert list(perfect.columns) == ["id", "domain", "region", "dice", "hd95", "assd", "miss"]
    assert len(perfect) == 2 * len(data) and set(perfect.region) == {"disc", "cup"}
    assert (perfect.dice == 1).all() and (perfect.hd95 == 0).all() and (perfect.assd == 0).all()
    model = _Oracle(shift=2).train()
    shifted = evaluate_model(model, task, torch.utils.data.DataLoader(data, batch_size=3), device="cpu")
    assert model.training  # mode restored
    disc = shifted[shifted.region == "disc"].reset_index(drop=True)
    for i, sample in enumerate(data.samples):
        pred = torch.roll(sample["mask"] >= 1, 2, dims=-1)
        assert disc.loc[i, "id"] == sample["id"]
        assert disc.loc[i, "dice"] == pytest.approx(compute_dice(pred, sample["mask"] >= 1))
    assert (disc.dice < 1).all() and (disc.hd95 > 0).all()


def test_evaluate_model_uses_spacing():
    task = get_task("fundus")
    data = _MaskDataset(n=3)
    pixels = evaluate_model(_Oracle(shift=2), task, data, device="cpu")
    mm = evaluate_model(_Oracle(shift=2), task, data, device="cpu", spacing=0.5)
    np.testing.assert_allclose(mm.hd95, 0.5 * pixels.hd95)
    for sample in data.samples:  # a per-sample spacing (real data) wins over the argument
        sample["spacing"] = torch.tensor([3.0, 3.0])
    per_sample = evaluate_model(_Oracle(shift=2), task, data, device="cpu", spacing=0.5)
    np.testing.assert_allclose(per_sample.assd, 3.0 * pixels.assd)
    np.testing.assert_allclose(per_sample.dice, pixels.dice)


def test_evaluate_model_rejects_bad_input():
    with pytest.raises(TypeError, match="Dataset"):
        evaluate_model(_Oracle(), "fundus", [1, 2, 3], device="cpu")


def _fake_results(seeds=(0, 1), methods=("unet", "emclip", "emclip-no-em")) -> pd.DataFrame:
    """A single-source results table with known values: dice = base[method] + 0.01 * seed, in-domain +0.2."""
    base = {"emclip": 0.7, "unet": 0.5, "emclip-no-em": 0.6}
    rows = []
    for method in methods:
        for seed in seeds:
            for src in ("domain1", "domain2"):
                for tgt in ("domain1", "domain2", "domain3"):
                    for region, offset in (("disc", 0.1), ("cup", -0.1)):
                        dice = base[method] + offset + 0.01 * seed + (0.2 if src == tgt else 0.0)
                        rows.append({"task": "fundus", "protocol": "single-source", "split": src,
                                     "source_domains": src, "method": method, "seed": seed, "target_domain": tgt,
                                     "in_domain": src == tgt, "region": region, "n": 4, "dice": dice,
                                     "hd95": 10 * (1 - dice), "assd": 5 * (1 - dice)})
    return pd.DataFrame(rows)


def test_summary_stats_mean_and_std_over_seeds():
    df = _fake_results()
    stats = reports.summary_stats(df, "dice")
    assert list(stats.index) == ["emclip", "unet", "emclip-no-em"]  # proposed, baseline, ablation
    mean, std = stats["mean"], stats["std"]
    # out-of-domain only: the +0.2 in-domain bonus never enters
    assert mean.loc["emclip", ("domain3", "disc")] == pytest.approx(0.8 + 0.005)
    assert mean.loc["unet", ("Avg", "Avg")] == pytest.approx(0.5 + 0.005)
    assert std.loc["emclip", ("domain1", "cup")] == pytest.approx(np.std([0.0, 0.01], ddof=1))
    table = reports.summary_table(df, "dice")
    assert table.loc["emclip", ("domain3", "disc")] == "0.805 ± 0.007"
    single = reports.summary_table(df[df.seed == 0], "dice", per_region=False)
    assert single.loc["unet", ("domain1", "Avg")] == "0.500"  # one seed: no std
    assert set(single.columns.get_level_values("region")) == {"Avg"}


def test_gap_and_comparison_tables():
    df = _fake_results()
    gap = reports.domain_gap_table(df, "dice")
    assert gap.loc["emclip", "gap (in - out)"].startswith("0.200")
    comp = reports.comparison_table(df, "dice", reference="emclip")
    assert list(comp["role"]) == ["proposed", "baseline", "ablation"]  # each model config's "role"
    assert [reports.method_role(m) for m in ("emclip-random", "unet-stylerand", "mine")] == ["control", "baseline", "other"]
    assert comp.loc["unet", "Δ vs emclip"] == "-0.200"
    assert comp.loc["emclip-no-em", "Δ vs emclip"] == "-0.100"
    with pytest.raises(ValueError, match="lacks columns"):
        reports.summary_stats(df.drop(columns="in_domain"))
    with pytest.raises(ValueError, match="domains must be one of"):
        reports.summary_table(df, domains="elsewhere")


def test_markdown_and_files(tmp_path):
    df = _fake_results()
    md = reports.to_markdown(reports.comparison_table(df), index_name="method")
    lines = md.splitlines()
    assert lines[0].startswith("| method | role | disc | cup | Avg | Δ vs emclip")
    assert len(lines) == 2 + 3 and all(line.count("|") == lines[0].count("|") for line in lines)
    report = reports.write_report(df, tmp_path)
    text = report.read_text()
    assert "## dice (higher is better)" in text and "## hd95 (lower is better)" in text
    assert "domain3 / disc" in text and "gap (in - out)" in text
    csv_path, json_path = reports.save_frame(df, tmp_path, "results")
    assert len(json.loads(json_path.read_text())) == len(df)
    pd.testing.assert_frame_equal(reports.load_frame(csv_path), df, check_dtype=False)
    assert not list(tmp_path.glob("*.tmp"))
    with pytest.raises(FileNotFoundError, match="emclip evaluate"):
        reports.load_frame(tmp_path / "missing.csv")


def test_heatmap_frame_and_case_selection():
    df = _fake_results()
    frame = heatmap_frame(df, "dice")
    assert list(frame.columns) == ["domain1", "domain2", "domain3", "Avg"]
    assert frame.loc["emclip", "domain3"] == pytest.approx(0.705)
    per_image = pd.DataFrame({"domain": ["a"] * 6 + ["b"] * 2, "id": list("xxyyzz") + ["w", "w"],
                              "region": ["disc", "cup"] * 4, "dice": [1, 0.8, 0.2, 0.4, 0.5, 0.5, 0.9, 0.9]})
    cases = select_cases(per_image, "dice")
    got = {(r.domain, r.case): r.id for r in cases.itertuples()}
    assert got == {("a", "best"): "x", ("a", "worst"): "y", ("b", "best"): "w", ("b", "worst"): "w"}
    worst_hd = select_cases(per_image.assign(hd95=per_image.dice), "hd95")
    assert worst_hd[(worst_hd.domain == "a") & (worst_hd.case == "best")].id.item() == "y"


def test_result_columns_contract():
    assert {"method", "seed", "split", "source_domains", "target_domain", "region", "dice", "hd95",
            "assd", "in_domain"} <= set(RESULT_COLUMNS)


@pytest.fixture(scope="module")
def tiny_profile():
    import emclip

    return emclip.get_profile("ci", image_size=32, train_steps=2, eval_every=2, train_per_domain=4,
                              val_per_domain=2, test_per_domain=2, batch_size=4)


def test_run_protocol_fills_every_cell_and_reuses_checkpoints(tmp_path, tiny_profile):
    from emclip.cli import main
    from emclip.evaluation import run_protocol

    task = get_task("cardiac")
    methods = ["emclip", "unet"]
    df = run_protocol(task, "single-source", methods, seeds=[0], profile=tiny_profile, out_dir=tmp_path,
                      splits=["A->BCD"], progress=False)
    assert list(df.columns) == list(RESULT_COLUMNS)
    images = df[df.level == "image"]  # (cardiac data with volume keys adds per-volume rows)
    cells = images.set_index(["method", "target_domain", "region"])
    assert len(cells) == len(methods) * len(task.domains) * len(task.region_names) and cells.index.is_unique
    assert df[["dice", "hd95", "assd"]].notna().all().all() and df.dice.between(0, 1).all()
    assert (images.n == tiny_profile.test_per_domain).all()
    assert set(df[df.in_domain].target_domain) == {"A"}
    for name in ("results.csv", "results.json", "per_image.csv", "per_image.json", "summary.md"):
        assert (tmp_path / name).is_file(), name
    assert len(reports.load_frame(tmp_path / "per_image.csv")) == 2 * 4 * 2 * 3  # methods x domains x images x regions
    assert "| emclip | proposed |" in (tmp_path / "summary.md").read_text()

    # second call: every checkpoint holds the same finished run: reused (not rewritten), same numbers
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "checkpoints").glob("*.pt")}
    again = run_protocol(task, "single-source", methods, seeds=[0], profile=tiny_profile, out_dir=tmp_path,
                         splits=["A->BCD"], progress=False)
    pd.testing.assert_frame_equal(again, df)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps

    # the CLI over the saved checkpoints gives the same Dice
    ckpts = sorted(str(p) for p in (tmp_path / "checkpoints").glob("*.pt"))
    assert len(ckpts) == 2
    out = tmp_path / "cli"
    assert main(["evaluate", "--task", "cardiac", "--checkpoints", *ckpts, "--profile", "ci", "--out", str(out)]) == 0
    cli = reports.load_frame(out / "results.csv")
    assert set(cli.method) == set(methods) and set(cli[cli.in_domain].target_domain) == {"A"}
    assert (out / "summary.md").is_file()


def test_run_protocol_bad_arguments(tiny_profile):
    from emclip.evaluation import run_protocol

    with pytest.raises(ValueError, match="unknown splits"):
        run_protocol("fundus", "single-source", ["unet"], seeds=[0], profile=tiny_profile, splits=["9->1"])
    with pytest.raises(ValueError, match="protocol"):
        run_protocol("fundus", "three-source", ["unet"], seeds=[0], profile=tiny_profile)
    with pytest.raises(ValueError, match="at least one model"):
        run_protocol("fundus", "single-source", [], seeds=[0], profile=tiny_profile)


def test_check_dice_exercise():
    from emclip.exercises.evaluation import check_dice

    def good(p, t):
        inter = (p & t).flatten(1).sum(1).double()
        total = p.flatten(1).sum(1).double() + t.flatten(1).sum(1).double()
        return torch.where(total > 0, 2 * inter / total.clamp(min=1), torch.ones_like(total))

    def no_empty_guard(p, t):
        return 2 * (p & t).flatten(1).sum(1) / (p.flatten(1).sum(1) + t.flatten(1).sum(1))

    def batch_sum(p, t):
        return np.full(len(p), float(2 * (p & t).sum() / (p.sum() + t.sum())))

    assert check_dice(good, verbose=False)
    with pytest.raises(AssertionError, match="both empty"):
        check_dice(no_empty_guard, verbose=False)
    with pytest.raises(AssertionError, match="each image separately"):
        check_dice(batch_sum, verbose=False)


def test_headline_numbers_and_effects_text():
    df = _fake_results()
    head = reports.headline_numbers(df, "dice")
    assert head["best_method"] == "emclip" and head["out"]["unet"] == pytest.approx(0.505)
    assert head["reference_gap"] == pytest.approx(0.2)
    effects = reports.ablation_effects(df, "dice")
    em = effects[(effects.versus == "emclip-no-em") & (effects.target_domain == "Avg")].iloc[0]
    assert em.effect == pytest.approx(0.1) and em.verdict == "helps"
    assert em.component == "EM-CLIP vs `emclip-no-em` (ablation)"  # the role comes from the model config
    text = reports.describe_effects(df, "dice")
    assert "EM-CLIP vs `emclip-no-em` (ablation)" in text and "helps on average" in text
    assert "emclip-no-text" not in text  # not in the table
    worse = df.assign(dice=np.where(df.method == "emclip", df.dice - 0.3, df.dice))
    assert "hurts on average" in reports.describe_effects(worse, "dice")


def test_evaluation_plots_draw_the_tables():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emclip.viz.evaluation import em_features, plot_dice_heatmap, plot_domain_boxplots

    df = _fake_results()
    ax = plot_dice_heatmap(df, "dice")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["domain1", "domain2", "domain3", "Avg"]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["emclip", "unet", "emclip-no-em"]
    with pytest.raises(ValueError, match="region"):
        plot_dice_heatmap(df, "dice", region="lung")
    per_image = pd.DataFrame({"method": ["a", "a", "b", "b"], "domain": ["d1", "d2", "d1", "d2"],
                              "id": ["1", "2", "1", "2"], "region": "disc", "dice": [0.1, 0.2, 0.3, 0.4]})
    ax = plot_domain_boxplots(per_image)
    assert ax.get_xlabel() == "test domain" and ax.get_legend() is not None
    with pytest.raises(ValueError, match="EM enabled"):
        em_features(_Oracle(), torch.zeros(1, 3, 8, 8))
    plt.close("all")


def test_cli_evaluate_errors(capsys, tmp_path):
    from emclip.cli import main

    assert main(["evaluate", "--task", "fundus", "--protocol", "single-source", "--models", "nope",
                 "--out", str(tmp_path)]) == 2
    assert "unknown models ['nope']" in capsys.readouterr().err
    assert main(["evaluate", "--task", "fundus", "--checkpoints", str(tmp_path / "missing.pt"),
                 "--profile", "ci", "--targets", "domain1", "--out", str(tmp_path)]) == 2
    assert "No checkpoint at" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # --checkpoints and --protocol exclude each other
        main(["evaluate", "--task", "fundus", "--protocol", "single-source", "--checkpoints", "a.pt"])


def test_case_figure_shows_the_ranked_image_and_its_metrics():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emclip.viz.evaluation import case_figure, rank_images

    task = get_task("fundus")
    data = _MaskDataset(n=4)
    models = {"oracle": _Oracle(), "shifted": _Oracle(shift=3)}
    per_image = pd.concat([evaluate_model(m, task, data, device="cpu", batch_size=4).assign(method=name, seed=0)
                           for name, m in models.items()], ignore_index=True)
    shifted = per_image[per_image.method == "shifted"]
    means = shifted.groupby("id").dice.mean()
    ranked = rank_images(shifted, "dice", "domain1")
    assert list(ranked.id) == sorted(means.index, key=lambda i: (-means[i], i))  # best first
    worst = len(data) - 1
    fig = case_figure(per_image, models, {"domain1": data}, task, "shifted", "domain1", rank=worst)
    sample = next(s for s in data.samples if s["id"] == ranked.id.iloc[worst])
    shown = fig.axes[0].get_images()[0].get_array()
    np.testing.assert_array_equal(np.asarray(shown), sample["image"].permute(1, 2, 0).numpy())
    title = fig._suptitle.get_text()
    pred = torch.roll(sample["mask"] >= 1, 3, dims=-1)
    assert f"Dice {float(compute_dice(pred, sample['mask'] >= 1)):.3f}" in title  # the disc line
    assert f"rank {worst + 1} of {len(data)}" in title
    best = case_figure(per_image, models, {"domain1": data}, task, "oracle", "domain1", rank=0)
    assert best._suptitle.get_text().count("Dice 1.000") == 2
    with pytest.raises(ValueError, match="out of range"):
        case_figure(per_image, models, {"domain1": data}, task, "oracle", "domain1", rank=len(data))
    with pytest.raises(ValueError, match="valid"):
        case_figure(per_image, models, {"domain1": data}, task, "unet", "domain1")
    plt.close("all")


def test_markdown_keeps_integer_columns_integer():
    table = pd.DataFrame({"K": [4, 8], "dice": [0.5, float("nan")], "name": ["a|b", "c"]})
    assert reports.to_markdown(table, index=False).splitlines()[2:] == ["| 4 | 0.500 | a\\|b |", "| 8 | n/a | c |"]


class _Volumes(torch.utils.data.Dataset):
    """Cardiac test samples with the volume keys: consecutive pairs of slices form one volume."""

    def __init__(self, dataset, domain):
        self.dataset, self.domain = dataset, domain

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return {**self.dataset[i], "volume": f"{self.domain}-v{i // 2}", "slice": i % 2,
                "spacing": torch.tensor([1.5, 1.5]), "slice_thickness": torch.tensor(8.0)}


def _with_volumes(monkeypatch):
    import emclip.data

    real = emclip.data.get_dataset

    def get_dataset(task, domain, split="train", *args, **kwargs):
        dataset = real(task, domain, split, *args, **kwargs)
        return _Volumes(dataset, domain) if split == "test" else dataset

    monkeypatch.setattr(emclip.data, "get_dataset", get_dataset)


def test_score_model_scores_volumes_in_3d():
    from emclip.evaluation import score_model
    from emclip.metrics import compute_volume_metrics

    data = _Volumes(_MaskDataset(n=4), "domain1")
    scores = score_model(_Oracle(shift=2), "fundus", data, device="cpu", batch_size=3)
    assert len(scores.images) == 4 * 2 and len(scores.volumes) == 2 * 2  # two 2-slice volumes, two regions
    first = scores.volumes[(scores.volumes.id == "domain1-v0") & (scores.volumes.region == "disc")].iloc[0]
    target = torch.stack([data[i]["mask"] >= 1 for i in (0, 1)])
    pred = torch.roll(target, 2, dims=-1)
    assert (first.dice, first.hd95, first.assd) == compute_volume_metrics(pred, target, (8.0, 1.5, 1.5))
    assert first.slices == 2 and score_model(_Oracle(), "fundus", _MaskDataset(n=2), device="cpu").volumes is None


def test_cardiac_protocol_reports_volumes_first_and_slices_second(tmp_path, tiny_profile, monkeypatch):
    from emclip.evaluation import run_protocol

    _with_volumes(monkeypatch)
    df = run_protocol("cardiac", "single-source", ["unet"], seeds=[0], profile=tiny_profile, out_dir=tmp_path,
                      splits=["A->BCD"], progress=False)
    volumes, images = df[df.level == "volume"], df[df.level == "image"]
    assert len(volumes) == len(images) == 4 * 3  # domains x regions, at each level
    assert (volumes.n == 1).all() and (images.n == 2).all()  # one 2-slice volume per domain
    per_volume = reports.load_frame(tmp_path / "per_volume.csv")
    assert set(per_volume.slices) == {2} and len(per_volume) == 4 * 3
    assert reports.primary_level(df) == "volume"
    table = reports.comparison_table(df, "dice")
    assert table.loc["unet", "Avg"] == reports.format_mean_std(volumes[~volumes.in_domain].dice.mean(), None)
    text = (tmp_path / "summary.md").read_text()
    assert "per 3-D volume" in text and "## Per-slice view (secondary)" in text
    assert "### Mean, median and miss rate (out-of-domain)" in text


def test_distance_table_shows_mean_median_and_miss_rate():
    df = _fake_results().assign(hd95_median=lambda d: d.hd95 / 2, assd_median=lambda d: d.assd / 2,
                                miss_rate=lambda d: np.where(d.method == "unet", 0.5, 0.0))
    table = reports.distance_table(df, "hd95")
    unet = df[(df.method == "unet") & ~df.in_domain]
    per_seed = unet.groupby("seed").hd95.mean()
    assert table.loc["unet", "mean"] == reports.format_mean_std(per_seed.mean(), per_seed.std(ddof=1), 2)
    assert table.loc["unet", "median"].startswith(f"{per_seed.mean() / 2:.2f}")
    assert table.loc["unet", "miss rate"] == "50.0 %" and table.loc["emclip", "miss rate"] == "0.0 %"
    with pytest.raises(ValueError, match="lacks columns"):
        reports.distance_table(_fake_results(), "hd95")
