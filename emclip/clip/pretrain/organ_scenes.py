"""Organ-like scenes of the pretraining corpus beyond the two tasks: brain MRI and chest CT.

Simple grey renderings with the layout a radiologist expects (skull, brain, ventricles; body,
lungs, heart, spine) and, in about half of the images, a lesion or nodule whose size and
position the caption states. They add "a structure at a place" vocabulary in other organs, so
that the model learns localisation as a general skill. Design choices, not from the paper.

``*_scene(rng, size)`` -> (image (3, size, size) float32 in [0, 1], facts);
``describe_*(facts, rng)`` -> one caption.
"""

from __future__ import annotations

import numpy as np

from emclip.clip.pretrain.words import pick, position_phrase, size_word, with_article
from emclip.data.render import ellipse_level, grid, smooth_noise, soft_inside

P_LESION = 0.5


def _blend(image: np.ndarray, alpha: np.ndarray, value) -> np.ndarray:
    return image + (value - image) * alpha


def _lesion(rng: np.random.Generator, yy, xx, inside: np.ndarray, radius: tuple[float, float]):
    """A round lesion inside the region ``inside`` (bool): (alpha map, facts) or (None, None)."""
    ys, xs = np.nonzero(inside)
    if len(ys) == 0:
        return None, None
    pick_index = int(rng.integers(len(ys)))
    size = yy.shape[0]
    cy, cx = 2 * (ys[pick_index] + 0.5) / size - 1, 2 * (xs[pick_index] + 0.5) / size - 1
    r = rng.uniform(*radius)
    alpha = soft_inside(ellipse_level(yy, xx, cy, cx, r, r * rng.uniform(0.7, 1.0), rng.uniform(0, np.pi)), 0.08)
    return alpha, {"cy": float(cy), "cx": float(cx), "size": size_word(r, radius[0] + (radius[1] - radius[0]) / 3,
                                                                          radius[1] - (radius[1] - radius[0]) / 3)}


def brain_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """Axial brain MRI: bright skull ring, brain tissue, dark ventricles, maybe a lesion."""
    yy, xx = grid(size)
    ry, rx = rng.uniform(0.7, 0.9), rng.uniform(0.55, 0.75)
    cy, cx, angle = rng.normal(0, 0.05), rng.normal(0, 0.05), rng.normal(0, 0.1)
    head = ellipse_level(yy, xx, cy, cx, ry, rx, angle)
    brain = ellipse_level(yy, xx, cy, cx, ry * 0.88, rx * 0.86, angle)
    image = 0.85 * soft_inside(head, 0.02)
    tissue = 0.45 * (1 + 0.08 * smooth_noise(rng, size, 12))
    image = _blend(image, soft_inside(brain, 0.02), tissue)
    vent = rng.uniform(0.6, 1.4)
    for side in (-1, 1):
        level = ellipse_level(yy, xx, cy - 0.05, cx + side * 0.09 * vent, 0.22 * vent, 0.06 * vent, side * 0.25)
        image = _blend(image, soft_inside(level, 0.1), 0.08)
    facts = {"kind": "brain", "grey": True, "ventricles": size_word(vent, 0.85, 1.15), "lesion": None}
    if rng.random() < P_LESION:
        alpha, lesion = _lesion(rng, yy, xx, brain < 0.85, (0.05, 0.18))
        bright = bool(rng.random() < 0.7)
        image = _blend(image, alpha, 0.9 if bright else 0.15)
        facts["lesion"] = {**lesion, "bright": bright}
    image = np.clip(image, 0, 1).astype(np.float32)
    return np.repeat(image[None], 3, axis=0), facts


def describe_brain(facts: dict, rng: np.random.Generator) -> str:
    scan = pick(rng, ("axial brain MRI", "MRI of the head", "brain MR slice"))
    lesion = facts["lesion"]
    if lesion is None:
        return pick(rng, (f"{scan} with {facts['ventricles']} ventricles and no lesion.",
                          f"normal {scan}: skull, brain tissue and dark ventricles in the centre."))
    shade = "bright" if lesion["bright"] else "dark"
    where = position_phrase(lesion["cy"], lesion["cx"])
    return pick(rng, (f"{scan} with a {lesion['size']} {shade} lesion {where}.",
                      f"a {lesion['size']} {shade} spot {where} of {with_article(scan)}.",
                      f"{scan}: {facts['ventricles']} ventricles, {shade} lesion {where}."))


def chest_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """Axial chest CT: body, two dark lungs, the heart between them, the spine, maybe a nodule."""
    yy, xx = grid(size)
    body = ellipse_level(yy, xx, rng.normal(0.05, 0.03), 0.0, rng.uniform(0.6, 0.75), rng.uniform(0.85, 0.98), 0.0)
    image = 0.35 * (1 + 0.05 * smooth_noise(rng, size, 10)) * soft_inside(body, 0.02)
    lungs = np.zeros_like(yy, dtype=bool)
    lung_size = rng.uniform(0.8, 1.2)
    for side in (-1, 1):
        level = ellipse_level(yy, xx, -0.02, side * 0.42, 0.45 * lung_size, 0.28 * lung_size, side * 0.15)
        image = _blend(image, soft_inside(level, 0.05), 0.04)
        lungs |= level < 0.9
    heart_size = rng.uniform(0.7, 1.3)
    heart = ellipse_level(yy, xx, 0.12, -0.08, 0.22 * heart_size, 0.26 * heart_size, 0.4)
    image = _blend(image, soft_inside(heart, 0.04), 0.55)
    spine = ellipse_level(yy, xx, 0.55, 0.0, 0.1, 0.1, 0.0)
    image = _blend(image, soft_inside(spine, 0.05), 0.9)
    facts = {"kind": "chest", "grey": True, "heart": size_word(heart_size, 0.9, 1.1), "nodule": None}
    if rng.random() < P_LESION:
        alpha, nodule = _lesion(rng, yy, xx, lungs & (heart > 1.1), (0.03, 0.12))
        if alpha is not None:
            image = _blend(image, alpha, 0.6)
            facts["nodule"] = nodule
    image = np.clip(image, 0, 1).astype(np.float32)
    return np.repeat(image[None], 3, axis=0), facts


def describe_chest(facts: dict, rng: np.random.Generator) -> str:
    scan = pick(rng, ("axial chest CT", "CT slice of the chest", "thoracic CT image"))
    nodule = facts["nodule"]
    if nodule is None:
        return pick(rng, (f"{scan}: two dark lungs, a {facts['heart']} heart and the spine, no nodule.",
                          f"{scan} with clear lungs and a {facts['heart']} heart between them."))
    where = position_phrase(nodule["cy"], nodule["cx"])
    return pick(rng, (f"{scan} with a {nodule['size']} nodule in the lung {where}.",
                      f"a {nodule['size']} bright nodule {where} of {with_article(scan)}.",
                      f"{scan}: lung nodule {where}, {facts['heart']} heart."))
