"""Training engine: learning, exact resume, clear stops and errors, checkpoints, losses."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from emclip.data import get_dataset, make_dataloader
from emclip.engine import (
    checkpoint_name,
    load_checkpoint,
    load_model,
    lr_lambda,
    mean_region_dice,
    predict,
    train,
    train_from_profile,
)
from emclip.engine.checkpoint import rng_state, set_rng_state
from emclip.errors import CheckpointError
from emclip.losses import get_loss
from emclip.models import create_model


def _loader(task="fundus", n=4, size=32, batch=4, shuffle=False, augment=False, split="train", seed=0):
    domain = "domain1" if task == "fundus" else "A"
    dataset = get_dataset(task, domain, split, size=size, n=n, seed=seed)
    return make_dataloader(dataset, batch, shuffle=shuffle, augment=augment, seed=seed)


def test_tiny_emclip_overfits_one_batch():
    torch.manual_seed(0)
    model = create_model("emclip-random", "fundus", profile="ci")  # the random-init CLIP: 40 steps reach > 0.9
    batch = _loader(n=4, size=32, batch=4)
    result = train(model, "fundus", batch, None, steps=40, lr=5e-3, warmup_steps=3, progress=False)
    dice = mean_region_dice(result.model, batch, "fundus", "cpu")
    assert min(dice.values()) > 0.9, dice
    assert result.history["loss"].iloc[-5:].mean() < 0.3 * result.history["loss"].iloc[:5].mean()


def test_ci_run_beats_untrained_model():
    """In-domain validation Dice of a short ci-profile run vs the same model untrained."""
    torch.manual_seed(0)
    untrained = create_model("emclip", "fundus", profile="ci")
    val = make_dataloader(get_dataset("fundus", "domain1", "val", size=64, n=8), 8, shuffle=False)
    before = mean_region_dice(untrained, val, "fundus", "cpu")
    result = train_from_profile("emclip", "fundus", ["domain1"], profile="ci", steps=20, progress=False)
    after = result.final_val_dice()
    assert set(after) == {"disc", "cup"}
    assert after["disc"] > before["disc"] + 0.3 and after["disc"] > 0.75, (before, after)
    assert np.mean(list(after.values())) > np.mean(list(before.values())) + 0.25
    hist = result.history
    assert list(hist.columns[:4]) == ["step", "loss", "lr", "train_dice"] and len(hist) == 20
    assert hist["val_dice_disc"].notna().sum() == 2  # eval_every=15 and the last step


class _Killed(Exception):
    pass


def _resume_run(tmp_path, kill_at=None):
    """12 samples, batches of 4 (3 per epoch), augmentation on, checkpoints every 2 steps."""
    torch.manual_seed(123)  # construction differs from run to run on purpose: resume must not care
    model = create_model("emclip", "fundus", profile="ci", em={"bases": 4})
    loader = _loader(n=12, size=32, batch=4, shuffle=True, augment=True)

    def kill(step, row):
        if step == kill_at:
            raise _Killed

    return train(model, "fundus", loader, None, steps=8, lr=3e-3, seed=7, progress=False,
                 checkpoint_path=tmp_path / "run.pt", checkpoint_every=2, callback=kill)


def test_kill_and_resume_is_bit_exact(tmp_path):
    straight = _resume_run(tmp_path / "a")
    with pytest.raises(_Killed):
        _resume_run(tmp_path / "b", kill_at=5)  # dies mid-epoch 2, after the checkpoint at step 4
    assert load_checkpoint(tmp_path / "b" / "run.pt")["step"] == 4
    resumed = _resume_run(tmp_path / "b")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and "em.mu" in a
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.history["loss"].tolist() == resumed.history["loss"].tolist()
    ckpt = torch.load(tmp_path / "b" / "run.pt", weights_only=True)
    assert ckpt["step"] == 8 and {"model", "optimizer", "scheduler", "rng", "record"} <= set(ckpt)


def test_non_finite_loss_stops_clearly():
    def exploding(logits, mask):  # a loss that turns non-finite at once (a NaN image is refused earlier)
        return logits.float().mean() * float("inf")

    model = create_model("unet", "fundus", profile="ci")
    with pytest.raises(RuntimeError, match="Non-finite loss.*step 1.*learning rate"):
        train(model, "fundus", _loader(), steps=3, lr=1e-3, progress=False, loss_fn=exploding)


def test_mask_values_outside_labels_raise():
    data = [{"image": torch.rand(3, 32, 32), "mask": torch.full((32, 32), 7, dtype=torch.long)}] * 2
    model = create_model("unet", "fundus", profile="ci")
    with pytest.raises(ValueError, match="label values must lie in 0..2"):
        train(model, "fundus", DataLoader(data, batch_size=2), steps=1, lr=1e-3, progress=False)


def test_mismatched_task_and_model_raise():
    model = create_model("unet", "fundus", profile="ci")
    with pytest.raises(ValueError, match="built for task 'fundus'.*'cardiac'"):
        train(model, "cardiac", _loader("cardiac"), steps=1, lr=1e-3, progress=False)


def test_checkpoint_round_trip_and_load_model(tmp_path):
    torch.manual_seed(0)
    model = create_model("emclip", "cardiac", profile="ci")
    result = train(model, "cardiac", _loader("cardiac"), steps=2, lr=1e-3, progress=False,
                   checkpoint_path=tmp_path / checkpoint_name("cardiac", "emclip", ["A"], "ci"))
    assert result.checkpoint_path.name == "cardiac_emclip_A_ci.pt"
    rebuilt = load_model(result.checkpoint_path)
    x = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(rebuilt(x), result.model.eval()(x))
    other = create_model("unet", "cardiac", profile="ci")
    with pytest.raises(CheckpointError, match="holds model 'emclip'"):
        load_checkpoint(result.checkpoint_path, other)
    with pytest.raises(CheckpointError, match="No checkpoint at .*missing.pt"):
        load_checkpoint(tmp_path / "missing.pt")
    preds = predict(result.model, _loader("cardiac", n=3, batch=2), "cpu")
    assert preds.logits.shape == (3, 4, 32, 32) and preds.labels.shape == (3, 32, 32) and len(preds.ids) == 3


def test_rng_state_round_trip():
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_lr_schedule_warms_up_then_decays():
    cosine, poly = lr_lambda(100, 10, "cosine"), lr_lambda(100, 10, "poly")
    assert cosine(0) == pytest.approx(0.1) and cosine(9) == pytest.approx(1.0)
    assert cosine(55) == pytest.approx(0.5) and cosine(100) == pytest.approx(0.0, abs=1e-12)
    assert poly(55) == pytest.approx(0.5**0.9) and poly(30) < cosine(10)
    with pytest.raises(ValueError, match="Valid schedules"):
        lr_lambda(10, 1, "step")


@pytest.mark.parametrize("task", ["fundus", "cardiac"])
def test_loss_is_low_for_the_right_answer(task):
    from emclip.tasks import get_task

    spec = get_task(task)
    mask = next(iter(_loader(task, n=2, batch=2)))["mask"]
    target = spec.targets(mask)
    if spec.mode == "multilabel":
        perfect = (target * 2 - 1) * 20.0
    else:
        perfect = torch.nn.functional.one_hot(mask, spec.num_outputs).permute(0, 3, 1, 2).float() * 40 - 20
    loss = get_loss(task)
    assert loss(perfect, mask).item() < 1e-3
    assert loss(-perfect, mask).item() > 1.0
    with pytest.raises(ValueError, match="expects logits"):
        loss(perfect[:, :1], mask)
    assert math.isfinite(loss(torch.zeros_like(perfect), mask).item())


def test_training_plots_and_parameter_table():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from emclip.viz.training import parameter_table, plot_history, plot_predictions

    torch.manual_seed(0)
    model = create_model("emclip-no-text", "fundus", profile="ci")
    table = parameter_table(model)
    assert {"encoder", "decoder", "em", "class_queries", "total"} <= set(table["part"])
    total = table.set_index("part").loc["total"]
    assert total["trainable"] == model.parameter_counts()["trainable"]
    assert total["frozen"] == model.parameter_counts()["frozen"] > 0
    loader = _loader(n=2, batch=2)
    result = train(model, "fundus", loader, loader, steps=2, lr=1e-3, eval_every=1, progress=False)
    fig = plot_history(result.history, untrained_dice=0.1)
    assert len(fig.axes[1].lines) == 1 + 2 + 1  # train, val per region, untrained line
    preds = predict(result.model, loader, "cpu")
    batch = next(iter(loader))
    fig2 = plot_predictions(batch["image"], preds.labels, preds.logits, "fundus", ids=preds.ids)
    assert len(fig2.axes) == 3 * 2
    plt.close("all")
    with pytest.raises(ValueError, match="empty"):
        plot_history(result.history.iloc[:0])
