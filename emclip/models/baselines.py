"""CLIP-linear: EM-CLIP's frozen CLIP encoder and a linear probe.

A 1x1 conv on the deepest CLIP patch features, logits bilinearly upsampled from the patch grid
(how far frozen CLIP features alone go). With ``head.feature_norm = "ln_post"`` the features
are first normalised as CLIP normalises its last block's tokens (the tower's own, frozen
``ln_post`` LayerNorm over channels), so the probe does not face the raw residual stream, whose
scale varies by orders of magnitude between channels; ``"none"`` probes the raw stream.
``ln_post`` exists for ViT towers only.

``emclip-no-em`` and ``emclip-no-text`` are :class:`~emclip.models.emclip_model.EMCLIP` with
``em.enabled = false`` or ``text.source = "learned"``; their configs live in ``configs/``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from emclip.errors import ConfigError
from emclip.models.base import SegmentationModel
from emclip.models.clip_tower import build_clip_encoder
from emclip.tasks import Task


class CLIPLinear(SegmentationModel):
    """Frozen CLIP + linear head: images (B, 3, H, W) -> logits (B, R, H, W)."""

    def __init__(self, task: Task | str, config: dict):
        super().__init__(task, config)
        self.encoder, bundle = build_clip_encoder(self.config)
        self.clip_note = bundle.note
        self.feature_norm = config["head"]["feature_norm"]
        if self.feature_norm == "ln_post" and self.encoder.kind != "vit":
            raise ConfigError(f"model config key head.feature_norm = 'ln_post' needs a ViT tower, but "
                              f"{config['clip']['model']!r} is a {self.encoder.kind}; use 'none'.")
        self.size_divisor = self.encoder.input_multiple
        self.head = nn.Conv2d(self.encoder.out_channels[-1], self.num_outputs, 1)

    def probe_features(self, images: torch.Tensor) -> torch.Tensor:
        """What the linear head sees: (B, C, h, w), the deepest level, ``ln_post``-normalised or raw."""
        deep = self.encoder(images)[-1]
        if self.feature_norm == "ln_post":
            deep = self.encoder.visual.ln_post(deep.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return deep.to(self.head.weight.dtype)

    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.probe_features(images))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
