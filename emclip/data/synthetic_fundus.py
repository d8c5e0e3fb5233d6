"""Synthetic optic-disc-centred fundus ROIs (the Fundus-DG crop geometry), label 0 bg, 1 rim, 2 cup.

The clean rendering has the parts an ophthalmologist looks for in a disc-centred photograph:

- retina background: orange-red, low-frequency choroidal texture, brighter near the disc;
- the optic disc: a bright, slightly vertical ellipse near the centre with an irregular rim,
  varied size, eccentricity, rotation and position;
- the cup: a paler, yellow-white ellipse inside the disc, offset to the temporal side, with a
  vertical cup-to-disc ratio (CDR) drawn from 0.3 (healthy) to 0.8 (glaucomatous);
- a branching vessel tree that leaves the disc centre, crosses the rim and arches away
  (vessels darken the image but do not change the labels, as in the DoFE annotations).

The domain style (:mod:`emclip.data.styles`) then adds camera effects. The anatomy model is a
design choice, not from the paper (the EM-CLIP paper uses the real DoFE Fundus-DG images).
"""

from __future__ import annotations

import numpy as np

from emclip.data.render import apply_style, ellipse_level, gaussian_matrix, grid, smooth_noise, soft_inside
from emclip.data.styles import DomainStyle

RETINA_RGB = np.array([0.78, 0.34, 0.16], dtype=np.float32)
DISC_RGB = np.array([0.97, 0.72, 0.46], dtype=np.float32)
CUP_RGB = np.array([1.00, 0.92, 0.74], dtype=np.float32)
VESSEL_RGB = np.array([0.42, 0.09, 0.05], dtype=np.float32)


STEPS, STEP = 30, 0.07  # segments per vessel, segment length (normalised units)


def _walk(rng: np.random.Generator, starts, angles0, widths0, bends):
    """Random walks of V vessels at once (cumulative sums of angle changes and steps).

    Args: starts (V, 2) normalised (y, x); angles0, widths0, bends (V,).
    Returns: points (V, S+1, 2), angles (V, S), half-widths (V, S), valid (V, S) bool
    (segments before the vessel leaves the image).
    """
    v = len(starts)
    angles = angles0[:, None] + np.cumsum(rng.normal(0.0, 0.18, (v, STEPS)) + bends[:, None], axis=1)
    moves = STEP * np.stack([np.sin(angles), np.cos(angles)], axis=-1)
    points = np.concatenate([starts[:, None], starts[:, None] + np.cumsum(moves, axis=1)], axis=1)
    widths = widths0[:, None] * 0.975 ** np.arange(STEPS)
    outside = np.abs(points[:, 1:]).max(axis=-1) > 1.15
    valid = np.cumsum(outside, axis=1) <= 1  # keep the segment that crosses the border
    return points, angles, widths, valid


def vessel_tree(rng: np.random.Generator, origin: np.ndarray, disc_radius: float, depth: int = 2):
    """Segments of a vessel tree grown from ``origin``: (p0 (M, 2), p1 (M, 2), half-width (M,)).

    Six trunks (the superior / inferior temporal arcades, two nasal vessels, two thinner ones)
    start near the cup, walk outwards and branch (at most two branches per vessel and level).
    """
    angles0 = np.array([-1.9, -1.2, 1.9, 1.2, np.pi + rng.normal(0, 0.3), rng.normal(0, 0.3)])
    widths0 = np.array([0.035, 0.030, 0.035, 0.030, 0.018, 0.016]) * rng.uniform(0.85, 1.15, 6)
    bends = np.array([-0.03, 0.03, 0.03, -0.03, 0.0, 0.0])
    starts = origin[None] + rng.normal(0.0, 0.15 * disc_radius, (6, 2))
    angles0 = angles0 + rng.normal(0, 0.15, 6)
    p0s, p1s, ws = [], [], []
    for level in range(depth + 1):
        points, angles, widths, valid = _walk(rng, starts, angles0, widths0, bends)
        p0s.append(points[:, :-1][valid])
        p1s.append(points[:, 1:][valid])
        ws.append(widths[valid])
        if level == depth:
            break
        pick = (rng.random(valid.shape) < 0.12) & valid
        pick[:, :2] = False
        pick &= np.cumsum(pick, axis=1) <= 2
        vi, ki = np.nonzero(pick)
        if len(vi) == 0:
            break
        side = np.where(rng.random(len(vi)) < 0.5, -1.0, 1.0)
        starts = points[vi, ki + 1]
        angles0 = angles[vi, ki] + side * rng.uniform(0.5, 1.1, len(vi))
        widths0 = widths[vi, ki] * 0.65
        bends = -0.3 * bends[vi]
    return np.concatenate(p0s), np.concatenate(p1s), np.concatenate(ws)


