"""Checker for notebook 06's exercise: write the per-image Dice yourself.

``check_dice(student_fn)`` calls ``student_fn(pred, target)`` with bool tensors (B, H, W) and
expects one Dice per image (anything ``numpy.asarray`` turns into shape (B,)). It compares with
:func:`emclip.metrics.compute_dice` on random masks and on the empty-mask cases, and raises an
``AssertionError`` naming the failing case and the usual mistake behind it.
"""

from __future__ import annotations

import numpy as np
import torch

from emclip.metrics import compute_dice

__all__ = ["check_dice"]

_HINTS = {
    "random": "Sum over the pixels of each image separately (dims 1 and 2), not over the whole batch.",
    "both empty": "Both masks empty: nothing to find and nothing found, the convention is Dice = 1 "
                  "(guard the 0 / 0).",
    "empty prediction": "An empty prediction of a non-empty target scores 0.",
    "single pixel": "Dice = 2 |P ∩ T| / (|P| + |T|): one shared pixel of one-pixel masks gives 1.",
}


def _cases(seed: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    random_p = torch.rand(4, 16, 16, generator=g) > 0.5
    random_t = torch.rand(4, 16, 16, generator=g) > 0.4
    empty = torch.zeros(2, 8, 8, dtype=torch.bool)
    full = empty.clone()
    full[:, 2:5, 2:5] = True
    pixel = empty.clone()
    pixel[:, 3, 3] = True
    return {"random": (random_p, random_t), "both empty": (empty, empty), "empty prediction": (empty, full),
            "single pixel": (pixel, pixel)}


def check_dice(student_fn, atol: float = 1e-6, seed: int = 0, verbose: bool = True) -> bool:
    """Compare ``student_fn(pred, target)`` with :func:`emclip.metrics.compute_dice`; True, or AssertionError."""
    for name, (pred, target) in _cases(seed).items():
        got = np.asarray(student_fn(pred.clone(), target.clone()), dtype=np.float64)
        want = compute_dice(pred, target)
        if got.shape != want.shape:
            raise AssertionError(f"case '{name}': expected one Dice per image, shape {want.shape}, got {got.shape}. "
                                 f"{_HINTS['random']}")
        if not np.allclose(got, want, atol=atol, equal_nan=False):
            raise AssertionError(f"case '{name}': got {np.round(got, 4).tolist()}, expected "
                                 f"{np.round(want, 4).tolist()}. {_HINTS[name]}")
    if verbose:
        print(f"check_dice: all {len(_cases(seed))} cases match emclip.metrics.compute_dice.")
    return True
