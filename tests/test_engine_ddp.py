"""DDP: the logged loss and training Dice are the means over the ranks, equal on every rank."""

from __future__ import annotations

import os
import socket

import torch
import torch._dynamo  # noqa: F401  (DDP imports it on construction: paid once here, not per worker)
import torch.multiprocessing as mp

# imported here so that the forked workers inherit them instead of importing them again
from emclip.data import get_dataset
from emclip.engine import distributed as ddp
from emclip.engine import train
from emclip.losses import get_loss
from emclip.models import create_model


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port), OMP_NUM_THREADS="1")
    torch.set_num_threads(1)
    assert ddp.init_distributed()
    try:
        base, local = get_loss("fundus"), []

        def loss_fn(logits, mask):  # keeps this rank's own loss of every step
            value = base(logits, mask)
            local.append(float(value.detach()))
            return value

        torch.manual_seed(0)
        model = create_model("unet", "fundus", profile="ci")
        loader = ddp.shard_loader(get_dataset("fundus", "domain1", "train", size=32, n=8), 2, seed=0)
        result = train(model, "fundus", loader, steps=2, lr=1e-3, progress=False, loss_fn=loss_fn)
        torch.save({"logged": result.history["loss"].tolist(), "dice": result.history["train_dice"].tolist(),
                    "local": local}, os.path.join(out, f"rank{rank}.pt"))
    finally:
        ddp.cleanup_distributed()


def test_logged_loss_and_dice_are_averaged_over_ranks(tmp_path):
    get_loss("fundus"), create_model("unet", "fundus", profile="ci")  # warm MONAI before forking
    mp.start_processes(_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True, start_method="fork")
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    assert r0["local"] != r1["local"]  # each rank saw its own shard ...
    assert r0["logged"] == r1["logged"] and r0["dice"] == r1["dice"]  # ... and logs the same numbers:
    for step, logged in enumerate(r0["logged"]):  # the mean over the ranks
        assert abs(logged - (r0["local"][step] + r1["local"][step]) / 2) < 1e-12
