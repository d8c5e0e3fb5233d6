"""Dense (per-patch) CLIP features: multi-level taps and joint-space embeddings.

:class:`CLIPDenseEncoder` wraps the image tower of an open_clip model.

- ``forward(images)`` returns the patch tokens of chosen transformer blocks as maps, like
  CLIPSeg's taps of blocks 3/6/9 (default here: three blocks evenly spaced, the deepest last),
  or the stages of a ModifiedResNet (RN50 family). Images of any size divisible by the patch size
  work: the positional embedding grid is resized bicubically exactly as open_clip's
  ``resize_pos_embed`` does when it loads weights at another resolution.
- ``dense_embeddings(images)`` returns per-patch embeddings in the joint image-text space
  (MaskCLIP, Zhou et al. 2022): in the last block each token attends only to itself, i.e. its
  attention output is the value path ``out_proj(v(ln_1(x)))``; the rest of the block (residual,
  MLP), ``ln_post`` and the projection are unchanged. For ResNets the attention pool's value and
  output projections are applied to every position (1x1 "convolutions").

What agrees with ``encode_image`` and what does not (tested in ``tests/test_clip_dense.py``):

1. The taps equal open_clip's own ``visual.forward_intermediates`` at the native size, and at
   another size they equal a model that open_clip built for that size from the same weights.
2. ``dense_embeddings`` equals open_clip's own last block run with an identity attention mask
   (each token sees only itself), then ``ln_post`` and ``proj``: that is the value path.
3. The *mean* of the dense embeddings is **not** ``encode_image`` in general: CLIP's global
   embedding is the CLS token after attention over all tokens with learned, non-uniform
   weights, followed by the non-linear MLP and LayerNorm. What holds exactly: when the last
   block's attention is uniform (query projection zeroed), the CLS attention output is the mean
   of every token's value-path output, so ``head(x_cls + mean_j a_j)`` (see
   :meth:`CLIPDenseEncoder.value_tokens` / :meth:`CLIPDenseEncoder.head`) equals
   ``encode_image``. Pooling in the joint space is done *before* the non-linear head.

Inputs are images in [0, 1]; the encoder applies CLIP's mean/std normalisation itself.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from torch import nn


def default_layers(num_levels: int, count: int = 3) -> list[int]:
    """``count`` block indices (1-based) evenly spaced over ``num_levels``, the deepest last.

    >>> default_layers(12)
    [4, 8, 12]

    Design choice, not from the paper (EM-CLIP does not say which blocks it taps).
    """
    count = min(count, num_levels)
    return sorted({max(1, round(num_levels * (i + 1) / count)) for i in range(count)})


def _resolve_layers(layers, num_levels: int, what: str) -> list[int]:
    if layers is None:
        return default_layers(num_levels)
    layers = [int(v) for v in ([layers] if isinstance(layers, int) else layers)]
    if not layers or any(v < 1 or v > num_levels for v in layers) or len(set(layers)) != len(layers):
        raise ValueError(
            f"layers={layers} is invalid: pick distinct {what} indices in 1..{num_levels} "
            f"(1-based, e.g. {default_layers(num_levels)}), or None for that default."
        )
    return sorted(layers)


def check_image_batch(images, multiple: int = 1, multiple_of: str = "required multiple", where: str = "images") -> None:
    """Raise a clear error unless ``images`` is a float (B, 3, H, W) batch in [0, 1] with H, W
    multiples of ``multiple``. Shared by every module that takes images (encoder, models)."""
    if not isinstance(images, torch.Tensor):
        raise TypeError(f"{where} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}.")
    if images.ndim != 4:
        raise ValueError(f"{where} must have shape (B, 3, H, W), got {tuple(images.shape)}; "
                         "for one image use images[None].")
    if images.shape[1] != 3:
        raise ValueError(f"{where} must have 3 channels, got {images.shape[1]} (shape {tuple(images.shape)}); "
                         "repeat grey images: images.expand(-1, 3, -1, -1).")
    if not images.dtype.is_floating_point:
        raise TypeError(f"{where} must be floating point in [0, 1], got {images.dtype}; use images.float() / 255.")
    h, w = images.shape[-2:]
    m = multiple
    if h % m or w % m or h < m or w < m:
        raise ValueError(
            f"Input size {h}x{w} is not a multiple of {m} ({multiple_of}); "
            f"resize to e.g. {max(m, round(h / m) * m)}x{max(m, round(w / m) * m)}."
        )
    if images.numel() and float(images.detach().amax()) > 2.0:
        raise ValueError(f"{where} look like 0..255 values; expected [0, 1] (divide by 255). "
                         "CLIP's mean/std normalisation is applied inside the encoder.")


class CLIPDenseEncoder(nn.Module):
    """Multi-level dense features of an open_clip image tower.

    Args:
        bundle_or_model: a :class:`~emclip.clip.ClipBundle`, an open_clip model or its ``visual``.
        layers: 1-based indices of the blocks (ViT) or stages 1..4 (ResNet) to tap; ``None``: three
            evenly spaced blocks, deepest last (ViT), or stages 2, 3, 4 (ResNet).
        frozen: eval mode and ``requires_grad=False`` for the whole tower (kept in eval even when
            the parent module calls ``.train()``); ``False`` makes every tower parameter trainable.
            The tower is shared with the bundle (no copy): pass ``copy.deepcopy(bundle.model)`` to
            fine-tune one copy while keeping another frozen.
        trainable_last_blocks: with ``frozen=True``, unfreeze the last ``n`` blocks/stages (plus the
            final norm and projection).
        same_size: ResNet only: average-pool shallower stages to the deepest tap's grid so every
            level has the same (h, w). Design choice, not from the paper.

    Attributes:
        out_channels: channels of each returned level.
        reduction: input pixels per feature pixel (patch size, or the deepest ResNet stride).
        embed_dim: dimension of the joint image-text space.
        kind: ``"vit"`` or ``"resnet"``.
    """

    def __init__(self, bundle_or_model, layers=None, frozen: bool = True, trainable_last_blocks: int = 0,
                 same_size: bool = True):
        super().__init__()
        model = getattr(bundle_or_model, "model", bundle_or_model)
        visual = getattr(model, "visual", model)
        if isinstance(visual, VisionTransformer):
            self.kind = "vit"
            self._init_vit(visual)
        elif isinstance(visual, ModifiedResNet):
            self.kind = "resnet"
            self._init_resnet(visual)
        else:
            raise TypeError(
                f"CLIPDenseEncoder supports open_clip VisionTransformer and ModifiedResNet image towers, "
                f"got {type(visual).__name__}. Valid choices: a ViT-* or RN* open_clip model, emclip-tiny, "
                "emclip-tiny-rn (timm towers such as BiomedCLIP's are not supported for dense features)."
            )
        self.visual = visual
        num_levels = len(self._blocks)
        if layers is None and self.kind == "resnet":
            layers = [2, 3, 4]  # strides 8, 16, 32 (as DenseCLIP's multi-level RN features)
        self.layers = _resolve_layers(layers, num_levels, "block" if self.kind == "vit" else "stage")
        self.same_size = same_size
        self.embed_dim = int(visual.output_dim)
        self.out_channels = [self._channels[i - 1] for i in self.layers]
        strides = [self._strides[i - 1] for i in self.layers]
        self.reduction = strides[-1] if (self.kind == "resnet" and same_size) else max(strides)
        self.reductions = [self.reduction] * len(self.layers) if same_size else strides
        cfg = getattr(visual, "preprocess_cfg", {}) or {}
        mean = cfg.get("mean", getattr(visual, "image_mean", None) or OPENAI_DATASET_MEAN)
        std = cfg.get("std", getattr(visual, "image_std", None) or OPENAI_DATASET_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        if not 0 <= int(trainable_last_blocks) <= num_levels:
            raise ValueError(f"trainable_last_blocks must be in 0..{num_levels}, got {trainable_last_blocks}.")
        self.frozen = bool(frozen)
        self.trainable_last_blocks = int(trainable_last_blocks) if frozen else 0
        self._apply_freezing()

    # ----- construction ---------------------------------------------------------------------
    def _init_vit(self, visual: VisionTransformer) -> None:
        ph, pw = visual.patch_size
        n = visual.positional_embedding.shape[0] - 1
        grid = math.isqrt(n)
        if ph != pw or grid * grid != n:
            raise ValueError(
                f"Unsupported ViT: patch {ph}x{pw}, {n} positional embeddings. CLIPDenseEncoder needs square "
                "patches and a square patch grid in the stored positional embedding."
            )
        if visual.attn_pool is not None:
            raise TypeError("ViT towers with an attentional pooler (CoCa) are not supported; use a CLIP ViT.")
        self._grid = grid
        self._blocks = list(visual.transformer.resblocks)
        self._channels = [visual.transformer.width] * len(self._blocks)
        self._strides = [ph] * len(self._blocks)

    def _init_resnet(self, visual: ModifiedResNet) -> None:
        self._blocks = [visual.layer1, visual.layer2, visual.layer3, visual.layer4]
        self._channels = [stage[-1].bn3.num_features for stage in self._blocks]
        self._strides = [4, 8, 16, 32]

    def _trainable_modules(self) -> list[nn.Module]:
        if not self.trainable_last_blocks:
            return []
        tail = self._blocks[-self.trainable_last_blocks:]
        head = [self.visual.ln_post] if self.kind == "vit" else [self.visual.attnpool]
        return [*tail, *head]

    def _apply_freezing(self) -> None:
        if not self.frozen:  # the tower may come from a bundle another (frozen) encoder froze
            self.visual.requires_grad_(True)
            return
        self.visual.requires_grad_(False)
        for module in self._trainable_modules():
            module.requires_grad_(True)
        if self.trainable_last_blocks and self.kind == "vit":
            self.visual.proj.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True):
        """Frozen parts stay in eval mode (BatchNorm statistics, dropout) whatever ``mode`` is."""
        super().train(mode)
        if getattr(self, "frozen", False):
            self.visual.eval()
            for module in self._trainable_modules():
                module.train(mode)
        return self

    # ----- checks and normalisation ----------------------------------------------------------
    @property
    def input_multiple(self) -> int:
        """Input sides must be multiples of this (patch size, or 32 for ResNets)."""
        return self._strides[0] if self.kind == "vit" else 32

    def check_images(self, images) -> None:
        """Raise a clear error unless ``images`` is a float (B, 3, H, W) batch in [0, 1] of valid size."""
        what = "patch size" if self.kind == "vit" else "ResNet stride"
        check_image_batch(images, multiple=self.input_multiple, multiple_of=what)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> CLIP-normalised input in the tower's dtype."""
        self.check_images(images)
        dtype = self.visual.conv1.weight.dtype
        return ((images.float() - self.mean) / self.std).to(dtype)

    # ----- ViT -------------------------------------------------------------------------------
    def positional_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1 + h*w, C) positional embedding for an h x w patch grid (bicubic, as open_clip)."""
        pos = self.visual.positional_embedding
        if (h, w) == (self._grid, self._grid):
            return pos
        grid = pos[1:].reshape(1, self._grid, self._grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid.float(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
        return torch.cat([pos[:1], grid.to(pos.dtype).permute(0, 2, 3, 1).reshape(h * w, -1)], dim=0)

    def _vit_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        v = self.visual
        x = v.conv1(x)
        _, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(h, w).to(x.dtype)
        return v.ln_pre(x), h, w

    def _run_block(self, block: nn.Module, x: torch.Tensor, attn_mask=None) -> torch.Tensor:
        if self.visual.transformer.batch_first:
            return block(x, attn_mask=attn_mask)
        return block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)

    @staticmethod
    def _to_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    # ----- public API ------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> list of (B, C_l, H/r, W/r), one per tapped layer."""
        x = self.normalize(images)
        feats = []
        if self.kind == "vit":
            x, h, w = self._vit_tokens(x)
            for index, block in enumerate(self._blocks[: self.layers[-1]], start=1):
                x = self._run_block(block, x)
                if index in self.layers:
                    feats.append(self._to_map(x[:, 1:], h, w))
            return feats
        x = self.visual.stem(x)
        for index, stage in enumerate(self._blocks[: self.layers[-1]], start=1):
            x = stage(x)
            if index in self.layers:
                feats.append(x)
        if self.same_size:
            size = feats[-1].shape[-2:]
            feats = [f if f.shape[-2:] == size else F.adaptive_avg_pool2d(f, size) for f in feats]
        return feats

    def value_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ViT only: the last block's input ``x`` and value-path attention outputs ``a``.

        Both (B, 1 + N, C), token 0 the CLS token: ``a_j = ls_1(out_proj(W_v ln_1(x_j) + b_v))``, what
        token j's attention would output if it attended only to itself.
        """
        if self.kind != "vit":
            raise TypeError("value_tokens() is defined for ViT towers; ResNets use dense_embeddings() directly.")
        x, _, _ = self._vit_tokens(self.normalize(images))
        for block in self._blocks[:-1]:
            x = self._run_block(block, x)
        block = self._blocks[-1]
        attn = block.attn
        if not isinstance(attn, nn.MultiheadAttention):
            raise TypeError(
                f"dense_embeddings() needs open_clip ViT blocks with nn.MultiheadAttention, got {type(attn).__name__}. "
                "Use an open_clip ViT (e.g. ViT-B-16) or the multi-level features of forward() instead."
            )
        c = x.shape[-1]
        w_v = attn.in_proj_weight[2 * c:] if attn.in_proj_weight is not None else attn.v_proj_weight
        b_v = attn.in_proj_bias[2 * c:] if attn.in_proj_bias is not None else None
        a = attn.out_proj(F.linear(block.ln_1(x), w_v, b_v))
        return x, block.ls_1(a)

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViT only: rest of the last block after attention (MLP residual), ``ln_post``, ``proj``.

        (B, T, C) -> (B, T, embed_dim).
        """
        block = self._blocks[-1]
        tokens = tokens + block.ls_2(block.mlp(block.ln_2(tokens)))
        tokens = self.visual.ln_post(tokens)
        return tokens @ self.visual.proj if self.visual.proj is not None else tokens

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> joint-space embeddings (B, embed_dim, H/r, W/r) (MaskCLIP).

        Not L2-normalised; normalise over dim 1 before cosine similarities with text embeddings.
        """
        if self.kind == "vit":
            x, a = self.value_tokens(images)
            h, w = images.shape[-2] // self._strides[0], images.shape[-1] // self._strides[0]
            return self._to_map(self.head(x + a)[:, 1:], h, w)
        x = self.visual.stem(self.normalize(images))
        for stage in self._blocks:
            x = stage(x)
        return self._resnet_value_path(x)

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Global joint-space embedding (B, embed_dim), not normalised, at any valid input size.

        ViT: CLIP's own CLS path (all blocks with full attention, ``ln_post``, ``proj``) with the
        interpolated positional embedding; at the native size it equals ``model.encode_image``.
        ResNet: the attention pool at the native size; at other sizes (where the pool's positional
        embedding does not fit) the mean of :meth:`dense_embeddings` -- design choice, not from the paper.
        """
        x = self.normalize(images)
        if self.kind == "vit":
            x, _, _ = self._vit_tokens(x)
            for block in self._blocks:
                x = self._run_block(block, x)
            return self.visual.ln_post(x[:, 0]) @ self.visual.proj
        x = self.visual.stem(x)
        for stage in self._blocks:
            x = stage(x)
        if x.shape[-1] * 32 == self.visual.image_size and x.shape[-2] == x.shape[-1]:
            return self.visual.attnpool(x)
        return self._resnet_value_path(x).mean(dim=(2, 3))

    def _resnet_value_path(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.visual.attnpool
        b, c, h, w = x.shape
        pos = pool.positional_embedding[1:]
        g = math.isqrt(pos.shape[0])
        if (h, w) != (g, g):
            pos = pos.reshape(1, g, g, c).permute(0, 3, 1, 2)
            pos = F.interpolate(pos.float(), size=(h, w), mode="bicubic", antialias=True, align_corners=False)
            pos = pos.to(x.dtype).permute(0, 2, 3, 1).reshape(h * w, c)
        tokens = x.flatten(2).transpose(1, 2) + pos.to(x.dtype)
        out = pool.c_proj(pool.v_proj(tokens))
        return self._to_map(out, h, w)

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, layers={self.layers}, out_channels={self.out_channels}, "
                f"reduction={self.reduction}, embed_dim={self.embed_dim}, frozen={self.frozen}, "
                f"trainable_last_blocks={self.trainable_last_blocks}")
