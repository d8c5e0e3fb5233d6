"""The pretraining corpus: clean scenes with generated captions, styled from the prior when read.

:func:`build_corpus` renders ``n`` scenes offline (a mixture of the kinds in :data:`SCENE_MIX`:
both tasks' anatomy, generic shapes, cells, lines, textures, brain MRI and chest CT), each with
:data:`CAPTIONS_PER_IMAGE` captions written from the scene's content. It stores the *clean*
renderings as uint8 plus a grey flag per image. :class:`StyledCorpus` then draws a fresh style
from :mod:`emclip.data.style_prior` for every (image, epoch) when a batch is read, so one scene
is seen in many appearances; none of them lies within the hold-out distance of the eight
benchmark styles. Everything depends only on the seeds: the same seeds give the same pixels and
captions on every machine.

Design choices, not from the paper: the mixture, the caption count, styling on read instead of
once (more appearances per scene for the same storage), uint8 storage of the clean scenes.

Shapes: ``Corpus.images`` (N, 3, S, S) uint8; ``StyledCorpus.batch(indices, epoch)`` ->
(B, 3, S, S) float32 in [0, 1] and a list of B captions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from tqdm.auto import tqdm

from emclip.clip.pretrain import generic_scenes as gs
from emclip.clip.pretrain import organ_scenes as organs
from emclip.clip.pretrain import task_scenes as ts
from emclip.data.style_prior import PRIOR_RANGES, apply_style, sample_style
from emclip.errors import DataError
from emclip.fileio import atomic_write

#: scene kind -> (fraction of the corpus, scene(rng, size) -> (image, facts), describe(facts, rng) -> str)
SCENE_MIX = {
    "fundus": (0.30, lambda rng, size: ts.fundus_scene(rng, size, rng.uniform(*PRIOR_RANGES["scale"])),
               ts.describe_fundus),
    "cardiac": (0.30, lambda rng, size: ts.cardiac_scene(rng, size, rng.uniform(*PRIOR_RANGES["scale"])),
                ts.describe_cardiac),
    "shapes": (0.16, gs.shapes_scene, gs.describe_shapes),
    "cells": (0.06, gs.cells_scene, gs.describe_cells),
    "lines": (0.06, gs.lines_scene, gs.describe_lines),
    "texture": (0.02, gs.texture_scene, gs.describe_texture),
    "brain": (0.05, organs.brain_scene, organs.describe_brain),
    "chest": (0.05, organs.chest_scene, organs.describe_chest),
}
CAPTIONS_PER_IMAGE = 4
FORMAT_VERSION = 3


@dataclass
class Corpus:
    """Clean scenes and their captions.

    Attributes:
        images: (N, 3, S, S) uint8 clean renderings (no style yet).
        grey: (N,) bool, True for grey scenes (MRI, CT, red-free fundus, grey generic scenes).
        kinds: N scene kinds (keys of :data:`SCENE_MIX`).
        captions: N lists of :data:`CAPTIONS_PER_IMAGE` captions.
        seed, size: what built it.
    """

    images: np.ndarray
    grey: np.ndarray
    kinds: list[str]
    captions: list[list[str]]
    seed: int
    size: int

    def __len__(self) -> int:
        return len(self.kinds)

    def scene(self, index: int) -> tuple[np.ndarray, bool, str, list[str]]:
        """Scene ``index``: clean uint8 image (3, S, S), grey flag, kind, captions."""
        return self.images[index], bool(self.grey[index]), self.kinds[index], self.captions[index]

    def fingerprint(self) -> str:
        """sha256 of the pixels and captions (16 hex characters): identifies the corpus in records."""
        digest = hashlib.sha256(self.images.tobytes())
        digest.update(json.dumps([self.kinds, self.captions]).encode())
        return digest.hexdigest()[:16]

    def save(self, path) -> Path:
        """Write ``path`` (.npz, atomically)."""
        meta = {"format": FORMAT_VERSION, "seed": self.seed, "size": self.size, "kinds": self.kinds,
                "captions": self.captions}
        with atomic_write(path) as tmp:
            np.savez(tmp, images=self.images, grey=self.grey, meta=np.array(json.dumps(meta)))
        return Path(path)

    @classmethod
    def load(cls, path) -> Corpus:
        """Read a corpus written by :meth:`save`."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"Corpus file {path} does not exist; build it with build_corpus(...).save(path) "
                            "or `emclip pretrain --corpus-cache DIR`.")
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                images, grey = data["images"], data["grey"]
        except (OSError, ValueError, KeyError) as err:
            raise DataError(f"Corpus file {path} is unreadable ({err}); delete it and build it again.") from err
        if meta.get("format") != FORMAT_VERSION:
            raise DataError(f"Corpus file {path} has format {meta.get('format')}, expected {FORMAT_VERSION}; "
                            "delete it and build it again.")
        return cls(images, grey, meta["kinds"], meta["captions"], int(meta["seed"]), int(meta["size"]))


def scene_rng(seed: int, index: int) -> np.random.Generator:
    """The numpy Generator of scene ``index`` of the corpus with ``seed``."""
    return np.random.default_rng([int(seed), int(index), 0x5CE7E])


