"""Is the loader ever the bottleneck? The loader's images/s next to the model's, in one run.

    python benchmarks/bench_loader.py                     # cpu profile sizes on the CPU
    python benchmarks/bench_loader.py --size 224 --batch 32 --workers 2 --model none
    python benchmarks/bench_loader.py --profile gpu       # on a GPU: 224 px, batch 32, ViT-B-16
    python benchmarks/bench_loader.py --compare-workers   # train_from_profile, many short epochs, 0 vs 2 workers

Prints, for one synthetic training split rendered once into the uint8 store
(:func:`emclip.data.domain_datasets`):

1. the rendering: seconds and samples/s (once per split and process);
2. the loader's images/s over several epochs (persistent workers): uint8 batches delivered to
   the device without augmentation, then converted and augmented there (``augment=True``);
3. the model's training images/s at the same batch and image size (``bench_train.py``'s step),
   and the ratio loader / model: the loader is not the bottleneck while it is above 1.

``--compare-workers`` times ``train_from_profile`` on a run of many short epochs with 0 and
with 2 loader workers (alternating, ``--repeats`` times each) and prints every time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_train  # noqa: E402

import emclip  # noqa: E402
from emclip.data import domain_datasets, make_dataloader  # noqa: E402
from emclip.data import store as store_module  # noqa: E402


def _cpu_seconds(pids) -> float:
    """User + system CPU seconds of processes (Linux /proc; 0 where unreadable)."""
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def loader_rate(store, batch: int, workers: int, augment, device, epochs: int) -> tuple[float, float]:
    """(images/s wall clock, CPU ms per image over the main process and the workers) of ``epochs``
    epochs over ``store`` (the first batch, which starts the workers, untimed).

    The CPU figure is the honest one on a shared machine: 1000 / it is the images/s one core of
    CPU time delivers, whatever else runs beside the benchmark.
    """
    from emclip.engine.train import _epoch_iterator

    loader = make_dataloader(store, batch, shuffle=True, augment=augment, seed=0, num_workers=workers,
                             drop_last=True, device=device)
    next(iter(_epoch_iterator(loader, 0, 0)))  # start the workers
    pids = [w.pid for w in getattr(loader._iterator, "_workers", [])]
    bench_train.sync(device)
    images, start = 0, time.perf_counter()
    cpu = time.process_time() + _cpu_seconds(pids)
    for epoch in range(1, epochs + 1):
        for b in _epoch_iterator(loader, 0, epoch):
            images += b["image"].shape[0]
    bench_train.sync(device)
    cpu = time.process_time() + _cpu_seconds(pids) - cpu
    return images / (time.perf_counter() - start), 1000 * cpu / images


def compare_workers(task: str, repeats: int, steps: int, threads: int | None) -> None:
    """train_from_profile, U-Net, 16 training images, batch 8 (2 batches per epoch): 0 vs 2 workers."""
    from emclip.engine import train_from_profile

    prof = emclip.get_profile("cpu").replace(train_per_domain=16, val_per_domain=8, batch_size=8, train_steps=steps,
                                             eval_every=10_000)
    print(f"train_from_profile('unet', {task!r}), cpu profile with 16 training images, batch 8, {steps} steps "
          f"({steps // 2} epochs), torch threads {torch.get_num_threads()}:")
    times: dict[int, list[float]] = {0: [], 2: []}
    for _ in range(repeats):
        for workers in (0, 2):
            store_module.clear_stores()  # every run renders its data, as a fresh process would
            start = time.perf_counter()
            train_from_profile("unet", task, [emclip.tasks.get_task(task).domains[0]],
                               profile=prof.replace(num_workers=workers), progress=False, device="cpu")
            times[workers].append(time.perf_counter() - start)
            print(f"    {workers} workers: {times[workers][-1]:6.1f} s")
    for workers, values in times.items():
        print(f"  {workers} workers: median {statistics.median(values):6.1f} s  (min {min(values):.1f}, "
              f"max {max(values):.1f}, {len(values)} runs)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="ci, cpu or gpu (default: cpu on CPU, gpu on CUDA)")
    parser.add_argument("--task", default="fundus")
    parser.add_argument("--size", type=int, default=None, help="image side (default: the profile's)")
    parser.add_argument("--batch", type=int, default=None, help="batch size (default: the profile's)")
    parser.add_argument("--n", type=int, default=None, help="images in the split (default: the profile's)")
    parser.add_argument("--workers", type=int, default=None, help="loader workers (default: the profile's)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--model", default="emclip", help="model for the side-by-side rate, or 'none'")
    parser.add_argument("--steps", type=int, default=3, help="timed training steps of the model")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--compare-workers", action="store_true", help="also time train_from_profile, 0 vs 2 workers")
    parser.add_argument("--repeats", type=int, default=2, help="runs per setting of --compare-workers")
    parser.add_argument("--compare-steps", type=int, default=40, help="training steps of --compare-workers")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = emclip.get_device(args.device)
    prof = emclip.get_profile(args.profile or ("gpu" if device.type == "cuda" else "cpu"))
    prof = prof.replace(image_size=args.size or prof.image_size, batch_size=args.batch or prof.batch_size,
                        train_per_domain=args.n or prof.train_per_domain,
                        num_workers=prof.num_workers if args.workers is None else args.workers)
    task = emclip.tasks.get_task(args.task)
    print(f"device {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, profile {prof.name}: "
          f"{prof.train_per_domain} images x {prof.image_size}px, batch {prof.batch_size}, "
          f"{prof.num_workers} workers, task {task.name}")
    start = time.perf_counter()
    store = domain_datasets(task, [task.domains[0]], "train", prof)
    seconds = time.perf_counter() - start
    print(f"render once : {seconds:7.2f} s  ({len(store) / seconds:8.1f} samples/s, {prof.num_workers} processes) "
          f"-> {store}")
    rates = {}
    for name, augment in (("uint8 delivery", False), ("+ augmentation", True)):
        rates[name], cpu_ms = loader_rate(store, prof.batch_size, prof.num_workers, augment, device, args.epochs)
        print(f"loader      : {rates[name]:8.1f} images/s  ({name}, on {device.type}; CPU {cpu_ms:.2f} ms/image "
              f"= {1000 / cpu_ms:8.0f} images/s per core)")
    if args.model != "none":
        r = bench_train.bench_model(args.model, prof, task, device, args.steps, warmup=1, parts=False)
        print(f"model       : {r['images/s']:8.1f} images/s  ({args.model} training step, {r['s/step']:.3f} s/step)")
        ratio = rates["+ augmentation"] / r["images/s"]
        verdict = "the loader keeps up" if ratio >= 1 else "the LOADER is the bottleneck"
        print(f"loader / model = {ratio:.1f}  ({verdict})")
    if args.compare_workers:
        compare_workers(task.name, args.repeats, args.compare_steps, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
