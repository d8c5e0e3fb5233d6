"""Cross-domain evaluation: score models per image, volume and region, and run the DG protocols.

* :func:`score_model` / :func:`evaluate_model` (:mod:`~emclip.evaluation.scoring`) — one model on
  one data set: tidy tables, one row per (image, region) and, for cardiac stacks, per (volume,
  region) scored in 3-D (:mod:`emclip.metrics`).
* :func:`run_protocol` (:mod:`~emclip.evaluation.protocol`) — train (or reuse) every run of a
  protocol and score it on every domain: one row per (method, seed, split, target domain,
  level, region).
* :func:`evaluate_checkpoints` (:mod:`~emclip.evaluation.checkpoints`) — saved checkpoints, each
  scored with its own run record's data settings.
"""

from emclip.engine.recipe import load_or_train
from emclip.evaluation.checkpoints import evaluate_checkpoints
from emclip.evaluation.protocol import adopt_checkpoint, find_checkpoint, run_protocol
from emclip.evaluation.scoring import (
    LEVELS,
    RESULT_COLUMNS,
    TEST_DATA_SEED,
    Scores,
    evaluate_model,
    score_domains,
    score_model,
    summarise,
)

__all__ = [
    "LEVELS",
    "RESULT_COLUMNS",
    "TEST_DATA_SEED",
    "Scores",
    "adopt_checkpoint",
    "evaluate_checkpoints",
    "evaluate_model",
    "find_checkpoint",
    "load_or_train",
    "run_protocol",
    "score_domains",
    "score_model",
    "summarise",
]
