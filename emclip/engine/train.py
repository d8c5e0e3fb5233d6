"""The training loop: AdamW, warm-up + cosine/poly schedule, bf16 on GPU, exact resume, DDP.

``train(model, task, train_loader, val_loader, steps=..., lr=...)`` runs ``steps`` optimiser
steps and returns a :class:`TrainResult` whose ``history`` DataFrame has one row per step:
``step, loss, lr, train_dice`` and, every ``eval_every`` steps, ``val_dice_<region>`` and
``val_dice`` (their mean). ``train_from_profile`` is the one-call recipe of notebooks 04/05.

Exact resume: the checkpoint holds model, optimiser, scheduler, EM bases, RNG states and the
history; the batch order of an epoch depends only on ``(seed, epoch)`` (the loader's shuffling
generator is reseeded at each epoch start — design choice, so that a resumed run can replay
the epoch and skip the batches already used). A run killed after a checkpoint and resumed
ends with the same weights, bit for bit on the CPU, as an uninterrupted run.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import RandomSampler
from tqdm.auto import tqdm

from emclip.em import discard_em_updates, update_em_bases
from emclip.engine import distributed as ddp
from emclip.engine.checkpoint import load_checkpoint, save_checkpoint, set_rng_state, unwrap
from emclip.engine.predict import mean_region_dice, region_dice
from emclip.losses import get_loss
from emclip.runtime import Profile, get_device, get_profile, seed_everything
from emclip.tasks import Task, get_task

SCHEDULES = ("cosine", "poly", "constant")


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained (unwrapped) model, its history, the checkpoint."""

    model: nn.Module
    history: pd.DataFrame
    checkpoint_path: Path | None

    def final_val_dice(self) -> dict[str, float]:
        """The last validation Dice per region (empty when no validation ran)."""
        cols = [c for c in self.history.columns if c.startswith("val_dice_")]
        rows = self.history.dropna(subset=cols) if cols else self.history.iloc[:0]
        return {} if rows.empty else {c[len("val_dice_"):]: float(rows[c].iloc[-1]) for c in cols}


def lr_lambda(steps: int, warmup_steps: int, schedule: str = "cosine", min_ratio: float = 0.0,
              power: float = 0.9) -> Callable[[int], float]:
    """Multiplier of the peak lr after ``s`` steps: linear warm-up, then cosine or poly decay."""
    if schedule not in SCHEDULES:
        raise ValueError(f"Unknown schedule {schedule!r}. Valid schedules: {', '.join(SCHEDULES)}.")

    def factor(s: int) -> float:
        if s < warmup_steps:
            return (s + 1) / warmup_steps
        if schedule == "constant":
            return 1.0
        p = min(1.0, (s - warmup_steps) / max(1, steps - warmup_steps))
        decay = 0.5 * (1 + math.cos(math.pi * p)) if schedule == "cosine" else (1 - p) ** power
        return min_ratio + (1 - min_ratio) * decay

    return factor


def check_model_task(model: nn.Module, task: Task) -> None:
    """Clear error when the model was built for another task (or another number of outputs)."""
    bare = unwrap(model)
    name = getattr(bare, "task_name", None)
    if name is not None and name != task.name:
        raise ValueError(f"The model was built for task {name!r} but is trained on task {task.name!r}; "
                         f"build it with create_model(..., task={task.name!r}).")
    outputs = getattr(bare, "num_outputs", None)
    if outputs is not None and outputs != task.num_outputs:
        raise ValueError(f"The model has {outputs} outputs but task {task.name!r} needs {task.num_outputs} "
                         f"({', '.join(task.output_names)}).")


def _epoch_iterator(loader, seed: int, epoch: int):
    """An iterator over ``loader`` whose batches depend only on ``(seed, epoch)``.

    Reseeds the sampler's shuffling generator (``set_epoch`` for a ``DistributedSampler``), the
    loader's worker-seed generator and the augmentation generator of a collate function that has
    one (:class:`emclip.data.loaders.AugmentCollate`).
    """
    sampler = getattr(loader, "sampler", None)
    if hasattr(sampler, "set_epoch"):
        sampler.set_epoch(epoch)
    epoch_seed = (seed * 1_000_003 + epoch) % (2**62)
    if isinstance(sampler, RandomSampler):
        if sampler.generator is None:
            sampler.generator = torch.Generator()
        sampler.generator.manual_seed(epoch_seed)
    generator = getattr(loader, "generator", None)
    if generator is not None and generator is not getattr(sampler, "generator", None):
        generator.manual_seed(epoch_seed + 1)
    augment_generator = getattr(loader.collate_fn, "generator", None)  # emclip.data's AugmentCollate
    if isinstance(augment_generator, torch.Generator):  # per rank: each process augments differently
        augment_generator.manual_seed(epoch_seed + 2 + 7_919 * ddp.get_rank())
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(epoch_seed)
        return iter(loader)


