"""Benchmark: EMAggregation vs non-local attention, time and peak memory, N = 1k..16k tokens.

    python benchmarks/bench_em.py                 # C=512, K=64, T=3, N = 1k, 2k, 4k, 8k, 16k, CPU (+ GPU)
    python benchmarks/bench_em.py --ns 1024 2048 --no-memory --threads 1

Memory method (see emclip.attention_cost): on CPU the growth of the peak resident set over one
forward, measured in a fresh subprocess per row (VmHWM reset before the forward); on CUDA
torch.cuda.max_memory_allocated. ``attn_MiB`` is the theoretical attention map alone. The
non-local block at 16k tokens needs a 1 GiB N x N map (2 GiB with its softmax): it is timed once.
"""

from __future__ import annotations

import argparse

import torch

from emclip.attention_cost import attention_cost


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384])
    parser.add_argument("--channels", type=int, default=512)
    parser.add_argument("--bases", type=int, default=64)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--no-memory", action="store_true", help="skip the CPU memory subprocesses")
    parser.add_argument("--no-gpu", action="store_true", help="CPU only even when CUDA is present")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() and not args.no_gpu else [])
    print(f"C={args.channels} K={args.bases} T={args.iters} threads={torch.get_num_threads()} "
          f"torch {torch.__version__}")
    for device in devices:
        table = attention_cost(args.ns, args.channels, args.bases, args.iters, device=device,
                               repeats=args.repeats, measure_cpu_memory=not args.no_memory)
        wide = table.pivot(index="N", columns="method", values=["time_ms", "attn_MiB", "peak_MiB"])
        wide[("speed-up", "nonlocal/em")] = wide[("time_ms", "nonlocal")] / wide[("time_ms", "em")]
        name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
        print(f"\n== {device} ({name}); memory: {table['mem_method'].iloc[0]}")
        print(wide.round(2).to_string())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
