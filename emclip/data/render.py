"""Shared pieces of the synthetic generators: seeding, coordinate grids, smooth noise, styles.

Everything here works on numpy arrays at the output size (no up-front high-resolution
rendering), which keeps generation at several hundred samples per second on one core.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

import numpy as np

from emclip.data.styles import DomainStyle


def sample_rng(task: str, domain: str, split: str, index: int, seed: int) -> np.random.Generator:
    """A numpy Generator that depends only on (task, domain, split, index, seed).

    blake2b of the key (not Python's salted ``hash``), so the stream is identical across runs,
    processes and machines.
    """
    return _keyed_rng(f"{task}|{domain}|{split}|{int(index)}|{int(seed)}")


def volume_rng(task: str, domain: str, split: str, volume: int, seed: int) -> np.random.Generator:
    """A numpy Generator shared by every slice of one synthetic volume (stack of slices); its
    stream is independent of :func:`sample_rng`'s per-slice streams."""
    return _keyed_rng(f"{task}|{domain}|{split}|volume{int(volume)}|{int(seed)}")


def _keyed_rng(key: str) -> np.random.Generator:
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    return np.random.default_rng(np.frombuffer(digest, dtype=np.uint64))


@lru_cache(maxsize=16)
def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x), each (size, size) float32 in [-1, 1] (read-only)."""
    axis = np.linspace(-1.0, 1.0, size, dtype=np.float32)
    yy, xx = np.meshgrid(axis, axis, indexing="ij")
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


@lru_cache(maxsize=32)
def _interp_matrix(size: int, cells: int) -> np.ndarray:
    """(size, cells) linear-interpolation weights from a coarse grid to ``size`` samples."""
    pos = np.linspace(0.0, cells - 1.0, size)
    lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
    frac = pos - lo
    mat = np.zeros((size, cells), dtype=np.float32)
    mat[np.arange(size), lo] = 1.0 - frac
    mat[np.arange(size), lo + 1] = frac
    return mat


def smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field (size, size), roughly zero-mean, unit std: a (cells x cells) Gaussian
    grid interpolated bilinearly (two small matrix products, no per-pixel Python)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    mat = _interp_matrix(size, cells)
    field = mat @ coarse @ mat.T
    return field / (field.std() + 1e-6)


def soft_inside(level: np.ndarray, width: float) -> np.ndarray:
    """Soft indicator of ``level < 1`` (level = normalised radius): a linear ramp of total
    width ``2 * width`` around the edge (cheaper than a sigmoid, same look after blurring)."""
    return np.clip((1.0 - level) * (0.5 / width) + 0.5, 0.0, 1.0)


def ellipse_level(yy, xx, cy, cx, ry, rx, angle):
    """Normalised elliptic radius: < 1 inside the ellipse (centre, semi-axes, rotation in rad)."""
    c, s = np.cos(angle), np.sin(angle)
    dy, dx = yy - cy, xx - cx
    u = c * dx + s * dy
    v = -s * dx + c * dy
    return np.sqrt((u / rx) ** 2 + (v / ry) ** 2)


def illumination_field(rng: np.random.Generator, size: int, style: DomainStyle, mri: bool) -> np.ndarray:
    """Smooth multiplicative field (size, size): fundus vignetting + gradient, or an MRI bias field."""
    yy, xx = grid(size)
    angle = float(np.deg2rad(style.illumination_angle + rng.uniform(-20, 20)))
    ramp = np.cos(angle) * xx + np.sin(angle) * yy
    if mri:
        field = 0.8 * ramp + 0.4 * smooth_noise(rng, size, 3)
        return np.exp(style.illumination * field).astype(np.float32)
    radial = xx**2 + yy**2
    return np.clip(1.0 + style.illumination * (0.5 * ramp - 0.45 * radial), 0.05, None).astype(np.float32)


@lru_cache(maxsize=64)
def gaussian_matrix(size: int, sigma: float) -> np.ndarray:
    """(size, size) row-normalised Gaussian blur operator (reflecting borders are not needed:
    rows are renormalised, so edges keep their brightness). ``B @ img @ B.T`` blurs an image."""
    if sigma <= 0:
        return np.eye(size, dtype=np.float32)
    pos = np.arange(size, dtype=np.float64)
    mat = np.exp(-0.5 * ((pos[:, None] - pos[None, :]) / sigma) ** 2)
    return (mat / mat.sum(1, keepdims=True)).astype(np.float32)


@lru_cache(maxsize=64)
def acquisition_matrix(size: int, resolution: float, blur: float) -> np.ndarray:
    """(size, size) linear operator of one axis: box down-sampling by ``resolution``, linear
    up-sampling back, then Gaussian blur ``blur`` (pixels at 128 px). Applied as
    ``M @ img @ M.T`` it replaces three filtering passes by two small matrix products."""
    mat = np.eye(size, dtype=np.float32)
    if resolution > 1.0:
        low = max(8, int(round(size / resolution)))
        down = np.zeros((low, size), dtype=np.float32)
        edges = np.linspace(0, size, low + 1)
        for i in range(low):
            a, b = int(np.floor(edges[i])), max(int(np.ceil(edges[i + 1])), int(np.floor(edges[i])) + 1)
            down[i, a:b] = 1.0 / (b - a)
        mat = _interp_matrix(size, low) @ down
    if blur > 0:
        mat = gaussian_matrix(size, blur * size / 128.0) @ mat
    return mat


@lru_cache(maxsize=32)
def _gamma_lut(gamma: float, levels: int = 4096) -> np.ndarray:
    return (np.linspace(0.0, 1.0, levels, dtype=np.float64) ** gamma).astype(np.float32)


def apply_gamma(image: np.ndarray, gamma: float) -> np.ndarray:
    """``image ** gamma`` for image in [0, 1], through a 4096-entry look-up table (12-bit)."""
    if gamma == 1.0:
        return image
    lut = _gamma_lut(float(gamma))
    return lut[(image * (len(lut) - 1) + 0.5).astype(np.int32)]


def apply_style(image: np.ndarray, style: DomainStyle, rng: np.random.Generator, mri: bool) -> np.ndarray:
    """Apply a domain style to a clean rendering.

    Args:
        image: (C, H, W) float32 in [0, 1], C = 3 (fundus) or 1 (MRI).
    Returns:
        (C, H, W) float32 in [0, 1]: illumination -> resolution/blur -> colour cast, contrast,
        gamma -> noise (Gaussian or Rician) -> camera field of view.
    """
    size = image.shape[-1]
    out = image * illumination_field(rng, size, style, mri)[None]
    if style.resolution > 1.0 or style.blur > 0:
        mat = acquisition_matrix(size, float(style.resolution), float(style.blur))
        out = mat @ out @ mat.T
    gain = np.asarray(style.gain[: out.shape[0]], dtype=np.float32)[:, None, None]
    out = out * (gain * float(rng.uniform(0.93, 1.07)))
    mean = float(out.mean())
    out = np.clip((out - mean) * style.contrast + (mean + style.offset), 0.0, 1.0)
    out = apply_gamma(out, style.gamma)
    sigma = float(style.noise_sigma)
    shape = (1, size, size)  # sensor noise shared by the colour channels (luminance noise)
    if style.noise == "rician":
        out = np.sqrt((out + sigma * rng.standard_normal(shape, dtype=np.float32)) ** 2
                      + (sigma * rng.standard_normal(shape, dtype=np.float32)) ** 2)
    elif style.noise == "gaussian":
        out = out + sigma * rng.standard_normal(shape, dtype=np.float32)
    else:
        raise ValueError(f"Unknown noise model {style.noise!r}. Valid: 'gaussian', 'rician'.")
    if style.fov is not None:
        yy, xx = grid(size)
        cy, cx = (float(v) for v in rng.uniform(-0.15, 0.15, size=2))
        radius = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) / (style.fov * np.sqrt(2.0))
        out = out * soft_inside(radius, 0.01)[None]
    return np.clip(out, 0.0, 1.0).astype(np.float32)
