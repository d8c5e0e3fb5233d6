"""The checkers of notebook 03's exercises accept right answers and explain wrong ones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emclip.exercises.clip import check_prompt_ensemble, check_similarity_map


def test_prompt_ensemble_checker():
    assert check_prompt_ensemble(
        lambda per: torch.stack([F.normalize(F.normalize(e, dim=1).mean(0), dim=0) for e in per]), verbose=False)
    with pytest.raises(AssertionError, match="normalise each sentence"):
        check_prompt_ensemble(lambda per: torch.stack([F.normalize(e.mean(0), dim=0) for e in per]), verbose=False)
    with pytest.raises(AssertionError, match="renormalise"):
        check_prompt_ensemble(lambda per: torch.stack([F.normalize(e, dim=1).mean(0) for e in per]), verbose=False)


def test_similarity_map_checker():
    good = lambda d, t: torch.einsum("bdhw,kd->bkhw", F.normalize(d, dim=1), F.normalize(t, dim=1))  # noqa: E731
    assert check_similarity_map(good, verbose=False)
    with pytest.raises(AssertionError, match="L2-normalise"):
        check_similarity_map(lambda d, t: torch.einsum("bdhw,kd->bkhw", d, t), verbose=False)