def _batches(loader, seed: int, start_step: int, on_ready: Callable[[], None]):
    """Endless batches from step ``start_step``; ``on_ready()`` runs after the skipped ones."""
    n = len(loader)
    if n == 0:
        raise ValueError("train_loader yields no batches: use more samples, a smaller batch or drop_last=False.")
    epoch, skip = divmod(start_step, n)
    it = _epoch_iterator(loader, seed, epoch)
    for _ in range(skip):  # replay the part of the epoch the checkpoint already used
        next(it)
    on_ready()
    while True:
        yield from it
        epoch += 1
        it = _epoch_iterator(loader, seed, epoch)


def train(model: nn.Module, task: Task | str, train_loader, val_loader=None, *, steps: int, lr: float,
          device="auto", seed: int = 0, checkpoint_path=None, resume: bool = True, eval_every: int | None = None,
          progress: bool = True, weight_decay: float = 1e-4, warmup_steps: int | None = None,
          schedule: str = "cosine", grad_clip: float | None = 1.0, amp: str | bool = "auto",
          checkpoint_every: int | None = None, loss_fn: nn.Module | None = None,
          callback: Callable[[int, dict], None] | None = None) -> TrainResult:
    """Train ``model`` on ``task`` for ``steps`` optimiser steps (see the module docstring).

    Args:
        model: maps (B, 3, H, W) images to (B, task.num_outputs, H, W) logits.
        train_loader: batches ``{"image", "mask", ...}`` (:func:`emclip.data.make_dataloader`).
        val_loader: optional; Dice per region every ``eval_every`` steps and at the end.
        steps, lr: optimiser steps and peak learning rate (AdamW).
        device: ``"auto"`` (GPU when present), ``"cpu"``, ``"cuda"``...; under torchrun each
            process uses its ``LOCAL_RANK`` GPU.
        seed: seeds Python/NumPy/torch and the per-epoch batch order.
        checkpoint_path: where to save (atomically); with ``resume`` an existing file resumes.
        checkpoint_every: save every this many steps (default: ``eval_every``, else at the end only).
        warmup_steps: linear warm-up (default 5% of ``steps``); ``schedule``: cosine, poly, constant.
        grad_clip: max gradient norm (``None``: off). ``amp``: bf16 autocast, ``"auto"`` = on GPU only.
        loss_fn: default :func:`emclip.losses.get_loss` of the task.
        callback: ``callback(step, row)`` after each step (row: the history entry).

    Raises:
        ValueError: task/model mismatch, mask values outside the task's labels, bad arguments.
        RuntimeError: a non-finite loss (the run stops; the last checkpoint stays valid).
    """
    task = get_task(task)
    check_model_task(model, task)
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}.")
    if not lr or lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr!r}.")
    seed_everything(seed)
    distributed = ddp.is_distributed()
    device = ddp.local_device() if distributed else get_device(device)
    use_amp = device.type == "cuda" if amp == "auto" else bool(amp)
    main = ddp.is_main_process()
    bare = unwrap(model).to(device)
    if device.type == "cuda":
        bare = bare.to(memory_format=torch.channels_last)
    params = [p for p in bare.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters (everything is frozen).")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    warmup = max(1, round(0.05 * steps)) if warmup_steps is None else int(warmup_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(steps, warmup, schedule))
    loss_fn = loss_fn or get_loss(task)
    checkpoint_every = checkpoint_every or eval_every

    start, rows, rng = 0, [], None
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    if checkpoint_path is not None and resume and checkpoint_path.is_file():
        ckpt = load_checkpoint(checkpoint_path, bare, optimizer, scheduler, map_location="cpu")
        start, rng = int(ckpt["step"]), ckpt["rng"]
        hist = ckpt.get("history") or {}
        rows = pd.DataFrame(hist).to_dict("records") if hist else []
    net = ddp.wrap_model(bare, device)
    net.train()

    def save(step: int) -> None:
        if checkpoint_path is not None and main:
            save_checkpoint(checkpoint_path, bare, optimizer, scheduler, step,
                            history=pd.DataFrame(rows).to_dict("list"), meta={"seed": seed, "steps": steps})
        ddp.barrier()

    def validate(row: dict) -> None:
        if val_loader is None or not main:
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            dice = mean_region_dice(bare, val_loader, task, device)
        row.update({f"val_dice_{k}": v for k, v in dice.items()})
        row["val_dice"] = float(np.mean(list(dice.values())))

    stream = _batches(train_loader, seed, start, lambda: set_rng_state(rng) if rng is not None else None)
    bar = tqdm(total=steps, initial=start, desc=f"train {unwrap(model).__class__.__name__}",
               disable=not (progress and main), dynamic_ncols=True)
    step = start
    while step < steps:
        batch = next(stream)
        mask = task.check_mask(batch["mask"], where=f"training mask at step {step + 1}")
        images = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        mask = mask.to(device, non_blocking=True)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_amp):
            logits = net(images)
        loss = loss_fn(logits.float(), mask)
        if not ddp.all_true(bool(torch.isfinite(loss))):  # every rank stops together
            discard_em_updates(bare)  # core-model: EM update after a finite loss
            bar.close()
            raise RuntimeError(
                f"Non-finite loss ({loss.item()} on rank {ddp.get_rank()}) at step {step + 1}: training stopped. Lower the learning rate "
                f"(lr={lr}), check the inputs for NaN/inf, or disable mixed precision (amp=False). "
                f"The last good checkpoint ({checkpoint_path}) is intact."
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip:
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        used_lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        update_em_bases(bare)  # core-model: EM update after a finite loss
        scheduler.step()
        step += 1
        row = {"step": step, "loss": float(loss.detach()), "lr": used_lr,
               "train_dice": float(region_dice(logits, mask, task).mean())}
        if val_loader is not None and (step == steps or (eval_every and step % eval_every == 0)):
            validate(row)
        rows.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", dice=f"{row['train_dice']:.3f}",
                        **({"val": f"{row['val_dice']:.3f}"} if "val_dice" in row else {}))
        if step == steps or (checkpoint_every and step % checkpoint_every == 0):
            save(step)
        if callback is not None:
            callback(step, row)
    bar.close()
    ddp.broadcast_buffers(bare)
    history = pd.DataFrame(rows)
    return TrainResult(bare.eval(), history, checkpoint_path if checkpoint_path is not None and main else None)


