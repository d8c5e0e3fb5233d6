"""Words for generated captions: where a region is, how large it is, how many there are.

Every helper turns a measured fact of a rendered scene into the words a person would use in a
caption. Coordinates are normalised: ``y`` and ``x`` in [-1, 1], ``-1`` = top / left edge.
Design choices, not from the paper: the thresholds (thirds of the image for positions) and the
vocabulary.
"""

from __future__ import annotations

import numpy as np

NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def region_facts(mask: np.ndarray) -> dict:
    """Area fraction and centroid of a boolean mask (H, W): ``{"area", "cy", "cx"}`` (centroid
    in [-1, 1]; ``0, 0`` when the mask is empty)."""
    mask = np.asarray(mask, dtype=bool)
    area = float(mask.mean())
    if not mask.any():
        return {"area": 0.0, "cy": 0.0, "cx": 0.0}
    h, w = mask.shape
    ys, xs = np.nonzero(mask)
    return {"area": area, "cy": float(2 * (ys.mean() + 0.5) / h - 1), "cx": float(2 * (xs.mean() + 0.5) / w - 1)}


#: the place phrases of captions -> (vertical band, horizontal band): -1 top / left, 0 middle,
#: 1 bottom / right (the one table :func:`position_phrase` writes from and :func:`caption_position` reads)
POSITION_BANDS = {
    "in the upper left": (-1, -1), "in the upper right": (-1, 1), "in the lower left": (1, -1),
    "in the lower right": (1, 1), "at the top": (-1, 0), "at the bottom": (1, 0), "on the left": (0, -1),
    "on the right": (0, 1), "in the centre": (0, 0),
}
_PHRASE_OF_BANDS = {bands: phrase for phrase, bands in POSITION_BANDS.items()}


def band_of(value, third: float = 0.3):
    """-1 below ``-third``, 1 above ``third``, else 0 (a normalised coordinate's third of the image;
    element-wise for arrays)."""
    return np.where(np.asarray(value) < -third, -1, np.where(np.asarray(value) > third, 1, 0))


def position_phrase(cy: float, cx: float, third: float = 0.3) -> str:
    """``"in the upper left"``, ``"at the top"``, ``"in the centre"``, ``"on the right"``, ... ."""
    return _PHRASE_OF_BANDS[(int(band_of(cy, third)), int(band_of(cx, third)))]


def caption_position(caption: str) -> tuple[int, int] | None:
    """The (vertical, horizontal) band a caption names with a :func:`position_phrase`, or None when
    it names none or more than one (then the words do not say which thing sits where)."""
    found = [bands for phrase, bands in POSITION_BANDS.items() for _ in range(caption.count(phrase))]
    return found[0] if len(found) == 1 else None


def band_mask(bands: tuple[int, int], h: int, w: int, third: float = 0.3) -> np.ndarray:
    """(h, w) bool: the grid cells whose centres lie in the named bands, with :func:`position_phrase`'s
    thresholds (:func:`band_of` of the normalised cell centres)."""
    def centres(n: int) -> np.ndarray:
        return 2 * (np.arange(n) + 0.5) / n - 1

    return (band_of(centres(h), third) == bands[0])[:, None] & (band_of(centres(w), third) == bands[1])[None, :]


def relation_phrase(a: dict, b: dict) -> str:
    """Where region ``a`` lies relative to ``b`` (both with ``cy``, ``cx``): the dominant axis."""
    dy, dx = a["cy"] - b["cy"], a["cx"] - b["cx"]
    if abs(dx) >= abs(dy):
        return "to the left of" if dx < 0 else "to the right of"
    return "above" if dy < 0 else "below"


def size_word(value: float, small: float, large: float, words=("small", "medium-sized", "large")) -> str:
    """``words[0]`` below ``small``, ``words[2]`` above ``large``, else ``words[1]``."""
    return words[0] if value < small else words[2] if value > large else words[1]


def count_word(n: int) -> str:
    """``"one"`` .. ``"ten"``, then ``"many"``."""
    return NUMBER_WORDS[n] if 0 <= n < len(NUMBER_WORDS) else "many"


def plural(noun: str, n: int) -> str:
    """English plural for the nouns of the captions (``"box"`` -> ``"boxes"``)."""
    if n == 1:
        return noun
    if noun.endswith(("s", "x", "sh", "ch")):
        return noun + "es"
    if noun.endswith("y") and noun[-2:-1] not in "aeiou":
        return noun[:-1] + "ies"
    return noun + "s"


def with_article(phrase: str) -> str:
    """``"oval"`` -> ``"an oval"``, ``"circle"`` -> ``"a circle"`` (by the first letter)."""
    return ("an " if phrase[:1].lower() in "aeiou" else "a ") + phrase


def pick(rng: np.random.Generator, options):
    """One element of ``options`` (a sequence), chosen with ``rng``."""
    return options[int(rng.integers(len(options)))]


def join_words(items: list[str]) -> str:
    """``["a", "b", "c"]`` -> ``"a, b and c"``."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
