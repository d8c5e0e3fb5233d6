"""Synthetic short-axis cine MRI stacks (M&Ms-like), label 0 bg, 1 LV, 2 MYO, 3 RV.

The clean rendering is a bright-blood (bSSFP) slice: a body outline with subcutaneous fat and
textured soft tissue, dark lungs on both sides, the liver below, and the heart with a bright LV
blood pool (papillary muscles inside, labelled LV as in M&Ms), a dark myocardial ring of
varying thickness and a bright RV crescent wrapped around the LV's septal side.

Samples come in volumes, as real short-axis stacks do: sample ``index`` is slice
``index % SLICES_PER_VOLUME`` of volume ``index // SLICES_PER_VOLUME``. A volume is one patient at
one phase (ED or ES): heart size, position, rotation, wall thickness and body shape are drawn
once per volume (:func:`volume_params`); its slices run from base to apex
(:func:`slice_params`): the ventricles shrink towards the apex, the heart centre drifts a
little, and the RV ends before the apex, so the apical slices of a stack have no RV (as in real
short-axis stacks). The myocardium thickens at ES. Nominal geometry: a field of view of
``FIELD_OF_VIEW_MM`` across the image (pixel spacing ``FIELD_OF_VIEW_MM / size`` mm) and
``SLICE_THICKNESS_MM`` between slices, M&Ms-like values. The vendor style
(:mod:`emclip.data.styles`) then adds the scanner effects (intensity scale, contrast, gamma,
bias field, resolution, Rician noise) to each slice. The anatomy model, the stack size and the
nominal mm geometry are design choices, not from the paper.
"""

from __future__ import annotations

import numpy as np

from emclip.data.render import apply_style, ellipse_level, grid, smooth_noise, soft_inside
from emclip.data.styles import DomainStyle

TISSUE, FAT, LUNG, LIVER, BLOOD, MUSCLE = 0.34, 0.78, 0.04, 0.42, 0.88, 0.22
#: slices per synthetic volume (base to apex); the profiles' per-domain counts are multiples of it
SLICES_PER_VOLUME = 8
#: nominal width of the rendered field of view and distance between slices, in mm (design choice)
FIELD_OF_VIEW_MM = 300.0
SLICE_THICKNESS_MM = 10.0


def pixel_spacing_mm(size: int) -> float:
    """Nominal in-plane pixel size (mm) of a synthetic slice rendered at ``size`` x ``size``."""
    return FIELD_OF_VIEW_MM / int(size)


def volume_params(rng: np.random.Generator, style: DomainStyle) -> dict:
    """Anatomy shared by the slices of one volume (normalised coordinates, image half-width = 1).

    ``positions``: (SLICES_PER_VOLUME,) slice positions from base (about 0) to apex (about 1).
    """
    systole = rng.random() < 0.5
    return {
        "phase": "ES" if systole else "ED",
        "center": (float(rng.normal(0.05, 0.08)), float(rng.normal(0.12, 0.08))),
        "apex_drift": (float(rng.normal(0.0, 0.03)), float(rng.normal(0.0, 0.03))),
        "angle": rng.uniform(-0.55, 0.55),
        "r_lv": 0.17 * style.scale * rng.uniform(0.85, 1.15) * (0.72 if systole else 1.0),
        "lv_aspect": rng.uniform(0.88, 1.12),
        "wall": 0.075 * style.scale * rng.uniform(0.75, 1.3) * (1.35 if systole else 1.0),
        "rv_end": rng.uniform(0.7, 0.95),  # the RV ends before the apex
        "rv_extent": rng.uniform(0.9, 1.25),
        "body": (rng.uniform(0.72, 0.85), rng.uniform(0.92, 1.02)),
        "positions": np.linspace(rng.uniform(0.0, 0.1), rng.uniform(0.9, 1.0), SLICES_PER_VOLUME),
    }


def slice_params(volume: dict, z: int, rng: np.random.Generator) -> dict:
    """Parameters of slice ``z`` (0 = base) of ``volume``; small per-slice jitter from ``rng``."""
    position = float(volume["positions"][z])
    (cy, cx), (dy, dx) = volume["center"], volume["apex_drift"]
    return {
        "position": position,
        "phase": volume["phase"],
        "center": (cy + position * dy, cx + position * dx),
        "angle": volume["angle"] + rng.normal(0.0, 0.03),
        "r_lv": volume["r_lv"] * (1.0 - 0.55 * position) * rng.uniform(0.97, 1.03),
        "lv_aspect": volume["lv_aspect"],
        "wall": volume["wall"] * rng.uniform(0.95, 1.05),
        "rv_present": position < volume["rv_end"],
        "rv_extent": volume["rv_extent"] * (1.0 - 0.6 * position),
        "body": volume["body"],
    }


