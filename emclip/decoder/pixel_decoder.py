"""The text-guided pixel decoder of EM-CLIP (the paper's second idea).

What follows the paper's description (arXiv 2509.08570, abstract):
    * class text embeddings from the CLIP text tower, "domain-invariant textual knowledge",
      guide the deep visual features inside the decoder (:class:`~emclip.decoder.blocks.TextGuidance`);
    * the logit of a region is the similarity between a pixel embedding and that region's
      text embedding (:class:`~emclip.decoder.blocks.CosineClassifier`).

Design choices, not from the paper (its method section, widths and depths were not available):
    * a small learnable projection (Linear-GELU-Linear) maps CLIP's joint-space text
      embeddings to the decoder's width; it is shared by guidance and classifier;
    * multi-level CLIP features are fused top-down (deepest first, FPN / CLIPSeg style) on the
      patch grid, with text guidance after each fusion;
    * the patch grid is then upsampled x2 per stage; a light conv stem on the input image
      (:class:`~emclip.decoder.blocks.ConvStem`) feeds each finer stage, like a U-Net skip;
    * cross-attention is single-head and modulates the features by FiLM (CLIPSeg uses FiLM
      too; tqdm uses Mask2Former-style deformable attention, too heavy for this kit).

Shapes: ``forward(features, text, image)`` with ``features`` a list of (B, C_l, h, w) maps
(shallow to deep, all on the same patch grid h = H / reduction), ``text`` (R, E) class
embeddings and ``image`` (B, 3, H, W) in [0, 1]; returns logits (B, R, H, W).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from emclip.decoder.blocks import ConvNormAct, ConvStem, CosineClassifier, TextGuidance


def _stage_channels(channels: list[int] | tuple[int, ...], count: int) -> list[int]:
    """The width of ``count`` stages: the given list, its last entry repeated as needed."""
    channels = list(channels)
    if not channels:
        raise ValueError("decoder channels must be a non-empty list of ints, e.g. [64, 48, 32].")
    return [channels[min(i, len(channels) - 1)] for i in range(count)]


class TextGuidedDecoder(nn.Module):
    """Text-guided pixel decoder (see the module docstring).

    Args:
        in_channels: channels of each encoder level, shallow to deep (the deepest level is
            typically already EM-aggregated by the model).
        text_dim: E, the width of the class embeddings passed to ``forward``.
        num_classes: R, the number of logit channels.
        reduction: input pixels per patch-grid pixel (16 for ViT-B/16); a power of two.
        channels: decoder widths, one per stage from the patch grid down to stride 2.
        stem_channels: widths of the conv stem (strides 2, 4, ...); ``[]`` disables it.
        embed_dim: D, the width of the pixel and class embeddings of the classifier.
        text_guidance: apply :class:`TextGuidance` at each stage (``False`` for ablations).
    """

    def __init__(
        self,
        in_channels: list[int],
        text_dim: int,
        num_classes: int,
        reduction: int = 16,
        channels: list[int] | tuple[int, ...] = (64, 48, 32, 24),
        stem_channels: list[int] | tuple[int, ...] = (16, 24),
        embed_dim: int = 32,
        text_guidance: bool = True,
    ):
        super().__init__()
        if reduction < 2 or reduction & (reduction - 1):
            raise ValueError(f"reduction must be a power of two >= 2, got {reduction}.")
        self.reduction = reduction
        self.num_up = int(math.log2(reduction)) - 1  # patch grid -> stride 2
        widths = _stage_channels(channels, self.num_up + 1)
        self.widths = widths
        top = widths[0]
        # top-down fusion of the CLIP levels on the patch grid
        self.lateral = nn.ModuleList(
            nn.Identity() if c == top else nn.Conv2d(c, top, 1) for c in in_channels
        )
        self.fuse = nn.ModuleList(ConvNormAct(top, top) for _ in in_channels)
        # upsampling stages, finest last; stage i works at stride reduction / 2**(i+1)
        self.up = nn.ModuleList(ConvNormAct(widths[i], widths[i + 1]) for i in range(self.num_up))
        self.stem = ConvStem(stem_channels[: self.num_up]) if stem_channels else None
        stem_widths = self.stem.channels if self.stem is not None else []
        self.skip = nn.ModuleDict()
        for i in range(self.num_up):
            stride = reduction // 2 ** (i + 1)
            level = int(math.log2(stride)) - 1  # stem stage with that stride
            if 0 <= level < len(stem_widths):
                self.skip[str(i)] = nn.Conv2d(stem_widths[level], widths[i + 1], 1)
        # text: shared projection, guidance per stage, cosine classifier
        self.text_proj = nn.Sequential(nn.Linear(text_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
        self.text_guidance = text_guidance
        if text_guidance:
            self.guide_top = nn.ModuleList(TextGuidance(top, embed_dim) for _ in in_channels)
            self.guide_up = nn.ModuleList(TextGuidance(widths[i + 1], embed_dim) for i in range(self.num_up))
        self.pixel_embed = nn.Conv2d(widths[-1], embed_dim, 1)
        self.classifier = CosineClassifier(num_classes)

    def _guide(self, guides: nn.ModuleList | None, index: int, x: torch.Tensor, text: torch.Tensor):
        return guides[index](x, text) if self.text_guidance else x

    def forward(self, features: list[torch.Tensor], text: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if len(features) != len(self.lateral):
            raise ValueError(f"expected {len(self.lateral)} feature levels, got {len(features)}.")
        t = self.text_proj(text.to(features[-1].dtype))  # (R, D)
        x = None
        for index in reversed(range(len(features))):  # deepest first
            lateral = self.lateral[index](features[index])
            x = self.fuse[index](lateral if x is None else x + lateral)
            x = self._guide(getattr(self, "guide_top", None), index, x, t)
        skips = self.stem(image) if self.stem is not None else []
        for i, up in enumerate(self.up):
            x = up(F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False))
            if str(i) in self.skip:
                level = int(math.log2(self.reduction // 2 ** (i + 1))) - 1
                x = x + self.skip[str(i)](skips[level])
            x = self._guide(getattr(self, "guide_up", None), i, x, t)
        logits = self.classifier(self.pixel_embed(x), t)
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
