"""EMANet's EM attention unit (EMAU) as an ``nn.Module``, and its same-shape no-EM twin.

``out = ReLU(x + Norm(Conv1x1_out(ReLU(R(f)))))`` with ``f = InputNorm(Conv1x1_in(x))``:

* :class:`EMAggregation`: ``R(f) = mu z^T``, the rank-K reconstruction after T EM rounds on
  ``f`` started from the bases buffer ``mu`` (1, C, K);
* :class:`ResidualBlock`: ``R(f) = f``, the identity. Everything else (convs, norm, residual,
  ReLUs, input normalisation, initialisation) is shared, so that an "EM-CLIP without EM"
  ablation built from it differs from EM-CLIP by the EM iterations alone.

Shapes: ``x`` (B, C, H, W) -> :class:`EMOutput` (features (B, C, H, W), bases (B, C, K) or
``None``, responsibilities (B, H*W, K) or ``None``).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from emclip.em.iterations import (
    _check_iters,
    _check_lam,
    _check_tensor,
    em_iterations,
    init_bases,
    l2_normalize,
    low_rank_reconstruction,
)
from emclip.em.updates import PendingBases

NORMS = ("batch", "group", "none")
INPUT_NORMS = ("l2", "none")


class EMOutput(NamedTuple):
    """What :class:`EMAggregation` (and :class:`ResidualBlock`) return.

    features: (B, C, H, W) the unit's output (same shape as its input).
    bases: (B, C, K) the bases after the last M-step (unit norm over C); ``None`` without EM.
    responsibilities: (B, N, K) the last E-step, N = H*W, rows sum to 1; ``None`` without EM.
    """

    features: torch.Tensor
    bases: torch.Tensor | None
    responsibilities: torch.Tensor | None


def _check_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


class ResidualBlock(nn.Module):
    """The EMAU without EM: ``x (B,C,H,W) -> EMOutput(ReLU(x + Norm(Conv(ReLU(f)))), None, None)``.

    Args:
        channels: C, input and output channels.
        norm: ``"batch"`` (EMANet), ``"group"`` (GroupNorm, up to 32 groups) or ``"none"``.
        input_norm: ``"l2"`` normalises ``f = Conv1x1_in(x)`` to unit length over C per pixel,
            ``"none"`` leaves it raw (EMANet).
    """

    def __init__(self, channels: int, *, norm: str = "batch", input_norm: str = "none"):
        super().__init__()
        self.channels = _check_int("channels", channels)
        if norm not in NORMS:
            raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")
        if input_norm not in INPUT_NORMS:
            raise ValueError(f"input_norm must be one of {', '.join(INPUT_NORMS)}, got {input_norm!r}")
        self.norm_kind, self.input_norm = norm, input_norm
        self.conv_in = nn.Conv2d(channels, channels, 1, bias=True)
        self.conv_out = nn.Conv2d(channels, channels, 1, bias=False)
        if norm == "batch":
            self.norm = nn.BatchNorm2d(channels)
        elif norm == "group":
            self.norm = nn.GroupNorm(math.gcd(32, channels), channels)
        else:
            self.norm = nn.Identity()
        self._init_weights()

    def _init_weights(self) -> None:
        """EMANet's: conv ~ Normal(0, sqrt(2/n)), n = k*k*out_channels; norm weight 1, bias 0."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / n))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def features_in(self, x: torch.Tensor) -> torch.Tensor:
        """``f = InputNorm(Conv1x1_in(x))``: (B, C, H, W) -> (B, C, N)."""
        b, c, h, w = x.shape
        feats = self.conv_in(x).reshape(b, c, h * w)
        return l2_normalize(feats, dim=1) if self.input_norm == "l2" else feats

    def reconstruct(self, feats: torch.Tensor):
        """``(R(f), bases, responsibilities)``; here the identity and no EM outputs."""
        return feats, None, None

    def _check(self, x: torch.Tensor) -> None:
        _check_tensor("x", x, 4, "(B, C, H, W)")
        if x.shape[1] != self.channels:
            raise ValueError(f"{type(self).__name__} was built for C={self.channels} channels, got input "
                             f"{tuple(x.shape)}; build it with channels={x.shape[1]}")

    def forward(self, x: torch.Tensor) -> EMOutput:
        """x (B, C, H, W) -> EMOutput(features (B, C, H, W), bases, responsibilities)."""
        self._check(x)
        rec, mu, z = self.reconstruct(self.features_in(x))
        rec = F.relu(rec.reshape(x.shape))
        return EMOutput(F.relu(x + self.norm(self.conv_out(rec))), mu, z)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, norm={self.norm_kind!r}, input_norm={self.input_norm!r}"


