"""The moving-average update of the EM bases, applied by the training loop after a finite loss.

EMANet updates its bases buffer in ``train.py``, outside the network. Here too: a training
forward of :class:`~emclip.em.EMAggregation` only *records* the bases of its batch
(:class:`PendingBases`); the trainer then calls

* :func:`update_em_bases` after a finite loss (after ``optimizer.step()``): every EM unit of the
  model applies ``mu <- m mu + (1 - m) mean(bases)``, the mean taken over every image of the
  step on every DDP rank (one ``all_reduce`` of the sum and the count), so all ranks keep the
  same buffer and it equals a single process's on the global batch;
* :func:`discard_em_updates` when the loss is not finite: the buffer stays as it was, so one
  bad batch (NaN pixels, an overflow) cannot poison every later forward.

Several forwards before one update (gradient accumulation) average all their images.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["PendingBases", "discard_em_updates", "em_units", "update_em_bases"]


class PendingBases:
    """The sum (1, C, K) and count of the per-image bases seen since the last update."""

    def __init__(self):
        self.total: torch.Tensor | None = None
        self.count = 0

    def record(self, bases: torch.Tensor) -> None:
        """Add a batch of bases (B, C, K) (detached, in float32)."""
        batch = bases.detach().float().sum(dim=0, keepdim=True)
        self.total = batch if self.total is None else self.total + batch
        self.count += bases.shape[0]

    def clear(self) -> None:
        self.total, self.count = None, 0


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def em_units(model: nn.Module) -> list[nn.Module]:
    """Every module of ``model`` (DDP-wrapped or not) that keeps EM bases, in a fixed order."""
    from emclip.em.unit import EMAggregation

    return [m for m in model.modules() if isinstance(m, EMAggregation)]


def _global_mean(unit) -> torch.Tensor | None:
    """The mean of the recorded bases over this process, or over every DDP rank (1, C, K)."""
    pending = unit.pending
    total = pending.total if pending.total is not None else torch.zeros_like(unit.mu, dtype=torch.float32)
    if _distributed():  # every rank joins, also one that recorded nothing, to stay in lock-step
        packed = torch.cat([total.flatten().to(unit.mu.device), torch.tensor([float(pending.count)], device=unit.mu.device)])
        dist.all_reduce(packed)
        total, count = packed[:-1].view_as(unit.mu), float(packed[-1])
    else:
        count = float(pending.count)
    return total / count if count > 0 else None


@torch.no_grad()
def update_em_bases(model: nn.Module) -> int:
    """Apply the pending moving-average update of every EM unit of ``model``; returns how many moved.

    Call it once per optimiser step, after a finite loss (on every rank under DDP).
    """
    moved = 0
    for unit in em_units(model):
        mean = _global_mean(unit)
        unit.pending.clear()
        if mean is not None:
            unit.apply_update(mean)
            moved += 1
    return moved


def discard_em_updates(model: nn.Module) -> None:
    """Forget the recorded bases of every EM unit of ``model`` (after a non-finite loss)."""
    for unit in em_units(model):
        unit.pending.clear()
