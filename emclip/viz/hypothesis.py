"""The cross-domain notebook as a hypothesis test: the paper's claim, the student's prediction, the
measured comparison and a plain reading written from the numbers, true whichever way they fall.

Input: the tidy results table of :func:`emclip.evaluation.run_protocol` (columns ``method, seed,
target_domain, in_domain, region`` and the metric). Each :class:`Claim` compares EM-CLIP with one
other model on the *unseen* domains: per seed, the metric averaged over unseen domains and
regions; the difference is taken per seed (paired: same seed, same test images) and averaged.

The verdict rule (a rule of thumb for few seeds, not a significance test; design choice, not from
the paper, the same rule as :func:`emclip.reports.ablation_effects`): EM-CLIP is **higher** (or
**lower**) when the mean difference exceeds both ``margin`` (0.01 Dice) and the seed-to-seed
standard deviation of the paired differences; otherwise the run **does not separate** them. With
one seed there is no spread, and the reading says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from emclip.reports import LOWER_IS_BETTER

__all__ = ["CLAIMS", "Claim", "PREDICTIONS", "compare", "describe_encoder", "plain_reading"]

PREDICTIONS = ("higher", "lower", "same")


@dataclass(frozen=True)
class Claim:
    """One comparison the abstract's claim implies: EM-CLIP against ``other``, named ``what``."""

    other: str  #: the factory model EM-CLIP is compared with
    what: str  #: what the comparison isolates, in words
    expected: str  #: what the claim predicts for EM-CLIP's score ("higher")


CLAIMS = (
    Claim("emclip-no-em", "EM aggregation (EM-CLIP vs the same model without the EM iterations)", "higher"),
    Claim("emclip-no-text", "text guidance (EM-CLIP vs the same model with learned queries instead of CLIP text)",
          "higher"),
    Claim("emclip-random", "the pretrained foundation model (EM-CLIP vs the same model on a randomly initialised "
          "CLIP)", "higher"),
    Claim("unet", "EM-CLIP vs a U-Net trained from scratch", "higher"),
)


def _per_seed(results: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Rows = seed, columns = method: the metric averaged over unseen domains and regions."""
    unseen = results[~results["in_domain"].astype(bool)]
    return unseen.groupby(["seed", "method"])[metric].mean().unstack("method")


def compare(results: pd.DataFrame, metric: str = "dice", reference: str = "emclip", claims=CLAIMS,
            margin: float | None = None) -> pd.DataFrame:
    """One row per claim whose model is in ``results``: the measured comparison and its verdict.

    Columns: ``other, what, expected, reference_score, other_score, difference`` (reference - other,
    seed-averaged), ``spread`` (std over seeds of the paired differences; NaN with one seed),
    ``seeds``, ``verdict`` ("higher" / "lower" / "same": EM-CLIP's score against the other's, where
    "same" means within the margin or the spread). For distances (lower is better) "higher" still
    means EM-CLIP's *value* is higher, i.e. worse; ``expected`` is flipped to "lower" for them.
    """
    margin = margin if margin is not None else (1.0 if LOWER_IS_BETTER.get(metric) else 0.01)
    scores = _per_seed(results, metric)
    if reference not in scores.columns:
        raise ValueError(f"the results hold no rows of {reference!r}: nothing to compare with")
    rows = []
    for claim in claims:
        if claim.other not in scores.columns:
            continue
        paired = (scores[reference] - scores[claim.other]).dropna()
        difference = float(paired.mean())
        spread = float(paired.std(ddof=1)) if len(paired) > 1 else float("nan")
        bar = max(margin, spread if np.isfinite(spread) else 0.0)
        verdict = "higher" if difference > bar else "lower" if difference < -bar else "same"
        expected = claim.expected
        if LOWER_IS_BETTER.get(metric):
            expected = {"higher": "lower", "lower": "higher"}.get(expected, expected)
        rows.append({"other": claim.other, "what": claim.what, "expected": expected,
                     "reference_score": float(scores[reference].mean()), "other_score": float(scores[claim.other].mean()),
                     "difference": difference, "spread": spread, "seeds": len(paired), "verdict": verdict})
    return pd.DataFrame(rows)


def _verdict_words(row, reference: str, margin: float) -> str:
    if row.verdict == "same":
        spread = f"the seed-to-seed spread ({row.spread:.3f})" if np.isfinite(row.spread) else "one seed, no spread"
        return (f"a difference of {row.difference:+.3f}, within the margin ({margin:g} or {spread}): "
                "this run does not separate them")
    return f"{reference} is {row.verdict} by {abs(row.difference):.3f}"


def plain_reading(comparison: pd.DataFrame, metric: str = "dice", reference: str = "emclip",
                  prediction: dict | None = None, caveats=(), margin: float | None = None) -> str:
    """Markdown: per claim what was measured and whether it agrees with the claim and the prediction.

    ``prediction``: ``{other: "higher" | "lower" | "same" | None}`` (the student's guess for the
    reference's score against ``other``); ``caveats``: sentences appended as they are (e.g. "the ci
    profile trains for seconds"). Every sentence is computed from ``comparison``.
    """
    if comparison.empty:
        return f"- No comparison possible: the results hold `{reference}` but none of the models the claim names."
    margin = margin if margin is not None else (1.0 if LOWER_IS_BETTER.get(metric) else 0.01)
    prediction = prediction or {}
    lines = []
    for row in comparison.itertuples():
        agrees = "agrees with the claim" if row.verdict == row.expected else (
            "does not show what the claim predicts" if row.verdict == "same" else "goes against the claim")
        guess = prediction.get(row.other)
        if guess is None:
            said = "You made no prediction."
        elif guess not in PREDICTIONS:
            raise ValueError(f"prediction for {row.other!r} must be one of {PREDICTIONS} or None, got {guess!r}")
        else:
            said = f"You predicted {guess}: {'right' if guess == row.verdict else 'not what was measured'}."
        lines.append(f"- **{row.what}**: {metric} on unseen domains {row.reference_score:.3f} against "
                     f"{row.other_score:.3f} ({row.seeds} seed{'s' if row.seeds != 1 else ''}); "
                     f"{_verdict_words(row, reference, margin)}. This {agrees}. {said}")
    counts = comparison.verdict.eq(comparison.expected).sum(), comparison.verdict.eq("same").sum()
    against = len(comparison) - counts[0] - counts[1]
    lines.append(f"\n**In this run** {counts[0]} of {len(comparison)} comparisons agree with the claim, "
                 f"{against} go against it and {counts[1]} are undecided.")
    if (comparison.seeds < 2).any():
        lines.append("With one seed there is no seed-to-seed spread: read this as a description of one run, "
                     "not as evidence.")
    lines.extend(str(c) for c in caveats)
    return "\n".join(lines)


def describe_encoder(config: dict) -> str:
    """One sentence naming the CLIP tower of a model config (``config["clip"]`` = model + pretrained weights)."""
    clip = config["clip"]
    weights = clip.get("pretrained")
    if weights in (None, "random"):
        return (f"EM-CLIP's encoder in this run is `{clip.get('model')}` with **randomly initialised** weights: "
                "it carries no pretrained knowledge for EM and the text to transfer.")
    return f"EM-CLIP's encoder in this run is `{clip.get('model')}` with the pretrained weights `{weights}`."