class EMAggregation(ResidualBlock):
    """EMANet's EM attention unit (EMAU) as used by EM-CLIP: ``x (B,C,H,W) -> EMOutput``.

    Follows EMANet (``network.py`` EMAU): 1x1 conv in (with bias), EM iterations under no_grad,
    reconstruction ``mu z^T``, ReLU, 1x1 conv out (no bias) + BatchNorm, residual, ReLU; the
    bases are a buffer (not a parameter) initialised from Normal(0, sqrt(2/K)) and L2-normalised;
    they move by a moving average ``mu <- m mu + (1 - m) mean_B(bases)`` (``EM_MOM`` = 0.9).
    As in EMANet's ``train.py``, the average is applied by the training loop, after the step:
    a training forward only records the batch's bases, and :func:`emclip.em.update_em_bases`
    applies them (averaged over the DDP ranks) once the loss was finite, or
    :func:`emclip.em.discard_em_updates` drops them. A bad batch never writes the buffer.

    Differences, each a design choice, not from the paper:

    * After the average the buffer is L2-renormalised (``renormalize=True``, as MMSegmentation;
      EMANet does not): the first E-step's logits ``lam x^T mu`` scale with ``||mu||``, so a
      shrinking buffer would act as a second, drifting temperature.
    * ``backprop_last_step=True`` (default): the first T-1 rounds run under no_grad as in EMANet,
      the last round with autograd on (its starting bases detached), so the 1x1 conv in receives
      a gradient through ``z`` and ``mu``. ``False`` is EMANet exactly: bases and responsibilities
      are constants for autograd, and the conv in, which then never receives a gradient, is
      frozen (``requires_grad=False``, as MMSegmentation does) so that DDP finds no unused
      parameter. The buffer never receives a gradient.
    * ``input_norm="l2"``: the features are L2-normalised over C before EM, so the E-step is the
      posterior of a von Mises-Fisher mixture of concentration ``lam`` whatever the scale of the
      features (``"none"``, EMANet: the feature norms act as a per-pixel temperature).
    * ``norm``: ``"batch"`` (EMANet), ``"group"`` (better for small batches) or ``"none"``.
    * ``eval_iters``: T at test time; ``None`` = ``iters``.

    Args:
        channels: C, input and output channels.
        num_bases: K (EMANet: 64).
        iters: T in training mode (EMANet: 3).
        lam: E-step inverse temperature (EMANet: 1).
        momentum: weight of the old buffer in the moving average, in [0, 1] (1 freezes it).
        eval_iters: T in eval mode (default ``iters``).
        norm, input_norm: see above and :class:`ResidualBlock`.
        renormalize: L2-renormalise the buffer after each moving-average update.
        backprop_last_step: see above.
    """

    def __init__(self, channels: int, num_bases: int = 64, iters: int = 3, lam: float = 1.0,
                 momentum: float = 0.9, eval_iters: int | None = None, *, norm: str = "batch",
                 input_norm: str = "none", renormalize: bool = True, backprop_last_step: bool = True):
        # the bases are drawn before the convs (the order of EMANet's __init__ and of this kit's
        # earlier releases, so that a seed gives the same initial model)
        mu = init_bases(_check_int("channels", channels), _check_int("num_bases", num_bases))
        super().__init__(channels, norm=norm, input_norm=input_norm)
        self.num_bases = num_bases
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a number in [0, 1] (EMANet: 0.9), got {momentum!r}")
        self.iters = _check_iters(iters)
        self.eval_iters = self.iters if eval_iters is None else _check_iters(eval_iters, "eval_iters")
        self.lam = _check_lam(lam)
        self.momentum = float(momentum)
        self.renormalize = bool(renormalize)
        self.backprop_last_step = bool(backprop_last_step)
        self.register_buffer("mu", mu)
        self.pending = PendingBases()
        if not self.backprop_last_step:
            self.conv_in.requires_grad_(False)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, num_bases={self.num_bases}, iters={self.iters}, "
                f"eval_iters={self.eval_iters}, lam={self.lam}, momentum={self.momentum}, "
                f"renormalize={self.renormalize}, backprop_last_step={self.backprop_last_step}")

    def initial_bases(self, feats: torch.Tensor) -> torch.Tensor:
        """The bases EM starts from: a copy of the buffer (1, C, K) on the features' device.

        A copy, so that the buffer's later update never modifies a tensor autograd saved.
        """
        return self.mu.to(device=feats.device, copy=True)

    def _em(self, feats: torch.Tensor, iters: int):
        mu0 = self.initial_bases(feats)
        if not self.backprop_last_step:
            with torch.no_grad():
                return em_iterations(feats, mu0, iters, self.lam)
        if iters > 1:
            with torch.no_grad():
                mu0, _ = em_iterations(feats, mu0, iters - 1, self.lam)
        return em_iterations(feats, mu0.detach(), 1, self.lam)

    def reconstruct(self, feats: torch.Tensor):
        """``(mu z^T, mu, z)`` after T EM rounds; records the bases for the moving average."""
        mu, z = self._em(feats, self.iters if self.training else self.eval_iters)
        if self.training:
            self.pending.record(mu)
        return low_rank_reconstruction(mu, z), mu, z

    @torch.no_grad()
    def apply_update(self, new: torch.Tensor) -> None:
        """``mu <- m mu + (1 - m) new`` (then L2-renormalised): new (1, C, K) the batch-mean bases."""
        updated = self.momentum * self.mu + (1.0 - self.momentum) * new.to(self.mu)
        self.mu.copy_(l2_normalize(updated, dim=1) if self.renormalize else updated)