def _splat_lines(p0, p1, half, size: int, classes: np.ndarray) -> np.ndarray:
    """Rasterise segments as one-pixel skeletons, one layer per half-width class: (L, size, size)."""
    to_px = (size - 1) / 2.0
    p0, p1, half = p0 * to_px + to_px, p1 * to_px + to_px, half * to_px
    layer = np.clip(np.searchsorted(classes, half), 0, len(classes) - 1)
    n = int(np.ceil(np.abs(p1 - p0).max())) + 2
    t = np.linspace(0.0, 1.0, n, dtype=np.float32)[None, :, None]
    pts = np.rint(p0[:, None] + (p1 - p0)[:, None] * t).astype(np.int64).reshape(-1, 2)
    lay = np.repeat(layer, n)
    keep = (pts >= 0).all(1) & (pts < size).all(1)
    skeleton = np.zeros((len(classes), size, size), dtype=np.float32)
    skeleton[lay[keep], pts[keep, 0], pts[keep, 1]] = 1.0
    return skeleton


def vessel_map(rng: np.random.Generator, size: int, origin: np.ndarray, disc_radius: float) -> np.ndarray:
    """Vessel opacity (size, size) in [0, 1]: a branching tree grown from ``origin``.

    The segments are drawn as one-pixel skeletons in three calibre classes; each class is
    blurred with a Gaussian of its half-width (two small matrix products) and rescaled so that
    the centre line reaches full opacity: a Gaussian vessel profile without a distance transform.
    """
    classes = np.array([0.7, 1.2, 2.0]) * size / 128.0  # half-widths in pixels
    skeleton = _splat_lines(*vessel_tree(rng, origin, disc_radius), size, classes)
    opacity = np.zeros((size, size), dtype=np.float32)
    for layer, half in zip(skeleton, classes):
        blur = gaussian_matrix(size, float(half))
        opacity = np.maximum(opacity, (blur @ layer @ blur.T) * (2.2 * float(half)))
    return np.clip(opacity, 0.0, 1.0)


def fundus_params(rng: np.random.Generator, style: DomainStyle) -> dict:
    """Anatomy parameters of one eye (normalised coordinates, image half-width = 1)."""
    radius = 0.30 * style.scale * rng.uniform(0.85, 1.15)
    cdr = rng.uniform(0.3, 0.8)
    ry = radius * rng.uniform(1.0, 1.18)
    rx = radius
    cup_ry = cdr * ry
    cup_rx = cdr * rx * rng.uniform(0.85, 1.1)
    room = (1.0 - cdr) * rx * 0.45
    return {
        "center": tuple(float(v) for v in rng.uniform(-0.12, 0.12, size=2)),
        "disc_axes": (ry, rx),
        "angle": rng.uniform(-0.35, 0.35),
        "cdr": cdr,
        "cup_axes": (cup_ry, cup_rx),
        "cup_offset": (rng.uniform(-0.3, 0.3) * room, rng.uniform(0.0, 1.0) * room),
    }


def render_fundus(rng: np.random.Generator, size: int, style: DomainStyle) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic fundus ROI.

    Returns:
        image (3, size, size) float32 in [0, 1]; mask (size, size) int64 (0 bg, 1 rim, 2 cup).
    """
    yy, xx = grid(size)
    p = fundus_params(rng, style)
    cy, cx = p["center"]
    ry, rx = p["disc_axes"]
    # an irregular rim: a smooth random field perturbs the elliptic radius by a few per cent
    disc_level = ellipse_level(yy, xx, cy, cx, ry, rx, p["angle"]) * (1.0 + 0.03 * smooth_noise(rng, size, 4))
    ccy, ccx = cy + p["cup_offset"][0], cx + p["cup_offset"][1]
    cup_level = ellipse_level(yy, xx, ccy, ccx, p["cup_axes"][0], p["cup_axes"][1], p["angle"])
    mask = np.zeros((size, size), dtype=np.int64)
    mask[disc_level < 1.0] = 1
    mask[(cup_level < 1.0) & (disc_level < 1.0)] = 2

    texture = 1.0 + 0.10 * smooth_noise(rng, size, 6) + 0.05 * smooth_noise(rng, size, 18)
    glow = 0.25 * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (2.2 * rx) ** 2))
    image = RETINA_RGB[:, None, None] * (texture * (0.85 + glow))[None]
    disc_alpha = 0.85 * soft_inside(disc_level, 0.05)
    cup_alpha = 0.75 * soft_inside(cup_level, 0.12)
    image = image * (1 - disc_alpha) + DISC_RGB[:, None, None] * disc_alpha * (1 + 0.05 * texture - 0.05)
    image = image * (1 - cup_alpha) + CUP_RGB[:, None, None] * cup_alpha
    vessels = 0.8 * vessel_map(rng, size, np.array([ccy, ccx]), rx)
    image = image * (1 - vessels) + VESSEL_RGB[:, None, None] * vessels
    image = np.clip(image, 0.0, 1.0).astype(np.float32)
    return apply_style(image, style, rng, mri=False), mask
