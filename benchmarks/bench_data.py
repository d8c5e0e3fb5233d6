"""Synthetic data throughput: samples per second per task at 128x128 on one core.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_data.py [--size 128] [--n 300]``.
Prints wall-clock and process-CPU rates (the CPU rate is the honest number on a shared
machine); the target of issue 3 is >= 200 samples/s per core.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

from emclip.data import get_dataset  # noqa: E402
from emclip.tasks import get_task  # noqa: E402

TARGET = 200.0


def bench(task: str, size: int, n: int) -> tuple[float, float]:
    domains = get_task(task).domains
    sets = [get_dataset(task, d, "train", size=size, n=n) for d in domains]
    sets[0][0]  # warm the caches (grids, matrices)
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        sets[i % len(sets)][i]
    return n / (time.perf_counter() - wall), n / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--n", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"synthetic data, {args.size}x{args.size}, one thread, {args.n} samples over the 4 domains")
    for task in ("fundus", "cardiac"):
        wall, cpu = bench(task, args.size, args.n)
        verdict = "OK" if cpu >= TARGET else f"below the {TARGET:.0f}/s target"
        print(f"{task:8s} {wall:7.1f} samples/s (wall)  {cpu:7.1f} samples/s (process CPU)  {verdict}")


if __name__ == "__main__":
    main()
