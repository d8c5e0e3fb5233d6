"""Fundus and cardiac scenes of the pretraining corpus, and the captions that describe them.

The anatomy comes from the kit's own renderers (:func:`emclip.data.synthetic_fundus.render_fundus`,
:func:`emclip.data.synthetic_cardiac.render_cardiac`), rendered *clean* (no camera or scanner
style: the style is drawn from the prior when the corpus is read, see
:mod:`emclip.clip.pretrain.corpus`) with an anatomy scale from the prior, at 1-1.5x the output
size and cropped at a random offset, so that the structures appear at many sizes and positions,
not only centred as in the benchmark's region-of-interest crops.

A caption is written from what the rendered scene contains: which structures are visible, their
size, position and relations, the modality. The label map that the renderer returns is used
only for this (area and centroid of each structure) and is then dropped: no pixel mask enters
pretraining. The structure names are the descriptions of the tasks' class prompts
(:mod:`emclip.tasks`), used the way web captions mention things: in varied sentences, often
next to other words, never as a fixed prompt. Design choices, not from the paper.
"""

from __future__ import annotations

import numpy as np

from emclip.clip.pretrain.words import (
    pick,
    position_phrase,
    region_facts,
    relation_phrase,
    size_word,
    with_article,
)
from emclip.data.styles import DomainStyle
from emclip.data.synthetic_cardiac import render_cardiac
from emclip.data.synthetic_fundus import render_fundus
from emclip.tasks import CARDIAC, FUNDUS

ZOOM = (1.0, 2.0)  # render at this multiple of the output size, then crop
P_OUT_OF_VIEW = 0.15  # crops that show little or none of the disc / heart: captions then say so
OUT_OF_VIEW_ZOOM = (2.5, 3.0)
P_RED_FREE = 0.15  # fundus scenes rendered grey ("red-free" photographs)
# size words: "small" below the first value, "large" above the second; about the corpus's tertiles
# (measured on 300 scenes of each task)
DISC_AREA = (0.12, 0.2)  # disc area / image area
CUP_RATIO = (0.45, 0.62)  # sqrt(cup area / disc area), about the cup-to-disc ratio
LV_AREA = (0.011, 0.023)  # LV blood pool area / image area
WALL_SHARE = (0.65, 0.77)  # myocardium / (myocardium + LV): thin, normal, thick wall
RV_TO_LV = (0.66, 1.5)  # RV area / LV area

_DISC, _CUP = (r.descriptions for r in FUNDUS.regions)
_LV, _MYO, _RV = (r.descriptions for r in CARDIAC.regions)


def clean_style(scale: float) -> DomainStyle:
    """A style that leaves the clean rendering as it is (only the anatomy ``scale`` is used)."""
    return DomainStyle("clean", gain=(1.0, 1.0, 1.0), offset=0.0, contrast=1.0, gamma=1.0, illumination=0.0,
                       illumination_angle=0.0, blur=0.0, resolution=1.0, noise="gaussian", noise_sigma=0.0,
                       fov=None, scale=float(scale))


def single_slice_params(rng: np.random.Generator, style: DomainStyle) -> dict:
    """Anatomy of one stand-alone short-axis slice, in the format of
    :func:`emclip.data.synthetic_cardiac.slice_params` (normalised coordinates, half-width = 1).

    The corpus needs single slices, not the benchmark's stacks: heart size, phase, position along
    the long axis, wall, RV and body are drawn per scene from the benchmark's ranges. The draws
    keep the order of the kit's single-slice model from before cardiac stacks existed, so the
    corpus that trained the ``synth-v1`` and the shipped ``synth-v2`` weights (``FORMAT_VERSION``
    3) renders bit for bit. Design choice, not from the paper.
    """
    position = rng.uniform(0.0, 1.0)  # 0 base .. 1 apex
    systole = rng.random() < 0.5
    r_lv = 0.17 * style.scale * rng.uniform(0.85, 1.15) * (1.0 - 0.55 * position) * (0.72 if systole else 1.0)
    wall = 0.075 * style.scale * rng.uniform(0.75, 1.3) * (1.35 if systole else 1.0)
    return {
        "position": position,
        "phase": "ES" if systole else "ED",
        "center": (float(rng.normal(0.05, 0.08)), float(rng.normal(0.12, 0.08))),
        "angle": rng.uniform(-0.55, 0.55),
        "r_lv": r_lv,
        "lv_aspect": rng.uniform(0.88, 1.12),
        "wall": wall,
        "rv_present": position < rng.uniform(0.7, 0.95),
        "rv_extent": rng.uniform(0.9, 1.25) * (1.0 - 0.6 * position),
        "body": (rng.uniform(0.72, 0.85), rng.uniform(0.92, 1.02)),
    }


def _render_slice(rng: np.random.Generator, size: int, style: DomainStyle):
    """One stand-alone synthetic short-axis slice (:func:`single_slice_params`), the benchmark's renderer."""
    return render_cardiac(rng, size, style, single_slice_params(rng, style))


def _render_cropped(renderer, rng: np.random.Generator, size: int, scale: float):
    """Render at a random zoom and crop: at a random offset, or (``P_OUT_OF_VIEW``) the corner
    crop of a wide view that shows the least of the labelled structures."""
    away = bool(rng.random() < P_OUT_OF_VIEW)
    big = int(round(size * rng.uniform(*(OUT_OF_VIEW_ZOOM if away else ZOOM))))
    image, mask = renderer(rng, big, clean_style(scale))
    if away:
        corners = [(0, 0), (0, big - size), (big - size, 0), (big - size, big - size)]
        y0, x0 = min(corners, key=lambda c: int((mask[c[0]:c[0] + size, c[1]:c[1] + size] > 0).sum()))
    else:
        y0, x0 = (int(v) for v in rng.integers(0, big - size + 1, size=2))
    return image[:, y0:y0 + size, x0:x0 + size], mask[y0:y0 + size, x0:x0 + size]


