"""A broad prior over rendering styles that keeps away from the eight benchmark styles.

The synthetic benchmark has eight domain styles (fundus ``domain1``..``domain4``, cardiac
``A``..``D``; :mod:`emclip.data.styles`). Pretraining data and the style-randomised U-Net
(BigAug-style augmentation, Zhang et al., IEEE TMI 2020) draw their appearance from this
*prior* instead: colour cast, brightness, contrast, gamma, illumination / bias field, blur,
acquisition resolution, noise model and level, camera aperture and anatomy scale are sampled
independently over ranges that contain all eight benchmark styles and more.

The benchmark styles are **held out by construction**: every style :func:`sample_style` returns
lies at least :data:`HELD_OUT_DISTANCE` from each of the eight in the normalised style space of
:func:`style_vector` (rejection sampling). That space has one coordinate per continuous
appearance parameter, each scaled so that its prior range maps to [0, 1] (gamma on a log scale):
``gain_r, gain_g, gain_b, offset, contrast, log gamma, illumination, blur, resolution,
noise_sigma``. The distance is the root-mean-square coordinate difference, so 0 means the same
style and a uniform draw lies on average about 0.4 from a fixed style. Categorical or nuisance
parameters (noise model, aperture present or not, illumination direction) and the content
parameter ``scale`` do not count towards the distance, which makes the hold-out stricter: a
sample may not come close to a benchmark style in appearance even if it differs in those.

Design choices, not from the paper: the ranges (:data:`PRIOR_RANGES`), the uniform sampling,
the distance and its threshold. :data:`HELD_OUT_DISTANCE` = 0.2 is larger than the distance
between the two closest benchmark styles of different tasks (``domain2`` and ``C``, 0.14) and
a little below the closest pair within a task (``domain1``/``domain4`` 0.24, ``A``/``B`` 0.22);
it rejects about 5 % of uniform draws.

Shapes: :func:`apply_style` takes a (C, H, W) float32 array in [0, 1] (C = 3, or 1 for grey
MRI) and returns the same shape; :func:`style_augment` takes and returns a (B, 3, H, W) tensor.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch

from emclip.data import render
from emclip.data.styles import STYLES, DomainStyle
from emclip.errors import ConfigError, InputError

#: (low, high) of each sampled parameter. ``gamma`` is drawn log-uniformly.
PRIOR_RANGES: dict[str, tuple[float, float]] = {
    "gain": (0.35, 1.30),
    "offset": (-0.12, 0.18),
    "contrast": (0.50, 1.60),
    "gamma": (0.55, 1.75),
    "illumination": (0.0, 0.80),
    "blur": (0.0, 2.2),
    "resolution": (1.0, 2.6),
    "noise_sigma": (0.0, 0.10),
    "fov": (0.75, 1.15),
    "scale": (0.75, 1.25),
}
#: the coordinates of the normalised style space, in order
STYLE_AXES = ("gain_r", "gain_g", "gain_b", "offset", "contrast", "log_gamma", "illumination", "blur",
              "resolution", "noise_sigma")
#: minimum RMS distance in the normalised style space from every benchmark style
HELD_OUT_DISTANCE = 0.2
#: probability of a visible circular aperture (colour images) and of Rician noise (grey / colour)
P_APERTURE, P_RICIAN_GREY, P_RICIAN_COLOUR = 0.5, 0.7, 0.2


@cache
def _bounds() -> tuple[np.ndarray, np.ndarray]:
    lo, hi = [], []
    for axis in STYLE_AXES:
        key = "gain" if axis.startswith("gain") else "gamma" if axis == "log_gamma" else axis
        a, b = PRIOR_RANGES[key]
        if axis == "log_gamma":
            a, b = math.log(a), math.log(b)
        lo.append(a)
        hi.append(b)
    return np.array(lo), np.array(hi)


def style_vector(style: DomainStyle) -> np.ndarray:
    """The (10,) normalised coordinates of ``style`` (:data:`STYLE_AXES`; prior range -> [0, 1])."""
    raw = np.array([*style.gain, style.offset, style.contrast, math.log(style.gamma), style.illumination,
                    style.blur, style.resolution, style.noise_sigma], dtype=np.float64)
    lo, hi = _bounds()
    return (raw - lo) / (hi - lo)


def benchmark_styles() -> dict[str, DomainStyle]:
    """The eight held-out styles, keyed ``"fundus/domain1"`` ... ``"cardiac/D"``."""
    return {f"{task}/{domain}": style for task, table in STYLES.items() for domain, style in table.items()}


def style_distance(a: DomainStyle, b: DomainStyle) -> float:
    """Root-mean-square difference of the normalised coordinates of two styles."""
    return float(np.sqrt(np.mean((style_vector(a) - style_vector(b)) ** 2)))


@cache
def _benchmark_matrix() -> np.ndarray:
    """(8, 10) normalised coordinates of the benchmark styles."""
    return np.stack([style_vector(style) for style in benchmark_styles().values()])


def held_out_distance(style: DomainStyle) -> float:
    """Distance from ``style`` to the nearest of the eight benchmark styles."""
    return float(np.sqrt(np.mean((_benchmark_matrix() - style_vector(style)) ** 2, axis=1)).min())


def _draw(rng: np.random.Generator, grey: bool) -> DomainStyle:
    def uniform(key: str) -> float:
        return float(rng.uniform(*PRIOR_RANGES[key]))

    gain = (uniform("gain"),) * 3 if grey else (uniform("gain"), uniform("gain"), uniform("gain"))
    lo, hi = (math.log(v) for v in PRIOR_RANGES["gamma"])
    rician = rng.random() < (P_RICIAN_GREY if grey else P_RICIAN_COLOUR)
    aperture = (not grey) and rng.random() < P_APERTURE
    return DomainStyle(
        name="prior sample", gain=gain, offset=uniform("offset"), contrast=uniform("contrast"),
        gamma=float(math.exp(rng.uniform(lo, hi))), illumination=uniform("illumination"),
        illumination_angle=float(rng.uniform(0.0, 360.0)), blur=uniform("blur"), resolution=uniform("resolution"),
        noise="rician" if rician else "gaussian", noise_sigma=uniform("noise_sigma"),
        fov=uniform("fov") if aperture else None, scale=uniform("scale"),
    )


def sample_style(rng: np.random.Generator, grey: bool = False, min_distance: float = HELD_OUT_DISTANCE,
                 max_tries: int = 10_000) -> DomainStyle:
    """One style from the prior, at least ``min_distance`` from every benchmark style.

    Args:
        rng: numpy Generator (the only source of randomness: same state, same style).
        grey: equal gains on the three channels (MRI-like grey images), no aperture, Rician
            noise more often; otherwise independent per-channel gains (colour casts).
        min_distance: the hold-out radius; the default :data:`HELD_OUT_DISTANCE` is the stated one.
        max_tries: rejection-sampling budget.

    Returns:
        a :class:`~emclip.data.styles.DomainStyle` named ``"prior sample"``.
    """
    if not 0.0 <= float(min_distance) < 0.5:
        raise ConfigError(f"min_distance={min_distance!r} is out of range: use 0 <= min_distance < 0.5 "
                          f"(the stated hold-out radius is {HELD_OUT_DISTANCE}).")
    for _ in range(int(max_tries)):
        style = _draw(rng, grey)
        if held_out_distance(style) >= min_distance:
            return style
    raise ConfigError(f"No style at distance >= {min_distance} from the benchmark styles in {max_tries} draws; "
                      "lower min_distance or raise max_tries.")


def apply_style(image: np.ndarray, style: DomainStyle, rng: np.random.Generator, mri: bool | None = None) -> np.ndarray:
    """Render ``style`` onto ``image`` (illumination, resolution / blur, colour, contrast, gamma,
    noise, aperture; :func:`emclip.data.render.apply_style`).

    Args:
        image: (C, H, W) float32 in [0, 1]; C = 3 (colour) or 1 (grey).
        style: e.g. from :func:`sample_style`.
        rng: numpy Generator for the per-image randomness (noise, bias field, aperture centre).
        mri: MRI-type bias field instead of fundus vignetting; ``None``: True for grey images
            (one channel, or three equal channels).

    Returns:
        (C, H, W) float32 in [0, 1].
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3 or image.shape[0] not in (1, 3):
        raise InputError(f"apply_style needs a (C, H, W) image with C = 1 or 3, got shape {image.shape}; "
                         "pass one image, not a batch (use style_augment for batches).")
    if not np.isfinite(image).all():
        raise InputError("apply_style got an image with NaN or inf values; clean the image first.")
    grey = image.shape[0] == 1 or bool(np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2]))
    out = render.apply_style(np.clip(image, 0.0, 1.0), style, rng, mri=grey if mri is None else bool(mri))
    if grey and image.shape[0] == 3:
        out = np.repeat(out[:1], 3, axis=0)  # grey stays grey (gains of a grey style are equal anyway)
    return out


