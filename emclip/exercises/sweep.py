"""Checker for notebook 07's exercise: pick the best setting from a gathered sweep table.

``check_best_params(student_fn)`` calls ``student_fn(table, metric, params) -> dict`` on small
tables with several seeds and per-domain metric columns (``dice.domain1`` ...) and compares the
answer with :func:`emclip.sweep.best_params`: average over domains and seeds first, then pick the
best parameter combination; failed runs do not count.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd

from emclip.sweep import best_params

__all__ = ["check_best_params", "example_table"]


def example_table(seed: int = 0, failed_best: bool = False) -> pd.DataFrame:
    """A sweep table over ``em_bases`` x ``em_iters`` x ``seed`` with ``dice.<domain>`` columns.

    With ``failed_best`` the single highest Dice sits in a failed run (it must be ignored), and
    one seed of a weaker setting is lucky (so that taking the best single run is wrong)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, t, s in itertools.product((4, 8, 16), (1, 3), (0, 1, 2)):
        base = 0.5 + 0.02 * np.log2(k) + 0.03 * t + rng.normal(0, 0.01)
        rows.append({"run": f"em_bases={k}__em_iters={t}__seed={s}", "status": "ok", "em_bases": k,
                     "em_iters": t, "seed": s, "dice.domain1": base + 0.05, "dice.domain2": base - 0.05})
    table = pd.DataFrame(rows)
    if failed_best:
        table.loc[0, ["status", "dice.domain1", "dice.domain2"]] = ["failed", 0.99, 0.99]
        table.loc[7, ["dice.domain1", "dice.domain2"]] = [0.95, 0.95]  # one lucky seed of K=8, T=1
    return table


def check_best_params(student_fn, verbose: bool = True) -> bool:
    """True when ``student_fn(table, metric, params)`` picks the same setting as the reference."""
    cases = [(example_table(0), ["em_bases", "em_iters"]), (example_table(1, failed_best=True), ["em_bases", "em_iters"]),
             (example_table(2, failed_best=True), ["em_iters"])]
    for index, (table, params) in enumerate(cases):
        expected = best_params(table, "dice", params)
        got = student_fn(table.copy(), "dice", list(params))
        if not isinstance(got, dict):
            raise AssertionError(f"case {index}: return a dict parameter -> value, got {type(got).__name__}.")
        got = {k: (v.item() if hasattr(v, "item") else v) for k, v in got.items()}
        if got != expected:
            best_run = table.loc[table[["dice.domain1", "dice.domain2"]].mean(axis=1).idxmax(), params].to_dict()
            hint = ("you picked the single best run: average over seeds (and domains) first"
                    if got == best_run else "drop failed runs, average dice.* over domains, then over seeds "
                    "(groupby the parameters), then take the best")
            raise AssertionError(f"case {index} (params {params}): expected {expected}, got {got}; {hint}.")
    if verbose:
        print("Correct: you average over domains and seeds and ignore failed runs.")
    return True
