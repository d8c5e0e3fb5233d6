"""Batch augmentation on tensors: appearance (colour / intensity) and geometry (image + mask).

Applied by :func:`emclip.data.make_dataloader` inside its collate function, on whole batches:

- geometric: horizontal flip, rotation (+-15 deg), scale (0.9..1.1), shift (+-6 %), one
  ``affine_grid`` per batch; the image is sampled bilinearly, the mask by nearest neighbour
  with the same grid, so labels stay aligned (padding: 0 = background);
- appearance: brightness, contrast, gamma, per-channel gain (only for colour images: grey MRI
  repeated to 3 channels stays grey), Gaussian noise.

The ranges are a design choice, not from the paper (typical of DoFE / RAM-DSIR pipelines).
Shapes: image (B, 3, H, W) float in [0, 1], mask (B, H, W) int64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

AUGMENT_MODES = ("none", "appearance", "geometric", "both")


@dataclass(frozen=True)
class Augment:
    """Which augmentations run and how strong they are."""

    appearance: bool = True
    geometric: bool = True
    max_rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.06
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.25)
    gamma: tuple[float, float] = (0.7, 1.4)
    channel_gain: float = 0.08
    noise_sigma: float = 0.03

    @classmethod
    def from_spec(cls, spec) -> Augment | None:
        """``True``/``"both"``, ``"appearance"``, ``"geometric"``, ``False``/``None``/``"none"``, or an Augment."""
        if isinstance(spec, Augment):
            return spec
        if spec is None or spec is False or spec == "none":
            return None
        if spec is True or spec == "both":
            return cls()
        if spec in ("appearance", "geometric"):
            return cls(appearance=spec == "appearance", geometric=spec == "geometric")
        raise ValueError(f"Unknown augment {spec!r}. Valid: True, False, an Augment, or one of {', '.join(AUGMENT_MODES)}.")

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        if self.geometric:
            image, mask = geometric_augment(image, mask, generator, self)
        if self.appearance:
            image = appearance_augment(image, generator, self)
        return image, mask


def _uniform(b: int, lo: float, hi: float, generator: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=generator)


def geometric_augment(image, mask, generator, cfg: Augment = Augment()):
    """Random flip + rotation + scale + shift, same transform for image (bilinear) and mask (nearest)."""
    b = image.shape[0]
    angle = _uniform(b, -1.0, 1.0, generator) * math.radians(cfg.max_rotation_deg)
    scale = _uniform(b, *cfg.scale, generator)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    shift = _uniform(2 * b, -cfg.max_shift, cfg.max_shift, generator).view(b, 2) * 2.0
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = F.grid_sample(mask[:, None].float(), grid, mode="nearest", padding_mode="zeros",
                         align_corners=False)[:, 0].round().long()
    return image, mask


def appearance_augment(image, generator, cfg: Augment = Augment()):
    """Random brightness, contrast, gamma, per-channel gain (colour only) and Gaussian noise."""
    b = image.shape[0]
    view = (b, 1, 1, 1)
    colour = (image[:, :1] != image[:, 1:]).flatten(1).any(1).view(view)
    gain = 1.0 + cfg.channel_gain * (2 * torch.rand(b, image.shape[1], 1, 1, generator=generator) - 1)
    image = torch.where(colour, image * gain, image)
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    image = (image - mean) * _uniform(b, *cfg.contrast, generator).view(view) + mean
    image = image + _uniform(b, -cfg.brightness, cfg.brightness, generator).view(view)
    image = image.clamp(0.0, 1.0) ** _uniform(b, *cfg.gamma, generator).view(view)
    sigma = _uniform(b, 0.0, cfg.noise_sigma, generator).view(view)
    noise = torch.randn(image.shape[0], 1, *image.shape[2:], generator=generator)
    return (image + sigma * noise).clamp(0.0, 1.0)
