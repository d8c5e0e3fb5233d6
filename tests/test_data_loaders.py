"""get_dataset / domain_datasets / make_dataloader / protocols / augmentation."""

from __future__ import annotations

import pytest
import torch

from emclip.data import Augment, domain_datasets, get_dataset, get_protocol, make_dataloader
from emclip.data.augment import appearance_augment, geometric_augment
from emclip.data.splits import SYNTHETIC_DEFAULT_N
from emclip.errors import ConfigError
from emclip.runtime import get_profile


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"task": "retina", "domain": "domain1"}, r"Valid tasks: fundus, cardiac"),
        ({"task": "fundus", "domain": "A"}, r"Valid domains: domain1, domain2, domain3, domain4"),
        ({"task": "cardiac", "domain": "A", "split": "dev"}, r"Valid splits: train, val, test"),
        ({"task": "cardiac", "domain": "A", "source": "web"}, r"Valid sources: synthetic, real"),
    ],
)
def test_unknown_names_list_the_valid_ones(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        get_dataset(**kwargs)


def test_default_sizes_per_split():
    for split, n in SYNTHETIC_DEFAULT_N.items():
        assert len(get_dataset("fundus", "domain1", split)) == n
    assert SYNTHETIC_DEFAULT_N["train"] > SYNTHETIC_DEFAULT_N["test"] > SYNTHETIC_DEFAULT_N["val"]


def test_domain_datasets_follow_the_profile():
    prof = get_profile("ci")
    ds = domain_datasets("cardiac", ["A", "C"], "val", prof)
    assert len(ds) == 2 * prof.val_per_domain
    sample = ds[len(ds) - 1]
    assert sample["image"].shape[-1] == prof.image_size and sample["domain"] == "C"
    assert len(domain_datasets("fundus", "domain2", "train", prof.replace(train_per_domain=3))) == 3


def test_loader_batches_follow_the_contract():
    a = get_dataset("fundus", "domain1", n=3, size=32)
    b = get_dataset("fundus", "domain4", n=2, size=32)
    batches = list(make_dataloader([a, b], batch_size=2, shuffle=False))
    assert [len(x["id"]) for x in batches] == [2, 2, 1]
    first = batches[0]
    assert first["image"].shape == (2, 3, 32, 32) and first["image"].dtype == torch.float32
    assert first["mask"].shape == (2, 32, 32) and first["mask"].dtype == torch.int64
    assert first["domain"] == ["domain1", "domain1"] and batches[-1]["domain"] == ["domain4"]
    assert len(list(make_dataloader(a, 2, shuffle=False, drop_last=True))) == 1


def test_loader_is_reproducible_per_seed():
    ds = get_dataset("cardiac", "B", n=6, size=32)

    def run(seed):
        return [(x["id"], x["image"], x["mask"]) for x in make_dataloader(ds, 3, True, augment=True, seed=seed)]

    one, two, other = run(5), run(5), run(6)
    for (i1, x1, m1), (i2, x2, m2) in zip(one, two):
        assert i1 == i2 and torch.equal(x1, x2) and torch.equal(m1, m2)
    assert any(not torch.equal(x1, x3) for (_, x1, _), (_, x3, _) in zip(one, other))


def test_geometric_augmentation_moves_image_and_mask_together():
    ds = get_dataset("fundus", "domain1", n=4, size=48)
    masks = torch.stack([ds[i]["mask"] for i in range(4)])
    image = (masks.float() / 2.0)[:, None].repeat(1, 3, 1, 1)  # the image *is* the label map
    g = torch.Generator().manual_seed(0)
    out_img, out_mask = geometric_augment(image, masks, g)
    assert not torch.equal(out_mask, masks)  # it did move
    agree = (torch.round(out_img[:, 0] * 2).long() == out_mask).float().mean()
    assert agree > 0.97
    assert set(out_mask.unique().tolist()) <= {0, 1, 2}


def test_appearance_augmentation_keeps_grey_grey_and_range():
    grey = get_dataset("cardiac", "A", n=2, size=32)
    colour = get_dataset("fundus", "domain1", n=2, size=32)
    image = torch.stack([grey[0]["image"], colour[0]["image"]])
    out = appearance_augment(image, torch.Generator().manual_seed(1))
    assert torch.equal(out[0, 0], out[0, 1]) and torch.equal(out[0, 1], out[0, 2])
    assert out.min() >= 0 and out.max() <= 1 and not torch.allclose(out, image)
    aug = Augment.from_spec("appearance")
    img2, mask2 = aug(image, torch.zeros(2, 32, 32, dtype=torch.long), torch.Generator().manual_seed(1))
    assert torch.equal(mask2, torch.zeros(2, 32, 32, dtype=torch.long))
    with pytest.raises(ValueError, match="Valid: True, False"):
        Augment.from_spec("strong")


def test_protocols_as_data():
    single = get_protocol("fundus", "single-source")
    assert [s.train_domains for s in single] == [("domain1",), ("domain2",), ("domain3",), ("domain4",)]
    for s in single:
        assert set(s.train_domains).isdisjoint(s.test_domains) and len(s.test_domains) == 3
    loo = get_protocol("cardiac", "leave-one-out")
    assert [s.test_domains for s in loo] == [("A",), ("B",), ("C",), ("D",)]
    assert loo[0].name == "BCD->A" and set(loo[0].train_domains) == {"B", "C", "D"}
    with pytest.raises(ValueError, match="Valid protocols: single-source, leave-one-out"):
        get_protocol("cardiac", "cross")


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"size": "64"}, r"size='64' is invalid: give an int >= 16"),
    ({"size": 8}, r"size=8 is invalid: give an int >= 16"),
    ({"size": 64.5}, r"size=64.5"),
    ({"size": True}, r"size=True"),
    ({"seed": -1}, r"seed=-1 is invalid: give an int >= 0"),
    ({"n": "10"}, r"n='10' is invalid: give an int >= 0 or None"),
    ({"domain": 1}, r"Unknown domain 1. Valid domains: domain1, domain2"),
    ({"split": None}, r"Unknown split None. Valid splits: train, val, test"),
    ({"task": 3}, r"Unknown task 3. Valid tasks: fundus, cardiac"),
    ({"root": 5, "source": "real"}, r"root=5 is invalid"),
])
def test_get_dataset_checks_argument_types_and_ranges(kwargs, pattern):
    args = {"task": "fundus", "domain": "domain1", **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        get_dataset(**args)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"batch_size": 0}, r"batch_size=0 is invalid: give an int >= 1"),
    ({"batch_size": "8"}, r"batch_size='8'"),
    ({"shuffle": "yes"}, r"shuffle='yes' is invalid: give True or False"),
    ({"num_workers": -1}, r"num_workers=-1 is invalid: give an int in 0..64"),
    ({"seed": 0.5}, r"seed=0.5"),
    ({"drop_last": 1}, r"drop_last=1"),
    ({"device": "gpu0"}, r"device='gpu0' is invalid"),
    ({"rank": 2, "world_size": 2}, r"rank=2 is invalid: give an int in 0..1"),
])
def test_make_dataloader_checks_argument_types_and_ranges(kwargs, pattern):
    args = {"batch_size": 2, "shuffle": False, **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        make_dataloader(get_dataset("fundus", "domain1", n=2, size=32), **args)
    with pytest.raises(ConfigError, match="give a torch Dataset"):
        make_dataloader("fundus", batch_size=2, shuffle=False)


@pytest.mark.parametrize(("kwargs", "pattern"), [
    ({"domains": []}, r"domains=\[\] is invalid: give a domain name or a non-empty list"),
    ({"domains": ["domain1", "X"]}, r"Unknown domain 'X'"),
    ({"profile": 3}, r"profile=3 is invalid"),
    ({"seed": "0"}, r"seed='0'"),
    ({"render_workers": -2}, r"render_workers=-2"),
])
def test_domain_datasets_checks_argument_types_and_ranges(kwargs, pattern):
    args = {"task": "fundus", "domains": ["domain1"], "split": "val", "profile": "ci", **kwargs}
    with pytest.raises(ConfigError, match=pattern):
        domain_datasets(**args)
