"""Per-domain "centre / vendor" styles of the synthetic data, as data.

Each domain of a task is one :class:`DomainStyle`: the appearance of its camera or scanner
(colour cast or intensity scale, contrast, gamma, illumination / MRI bias field, blur and
resolution, noise model, fundus field of view) plus a small content prior (structure scale).
:func:`style_table` turns the table into a pandas DataFrame for notebook 01.

The values are a design choice, not from the paper: they are picked so that the four domains
look like the Fundus-DG centres (Drishti-GS bright and sharp, RIM-ONE-r3 dim and blurred,
REFUGE Zeiss dark with strong vignetting, REFUGE Canon washed-out and noisy) and the M&Ms
vendors (different intensity scales, bias fields, resolution and noise), and so that a
segmenter fitted on one domain measurably loses Dice on the others (see
:mod:`emclip.data.shift`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass(frozen=True)
class DomainStyle:
    """Appearance of one domain. All images are rendered in [0, 1] before the style applies.

    Attributes:
        name: short description of the centre / vendor it imitates.
        gain: per-channel multiplicative colour cast (R, G, B); grey MRI uses ``gain[0]``.
        offset: additive brightness offset.
        contrast: contrast around the image mean (1 = unchanged).
        gamma: output = input ** gamma (gamma > 1 darkens mid-tones).
        illumination: strength of the smooth multiplicative field (fundus: radial vignetting
            plus a linear gradient; MRI: a low-order coil bias field), 0 = none.
        illumination_angle: direction of the linear illumination gradient, degrees.
        blur: Gaussian blur sigma in pixels at 128 px (scaled with image size).
        resolution: acquisition resolution factor; the image is down-sampled by it and
            up-sampled back (1 = full resolution).
        noise: ``"gaussian"`` or ``"rician"`` (MRI magnitude images).
        noise_sigma: noise standard deviation (image units).
        fov: radius of the circular camera field of view relative to the half-diagonal of the
            ROI (fundus only; ``None`` = no aperture visible).
        scale: mean size of the anatomy relative to the task default (content shift).
    """

    name: str
    gain: tuple[float, float, float]
    offset: float
    contrast: float
    gamma: float
    illumination: float
    illumination_angle: float
    blur: float
    resolution: float
    noise: str
    noise_sigma: float
    fov: float | None
    scale: float

    def as_row(self) -> dict:
        row = dataclasses.asdict(self)
        row["gain"] = "/".join(f"{g:.2f}" for g in self.gain)
        return row


FUNDUS_STYLES: dict[str, DomainStyle] = {
    "domain1": DomainStyle("Drishti-GS-like: bright, warm, sharp", gain=(1.10, 0.95, 0.80), offset=0.04,
                           contrast=1.25, gamma=0.85, illumination=0.15, illumination_angle=0.0, blur=0.0,
                           resolution=1.0, noise="gaussian", noise_sigma=0.01, fov=None, scale=1.15),
    "domain2": DomainStyle("RIM-ONE-r3-like: dim, greenish, blurred, low resolution", gain=(0.70, 0.95, 0.80),
                           offset=-0.02, contrast=0.85, gamma=1.15, illumination=0.35, illumination_angle=60.0,
                           blur=1.6, resolution=2.0, noise="gaussian", noise_sigma=0.02, fov=1.02, scale=0.95),
    "domain3": DomainStyle("REFUGE Zeiss-like: dark red, strong vignetting", gain=(0.95, 0.55, 0.40),
                           offset=-0.06, contrast=1.10, gamma=1.40, illumination=0.60, illumination_angle=200.0,
                           blur=0.6, resolution=1.0, noise="gaussian", noise_sigma=0.015, fov=0.85, scale=0.80),
    "domain4": DomainStyle("REFUGE Canon-like: yellow, washed out, noisy", gain=(1.05, 1.00, 0.65),
                           offset=0.12, contrast=0.65, gamma=0.75, illumination=0.20, illumination_angle=300.0,
                           blur=0.3, resolution=1.0, noise="gaussian", noise_sigma=0.045, fov=None, scale=0.90),
}

CARDIAC_STYLES: dict[str, DomainStyle] = {
    "A": DomainStyle("Siemens-like: mid contrast, mild bias field", gain=(1.0, 1.0, 1.0), offset=0.0,
                     contrast=1.0, gamma=1.0, illumination=0.25, illumination_angle=30.0, blur=0.3,
                     resolution=1.0, noise="rician", noise_sigma=0.03, fov=None, scale=1.0),
    "B": DomainStyle("Philips-like: bright, high contrast, strong bias field", gain=(1.15, 1.15, 1.15),
                     offset=0.0, contrast=1.35, gamma=0.85, illumination=0.65, illumination_angle=150.0,
                     blur=0.0, resolution=1.0, noise="rician", noise_sigma=0.02, fov=None, scale=1.1),
    "C": DomainStyle("GE-like: dark, low contrast, blurred, low resolution", gain=(0.70, 0.70, 0.70),
                     offset=0.0, contrast=0.75, gamma=1.35, illumination=0.35, illumination_angle=260.0,
                     blur=1.2, resolution=1.8, noise="rician", noise_sigma=0.04, fov=None, scale=0.9),
    "D": DomainStyle("Canon-like: noisy, flat, gamma-lifted", gain=(0.95, 0.95, 0.95), offset=0.06,
                     contrast=0.85, gamma=0.65, illumination=0.15, illumination_angle=330.0, blur=0.5,
                     resolution=1.3, noise="rician", noise_sigma=0.08, fov=None, scale=0.95),
}

STYLES: dict[str, dict[str, DomainStyle]] = {"fundus": FUNDUS_STYLES, "cardiac": CARDIAC_STYLES}


def get_style(task: str, domain: str) -> DomainStyle:
    """The style of ``domain`` for ``task`` (ValueError listing the valid names otherwise)."""
    if task not in STYLES:
        raise ValueError(f"Unknown task {task!r}. Valid tasks: {', '.join(STYLES)}.")
    table = STYLES[task]
    if domain not in table:
        raise ValueError(f"Unknown domain {domain!r} for task {task!r}. Valid domains: {', '.join(table)}.")
    return table[domain]


def style_table(task: str):
    """The style table of ``task`` as a pandas DataFrame, one row per domain."""
    import pandas as pd

    get_style(task, next(iter(STYLES.get(task, {"": None}))))  # validates the task name
    rows = {domain: style.as_row() for domain, style in STYLES[task].items()}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "domain"
    return frame
