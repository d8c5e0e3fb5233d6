"""The tables domain-generalisation papers print, from the tidy results of a protocol run.

Input: the tidy table of :func:`emclip.evaluation.run_protocol`, one row per
(method, seed, split, target domain, level, region) with columns ``method, seed, split,
source_domains, target_domain, in_domain, level, region``, the metric means ``dice, hd95, assd``
over that domain's test cases, their medians ``hd95_median, assd_median`` and the ``miss_rate``.
Every table averages first over splits and cases *within* a seed, then reports mean ± std *over
seeds* (the run-to-run spread the DG literature quotes, e.g. DoFE's Fundus-DG tables).

Levels: the tables use the table's *primary* level (:func:`primary_level`): per 3-D volume when
the table has volume rows (cardiac, scored as the M&Ms challenge does, per patient at ED and ES),
else per 2-D image. The per-slice rows of cardiac are a secondary view: pass
``at_level(df, "image")`` to any table, and :func:`markdown_report` adds a per-slice section.

- :func:`summary_table`: rows = method, columns = target domain x region (+ the average),
  out-of-domain results only by default (a model is never scored on a domain it trained on).
- :func:`domain_gap_table`: in-domain vs out-of-domain score and the gap between them.
- :func:`comparison_table`: EM-CLIP against the baselines and the ablations, with the
  difference to EM-CLIP.
- :func:`distance_table`: HD95 or ASSD as mean, median and miss rate: a structure missed (or
  predicted where there is none) scores the image's or volume's diagonal, which dominates a
  mean; the median and the share of such cases show what the mean hides.
- :func:`to_markdown`: a small Markdown formatter (no ``tabulate`` dependency);
  :func:`write_report` writes every table into one Markdown file, :func:`save_frame` a table as
  CSV + JSON (atomically).

NaN metric values (``one_empty="nan"``) are skipped by the means; with the default diagonal
convention of :mod:`emclip.metrics` there are none.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from emclip.fileio import atomic_write_text

#: roles of the factory's model configs (``role`` key), in the order tables list them, then the rest
ROLE_ORDER = ("proposed", "baseline", "ablation", "control", "other")
LOWER_IS_BETTER = {"dice": False, "hd95": True, "assd": True}
REQUIRED_COLUMNS = ("method", "seed", "target_domain", "in_domain", "region")
AVG = "Avg"


def primary_level(df: pd.DataFrame) -> str | None:
    """``"volume"`` when the table has per-volume rows, else ``"image"`` (``None``: no ``level`` column)."""
    if "level" not in df.columns:
        return None
    return "volume" if (df["level"] == "volume").any() else "image"


def at_level(df: pd.DataFrame, level: str | None = None) -> pd.DataFrame:
    """The rows of one level (default: :func:`primary_level`); a table without levels as it is."""
    if "level" not in df.columns:
        return df
    return df[df["level"] == (level or primary_level(df))]


def _check(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The table's rows at its primary level, after checking its columns."""
    missing = [c for c in (*REQUIRED_COLUMNS, metric) if c not in df.columns]
    if missing:
        raise ValueError(f"results table lacks columns {missing}; expected the output of "
                         f"emclip.evaluation.run_protocol (columns {[*REQUIRED_COLUMNS, metric]}).")
    if df.empty:
        raise ValueError("results table is empty: nothing to summarise.")
    return at_level(df)


def _select(df: pd.DataFrame, domains: str) -> pd.DataFrame:
    valid = ("out", "in", "all")
    if domains not in valid:
        raise ValueError(f"domains must be one of {valid}, got {domains!r}.")
    if domains == "all":
        return df
    mask = df["in_domain"].astype(bool)
    return df[~mask] if domains == "out" else df[mask]


def method_role(name: str) -> str:
    """What a method is, read from its model config's ``role`` (``other`` for names outside the factory)."""
    from emclip.models import get_model_config, list_models

    return get_model_config(name)["role"] if name in list_models() else "other"


def method_order(methods: Sequence[str]) -> list[str]:
    """Methods sorted as the papers list them: the proposed model, baselines, ablations, controls."""
    methods = list(dict.fromkeys(methods))
    return sorted(methods, key=lambda m: (ROLE_ORDER.index(method_role(m)), methods.index(m)))