def fundus_scene(rng: np.random.Generator, size: int, scale: float) -> tuple[np.ndarray, dict]:
    """A clean optic-disc fundus crop (3, size, size) in [0, 1] (grey for red-free) and its facts."""
    image, mask = _render_cropped(render_fundus, rng, size, scale)
    red_free = bool(rng.random() < P_RED_FREE)
    if red_free:  # a green-channel ("red-free") photograph: vessels and disc stand out in grey
        image = np.repeat(image[1:2], 3, axis=0)
    disc, cup = region_facts(mask >= 1), region_facts(mask == 2)
    ratio = float(np.sqrt(cup["area"] / disc["area"])) if disc["area"] > 0 else 0.0
    return image, {"kind": "fundus", "grey": red_free, "disc": disc, "cup": cup, "cdr": ratio}


def cardiac_scene(rng: np.random.Generator, size: int, scale: float) -> tuple[np.ndarray, dict]:
    """A clean short-axis cardiac MRI crop (3 equal channels) and its facts."""
    image, mask = _render_cropped(_render_slice, rng, size, scale)
    lv, myo, rv = region_facts(mask == 1), region_facts(mask == 2), region_facts(mask == 3)
    wall = myo["area"] / max(lv["area"] + myo["area"], 1e-6)
    facts = {"kind": "cardiac", "grey": True, "lv": lv, "myo": myo, "rv": rv, "wall": float(wall)}
    return np.repeat(image, 3, axis=0), facts


def describe_fundus(facts: dict, rng: np.random.Generator) -> str:
    """One caption of a fundus scene (see the module docstring)."""
    disc = facts["disc"]
    if disc["area"] < 0.004:
        return pick(rng, ("a fundus photograph of the retina without the optic disc in view.",
                          "retinal background with blood vessels, no optic disc visible.",
                          "the retina away from the optic nerve head: vessels on a textured background."))
    dname, cname = pick(rng, _DISC), pick(rng, _CUP)
    dsize = size_word(disc["area"], *DISC_AREA)
    csize = size_word(facts["cdr"], *CUP_RATIO)
    where = position_phrase(disc["cy"], disc["cx"])
    photo = ("red-free fundus photograph" if facts["grey"] else
             pick(rng, ("fundus photograph", "colour fundus photo", "retinal image", "fundus image")))
    cdr = f"{facts['cdr']:.1f}"
    options = (
        f"{photo} showing a {dsize} {dname} {where}.",
        f"{photo}: the {dname} {where}, with a {csize} {cname}.",
        f"a {dsize} {dname} {where} of {with_article(photo)}, blood vessels leaving it.",
        f"{photo} of the {dname}; cup-to-disc ratio about {cdr}.",
        f"the {cname} is {csize} inside a {dsize} {dname}.",
        f"glaucoma screening {photo}: {csize} {cname}, {dname} {where}.",
        f"close-up of the {dname} {where} in {with_article(photo)}.",
        f"{where}, the {dname} is a bright {dsize} oval with {with_article(cname)} inside.",
        f"the {dname}, a bright {dsize} oval {where}, against the darker retina.",
        f"{photo}: a pale {csize} {cname} in the middle of the {dname}.",
    )
    return pick(rng, options)


def describe_cardiac(facts: dict, rng: np.random.Generator) -> str:
    """One caption of a cardiac scene (see the module docstring)."""
    lv, rv = facts["lv"], facts["rv"]
    scan = pick(rng, ("cardiac MRI", "short-axis cine MR image", "heart MRI slice", "cine MRI of the heart",
                      "short-axis cardiac magnetic resonance image"))
    if lv["area"] < 0.002:
        return pick(rng, (f"{scan} with the heart out of view.",
                          f"chest wall, lung and surrounding tissue in {with_article(scan)}, no {pick(rng, _LV)} in view.",
                          f"{scan} cropped away from the heart: only surrounding tissue."))
    lname, mname, rname = pick(rng, _LV), pick(rng, _MYO), pick(rng, _RV)
    lsize = size_word(lv["area"], *LV_AREA)
    wall = size_word(facts["wall"], *WALL_SHARE, ("thin", "normal", "thick"))
    where = position_phrase(lv["cy"], lv["cx"])
    if rv["area"] > 0:
        rsize = size_word(rv["area"] / max(lv["area"], 1e-6), *RV_TO_LV)
        right = f"the {rname}, a bright crescent {relation_phrase(rv, lv)} the {lname}"
        rv_options = (f"{scan}: {right}.", f"{scan} with a {rsize} {rname} and a {lsize} {lname}.",
                      f"{scan} showing the {lname}, the {mname} and the {rname}.")
    else:
        rv_options = (f"{scan} near the apex: a {lsize} {lname} and no {rname}.",
                      f"apical {scan}, only the {lname} and {mname} visible.")
    options = (
        *rv_options,
        f"{scan} showing a {lsize} {lname} {where}.",
        f"{scan}: a {lsize} {lname} surrounded by {wall} {mname}.",
        f"the {lname} {where} of {with_article(scan)}, {wall} wall.",
        f"{scan}, bright blood in the {lname} and a dark ring of {mname}.",
        f"the {lname}, a bright round blood pool {where} of {with_article(scan)}.",
        f"a dark ring of {mname} around the bright {lname}, {where}.",
    )
    return pick(rng, options)
