"""Optional dense terms that learn from captions alone: PACL, mean pooling, and caption positions.

PACL (Mukhoti et al., "Open Vocabulary Semantic Segmentation with Patch Aligned Contrastive
Learning", CVPR 2023) pools the *patch* embeddings of an image with weights given by their
similarity to a caption, and asks the pooled embedding to match that caption better than the
other captions of the batch. The only supervision is still the caption: nothing says which
patch shows what; the loss just rewards patch embeddings that resemble the text where the
image contains what the text says. It acts on the same joint-space patch embeddings that the
zero-shot maps use (MaskCLIP's value path, :meth:`emclip.clip.CLIPDenseEncoder.dense_embeddings`).

:func:`where_loss` reads one more thing from the caption: where it says the thing it describes
sits (``"a large optic disc in the upper left"``). The patches of that part of the image (a third
of the height and width, as :func:`emclip.clip.pretrain.words.position_phrase` writes it) are
pooled, and the caption must match them better than the rest of the same image and better than
the other images' named parts. The words are the only supervision, as a web caption that says
"on the left" would be: no mask enters. Weak supervision of this kind is the idea of grounding
from captions (e.g. GroupViT, Xu et al., CVPR 2022, learns groups from captions alone).

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


def caption_regions(captions: list[str], h: int, w: int, device=None) -> torch.Tensor:
    """(B, h * w) float: 1 on the patches of the part of the image each caption names (row-major
    grid of h x w patches), all zeros for a caption that names no single position."""
    import numpy as np

    from emclip.clip.pretrain.words import band_mask, caption_position

    rows = []
    for caption in captions:
        bands = caption_position(caption)
        mask = np.zeros((h, w), bool) if bands is None else band_mask(bands, h, w)
        rows.append(mask.reshape(-1).astype(np.float32))
    return torch.from_numpy(np.stack(rows)).to(device)


def where_loss(dense: torch.Tensor, text: torch.Tensor, logit_scale: torch.Tensor,
               regions: torch.Tensor) -> torch.Tensor:
    """Caption-position term (see the module docstring).

    Args:
        dense: (B, N, E) patch embeddings; text: (B, E) caption embeddings.
        regions: (B, N) 0/1 from :func:`caption_regions` (a row of zeros: the caption names no place).

    Returns:
        The batch term (each image embedded as the mean of its named patches, or of all patches
        when the caption names no place, against the batch's captions) plus, over the captions that
        name a place, the cross-entropy of "the named part matches the caption better than the rest
        of the same image".
    """
    if regions.shape != dense.shape[:2]:
        raise ValueError(f"regions {tuple(regions.shape)} must be (B, N) of dense {tuple(dense.shape)}.")
    text = F.normalize(text, dim=-1)
    count = regions.sum(dim=1, keepdim=True)
    located = (count[:, 0] > 0) & (count[:, 0] < dense.shape[1])
    inside = torch.einsum("bn,bne->be", regions, dense) / count.clamp(min=1)
    outside = torch.einsum("bn,bne->be", 1 - regions, dense) / (dense.shape[1] - count).clamp(min=1)
    image = F.normalize(torch.where(located[:, None], inside, dense.mean(dim=1)), dim=-1)
    loss = _symmetric_ce(logit_scale * image @ text.T)
    if located.any():
        pair = torch.stack([(F.normalize(part, dim=-1) * text).sum(-1) for part in (inside, outside)], dim=1)
        target = torch.zeros(int(located.sum()), dtype=torch.long, device=dense.device)
        loss = loss + F.cross_entropy(logit_scale * pair[located], target)
    return loss
