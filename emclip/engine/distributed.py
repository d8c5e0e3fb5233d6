"""Multi-process training with PyTorch DDP, launched by ``torchrun``.

``torchrun --nproc_per_node=2 -m emclip train ...`` (or ``--nnodes``/``--rdzv-endpoint`` across
machines) sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``;
:func:`init_distributed` reads them and joins the process group (NCCL on GPUs, gloo on CPU).
Each process then trains on its shard of the data (``DistributedSampler``), DDP averages the
gradients, and only rank 0 logs, shows progress and writes checkpoints.

Without those variables every function here is a no-op, so the same code runs on one process.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def is_main_process() -> bool:
    """Rank 0 (or the only process): the one that logs and writes files."""
    return get_rank() == 0


def init_distributed(backend: str | None = None) -> bool:
    """Join the process group described by torchrun's environment variables.

    Returns True when running distributed. ``backend`` defaults to ``nccl`` when CUDA is
    available, else ``gloo``; each process uses GPU ``LOCAL_RANK``.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return False
    if dist.is_initialized():
        return True
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise RuntimeError(f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with torchrun "
                           "(e.g. torchrun --nproc_per_node=2 -m emclip train ...).")
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    return True


def cleanup_distributed() -> None:
    """Leave the process group (call at the end of a torchrun script)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def local_device() -> torch.device:
    """This process's device: ``cuda:LOCAL_RANK`` on GPUs, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """DDP-wrap ``model`` when distributed (it must already be on ``device``); else return it."""
    if not is_distributed():
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def shard_loader(dataset, batch_size: int, seed: int = 0, drop_last: bool = True, num_workers: int = 0,
                 collate_fn=None) -> DataLoader:
    """A training DataLoader over this rank's shard (``DistributedSampler``, shuffled per epoch)."""
    sampler = DistributedSampler(dataset, num_replicas=get_world_size(), rank=get_rank(), shuffle=True,
                                 seed=seed, drop_last=drop_last)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                      num_workers=num_workers, collate_fn=collate_fn)


def broadcast_buffers(model: nn.Module, src: int = 0) -> None:
    """Copy every buffer of ``model`` from rank ``src`` to all ranks (no-op when not distributed).

    DDP broadcasts buffers at the start of each forward, but a buffer a module updates during
    its forward (BatchNorm statistics) differs between ranks after the last step; the training
    loop calls this at the end so that every rank returns the same model. (EM-CLIP's EM bases
    are already equal on every rank: :func:`emclip.em.update_em_bases` averages their update
    over the ranks.)
    """
    if not is_distributed():
        return
    for buffer in model.buffers():
        dist.broadcast(buffer.data, src=src)


def all_reduce_mean(value: float) -> float:
    """The mean of a float over all processes (the value itself when not distributed)."""
    if not is_distributed():
        return float(value)
    device = local_device() if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(value)], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item()) / get_world_size()


def all_reduce_means(values: dict[str, float]) -> dict[str, float]:
    """Each float of ``values`` averaged over all processes, in one collective (a copy when not distributed).

    For the training log: ``row.update(all_reduce_means({"loss": loss, "train_dice": dice}))`` on
    every rank gives every rank (and rank 0's history) the mean over the whole global batch
    (exactly so when every rank's batch has the same size). Every rank must pass the same keys.
    """
    if not is_distributed():
        return {k: float(v) for k, v in values.items()}
    keys = sorted(values)
    device = local_device() if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: float(v) / get_world_size() for k, v in zip(keys, t.tolist())}


def all_true(flag: bool) -> bool:
    """True only if ``flag`` is true on every process (``flag`` itself when not distributed).

    Used so that a condition seen on one rank (a non-finite loss) stops every rank together
    instead of leaving the others waiting in the next collective.
    """
    if not is_distributed():
        return bool(flag)
    device = local_device() if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0.5)

