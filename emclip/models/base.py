"""The common base of every emclip segmentation model: input checks, padding, task record.

Every model maps images (B, 3, H, W) float32 in [0, 1] to logits (B, task.num_outputs, H, W);
the batch is checked first (:func:`emclip.inputs.check_image_batch`: shape, dtype, NaN/inf, range).
Sides that are not a multiple of the network's ``size_divisor`` (the patch size of a ViT, 16
for the U-Net) are padded by reflection and the logits cropped back — design choice, not from
the paper.
"""

from __future__ import annotations

import abc

import torch
from torch import nn
from torch.nn import functional as F

from emclip.inputs import check_image_batch
from emclip.tasks import Task, get_task


class SegmentationModel(nn.Module, abc.ABC):
    """Base class: subclasses implement ``_forward(images)`` on padded images.

    Attributes:
        task_name: name of the task the model was built for (``"fundus"``, ``"cardiac"``).
        num_outputs: logit channels, ``task.num_outputs``.
        config: the complete resolved configuration (JSON-serialisable dict, ``config["name"]``
            the model name); :func:`emclip.models.create_model_from_config` ``(config, task)``
            rebuilds the same model from it alone.
        size_divisor: inputs are padded to a multiple of this.
    """

    size_divisor: int = 1

    def __init__(self, task: Task | str, config: dict):
        super().__init__()
        task = get_task(task)
        self.task_name = task.name
        self.num_outputs = task.num_outputs
        self.config = dict(config)

    @property
    def task(self) -> Task:
        return get_task(self.task_name)

    @property
    def name(self) -> str:
        return str(self.config.get("name", type(self).__name__))

    @property
    def role(self) -> str:
        """``proposed``, ``baseline``, ``ablation`` or ``control`` (the config's ``role``)."""
        return str(self.config["role"])

    def check_input(self, images) -> None:
        """Raise a clear InputError unless ``images`` is a float32 (B, 3, H, W) tensor in [0, 1]."""
        check_image_batch(images, where=f"{self.name}: images")

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> logits (B, num_outputs, H, W)."""
        self.check_input(images)
        h, w = images.shape[-2:]
        m = self.size_divisor
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            mode = "reflect" if ph < h and pw < w else "replicate"
            images = F.pad(images, (0, pw, 0, ph), mode=mode)
        logits = self._forward(images)
        return logits[..., :h, :w]

    @abc.abstractmethod
    def _forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H', W') in [0, 1], H' and W' multiples of ``size_divisor`` -> logits."""

    def parameter_counts(self) -> dict[str, int]:
        """``{"trainable": n, "frozen": m}`` parameter counts."""
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        frozen = sum(p.numel() for p in self.parameters() if not p.requires_grad)
        return {"trainable": trainable, "frozen": frozen}
