"""Training engine: the loop, run records and checkpoints, DDP, the one inference path, precision.

    >>> from emclip.engine import train_from_profile, load_run
    >>> result = train_from_profile("emclip", "fundus", ["domain1"], profile="ci",
    ...                             checkpoint_path="run.pt")                        # doctest: +SKIP
    >>> model, record = load_run("run.pt")                                           # doctest: +SKIP

Modules: ``train`` (``train``, ``TrainResult``), ``recipe`` (``prepare_run``,
``train_from_profile``, ``load_or_train``: the profile-sized recipe), ``record`` (the run record
every checkpoint carries and the comparison before a resume or reuse), ``checkpoint`` (atomic
save/load, ``load_run``, RNG states, ``checkpoint_name``), ``distributed`` (torchrun/DDP
helpers), ``predict`` (the inference path: ``inference``, ``run_batches``, ``predict_logits``,
``predict``, ``region_dice``), ``precision`` (``select_precision``: bf16, fp16 + GradScaler or
fp32). Importing the engine does not import MONAI or open_clip (they load when a loss or a model
is built), so DDP workers and the CLI start fast.
"""

from emclip.engine.checkpoint import (
    checkpoint_name,
    config_tag,
    load_checkpoint,
    load_model,
    load_run,
    read_checkpoint,
    read_record,
    save_checkpoint,
)
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
from emclip.engine.recipe import PreparedRun, load_or_train, prepare_run, train_from_profile
from emclip.engine.record import TrainSettings, check_same_run, make_record, record_differences
from emclip.engine.train import TrainResult, lr_lambda, set_aside, train

__all__ = [
    "Precision",
    "Predictions",
    "PreparedRun",
    "TrainResult",
    "TrainSettings",
    "check_same_run",
    "checkpoint_name",
    "config_tag",
    "inference",
    "load_checkpoint",
    "load_model",
    "load_or_train",
    "load_run",
    "lr_lambda",
    "make_record",
    "mean_region_dice",
    "predict",
    "predict_logits",
    "prepare_run",
    "read_checkpoint",
    "read_record",
    "record_differences",
    "region_dice",
    "run_batches",
    "save_checkpoint",
    "select_precision",
    "set_aside",
    "train",
    "train_from_profile",
]
