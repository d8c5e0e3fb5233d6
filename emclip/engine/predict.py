"""The one way the kit runs a model for inference: validation, evaluation, plots and notebooks.

    >>> from emclip.engine import inference
    >>> with inference(model, device="auto") as device:            # doctest: +SKIP
    ...     logits = model(images.to(device)).float()

:func:`inference` moves the model to the device, puts it in eval mode, and runs the block under
``torch.inference_mode`` and the autocast of :func:`emclip.engine.precision.select_precision`
(bf16 on CUDA where supported, fp16 elsewhere on CUDA, float32 on the CPU); on exit the model
goes back to the train/eval mode it came in, whatever happened inside. On top of it:

* :func:`run_batches` — ``fn(batch, logits)`` for every batch of a loader;
* :func:`predict_logits` — logits of one image batch;
* :func:`predict` — logits, labels, ids and domains of a whole loader (:class:`Predictions`);
* :func:`mean_region_dice` — the validation Dice of the training loop; ``region_dice(logits,
  mask, task)`` -> (B, R) Dice per image and region (:func:`emclip.metrics.compute_dice`).

Everything that scores or draws a model goes through :func:`inference`, so validation during
training and the reported evaluation see the same numbers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from emclip.engine.precision import select_precision
from emclip.metrics import compute_dice
from emclip.runtime import get_device
from emclip.tasks import Task, get_task


@contextlib.contextmanager
def inference(model: nn.Module, device="auto", amp: str | bool = "auto") -> Iterator[torch.device]:
    """Eval mode + ``torch.inference_mode`` + the kit's precision; yields the device.

    The model is moved before ``inference_mode`` starts, so its parameters stay ordinary tensors
    that a later training step can use; its train/eval mode is restored in a ``finally``.
    """
    dev = get_device(device)
    precision = select_precision(dev, amp)
    was_training = model.training
    model.to(dev)
    model.eval()
    try:
        with torch.inference_mode(), precision.autocast():
            yield dev
    finally:
        model.train(was_training)


def batch_images(batch) -> torch.Tensor:
    """The images (B, 3, H, W) of a batch: a sample dict's ``"image"``, a tuple's first item, or a tensor."""
    if isinstance(batch, dict):
        if "image" not in batch:
            raise TypeError("each batch must be a dict with 'image' (B, 3, H, W); use emclip.data.get_dataset / "
                            "make_dataloader.")
        return batch["image"]
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def predict_logits(model: nn.Module, images: torch.Tensor, device="auto", amp: str | bool = "auto") -> torch.Tensor:
    """Logits (B, C, H, W) float32 on the CPU for images (B, 3, H, W), through :func:`inference`."""
    with inference(model, device, amp) as dev:
        return model(images.to(dev)).float().cpu()


def run_batches(model: nn.Module, loader: Iterable, fn: Callable, device="auto", amp: str | bool = "auto",
                progress: str | None = None) -> list:
    """``[fn(batch, logits) for batch in loader]``, logits (B, C, H, W) float32 on the device.

    ``fn`` runs inside :func:`inference`. ``progress``: a tqdm description, or ``None`` for no
    bar. Raises ``ValueError`` when the loader yields no batch.
    """
    if progress is not None:
        from tqdm.auto import tqdm

        loader = tqdm(loader, desc=progress, leave=False)
    out = []
    with inference(model, device, amp) as dev:
        for batch in loader:
            images = batch_images(batch).to(dev, non_blocking=True)
            if dev.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            out.append(fn(batch, model(images).float()))
    if not out:
        raise ValueError("the loader yielded no batches: nothing to run the model on.")
    return out


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


def predict(model: nn.Module, loader, device="auto", amp: str | bool = "auto") -> Predictions:
    """Run ``model`` through :func:`inference` over ``loader`` (batches of sample dicts or image tensors)."""

    def keep(batch, logits):
        n = len(logits)
        if not isinstance(batch, dict):
            return logits.cpu(), None, [""] * n, [""] * n
        mask = batch["mask"].cpu() if "mask" in batch else None
        return logits.cpu(), mask, list(batch.get("id", [""] * n)), list(batch.get("domain", [""] * n))

    parts = run_batches(model, loader, keep, device, amp)
    labels = [p[1] for p in parts if p[1] is not None]
    return Predictions(torch.cat([p[0] for p in parts]), torch.cat(labels) if labels else None,
                       [i for p in parts for i in p[2]], [d for p in parts for d in p[3]])


def region_dice(logits: torch.Tensor, mask: torch.Tensor, task: Task | str) -> np.ndarray:
    """Dice per image and region: logits (B, C, H, W), mask (B, H, W) -> array (B, R)."""
    task = get_task(task)
    pred = task.predict_regions(logits.detach().float())
    target = task.region_masks(mask)
    b, r = pred.shape[:2]
    dice = compute_dice(pred.reshape(b * r, *pred.shape[2:]).cpu(), target.reshape(b * r, *target.shape[2:]).cpu())
    return np.asarray(dice).reshape(b, r)


def mean_region_dice(model: nn.Module, loader, task: Task | str, device="auto",
                     amp: str | bool = "auto") -> dict[str, float]:
    """Mean Dice per region over ``loader``, through :func:`inference`: ``{region: dice}``."""
    task = get_task(task)

    def dice(batch, logits):
        return region_dice(logits, task.check_mask(batch["mask"], "validation mask"), task)

    means = np.concatenate(run_batches(model, loader, dice, device, amp)).mean(axis=0)
    return {name: float(v) for name, v in zip(task.region_names, means)}
