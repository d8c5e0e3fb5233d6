"""An optional dense term that learns from captions alone: patch-aligned contrastive loss (PACL).

PACL (Mukhoti et al., "Open Vocabulary Semantic Segmentation with Patch Aligned Contrastive
Learning", CVPR 2023) pools the *patch* embeddings of an image with weights given by their
similarity to a caption, and asks the pooled embedding to match that caption better than the
other captions of the batch. The only supervision is still the caption: nothing says which
patch shows what; the loss just rewards patch embeddings that resemble the text where the
image contains what the text says. It acts on the same joint-space patch embeddings that the
zero-shot maps use (MaskCLIP's value path, :meth:`emclip.clip.CLIPDenseEncoder.dense_embeddings`).

Design choices, not from the paper: the pooling temperature, that PACL is added to the global
CLIP loss with a weight instead of replacing it, and that it reads the value path of the
model's own last block instead of an added patch-level head.

Shapes: images (B, 3, H, W) in [0, 1]; global embeddings (B, E); patch embeddings (B, N, E);
text embeddings (B, E).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emclip.clip.fast_blocks import vit_block

POOL_TEMPERATURE = 0.1


def joint_forward(encoder, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One pass of a ViT tower: CLIP's global embedding (B, E) and the value-path patch embeddings
    (B, N, E), neither normalised. ``encoder`` is a trainable :class:`~emclip.clip.CLIPDenseEncoder`."""
    batch_first = encoder.visual.transformer.batch_first
    x, _ = encoder._vit_tokens(encoder.normalize(images))
    blocks = encoder._blocks
    for block in blocks[:-1]:
        x = vit_block(block, x, batch_first)
    attn = blocks[-1].attn
    c = x.shape[-1]
    value = F.linear(blocks[-1].ln_1(x), attn.in_proj_weight[2 * c:], attn.in_proj_bias[2 * c:])
    dense = encoder.head(x + blocks[-1].ls_1(attn.out_proj(value)))[:, 1:]
    full = vit_block(blocks[-1], x, batch_first)
    glob = encoder.visual.ln_post(full[:, 0]) @ encoder.visual.proj
    return glob, dense


def pacl_logits(dense: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
                temperature: float = POOL_TEMPERATURE) -> torch.Tensor:
    """(B_img, B_txt) logits: cosine of caption j with image i's patches pooled by their similarity to j."""
    dense = F.normalize(dense, dim=-1)
    text = F.normalize(text, dim=-1)
    sim = torch.einsum("bne,je->bjn", dense, text)  # (B, B, N)
    weights = torch.softmax(sim / temperature, dim=-1)
    pooled = F.normalize(torch.einsum("bjn,bne->bje", weights, dense), dim=-1)  # (B, B, E)
    return logit_scale * torch.einsum("bje,je->bj", pooled, text)


def _symmetric_ce(logits: torch.Tensor) -> torch.Tensor:
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def mean_pool_loss(dense: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """CLIP's loss with the image embedded as the *mean of its patch embeddings* (value path)
    instead of the CLS token, so the embeddings the zero-shot maps read are what the captions train
    (global average pooling, as CLIPpy, Ranasinghe et al., ICCV 2023)."""
    image = F.normalize(dense.mean(dim=1), dim=-1)
    return _symmetric_ce(logit_scale * image @ F.normalize(text, dim=-1).T)


def pacl_loss(dense: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy of :func:`pacl_logits` (matching pairs on the diagonal)."""
    return _symmetric_ce(pacl_logits(dense, text, logit_scale))
