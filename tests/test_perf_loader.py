"""The data pipeline: rendered uint8 store, persistent workers, per-batch seeded augmentation, exact resume."""

from __future__ import annotations

import os
import sys
import types

import pytest
import torch
from torch import nn

from emclip.data import Augment, TensorStore, domain_datasets, get_dataset, make_dataloader, render_store
from emclip.data import store as store_module
from emclip.data.synthetic import SyntheticDataset
from emclip.engine.train import _epoch_iterator, train
from emclip.errors import ConfigError
from emclip.runtime import get_profile


class _PidDataset(torch.utils.data.Dataset):
    """Samples that record which process produced them."""

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return {"image": torch.full((3, 8, 8), index / 8), "mask": torch.zeros(8, 8, dtype=torch.long),
                "pid": os.getpid()}


def _renders(monkeypatch) -> list:
    calls = []
    original = SyntheticDataset.arrays

    def counting(self, index):
        calls.append(index)
        return original(self, index)

    monkeypatch.setattr(SyntheticDataset, "arrays", counting)
    return calls


def test_domain_datasets_render_each_split_once(monkeypatch):
    store_module.clear_stores()
    calls = _renders(monkeypatch)
    prof = get_profile("ci").replace(train_per_domain=5, image_size=32)
    first = domain_datasets("fundus", ["domain1", "domain2"], "train", prof, seed=3)
    for _ in range(3):  # three epochs, and a second request for the same split
        [first[i] for i in range(len(first))]
    again = domain_datasets("fundus", ["domain1", "domain2"], "train", prof, seed=3)
    assert len(calls) == 10 and len(again) == 10
    assert isinstance(first, TensorStore) and first.images.dtype == torch.uint8


def test_a_new_process_reads_the_rendered_split_from_the_disk_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("EMCLIP_SYNTHETIC_CACHE", str(tmp_path))
    store_module.clear_stores()
    calls = _renders(monkeypatch)
    prof = get_profile("ci").replace(val_per_domain=4, image_size=32)
    first = domain_datasets("cardiac", ["D"], "val", prof)
    assert len(calls) == 4 and len(list(tmp_path.glob("store-cardiac-D-val-*.pt"))) == 1
    store_module.clear_stores()  # as a fresh process would start
    again = domain_datasets("cardiac", ["D"], "val", prof)
    assert len(calls) == 4  # nothing rendered again
    assert torch.equal(again.images, first.images) and torch.equal(again.masks, first.masks)
    assert [m["id"] for m in again.meta] == [m["id"] for m in first.meta]


def test_store_samples_are_the_render_quantised_to_8_bits():
    source = get_dataset("cardiac", "B", n=3, size=32)
    store = render_store(source)
    assert store.images.shape == (3, 1, 32, 32)  # grey MRI kept as one channel
    for i in range(3):
        ours, theirs = store[i], source[i]
        assert ours["image"].shape == (3, 32, 32) and ours["image"].dtype == torch.float32
        assert (ours["image"] - theirs["image"]).abs().max() <= 1 / 510 + 1e-7
        assert torch.equal(ours["mask"], theirs["mask"]) and ours["id"] == theirs["id"]
    colour = render_store(get_dataset("fundus", "domain1", n=2, size=32))
    assert colour.images.shape[1] == 3


@pytest.mark.parametrize("workers", [0, 2])
def test_store_batches_equal_the_collated_samples(workers):
    """One gather per batch (uint8 -> float on the device) gives what per-sample collation gives."""
    from torch.utils.data._utils.collate import default_collate

    store = render_store(get_dataset("cardiac", "C", n=5, size=32))
    batches = list(make_dataloader(store, 2, shuffle=False, num_workers=workers))
    assert [len(b["id"]) for b in batches] == [2, 2, 1]
    for start, batch in zip(range(0, 5, 2), batches):
        ref = default_collate([store[i] for i in range(start, min(start + 2, 5))])
        assert batch.keys() == ref.keys()
        assert torch.equal(batch["image"], ref["image"]) and torch.equal(batch["mask"], ref["mask"])
        assert batch["id"] == ref["id"] and batch["domain"] == ref["domain"]


def test_workers_stay_alive_across_epochs():
    loader = make_dataloader(_PidDataset(), batch_size=4, shuffle=True, num_workers=2)
    pids = [set(int(p) for b in _epoch_iterator(loader, 0, epoch) for p in b["pid"]) for epoch in range(3)]
    assert pids[0] == pids[1] == pids[2] and os.getpid() not in pids[0]


def _epochs(loader, epochs):
    return [[(b["id"], b["image"], b["mask"]) for b in _epoch_iterator(loader, 7, e)] for e in epochs]


def test_an_epoch_is_the_same_whatever_came_before():
    """Epoch 2 from a fresh loader equals epoch 2 after epochs 0 and 1 (persistent workers, augmentation)."""
    store = render_store(get_dataset("fundus", "domain3", n=6, size=32))

    def loader():
        return make_dataloader(store, batch_size=4, shuffle=True, augment=True, seed=1, num_workers=2)

    history = _epochs(loader(), [0, 1, 2])
    fresh = _epochs(loader(), [2])[0]
    for (i1, x1, m1), (i2, x2, m2) in zip(history[2], fresh):
        assert i1 == i2 and torch.equal(x1, x2) and torch.equal(m1, m2)
    assert not torch.equal(history[0][0][1], history[1][0][1])  # epochs differ


