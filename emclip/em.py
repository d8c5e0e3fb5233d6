"""Expectation-Maximization (EM) aggregation of dense features into K compact bases.

This is EMANet's EM attention unit (EMAU; Li et al., "Expectation-Maximization Attention
Networks for Semantic Segmentation", ICCV 2019, official code ``XiaLiPKU/EMANet``; also
MMSegmentation's ``ema_head.py``). Features ``x`` (B, C, N) with N = H*W pixels are clustered
around K bases ``mu`` (B, C, K) by T rounds of

* **E-step** ``z = softmax_K(lam * x^T mu)`` (B, N, K): each pixel's responsibilities. With
  unit-norm features and bases this is the posterior of a mixture of von Mises-Fisher
  distributions of concentration ``lam`` on the unit sphere; EMANet fixes ``lam = 1``.
* **M-step** ``mu = x z / sum_N z`` (B, C, K): each basis is the responsibility-weighted mean of
  the pixels, then L2-normalised over C (the paper found L2Norm better than LayerNorm).

The pixels are then rebuilt from the bases, ``x_hat = mu z^T`` (B, C, N): a rank-K
reconstruction in which pixels that share a basis share a feature. Cost O(N K T) instead of the
O(N^2) of non-local attention (see :mod:`emclip.attention_cost`).

What EM-CLIP adds: it applies the unit to frozen CLIP patch features, so that the dispersed,
domain-dependent patch embeddings of a medical image are aggregated into a few compact semantic
centres; those centres (``EMOutput.bases``) are what the text-guided decoder matches against the
CLIP text embeddings of the class names (cross-modal correspondence).

Numerics: the functions below compute in float32 (float64 stays float64) whatever the input
dtype, with ``torch.autocast`` switched off inside them (the bf16 training/inference of
:mod:`emclip.engine` would otherwise run their ``bmm`` in bf16), so bf16/fp16 inputs accumulate
the softmax and the sums over N safely; results come back in the dtype of ``x``.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

EPS = 1e-6  # EMANet's guard in both normalisations

__all__ = [
    "EMAggregation",
    "EMOutput",
    "e_step",
    "em_history",
    "em_iterations",
    "em_objective",
    "init_bases",
    "l2_normalize",
    "low_rank_reconstruction",
    "m_step",
]


def _check_tensor(name: str, value, ndim: int, shape_text: str) -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape {shape_text}, got {type(value).__name__}")
    if value.ndim != ndim:
        raise ValueError(f"{name} must have shape {shape_text} ({ndim} dims), got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {value.dtype}; call .float() first")


def _check_lam(lam) -> float:
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
        raise ValueError(f"lam (E-step inverse temperature) must be a finite number > 0, got {lam!r}")
    return float(lam)


def _check_iters(iters, name: str = "iters") -> int:
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 1:
        raise ValueError(f"{name} (number of EM iterations T) must be an int >= 1, got {iters!r}")
    return iters


def _compute_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def l2_normalize(t: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """``t / (1e-6 + ||t||_2)`` along ``dim`` (EMANet's ``_l2norm``, with its epsilon)."""
    return t / (EPS + t.norm(dim=dim, keepdim=True))


def e_step(x: torch.Tensor, mu: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Responsibilities ``z = softmax_K(lam * x^T mu)``: x (B, C, N), mu (B, C, K) -> z (B, N, K)."""
    return torch.softmax(lam * torch.bmm(x.transpose(1, 2), mu), dim=2)


def m_step(x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """New bases ``l2norm_C(x z / (1e-6 + sum_N z))``: x (B, C, N), z (B, N, K) -> mu (B, C, K)."""
    z_ = z / (EPS + z.sum(dim=1, keepdim=True))
    return l2_normalize(torch.bmm(x, z_), dim=1)


def _full_precision(device: torch.device):
    """Autocast off on ``device``: under ``torch.autocast`` the ``bmm`` of the E/M-steps would
    otherwise run in bf16/fp16 again, whatever dtype :func:`_prepare` cast to."""
    if device.type in ("cpu", "cuda"):
        return torch.autocast(device_type=device.type, enabled=False)
    return contextlib.nullcontext()


def _prepare(x: torch.Tensor, mu: torch.Tensor, iters: int, lam: float):
    _check_tensor("x", x, 3, "(B, C, N)")
    _check_tensor("mu", mu, 3, "(B, C, K)")
    if mu.shape[1] != x.shape[1]:
        raise ValueError(f"x has C={x.shape[1]} channels but mu has C={mu.shape[1]}; both are (B, C, .)")
    if mu.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mu has batch {mu.shape[0]} but x has batch {x.shape[0]}; use mu of batch 1 or B")
    if x.device != mu.device:
        raise ValueError(f"x is on {x.device} but mu on {mu.device}; move them to the same device")
    _check_iters(iters)
    lam = _check_lam(lam)
    dtype = _compute_dtype(x.dtype)
    return x.to(dtype), mu.to(dtype).expand(x.shape[0], -1, -1), lam


def em_iterations(x: torch.Tensor, mu: torch.Tensor, iters: int = 3, lam: float = 1.0):
    """Run ``iters`` EM rounds from the bases ``mu``; returns ``(mu, z)``.

    Args:
        x: features (B, C, N).
        mu: initial bases (B, C, K), or (1, C, K) shared by the batch.
        iters: T >= 1, the number of E+M rounds.
        lam: lambda > 0, the E-step inverse temperature (EMANet: 1).

    Returns:
        ``mu`` (B, C, K), the bases after the last M-step (unit norm over C), and ``z``
        (B, N, K), the responsibilities of the last E-step (rows sum to 1). As in EMANet, ``z``
        is the E-step that produced the returned ``mu``, so ``mu z^T`` is EMANet's reconstruction.
        Both in ``x.dtype``; computed in float32 (float64 for float64 input).

    Gradients flow through the iterations; :class:`EMAggregation` decides what runs under
    ``torch.no_grad``.
    """
    xc, mu, lam = _prepare(x, mu, iters, lam)
    z = None
    with _full_precision(x.device):
        for _ in range(iters):
            z = e_step(xc, mu, lam)
            mu = m_step(xc, z)
    return mu.to(x.dtype), z.to(x.dtype)


def em_history(x: torch.Tensor, mu: torch.Tensor, iters: int = 3, lam: float = 1.0):
    """Like :func:`em_iterations` but keeps every round: a list of ``iters`` pairs ``(mu_t, z_t)``.

    Round t's pair equals ``em_iterations(x, mu, t, lam)``; used by the plots of notebook 03.
    """
    xc, mu, lam = _prepare(x, mu, iters, lam)
    history = []
    with _full_precision(x.device):
        for _ in range(iters):  # bases stay in the compute dtype between rounds, as in em_iterations
            z = e_step(xc, mu, lam)
            mu = m_step(xc, z)
            history.append((mu.to(x.dtype), z.to(x.dtype)))
    return history


def em_objective(x: torch.Tensor, mu: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Mixture log-likelihood that EM climbs, up to constants: (B,) ``sum_N logsumexp_K(lam x^T mu)``.

    For unit-norm x and mu this is the log-likelihood of an equal-weight mixture of von
    Mises-Fisher distributions of concentration ``lam``; each E+M round never decreases it (the
    M-step's ``x z / sum_N z``, once L2-normalised, is that mixture's exact M-step).
    x (B, C, N), mu (B, C, K) or (1, C, K).
    """
    xc, mu, lam = _prepare(x, mu, 1, lam)
    with _full_precision(x.device):
        return torch.logsumexp(lam * torch.bmm(xc.transpose(1, 2), mu), dim=2).sum(dim=1)


def low_rank_reconstruction(mu: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """EMANet's reconstruction ``mu z^T``: mu (B, C, K), z (B, N, K) -> (B, C, N)."""
    return torch.bmm(mu, z.transpose(1, 2))


def init_bases(channels: int, num_bases: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """EMANet's initial bases (1, C, K): Normal(0, sqrt(2/K)) then L2-normalised over C."""
    mu = torch.randn(1, channels, num_bases, generator=generator) * math.sqrt(2.0 / num_bases)
    return l2_normalize(mu, dim=1)


class EMOutput(NamedTuple):
    """What :class:`EMAggregation` returns.

    features: (B, C, H, W) the unit's output (same shape as its input).
    bases: (B, C, K) the bases after the last M-step (unit norm over C).
    responsibilities: (B, N, K) the last E-step, N = H*W, rows sum to 1.
    """

    features: torch.Tensor
    bases: torch.Tensor
    responsibilities: torch.Tensor


_NORMS = ("batch", "group", "none")


class EMAggregation(nn.Module):
    """EMANet's EM attention unit (EMAU) as used by EM-CLIP: ``x (B,C,H,W) -> EMOutput``.

    ``out = ReLU(x + Norm(Conv1x1(ReLU(mu z^T))))`` with ``(mu, z)`` from T EM rounds on
    ``Conv1x1(x)`` started from the bases buffer ``mu`` (1, C, K).

    Follows EMANet (``network.py`` EMAU): 1x1 conv in (with bias), EM iterations under no_grad,
    reconstruction ``mu z^T``, ReLU, 1x1 conv out (no bias) + BatchNorm, residual, ReLU; the
    bases are a buffer (not a parameter) initialised from Normal(0, sqrt(2/K)) and L2-normalised;
    they move by a moving average ``mu <- m mu + (1 - m) mean_B(bases)`` (``EM_MOM`` = 0.9) after
    each training forward. Weights are initialised as in EMANet (conv ~ Normal(0, sqrt(2/n)),
    n = k*k*out_channels; norm weight 1, bias 0).

    Differences, each a design choice, not from the paper:

    * The moving average runs inside ``forward`` in training mode (EMANet does it in
      ``train.py``; MMSegmentation inside the module) and never in eval mode.
    * After the average the buffer is L2-renormalised (``renormalize=True``, as MMSegmentation;
      EMANet does not). The mean of unit vectors is shorter than 1, and the first E-step's
      logits ``lam x^T mu`` scale with ``||mu||``, so without renormalising the buffer's length
      would act as a second, drifting temperature; renormalising keeps ``lam`` the only one.
    * ``backprop_last_step=True`` (default): the first T-1 rounds run under no_grad as in EMANet,
      the last round runs with autograd on (its starting bases detached), so the 1x1 conv in
      receives a gradient through ``z`` and ``mu``; in EMANet the conv in gets none
      (MMSegmentation freezes it). ``False`` reproduces EMANet exactly: bases and
      responsibilities are then constants for autograd. The buffer never receives a gradient.
    * ``norm``: ``"batch"`` (EMANet), ``"group"`` (GroupNorm, 32 groups or fewer; better for the
      small batches of medical training) or ``"none"``.
    * ``eval_iters``: T at test time (the paper notes it may differ); ``None`` = ``iters``.

    Args:
        channels: C, input and output channels.
        num_bases: K (EMANet: 64).
        iters: T in training mode (EMANet: 3).
        lam: E-step inverse temperature (EMANet: 1).
        momentum: weight of the old buffer in the moving average, in [0, 1] (1 freezes it).
        eval_iters: T in eval mode (default ``iters``).
        norm: ``"batch"``, ``"group"`` or ``"none"`` after the conv out.
        renormalize: L2-renormalise the buffer after each moving-average update.
        backprop_last_step: see above.
    """

    def __init__(self, channels: int, num_bases: int = 64, iters: int = 3, lam: float = 1.0,
                 momentum: float = 0.9, eval_iters: int | None = None, *, norm: str = "batch",
                 renormalize: bool = True, backprop_last_step: bool = True):
        super().__init__()
        for name, value in (("channels", channels), ("num_bases", num_bases)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if isinstance(momentum, bool) or not isinstance(momentum, (int, float)) or not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum must be a number in [0, 1] (EMANet: 0.9), got {momentum!r}")
        if norm not in _NORMS:
            raise ValueError(f"norm must be one of {', '.join(_NORMS)}, got {norm!r}")
        self.channels, self.num_bases = channels, num_bases
        self.iters = _check_iters(iters)
        self.eval_iters = self.iters if eval_iters is None else _check_iters(eval_iters, "eval_iters")
        self.lam = _check_lam(lam)
        self.momentum = float(momentum)
        self.renormalize = bool(renormalize)
        self.backprop_last_step = bool(backprop_last_step)
        self.norm_kind = norm

        self.register_buffer("mu", init_bases(channels, num_bases))
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
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                n = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
                nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / n))
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def extra_repr(self) -> str:
        return (f"channels={self.channels}, num_bases={self.num_bases}, iters={self.iters}, "
                f"eval_iters={self.eval_iters}, lam={self.lam}, momentum={self.momentum}, "
                f"norm={self.norm_kind!r}, renormalize={self.renormalize}, "
                f"backprop_last_step={self.backprop_last_step}")

    def _em(self, x: torch.Tensor, iters: int):
        mu0 = self.mu.to(device=x.device)
        if not self.backprop_last_step:
            with torch.no_grad():
                return em_iterations(x, mu0, iters, self.lam)
        if iters > 1:
            with torch.no_grad():
                mu0, _ = em_iterations(x, mu0, iters - 1, self.lam)
        return em_iterations(x, mu0.detach(), 1, self.lam)

    @torch.no_grad()
    def _update_bases(self, bases: torch.Tensor) -> None:
        new = bases.detach().float().mean(dim=0, keepdim=True).to(self.mu.dtype)
        updated = self.momentum * self.mu + (1.0 - self.momentum) * new
        self.mu.copy_(l2_normalize(updated, dim=1) if self.renormalize else updated)

    def forward(self, x: torch.Tensor) -> EMOutput:
        """x (B, C, H, W) -> EMOutput(features (B,C,H,W), bases (B,C,K), responsibilities (B,H*W,K))."""
        _check_tensor("x", x, 4, "(B, C, H, W)")
        if x.shape[1] != self.channels:
            raise ValueError(f"EMAggregation was built for C={self.channels} channels, got input "
                             f"{tuple(x.shape)}; build it with channels={x.shape[1]}")
        identity = x
        b, c, h, w = x.shape
        feats = self.conv_in(x).reshape(b, c, h * w)
        mu, z = self._em(feats, self.iters if self.training else self.eval_iters)
        if self.training:
            self._update_bases(mu)
        rec = F.relu(low_rank_reconstruction(mu, z).reshape(b, c, h, w))
        out = F.relu(identity + self.norm(self.conv_out(rec)))
        return EMOutput(out, mu, z)
