"""The training loop: AdamW, warm-up + cosine/poly schedule, mixed precision on GPU, exact resume, DDP.

``train(model, task, train_loader, val_loader, steps=..., lr=...)`` runs ``steps`` optimiser
steps and returns a :class:`TrainResult` whose ``history`` DataFrame has one row per step:
``step, loss, lr, train_dice`` and, every ``eval_every`` steps, ``val_dice_<region>`` and
``val_dice`` (their mean). :func:`emclip.engine.recipe.train_from_profile` is the one-call
recipe of notebooks 05/06 and the evaluation runner.

Every checkpoint carries the run record (:mod:`emclip.engine.record`). A checkpoint is resumed
only when the requested run is the same (otherwise :class:`~emclip.errors.RunMismatchError`
says what differs), and a finished one is never overwritten unless ``overwrite=True``.

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

from emclip.data.pipeline import BatchLoader
from emclip.em import discard_em_updates, update_em_bases
from emclip.engine import distributed as ddp
from emclip.engine.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint, set_rng_state, unwrap
from emclip.engine.precision import select_precision
from emclip.engine.predict import mean_region_dice, region_dice
from emclip.engine.record import TrainSettings, check_same_run, make_record
from emclip.errors import CheckpointError
from emclip.fileio import check_output_path
from emclip.losses import get_loss
from emclip.runtime import get_device, seed_everything
from emclip.tasks import Task, get_task

SCHEDULES = ("cosine", "poly", "constant")


@dataclass
class TrainResult:
    """What :func:`train` returns: the trained (unwrapped) model, its history, the checkpoint,
    the run record and how many steps this call ran (0 when a finished checkpoint was reused)."""

    model: nn.Module
    history: pd.DataFrame
    checkpoint_path: Path | None
    record: dict
    steps_run: int

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
    loader's generator (from which an :class:`emclip.data.pipeline.BatchLoader` draws each epoch's
    augmentation seeds) and the augmentation generator of a collate function that has one.
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
    augment_generator = getattr(loader.collate_fn, "generator", None)  # a collate function that augments
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


def _loader_data(train_loader, val_loader) -> dict:
    """The ``data`` section of a record when :func:`train` gets bare loaders (no description)."""
    def size(loader):
        try:
            return len(loader.dataset)
        except (AttributeError, TypeError):
            return None

    return {"given": "loaders passed to train()", "train_images": size(train_loader),
            "val_images": size(val_loader) if val_loader is not None else None}


OTHER_RUN = ("error", "keep")


def set_aside(path: Path) -> Path:
    """Rename ``path`` to a free ``<stem>.other-run-<n>.pt`` beside it (nothing is deleted); the new path."""
    for n in range(1, 10_000):
        target = path.with_name(f"{path.stem}.other-run-{n}{path.suffix}")
        if not target.exists():
            path.rename(target)
            return target
    raise CheckpointError(f"Too many set-aside checkpoints beside {path}; delete some.")


def _existing_checkpoint(path: Path | None, record: dict, resume: bool, overwrite: bool,
                         other_run: str = "error") -> dict | None:
    """The checkpoint to resume from (or ``None``); refuses what must not be resumed or overwritten."""
    if other_run not in OTHER_RUN:
        raise ValueError(f"other_run={other_run!r}; valid: {', '.join(OTHER_RUN)}.")
    if path is None or not path.exists() or overwrite:
        return None
    try:
        ckpt = read_checkpoint(path)  # CheckpointError (naming the path) for an unreadable file
        if resume:
            check_same_run(ckpt["record"], record, path, "resume")
            return ckpt
    except CheckpointError as err:  # RunMismatchError too (a subclass)
        if other_run != "keep" or not resume:
            raise
        kept = set_aside(path)
        print(f"{path.name} held another run ({str(err).split(': ', 1)[-1][:200]}); kept it as {kept.name} "
              "and training this run from the start.")
        return None
    if ckpt.get("finished"):
        raise CheckpointError(f"{path} holds a finished run ({ckpt['step']} steps). Pass resume=True (emclip train "
                              "--resume) to reuse it when the run is identical, overwrite=True (--overwrite) to "
                              "replace it, or another checkpoint path.")
    return None


def train(model: nn.Module, task: Task | str, train_loader, val_loader=None, *, steps: int, lr: float,
          device="auto", seed: int = 0, checkpoint_path=None, resume: bool = True, overwrite: bool = False,
          other_run: str = "error",
          eval_every: int | None = None, progress: bool = True, weight_decay: float = 1e-4,
          warmup_steps: int | None = None, schedule: str = "cosine", grad_clip: float | None = 1.0,
          amp: str | bool = "auto", checkpoint_every: int | None = None, loss_fn: nn.Module | None = None,
          callback: Callable[[int, dict], None] | None = None, data: dict | None = None,
          profile: str | None = None) -> TrainResult:
    """Train ``model`` on ``task`` for ``steps`` optimiser steps (see the module docstring).

    Args:
        model: maps (B, 3, H, W) images to (B, task.num_outputs, H, W) logits.
        train_loader: batches ``{"image", "mask", ...}`` (:func:`emclip.data.make_dataloader`).
        val_loader: optional; Dice per region every ``eval_every`` steps and at the end.
        steps, lr: optimiser steps (>= 1) and peak learning rate (AdamW).
        device: ``"auto"`` (GPU when present), ``"cpu"``, ``"cuda"``...; under torchrun each
            process uses its ``LOCAL_RANK`` GPU.
        seed: seeds Python/NumPy/torch and the per-epoch batch order.
        checkpoint_path: where to save (atomically), with the run record (:mod:`emclip.engine.record`).
        resume: continue the checkpoint at ``checkpoint_path`` when it holds the *same* run
            (identical record; otherwise :class:`~emclip.errors.RunMismatchError` lists what
            differs); a finished one is returned as it is.
        other_run: with ``resume``, what to do when ``checkpoint_path`` holds another run (or a file
            this version cannot read): ``"error"`` (default) raises; ``"keep"`` renames that file to
            ``<stem>.other-run-<n>.pt`` beside it and trains this run from the start (what a notebook
            wants after the kit's defaults changed: nothing is lost, nothing fails).
        overwrite: train from scratch over whatever is at ``checkpoint_path``. Without ``resume``
            or ``overwrite`` a *finished* checkpoint there is never overwritten
            (:class:`~emclip.errors.CheckpointError`).
        checkpoint_every: save every this many steps (default: ``eval_every``, else at the end only).
        warmup_steps: linear warm-up (default 5% of ``steps``); ``schedule``: cosine, poly, constant.
        grad_clip: max gradient norm (``None``: off).
        amp: precision of training and validation (:func:`emclip.engine.precision.select_precision`:
            ``"auto"`` = bf16 on CUDA where supported, else fp16 with a GradScaler; fp32 on the CPU).
        loss_fn: default :func:`emclip.losses.get_loss` of the task.
        callback: ``callback(step, row)`` after each step (row: the history entry).
        data, profile: the record's ``data`` section and profile name (:func:`train_from_profile`
            fills them; by default the data section only counts the loaders' images).

    Raises:
        ConfigError / ValueError: task/model mismatch, mask values outside the task's labels, bad arguments.
        CheckpointError, RunMismatchError: see ``resume`` and ``overwrite``.
        RuntimeError: a non-finite loss (the run stops; a checkpoint already written stays valid).
    """
    task = get_task(task)
    check_model_task(model, task)
    settings = TrainSettings(steps, lr, seed, weight_decay, warmup_steps, schedule, grad_clip, amp)
    schedule_fn = lr_lambda(steps, settings.warmup, schedule)
    seed_everything(seed)
    distributed = ddp.is_distributed()
    device = ddp.local_device() if distributed else get_device(device)
    precision = select_precision(device, amp)
    main = ddp.is_main_process()
    bare = unwrap(model)
    train_section = settings.section(getattr(train_loader, "batch_size", None), ddp.get_world_size(),
                                     "default" if loss_fn is None else type(loss_fn).__name__)
    record = make_record(bare, task.name, data if data is not None else _loader_data(train_loader, val_loader),
                         train_section, profile, runtime={"device": device.type, "precision": precision.name})
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    ckpt = _existing_checkpoint(checkpoint_path, record, resume, overwrite, other_run)
    if checkpoint_path is not None and main:
        check_output_path(checkpoint_path, "file")  # before any work: not a folder, not under a file, writable
    bare = bare.to(device)
    if isinstance(train_loader, BatchLoader):
        train_loader.to(device)  # batches are delivered and augmented on the training device
    if device.type == "cuda":
        bare = bare.to(memory_format=torch.channels_last)
    params = [p for p in bare.parameters() if p.requires_grad]
    if not params:
        raise ValueError("The model has no trainable parameters (everything is frozen).")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule_fn)
    scaler = precision.grad_scaler()
    loss_fn = loss_fn or get_loss(task)
    checkpoint_every = checkpoint_every or eval_every

    start, rows, rng, saved_at = 0, [], None, None
    if ckpt is not None:
        load_checkpoint(checkpoint_path, bare, optimizer, scheduler, scaler)
        start, rng, saved_at = int(ckpt["step"]), ckpt["rng"], int(ckpt["step"])
        rows = pd.DataFrame(ckpt["history"]).to_dict("records") if ckpt["history"] else []
    net = ddp.wrap_model(bare, device)
    net.train()

    def save(step: int) -> None:
        if checkpoint_path is not None and main:
            save_checkpoint(checkpoint_path, bare, record, optimizer, scheduler, step,
                            history=pd.DataFrame(rows).to_dict("list"), scaler=scaler)
        ddp.barrier()

    def validate(row: dict) -> None:
        if val_loader is None or not main:
            return
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            dice = mean_region_dice(bare, val_loader, task, device, amp)
        row.update({f"val_dice_{k}": v for k, v in dice.items()})
        row["val_dice"] = float(np.mean(list(dice.values())))

    stream = _batches(train_loader, seed, start, lambda: set_rng_state(rng) if rng is not None else None)
    bar = tqdm(total=steps, initial=start, desc=f"train {bare.__class__.__name__}",
               disable=not (progress and main), dynamic_ncols=True)
    step = start
    while step < steps:
        batch = next(stream)
        mask = task.check_mask(batch["mask"], where=f"training mask at step {step + 1}")
        images = batch["image"].to(device, non_blocking=True)
        if device.type == "cuda":
            images = images.contiguous(memory_format=torch.channels_last)
        mask = mask.to(device, non_blocking=True)
        with precision.autocast():
            logits = net(images)
        loss = loss_fn(logits.float(), mask)
        if not ddp.all_true(bool(torch.isfinite(loss))):  # every rank stops together
            discard_em_updates(bare)  # a bad batch never reaches the EM bases
            bar.close()
            kept = (f"The last checkpoint ({checkpoint_path}, step {saved_at}) is intact." if saved_at is not None
                    else "No checkpoint of this run was written.")
            raise RuntimeError(
                f"Non-finite loss ({loss.item()} on rank {ddp.get_rank()}) at step {step + 1}: training stopped. "
                f"Lower the learning rate (lr={lr}), check the inputs for NaN/inf, or train in float32 "
                f"(amp='fp32'). {kept}")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        if grad_clip:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, grad_clip)
        used_lr = optimizer.param_groups[0]["lr"]
        scaler.step(optimizer)
        scaler.update()
        update_em_bases(bare)  # the EM bases move only after a finite loss (averaged over DDP ranks)
        scheduler.step()
        step += 1
        means = ddp.all_reduce_means(  # over the ranks' batches: every rank logs the same numbers
            {"loss": float(loss.detach()), "train_dice": float(region_dice(logits, mask, task).mean())})
        row = {"step": step, "loss": means["loss"], "lr": used_lr, "train_dice": means["train_dice"]}
        if val_loader is not None and (step == steps or (eval_every and step % eval_every == 0)):
            validate(row)
        rows.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", dice=f"{row['train_dice']:.3f}",
                        **({"val": f"{row['val_dice']:.3f}"} if "val_dice" in row else {}))
        if step == steps or (checkpoint_every and step % checkpoint_every == 0):
            save(step)
            saved_at = step
        if callback is not None:
            callback(step, row)
    bar.close()
    ddp.broadcast_buffers(bare)
    return TrainResult(bare.eval(), pd.DataFrame(rows), checkpoint_path if checkpoint_path is not None and main
                       else None, record, step - start)
