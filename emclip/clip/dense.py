"""Dense (per-patch) CLIP features: multi-level taps and joint-space embeddings.

:class:`CLIPDenseEncoder` wraps the image tower of an open_clip model.

- ``forward(images)`` returns the patch tokens of chosen transformer blocks as maps, like
  CLIPSeg's taps of blocks 3/6/9 (default here: three blocks evenly spaced, the deepest last),
  or the stages of a ModifiedResNet (RN50 family) on one common grid. Images of any size
  divisible by the patch size work: the positional embedding grid is resized bicubically with
  timm's ``resample_abs_pos_embed``, as open_clip's ``resize_pos_embed`` does when it loads
  weights at another resolution.
- ``dense_embeddings(images)`` returns per-patch embeddings in the joint image-text space
  (MaskCLIP, Zhou et al., ECCV 2022): in the last block each token attends only to itself, i.e.
  its attention output is the value path ``out_proj(v(ln_1(x)))``; the rest of the block
  (residual, MLP), ``ln_post`` and the projection are unchanged. For ResNets MaskCLIP applies the
  attention pool's value and output projections to every position as 1x1 convolutions,
  ``c_proj(v_proj(x))``, *without* the pool's positional embedding; so does this encoder.

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

Speed (the frozen tower is the largest part of EM-CLIP's forward): the frozen blocks run under
``torch.no_grad`` (no autograd graph, no saved activations), attention is one fused
``scaled_dot_product_attention`` (:mod:`emclip.clip.fast_blocks`), ``precision="bf16"`` runs the
frozen part under bf16 autocast, and ``compile=True`` compiles it with ``torch.compile``. The
outputs are float32 whatever the precision.

Inputs are images in [0, 1]; the encoder applies CLIP's mean/std normalisation itself.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD
from open_clip.modified_resnet import ModifiedResNet
from open_clip.transformer import VisionTransformer
from timm.layers import resample_abs_pos_embed
from torch import nn

from emclip.clip.fast_blocks import vit_block
from emclip.errors import ConfigError
from emclip.inputs import check_image_batch  # noqa: F401 - also re-exported here for older imports

PRECISIONS = ("fp32", "bf16")
#: the ResNet taps' common grid: stride 16 = ViT-B/16's patch grid (design choice, not from the paper)
RESNET_GRID_STRIDE = 16
_RESNET_STRIDES = (4, 8, 16, 32)


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


def _frozen_trunk(encoder: CLIPDenseEncoder, x: torch.Tensor):
    return encoder._embed_and_run(x, encoder._frozen_levels(encoder.layers[-1]))


_COMPILED: dict[str, object] = {}


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
            final norm and projection, or the attention pool).
        same_size: ResNet only: resample every tapped stage to one common grid of stride
            ``grid_stride`` (the decoder expects every level on the same grid); ``False`` keeps
            each stage's own stride.
        grid_stride: ResNet only, the common grid's stride (8, 16 or 32; default
            :data:`RESNET_GRID_STRIDE` = 16). Finer stages are average-pooled, coarser ones
            upsampled bilinearly. 16 puts a ResNet's levels on the grid of ViT-B/16 (14x14 at
            224 px), so EM sees as many tokens and the decoder upsamples as often for either
            tower; stride 32 (7x7 at 224 px) would throw away layer 2 and 3's detail, stride 8 would
            quadruple the EM and decoder cost. Design choice, not from the paper.
        precision: ``"fp32"`` or ``"bf16"`` (the frozen part under bf16 autocast).
        compile: compile the frozen part with ``torch.compile`` (first call compiles).

    Attributes:
        out_channels: channels of each returned level.
        reduction: input pixels per feature pixel of the common grid (``same_size``), else the
            largest stride.
        reductions: input pixels per feature pixel of each returned level.
        embed_dim: dimension of the joint image-text space.
        kind: ``"vit"`` or ``"resnet"``.
    """

    def __init__(self, bundle_or_model, layers=None, frozen: bool = True, trainable_last_blocks: int = 0,
                 same_size: bool = True, grid_stride: int | None = None, precision: str = "fp32",
                 compile: bool = False):
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
        self.same_size = bool(same_size)
        self.embed_dim = int(visual.output_dim)
        self.out_channels = [self._channels[i - 1] for i in self.layers]
        strides = [self._strides[i - 1] for i in self.layers]
        self.grid_stride = self._resolve_grid_stride(grid_stride)
        self.reduction = self.grid_stride if self.same_size else max(strides)
        self.reductions = [self.reduction] * len(self.layers) if self.same_size else strides
        if precision not in PRECISIONS:
            raise ConfigError(f"precision={precision!r} is invalid: give one of {', '.join(PRECISIONS)}.")
        self.precision, self.compile = precision, bool(compile)
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
        self._strides = list(_RESNET_STRIDES)

    def _resolve_grid_stride(self, grid_stride: int | None) -> int:
        if self.kind == "vit":
            if grid_stride not in (None, self._strides[0]):
                raise ConfigError(f"grid_stride={grid_stride!r}: a ViT's grid is its patch size ({self._strides[0]}).")
            return self._strides[0]
        if grid_stride is None:
            return RESNET_GRID_STRIDE
        if grid_stride not in (8, 16, 32):
            raise ConfigError(f"grid_stride={grid_stride!r} is invalid for a ResNet: give 8, 16 or 32.")
        return int(grid_stride)

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

    # ----- the frozen part -------------------------------------------------------------------
    def _frozen_levels(self, stop: int) -> int:
        """How many of the levels 1..stop are frozen (they run without autograd)."""
        if not self.frozen:
            return 0
        return min(stop, len(self._blocks) - self.trainable_last_blocks)

    def _frozen_context(self, device: torch.device, frozen: bool = True):
        """no_grad (+ bf16 autocast for ``precision="bf16"``) for frozen work; nothing otherwise."""
        if not (frozen and self.frozen):
            return contextlib.nullcontext()
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        if self.precision == "bf16":
            stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16))
        return stack

    def _embed_and_run(self, x: torch.Tensor, stop: int):
        """Stem / token embedding, then levels 1..stop. Returns (x, taps, grid (h, w))."""
        if self.kind == "vit":
            x, grid = self._vit_tokens(x)
        else:
            x = self.visual.stem(x)
            grid = None
        x, taps = self._run_levels(x, 0, stop, grid)
        return x, taps, grid

    def _run_levels(self, x: torch.Tensor, start: int, stop: int, grid):
        taps = []
        for index in range(start + 1, stop + 1):
            block = self._blocks[index - 1]
            if self.kind == "vit":
                x = vit_block(block, x, self.visual.transformer.batch_first)
            else:
                x = block(x)
            if index in self.layers:
                taps.append(self._to_map(x[:, 1:], *grid) if self.kind == "vit" else x)
        return x, taps

    def _features(self, images: torch.Tensor, stop: int):
        """Normalise, embed and run levels 1..stop: the frozen part without autograd (compiled if
        asked), the trainable tail with it. Returns (x, taps, grid) in float32."""
        x = self.normalize(images)
        split = self._frozen_levels(stop)
        with self._frozen_context(x.device, frozen=True):
            if self.compile and self.frozen and stop == self.layers[-1]:
                x, taps, grid = self._compiled_trunk()(self, x)
            else:
                x, taps, grid = self._embed_and_run(x, split)
        x, taps = x.float(), [t.float() for t in taps]
        if split < stop:
            x, more = self._run_levels(x, split, stop, grid)
            taps += more
        return x, taps, grid

    @staticmethod
    def _compiled_trunk():
        if "trunk" not in _COMPILED:
            _COMPILED["trunk"] = torch.compile(_frozen_trunk, dynamic=False)
        return _COMPILED["trunk"]

    # ----- ViT -------------------------------------------------------------------------------
    def positional_embedding(self, h: int, w: int) -> torch.Tensor:
        """(1 + h*w, C) positional embedding for an h x w patch grid (timm's bicubic resample)."""
        pos = self.visual.positional_embedding
        if (h, w) == (self._grid, self._grid):
            return pos
        return resample_abs_pos_embed(pos[None], new_size=[h, w], old_size=[self._grid, self._grid],
                                      num_prefix_tokens=1, interpolation="bicubic", antialias=True)[0]

    def _vit_tokens(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        v = self.visual
        x = v.conv1(x)
        _, _, h, w = x.shape
        x = x.flatten(2).transpose(1, 2)
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.positional_embedding(h, w).to(x.dtype)
        return v.ln_pre(x), (h, w)

    @staticmethod
    def _to_map(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
        return tokens.transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], h, w)

    # ----- public API ------------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Images (B, 3, H, W) in [0, 1] -> list of float32 (B, C_l, H/r_l, W/r_l), one per tapped layer."""
        _, taps, _ = self._features(images, self.layers[-1])
        if self.kind == "resnet" and self.same_size:
            taps = [self._to_grid(t, self._strides[i - 1]) for t, i in zip(taps, self.layers)]
        return taps

    def _to_grid(self, feature: torch.Tensor, stride: int) -> torch.Tensor:
        if stride < self.grid_stride:
            return F.avg_pool2d(feature, self.grid_stride // stride)
        if stride > self.grid_stride:
            return F.interpolate(feature, scale_factor=stride // self.grid_stride, mode="bilinear", align_corners=False)
        return feature

    def post_norm(self, features: torch.Tensor) -> torch.Tensor:
        """CLIP's own normalisation of a (B, C, h, w) tap of the deepest level (e.g. for a linear probe).

        ViT: the tower's final LayerNorm ``ln_post`` over the channels (what CLIP applies before
        its projection). ResNet: unchanged -- CLIP's attention pool reads layer 4 as it is.
        """
        if self.kind != "vit":
            return features
        with self._frozen_context(features.device, frozen=self.trainable_last_blocks == 0):
            out = self.visual.ln_post(features.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        return out.float()

    def value_tokens(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """ViT only: the last block's input ``x`` and value-path attention outputs ``a``.

        Both (B, 1 + N, C), token 0 the CLS token: ``a_j = ls_1(out_proj(W_v ln_1(x_j) + b_v))``, what
        token j's attention would output if it attended only to itself.
        """
        if self.kind != "vit":
            raise TypeError("value_tokens() is defined for ViT towers; ResNets use dense_embeddings() directly.")
        block = self._blocks[-1]
        attn = block.attn
        if not isinstance(attn, nn.MultiheadAttention):
            raise TypeError(
                f"dense_embeddings() needs open_clip ViT blocks with nn.MultiheadAttention, got {type(attn).__name__}. "
                "Use an open_clip ViT (e.g. ViT-B-16) or the multi-level features of forward() instead."
            )
        x, _, _ = self._features(images, len(self._blocks) - 1)
        c = x.shape[-1]
        w_v = attn.in_proj_weight[2 * c:] if attn.in_proj_weight is not None else attn.v_proj_weight
        b_v = attn.in_proj_bias[2 * c:] if attn.in_proj_bias is not None else None
        with self._frozen_context(x.device, frozen=self.trainable_last_blocks == 0):
            a = block.ls_1(attn.out_proj(F.linear(block.ln_1(x), w_v, b_v)))
        return x, a.float()

    def head(self, tokens: torch.Tensor) -> torch.Tensor:
        """ViT only: rest of the last block after attention (MLP residual), ``ln_post``, ``proj``.

        (B, T, C) -> (B, T, embed_dim).
        """
        block = self._blocks[-1]
        with self._frozen_context(tokens.device, frozen=self.trainable_last_blocks == 0):
            tokens = tokens + block.ls_2(block.mlp(block.ln_2(tokens)))
            tokens = self.visual.ln_post(tokens)
            out = tokens @ self.visual.proj if self.visual.proj is not None else tokens
        return out.float()

    def dense_embeddings(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, 3, H, W) in [0, 1] -> joint-space embeddings (B, embed_dim, H/r, W/r) (MaskCLIP).

        ``r`` is the patch size (ViT) or 32 (ResNet: layer 4's own grid). Not L2-normalised;
        normalise over dim 1 before cosine similarities with text embeddings.
        """
        if self.kind == "vit":
            x, a = self.value_tokens(images)
            h, w = images.shape[-2] // self._strides[0], images.shape[-1] // self._strides[0]
            return self._to_map(self.head(x + a)[:, 1:], h, w)
        x, _, _ = self._features(images, len(self._blocks))
        return self._resnet_value_path(x)

    def image_embedding(self, images: torch.Tensor) -> torch.Tensor:
        """Global joint-space embedding (B, embed_dim), not normalised, at any valid input size.

        ViT: CLIP's own CLS path (all blocks with full attention, ``ln_post``, ``proj``) with the
        interpolated positional embedding; at the native size it equals ``model.encode_image``.
        ResNet: the attention pool at the native size; at other sizes (where the pool's positional
        embedding does not fit) the mean of :meth:`dense_embeddings` -- design choice, not from the paper.
        """
        x, _, _ = self._features(images, len(self._blocks))
        tail = self._frozen_context(x.device, frozen=self.trainable_last_blocks == 0)
        if self.kind == "vit":
            with tail:
                out = self.visual.ln_post(x[:, 0]) @ self.visual.proj
            return out.float()
        if x.shape[-1] * 32 == self.visual.image_size and x.shape[-2] == x.shape[-1]:
            with tail:
                return self.visual.attnpool(x).float()
        return self._resnet_value_path(x).mean(dim=(2, 3))

    def _resnet_value_path(self, x: torch.Tensor) -> torch.Tensor:
        """MaskCLIP's ResNet value path: ``c_proj(v_proj(x))`` at every position, no positional embedding."""
        pool = self.visual.attnpool
        with self._frozen_context(x.device, frozen=self.trainable_last_blocks == 0):
            out = pool.c_proj(pool.v_proj(x.flatten(2).transpose(1, 2)))
        return self._to_map(out.float(), *x.shape[-2:])

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, layers={self.layers}, out_channels={self.out_channels}, "
                f"same_size={self.same_size}, reductions={self.reductions}, embed_dim={self.embed_dim}, frozen={self.frozen}, "
                f"trainable_last_blocks={self.trainable_last_blocks}, precision={self.precision}, "
                f"compile={self.compile}")
