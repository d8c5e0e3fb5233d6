"""Baselines that share EM-CLIP's frozen CLIP encoder.

* ``clip-linear``: a linear probe — a 1x1 conv on the deepest CLIP patch features, logits
  bilinearly upsampled from the patch grid (how far frozen CLIP features alone go).
* ``emclip-no-em`` and ``emclip-no-text`` are :class:`~emclip.models.emclip_model.EMCLIP` with
  ``em.enabled = false`` or ``text = "learned"`` (class queries learned from scratch instead
  of CLIP text embeddings); their configs live in ``configs/``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from emclip.models.base import SegmentationModel
from emclip.models.emclip_model import build_clip_encoder
from emclip.tasks import Task, get_task


class CLIPLinear(SegmentationModel):
    """Frozen CLIP + linear head: images (B, 3, H, W) -> logits (B, R, H, W)."""

    def __init__(self, task: Task | str, config: dict):
        super().__init__(task, config)
        self.encoder, _ = build_clip_encoder(self.config, get_task(task), with_text=False)
        self.size_divisor = self.encoder.input_multiple
        self.head = nn.Conv2d(self.encoder.out_channels[-1], self.num_outputs, 1)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        deep = self.encoder(images)[-1].to(self.head.weight.dtype)
        return F.interpolate(self.head(deep), size=images.shape[-2:], mode="bilinear", align_corners=False)