def train_from_profile(model_name: str, task: Task | str, train_domains, profile: str | Profile | None = None,
                       seed: int = 0, source: str = "synthetic", root=None, checkpoint_path=None,
                       steps: int | None = None, progress: bool = True, device="auto", resume: bool = True,
                       augment: bool = True, **model_overrides) -> TrainResult:
    """Build ``model_name`` for ``task`` and train it on ``train_domains``, sized by ``profile``.

    The recipe of notebooks 04/05 and the evaluation runner: data from
    :func:`emclip.data.domain_datasets` (train split; the val split of the same domains for
    validation), batch size, steps, lr and eval interval from the profile. Under torchrun each
    process trains on its shard with ``batch_size // world_size`` images.
    """
    from emclip.data import domain_datasets, make_dataloader
    from emclip.models import create_model

    task = get_task(task)
    prof = profile if isinstance(profile, Profile) else get_profile(profile)
    domains = [train_domains] if isinstance(train_domains, str) else list(train_domains)
    for d in domains:
        task.check_domain(d)
    seed_everything(seed)
    model = create_model(model_name, task, profile=prof, **model_overrides)
    train_ds = domain_datasets(task, domains, "train", prof, source=source, root=root, seed=seed)
    val_ds = domain_datasets(task, domains, "val", prof, source=source, root=root, seed=seed)
    if ddp.is_distributed():
        from emclip.data.augment import Augment
        from emclip.data.loaders import AugmentCollate

        per_rank = max(1, prof.batch_size // ddp.get_world_size())
        collate = AugmentCollate(Augment.from_spec(augment), seed + ddp.get_rank())
        train_loader = ddp.shard_loader(train_ds, per_rank, seed=seed, num_workers=prof.num_workers,
                                        collate_fn=collate)
    else:
        train_loader = make_dataloader(train_ds, prof.batch_size, shuffle=True, augment=augment, seed=seed,
                                       num_workers=prof.num_workers, drop_last=len(train_ds) >= prof.batch_size)
    val_loader = make_dataloader(val_ds, prof.batch_size, shuffle=False, num_workers=prof.num_workers)
    return train(model, task, train_loader, val_loader, steps=steps or prof.train_steps, lr=prof.lr,
                 device=device, seed=seed, checkpoint_path=checkpoint_path, resume=resume,
                 eval_every=prof.eval_every, progress=progress)