def style_augment(images: torch.Tensor, generator: torch.Generator, min_distance: float = HELD_OUT_DISTANCE) -> torch.Tensor:
    """BigAug-style appearance randomisation of a batch: a fresh prior style for every image.

    Grey images (three equal channels) get grey styles with an MRI bias field, colour images
    colour styles with fundus-type vignetting and, half the time, an aperture. Geometry is not
    changed, so masks stay aligned. Deterministic given the generator's state.

    Args:
        images: (B, 3, H, W) float tensor in [0, 1] (on any device; the work runs on the CPU).
        generator: a CPU ``torch.Generator``; one 63-bit seed per image is drawn from it.

    Returns:
        (B, 3, H, W) tensor of the input's dtype and device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"style_augment needs images of shape (B, 3, H, W), got {tuple(images.shape)}.")
    seeds = torch.randint(0, 2**63 - 1, (images.shape[0],), generator=generator).tolist()
    source = images.detach().float().cpu().numpy()
    out = np.empty_like(source)
    for index, (image, seed) in enumerate(zip(source, seeds)):
        rng = np.random.default_rng(int(seed))
        grey = bool(np.array_equal(image[0], image[1]) and np.array_equal(image[1], image[2]))
        out[index] = apply_style(image, sample_style(rng, grey=grey, min_distance=min_distance), rng, mri=grey)
    return torch.from_numpy(out).to(device=images.device, dtype=images.dtype)
