"""The explorer callbacks of notebooks 01, 03 and 05 (06's is tested in test_evaluation.py): each
draws the requested sample / map / prediction, and fails clearly on a bad choice."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from emclip.data import get_dataset  # noqa: E402
from emclip.metrics import compute_dice  # noqa: E402
from emclip.tasks import get_task  # noqa: E402
from emclip.viz import clip as vclip  # noqa: E402
from emclip.viz import data as vdata  # noqa: E402
from emclip.viz import training as vtraining  # noqa: E402


def _shown(ax) -> np.ndarray:
    return np.asarray(ax.get_images()[0].get_array())


def test_sample_figure_shows_the_requested_sample():
    sample = get_dataset("cardiac", "C", "train", size=32, seed=3, n=3)[2]
    plain = vdata.sample_figure("cardiac", "C", index=2, size=32, show_mask=False, seed=3)
    np.testing.assert_allclose(_shown(plain.axes[0]), sample["image"].permute(1, 2, 0).numpy())
    assert sample["id"] in plain.axes[0].get_title() and "GE" in plain.axes[0].get_title()
    tinted = vdata.sample_figure("cardiac", "C", index=2, size=32, show_mask=True, seed=3)
    np.testing.assert_allclose(_shown(tinted.axes[0]), vdata.overlay(sample["image"], sample["mask"], "cardiac"))
    other = vdata.sample_figure("cardiac", "D", index=2, size=32, show_mask=False, seed=3)
    assert not np.allclose(_shown(other.axes[0]), _shown(plain.axes[0]))  # another domain, another image
    with pytest.raises(ValueError, match="index"):
        vdata.sample_figure("cardiac", "C", index=-1, size=32)
    with pytest.raises(ValueError, match="domain"):
        vdata.sample_figure("cardiac", "domain1", size=32)
    plt.close("all")


def test_prompt_map_figure_picks_image_and_prompt():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 16, 16, generator=g)
    similarity = torch.rand(4, 2, 4, 4, generator=g) * 2 - 1
    domains = ["a", "b", "a", "b"]
    masks = torch.zeros(4, 2, 16, 16, dtype=torch.bool)
    masks[:, :, 4:12, 4:12] = True
    fig = vclip.prompt_map_figure(images, similarity, ["disc", "cup"], domains, "a", 1, "cup", masks=masks)
    image_ax, map_ax = fig.axes[0], fig.axes[1]
    np.testing.assert_allclose(_shown(image_ax), images[2].permute(1, 2, 0).numpy())  # 2nd image of domain a
    up = torch.nn.functional.interpolate(similarity[2:3, 1:2], size=(16, 16), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(_shown(map_ax), up[0, 0].numpy(), atol=1e-6)
    assert map_ax.get_title() == "sim: cup"
    sim = up[0, 0]
    contrast = float(sim[4:12, 4:12].mean() - sim[masks[2, 1].logical_not()].mean())
    assert f"{contrast:+.3f}" in fig._suptitle.get_text()
    for bad, match in ((dict(domain="c"), "domain"), (dict(index=2), "out of range"), (dict(name="rim"), "valid")):
        args = dict(domain="a", index=0, name="disc") | bad
        with pytest.raises(ValueError, match=match):
            vclip.prompt_map_figure(images, similarity, ["disc", "cup"], domains, **args)
    plt.close("all")


def test_prediction_figure_shows_the_sample_and_its_dice():
    task = get_task("fundus")
    dataset = get_dataset(task, "domain2", "val", size=32, n=3)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(3, task.num_outputs, 3, padding=1).train()
    fig = vtraining.prediction_figure(model, task, dataset, index=1)
    assert model.training  # mode restored
    sample = dataset[1]
    np.testing.assert_allclose(_shown(fig.axes[0]), sample["image"].permute(1, 2, 0).numpy())
    np.testing.assert_allclose(_shown(fig.axes[1]), vdata.overlay(sample["image"], sample["mask"], "fundus"))
    with torch.no_grad():
        pred = task.predict_regions(model.eval()(sample["image"][None]))[0]
    target = task.region_masks(sample["mask"][None])[0]
    dice = np.mean([float(compute_dice(pred[r], target[r])) for r in range(len(task.region_names))])
    assert fig.axes[2].get_title() == f"prediction (Dice {dice:.2f})"
    with pytest.raises(ValueError, match="out of range"):
        vtraining.prediction_figure(model, task, dataset, index=3)
    plt.close("all")
