"""U-Net trained from scratch on the image only: the classical DG baseline.

MONAI's ``BasicUNet`` (2-D, instance norm, LeakyReLU, transposed-conv upsampling); no CLIP,
no text. Config section ``unet``: ``features`` (five encoder widths and the last decoder width,
MONAI's convention) and ``dropout``. ``unet-stylerand`` is the same network trained with style
randomisation (``train.augment = "style"``, read by the engine).
"""

from __future__ import annotations

import torch
from monai.networks.nets import BasicUNet

from emclip.models.base import SegmentationModel
from emclip.tasks import Task


class UNet(SegmentationModel):
    """images (B, 3, H, W) in [0, 1] -> logits (B, R, H, W); ``size_divisor`` 16 (four poolings)."""

    size_divisor = 16

    def __init__(self, task: Task | str, config: dict):
        super().__init__(task, config)
        cfg = config["unet"]
        self.net = BasicUNet(spatial_dims=2, in_channels=3, out_channels=self.num_outputs,
                             features=tuple(cfg["features"]), dropout=cfg["dropout"])

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images - 0.5)
