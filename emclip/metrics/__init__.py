"""Segmentation metrics as pure functions of masks: per 2-D image and per 3-D volume.

* :mod:`emclip.metrics.per_image` — Dice, HD95, ASSD of (H, W) / (B, H, W) masks, the empty-mask
  conventions, per-region rows and their per-(domain, region) summary (mean, median, miss rate);
* :mod:`emclip.metrics.per_volume` — the same scores of whole (D, H, W) stacks in mm, rebuilt
  from the slices of a cardiac test set (the M&Ms challenge scores volumes at ED and ES).
"""

from emclip.metrics.per_image import (
    CASE_COLUMNS,
    METRIC_NAMES,
    ONE_EMPTY_OPTIONS,
    SUMMARY_METRICS,
    SegmentationMetrics,
    compute_assd,
    compute_dice,
    compute_hd95,
    compute_surface_metrics,
    image_diagonal,
    miss_flags,
    region_metrics,
    summarise_cases,
    surface_distances,
)
from emclip.metrics.per_volume import VolumeMetrics, compute_volume_metrics, volume_diagonal

__all__ = [
    "CASE_COLUMNS",
    "METRIC_NAMES",
    "ONE_EMPTY_OPTIONS",
    "SUMMARY_METRICS",
    "SegmentationMetrics",
    "VolumeMetrics",
    "compute_assd",
    "compute_dice",
    "compute_hd95",
    "compute_surface_metrics",
    "compute_volume_metrics",
    "image_diagonal",
    "miss_flags",
    "region_metrics",
    "summarise_cases",
    "surface_distances",
    "volume_diagonal",
]
