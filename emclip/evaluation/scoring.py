"""Score one model on one data set: per image and, for stacks of slices, per 3-D volume.

:func:`score_model` runs the model through the kit's inference path
(:func:`emclip.engine.inference`: eval mode, inference mode, the kit's precision, as the training
loop's validation) and returns :class:`Scores`: ``images`` (one row per image and region) and,
when the samples carry the volume keys of cardiac data (``volume``, ``slice``, ``spacing``,
``slice_thickness``), ``volumes`` (one row per volume and region, scored in 3-D in mm;
:mod:`emclip.metrics.per_volume`). :func:`evaluate_model` is its per-image table.
:func:`summarise` turns either table into one row per (domain, region): n, mean Dice / HD95 /
ASSD, median HD95 / ASSD and the miss rate (:func:`emclip.metrics.summarise_cases`).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch

from emclip.metrics import SUMMARY_METRICS, SegmentationMetrics, VolumeMetrics, summarise_cases
from emclip.tasks import Task, get_task

#: columns of the tidy results table of run_protocol / evaluate_checkpoints
RESULT_COLUMNS = ("task", "protocol", "split", "source_domains", "method", "seed", "target_domain",
                  "in_domain", "level", "region", "n", *SUMMARY_METRICS)
#: ``level`` of a results row: 2-D images (fundus images, cardiac slices) or 3-D volumes
LEVELS = ("image", "volume")
TEST_DATA_SEED = 0


@dataclass
class Scores:
    """What :func:`score_model` returns (see the module docstring)."""

    images: pd.DataFrame
    volumes: pd.DataFrame | None = None


def _as_loader(dataset_or_loader, batch_size: int):
    if isinstance(dataset_or_loader, torch.utils.data.DataLoader):
        return dataset_or_loader
    if isinstance(dataset_or_loader, torch.utils.data.Dataset):
        return torch.utils.data.DataLoader(dataset_or_loader, batch_size=batch_size, shuffle=False)
    raise TypeError("dataset_or_loader must be a torch Dataset of sample dicts or a DataLoader over them, "
                    f"got {type(dataset_or_loader).__name__}.")


def score_model(model: torch.nn.Module, task: Task | str, dataset_or_loader, device="auto", batch_size: int = 16,
                spacing=None, threshold: float = 0.5, one_empty: str = "diagonal", progress: bool = False,
                amp: str | bool = "auto") -> Scores:
    """Dice / HD95 / ASSD of ``model`` on every image (and volume) and region of a data set.

    Args:
        model: images (B, 3, H, W) in [0, 1] -> logits (B, task.num_outputs, H, W).
        task: the task (or its name); regions come from ``task.predict_regions`` (prediction)
            and ``task.region_masks`` (ground truth).
        dataset_or_loader: a Dataset of sample dicts (``image``, ``mask``, ``domain``, ``id``)
            or a DataLoader over them (default collate).
        spacing: pixel size for the per-image distances (``None``: pixels). A per-sample
            ``spacing`` entry of the batch, when present, wins.
        threshold: sigmoid threshold of multilabel tasks.
        amp: precision (:func:`emclip.engine.precision.select_precision`).
    """
    from emclip.engine import run_batches

    task = get_task(task)
    loader = _as_loader(dataset_or_loader, batch_size)
    images = SegmentationMetrics(task.region_names, spacing=spacing, one_empty=one_empty)
    volumes = VolumeMetrics(task.region_names, one_empty=one_empty)

    def score(batch, logits):
        if not isinstance(batch, dict) or "mask" not in batch:
            raise TypeError("each batch must be a dict with 'image' (B, 3, H, W) and 'mask' (B, H, W); "
                            "use emclip.data.get_dataset / make_dataloader.")
        pred = task.predict_regions(logits, threshold).cpu()
        target = task.region_masks(task.check_mask(batch["mask"]).cpu())
        ids = [str(i) for i in batch.get("id", [])] or None
        domains = list(batch["domain"]) if "domain" in batch else None
        if "spacing" in batch:  # per-image spacing (real data): score the images one by one
            for b in range(len(pred)):
                images.spacing = [float(s) for s in batch["spacing"][b]]
                images.update(pred[b:b + 1], target[b:b + 1], ids=ids and ids[b:b + 1],
                              domains=domains and domains[b:b + 1])
            images.spacing = spacing
        else:
            images.update(pred, target, ids=ids, domains=domains)
        if VolumeMetrics.applies_to(batch):
            volumes.update(pred, target, batch)

    run_batches(model, loader, score, device, amp, progress="evaluate" if progress else None)
    return Scores(images.to_frame(), volumes.to_frame() if volumes.slices else None)


def evaluate_model(model: torch.nn.Module, task: Task | str, dataset_or_loader, device="auto",
                   batch_size: int = 16, spacing=None, threshold: float = 0.5, one_empty: str = "diagonal",
                   progress: bool = False, amp: str | bool = "auto") -> pd.DataFrame:
    """The per-image table of :func:`score_model`: one row per (image, region), columns
    ``id, domain, region, dice, hd95, assd, miss``. The model's train/eval mode is restored."""
    return score_model(model, task, dataset_or_loader, device, batch_size, spacing, threshold, one_empty,
                       progress, amp).images


def summarise(cases: pd.DataFrame, keys: dict, level: str) -> pd.DataFrame:
    """Per-case rows (images or volumes) -> one results row per (domain, region), plus ``keys``."""
    out = summarise_cases(cases).rename(columns={"domain": "target_domain"})
    out = out.assign(**keys, level=level)
    return out[[c for c in RESULT_COLUMNS if c in out.columns]]


def score_domains(model, task: Task, test_sets: dict, keys: dict, train_domains, batch_size: int,
                  device) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None]:
    """Score one model on every test set: (results rows, per-image rows, per-volume rows or None)."""
    tables, images, volumes = [], [], []
    for target, dataset in test_sets.items():
        scores = score_model(model, task, dataset, device=device, batch_size=batch_size)
        marks = {**keys, "in_domain": target in train_domains}
        for level, cases, kept in (("image", scores.images, images), ("volume", scores.volumes, volumes)):
            if cases is not None:
                cases = cases.assign(domain=target)
                tables.append(summarise(cases, marks, level))
                kept.append(cases.assign(**marks))
    return (pd.concat(tables, ignore_index=True), pd.concat(images, ignore_index=True),
            pd.concat(volumes, ignore_index=True) if volumes else None)


def domain_test_set(task: Task, domain: str, source: str, root, image_size: int, per_domain: int):
    """The test split of one domain (synthetic: ``per_domain`` images of data seed 0; real: all)."""
    from emclip.data import get_dataset

    return get_dataset(task, domain, "test", source, image_size, TEST_DATA_SEED, root,
                       per_domain if source == "synthetic" else None)