def summary_stats(df: pd.DataFrame, metric: str = "dice", domains: str = "out") -> pd.DataFrame:
    """Mean and std over seeds per (method, target domain, region), with ``Avg`` columns.

    Returns a frame indexed by method, with columns MultiIndex ``(stat, target_domain, region)``,
    stat in ``mean, std``; target_domain ``Avg`` averages the domains per region and region
    ``Avg`` averages the regions (within each seed, before the seed statistics).
    """
    df = _check(df, metric)
    sel = _select(df, domains)
    if sel.empty:
        raise ValueError(f"no {domains}-of-domain rows in the results table (domains={domains!r}).")
    per_seed = sel.groupby(["method", "seed", "target_domain", "region"], sort=False)[metric].mean()
    wide = per_seed.unstack(["target_domain", "region"])
    domains_order = sorted(dict.fromkeys(sel["target_domain"]))
    regions = list(dict.fromkeys(sel["region"]))
    cols = {}
    for dom in domains_order:
        for reg in regions:
            if (dom, reg) in wide.columns:
                cols[(dom, reg)] = wide[(dom, reg)]
        cols[(dom, AVG)] = wide.xs(dom, axis=1, level=0).mean(axis=1)
    for reg in regions:
        cols[(AVG, reg)] = wide.xs(reg, axis=1, level=1).mean(axis=1)
    cols[(AVG, AVG)] = wide.mean(axis=1)
    table = pd.DataFrame(cols)
    table.columns = pd.MultiIndex.from_tuples(table.columns, names=["target_domain", "region"])
    grouped = table.groupby(level="method", sort=False)
    stats = pd.concat({"mean": grouped.mean(), "std": grouped.std(ddof=1)}, axis=1)
    return stats.reindex(method_order(stats.index))