def test_ranks_read_disjoint_shards_and_augment_differently():
    store = render_store(get_dataset("fundus", "domain1", n=8, size=32))
    ids, images = [], []
    for rank in (0, 1):
        loader = make_dataloader(store, 2, shuffle=True, augment="appearance", seed=0, rank=rank, world_size=2)
        batches = list(_epoch_iterator(loader, 0, 0))
        ids.append({i for b in batches for i in b["id"]})
        images.append(batches[0]["image"])
    assert ids[0].isdisjoint(ids[1]) and len(ids[0] | ids[1]) == 8
    same_rank = [list(make_dataloader(store, 2, True, augment="appearance", seed=0, rank=r)) for r in (0, 1)]
    assert same_rank[0][0]["id"] == same_rank[1][0]["id"]  # same order ...
    assert not torch.equal(same_rank[0][0]["image"], same_rank[1][0]["image"])  # ... other augmentation


class _Killed(Exception):
    pass


def test_resume_is_bit_identical_with_workers_and_the_store(tmp_path):
    store = render_store(get_dataset("fundus", "domain2", n=10, size=32))

    def run(path, kill_at=None):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 1))
        loader = make_dataloader(store, 4, shuffle=True, augment=True, seed=5, num_workers=2, drop_last=True)

        def kill(step, _row):
            if step == kill_at:
                raise _Killed

        return train(model, "fundus", loader, steps=7, lr=1e-2, device="cpu", seed=5, progress=False,
                     checkpoint_path=path, checkpoint_every=2, callback=kill).model.state_dict()

    straight = run(tmp_path / "a.pt")
    with pytest.raises(_Killed):
        run(tmp_path / "b.pt", kill_at=5)  # killed mid-epoch (2 batches per epoch), after the step-4 save
    resumed = run(tmp_path / "b.pt")
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key


def test_augment_from_a_dict_spec_round_trips_and_sets_the_ranges():
    spec = {"mode": "both", "gamma": [0.9, 1.1], "contrast": [0.95, 1.05], "max_rotation_deg": 5}
    aug = Augment.from_spec(spec)
    assert aug.appearance and aug.geometric and aug.gamma == (0.9, 1.1) and aug.max_rotation_deg == 5.0
    assert Augment.from_spec(aug.to_spec()) == aug
    assert Augment.from_spec({"mode": "none"}) is None and Augment.from_spec("geometric").to_spec()["mode"] == "geometric"
    image = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    identity = Augment.from_spec({"mode": "appearance", "gamma": [1, 1], "contrast": [1, 1], "brightness": 0,
                                  "channel_gain": 0, "noise_sigma": 0})
    out, _ = identity(image, torch.zeros(4, 16, 16, dtype=torch.long), torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, image)


@pytest.mark.parametrize(("spec", "match"), [
    ({"mode": "both", "gama": [0.9, 1.1]}, "'gama'.*Valid keys: mode, max_rotation_deg"),
    ({"gamma": [1.2, 0.9]}, r"gamma=\[1.2, 0.9\].*low <= high"),
    ({"gamma": 1.2}, "gamma=1.2"),
    ({"max_shift": "0.1"}, "max_shift='0.1'.*0.0..0.5"),
    ({"mode": "strong"}, "Unknown augment mode 'strong'"),
    (3, "Unknown augment 3"),
])
def test_bad_augment_specs_name_the_key(spec, match):
    with pytest.raises(ConfigError, match=match):
        Augment.from_spec(spec)


def test_style_mode_applies_the_style_prior_and_keeps_masks_aligned(monkeypatch):
    calls = []

    def fake_style_augment(images, generator):
        calls.append(generator.device.type)
        return (images * 0.5).clamp(0, 1)

    fake = types.SimpleNamespace(style_augment=fake_style_augment)
    monkeypatch.setitem(sys.modules, "emclip.data.style_prior", fake)
    monkeypatch.setattr("emclip.data.style_prior", fake, raising=False)  # once imported, the package attribute wins
    masks = torch.zeros(2, 32, 32, dtype=torch.long)
    masks[:, 8:24, 8:24] = 1
    image = masks[:, None].float().expand(-1, 3, -1, -1).contiguous()
    aug = Augment.from_spec({"mode": "style", "max_rotation_deg": 30})
    assert aug.style and aug.geometric and not aug.appearance
    out, out_mask = aug(image, masks, torch.Generator().manual_seed(0))
    assert calls == ["cpu"] and not torch.equal(out_mask, masks)
    assert ((out[:, 0] > 0.25).long() == out_mask).float().mean() > 0.97  # halved by the fake style


def test_style_mode_with_the_style_prior():
    """With the pretrain stream's emclip.data.style_prior (skipped where this version lacks it)."""
    pytest.importorskip("emclip.data.style_prior")
    store = render_store(get_dataset("cardiac", "A", n=4, size=32))
    run = [list(make_dataloader(store, 2, shuffle=False, augment="style", seed=3)) for _ in range(2)]
    plain = list(make_dataloader(store, 2, shuffle=False))
    for one, two, ref in zip(*run, plain):
        assert torch.equal(one["image"], two["image"]) and torch.equal(one["mask"], two["mask"])  # repeats
        assert not torch.allclose(one["image"], ref["image"])  # restyled (and moved)
        assert torch.equal(one["image"][:, 0], one["image"][:, 1])  # grey MRI stays grey


@pytest.mark.gpu
def test_batches_arrive_on_the_gpu_augmented_there():
    store = render_store(get_dataset("fundus", "domain1", n=4, size=32))
    loader = make_dataloader(store, 2, True, augment=True, device="cuda", num_workers=1)
    batch = next(iter(loader))
    assert loader.pin_memory and batch["image"].is_cuda and batch["mask"].dtype == torch.int64
    late = make_dataloader(store, 2, True, augment=True, num_workers=1).to("cuda")
    assert late.pin_memory and next(iter(late))["image"].is_cuda
