"""Generic scenes of the pretraining corpus: shapes, cells, lines and textures, with captions.

These scenes teach structure beyond the two tasks: objects of different shape, size,
brightness and number, where they are and how they relate (left of, inside, around), thin
lines, textures. Nested objects (a ring around a blob, a blob with a paler spot inside) are
generic versions of the myocardium around the blood pool and the cup inside the disc.
Captions name what is present, how many, how large, where, and use brightness words (bright /
dark relative to the background) but no colour names: the style prior changes colours, so a
colour word would not describe what the image shows. Design choices, not from the paper.

Each ``*_scene(rng, size)`` returns a clean image (3, size, size) float32 in [0, 1] and a dict
of facts; ``describe_*(facts, rng)`` writes one caption from the facts.
"""

from __future__ import annotations

import numpy as np

from emclip.clip.pretrain.words import (
    count_word,
    join_words,
    pick,
    plural,
    position_phrase,
    region_facts,
    relation_phrase,
    size_word,
    with_article,
)
from emclip.data.render import ellipse_level, grid, smooth_noise, soft_inside
from emclip.data.synthetic_fundus import vessel_map

SHAPES = ("circle", "oval", "square", "rectangle", "triangle", "ring", "cross")
P_GREY = 0.4  # generic scenes rendered grey (equal channels)


def _level(kind: str, yy, xx, cy, cx, r, aspect, angle):
    """Normalised level (< 1 inside) of one shape of radius ``r`` (normalised units)."""
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * (xx - cx) + s * (yy - cy), -s * (xx - cx) + c * (yy - cy)
    if kind == "circle":
        return np.sqrt(u**2 + v**2) / r
    if kind == "oval":
        return ellipse_level(yy, xx, cy, cx, r, r * aspect, angle)
    if kind in ("square", "rectangle"):
        ry = r * (aspect if kind == "rectangle" else 1.0) * 0.85
        return np.maximum(np.abs(u) / (r * 0.85), np.abs(v) / ry)
    if kind == "triangle":
        normals = [angle + k * 2 * np.pi / 3 for k in range(3)]
        return np.max([(np.cos(a) * (xx - cx) + np.sin(a) * (yy - cy)) / (0.5 * r) for a in normals], axis=0)
    if kind == "ring":
        return np.abs(np.sqrt(u**2 + v**2) / r - 0.8) / 0.2
    if kind == "cross":
        arm = np.minimum(np.maximum(np.abs(u) / r, np.abs(v) / (0.3 * r)),
                         np.maximum(np.abs(u) / (0.3 * r), np.abs(v) / r))
        return arm
    raise ValueError(f"unknown shape {kind!r}")


def _background(rng: np.random.Generator, size: int, grey: bool) -> tuple[np.ndarray, np.ndarray]:
    """A textured background (3, size, size) and its base colour (3,)."""
    base = np.full(3, rng.uniform(0.15, 0.75)) if grey else rng.uniform(0.1, 0.8, 3)
    texture = 1.0 + rng.uniform(0.0, 0.25) * smooth_noise(rng, size, int(rng.integers(3, 16)))
    return np.clip(base[:, None, None] * texture[None], 0, 1).astype(np.float32), base


def _object_colour(rng: np.random.Generator, background: np.ndarray, grey: bool, bright: bool) -> np.ndarray:
    level = float(np.mean(background))
    target = rng.uniform(min(level + 0.25, 0.95), 1.0) if bright else rng.uniform(0.0, max(level - 0.25, 0.05))
    if grey:
        return np.full(3, target)
    colour = rng.uniform(0.2, 1.0, 3)
    return np.clip(colour * target / max(float(colour.mean()), 1e-3), 0, 1)


