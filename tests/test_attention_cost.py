"""The attention-cost helper: the non-local reference block and the cost table."""

from __future__ import annotations

import pytest
import torch

from emclip.attention_cost import NonLocalAttention, attention_cost, build_block


def test_nonlocal_matches_a_dense_reference():
    torch.manual_seed(0)
    block = NonLocalAttention(8).eval()
    x = torch.randn(2, 8, 3, 4)
    with torch.no_grad():
        flat = x.flatten(2)
        q, k, v = (torch.einsum("oc,bcn->bon", conv.weight[:, :, 0, 0], flat) + conv.bias[None, :, None]
                   for conv in (block.theta, block.phi, block.g))
        attn = torch.softmax(torch.einsum("bcn,bcm->bnm", q, k), dim=-1)
        y = torch.einsum("bnm,bcm->bcn", attn, v)
        ref = flat + torch.einsum("oc,bcn->bon", block.out.weight[:, :, 0, 0], y) + block.out.bias[None, :, None]
        torch.testing.assert_close(block(x), ref.reshape(2, 8, 3, 4), atol=1e-5, rtol=1e-5)


def test_cost_table_rows_and_theoretical_memory():
    table = attention_cost(ns=(64, 256), channels=16, num_bases=4, iters=2, repeats=1)
    assert list(table["method"]) == ["em", "em", "nonlocal", "nonlocal"]
    assert (table["time_ms"] > 0).all()
    theory = dict(zip(zip(table["method"], table["N"]), table["attn_MiB"] * 2**20))
    assert theory[("em", 256)] == 4 * 256 * 4 and theory[("nonlocal", 256)] == 4 * 256 * 256
    assert table["peak_MiB"].isna().all() and set(table["mem_method"]) == {"not measured"}


def test_unknown_method_is_explained():
    with pytest.raises(ValueError, match="em, nonlocal"):
        build_block("transformer", 8)


def test_flop_count_is_the_exact_work_of_each_block():
    n, c = 64, 16
    inner = c // 2
    table = attention_cost(ns=(n,), channels=c, num_bases=4, iters=2, repeats=1).set_index("method")
    # non-local: theta, phi, g (C -> C/2) and out (C/2 -> C) convs, then Q^T K and V A^T: multiply-adds x 2
    macs = 3 * n * c * inner + n * inner * c + 2 * n * n * inner
    assert table.loc["nonlocal", "gflop"] * 1e9 == pytest.approx(2 * macs)
    again = attention_cost(ns=(n,), channels=c, num_bases=4, iters=2, repeats=1).set_index("method")
    assert (again["gflop"] == table["gflop"]).all()  # counted, not timed: identical run to run


def test_em_does_less_work_than_nonlocal_as_n_grows():
    table = attention_cost(ns=(256, 2048), channels=32, num_bases=8, iters=3, repeats=1)
    work = table.pivot(index="N", columns="method", values="gflop")
    assert work.loc[2048, "em"] < work.loc[2048, "nonlocal"]
    assert work.loc[2048, "nonlocal"] / work.loc[256, "nonlocal"] > 30  # ~N^2: 8x the tokens, >30x the work
    assert work.loc[2048, "em"] / work.loc[256, "em"] == pytest.approx(8, rel=0.05)  # ~N


def test_timing_threads_are_restored():
    before = torch.get_num_threads()
    attention_cost(ns=(64,), channels=8, num_bases=2, iters=1, repeats=1, threads=1)
    assert torch.get_num_threads() == before
