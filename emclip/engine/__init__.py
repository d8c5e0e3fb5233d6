"""Training engine: the loop, checkpoints, DDP, inference.

    >>> from emclip.engine import train_from_profile, checkpoint_name
    >>> result = train_from_profile("emclip", "fundus", ["domain1"], profile="ci")  # doctest: +SKIP
    >>> result.history.tail()                                                       # doctest: +SKIP

Modules: ``train`` (``train``, ``train_from_profile``, ``TrainResult``), ``checkpoint``
(atomic save/load, RNG states, ``checkpoint_name``, ``load_model``), ``distributed``
(torchrun/DDP helpers), ``predict`` (``predict``, ``region_dice``). Importing the engine does
not import MONAI or open_clip (they load when a loss or a model is built), so DDP workers and
the CLI start fast.
"""

from emclip.engine.checkpoint import checkpoint_name, load_checkpoint, load_model, save_checkpoint
from emclip.engine.predict import Predictions, mean_region_dice, predict, region_dice
from emclip.engine.train import TrainResult, lr_lambda, train, train_from_profile

__all__ = [
    "Predictions",
    "TrainResult",
    "checkpoint_name",
    "load_checkpoint",
    "load_model",
    "lr_lambda",
    "mean_region_dice",
    "predict",
    "region_dice",
    "save_checkpoint",
    "train",
    "train_from_profile",
]
