"""Checker for notebook 04's exercise: write the EM iterations yourself.

``check_em_iterations(student_fn)`` calls ``student_fn(x, mu, iters, lam) -> (mu, z)`` on a few
random cases and compares it with :func:`emclip.em.em_iterations`; it raises an
``AssertionError`` that says which case failed and what the usual mistake behind it is.
"""

from __future__ import annotations

import torch

from emclip.em import em_iterations

__all__ = ["check_em_iterations"]

# (B, C, N, K, iters, lam)
_CASES = ((1, 4, 30, 3, 1, 1.0), (2, 8, 50, 5, 3, 1.0), (3, 16, 40, 4, 2, 5.0))

_HINTS = (
    "Common mistakes: softmax over N instead of K (z rows must sum to 1 over the K bases); "
    "forgetting lam in the E-step; normalising z over K instead of N in the M-step "
    "(divide by z.sum(dim=1) + 1e-6); forgetting to L2-normalise mu over C (dim=1) after each M-step; "
    "returning the z of a different iteration (return the z that produced the final mu)."
)


def check_em_iterations(student_fn, atol: float = 1e-4, seed: int = 0, verbose: bool = True) -> bool:
    """Compare ``student_fn(x, mu, iters, lam)`` with the reference; True, or AssertionError."""
    g = torch.Generator().manual_seed(seed)
    for index, (b, c, n, k, iters, lam) in enumerate(_CASES):
        x = torch.randn(b, c, n, generator=g)
        mu = torch.nn.functional.normalize(torch.randn(b, c, k, generator=g), dim=1)
        case = f"case {index} (B={b}, C={c}, N={n}, K={k}, iters={iters}, lam={lam})"
        result = student_fn(x.clone(), mu.clone(), iters, lam)
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise AssertionError(f"{case}: return a pair (mu, z), got {type(result).__name__}")
        got_mu, got_z = (torch.as_tensor(t).detach().float() for t in result)
        ref_mu, ref_z = em_iterations(x, mu, iters, lam)
        if got_mu.shape != ref_mu.shape or got_z.shape != ref_z.shape:
            raise AssertionError(f"{case}: shapes mu {tuple(got_mu.shape)}, z {tuple(got_z.shape)}; expected "
                                 f"mu {tuple(ref_mu.shape)} (B, C, K) and z {tuple(ref_z.shape)} (B, N, K)")
        for name, got, ref in (("z", got_z, ref_z), ("mu", got_mu, ref_mu)):
            err = float((got - ref).abs().max())
            if err > atol:
                raise AssertionError(f"{case}: {name} differs from the reference by up to {err:.2e} "
                                     f"(tolerance {atol:g}). {_HINTS}")
    if verbose:
        print(f"Correct: your EM iterations match the reference on {len(_CASES)} random cases.")
    return True
