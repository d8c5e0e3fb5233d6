"""Plots for training (notebook 05): loss and Dice curves, prediction overlays, parameter table.

``plot_history(history)`` takes the DataFrame of :func:`emclip.engine.train` (columns
``step, loss, lr, train_dice, val_dice_<region>...``); ``plot_predictions`` shows image, ground
truth and prediction side by side (overlays from :func:`emclip.viz.data.overlay`).
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch

from emclip.tasks import get_task
from emclip.viz.data import overlay


def parameter_table(model: torch.nn.Module) -> pd.DataFrame:
    """One row per top-level part of ``model``: trainable and frozen parameter counts.

    Columns ``part, module, trainable, frozen, total``, plus a ``total`` row.
    """
    rows = []
    for name, module in model.named_children():
        trainable = sum(p.numel() for p in module.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in module.parameters() if not p.requires_grad)
        rows.append({"part": name, "module": type(module).__name__, "trainable": trainable, "frozen": frozen})
    for p_name, p in model.named_parameters(recurse=False):  # e.g. the no-text model's class queries
        rows.append({"part": p_name, "module": "Parameter", "trainable": p.numel() if p.requires_grad else 0,
                     "frozen": 0 if p.requires_grad else p.numel()})
    table = pd.DataFrame(rows, columns=["part", "module", "trainable", "frozen"])
    table.loc[len(table)] = ["total", "", int(table["trainable"].sum()), int(table["frozen"].sum())]
    table["total"] = table["trainable"] + table["frozen"]
    return table


def plot_history(history: pd.DataFrame, title: str | None = None, untrained_dice: float | None = None):
    """Loss (log scale) and Dice (train per step, validation per region) against the step."""
    if history.empty:
        raise ValueError("plot_history: the history is empty (train for at least one step).")
    fig, (ax_loss, ax_dice) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax_loss.plot(history["step"], history["loss"], lw=1, color="tab:blue", label="loss")
    smooth = history["loss"].rolling(max(1, len(history) // 20), min_periods=1).mean()
    ax_loss.plot(history["step"], smooth, lw=2, color="tab:blue", alpha=0.6, label="running mean")
    ax_loss.set(xlabel="step", ylabel="loss (the task's Dice + CE or BCE)", yscale="log", title="training loss")
    ax_loss.legend(fontsize=8)
    ax_dice.plot(history["step"], history["train_dice"], lw=1, color="0.6", label="train (batch)")
    val_cols = [c for c in history.columns if c.startswith("val_dice_")]
    for col in val_cols:
        val = history.dropna(subset=[col])
        ax_dice.plot(val["step"], val[col], marker="o", label=f"val {col[len('val_dice_'):]}")
    if untrained_dice is not None:
        ax_dice.axhline(untrained_dice, ls="--", color="k", lw=1, label="untrained")
    ax_dice.set(xlabel="step", ylabel="Dice", ylim=(0, 1), title="Dice")
    ax_dice.legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_predictions(images: torch.Tensor, masks: torch.Tensor, logits: torch.Tensor, task, max_items: int = 4,
                     ids=None):
    """Rows: image, ground truth, prediction (and the per-image mean Dice) for up to ``max_items``.

    images (B, 3, H, W) in [0, 1], masks (B, H, W) label maps, logits (B, C, H, W).
    """
    from emclip.engine.predict import region_dice

    task = get_task(task)
    n = min(max_items, len(images))
    if n == 0:
        raise ValueError("plot_predictions: no images given.")
    pred = task.predict_labels(logits[:n].float())
    dice = region_dice(logits[:n], masks[:n], task).mean(axis=1)
    fig, axes = plt.subplots(3, n, figsize=(2.4 * n, 7.2), squeeze=False)
    for j in range(n):
        img = images[j].detach().cpu().numpy()
        panels = [(img.transpose(1, 2, 0), "image"), (overlay(img, masks[j].cpu().numpy(), task.name), "ground truth"),
                  (overlay(img, pred[j].cpu().numpy(), task.name), f"prediction (Dice {dice[j]:.2f})")]
        for i, (panel, label) in enumerate(panels):
            axes[i, j].imshow(np.clip(panel, 0, 1))
            axes[i, j].set_xticks([])
            axes[i, j].set_yticks([])
            axes[i, j].set_title(label if ids is None or i else f"{ids[j][-12:]}", fontsize=8)
    fig.tight_layout()
    return fig


@torch.no_grad()
def prediction_figure(model: torch.nn.Module, task, dataset, index: int = 0, device="cpu"):
    """The prediction browser of notebook 05: image, ground truth and prediction of ``dataset[index]``,
    titled with that image's Dice (mean over regions). Runs ``model`` in eval mode on one image.

    dataset: any Dataset of sample dicts (image (3, H, W), mask (H, W), id, domain). Returns the Figure.
    """
    if not 0 <= index < len(dataset):
        raise ValueError(f"index {index} out of range: the dataset has {len(dataset)} images (0..{len(dataset) - 1}).")
    sample = dataset[index]
    was_training = model.training
    model.eval()
    try:
        logits = model.to(device)(sample["image"][None].to(device)).float().cpu()
    finally:
        model.train(was_training)
    label = f"{sample.get('domain', '')} {str(sample.get('id', index))[-12:]}".strip()
    return plot_predictions(sample["image"][None], sample["mask"][None], logits, task, max_items=1, ids=[label])
