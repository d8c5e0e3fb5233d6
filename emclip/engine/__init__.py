"""Training engine: the loop, checkpoints, DDP, the one inference path, precision.

    >>> from emclip.engine import train_from_profile, checkpoint_name
    >>> result = train_from_profile("emclip", "fundus", ["domain1"], profile="ci")  # doctest: +SKIP
    >>> result.history.tail()                                                       # doctest: +SKIP

Modules: ``train`` (``train``, ``train_from_profile``, ``TrainResult``), ``checkpoint``
(atomic save/load, RNG states, ``checkpoint_name``, ``load_model``), ``distributed``
(torchrun/DDP helpers), ``predict`` (the inference path: ``inference``, ``run_batches``,
``predict_logits``, ``predict``, ``region_dice``), ``precision`` (``select_precision``: bf16,
fp16 + GradScaler or fp32). Importing the engine does not import MONAI or open_clip (they load
when a loss or a model is built), so DDP workers and the CLI start fast.
"""

from emclip.engine.checkpoint import checkpoint_name, load_checkpoint, load_model, save_checkpoint
from emclip.engine.precision import Precision, select_precision
from emclip.engine.predict import (
    Predictions,
    inference,
    mean_region_dice,
    predict,
    predict_logits,
    region_dice,
    run_batches,
)
from emclip.engine.train import TrainResult, lr_lambda, train, train_from_profile

__all__ = [
    "Precision",
    "Predictions",
    "TrainResult",
    "checkpoint_name",
    "inference",
    "load_checkpoint",
    "load_model",
    "lr_lambda",
    "mean_region_dice",
    "predict",
    "predict_logits",
    "region_dice",
    "run_batches",
    "save_checkpoint",
    "select_precision",
    "train",
    "train_from_profile",
]
