"""What EM attention saves: time and memory of :class:`~emclip.em.EMAggregation` against a
plain non-local (N x N) attention block as the number of tokens N grows.

EMANet's argument (Li et al., ICCV 2019): non-local attention (Wang et al., CVPR 2018) builds an
N x N affinity matrix, O(N^2 C) time and O(N^2) memory; EM attention only ever holds N x K
responsibilities, O(N K T C) time and O(N K) memory.

Memory is measured honestly, and the table says how (column ``mem_method``):

* CUDA: ``torch.cuda.max_memory_allocated`` minus the memory held before the forward.
* CPU (Linux): the growth of the peak resident set (``VmHWM``, reset just before) over one
  forward, in a fresh subprocess per (method, N) (``measure_cpu_memory=True``; a few seconds per
  row). It counts pages touched, including allocator slack and freed-then-reused memory, so it
  approximates the peak of live tensors; ``tracemalloc`` would miss torch's allocations.
* Always: ``attn_MiB``, the theoretical size of the attention map alone (N*N or N*K float32).

Time is measured (the best of ``repeats`` forwards, so it moves with the machine's load); the
work is also **counted**: ``gflop`` is the floating-point operations of one forward as
``torch.utils.flop_counter.FlopCounterMode`` counts them (2 per multiply-add of every matmul,
bmm and convolution; element-wise ops such as the softmax are not counted). The count does not
depend on the machine, so its ordering is stable run to run, and it is the measure to compare at
small N, where wall times are a fraction of a millisecond and noise decides their order.

Both blocks run in eval mode under ``torch.no_grad`` (inference cost; training keeps more
activations for the backward pass).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from emclip.em import EMAggregation

__all__ = ["METHODS", "NonLocalAttention", "attention_cost", "build_block", "count_flops", "time_forward"]

METHODS = ("em", "nonlocal")
_BIG_ATTENTION_BYTES = 256 * 2**20  # above this, non-local is timed once (a 16k x 16k map is 1 GiB)


class NonLocalAttention(nn.Module):
    """Embedded-Gaussian non-local block (Wang et al. 2018), the O(N^2) reference.

    ``y = x + W(g(x) softmax(theta(x)^T phi(x))^T)`` with 1x1 convs theta, phi, g (C -> C/2) and
    W (C/2 -> C). x (B, C, H, W) -> (B, C, H, W).
    """

    def __init__(self, channels: int):
        super().__init__()
        inner = max(1, channels // 2)
        self.theta, self.phi, self.g = (nn.Conv2d(channels, inner, 1) for _ in range(3))
        self.out = nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.theta(x).flatten(2)  # (B, C', N)
        k = self.phi(x).flatten(2)
        v = self.g(x).flatten(2)
        attn = F.softmax(torch.bmm(q.transpose(1, 2), k), dim=-1)  # (B, N, N)
        y = torch.bmm(v, attn.transpose(1, 2)).reshape(b, -1, h, w)
        return x + self.out(y)


def build_block(method: str, channels: int, num_bases: int = 64, iters: int = 3) -> nn.Module:
    """``"em"`` -> EMAggregation(channels, num_bases, iters); ``"nonlocal"`` -> NonLocalAttention."""
    if method == "em":
        return EMAggregation(channels, num_bases=num_bases, iters=iters)
    if method == "nonlocal":
        return NonLocalAttention(channels)
    raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def _tokens(n: int, channels: int, device) -> torch.Tensor:
    """A (1, C, 1, N) input: N tokens in a 1 x N grid (the 1x1 convs do not care about layout)."""
    return torch.randn(1, channels, 1, n, generator=torch.Generator().manual_seed(0)).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_forward(block: nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    """Best wall time (seconds) of ``repeats`` forwards, after one warm-up on 256 tokens.

    The minimum, as ``timeit`` advises: it is the run least disturbed by other processes.
    """
    block(x[..., :256])
    times = []
    for _ in range(max(1, repeats)):
        _sync(x.device)
        start = time.perf_counter()
        block(x)
        _sync(x.device)
        times.append(time.perf_counter() - start)
    return min(times)


@torch.no_grad()
def count_flops(block: nn.Module, x: torch.Tensor) -> int:
    """Floating-point operations of one forward of ``block`` on ``x`` (matmuls, bmm, convolutions)."""
    with FlopCounterMode(display=False) as counter:
        block(x)
    return int(counter.get_total_flops())


@torch.no_grad()
def _cuda_peak_bytes(block: nn.Module, x: torch.Tensor) -> int:
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    before = torch.cuda.memory_allocated(x.device)
    block(x)
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device) - before


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _rss_probe(method: str, n: int, channels: int, num_bases: int, iters: int) -> int:
    """Run in a fresh process: peak-RSS growth (bytes) of one forward at N tokens.

    Linux only: the peak (``VmHWM``) is reset through ``/proc/self/clear_refs`` just before the
    forward, so the earlier peaks of importing torch and building the input do not mask it.
    """
    torch.manual_seed(0)
    block = build_block(method, channels, num_bases, iters).eval()
    x = _tokens(n, channels, "cpu")
    with torch.no_grad():
        block(x[..., :256])  # load kernels and thread pools before the baseline
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        block(x)
        after = _status_kib("VmHWM")
    return (after - before) * 1024


def _cpu_peak_bytes_subprocess(method: str, n: int, channels: int, num_bases: int, iters: int) -> int:
    code = ("import json, torch, emclip.attention_cost as a; "
            f"torch.set_num_threads({torch.get_num_threads()}); "
            f"print(json.dumps(a._rss_probe({method!r}, {n}, {channels}, {num_bases}, {iters})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"memory probe for {method} at N={n} failed:\n{result.stderr[-2000:]}")
    return int(json.loads(result.stdout.strip().splitlines()[-1]))


def attention_cost(ns=(1024, 2048, 4096), channels: int = 512, num_bases: int = 64, iters: int = 3,
                   device: str | torch.device = "cpu", repeats: int = 3, methods=METHODS,
                   measure_cpu_memory: bool = False, seed: int = 0, threads: int | None = None):
    """Time (and memory) of each block at each N; a tidy pandas DataFrame.

    Columns: ``method, N, time_ms, gflop`` (counted, see the module docstring), ``attn_MiB``
    (theoretical attention map: N*N or N*K float32),
    ``peak_MiB`` (measured, NaN when not measured) and ``mem_method``. Non-local blocks whose
    N x N map exceeds 256 MiB are timed once whatever ``repeats``. ``threads`` (CPU): time with
    that many torch threads (restored afterwards); one thread keeps sub-millisecond timings from
    being swamped by thread-pool waits when other processes share the cores.
    """
    import pandas as pd

    from emclip.runtime import get_device

    device = get_device(device)
    previous_threads = torch.get_num_threads()
    if threads is not None and device.type == "cpu":
        torch.set_num_threads(threads)
    try:
        return pd.DataFrame(_cost_rows(ns, channels, num_bases, iters, device, repeats, methods,
                                       measure_cpu_memory, seed))
    finally:
        torch.set_num_threads(previous_threads)


def _cost_rows(ns, channels, num_bases, iters, device, repeats, methods, measure_cpu_memory, seed) -> list[dict]:
    rows = []
    for method in methods:
        torch.manual_seed(seed)
        block = build_block(method, channels, num_bases, iters).to(device).eval()
        for n in ns:
            attn_bytes = 4 * n * (n if method == "nonlocal" else num_bases)
            reps = 1 if method == "nonlocal" and attn_bytes > _BIG_ATTENTION_BYTES else repeats
            x = _tokens(int(n), channels, device)
            seconds = time_forward(block, x, reps)
            peak, how = float("nan"), "not measured"
            if device.type == "cuda":
                peak, how = _cuda_peak_bytes(block, x) / 2**20, "cuda.max_memory_allocated delta"
            elif measure_cpu_memory and device.type == "cpu":
                peak = _cpu_peak_bytes_subprocess(method, int(n), channels, num_bases, iters) / 2**20
                how = "peak RSS delta (VmHWM, subprocess)"
            rows.append({"method": method, "N": int(n), "time_ms": 1e3 * seconds, "repeats": reps,
                         "gflop": count_flops(block, x) / 1e9,
                         "attn_MiB": attn_bytes / 2**20, "peak_MiB": peak, "mem_method": how,
                         "device": device.type})
            del x
    return rows
