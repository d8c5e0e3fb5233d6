"""The checker of notebook 04's exercise accepts a right answer and explains wrong ones."""

from __future__ import annotations

import pytest
import torch

from emclip.exercises.em import check_em_iterations


def correct(x, mu, iters, lam):
    for _ in range(iters):
        z = torch.softmax(lam * torch.einsum("bcn,bck->bnk", x, mu), dim=2)
        mu = torch.einsum("bcn,bnk->bck", x, z / (1e-6 + z.sum(dim=1, keepdim=True)))
        mu = mu / (1e-6 + mu.norm(dim=1, keepdim=True))
    return mu, z


def softmax_over_n(x, mu, iters, lam):
    for _ in range(iters):
        z = torch.softmax(lam * torch.einsum("bcn,bck->bnk", x, mu), dim=1)
        mu = torch.nn.functional.normalize(torch.einsum("bcn,bnk->bck", x, z), dim=1)
    return mu, z


def no_l2(x, mu, iters, lam):
    for _ in range(iters):
        z = torch.softmax(lam * torch.einsum("bcn,bck->bnk", x, mu), dim=2)
        mu = torch.einsum("bcn,bnk->bck", x, z / (1e-6 + z.sum(dim=1, keepdim=True)))
    return mu, z


def test_checker_accepts_a_correct_solution(capsys):
    assert check_em_iterations(correct) is True
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong,match", [
    (softmax_over_n, "z differs"),
    (no_l2, "mu differs"),
    (lambda x, mu, iters, lam: mu, "return a pair"),
    (lambda x, mu, iters, lam: (mu, x), "shapes"),
])
def test_checker_rejects_wrong_solutions(wrong, match):
    with pytest.raises(AssertionError, match=match):
        check_em_iterations(wrong, verbose=False)