def _paint(image: np.ndarray, alpha: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return image * (1 - alpha[None]) + colour[:, None, None] * alpha[None]


def shapes_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """One to four shapes (some nested: a ring around a blob, a spot inside an oval) on a background."""
    grey = bool(rng.random() < P_GREY)
    yy, xx = grid(size)
    image, base = _background(rng, size, grey)
    objects, centres = [], []
    for _ in range(int(rng.integers(1, 5))):
        for _attempt in range(20):
            cy, cx = rng.uniform(-0.7, 0.7, 2)
            if all((cy - a) ** 2 + (cx - b) ** 2 > 0.35**2 for a, b in centres):
                break
        centres.append((cy, cx))
        kind, bright = pick(rng, SHAPES), bool(rng.random() < 0.6)
        r = rng.uniform(0.12, 0.4) / max(1.0, 0.6 * len(centres))
        level = _level(kind, yy, xx, cy, cx, r, rng.uniform(0.5, 0.8), rng.uniform(0, np.pi))
        alpha = soft_inside(level, 0.04)
        image = _paint(image, alpha, _object_colour(rng, base, grey, bright))
        obj = {"kind": kind, "bright": bright, **region_facts(alpha > 0.5)}
        if kind in ("circle", "oval") and rng.random() < 0.35:  # a nested spot inside
            inner = soft_inside(level / rng.uniform(0.35, 0.6), 0.06)
            image = _paint(image, inner, _object_colour(rng, base, grey, not bright))
            obj["inner"] = "bright spot" if not bright else "dark spot"
        objects.append(obj)
    return np.clip(image, 0, 1).astype(np.float32), {"kind": "shapes", "grey": grey, "objects": objects}


def _object_phrase(obj: dict) -> str:
    size = size_word(obj["area"], 0.03, 0.12)
    shade = "bright" if obj["bright"] else "dark"
    text = f"a {size} {shade} {obj['kind']}"
    return text + (f" with a {obj['inner']} inside" if obj.get("inner") else "")


def describe_shapes(facts: dict, rng: np.random.Generator) -> str:
    objects = [o for o in facts["objects"] if o["area"] > 0]
    if not objects:
        return "an empty textured background."
    n = len(objects)
    first = pick(rng, objects)
    kinds = {o["kind"] for o in objects}
    options = [f"{_object_phrase(first)} {position_phrase(first['cy'], first['cx'])}.",
               f"{count_word(n)} {plural('shape', n)}: {join_words([_object_phrase(o) for o in objects])}."]
    if len(kinds) == 1:
        options.append(f"{count_word(n)} {plural(first['kind'], n)} on a textured background.")
    if n >= 2:
        a, b = objects[0], objects[1]
        options.append(f"{with_article(a['kind'])} {relation_phrase(a, b)} {with_article(b['kind'])}.")
    if first.get("inner"):
        options.append(f"a {'dark' if first['bright'] else 'bright'} spot inside {with_article(first['kind'])} "
                       f"{position_phrase(first['cy'], first['cx'])}.")
    if first["kind"] == "ring":
        options.append(f"a {'bright' if first['bright'] else 'dark'} ring {position_phrase(first['cy'], first['cx'])}, "
                       "a hollow circle.")
    return pick(rng, options)


def cells_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """A microscopy-like field of round cells, some with a nucleus, optionally clustered."""
    grey = bool(rng.random() < P_GREY)
    yy, xx = grid(size)
    image, base = _background(rng, size, grey)
    n = int(rng.integers(2, 30))
    clustered = bool(rng.random() < 0.4)
    centre = rng.uniform(-0.5, 0.5, 2)
    radius = rng.uniform(0.05, 0.14)
    nuclei = bool(rng.random() < 0.5)
    bright = bool(rng.random() < 0.5)
    for _ in range(n):
        cy, cx = centre + rng.normal(0, 0.25, 2) if clustered else rng.uniform(-0.95, 0.95, 2)
        r = radius * rng.uniform(0.7, 1.3)
        level = ellipse_level(yy, xx, cy, cx, r, r * rng.uniform(0.75, 1.0), rng.uniform(0, np.pi))
        image = _paint(image, soft_inside(level, 0.1), _object_colour(rng, base, grey, bright))
        if nuclei:
            image = _paint(image, soft_inside(level / 0.4, 0.1), _object_colour(rng, base, grey, not bright))
    facts = {"kind": "cells", "grey": grey, "n": n, "size": size_word(radius, 0.07, 0.11),
             "clustered": clustered, "where": position_phrase(*centre), "nuclei": nuclei, "bright": bright}
    return np.clip(image, 0, 1).astype(np.float32), facts


def describe_cells(facts: dict, rng: np.random.Generator) -> str:
    how_many = count_word(facts["n"]) if facts["n"] <= 6 else pick(rng, ("many", "dozens of", "numerous"))
    noun = plural("cell", facts["n"])
    shade = "bright" if facts["bright"] else "dark"
    with_nuclei = " with dark nuclei" if facts["nuclei"] and facts["bright"] else (
        " with bright nuclei" if facts["nuclei"] else "")
    options = [f"microscopy image of {how_many} {facts['size']} round {noun}{with_nuclei}.",
               f"{how_many} {shade} {noun}{with_nuclei} under the microscope.",
               f"a field of {facts['size']} {shade} {noun}."]
    if facts["clustered"]:
        options.append(f"a cluster of {noun} {facts['where']} of a microscopy image.")
    return pick(rng, options)


def lines_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """Thin lines: a branching vessel-like tree from a point, or straight parallel stripes."""
    grey = bool(rng.random() < P_GREY)
    yy, xx = grid(size)
    image, base = _background(rng, size, grey)
    bright = bool(rng.random() < 0.4)
    if rng.random() < 0.6:
        origin = rng.uniform(-0.6, 0.6, 2)
        alpha = 0.9 * vessel_map(rng, size, origin, rng.uniform(0.1, 0.3))
        facts = {"pattern": "tree", "where": position_phrase(*origin)}
    else:
        angle = float(rng.choice([0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]))
        period = rng.uniform(0.15, 0.5)
        phase = np.cos(angle) * yy + np.sin(angle) * xx
        alpha = soft_inside(np.abs(((phase / period) % 1.0) - 0.5) / 0.12, 0.3)
        facts = {"pattern": "stripes", "orientation": ("horizontal", "diagonal", "vertical", "diagonal")[
            int(round(angle / (np.pi / 4))) % 4], "dense": period < 0.3}
    image = _paint(image, alpha, _object_colour(rng, base, grey, bright))
    return np.clip(image, 0, 1).astype(np.float32), {"kind": "lines", "grey": grey, "bright": bright, **facts}


def describe_lines(facts: dict, rng: np.random.Generator) -> str:
    shade = "bright" if facts["bright"] else "dark"
    if facts["pattern"] == "tree":
        return pick(rng, (f"thin {shade} branching lines spreading from a point {facts['where']}.",
                          f"a {shade} vessel-like tree branching out from {facts['where'].split(' ', 1)[1]}.",
                          f"{shade} curved lines that branch, like blood vessels."))
    spacing = "closely spaced" if facts["dense"] else "widely spaced"
    return pick(rng, (f"{spacing} {facts['orientation']} {shade} stripes.",
                      f"a pattern of {facts['orientation']} lines.",
                      f"parallel {shade} {facts['orientation']} bands."))


def texture_scene(rng: np.random.Generator, size: int) -> tuple[np.ndarray, dict]:
    """A texture only: smooth, mottled, grainy or a checkerboard."""
    grey = bool(rng.random() < P_GREY)
    yy, xx = grid(size)
    base = np.full(3, rng.uniform(0.2, 0.7)) if grey else rng.uniform(0.15, 0.75, 3)
    kind = pick(rng, ("smooth", "mottled", "grainy", "checkerboard"))
    if kind == "checkerboard":
        cells = int(rng.integers(2, 9))
        field = np.where((np.floor((yy + 1) * cells / 2) + np.floor((xx + 1) * cells / 2)) % 2 == 0, 0.6, -0.6)
    else:
        cells = {"smooth": 3, "mottled": 10, "grainy": size // 2}[kind]
        field = 0.35 * smooth_noise(rng, size, cells)
    image = np.clip(base[:, None, None] * (1.0 + field[None]), 0, 1).astype(np.float32)
    return image, {"kind": "texture", "grey": grey, "texture": kind}


def describe_texture(facts: dict, rng: np.random.Generator) -> str:
    kind = facts["texture"]
    words = {"smooth": ("a smooth, slowly varying background.", "a blurry surface without structure."),
             "mottled": ("a mottled, patchy texture.", "a blotchy pattern of light and dark patches."),
             "grainy": ("a fine grainy texture.", "a noisy, speckled surface."),
             "checkerboard": ("a checkerboard of light and dark squares.", "a chessboard pattern.")}
    return pick(rng, words[kind])