def render_cardiac(rng: np.random.Generator, size: int, style: DomainStyle, p: dict) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic short-axis slice with the anatomy ``p`` of :func:`slice_params`.

    Returns:
        image (1, size, size) float32 in [0, 1] (callers repeat it to 3 channels);
        mask (size, size) int64 (0 bg, 1 LV, 2 MYO, 3 RV).
    """
    yy, xx = grid(size)
    cy, cx = p["center"]
    angle = p["angle"]
    by, bx = p["body"]
    body_level = ellipse_level(yy, xx, 0.08, 0.0, by, bx, 0.1 * angle) * (1.0 + 0.02 * smooth_noise(rng, size, 4))
    texture = 1.0 + 0.12 * smooth_noise(rng, size, 12)
    image = TISSUE * texture * soft_inside(body_level, 0.01)
    fat = soft_inside(body_level, 0.01) - soft_inside(body_level / 0.93, 0.01)
    image = image + (FAT - TISSUE) * fat
    for sign in (-1.0, 1.0):  # lungs left and right of the mediastinum
        lung = ellipse_level(yy, xx, -0.12 + rng.normal(0, 0.04), sign * 0.45, 0.42, 0.27, sign * 0.25)
        image = image + (LUNG - image) * soft_inside(lung, 0.05)
    liver = ellipse_level(yy, xx, 0.62, -0.35, 0.3, 0.5, 0.3)
    image = image + (LIVER * texture - image) * soft_inside(liver, 0.04) * soft_inside(body_level, 0.01)

    r_lv, wall = p["r_lv"], p["wall"]
    c, s = np.cos(angle), np.sin(angle)
    lv = ellipse_level(yy, xx, cy, cx, r_lv * p["lv_aspect"], r_lv, angle)
    # myocardial thickness varies around the ring (a smooth field modulates the epicardium)
    epi = ellipse_level(yy, xx, cy, cx, r_lv * p["lv_aspect"] + wall, r_lv + wall, angle)
    epi = epi * (1.0 + 0.12 * wall / (r_lv + wall) * smooth_noise(rng, size, 5))
    mask = np.zeros((size, size), dtype=np.int64)
    if p["rv_present"]:
        # the RV sits on the septal side (image left of the LV before rotation)
        ext = p["rv_extent"]
        ry_rv, rx_rv = (r_lv + wall) * 1.45 * max(ext, 0.4), (r_lv + wall) * 1.0 * max(ext, 0.4)
        off = (r_lv + wall) * 0.25 + 0.5 * rx_rv
        rv_cy, rv_cx = cy - s * off, cx - c * off  # u = -off along the rotated x axis
        rv = ellipse_level(yy, xx, rv_cy, rv_cx, ry_rv, rx_rv, angle)
        rv_inside = (rv < 1.0) & (epi >= 1.0 + 0.08)
        mask[rv_inside] = 3
        image = image + (BLOOD * 0.95 - image) * (soft_inside(rv, 0.04) * soft_inside(1.08 / epi, 0.03))
    mask[epi < 1.0] = 2
    mask[lv < 1.0] = 1
    image = image + (MUSCLE - image) * soft_inside(epi, 0.03)
    pool = BLOOD * (1.0 + 0.05 * smooth_noise(rng, size, 20))
    image = image + (pool - image) * soft_inside(lv, 0.04)
    for _ in range(int(rng.integers(0, 3)) if p["position"] < 0.8 else 0):  # papillary muscles (label LV)
        a = rng.uniform(0, 2 * np.pi)
        pm = ellipse_level(yy, xx, cy + 0.6 * r_lv * np.sin(a), cx + 0.6 * r_lv * np.cos(a),
                           0.18 * r_lv, 0.18 * r_lv, 0.0)
        image = image + (MUSCLE - image) * soft_inside(pm, 0.1)
    image = np.clip(image, 0.0, 1.0).astype(np.float32)[None]
    return apply_style(image, style, rng, mri=True), mask
