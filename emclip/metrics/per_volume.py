"""Per-volume 3-D scores: Dice, HD95 and ASSD of a whole stack of slices, in mm.

The M&Ms challenge scores each patient's short-axis stack at ED and at ES as one 3-D volume;
scoring every 2-D slice apart (:mod:`emclip.metrics`) counts a slice where a structure is
absent from both masks as a perfect Dice 1 and puts a thin apical slice on a par with a basal
one. This module rebuilds the volumes from the slices of a test set and scores them in 3-D.

Inputs are the sample keys of the cardiac data (docs/architecture.md): ``volume`` (a name unique
per patient and phase within a domain), ``slice`` (the position in the volume), ``spacing``
(in-plane (dy, dx) mm) and ``slice_thickness`` (mm between slices). A volume is the stack of its
slices ordered by ``slice``, voxel size ``(slice_thickness, dy, dx)``; its slices must be
consecutive and share one spacing.

Shapes: ``compute_volume_metrics(pred, target, spacing)`` takes bool masks (D, H, W) and a
spacing ``(dz, dy, dx)``; :class:`VolumeMetrics` collects (B, R, H, W) region masks batch by
batch and returns one row per (volume, region). Empty masks follow :mod:`emclip.metrics` (both
empty: Dice 1, distance 0; one empty: Dice 0 and the volume's diagonal).
The surface distances are MONAI's (``compute_hausdorff_distance`` with ``percentile=95``,
``compute_average_surface_distance`` with ``symmetric=True``): a test set has tens of volumes,
so the speed that justifies the hand-written 2-D path does not matter here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import torch

from emclip.errors import InputError
from emclip.metrics.per_image import CASE_COLUMNS, compute_dice, miss_flags


def _mask(value, name: str) -> torch.Tensor:
    mask = torch.as_tensor(value)
    if mask.ndim != 3:
        raise InputError(f"{name} must be a (D, H, W) volume mask, got shape {tuple(mask.shape)}.")
    return mask.bool().cpu()


def compute_volume_metrics(pred, target, spacing: Sequence[float], one_empty: str = "diagonal") -> tuple:
    """``(dice, hd95, assd)`` of one volume; pred, target bool (D, H, W), spacing (dz, dy, dx) in mm."""
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    p, t = _mask(pred, "pred"), _mask(target, "target")
    if p.shape != t.shape:
        raise InputError(f"pred and target volumes differ in shape: {tuple(p.shape)} and {tuple(t.shape)}.")
    spacing = [float(s) for s in spacing]
    if len(spacing) != 3 or not all(s > 0 and math.isfinite(s) for s in spacing):
        raise InputError(f"spacing must be three positive numbers (dz, dy, dx) in mm, got {spacing!r}.")
    dice = compute_dice(p.reshape(-1, p.shape[-1]), t.reshape(-1, t.shape[-1]))  # (D*H, W): one float
    has_p, has_t = bool(p.any()), bool(t.any())
    if not (has_p and has_t):
        if not (has_p or has_t):
            return dice, 0.0, 0.0
        empty = volume_diagonal(p.shape, spacing) if one_empty == "diagonal" else math.nan
        return dice, empty, empty
    yp, yt = p[None, None].float(), t[None, None].float()
    with warnings.catch_warnings():  # MONAI warns about its own internal use of a deprecated argument
        warnings.simplefilter("ignore", FutureWarning)
        hd95 = compute_hausdorff_distance(yp, yt, include_background=True, percentile=95, spacing=spacing)
        assd = compute_average_surface_distance(yp, yt, include_background=True, symmetric=True, spacing=spacing)
    return dice, float(hd95.item()), float(assd.item())


class VolumeMetrics:
    """Collect the slices of every volume, then score each volume in 3-D (one row per region).

    >>> acc = VolumeMetrics(["LV", "MYO", "RV"])
    >>> acc.update(pred_regions, target_regions, batch)   # batch: the sample dicts' keys, collated  # doctest: +SKIP
    >>> acc.to_frame()   # id (= volume), domain, region, dice, hd95, assd, miss, slices       # doctest: +SKIP
    """

    KEYS = ("volume", "slice", "spacing", "slice_thickness")

    def __init__(self, region_names: Sequence[str], one_empty: str = "diagonal"):
        self.region_names = tuple(region_names)
        self.one_empty = one_empty
        self.slices: dict[tuple[str, str], dict[int, tuple]] = {}

    @classmethod
    def applies_to(cls, batch) -> bool:
        """Whether a collated batch carries the volume keys."""
        return isinstance(batch, dict) and all(k in batch for k in cls.KEYS)

    def update(self, pred_regions, target_regions, batch) -> None:
        """Add a batch: region masks (B, R, H, W) and the batch's ``volume``, ``slice``,
        ``spacing`` (B, 2), ``slice_thickness`` (B,) and ``domain`` entries."""
        p, t = torch.as_tensor(pred_regions).bool().cpu(), torch.as_tensor(target_regions).bool().cpu()
        domains = batch.get("domain") or [""] * len(p)
        spacing = torch.as_tensor(batch["spacing"]).reshape(len(p), 2).tolist()
        thickness = torch.as_tensor(batch["slice_thickness"]).reshape(len(p)).tolist()
        for b in range(len(p)):
            key, index = (str(domains[b]), str(batch["volume"][b])), int(batch["slice"][b])
            stack = self.slices.setdefault(key, {})
            if index in stack:
                raise InputError(f"volume {key[1]!r} ({key[0]}) has slice {index} twice: each (volume, slice) "
                                 "must be unique in the test set.")
            stack[index] = (p[b], t[b], (float(thickness[b]), *map(float, spacing[b])))

    def _volume(self, key) -> tuple[torch.Tensor, torch.Tensor, tuple]:
        stack = self.slices[key]
        order = sorted(stack)
        if order != list(range(order[0], order[0] + len(order))):
            raise InputError(f"volume {key[1]!r} ({key[0]}) has slices {order}: per-volume scores need every "
                             "slice of a volume; evaluate the whole test split, not a subset of it.")
        spacings = {stack[i][2] for i in order}
        if len(spacings) != 1:
            raise InputError(f"volume {key[1]!r} ({key[0]}) mixes voxel sizes {sorted(spacings)}.")
        pred = torch.stack([stack[i][0] for i in order], dim=1)  # (R, D, H, W)
        target = torch.stack([stack[i][1] for i in order], dim=1)
        return pred, target, spacings.pop()

    def to_frame(self):
        """One row per (volume, region): ``id`` (the volume), ``domain``, ``region``, ``dice``,
        ``hd95``, ``assd`` (mm), ``miss`` and ``slices`` (the volume's depth)."""
        import pandas as pd

        rows = []
        for key in self.slices:
            pred, target, spacing = self._volume(key)
            misses = miss_flags(pred.flatten(1, 2), target.flatten(1, 2))
            for r, region in enumerate(self.region_names):
                dice, hd95, assd = compute_volume_metrics(pred[r], target[r], spacing, self.one_empty)
                rows.append({"id": key[1], "domain": key[0], "region": region, "dice": dice, "hd95": hd95,
                             "assd": assd, "miss": bool(misses[r]), "slices": pred.shape[1]})
        return pd.DataFrame(rows, columns=[*CASE_COLUMNS, "slices"])


def volume_diagonal(shape: Sequence[int], spacing: Sequence[float]) -> float:
    """The diagonal of a (D, H, W) volume of voxel size (dz, dy, dx): the distance of a missed structure."""
    return float(np.sqrt(sum((n * s) ** 2 for n, s in zip(shape, spacing))))
