"""EM iterations against an independent float64 reference, and the EMAggregation module."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emclip.em import (
    EMAggregation,
    EMOutput,
    ResidualBlock,
    discard_em_updates,
    e_step,
    em_history,
    em_iterations,
    em_objective,
    init_bases,
    low_rank_reconstruction,
    m_step,
    update_em_bases,
)


def reference_em(x: np.ndarray, mu: np.ndarray, iters: int, lam: float):
    """Dense float64 EM written with explicit loops over the batch and the bases."""
    x = x.astype(np.float64)
    mu = mu.astype(np.float64).copy()
    batch, _, n = x.shape
    k = mu.shape[2]
    z = None
    for _ in range(iters):
        z = np.zeros((batch, n, k))
        new_mu = np.zeros_like(mu)
        for b in range(batch):
            logits = lam * x[b].T @ mu[b]  # (N, K)
            logits -= logits.max(axis=1, keepdims=True)
            e = np.exp(logits)
            z[b] = e / e.sum(axis=1, keepdims=True)
            for j in range(k):
                weights = z[b][:, j] / (1e-6 + z[b][:, j].sum())
                basis = (x[b] * weights[None, :]).sum(axis=1)
                new_mu[b][:, j] = basis / (1e-6 + np.sqrt((basis**2).sum()))
        mu = new_mu
    return mu, z


def _random_case(seed, b=2, c=16, n=50, k=5):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, n, generator=g)
    mu = torch.nn.functional.normalize(torch.randn(b, c, k, generator=g), dim=1)
    return x, mu


@pytest.mark.parametrize("seed,iters,lam", [(0, 1, 1.0), (1, 3, 1.0), (2, 5, 0.3), (3, 3, 4.0)])
def test_em_iterations_matches_float64_reference(seed, iters, lam):
    x, mu = _random_case(seed)
    got_mu, got_z = em_iterations(x, mu, iters, lam)
    ref_mu, ref_z = reference_em(x.numpy(), mu.numpy(), iters, lam)
    assert got_mu.shape == (2, 16, 5) and got_z.shape == (2, 50, 5)
    np.testing.assert_allclose(got_mu.numpy(), ref_mu, atol=1e-5)
    np.testing.assert_allclose(got_z.numpy(), ref_z, atol=1e-5)


def test_responsibilities_sum_to_one_and_bases_unit_norm():
    x, mu = _random_case(4, b=3, c=8, n=40, k=6)
    mu_t, z_t = em_iterations(x * 5, mu, 4, 2.0)
    torch.testing.assert_close(z_t.sum(dim=2), torch.ones(3, 40), atol=1e-6, rtol=0)
    assert (z_t >= 0).all()
    torch.testing.assert_close(mu_t.norm(dim=1), torch.ones(3, 6), atol=1e-5, rtol=0)


def test_shared_bases_broadcast_and_history_matches():
    x, mu = _random_case(5, b=3)
    shared = mu[:1]
    mu_a, z_a = em_iterations(x, shared, 3, 1.0)
    mu_b, z_b = em_iterations(x, shared.expand(3, -1, -1).clone(), 3, 1.0)
    torch.testing.assert_close(mu_a, mu_b)
    history = em_history(x, shared, 3, 1.0)
    assert len(history) == 3
    torch.testing.assert_close(history[-1][0], mu_a)
    torch.testing.assert_close(history[-1][1], z_a)
    torch.testing.assert_close(history[0][1], e_step(x, shared.expand(3, -1, -1), 1.0))
    torch.testing.assert_close(history[0][0], m_step(x, history[0][1]))


@pytest.mark.parametrize("seed,lam", [(0, 1.0), (1, 8.0), (2, 30.0)])
def test_em_never_decreases_the_vmf_mixture_likelihood(seed, lam):
    x, mu = _random_case(seed, c=6, n=80, k=4)
    x = torch.nn.functional.normalize(x.double(), dim=1)  # unit features: the von Mises-Fisher view
    values = [em_objective(x, mu.double(), lam)]
    for mu_t, _ in em_history(x, mu.double(), 8, lam):
        values.append(em_objective(x, mu_t, lam))
    steps = torch.stack(values[1:]) - torch.stack(values[:-1])
    assert (steps >= -1e-6).all(), steps
    assert (values[-1] > values[0]).all()


def test_em_separates_two_clear_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.nn.functional.normalize(torch.randn(2, 8, generator=g), dim=1)
    points = torch.cat([centres[0] + 0.05 * torch.randn(30, 8, generator=g),
                        centres[1] + 0.05 * torch.randn(30, 8, generator=g)])
    x = points.T.unsqueeze(0)  # (1, 8, 60)
    mu, z = em_iterations(x, centres.T.unsqueeze(0) + 0.3 * torch.randn(1, 8, 2, generator=g), 5, 20.0)
    assignment = z[0].argmax(dim=1)
    assert (assignment[:30] == assignment[0]).all() and (assignment[30:] == assignment[30]).all()
    assert assignment[0] != assignment[30]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_input_is_accumulated_in_float32(dtype):
    x, mu = _random_case(6, c=32, n=400, k=8)
    got_mu, got_z = em_iterations(x.to(dtype), mu.to(dtype), 3, 1.0)
    assert got_mu.dtype == dtype and got_z.dtype == dtype
    ref_mu, ref_z = em_iterations(x.to(dtype).float(), mu.to(dtype).float(), 3, 1.0)
    # only the final rounding to the low-precision dtype differs
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(got_mu.float(), ref_mu, atol=tol, rtol=0)
    torch.testing.assert_close(got_z.float(), ref_z, atol=tol, rtol=0)


def test_autocast_does_not_lower_the_em_precision():
    """Under bf16 autocast (the engine's amp) the E/M-step bmm must still run in float32."""
    x, mu = _random_case(7, c=32, n=256, k=8)
    ref_mu, ref_z = em_iterations(x, mu, 3, 1.0)
    ref_obj = em_objective(x, mu)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got_mu, got_z = em_iterations(x, mu, 3, 1.0)
        got_obj = em_objective(x, mu)
        (hist_mu, hist_z), = em_history(x, mu, 1, 1.0)[-1:]
    torch.testing.assert_close(got_mu, ref_mu, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_z, ref_z, atol=1e-6, rtol=0)
    torch.testing.assert_close(got_obj, ref_obj, atol=1e-4, rtol=1e-6)
    torch.testing.assert_close(hist_mu, em_iterations(x, mu, 1, 1.0)[0], atol=1e-6, rtol=0)


def test_history_keeps_the_compute_dtype_between_rounds():
    x, mu = _random_case(8, c=32, n=256, k=8)
    xb, mub = x.bfloat16(), mu.bfloat16()
    last_mu, last_z = em_history(xb, mub, 3, 1.0)[-1]
    want_mu, want_z = em_iterations(xb, mub, 3, 1.0)
    assert torch.equal(last_mu, want_mu) and torch.equal(last_z, want_z)


@pytest.mark.parametrize("args,match", [
    ((torch.randn(2, 4), torch.randn(2, 4, 3), 3, 1.0), "x must have shape"),
    ((torch.randn(2, 4, 9), torch.randn(2, 5, 3), 3, 1.0), "channels"),
    ((torch.randn(2, 4, 9), torch.randn(3, 4, 3), 3, 1.0), "batch"),
    ((torch.randn(2, 4, 9), torch.randn(2, 4, 3), 0, 1.0), "iters"),
    ((torch.randn(2, 4, 9), torch.randn(2, 4, 3), 2, -1.0), "lam"),
])
def test_em_iterations_rejects_bad_input(args, match):
    with pytest.raises(ValueError, match=match):
        em_iterations(*args)
    with pytest.raises(TypeError, match="floating-point"):
        em_iterations(torch.ones(1, 2, 3, dtype=torch.int64), torch.randn(1, 2, 2), 1, 1.0)


def _module(seed=0, **kwargs):
    torch.manual_seed(seed)
    return EMAggregation(8, num_bases=4, **kwargs)


def test_init_bases_unit_norm_and_module_buffer():
    mu = init_bases(16, 8, torch.Generator().manual_seed(0))
    assert mu.shape == (1, 16, 8)
    torch.testing.assert_close(mu.norm(dim=1), torch.ones(1, 8))
    module = _module()
    assert "mu" in dict(module.named_buffers()) and "mu" not in dict(module.named_parameters())
    torch.testing.assert_close(module.mu.norm(dim=1), torch.ones(1, 4))


def test_module_forward_shapes_and_reconstruction():
    module = _module().eval()
    x = torch.randn(2, 8, 5, 6)
    out = module(x)
    assert isinstance(out, EMOutput)
    assert out.features.shape == (2, 8, 5, 6)
    assert out.bases.shape == (2, 8, 4) and out.responsibilities.shape == (2, 30, 4)
    # the bases/responsibilities are those of em_iterations on conv_in(x) from the buffer
    with torch.no_grad():
        feats = module.conv_in(x).reshape(2, 8, 30)
        mu, z = em_iterations(feats, module.mu, module.eval_iters, module.lam)
        rec = torch.relu(low_rank_reconstruction(mu, z).reshape(2, 8, 5, 6))
        expected = torch.relu(x + module.norm(module.conv_out(rec)))
    torch.testing.assert_close(out.bases, mu)
    torch.testing.assert_close(out.features, expected)


@pytest.mark.parametrize("backprop_last_step", [True, False])
def test_gradients_reach_weights_and_input_but_not_the_bases_buffer(backprop_last_step):
    module = _module(backprop_last_step=backprop_last_step).train()
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = module(x)
    (out.features ** 2).mean().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert module.conv_out.weight.grad.abs().sum() > 0
    assert module.norm.weight.grad.abs().sum() > 0
    assert not module.mu.requires_grad and module.mu.grad is None
    conv_in_grad = module.conv_in.weight.grad
    if backprop_last_step:
        assert conv_in_grad is not None and conv_in_grad.abs().sum() > 0
    else:  # EMANet exactly: the EM path is a constant for autograd, conv_in gets nothing
        assert conv_in_grad is None
        assert not out.bases.requires_grad and not out.responsibilities.requires_grad


def test_backprop_last_step_does_not_change_forward_values():
    x = torch.randn(2, 8, 4, 4)
    a = _module(backprop_last_step=True).eval()(x)
    b = _module(backprop_last_step=False).eval()(x)
    torch.testing.assert_close(a.features, b.features)
    torch.testing.assert_close(a.bases, b.bases)


@pytest.mark.parametrize("renormalize", [True, False])
def test_buffer_moves_by_moving_average_only_when_the_trainer_applies_it(renormalize):
    module = _module(momentum=0.9, renormalize=renormalize)
    x = torch.randn(3, 8, 4, 4)
    before = module.mu.clone()
    module.eval()
    with torch.no_grad():
        module(x)
    assert update_em_bases(module) == 0  # eval forwards record nothing
    torch.testing.assert_close(module.mu, before, rtol=0, atol=0)
    module.train()
    with torch.no_grad():
        out = module(x)
    torch.testing.assert_close(module.mu, before, rtol=0, atol=0)  # a forward alone never writes the buffer
    assert update_em_bases(module) == 1
    expected = 0.9 * before + 0.1 * out.bases.mean(dim=0, keepdim=True)
    if renormalize:
        expected = expected / (1e-6 + expected.norm(dim=1, keepdim=True))
    torch.testing.assert_close(module.mu, expected)
    assert not torch.equal(module.mu, before)
    assert update_em_bases(module) == 0  # applied once


def test_updates_average_every_forward_since_the_last_update_and_can_be_discarded():
    module = _module(momentum=0.5).train()
    before = module.mu.clone()
    a, b = torch.randn(2, 8, 3, 3), torch.randn(3, 8, 3, 3)
    with torch.no_grad():
        bases = torch.cat([module(a).bases, module(b).bases])  # e.g. gradient accumulation
    update_em_bases(torch.nn.Sequential(module))  # finds the unit inside a bigger model
    expected = 0.5 * before + 0.5 * bases.mean(dim=0, keepdim=True)
    torch.testing.assert_close(module.mu, expected / (1e-6 + expected.norm(dim=1, keepdim=True)))
    after = module.mu.clone()
    with torch.no_grad():
        module(torch.full((2, 8, 3, 3), float("nan")))  # a bad batch ...
    discard_em_updates(module)  # ... whose loss was not finite
    assert update_em_bases(module) == 0
    torch.testing.assert_close(module.mu, after, rtol=0, atol=0)
    assert torch.isfinite(module.mu).all()


@pytest.mark.parametrize("iters", [1, 2, 3])
def test_training_backward_works_for_every_t_even_after_the_update(iters):
    """T = 1 used to fail: the buffer entered the E-step without a copy and was then updated in place."""
    module = _module(iters=iters).train()
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    out = module(x)
    update_em_bases(module)  # EMANet updates before backward; the E-step must hold its own copy
    (out.features ** 2).mean().backward()
    assert x.grad is not None and module.conv_in.weight.grad.abs().sum() > 0


def test_momentum_one_freezes_the_bases():
    module = _module(momentum=1.0).train()
    before = module.mu.clone()
    module(torch.randn(2, 8, 3, 3))
    update_em_bases(module)
    torch.testing.assert_close(module.mu, before, rtol=0, atol=1e-6)


def test_l2_input_norm_makes_responsibilities_independent_of_the_feature_scale():
    x = torch.randn(2, 8, 4, 4)
    scaled = {norm: [_module(input_norm=norm).eval()(a * x).responsibilities for a in (0.1, 1.0, 30.0)]
              for norm in ("l2", "none")}
    for z in scaled["l2"][1:]:  # lam is a vMF concentration: only the direction of a feature counts
        torch.testing.assert_close(z, scaled["l2"][0], atol=1e-5, rtol=0)
    assert (scaled["none"][2] - scaled["none"][0]).abs().max() > 0.1  # EMANet's raw features: it does not


def test_emanet_exact_mode_freezes_the_conv_that_gets_no_gradient():
    module = _module(backprop_last_step=False).train()
    assert not module.conv_in.weight.requires_grad  # DDP then finds no unused parameter
    (module(torch.randn(2, 8, 4, 4)).features ** 2).mean().backward()
    unused = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused


def test_residual_block_is_the_em_unit_without_the_em_iterations():
    torch.manual_seed(0)
    block = ResidualBlock(8, norm="group", input_norm="l2")
    em = _module(norm="group", input_norm="l2")
    assert {n for n, _ in block.named_parameters()} == {n for n, _ in em.named_parameters()}
    x = torch.randn(2, 8, 4, 4)
    out = block(x)
    feats = torch.nn.functional.normalize(block.conv_in(x).reshape(2, 8, 16), dim=1, eps=1e-6)
    expected = torch.relu(x + block.norm(block.conv_out(torch.relu(feats.reshape(2, 8, 4, 4)))))
    torch.testing.assert_close(out.features, expected, atol=1e-5, rtol=0)
    assert out.bases is None and out.responsibilities is None


def test_eval_iters_is_respected():
    module = _module(iters=3, eval_iters=1).eval()
    x = torch.randn(2, 8, 4, 4)
    out = module(x)
    with torch.no_grad():
        feats = module.conv_in(x).reshape(2, 8, 16)
        one, _ = em_iterations(feats, module.mu, 1, module.lam)
        three, _ = em_iterations(feats, module.mu, 3, module.lam)
    torch.testing.assert_close(out.bases, one)
    assert not torch.allclose(out.bases, three)
    assert _module(iters=2).eval_iters == 2


def test_deterministic_under_a_seed():
    x = torch.randn(2, 8, 4, 4)
    outs = []
    for _ in range(2):
        module = _module(seed=7).train()
        features = module(x).features.detach()
        update_em_bases(module)
        outs.append((features, module.mu.clone()))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=0, atol=0)
    torch.testing.assert_close(outs[0][1], outs[1][1], rtol=0, atol=0)
    assert not torch.equal(_module(seed=8).mu, outs[0][1])


