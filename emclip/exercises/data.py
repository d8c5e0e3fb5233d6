"""Checkers for the exercises of notebook 01 (multi-centre data).

Each checker calls your function on test cases, compares it with an independent reference and
returns a short message; it raises AssertionError with a hint when something is wrong.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from emclip.data.real_fundus import decode_fundus_mask


def check_decode_fundus_mask(student_fn) -> str:
    """Exercise: write ``decode(grey (H, W) uint8) -> labels (H, W)`` for DoFE masks
    (> 200 background 0, 51..200 rim 1, <= 50 cup 2)."""
    rng = np.random.default_rng(0)
    edges = np.full((16, 16), 128, np.uint8)
    edges[0, :8] = [0, 50, 51, 128, 199, 200, 201, 255]  # the thresholds, inside a clean mask
    cases = [edges]
    cases += [rng.choice(np.array([0, 128, 255], np.uint8), size=(16, 16)) for _ in range(3)]
    for grey in cases:
        expected = np.select([grey > 200, grey > 50], [0, 1], default=2)
        got = np.asarray(student_fn(grey.copy()))
        assert got.shape == grey.shape, f"expected shape {grey.shape}, got {got.shape}"
        wrong = np.argwhere(got != expected)
        assert len(wrong) == 0, (f"grey value {int(grey[tuple(wrong[0])])} should map to label "
                                 f"{int(expected[tuple(wrong[0])])}, got {int(got[tuple(wrong[0])])}. "
                                 "Remember: > 200 background, 51..200 rim, <= 50 cup.")
    assert np.array_equal(decode_fundus_mask(cases[1]), student_fn(cases[1].copy()))
    return "decode: correct on the DoFE thresholds and on random masks."


def check_rician_noise(student_fn, sigma: float = 0.1) -> str:
    """Exercise: write ``rician(image, sigma, rng) -> noisy`` (MRI magnitude noise).

    Compared with scipy's Rice distribution: the mean of |s + n| for signal s and complex
    Gaussian noise n of per-component std sigma is ``stats.rice(s / sigma, scale=sigma).mean()``.
    """
    rng = np.random.default_rng(0)
    for signal in (0.0, 0.05, 0.3, 0.8):
        image = np.full((200, 200), signal, np.float32)
        noisy = np.asarray(student_fn(image, sigma, rng))
        assert noisy.shape == image.shape, f"expected shape {image.shape}, got {noisy.shape}"
        assert noisy.min() >= 0, "a magnitude image is never negative: take the modulus sqrt(re^2 + im^2)"
        expected = stats.rice(signal / sigma, scale=sigma).mean()
        assert abs(noisy.mean() - expected) < 0.02 * max(expected, sigma), (
            f"signal {signal}: mean {noisy.mean():.4f}, Rician mean {expected:.4f}. Add noise to the real part "
            "and an independent noise to the imaginary part, then take the magnitude.")
    return "rician: matches the Rice distribution (note the noise floor sigma*sqrt(pi/2) at zero signal)."
