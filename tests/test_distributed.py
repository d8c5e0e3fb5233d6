"""DDP: two CPU processes on the gloo backend train EM-CLIP in lock-step (as under torchrun)."""

from __future__ import annotations

import os
import socket

import torch
import torch._dynamo  # noqa: F401  (DDP imports it on construction: ~3 s, paid once here, not per worker)
import torch.multiprocessing as mp
from torch import nn

# imported here so that the forked workers inherit them instead of importing them again
from emclip.em import EMAggregation, update_em_bases
from emclip.engine import distributed as ddp
from emclip.engine import train_from_profile
from emclip.losses import get_loss
from emclip.models import create_model
from emclip.runtime import get_profile


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_env(rank: int, world: int, port: int) -> None:
    """What torchrun sets for each process."""
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)


class _Counter(nn.Module):
    """A conv whose forward also moves a buffer from the input, as EM-CLIP's EM bases do."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 1, 1)
        self.register_buffer("running", torch.zeros(1))

    def forward(self, x):
        if self.training:
            self.running.mul_(0.5).add_(x.mean().detach())
        return self.conv(x)


def _helpers_worker(rank: int, world: int, port: int, out: str) -> None:
    _torchrun_env(rank, world, port)
    assert ddp.init_distributed() and ddp.get_world_size() == world and ddp.is_main_process() == (rank == 0)
    try:
        torch.manual_seed(rank)  # different initial weights: DDP must broadcast rank 0's
        data = torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1)
        loader = ddp.shard_loader(data, batch_size=2, seed=0)
        model = ddp.wrap_model(_Counter(), torch.device("cpu"))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        seen = []
        for x in loader:
            seen += x.flatten().tolist()
            opt.zero_grad()
            model(x).pow(2).mean().backward()
            opt.step()
        ddp.broadcast_buffers(model.module)
        means = ddp.all_reduce_means({"loss": float(rank), "train_dice": 2.0 * rank + 1})
        torch.save({"seen": seen, "state": model.module.state_dict(), "mean": ddp.all_reduce_mean(rank),
                    "means": means}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        ddp.cleanup_distributed()


def test_ddp_helpers_with_two_gloo_processes(tmp_path):
    # fork: the workers inherit this process's imports (spawn would re-import torch in each: ~10 s)
    mp.start_processes(_helpers_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True,
                       start_method="fork")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert sorted(r0["seen"] + r1["seen"]) == list(range(8)) and not set(r0["seen"]) & set(r1["seen"])
    for key in r0["state"]:
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    assert r0["mean"] == r1["mean"] == 0.5
    assert r0["means"] == r1["means"] == {"loss": 0.5, "train_dice": 2.0}


def _em_case():
    torch.manual_seed(0)
    unit = EMAggregation(8, num_bases=4, norm="group").train()
    images = torch.randn(6, 8, 3, 3, generator=torch.Generator().manual_seed(1))  # the global batch
    return unit, images


def _em_worker(rank: int, world: int, port: int, out: str) -> None:
    _torchrun_env(rank, world, port)
    assert ddp.init_distributed()
    try:
        unit, images = _em_case()
        with torch.no_grad():
            unit(images.chunk(world)[rank])  # each rank sees its shard of the global batch
        update_em_bases(unit)
        torch.save(unit.mu.clone(), os.path.join(out, f"mu{rank}.pt"))
    finally:
        ddp.cleanup_distributed()


def test_em_bases_are_averaged_over_ranks_before_the_moving_average(tmp_path):
    mp.start_processes(_em_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    mu0, mu1 = (torch.load(tmp_path / f"mu{r}.pt", weights_only=True) for r in (0, 1))
    assert torch.equal(mu0, mu1)  # every rank keeps the same buffer (old code: each rank its own)
    unit, images = _em_case()
    with torch.no_grad():
        unit(images)  # one process on the global batch
    update_em_bases(unit)
    torch.testing.assert_close(mu0, unit.mu, atol=1e-6, rtol=0)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    _torchrun_env(rank, world, port)

    assert ddp.init_distributed() and ddp.get_world_size() == world and ddp.get_rank() == rank
    try:
        result = train_from_profile("emclip", "fundus", ["domain1"], profile=get_profile("ci", image_size=32), steps=3,
                                    progress=False, checkpoint_path=os.path.join(out, "ddp.pt"))
        state = {k: v.clone() for k, v in result.model.state_dict().items()}
        torch.save({"state": state, "rows": len(result.history), "loss": result.history["loss"].tolist(),
                    "val": result.final_val_dice()}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        ddp.cleanup_distributed()


def test_two_gloo_processes_train_in_lock_step(tmp_path):
    get_loss("fundus"), create_model("emclip", "fundus", profile="ci")  # warm MONAI / open_clip before forking
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for key in r0["state"]:  # DDP averaged the gradients; EM bases broadcast from rank 0
        assert torch.equal(r0["state"][key], r1["state"][key]), key
    assert r0["loss"] != r1["loss"]  # ... although each rank trained on its own shard
    assert r0["val"] and not r1["val"]  # only rank 0 validates
    ckpt = torch.load(tmp_path / "ddp.pt", weights_only=True)  # only rank 0 writes it
    assert ckpt["step"] == 3 and not any(k.startswith("module.") for k in ckpt["model"])
    for key, value in ckpt["model"].items():
        assert torch.equal(value, r0["state"][key]), key
