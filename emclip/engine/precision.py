"""The floating-point precision a model runs in: chosen in one place for training and inference.

``select_precision(device, amp)`` -> :class:`Precision`. With ``amp="auto"`` (the default
everywhere in the kit):

==========================================  ================  ============
device                                      autocast dtype    GradScaler
==========================================  ================  ============
CUDA with bf16 (Ampere and newer: A100,     bfloat16          no
H100, L4, RTX 30xx...)
CUDA without bf16 (Colab's T4, V100)        float16           yes
CPU, Apple MPS                              none (float32)    no
==========================================  ================  ============

bf16 keeps float32's exponent range, so gradients need no scaling; fp16 does not, and a
``torch.amp.GradScaler`` scales the loss so that small gradients do not flush to zero (the
recipe of the PyTorch AMP documentation). The CPU runs float32 (design choice, not from the
paper: CPU runs are the ones that must repeat bit for bit, and the tests check float32 numbers).
``amp`` may also name a precision (``"bf16"``, ``"fp16"``, ``"fp32"``; ``True`` = ``"auto"``,
``False`` = ``"fp32"``), e.g. to try fp16 with its scaler on a CPU.

Training (:func:`emclip.engine.train`), validation, evaluation and plots all take their
precision from here, so a model is scored in the precision it is validated in.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from emclip.errors import ConfigError

AMP_CHOICES = ("auto", "bf16", "fp16", "fp32")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


@dataclass(frozen=True)
class Precision:
    """A device type and the dtype its autocast runs in (``float32``: no autocast)."""

    device_type: str
    dtype: torch.dtype = torch.float32

    @property
    def name(self) -> str:
        """``"bf16"``, ``"fp16"`` or ``"fp32"``."""
        return next(k for k, v in _DTYPES.items() if v == self.dtype)

    @property
    def autocast_enabled(self) -> bool:
        return self.dtype != torch.float32

    @property
    def needs_scaler(self) -> bool:
        """fp16 gradients underflow without loss scaling; bf16 and fp32 need none."""
        return self.dtype == torch.float16

    def autocast(self):
        """The autocast context of this precision (a no-op context for float32)."""
        if not self.autocast_enabled:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device_type, dtype=self.dtype)

    def grad_scaler(self) -> torch.amp.GradScaler:
        """A GradScaler, enabled only for fp16 (a disabled one passes ``loss`` and ``step`` through)."""
        return torch.amp.GradScaler(self.device_type, enabled=self.needs_scaler)


def select_precision(device: str | torch.device, amp: str | bool = "auto") -> Precision:
    """The :class:`Precision` for ``device`` (see the module docstring for ``amp``)."""
    device = torch.device(device)
    choice = "auto" if amp is True else "fp32" if amp is False or amp is None else amp
    if choice not in AMP_CHOICES:
        raise ConfigError(f"amp={amp!r} is not a precision. Valid: {', '.join(AMP_CHOICES)} (or True = auto, "
                          "False = fp32).")
    if choice == "auto":
        if device.type != "cuda":
            return Precision(device.type)
        choice = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return Precision(device.type, _DTYPES[choice])
