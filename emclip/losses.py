"""Segmentation losses for both task modes, built from MONAI.

* multilabel (fundus; R sigmoid channels ``[disc, cup]``, disc contains cup):
  ``BCEWithLogits + Dice`` with a sigmoid Dice per region (MONAI ``DiceLoss(sigmoid=True)``).
  MONAI's ``DiceCELoss`` is not used here because it applies a softmax cross-entropy whenever
  there is more than one channel, which is wrong for overlapping regions.
* multiclass (cardiac; softmax over ``[background, LV, MYO, RV]``): MONAI
  ``DiceCELoss(softmax=True, to_onehot_y=True)``.

Both compute Dice over the whole batch (``batch=True``), so that a slice without an RV does
not give an undefined per-image Dice — design choice, not from the paper (its losses were not
available; the tqdm segmenter, ByeongHyunPak/tqdm, uses BCE + Dice on masks).

Shapes: ``loss(logits (B, C, H, W), mask (B, H, W) int64 label map)`` -> scalar tensor;
the label map is converted with ``task.targets``.
"""

from __future__ import annotations

import torch
from torch import nn

from emclip.tasks import MULTICLASS, MULTILABEL, Task, get_task


class SegmentationLoss(nn.Module):
    """Dice + cross-entropy for ``task``: ``forward(logits, mask)`` -> scalar.

    Args:
        task: a :class:`~emclip.tasks.Task` or its name.
        lambda_dice, lambda_ce: weights of the two terms.
    """

    def __init__(self, task: Task | str, lambda_dice: float = 1.0, lambda_ce: float = 1.0):
        from monai.losses import DiceCELoss, DiceLoss  # imported here: MONAI takes seconds to import

        super().__init__()
        self.task = get_task(task)
        self.lambda_dice, self.lambda_ce = float(lambda_dice), float(lambda_ce)
        if self.task.mode == MULTILABEL:
            self.dice = DiceLoss(sigmoid=True, batch=True)
            self.ce = nn.BCEWithLogitsLoss()
        elif self.task.mode == MULTICLASS:
            self.dice_ce = DiceCELoss(softmax=True, to_onehot_y=True, batch=True,
                                      lambda_dice=self.lambda_dice, lambda_ce=self.lambda_ce)
        else:  # pragma: no cover - tasks define only these two modes
            raise ValueError(f"Unsupported task mode {self.task.mode!r}; expected {MULTILABEL!r} or {MULTICLASS!r}.")

    def forward(self, logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or logits.shape[1] != self.task.num_outputs:
            raise ValueError(
                f"loss for task {self.task.name!r} expects logits (B, {self.task.num_outputs}, H, W), "
                f"got {tuple(logits.shape)}."
            )
        if mask.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(f"mask shape {tuple(mask.shape)} does not match logits {tuple(logits.shape)}; "
                             "expected (B, H, W).")
        target = self.task.targets(mask)
        logits = logits.float()
        if self.task.mode == MULTILABEL:
            return self.lambda_dice * self.dice(logits, target) + self.lambda_ce * self.ce(logits, target)
        return self.dice_ce(logits, target.unsqueeze(1))


def get_loss(task: Task | str, **kwargs) -> SegmentationLoss:
    """The training loss of ``task`` (see :class:`SegmentationLoss`)."""
    return SegmentationLoss(task, **kwargs)
