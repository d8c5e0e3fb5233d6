"""The plain reading of the cross-domain comparison is computed from the numbers, whichever way they fall."""

from __future__ import annotations

import itertools

import pandas as pd
import pytest

from emclip.viz.hypothesis import compare, describe_encoder, plain_reading


def _results(out_scores: dict[str, list[float]], in_score: float = 0.9) -> pd.DataFrame:
    """A tidy table: per method, per seed, the same score on two unseen domains and two regions."""
    rows = []
    for method, per_seed in out_scores.items():
        for seed, score in enumerate(per_seed):
            for domain, region in itertools.product(("domain1", "domain2", "domain3"), ("disc", "cup")):
                inside = domain == "domain1"
                rows.append({"method": method, "seed": seed, "target_domain": domain, "in_domain": inside,
                             "region": region, "dice": in_score if inside else score,
                             "hd95": 5.0 if inside else 20.0 * (1 - score)})
    return pd.DataFrame(rows)


def test_verdicts_follow_the_numbers_in_both_directions():
    results = _results({"emclip": [0.70, 0.72, 0.71], "emclip-no-em": [0.50, 0.52, 0.51],
                        "emclip-no-text": [0.80, 0.83, 0.81], "emclip-random": [0.705, 0.70, 0.72],
                        "unet": [0.69, 0.75, 0.65]})
    table = compare(results).set_index("other")
    assert table.loc["emclip-no-em", "verdict"] == "higher"
    assert table.loc["emclip-no-em", "difference"] == pytest.approx(0.20)
    assert table.loc["emclip-no-text", "verdict"] == "lower"
    assert table.loc["emclip-random", "verdict"] == "same"  # within 0.01
    assert table.loc["unet", "verdict"] == "same"  # +0.013 on average, but the seeds disagree (spread 0.05)
    text = plain_reading(compare(results), prediction={"emclip-no-em": "higher", "emclip-no-text": "higher"})
    assert "0.710 against 0.510" in text and "emclip is higher by 0.200" in text
    assert text.count("agrees with the claim") == 1 and text.count("goes against the claim") == 1
    assert "does not show what the claim predicts" in text
    assert "You predicted higher: right" in text and "You predicted higher: not what was measured" in text
    assert "1 of 4 comparisons agree with the claim, 1 go against it and 2 are undecided" in text


def test_one_seed_is_read_as_one_run_and_caveats_are_appended():
    results = _results({"emclip": [0.6], "emclip-no-em": [0.4]})
    table = compare(results)
    assert len(table) == 1 and table.seeds.iloc[0] == 1 and table.verdict.iloc[0] == "higher"
    text = plain_reading(table, caveats=["The ci profile trains for seconds."])
    assert "With one seed there is no seed-to-seed spread" in text and text.endswith("trains for seconds.")
    assert "You made no prediction." in text


def test_distances_flip_what_the_claim_expects():
    results = _results({"emclip": [0.7, 0.7], "unet": [0.5, 0.5]})
    row = compare(results, metric="hd95").iloc[0]
    assert row.expected == "lower" and row.verdict == "lower"  # EM-CLIP's HD95 is lower: the claim holds
    assert "agrees with the claim" in plain_reading(compare(results, metric="hd95"), metric="hd95")


def test_bad_prediction_and_missing_reference_are_explained():
    results = _results({"emclip": [0.6], "unet": [0.4]})
    with pytest.raises(ValueError, match="must be one of"):
        plain_reading(compare(results), prediction={"unet": "better"})
    with pytest.raises(ValueError, match="no rows of 'emclip'"):
        compare(_results({"unet": [0.4]}))
    assert "No comparison possible" in plain_reading(compare(_results({"emclip": [0.5], "clip-linear": [0.1]})))


def test_the_encoder_is_named_with_its_weights():
    assert "randomly initialised" in describe_encoder({"clip": {"model": "emclip-tiny", "pretrained": None}})
    assert "randomly initialised" in describe_encoder({"clip": {"model": "emclip-tiny", "pretrained": "random"}})
    text = describe_encoder({"clip": {"model": "emclip-tiny", "pretrained": "synth-v2"}})
    assert "`emclip-tiny`" in text and "pretrained weights `synth-v2`" in text
