"""The results of a sweep as one table: a row per run (parameters, status, recorded metrics)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from emclip.fileio import atomic_write

STATUS_FILE = "run.json"
TABLE_FILE = "sweep.csv"


def read_status(run_dir: str | os.PathLike) -> dict | None:
    """The ``run.json`` of a run folder, or ``None`` when the run has not finished."""
    path = Path(run_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None

def gather(output: str | os.PathLike, names: list[str] | None = None, save: bool = True):
    """One pandas row per run folder under ``output`` (or just ``names``): ``run``, ``status``,
    the parameters, the recorded metrics (nested dicts flattened to ``dice.domain1``), ``seconds``,
    ``error`` and ``notebook``. Saved as ``<output>/sweep.csv`` when ``save``."""
    import pandas as pd

    output = Path(output)
    if names is None:
        names = sorted(p.parent.name for p in output.glob(f"*/{STATUS_FILE}"))
    rows = []
    for name in names:
        status = read_status(output / name)
        if status is None:
            continue
        row = {"run": name, "status": status.get("status")}
        row.update(status.get("params", {}))
        row.update(pd.json_normalize(status.get("metrics") or {}, sep=".").to_dict("records")[0]
                   if status.get("metrics") else {})
        row.update(seconds=status.get("seconds"), error=status.get("error"), notebook=status.get("output"))
        rows.append(row)
    table = pd.DataFrame(rows)
    if save and rows:
        with atomic_write(output / TABLE_FILE) as tmp:
            table.to_csv(tmp, index=False)
    return table


def best_params(table, metric: str, params: list[str], maximize: bool = True) -> dict:
    """The parameter setting with the best ``metric`` averaged over the other columns' variation
    (seeds, domains recorded as ``metric.<domain>`` columns); failed runs are ignored.

    >>> import pandas as pd
    >>> t = pd.DataFrame({"K": [4, 4, 8, 8], "seed": [0, 1, 0, 1], "dice": [0.5, 0.7, 0.6, 0.8]})
    >>> best_params(t, "dice", ["K"])
    {'K': 8}
    """
    if "status" in table.columns:
        table = table[table["status"] == "ok"]
    columns = [c for c in table.columns if c == metric or str(c).startswith(metric + ".")]
    missing = [p for p in params if p not in table.columns]
    if not columns or missing:
        raise ValueError(f"best_params: {'metric ' + repr(metric) if not columns else 'parameters ' + str(missing)} "
                         f"not in the table; columns: {', '.join(map(str, table.columns))}.")
    scores = table[columns].mean(axis=1).groupby([table[p] for p in params]).mean()
    best = scores.idxmax() if maximize else scores.idxmin()
    best = best if isinstance(best, tuple) else (best,)
    return {p: (v.item() if hasattr(v, "item") else v) for p, v in zip(params, best)}
