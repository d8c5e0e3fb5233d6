"""Checkers for notebook 03's exercises: prompt ensembling and pixel-text similarity maps.

- ``check_prompt_ensemble(student_fn)``: ``student_fn(per_class)`` takes a list (one entry per
  class) of text embeddings (P_c, D), as ``encode_text`` returns them (not normalised), and returns
  the ensembled class embeddings (num_classes, D). Compared with :func:`emclip.clip.ensemble` after
  normalising each sentence embedding.
- ``check_similarity_map(student_fn)``: ``student_fn(dense, text)`` with dense (B, D, h, w) and
  text (K, D) returns cosine similarities (B, K, h, w); compared with
  :func:`emclip.clip.pixel_text_similarity`.

Both raise an ``AssertionError`` naming the failing case and the usual mistake.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emclip.clip.text import ensemble, pixel_text_similarity

__all__ = ["check_prompt_ensemble", "check_similarity_map"]


def _diagnose_ensemble(got: torch.Tensor, per_class: list[torch.Tensor]) -> str:
    raw_mean = torch.stack([e.mean(dim=0) for e in per_class])
    if torch.allclose(got, F.normalize(raw_mean, dim=-1), atol=1e-4):
        return "You averaged the raw embeddings: L2-normalise each sentence embedding before averaging."
    if torch.allclose(F.normalize(got, dim=-1), ensemble(per_class), atol=1e-4):
        return "The direction is right but the result is not unit length: renormalise the class means."
    return "Normalise each sentence embedding, average per class, then normalise the mean again."


def check_prompt_ensemble(student_fn, atol: float = 1e-4, seed: int = 0, verbose: bool = True) -> bool:
    """True when ``student_fn(per_class) -> (num_classes, D)`` ensembles prompts like CLIP; else AssertionError."""
    g = torch.Generator().manual_seed(seed)
    for index, (sizes, dim) in enumerate((((3, 5), 8), ((1, 4, 6), 16))):
        per_class = [torch.randn(p, dim, generator=g) * torch.rand(p, 1, generator=g).add(0.2) * 5 for p in sizes]
        case = f"case {index} ({len(sizes)} classes, prompts per class {sizes}, D={dim})"
        got = torch.as_tensor(student_fn([e.clone() for e in per_class])).detach().float()
        ref = ensemble(per_class)
        if got.shape != ref.shape:
            raise AssertionError(f"{case}: got shape {tuple(got.shape)}, expected {tuple(ref.shape)} (classes, D).")
        if float((got - ref).abs().max()) > atol:
            raise AssertionError(f"{case}: {_diagnose_ensemble(got, per_class)}")
    if verbose:
        print("Correct: your prompt ensembling matches CLIP's recipe.")
    return True


def check_similarity_map(student_fn, atol: float = 1e-4, seed: int = 0, verbose: bool = True) -> bool:
    """True when ``student_fn(dense, text) -> (B, K, h, w)`` gives cosine similarities; else AssertionError."""
    g = torch.Generator().manual_seed(seed)
    for index, (b, d, h, w, k) in enumerate(((1, 4, 3, 3, 2), (2, 8, 4, 5, 3))):
        dense, text = torch.randn(b, d, h, w, generator=g) * 3, torch.randn(k, d, generator=g) * 2
        case = f"case {index} (dense {(b, d, h, w)}, text {(k, d)})"
        got = torch.as_tensor(student_fn(dense.clone(), text.clone())).detach().float()
        ref = pixel_text_similarity(dense, text)
        if got.shape != ref.shape:
            raise AssertionError(f"{case}: got shape {tuple(got.shape)}, expected {tuple(ref.shape)} (B, K, h, w).")
        if float((got - ref).abs().max()) > atol:
            hint = ("Values outside [-1, 1]: L2-normalise both the pixel embeddings (over D, dim=1) and the "
                    "text embeddings (over D) before the dot product."
                    if float(got.abs().max()) > 1 + 1e-4 else
                    "Check which dimension you normalise (D is dim 1 of dense) and the einsum 'bdhw,kd->bkhw'.")
            raise AssertionError(f"{case}: differs from the reference. {hint}")
    if verbose:
        print("Correct: your similarity maps are cosine similarities of pixels and prompts.")
    return True