def test_module_with_bf16_autocast_and_group_norm():
    module = _module(norm="group").eval()
    x = torch.randn(2, 8, 4, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = module(x)
    assert torch.isfinite(out.features.float()).all()
    torch.testing.assert_close(out.responsibilities.float().sum(dim=2), torch.ones(2, 16), atol=2e-2, rtol=0)
    reference = module(x)
    torch.testing.assert_close(out.bases.float(), reference.bases, atol=5e-2, rtol=0)


def test_module_rejects_bad_arguments_and_input():
    with pytest.raises(ValueError, match="norm must be one of"):
        EMAggregation(8, norm="layer")
    with pytest.raises(ValueError, match="momentum"):
        EMAggregation(8, momentum=1.5)
    with pytest.raises(ValueError, match="eval_iters"):
        EMAggregation(8, eval_iters=0)
    with pytest.raises(ValueError, match="channels=16"):
        _module()(torch.randn(1, 16, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        _module()(torch.randn(8, 4, 4))


@pytest.mark.gpu
def test_em_iterations_on_cuda_matches_cpu():
    x, mu = _random_case(9, c=32, n=300, k=8)
    got_mu, got_z = em_iterations(x.cuda(), mu.cuda(), 3, 1.0)
    ref_mu, ref_z = em_iterations(x, mu, 3, 1.0)
    torch.testing.assert_close(got_mu.cpu(), ref_mu, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_z.cpu(), ref_z, atol=1e-5, rtol=0)
