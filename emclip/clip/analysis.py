"""Image-level CLIP embeddings and how far apart the domains are in them.

``domain_probe_accuracy`` measures a domain gap as the cross-validated accuracy of a linear
probe (scikit-learn logistic regression) that predicts the domain from an image embedding:
chance level (1 / number of domains) means the embedding ignores the acquisition style, 1.0
means every domain is linearly separable. Design choice, not from the paper.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


@torch.no_grad()
def image_embeddings(encoder, images: torch.Tensor, batch_size: int = 32) -> torch.Tensor:
    """L2-normalised global embeddings (N, embed_dim) of images (N, 3, H, W) in [0, 1].

    ``encoder`` is a :class:`~emclip.clip.CLIPDenseEncoder`; see its ``image_embedding``.
    """
    out = []
    for start in range(0, images.shape[0], batch_size):
        emb = encoder.image_embedding(images[start:start + batch_size])
        out.append(F.normalize(emb.float(), dim=-1).cpu())
    return torch.cat(out)


def domain_probe_accuracy(embeddings, domains, folds: int = 5, seed: int = 0) -> float:
    """Mean stratified k-fold accuracy of a logistic-regression probe predicting the domain
    (:func:`emclip.data.shift.probe_accuracy`, the kit's one domain probe).

    Args:
        embeddings: (N, D) array or tensor.
        domains: N domain labels (str or int).
        folds: number of folds (reduced to the smallest class count when needed, at least 2).
        seed: shuffling seed of the folds.
    """
    from emclip.data.shift import probe_accuracy

    x = embeddings.detach().cpu().numpy() if isinstance(embeddings, torch.Tensor) else np.asarray(embeddings)
    return float(probe_accuracy(x, domains, folds, seed).mean())


def channel_masks(task, label_map: torch.Tensor) -> torch.Tensor:
    """Label map (B, H, W) -> bool masks (B, task.num_outputs, H, W), one per logit channel.

    Multilabel: the region masks; multiclass: one-hot of the label map (background first).
    """
    from emclip.tasks import MULTICLASS, get_task

    task = get_task(task)
    if task.mode == MULTICLASS:
        return F.one_hot(label_map.long(), task.num_labels).permute(0, 3, 1, 2).bool()
    return task.region_masks(label_map)


def region_contrast(similarity: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Zero-shot localisation score per channel: mean similarity inside minus outside the region.

    Args:
        similarity: (B, K, h, w) pixel-text similarities (upsampled bilinearly to the mask size).
        masks: (B, K, H, W) bool ground-truth masks of the K channels.

    Returns:
        (K,) tensor: averaged over the images where the region is neither empty nor everything
        (NaN for a channel with no such image). Above 0: the prompt lights up its own region.
    """
    if similarity.shape[:2] != masks.shape[:2]:
        raise ValueError(f"similarity {tuple(similarity.shape)} and masks {tuple(masks.shape)} must agree on (B, K).")
    sim = F.interpolate(similarity.float(), size=masks.shape[-2:], mode="bilinear", align_corners=False)
    m = masks.to(sim.device).float()
    inside, outside = m.sum(dim=(2, 3)), (1 - m).sum(dim=(2, 3))
    valid = (inside > 0) & (outside > 0)
    diff = (sim * m).sum(dim=(2, 3)) / inside.clamp(min=1) - (sim * (1 - m)).sum(dim=(2, 3)) / outside.clamp(min=1)
    diff = torch.where(valid, diff, torch.zeros_like(diff))
    return diff.sum(dim=0) / valid.sum(dim=0).float()
