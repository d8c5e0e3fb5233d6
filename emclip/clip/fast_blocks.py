"""The transformer block of an open_clip ViT, computed with fused attention.

:func:`vit_block` computes open_clip's ``ResidualAttentionBlock`` with the block's own weights
-- ``x + ls_1(attn(ln_1(x)))``, then ``x + ls_2(mlp(ln_2(x)))`` -- but the attention is one
``F.scaled_dot_product_attention`` call (flash / memory-efficient kernels on a GPU, the fused
CPU kernel otherwise) instead of ``nn.MultiheadAttention``'s dispatch, which falls back to its
slow path under autocast. Blocks of another kind are simply called. Tokens are batch first,
(B, T, C). The result equals the block's own forward within float rounding
(``tests/test_clip_dense.py`` checks it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from open_clip.transformer import ResidualAttentionBlock
from torch import nn


def fusable(block: nn.Module) -> bool:
    """Whether :func:`vit_block` computes ``block`` itself (a plain self-attention CLIP block)."""
    attn = getattr(block, "attn", None)
    return (type(block) is ResidualAttentionBlock and isinstance(attn, nn.MultiheadAttention)
            and attn._qkv_same_embed_dim and attn.bias_k is None and not attn.add_zero_attn
            and not hasattr(block, "ln_1_kv"))


def attention(attn: nn.MultiheadAttention, x: torch.Tensor, attn_mask: torch.Tensor | None = None,
              training: bool = False) -> torch.Tensor:
    """Multi-head self-attention of ``attn`` on batch-first tokens (B, T, C) -> (B, T, C)."""
    b, t, c = x.shape
    heads = attn.num_heads
    qkv = F.linear(x, attn.in_proj_weight, attn.in_proj_bias).view(b, t, 3, heads, c // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, T, d)
    if attn_mask is not None:
        attn_mask = attn_mask.to(q.dtype)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                         dropout_p=attn.dropout if training else 0.0)
    return attn.out_proj(out.transpose(1, 2).reshape(b, t, c))


def vit_block(block: nn.Module, x: torch.Tensor, batch_first: bool = True,
              attn_mask: torch.Tensor | None = None) -> torch.Tensor:
    """One ViT block on batch-first tokens (B, T, C); ``batch_first=False`` blocks get (T, B, C)."""
    if not fusable(block):
        if batch_first:
            return block(x, attn_mask=attn_mask)
        return block(x.transpose(0, 1), attn_mask=attn_mask).transpose(0, 1)
    x = x + block.ls_1(attention(block.attn, block.ln_1(x), attn_mask, block.training))
    return x + block.ls_2(block.mlp(block.ln_2(x)))
