"""The one inference path: eval + inference mode + one precision, mode restored; used everywhere."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from emclip.data import get_dataset, make_dataloader
from emclip.engine import inference, mean_region_dice, predict, predict_logits, run_batches, train
from emclip.evaluation import evaluate_model
from emclip.models import create_model


class _Probe(torch.nn.Module):
    """Records the grad/inference mode and dtype it ran under; optionally fails."""

    def __init__(self, fail=False):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 1)
        self.fail, self.seen = fail, []

    def forward(self, images):
        out = self.conv(images)
        self.seen.append((self.training, torch.is_inference_mode_enabled(), out.dtype))
        if self.fail:
            raise RuntimeError("boom")
        return out


def test_inference_sets_eval_inference_mode_and_restores_the_mode():
    model = _Probe().train()
    with inference(model, "cpu") as device:
        assert device == torch.device("cpu")
        model(torch.rand(1, 3, 4, 4))
    assert model.seen == [(False, True, torch.float32)]  # eval, inference mode, fp32 on the CPU
    assert model.training
    failing = _Probe(fail=True).train()
    with pytest.raises(RuntimeError, match="boom"):
        predict_logits(failing, torch.rand(1, 3, 4, 4), "cpu")
    assert failing.training  # restored although the forward raised
    with inference(model, "cpu", amp="bf16"):
        model(torch.rand(1, 3, 4, 4))
    assert model.seen[-1] == (False, True, torch.bfloat16)


def test_run_batches_and_predict():
    model = _Probe().eval()
    loader = [{"image": torch.rand(2, 3, 4, 4), "mask": torch.zeros(2, 4, 4, dtype=torch.long), "id": ["a", "b"],
               "domain": ["d", "d"]}, {"image": torch.rand(1, 3, 4, 4), "mask": torch.zeros(1, 4, 4, dtype=torch.long),
                                       "id": ["c"], "domain": ["e"]}]
    shapes = run_batches(model, loader, lambda batch, logits: tuple(logits.shape), "cpu")
    assert shapes == [(2, 2, 4, 4), (1, 2, 4, 4)] and not model.training
    preds = predict(model, loader, "cpu")
    assert preds.logits.shape == (3, 2, 4, 4) and preds.labels.shape == (3, 4, 4)
    assert preds.ids == ["a", "b", "c"] and preds.domains == ["d", "d", "e"]
    with pytest.raises(ValueError, match="no batches"):
        run_batches(model, [], lambda b, x: x, "cpu")


@pytest.mark.parametrize("amp", ["fp32", "bf16"])
def test_validation_and_evaluation_give_the_same_dice(amp):
    """The training loop's validation Dice equals evaluate_model's on the same model and data,
    in either precision (bf16 autocast runs on the CPU too, so the shared path is checked here)."""
    torch.manual_seed(0)
    train_loader = make_dataloader(get_dataset("fundus", "domain1", "train", size=32, n=4), 4, shuffle=True)
    val = get_dataset("fundus", "domain1", "val", size=32, n=4)
    val_loader = make_dataloader(val, 2, shuffle=False)
    model = create_model("emclip", "fundus", profile="ci")
    result = train(model, "fundus", train_loader, val_loader, steps=3, lr=3e-3, amp=amp, progress=False)
    validation = result.final_val_dice()
    table = evaluate_model(result.model, "fundus", val_loader, device="cpu", amp=amp)
    evaluation = table.groupby("region").dice.mean().to_dict()
    assert validation.keys() == evaluation.keys()
    for region in validation:
        assert validation[region] == pytest.approx(evaluation[region], abs=1e-12), (region, validation, evaluation)
    assert mean_region_dice(result.model, val_loader, "fundus", "cpu", amp=amp) == validation
    if amp == "bf16":  # the precision matters: in fp32 the same model gives other logits
        assert not torch.equal(predict(result.model, val_loader, "cpu", "fp32").logits,
                               predict(result.model, val_loader, "cpu", "bf16").logits)


def test_em_features_come_from_the_models_own_forward():
    from emclip.viz.evaluation import em_features

    torch.manual_seed(0)
    model = create_model("emclip", "fundus", profile="ci").train()
    images = torch.rand(2, 3, 32, 32)
    before, after = em_features(model, images)
    assert model.training  # mode restored
    model.eval()
    with torch.no_grad():
        parts = model.forward_parts(images)
    torch.testing.assert_close(after, parts["deep"].float())
    assert before.shape == after.shape and not torch.equal(before, after)


def test_case_overlays_restore_the_mode_when_the_model_fails():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emclip.viz.evaluation import plot_case_overlays

    data = [{"image": torch.rand(3, 8, 8), "mask": torch.zeros(8, 8, dtype=torch.long), "id": "x", "domain": "d"}]
    cases = pd.DataFrame({"domain": ["d"], "id": ["x"], "score": [1.0], "case": ["best"]})
    model = _Probe(fail=True).train()
    with pytest.raises(RuntimeError, match="boom"):
        plot_case_overlays(model, "fundus", [data], cases)
    assert model.training
    plt.close("all")
