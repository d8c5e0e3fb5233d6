"""Models: EM-CLIP, its ablations and controls, and the baselines, all from one factory.

    >>> from emclip.models import create_model, list_models
    >>> sorted(list_models())[:3]
    ['clip-linear', 'emclip', 'emclip-no-em']
    >>> model = create_model("emclip", "fundus")                  # doctest: +SKIP
    >>> model = create_model("emclip", "fundus", profile="ci")    # doctest: +SKIP
    >>> same = create_model_from_config(model.config, "fundus")   # doctest: +SKIP

Layout (encoder -> aggregator -> decoder -> head, as segmentation_models.pytorch):
``base`` (input checks, padding), ``schema`` (the typed config keys), ``factory`` (JSON configs
in ``configs/``, ``create_model``), ``clip_tower`` (the frozen CLIP encoder and class text),
``emclip_model`` (EM-CLIP and its ablations), ``baselines`` (CLIP + linear head), ``unet``
(MONAI U-Net). Importing this package loads neither open_clip nor MONAI.
"""

from emclip.models.base import SegmentationModel
from emclip.models.factory import create_model, create_model_from_config, get_model_config, list_models
from emclip.models.schema import ROLES, validate_config

__all__ = ["ROLES", "SegmentationModel", "create_model", "create_model_from_config", "get_model_config",
           "list_models", "validate_config"]
