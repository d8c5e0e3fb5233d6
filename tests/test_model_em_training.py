"""EM-CLIP trains for every T and both backprop modes; a bad batch never writes the EM bases."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emclip.data import get_dataset, make_dataloader
from emclip.engine import train
from emclip.models import create_model


def _loader(n=4, size=32):
    return make_dataloader(get_dataset("fundus", "domain1", "train", size=size, n=n, seed=0), n, shuffle=False)


@pytest.mark.parametrize("iters,backprop", [(1, "last"), (2, "last"), (3, "last"), (1, "none"), (3, "none")])
def test_training_steps_for_every_t(iters, backprop):
    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci", em={"iters": iters, "bases": 4, "backprop": backprop})
    before = model.em.mu.clone()
    result = train(model, "fundus", _loader(), None, steps=2, lr=1e-3, progress=False)
    assert len(result.history) == 2 and result.history["loss"].notna().all()
    assert not torch.equal(result.model.em.mu, before), "the trainer applies the moving average"


class _PoisonOnce(torch.utils.data.Dataset):
    """Fundus samples whose first image carries NaN pixels the first time it is read."""

    def __init__(self, base):
        self.base, self.poisoned = base, False

    def __len__(self):
        return len(self.base)

    def __getitem__(self, index):
        sample = dict(self.base[index])
        if index == 0 and not self.poisoned:
            self.poisoned = True
            sample["image"] = sample["image"].clone()
            sample["image"][:, 0, 0] = float("nan")
        return sample


def test_a_nan_batch_stops_training_without_writing_the_em_bases(monkeypatch):
    """The trainer runs the model on the batch; the model refuses NaN pixels, and even a
    non-finite loss (simulated below) leaves the buffer as it was, so the same model then
    trains on clean data."""
    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci", em={"bases": 4})
    before = model.em.mu.clone()
    with pytest.raises(ValueError, match="non-finite"):
        train(model, "fundus", make_dataloader(_PoisonOnce(_loader().dataset), 4, shuffle=False), None,
              steps=1, lr=1e-3, progress=False)
    torch.testing.assert_close(model.em.mu, before, rtol=0, atol=0)

    real_forward = model.forward

    def nan_logits(images):  # a finite input whose loss overflows (e.g. a too large lr)
        return real_forward(images) * float("nan")

    monkeypatch.setattr(model, "forward", nan_logits)
    with pytest.raises(RuntimeError, match="Non-finite loss"):
        train(model, "fundus", _loader(), None, steps=1, lr=1e-3, progress=False)
    torch.testing.assert_close(model.em.mu, before, rtol=0, atol=0)  # old code: the forward wrote it
    monkeypatch.undo()
    result = train(model, "fundus", _loader(), None, steps=2, lr=1e-3, progress=False)
    assert np.isfinite(result.history["loss"]).all() and torch.isfinite(result.model.em.mu).all()
