"""The text-guided pixel decoder of EM-CLIP (the paper's second idea).

What follows the paper's description (arXiv 2509.08570, abstract):
    * class text embeddings from the CLIP text tower, "domain-invariant textual knowledge",
      guide the deep visual features inside the decoder (:class:`~emclip.decoder.blocks.TextGuidance`);
    * the logit of a region is the similarity between a pixel embedding and that region's
      text embedding (:class:`~emclip.decoder.blocks.CosineClassifier`).

Design choices, not from the paper (its method section, widths and depths were not available):
    * a projection maps CLIP's joint-space text embeddings to the decoder's width; it is shared
      by guidance and classifier. ``text_projection``: ``"mlp"`` (Linear-GELU-Linear, trained:
      the class embeddings may drift far from CLIP's), ``"linear"`` (one trained Linear) or
      ``"fixed"`` (a frozen random orthogonal map: the classes keep CLIP's geometry, exactly when
      D >= E, up to a random projection otherwise);
    * guidance may attend to more rows than the classifier scores (``class_rows``): e.g. a
      background prompt for the fundus task, whose logits are only disc and cup, so that a
      background pixel need not attend to disc or cup;
    * with ``centre_dim`` the class embeddings are adapted per image from the EM centres
      (:class:`~emclip.decoder.blocks.CentreTextMatching`);
    * multi-level CLIP features are fused top-down (deepest first, FPN / CLIPSeg style) on the
      patch grid, with text guidance after each fusion;
    * the patch grid is then upsampled x2 per stage; a light conv stem on the input image
      (:class:`~emclip.decoder.blocks.ConvStem`) feeds the finer stages it reaches, like a U-Net
      skip. The kit's default stem has one stage, at stride 2 (``stem_channels=[16]``): its
      convolutions read 7 x 7 pixels, enough for edges but not for whole structures, so it sharpens
      the boundaries while the encoder decides what a region is. A stem that also reached stride 4
      (19 x 19 pixels, half an optic disc's width at 96 px) learnt the bright disc from the
      pixels alone, and on the kit's fundus benchmark a random encoder then did as well as the
      pretrained one (measured; see the README);
    * cross-attention is single-head and modulates the features by FiLM (CLIPSeg uses FiLM
      too; tqdm uses Mask2Former-style deformable attention, too heavy for this kit).

Shapes: ``forward(features, text, image, centres=None)`` with ``features`` a list of
(B, C_l, h, w) maps (shallow to deep, all on the same patch grid h = H / reduction), ``text``
(G, E) class embeddings (guidance attends to all G rows, the classifier scores ``class_rows``),
``image`` (B, 3, H, W) in [0, 1] and ``centres`` (B, C, K) EM bases (only with
``centre_dim``); returns logits (B, R, H, W), R = ``len(class_rows)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from emclip.decoder.blocks import CentreTextMatching, ConvNormAct, ConvStem, CosineClassifier, TextGuidance

TEXT_PROJECTIONS = ("mlp", "linear", "fixed")


def make_text_projection(kind: str, text_dim: int, embed_dim: int) -> nn.Module:
    """(.., E) -> (.., D): ``"mlp"``, ``"linear"`` or ``"fixed"`` (see the module docstring)."""
    if kind == "mlp":
        return nn.Sequential(nn.Linear(text_dim, embed_dim), nn.GELU(), nn.Linear(embed_dim, embed_dim))
    if kind == "linear":
        return nn.Linear(text_dim, embed_dim)
    if kind == "fixed":
        proj = nn.Linear(text_dim, embed_dim, bias=False)
        nn.init.orthogonal_(proj.weight)
        return proj.requires_grad_(False)
    raise ValueError(f"text projection must be one of {', '.join(TEXT_PROJECTIONS)}, got {kind!r}.")


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
        num_classes: G, the number of class embeddings passed to ``forward``.
        reduction: input pixels per patch-grid pixel (16 for ViT-B/16); a power of two.
        channels: decoder widths, one per stage from the patch grid down to stride 2.
        stem_channels: widths of the conv stem (strides 2, 4, ...); ``[]`` disables it.
        stem_input: what the stem sees, ``"centre"`` (image - 0.5), ``"standardise"`` (per image
            and channel) or ``"local"`` (local contrast normalisation;
            :class:`~emclip.decoder.blocks.ConvStem`).
        embed_dim: D, the width of the pixel and class embeddings of the classifier.
        text_guidance: apply :class:`TextGuidance` at each stage (``False`` for ablations).
        text_projection: ``"mlp"``, ``"linear"`` or ``"fixed"``.
        class_rows: the rows of ``text`` the classifier scores, in logit order (default: all G).
        centre_dim: C of the EM centres; given, the class embeddings are matched to them.
    """

    def __init__(
        self,
        in_channels: list[int],
        text_dim: int,
        num_classes: int,
        reduction: int = 16,
        channels: list[int] | tuple[int, ...] = (64, 48, 32, 24),
        stem_channels: list[int] | tuple[int, ...] = (16, 24),
        stem_input: str = "centre",
        embed_dim: int = 32,
        text_guidance: bool = True,
        text_projection: str = "mlp",
        class_rows: list[int] | None = None,
        centre_dim: int | None = None,
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
        self.stem = ConvStem(stem_channels[: self.num_up], input_norm=stem_input) if stem_channels else None
        stem_widths = self.stem.channels if self.stem is not None else []
        self.skip = nn.ModuleDict()
        for i in range(self.num_up):
            stride = reduction // 2 ** (i + 1)
            level = int(math.log2(stride)) - 1  # stem stage with that stride
            if 0 <= level < len(stem_widths):
                self.skip[str(i)] = nn.Conv2d(stem_widths[level], widths[i + 1], 1)
        # text: shared projection, guidance per stage, cosine classifier
        self.text_proj = make_text_projection(text_projection, text_dim, embed_dim)
        self.class_rows = list(range(num_classes)) if class_rows is None else [int(r) for r in class_rows]
        if not self.class_rows or min(self.class_rows) < 0 or max(self.class_rows) >= num_classes:
            raise ValueError(f"class_rows must index the {num_classes} class embeddings, got {class_rows}.")
        self.text_guidance = text_guidance
        if text_guidance:
            self.guide_top = nn.ModuleList(TextGuidance(top, embed_dim) for _ in in_channels)
            self.guide_up = nn.ModuleList(TextGuidance(widths[i + 1], embed_dim) for i in range(self.num_up))
        self.pixel_embed = nn.Conv2d(widths[-1], embed_dim, 1)
        self.classifier = CosineClassifier(len(self.class_rows))
        self.match = CentreTextMatching(centre_dim, embed_dim) if centre_dim else None

    def _guide(self, guides: nn.ModuleList | None, index: int, x: torch.Tensor, text: torch.Tensor):
        return guides[index](x, text) if self.text_guidance else x

    def class_embeddings(self, text: torch.Tensor, centres: torch.Tensor | None = None) -> torch.Tensor:
        """Projected class embeddings: (G, D), or (B, G, D) when matched to the ``centres`` (B, C, K)."""
        t = self.text_proj(text)
        if self.match is None:
            return t
        if centres is None:
            raise ValueError("this decoder matches the class embeddings to EM centres: pass centres (B, C, K).")
        return self.match(t, centres.to(t.dtype))

    def forward(self, features: list[torch.Tensor], text: torch.Tensor, image: torch.Tensor,
                centres: torch.Tensor | None = None) -> torch.Tensor:
        if len(features) != len(self.lateral):
            raise ValueError(f"expected {len(self.lateral)} feature levels, got {len(features)}.")
        t = self.class_embeddings(text.to(features[-1].dtype), centres)  # (G, D) or (B, G, D)
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
        logits = self.classifier(self.pixel_embed(x), t[..., self.class_rows, :])
        return F.interpolate(logits, size=image.shape[-2:], mode="bilinear", align_corners=False)