def render_scene(seed: int, index: int, size: int) -> tuple[np.ndarray, bool, str, list[str]]:
    """Scene ``index``: (clean image (3, size, size) float32, grey, kind, captions)."""
    rng = scene_rng(seed, index)
    kinds = list(SCENE_MIX)
    weights = np.array([SCENE_MIX[k][0] for k in kinds])
    kind = kinds[int(rng.choice(len(kinds), p=weights / weights.sum()))]
    _, scene, describe = SCENE_MIX[kind]
    image, facts = scene(rng, size)
    captions = [describe(facts, rng) for _ in range(CAPTIONS_PER_IMAGE)]
    return image, bool(facts["grey"]), kind, captions


def build_corpus(n: int, size: int = 64, seed: int = 0, progress: bool = True) -> Corpus:
    """Render ``n`` scenes of side ``size`` (see the module docstring)."""
    if int(n) < 1 or int(size) < 16:
        raise DataError(f"build_corpus needs n >= 1 and size >= 16, got n={n}, size={size}.")
    images = np.empty((int(n), 3, int(size), int(size)), dtype=np.uint8)
    grey = np.empty(int(n), dtype=bool)
    kinds, captions = [], []
    with threadpool_limits(1, "blas"):  # small matrix products: threads only contend (3x slower on 2 cores)
        for index in tqdm(range(int(n)), desc="render corpus", disable=not progress, mininterval=2.0):
            image, grey[index], kind, caps = render_scene(seed, index, size)
            images[index] = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
            kinds.append(kind)
            captions.append(caps)
    return Corpus(images, grey, kinds, captions, int(seed), int(size))


class LazyCorpus:
    """The same scenes as ``build_corpus(n, size, seed)``, rendered only when read (a few batches'
    worth, e.g. to re-run the first steps of a recipe without rendering the whole corpus)."""

    def __init__(self, n: int, size: int = 64, seed: int = 0):
        self.n, self.size, self.seed = int(n), int(size), int(seed)
        self._scenes: dict[int, tuple] = {}

    def __len__(self) -> int:
        return self.n

    def scene(self, index: int) -> tuple[np.ndarray, bool, str, list[str]]:
        if not 0 <= int(index) < self.n:
            raise IndexError(f"scene {index} out of range for a corpus of {self.n}")
        if index not in self._scenes:
            with threadpool_limits(1, "blas"):
                image, grey, kind, captions = render_scene(self.seed, int(index), self.size)
            self._scenes[index] = (np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), grey, kind, captions)
        return self._scenes[index]

    def fingerprint(self) -> str:
        return f"lazy-n{self.n}-s{self.size}-seed{self.seed}"


def cached_corpus(n: int, size: int, seed: int, cache_dir=None, progress: bool = True) -> Corpus:
    """:func:`build_corpus`, read from / written to ``cache_dir`` when given."""
    if cache_dir is None:
        return build_corpus(n, size, seed, progress)
    path = Path(cache_dir) / f"corpus_v{FORMAT_VERSION}_n{n}_s{size}_seed{seed}.npz"
    if path.is_file():
        return Corpus.load(path)
    corpus = build_corpus(n, size, seed, progress)
    corpus.save(path)
    return corpus


class StyledCorpus:
    """Reads batches of a :class:`Corpus` with a prior style per (image, epoch) and one caption.

    ``batch(indices, epoch)`` depends only on ``(style_seed, epoch, indices)``: the style and
    the caption of image ``i`` in ``epoch`` come from ``default_rng([style_seed, epoch, i])``.
    ``fixed_style=True`` ignores the epoch (one appearance per image: held-out evaluation pairs).
    """

    def __init__(self, corpus: Corpus | LazyCorpus, style_seed: int = 0, fixed_style: bool = False):
        self.corpus, self.style_seed, self.fixed_style = corpus, int(style_seed), bool(fixed_style)

    def __len__(self) -> int:
        return len(self.corpus)

    def item(self, index: int, epoch: int = 0) -> tuple[np.ndarray, str]:
        """Styled image (3, S, S) float32 in [0, 1] and its caption for ``epoch``."""
        rng = np.random.default_rng([self.style_seed, 0 if self.fixed_style else int(epoch), int(index)])
        image, grey, kind, captions = self.corpus.scene(int(index))
        clean = image.astype(np.float32) / 255.0
        mri = grey and kind != "fundus"  # red-free fundus keeps the camera's vignetting
        styled = apply_style(clean[:1] if grey else clean, sample_style(rng, grey=grey), rng, mri=mri)
        caption = captions[int(rng.integers(len(captions)))]
        return (np.repeat(styled, 3, axis=0) if grey else styled), caption

    def batch(self, indices, epoch: int = 0) -> tuple[torch.Tensor, list[str]]:
        """(B, 3, S, S) float32 images in [0, 1] and B captions."""
        with threadpool_limits(1, "blas"):
            items = [self.item(int(i), epoch) for i in indices]
        return torch.from_numpy(np.stack([im for im, _ in items])), [c for _, c in items]
