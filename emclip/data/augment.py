"""Batch augmentation on tensors: appearance (colour / intensity), style and geometry (image + mask).

Applied by the loader of :func:`emclip.data.make_dataloader` to whole batches, on the device the
batches are delivered to (the training GPU, or the CPU), with a ``torch.Generator`` seeded per
batch (see :mod:`emclip.data.pipeline`):

- geometric: horizontal flip, rotation, scale, shift, one ``affine_grid`` per batch; the image is
  sampled bilinearly, the mask by nearest neighbour with the same grid, so labels stay aligned
  (padding: 0 = background);
- appearance: per-channel gain (only for colour images: grey MRI repeated to 3 channels stays
  grey), contrast, brightness, gamma, Gaussian noise;
- style: a fresh style from the broad style prior for every image (BigAug-style randomisation,
  :func:`emclip.data.style_prior.style_augment`), in place of the appearance jitter.

Modes: ``"appearance"``, ``"geometric"``, ``"both"`` (appearance + geometric), ``"style"``
(style + geometric), ``"none"``. An :class:`Augment` is built from a mode, ``True``/``False``
or a dict spec -- the form a model config carries in ``config["train"]["augment"]``::

    {"mode": "both", "gamma": [0.8, 1.25], "contrast": [0.9, 1.1]}

Every key other than ``mode`` is a field of :class:`Augment`; unknown keys, wrong types and
ranges raise :class:`emclip.errors.ConfigError`. :meth:`Augment.to_spec` gives the dict back
(JSON-serialisable, for run records).

The default ranges are a design choice, not from the paper (typical of DoFE / RAM-DSIR
pipelines). Note that the default gamma (0.7..1.4) and contrast (0.8..1.25) ranges overlap the
benchmark's target-domain styles (:mod:`emclip.data.styles`: gamma 0.65..1.4, contrast
0.65..1.35), so augmentation alone already imitates part of the domain shift; narrow them in the
spec to measure how much of the gap that closes. Shapes: image (B, 3, H, W) float in [0, 1],
mask (B, H, W) int64. The random draws are written by hand (not a library such as kornia) so
that one seeded generator fixes every parameter of a batch, which is what exact resume needs.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from emclip.errors import ConfigError

AUGMENT_MODES = ("none", "appearance", "geometric", "both", "style")
_MODE_PARTS = {"appearance": (True, False, False), "geometric": (False, True, False),
               "both": (True, True, False), "style": (False, True, True)}
# (low, high) bounds of every tunable field: ranges must lie inside, scalars between them
_RANGE_FIELDS = {"scale": (0.25, 4.0), "contrast": (0.05, 20.0), "gamma": (0.05, 20.0)}
_SCALAR_FIELDS = {"max_rotation_deg": (0.0, 180.0), "max_shift": (0.0, 0.5), "brightness": (0.0, 1.0),
                  "channel_gain": (0.0, 0.99), "noise_sigma": (0.0, 1.0)}


@dataclass(frozen=True)
class Augment:
    """Which augmentations run and how strong they are (ranges are (low, high), sampled uniformly)."""

    appearance: bool = True
    geometric: bool = True
    style: bool = False
    max_rotation_deg: float = 15.0
    scale: tuple[float, float] = (0.9, 1.1)
    max_shift: float = 0.06
    brightness: float = 0.1
    contrast: tuple[float, float] = (0.8, 1.25)
    gamma: tuple[float, float] = (0.7, 1.4)
    channel_gain: float = 0.08
    noise_sigma: float = 0.03

    def __post_init__(self):
        for name in ("appearance", "geometric", "style"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"augment {name}={getattr(self, name)!r} must be True or False.")
        for name, (lo, hi) in _RANGE_FIELDS.items():
            value = getattr(self, name)
            ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(_is_number(v) for v in value)
            if not ok or not lo <= value[0] <= value[1] <= hi:
                raise ConfigError(f"augment {name}={value!r} is invalid: give [low, high] with "
                                  f"{lo} <= low <= high <= {hi}.")
            object.__setattr__(self, name, (float(value[0]), float(value[1])))
        for name, (lo, hi) in _SCALAR_FIELDS.items():
            value = getattr(self, name)
            if not _is_number(value) or not lo <= value <= hi:
                raise ConfigError(f"augment {name}={value!r} is invalid: give a number in {lo}..{hi}.")
            object.__setattr__(self, name, float(value))

    @property
    def mode(self) -> str:
        """The mode name of the enabled parts (``"custom"`` for a combination no mode names)."""
        parts = (self.appearance, self.geometric, self.style)
        if not any(parts):
            return "none"
        return next((m for m, p in _MODE_PARTS.items() if p == parts), "custom")

    @classmethod
    def from_spec(cls, spec) -> Augment | None:
        """An Augment from ``True``/``False``/``None``, a mode name, a dict spec or an Augment.

        ``None`` means no augmentation (``False``, ``"none"`` and ``{"mode": "none"}`` too).
        """
        if isinstance(spec, Augment):
            return spec if spec.mode != "none" else None
        if spec is None or spec is False:
            return None
        if spec is True:
            spec = "both"
        if isinstance(spec, str):
            spec = {"mode": spec}
        if not isinstance(spec, dict):
            raise ConfigError(f"Unknown augment {spec!r}. Valid: True, False, an Augment, a dict spec "
                              f"or one of {', '.join(AUGMENT_MODES)}.")
        options = dict(spec)
        mode = options.pop("mode", "both")
        if mode not in AUGMENT_MODES:
            raise ConfigError(f"Unknown augment mode {mode!r}. Valid: True, False, an Augment, a dict spec or "
                              f"one of {', '.join(AUGMENT_MODES)}.")
        valid = [f.name for f in dataclasses.fields(cls) if f.name not in ("appearance", "geometric", "style")]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ConfigError(f"Unknown augment key(s) {', '.join(map(repr, unknown))}. Valid keys: mode, "
                              f"{', '.join(valid)}.")
        if mode == "none":
            return None
        appearance, geometric, style = _MODE_PARTS[mode]
        return cls(appearance=appearance, geometric=geometric, style=style, **options)

    def to_spec(self) -> dict:
        """The JSON-serialisable dict spec that :meth:`from_spec` turns back into this Augment."""
        out = {"mode": self.mode}
        if out["mode"] == "custom":
            raise ConfigError("This Augment combines parts that no mode names; use a mode of "
                              f"{', '.join(AUGMENT_MODES)}.")
        for f in dataclasses.fields(self):
            if f.name not in ("appearance", "geometric", "style"):
                value = getattr(self, f.name)
                out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def __call__(self, image: torch.Tensor, mask: torch.Tensor, generator: torch.Generator):
        """Augment one batch; every random number comes from ``generator`` (on ``image.device``)."""
        if self.geometric:
            image, mask = geometric_augment(image, mask, generator, self)
        if self.style:
            image = style_augment(image, generator)
        if self.appearance:
            image = appearance_augment(image, generator, self)
        return image, mask


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _uniform(b: int, lo: float, hi: float, generator: torch.Generator, device) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(b, generator=generator, device=device)


def geometric_augment(image, mask, generator, cfg: Augment = Augment()):
    """Random flip + rotation + scale + shift, same transform for image (bilinear) and mask (nearest)."""
    b, dev = image.shape[0], image.device
    angle = _uniform(b, -1.0, 1.0, generator, dev) * math.radians(cfg.max_rotation_deg)
    scale = _uniform(b, *cfg.scale, generator, dev)
    flip = torch.where(torch.rand(b, generator=generator, device=dev) < 0.5, -1.0, 1.0)
    shift = _uniform(2 * b, -cfg.max_shift, cfg.max_shift, generator, dev).view(b, 2) * 2.0
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1).to(image.dtype)
    grid = F.affine_grid(theta, list(image.shape), align_corners=False)
    image = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mask = F.grid_sample(mask[:, None].to(image.dtype), grid, mode="nearest", padding_mode="zeros",
                         align_corners=False)[:, 0].round().long()
    return image, mask


def appearance_augment(image, generator, cfg: Augment = Augment()):
    """Random per-channel gain (colour only), contrast, brightness, gamma and Gaussian noise."""
    b, dev = image.shape[0], image.device
    view = (b, 1, 1, 1)
    colour = (image[:, :1] != image[:, 1:]).flatten(1).any(1).view(view)
    gain = 1.0 + cfg.channel_gain * (2 * torch.rand(b, image.shape[1], 1, 1, generator=generator, device=dev) - 1)
    image = torch.where(colour, image * gain, image)
    mean = image.mean(dim=(1, 2, 3), keepdim=True)
    image = (image - mean) * _uniform(b, *cfg.contrast, generator, dev).view(view) + mean
    image = image + _uniform(b, -cfg.brightness, cfg.brightness, generator, dev).view(view)
    image = image.clamp(0.0, 1.0) ** _uniform(b, *cfg.gamma, generator, dev).view(view)
    sigma = _uniform(b, 0.0, cfg.noise_sigma, generator, dev).view(view)
    noise = torch.randn(image.shape[0], 1, *image.shape[2:], generator=generator, device=dev)
    return (image + sigma * noise).clamp(0.0, 1.0)


def style_augment(image, generator):
    """A fresh prior style per image (:func:`emclip.data.style_prior.style_augment`, on the CPU).

    Its CPU generator is seeded from one number drawn from ``generator``, so the style of a
    batch is fixed by the batch's generator like every other augmentation.
    """
    try:
        from emclip.data import style_prior
    except ImportError as err:  # pragma: no cover - depends on the installed version
        raise ConfigError("augment mode 'style' needs emclip.data.style_prior, which this version of the "
                          "kit does not have; use mode 'both' or update emclip.") from err
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=image.device).item())
    return style_prior.style_augment(image, torch.Generator().manual_seed(seed))