def format_mean_std(mean, std, digits: int = 3) -> str:
    """``0.812 ± 0.013``; just the mean when std is undefined (one seed); ``n/a`` for NaN means."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if std is None or not np.isfinite(std):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def _format(stats: pd.DataFrame, digits: int) -> pd.DataFrame:
    mean, std = stats["mean"], stats["std"]
    out = pd.DataFrame(index=mean.index, columns=mean.columns, dtype=object)
    for col in mean.columns:
        out[col] = [format_mean_std(m, s, digits) for m, s in zip(mean[col], std[col])]
    return out


def summary_table(df: pd.DataFrame, metric: str = "dice", domains: str = "out", digits: int = 3,
                  per_region: bool = True) -> pd.DataFrame:
    """Rows = method, columns = target domain x region: ``mean ± std`` over seeds (strings).

    ``domains="out"`` (default) keeps the results on unseen domains, ``"in"`` those on the
    training domains' test images, ``"all"`` both. ``per_region=False`` keeps only the region
    averages (one column per target domain).
    """
    stats = summary_stats(df, metric, domains)
    if not per_region:
        stats = stats.loc[:, stats.columns.get_level_values("region") == AVG]
    return _format(stats, digits)


def _per_seed(df: pd.DataFrame, metric: str, domains: str) -> pd.Series:
    sel = _select(df, domains)
    return sel.groupby(["method", "seed"], sort=False)[metric].mean()


def domain_gap_table(df: pd.DataFrame, metric: str = "dice", digits: int = 3) -> pd.DataFrame:
    """In-domain vs out-of-domain score per method and the gap (in - out), mean ± std over seeds.

    A large positive Dice gap (or a negative HD95 gap) is the domain shift a DG method tries to
    close. Methods without in-domain rows show ``n/a`` there.
    """
    df = _check(df, metric)
    inside, outside = _per_seed(df, metric, "in"), _per_seed(df, metric, "out")
    both = pd.DataFrame({"in-domain": inside, "out-of-domain": outside})
    both["gap (in - out)"] = both["in-domain"] - both["out-of-domain"]
    grouped = both.groupby(level="method", sort=False)
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.DataFrame({c: [format_mean_std(m, s, digits) for m, s in zip(mean[c], std[c])] for c in mean.columns},
                       index=mean.index)
    return out.reindex(method_order(out.index))


def comparison_table(df: pd.DataFrame, metric: str = "dice", reference: str = "emclip",
                     digits: int = 3) -> pd.DataFrame:
    """EM-CLIP against baselines and ablations: out-of-domain score per region and on average.

    Columns: ``role`` (from the model config: proposed / baseline / ablation / control), one
    ``mean ± std`` column per region and ``Avg``, ``Δ vs <reference>`` (difference of the
    seed-averaged ``Avg`` to the reference method; positive = better for Dice, worse for
    distances), ``in-domain Avg``.
    """
    df = at_level(df)
    stats = summary_stats(df, metric, "out")
    mean, std = stats["mean"], stats["std"]
    out = pd.DataFrame(index=mean.index)
    out["role"] = [method_role(m) for m in mean.index]
    for reg in mean[AVG].columns:
        out[reg] = [format_mean_std(m, s, digits) for m, s in zip(mean[(AVG, reg)], std[(AVG, reg)])]
    avg = mean[(AVG, AVG)]
    if reference in avg.index:
        out[f"Δ vs {reference}"] = [f"{v - avg[reference]:+.{digits}f}" for v in avg]
    inside = _select(df, "in")
    if not inside.empty:
        ins = _per_seed(df, metric, "in").groupby(level="method").mean()
        out["in-domain Avg"] = [format_mean_std(ins.get(m, np.nan), None, digits) for m in out.index]
    return out


def distance_table(df: pd.DataFrame, metric: str = "hd95", digits: int = 2) -> pd.DataFrame:
    """HD95 or ASSD on unseen domains as ``mean``, ``median`` (± std over seeds) and ``miss rate``.

    ``median`` averages the per-domain medians over cases; ``miss rate`` is the share of cases
    (image or volume, region) whose structure is in only one of prediction and ground truth —
    those score the diagonal, so a few misses can dominate the mean while the median shows the
    typical boundary error. Rows: methods; averaged over regions and unseen domains per seed.
    """
    df = _check(df, metric)
    columns = {"mean": metric, "median": f"{metric}_median", "miss rate": "miss_rate"}
    missing = [c for c in columns.values() if c not in df.columns]
    if missing:
        raise ValueError(f"results table lacks columns {missing} (tables of emclip.evaluation.run_protocol have them).")
    per_seed = _select(df, "out").groupby(["method", "seed"], sort=False)[list(columns.values())].mean()
    grouped = per_seed.groupby(level="method", sort=False)
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.DataFrame(index=mean.index)
    for label in ("mean", "median"):
        out[label] = [format_mean_std(m, s, digits) for m, s in zip(mean[columns[label]], std[columns[label]])]
    out["miss rate"] = [f"{100 * v:.1f} %" for v in mean["miss_rate"]]
    return out.reindex(method_order(out.index))


def ablation_effects(df: pd.DataFrame, metric: str = "dice", reference: str = "emclip",
                     tolerance: float | None = None) -> pd.DataFrame:
    """What each component (and EM-CLIP vs the best baseline) changes on each unseen domain.

    Compared with ``reference``: every ablation and control in ``df`` (their configs' ``role``;
    an ablation removes one component, a control changes one ingredient, e.g. random CLIP
    weights) and the best baseline. ``component`` names the comparison, e.g.
    ``EM-CLIP vs `emclip-no-em` (ablation)``; ``versus`` the other method.
    ``effect`` = score of ``reference`` minus score of the other model, per seed,
    signed so that positive means the component *helps* (for distances the sign is flipped).
    ``verdict`` is ``helps`` / ``hurts`` when ``|effect|`` exceeds ``tolerance`` (default 0.01
    for Dice, 1 pixel for distances) and the seed std of the paired differences, else
    ``no clear effect`` — design choice, not from the paper (a rule of thumb for few seeds, not
    a significance test). Rows: ``component, versus, target_domain`` (``Avg`` = all unseen
    domains), ``effect, std, verdict``.
    """
    tol = tolerance if tolerance is not None else (1.0 if LOWER_IS_BETTER.get(metric) else 0.01)
    sign = -1.0 if LOWER_IS_BETTER.get(metric) else 1.0
    df = _check(df, metric)
    out = _select(df, "out")
    per = out.groupby(["method", "seed", "target_domain"])[metric].mean().unstack("target_domain")
    per[AVG] = out.groupby(["method", "seed"])[metric].mean()
    methods = set(per.index.get_level_values("method"))
    if reference not in methods:
        return pd.DataFrame(columns=["component", "versus", "target_domain", "effect", "std", "verdict"])
    roles = {m: method_role(m) for m in method_order(methods)}
    comparisons = {f"EM-CLIP vs `{m}` ({r})": m for m, r in roles.items() if r in ("ablation", "control")}
    baselines = [m for m, r in roles.items() if r == "baseline"]
    if baselines:
        best = max(baselines, key=lambda m: sign * per.loc[m, AVG].mean())
        comparisons[f"EM-CLIP vs best baseline (`{best}`)"] = best
    rows = []
    for component, other in comparisons.items():
        diff = sign * (per.loc[reference] - per.loc[other]).dropna(how="all")
        for domain in [c for c in per.columns if c != AVG] + [AVG]:
            effect, std = diff[domain].mean(), diff[domain].std(ddof=1) if len(diff) > 1 else np.nan
            bar = max(tol, std if np.isfinite(std) else 0.0)
            verdict = "helps" if effect > bar else "hurts" if effect < -bar else "no clear effect"
            rows.append({"component": component, "versus": other, "target_domain": domain, "effect": float(effect),
                         "std": float(std), "verdict": verdict})
    return pd.DataFrame(rows)


def describe_effects(df: pd.DataFrame, metric: str = "dice", reference: str = "emclip") -> str:
    """Plain-language Markdown bullets of :func:`ablation_effects`, computed from the numbers."""
    effects = ablation_effects(df, metric, reference)
    if effects.empty:
        return f"- No comparison possible: the table needs `{reference}` and at least one ablation or baseline."
    unit = "" if metric == "dice" else " (distance, lower is better; sign flipped)"
    lines = []
    for component, group in effects.groupby("component", sort=False):
        avg = group[group.target_domain == AVG].iloc[0]
        doms = group[group.target_domain != AVG]
        helps = ", ".join(doms[doms.verdict == "helps"].target_domain) or "none"
        hurts = ", ".join(doms[doms.verdict == "hurts"].target_domain) or "none"
        lines.append(f"- **{component}**: {avg.verdict} on average over unseen domains "
                     f"({metric} {avg.effect:+.3f}{unit}); helps on: {helps}; hurts on: {hurts}.")
    return "\n".join(lines)


def headline_numbers(df: pd.DataFrame, metric: str = "dice", reference: str = "emclip") -> dict:
    """The numbers a summary sentence needs (seed-averaged, regions averaged).

    Returns ``{"out": {method: score}, "in": {method: score}, "best_method": ...,
    "hardest_domain": ..., "easiest_domain": ..., "reference_gap": in - out of ``reference``
    (NaN without in-domain rows)}``; hardest / easiest over the unseen domains, by the mean of all
    methods.
    """
    df = _check(df, metric)
    lower = LOWER_IS_BETTER.get(metric, False)
    out_scores = _per_seed(df, metric, "out").groupby(level="method").mean()
    in_scores = _per_seed(df, metric, "in").groupby(level="method").mean()
    by_domain = _select(df, "out").groupby("target_domain")[metric].mean()
    best = out_scores.idxmin() if lower else out_scores.idxmax()
    hardest, easiest = (by_domain.idxmax(), by_domain.idxmin()) if lower else (by_domain.idxmin(), by_domain.idxmax())
    gap = float(in_scores.get(reference, np.nan) - out_scores.get(reference, np.nan))
    return {"out": {k: float(v) for k, v in out_scores.items()}, "in": {k: float(v) for k, v in in_scores.items()},
            "best_method": str(best), "hardest_domain": str(hardest), "easiest_domain": str(easiest),
            "reference_gap": gap}


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.3f}"
    return str(value).replace("|", "\\|")


def to_markdown(frame: pd.DataFrame, index: bool = True, index_name: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; MultiIndex columns are joined with `` / ``."""
    cols = [" / ".join(str(p) for p in c) if isinstance(c, tuple) else str(c) for c in frame.columns]
    header = ([index_name or (frame.index.name or "")] if index else []) + cols
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    # itertuples keeps each column's own type (iterrows would turn the ints of an all-numeric row into floats)
    for key, row in zip(frame.index, frame.itertuples(index=False, name=None)):
        cells = ([_cell(key)] if index else []) + [_cell(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def save_frame(frame: pd.DataFrame, out_dir: str | os.PathLike, stem: str) -> tuple[Path, Path]:
    """Write ``<stem>.csv`` and ``<stem>.json`` (records, NaN -> null) atomically; returns both paths."""
    out = Path(out_dir)
    csv_path = atomic_write_text(out / f"{stem}.csv", frame.to_csv(index=False))
    records = json.loads(frame.to_json(orient="records"))
    json_path = atomic_write_text(out / f"{stem}.json", json.dumps(records, indent=1))
    return csv_path, json_path


def load_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Read a table written by :func:`save_frame` (``.csv`` or ``.json``)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no results table at {path}; run `emclip evaluate` (or run_protocol) first.")
    return pd.read_json(path, orient="records") if path.suffix == ".json" else pd.read_csv(path)


def _metric_sections(df: pd.DataFrame, metric: str, reference: str) -> list[str]:
    better = "lower is better" if LOWER_IS_BETTER.get(metric) else "higher is better"
    parts = [f"## {metric} ({better})",
             f"### Comparison (out-of-domain)\n\n{to_markdown(comparison_table(df, metric, reference), index_name='method')}"]
    if LOWER_IS_BETTER.get(metric) and f"{metric}_median" in df.columns:
        parts.append(f"### Mean, median and miss rate (out-of-domain)\n\n"
                     f"{to_markdown(distance_table(df, metric), index_name='method')}")
    parts.append(f"### Per target domain (out-of-domain)\n\n{to_markdown(summary_table(df, metric), index_name='method')}")
    if df["in_domain"].astype(bool).any():
        parts.append(f"### In-domain vs out-of-domain\n\n{to_markdown(domain_gap_table(df, metric), index_name='method')}")
    return parts


_LEVEL_TEXT = {
    "volume": "per 3-D volume (each patient's stack at one phase, as the M&Ms challenge scores; distances in "
              "mm), the per-slice view follows as a secondary table",
    "image": "per 2-D image (distances in mm where the data carries a pixel spacing, else in pixels)",
    None: "per test image",
}


def markdown_report(df: pd.DataFrame, metrics: Sequence[str] = ("dice", "hd95"), title: str | None = None,
                    reference: str = "emclip") -> str:
    """Every table above as one Markdown document (comparison, distances, per-domain summary, gap),
    at the primary level, then for cardiac the per-slice comparison as a secondary view."""
    parts = [f"# {title}" if title else "# Cross-domain evaluation"]
    tasks = ", ".join(sorted(map(str, df["task"].unique()))) if "task" in df else "?"
    protocols = ", ".join(sorted(map(str, df["protocol"].unique()))) if "protocol" in df else "?"
    seeds = sorted(df["seed"].unique().tolist())
    level = primary_level(df)
    parts.append(f"Task: {tasks} · protocol: {protocols} · seeds: {seeds} · methods: "
                 f"{', '.join(method_order(df['method'].unique()))}. Scores {_LEVEL_TEXT[level]}. Cells are "
                 "mean ± std over seeds (std omitted with one seed) of the per-domain mean over test cases; "
                 "out-of-domain columns average over every split in which that domain was unseen.")
    skipped = df.attrs.get("skipped") or []
    if skipped:  # emclip.evaluation.evaluate_checkpoints: files that could not be evaluated
        parts.append("## Skipped checkpoints\n\n" + "\n".join(f"- `{s['path']}`: {s['error']}" for s in skipped))
    primary = at_level(df)
    for metric in metrics:
        if metric in df.columns:
            parts += _metric_sections(primary, metric, reference)
    if level == "volume" and (df["level"] == "image").any():
        slices = at_level(df, "image")
        parts.append("## Per-slice view (secondary)\n\nThe same models scored on each 2-D slice apart; a slice "
                     "where a structure is absent from both masks counts as Dice 1.")
        parts += [f"### {metric} per slice (out-of-domain)\n\n"
                  f"{to_markdown(comparison_table(slices, metric, reference), index_name='method')}"
                  for metric in metrics if metric in df.columns]
    return "\n\n".join(parts) + "\n"


def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, stem: str = "summary", **kwargs) -> Path:
    """Write :func:`markdown_report` to ``out_dir/<stem>.md`` (atomically); returns the path."""
    return atomic_write_text(Path(out_dir) / f"{stem}.md", markdown_report(df, **kwargs))
