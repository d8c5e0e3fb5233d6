"""Checks of the image batches every model and encoder takes (bottom layer: torch only).

An image batch is a float32 tensor (B, 3, H, W) with values in [0, 1] (grey images repeated to
three channels); the encoders apply CLIP's mean/std normalisation themselves. This module
refuses, with an :class:`~emclip.errors.InputError` that names the problem and the fix:

* anything that is not a tensor, or not 4-D, or without 3 channels;
* integer images (``uint8`` 0..255): the fix is ``images.float() / 255``;
* float64 / float16 / bfloat16 images: the kit expects ``float32`` and does **not** cast
  silently (a float64 batch would double the memory of every layer it reaches, a float16 one
  would lose precision before the encoder's own normalisation); the fix is ``images.float()``.
  Mixed precision happens inside the model (``torch.autocast``), never in the input;
* non-finite pixels (NaN, +-inf): one NaN pixel would otherwise make every logit of its image
  NaN (and, in training, the EM bases buffer); the message gives the count;
* finite values that look like 0..255 (max > 2): divide by 255; or like mean/std-normalised
  input (min < -1): pass [0, 1] images instead.

The tolerance (values in [-1, 2] pass) is a design choice: augmentation noise may push a few
pixels slightly outside [0, 1], which is harmless.
"""

from __future__ import annotations

import torch

from emclip.errors import InputError

__all__ = ["IMAGE_DTYPE", "ImageTypeError", "check_image_batch"]

IMAGE_DTYPE = torch.float32
_MAX_VALUE, _MIN_VALUE = 2.0, -1.0


class ImageTypeError(InputError, TypeError):
    """An image batch of the wrong Python type or dtype (also a ``TypeError``)."""


def check_image_batch(images, multiple: int = 1, multiple_of: str = "required multiple",
                      where: str = "images") -> None:
    """Raise a clear :class:`~emclip.errors.InputError` unless ``images`` is a valid batch.

    Args:
        images: the batch to check, expected float32 (B, 3, H, W) with values in [0, 1].
        multiple: H and W must be multiples of this (the patch size of a ViT, 32 for a ResNet).
        multiple_of: what ``multiple`` is, for the message.
        where: the caller's name for the batch, for the message.
    """
    if not isinstance(images, torch.Tensor):
        raise ImageTypeError(f"{where} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}.")
    if images.ndim != 4:
        raise InputError(f"{where} must have shape (B, 3, H, W), got {tuple(images.shape)}; "
                         "for one image use images[None].")
    if images.shape[1] != 3:
        raise InputError(f"{where} must have 3 channels, got {images.shape[1]} (shape {tuple(images.shape)}); "
                         "repeat grey images: images.expand(-1, 3, -1, -1).")
    if not images.dtype.is_floating_point:
        raise ImageTypeError(f"{where} must be floating point float32 in [0, 1], got {images.dtype}; "
                             "use images.float() / 255.")
    if images.dtype != IMAGE_DTYPE:
        raise ImageTypeError(f"{where} must be float32, got {images.dtype}; convert with images.float() "
                             "(mixed precision is applied inside the model by torch.autocast).")
    h, w = images.shape[-2:]
    m = multiple
    if h % m or w % m or h < m or w < m:
        raise InputError(
            f"Input size {h}x{w} is not a multiple of {m} ({multiple_of}); "
            f"resize to e.g. {max(m, round(h / m) * m)}x{max(m, round(w / m) * m)}."
        )
    if not images.numel():
        return
    values = images.detach()
    bad = int((~torch.isfinite(values)).sum())
    if bad:
        raise InputError(f"{where} hold {bad} non-finite value(s) (NaN or inf) out of {values.numel()}; "
                         "fix or drop those images (e.g. torch.nan_to_num(images, nan=0.0), or check the "
                         "file that produced them) before the model sees them.")
    hi, lo = float(values.amax()), float(values.amin())
    if hi > _MAX_VALUE:
        raise InputError(f"{where} look like 0..255 values (max {hi:g}); expected [0, 1] (divide by 255). "
                         "CLIP's mean/std normalisation is applied inside the encoder.")
    if lo < _MIN_VALUE:
        raise InputError(f"{where} look mean/std-normalised (min {lo:g}); expected [0, 1]: pass the images "
                         "before normalisation (the encoder normalises them itself).")
