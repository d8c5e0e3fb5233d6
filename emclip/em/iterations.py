"""The EM iterations themselves, as pure functions of tensors (EMANet's E- and M-steps).

x (B, C, N) features, mu (B, C, K) bases, z (B, N, K) responsibilities; see :mod:`emclip.em`.

Numerics: the functions compute in float32 (float64 stays float64) whatever the input dtype,
with ``torch.autocast`` switched off inside them (the bf16 training/inference of
:mod:`emclip.engine` would otherwise run their ``bmm`` in bf16), so bf16/fp16 inputs accumulate
the softmax and the sums over N safely; results come back in the dtype of ``x``.
"""

from __future__ import annotations

import contextlib
import math

import torch

EPS = 1e-6  # EMANet's guard in both normalisations

__all__ = [
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
