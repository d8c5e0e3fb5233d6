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
