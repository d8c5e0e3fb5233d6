"""Models: EM-CLIP, its ablations and the baselines, all from one factory.

    >>> from emclip.models import create_model, list_models
    >>> list_models()
    ['clip-linear', 'emclip-no-em', 'emclip-no-text', 'emclip', 'unet']
    >>> model = create_model("emclip", "fundus", profile="ci")   # doctest: +SKIP

Layout (encoder -> aggregator -> decoder -> head, as segmentation_models.pytorch):
``base`` (input checks), ``blocks`` (decoder pieces), ``emclip_model`` (EM-CLIP),
``baselines`` (CLIP + linear head), ``unet`` (MONAI U-Net), ``factory`` (JSON configs).
"""

from emclip.models.base import SegmentationModel
from emclip.models.factory import PROFILE_KEYS, create_model, get_model_config, list_models

__all__ = ["PROFILE_KEYS", "SegmentationModel", "create_model", "get_model_config", "list_models"]
