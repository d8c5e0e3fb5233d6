"""Plots of a gathered sweep table (:func:`emclip.sweep.gather`): a metric against a parameter.

The table has one row per run: the swept parameters, then the recorded metrics, with a metric
recorded per domain (``record(dice={"domain1": 0.8, ...})``) flattened to ``dice.domain1`` ...
:func:`metric_long` turns those columns into a tidy ``domain`` / value table for seaborn.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def metric_long(table: pd.DataFrame, metric: str, id_columns: list[str] | None = None) -> pd.DataFrame:
    """Tidy rows ``(*id_columns, domain, metric)`` from a sweep table.

    Per-domain columns are ``<metric>.<domain>`` (a dict recorded by the notebook) or
    ``<metric>_<domain>``; a plain ``<metric>`` column gives one pseudo-domain ``all``.
    ``id_columns`` default: every column that is not a metric of this name. Failed runs are dropped.
    """
    if "status" in table.columns:
        table = table[table["status"] == "ok"]
    per_domain = {}
    for sep in (".", "_"):  # a recorded dict first; ``dice_mean`` is not a domain of ``dice`` then
        per_domain = {c: c[len(metric) + 1:] for c in table.columns if str(c).startswith(metric + sep)}
        if per_domain:
            break
    if not per_domain and metric not in table.columns:
        numeric = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c])]
        raise ValueError(f"Metric {metric!r} is not in the sweep table (neither {metric!r} nor "
                         f"{metric}.<domain> columns). Numeric columns: {', '.join(numeric) or 'none'}.")
    columns = per_domain or {metric: "all"}
    if id_columns is None:
        id_columns = [c for c in table.columns if c not in columns and c != metric]
    long = table[id_columns + list(columns)].melt(id_vars=id_columns, var_name="domain", value_name="_value")
    long = long.rename(columns={"_value": metric})
    long["domain"] = long["domain"].map(columns)
    return long.dropna(subset=[metric]).reset_index(drop=True)


def plot_metric_vs_param(table: pd.DataFrame, metric: str, param: str, hue: str | None = None,
                         by_domain: bool = True, ax=None):
    """``metric`` against the swept ``param`` (lines coloured by ``hue``, another parameter), one
    panel per domain when the metric was recorded per domain; returns the matplotlib Figure."""
    for name in [param] + ([hue] if hue else []):
        if name not in table.columns:
            raise ValueError(f"Parameter {name!r} is not a column of the sweep table; columns: "
                             f"{', '.join(map(str, table.columns))}.")
    long = metric_long(table, metric)
    domains = list(dict.fromkeys(long["domain"])) if by_domain else ["all"]
    if not by_domain:
        long = long.assign(domain="all")
    if ax is None:
        fig, axes = plt.subplots(1, len(domains), figsize=(3.2 * len(domains) + 0.8, 3.0),
                                 sharey=True, squeeze=False)
        axes = axes[0]
    else:
        if len(domains) > 1:
            raise ValueError("ax= draws a single panel: pass by_domain=False or leave ax=None.")
        fig, axes = ax.figure, [ax]
    palette = "viridis" if hue and pd.api.types.is_numeric_dtype(long[hue]) else None
    for axis, domain in zip(axes, domains):
        sns.lineplot(data=long[long["domain"] == domain], x=param, y=metric, hue=hue, marker="o",
                     palette=palette, errorbar=("sd", 1), ax=axis, legend=axis is axes[-1])
        axis.set_title(domain if domain != "all" else metric)
        axis.grid(alpha=0.3)
    if hue and axes[-1].get_legend() is not None:
        sns.move_legend(axes[-1], "upper left", bbox_to_anchor=(1.02, 1), title=hue)
    fig.tight_layout()
    return fig


def plot_metric_vs_k_t(table: pd.DataFrame, metric: str = "dice", k: str = "em_bases", t: str = "em_iters"):
    """The EM sweep figure: ``metric`` against K (``em_bases``), one line per T (``em_iters``),
    one panel per domain (runs repeated over seeds are averaged, the band is one s.d.)."""
    return plot_metric_vs_param(table, metric, k, hue=t)


def plot_metric_heatmap(table: pd.DataFrame, metric: str, rows: str, cols: str, ax=None):
    """Mean of ``metric`` (over domains and seeds) on a ``rows`` x ``cols`` parameter grid."""
    long = metric_long(table, metric)
    grid = long.pivot_table(index=rows, columns=cols, values=metric, aggfunc="mean")
    if ax is None:
        _, ax = plt.subplots(figsize=(1.2 * len(grid.columns) + 2.0, 0.8 * len(grid.index) + 1.5))
    sns.heatmap(grid, annot=True, fmt=".3f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
    ax.set_title(f"mean {metric}")
    return ax.figure
