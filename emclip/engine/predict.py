"""Inference over a loader, and the Dice the training loop reports.

``predict(model, loader, device)`` -> :class:`Predictions` (logits, ground-truth label maps,
ids, domains), all on the CPU. ``region_dice(logits, mask, task)`` -> (B, R) Dice per image and
region (:func:`emclip.metrics.compute_dice`: 1 when prediction and target are both empty).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emclip.metrics import compute_dice
from emclip.runtime import get_device
from emclip.tasks import Task, get_task


@dataclass
class Predictions:
    """Outputs of :func:`predict`.

    logits: (N, C, H, W) float32; labels: (N, H, W) int64 ground truth (``None`` when the
    loader has no masks); ids, domains: one string per image.
    """

    logits: torch.Tensor
    labels: torch.Tensor | None
    ids: list[str]
    domains: list[str]

    def predicted_labels(self, task: Task | str) -> torch.Tensor:
        """(N, H, W) label maps predicted by the model."""
        return get_task(task).predict_labels(self.logits)


def _images(batch) -> torch.Tensor:
    return batch["image"] if isinstance(batch, dict) else batch[0]


@torch.no_grad()
def predict(model: nn.Module, loader, device="auto") -> Predictions:
    """Run ``model`` in eval mode over ``loader`` (batches of sample dicts or image tensors)."""
    device = get_device(device)
    was_training = model.training
    model.eval().to(device)
    logits, labels, ids, domains = [], [], [], []
    try:
        for batch in loader:
            images = _images(batch).to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = model(images)
            logits.append(out.float().cpu())
            if isinstance(batch, dict):
                if "mask" in batch:
                    labels.append(batch["mask"].cpu())
                ids.extend(batch.get("id", [""] * len(images)))
                domains.extend(batch.get("domain", [""] * len(images)))
    finally:
        model.train(was_training)
    if not logits:
        raise ValueError("predict(): the loader yielded no batches.")
    return Predictions(torch.cat(logits), torch.cat(labels) if labels else None, list(ids), list(domains))


def region_dice(logits: torch.Tensor, mask: torch.Tensor, task: Task | str) -> np.ndarray:
    """Dice per image and region: logits (B, C, H, W), mask (B, H, W) -> array (B, R)."""
    task = get_task(task)
    pred = task.predict_regions(logits.detach().float())
    target = task.region_masks(mask)
    b, r = pred.shape[:2]
    dice = compute_dice(pred.reshape(b * r, *pred.shape[2:]).cpu(), target.reshape(b * r, *target.shape[2:]).cpu())
    return np.asarray(dice).reshape(b, r)


@torch.no_grad()
def mean_region_dice(model: nn.Module, loader, task: Task | str, device="auto") -> dict[str, float]:
    """Mean Dice per region over ``loader`` (eval mode): ``{region: dice}``."""
    task = get_task(task)
    device = get_device(device)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for batch in loader:
            images = batch["image"].to(device)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits = model(images)
            rows.append(region_dice(logits, task.check_mask(batch["mask"], "validation mask"), task))
    finally:
        model.train(was_training)
    if not rows:
        raise ValueError("the validation loader yielded no batches.")
    means = np.concatenate(rows).mean(axis=0)
    return {name: float(v) for name, v in zip(task.region_names, means)}
