"""CLIPDenseEncoder: shapes, agreement with open_clip's own computations, errors, freezing; FeatureCache."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
from open_clip.model import resize_pos_embed

from emclip.clip import CLIPDenseEncoder, FeatureCache, load_clip
from emclip.clip.fast_blocks import fusable, vit_block
from emclip.errors import ConfigError


@pytest.fixture(scope="module")
def vit():
    return load_clip("emclip-tiny")


@pytest.fixture(scope="module")
def rn():
    return load_clip("emclip-tiny-rn")


def _images(b=2, h=64, w=64, seed=0):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_vit_shapes_at_two_sizes(vit, size):
    enc = CLIPDenseEncoder(vit, layers=[2, 4])
    feats = enc(_images(2, *size))
    h, w = size[0] // enc.reduction, size[1] // enc.reduction
    assert [tuple(f.shape) for f in feats] == [(2, c, h, w) for c in enc.out_channels]
    assert tuple(enc.dense_embeddings(_images(2, *size)).shape) == (2, enc.embed_dim, h, w)


@pytest.mark.parametrize("size", [64, 128])
def test_resnet_shapes_at_two_sizes(rn, size):
    enc = CLIPDenseEncoder(rn)
    feats = enc(_images(1, size, size))
    side = size // 16
    assert enc.layers == [2, 3, 4] and enc.reduction == 16 and enc.reductions == [16, 16, 16]
    assert [tuple(f.shape) for f in feats] == [(1, c, side, side) for c in enc.out_channels]
    native = CLIPDenseEncoder(rn, same_size=False)(_images(1, size, size))
    assert [f.shape[-1] for f in native] == [size // 8, size // 16, size // 32]
    coarse = CLIPDenseEncoder(rn, grid_stride=32)
    assert coarse.reduction == 32 and coarse(_images(1, size, size))[0].shape[-1] == size // 32
    assert tuple(enc.dense_embeddings(_images(1, size, size)).shape) == (1, enc.embed_dim, size // 32, size // 32)


def test_resnet_levels_are_resampled_to_one_stride_16_grid(rn):
    """Stage 2 (stride 8) is 2x2-averaged, stage 3 (stride 16) kept, stage 4 (stride 32) upsampled 2x."""
    x = _images(2, 96, 96)
    fine, native = CLIPDenseEncoder(rn)(x), CLIPDenseEncoder(rn, same_size=False)(x)
    torch.testing.assert_close(fine[0], torch.nn.functional.avg_pool2d(native[0], 2))
    torch.testing.assert_close(fine[1], native[1])
    up = torch.nn.functional.interpolate(native[2], scale_factor=2, mode="bilinear", align_corners=False)
    torch.testing.assert_close(fine[2], up)
    with pytest.raises(ConfigError, match="grid_stride=12 is invalid for a ResNet: give 8, 16 or 32"):
        CLIPDenseEncoder(rn, grid_stride=12)


def test_default_layers_are_evenly_spaced_deepest_last(vit):
    assert CLIPDenseEncoder(vit).layers == [1, 3, 4]
    from emclip.clip import default_layers

    assert default_layers(12) == [4, 8, 12] and default_layers(2) == [1, 2]


def test_vit_taps_match_open_clip_intermediates(vit):
    enc = CLIPDenseEncoder(vit, layers=[1, 3, 4])
    x = _images()
    ref = vit.model.visual.forward_intermediates(enc.normalize(x), indices=[0, 2, 3], intermediates_only=True)
    for ours, theirs in zip(enc(x), ref["image_intermediates"]):
        torch.testing.assert_close(ours, theirs)


def test_positional_interpolation_matches_open_clip_resize(vit):
    """At 128 px our interpolated grid equals a model open_clip builds for 128 px from the same weights."""
    big = open_clip.create_model("emclip-tiny", force_image_size=128)
    state = copy.deepcopy(vit.model.state_dict())
    resize_pos_embed(state, big)
    big.load_state_dict(state)
    big.eval()
    enc = CLIPDenseEncoder(vit, layers=[4])
    x = _images(1, 128, 128)
    ref = big.visual.forward_intermediates(enc.normalize(x), indices=[3], intermediates_only=True)
    torch.testing.assert_close(enc(x)[0], ref["image_intermediates"][0])


def test_dense_embeddings_are_open_clips_block_with_identity_attention(vit):
    """MaskCLIP value path == open_clip's own last block where each token may attend only to itself."""
    enc = CLIPDenseEncoder(vit)
    x = _images()
    visual = vit.model.visual
    tokens = visual._embeds(enc.normalize(x))
    for block in visual.transformer.resblocks[:-1]:
        tokens = block(tokens)
    n = tokens.shape[1]
    mask = torch.full((n, n), float("-inf")).fill_diagonal_(0.0)
    tokens = visual.transformer.resblocks[-1](tokens, attn_mask=mask)
    ref = (visual.ln_post(tokens) @ visual.proj)[:, 1:]
    ours = enc.dense_embeddings(x).flatten(2).transpose(1, 2)
    torch.testing.assert_close(ours, ref)


def test_pooled_dense_equals_encode_image_when_attention_is_uniform(vit):
    """Documented agreement: with uniform last-block attention, pooling value outputs gives encode_image."""
    model = copy.deepcopy(vit.model)
    last = model.visual.transformer.resblocks[-1].attn
    c = last.embed_dim
    with torch.no_grad():  # zero queries -> all attention scores 0 -> uniform softmax
        last.in_proj_weight[:c].zero_()
        last.in_proj_bias[:c].zero_()
    enc = CLIPDenseEncoder(model)
    x = _images()
    with torch.no_grad():
        resid, values = enc.value_tokens(x)
        pooled = enc.head(resid[:, :1] + values.mean(dim=1, keepdim=True))[:, 0]
        torch.testing.assert_close(pooled, model.encode_image(enc.normalize(x)))
        # ... whereas with CLIP's learned attention the mean of the dense map is something else
        real = CLIPDenseEncoder(vit)
        mean_dense = real.dense_embeddings(x).mean(dim=(2, 3))
        assert not torch.allclose(mean_dense, vit.model.encode_image(real.normalize(x)), atol=1e-3)


def test_resnet_value_path_is_maskclips_without_positional_embedding(rn):
    """MaskCLIP (Zhou et al. 2022): c_proj(v_proj(x)) at every position; the pool's positional embedding is not used."""
    model = copy.deepcopy(rn.model)
    enc = CLIPDenseEncoder(model)
    x = _images()
    with torch.no_grad():
        layer4 = CLIPDenseEncoder(model, layers=[4], same_size=False)(x)[0]
        pool = model.visual.attnpool
        ref = pool.c_proj(pool.v_proj(layer4.flatten(2).transpose(1, 2))).transpose(1, 2).reshape(2, -1, 2, 2)
        before = enc.dense_embeddings(x)
        torch.testing.assert_close(before, ref)
        pool.positional_embedding.normal_()  # a different positional embedding changes nothing
        torch.testing.assert_close(enc.dense_embeddings(x), before)


def test_resnet_value_path_pools_to_encode_image_when_attention_is_uniform(rn):
    """With uniform attention the pool's output is the mean over positions of c_proj(v_proj(x_j + pos_j)),
    i.e. the mean of the dense embeddings plus the (linear) value path of the positional embeddings."""
    model = copy.deepcopy(rn.model)
    pool = model.visual.attnpool
    with torch.no_grad():
        pool.q_proj.weight.zero_()
        pool.q_proj.bias.zero_()
    enc = CLIPDenseEncoder(model)
    x = _images()
    with torch.no_grad():
        dense = enc.dense_embeddings(x).flatten(2)  # (B, D, N)
        feats = CLIPDenseEncoder(model, layers=[4], same_size=False)(x)[0]

        def value(t):
            return pool.c_proj(pool.v_proj(t))

        pos = pool.positional_embedding
        pos_term = (value(pos[1:]) - value(torch.zeros_like(pos[1:]))).sum(dim=0)  # sum_j A pos_j
        token0 = value(feats.flatten(2).mean(dim=2) + pos[0])
        pooled = (dense.sum(dim=2) + pos_term + token0) / (dense.shape[2] + 1)
        torch.testing.assert_close(pooled, model.encode_image(enc.normalize(x)))


@pytest.mark.parametrize(("images", "error", "match"), [
    (torch.rand(1, 1, 64, 64), ValueError, "3 channels"),
    (torch.rand(3, 64, 64), ValueError, r"\(B, 3, H, W\)"),
    (torch.rand(1, 3, 60, 64), ValueError, "multiple of 8"),
    (torch.randint(0, 255, (1, 3, 64, 64), dtype=torch.uint8), TypeError, "floating point"),
    (torch.rand(1, 3, 64, 64) * 255, ValueError, "0..255"),
])
def test_bad_inputs_raise_clear_errors(vit, images, error, match):
    with pytest.raises(error, match=match):
        CLIPDenseEncoder(vit)(images)


def test_bad_layers_and_towers_raise(vit):
    with pytest.raises(ValueError, match="1..4"):
        CLIPDenseEncoder(vit, layers=[0, 5])
    with pytest.raises(TypeError, match="VisionTransformer and ModifiedResNet"):
        CLIPDenseEncoder(torch.nn.Linear(2, 2))


def test_frozen_encoder_stays_in_eval_and_has_no_grads(rn):
    enc = CLIPDenseEncoder(rn)
    enc.train()
    assert not any(p.requires_grad for p in enc.parameters())
    assert not any(m.training for m in enc.visual.modules())  # BatchNorm statistics stay fixed


def test_trainable_last_blocks_unfreezes_only_the_tail(vit):
    enc = CLIPDenseEncoder(copy.deepcopy(vit.model), trainable_last_blocks=1)
    enc.train()
    blocks = enc.visual.transformer.resblocks
    assert all(p.requires_grad for p in blocks[-1].parameters())
    assert not any(p.requires_grad for p in blocks[0].parameters())
    assert blocks[-1].training and not blocks[0].training
    enc(_images(1))[-1].sum().backward()
    assert blocks[-1].mlp.c_fc.weight.grad is not None and blocks[0].mlp.c_fc.weight.grad is None


class _Counting(torch.nn.Module):
    def __init__(self, encoder):
        super().__init__()
        self.encoder, self.calls = encoder, 0

    def forward(self, images):
        self.calls += images.shape[0]
        return self.encoder(images)


def test_feature_cache_computes_each_image_once(vit, tmp_path):
    counting = _Counting(CLIPDenseEncoder(vit))
    cache = FeatureCache(counting, root=tmp_path)
    x, ids = _images(4), ["a", "b", "c", "d"]
    first = cache(x, ids)
    for ours, ref in zip(first, counting.encoder(x)):
        torch.testing.assert_close(ours, ref)
    counting.calls = 0
    for _ in range(3):  # later epochs, shuffled order: no recomputation
        again = cache(x[[2, 0]], ["c", "a"])
        torch.testing.assert_close(again[0], first[0][[2, 0]])
    assert counting.calls == 0 and cache.hits == 6 and cache.misses == 4
    cache(x[:1], ["a"], aug_ids=["flip"])  # another augmentation is another entry
    assert counting.calls == 1
    fresh = FeatureCache(counting, root=tmp_path)  # a new process reads the disk store
    torch.testing.assert_close(fresh(x[:2], ["a", "b"])[1], first[1][:2])
    assert fresh.hits == 2 and counting.calls == 1


def test_feature_cache_refuses_trainable_encoders(vit):
    with pytest.raises(ValueError, match="frozen encoder"):
        FeatureCache(CLIPDenseEncoder(copy.deepcopy(vit.model), frozen=False))


@pytest.mark.parametrize("fixture", ["vit", "rn"])
def test_image_embedding_equals_encode_image_at_native_size(fixture, request):
    bundle = request.getfixturevalue(fixture)
    enc = CLIPDenseEncoder(bundle)
    x = _images()
    with torch.no_grad():
        torch.testing.assert_close(enc.image_embedding(x), bundle.model.encode_image(enc.normalize(x)))
        assert enc.image_embedding(_images(2, 128, 128)).shape == (2, enc.embed_dim)


def test_fused_blocks_equal_open_clips_blocks(vit):
    """Stated tolerance: torch's float32 defaults (rtol 1.3e-6, atol 1e-5), with and without a mask."""
    x = torch.randn(2, 17, vit.model.visual.transformer.width, generator=torch.Generator().manual_seed(0))
    mask = torch.full((17, 17), float("-inf")).fill_diagonal_(0.0)
    for block in vit.model.visual.transformer.resblocks:
        assert fusable(block)
        with torch.no_grad():
            torch.testing.assert_close(vit_block(block, x), block(x), rtol=1.3e-6, atol=1e-5)
            torch.testing.assert_close(vit_block(block, x, attn_mask=mask), block(x, attn_mask=mask),
                                       rtol=1.3e-6, atol=1e-5)


def _relative_error(ours, ref):
    return max(float((a - b).norm() / b.norm()) for a, b in zip(ours, ref))


@pytest.mark.parametrize("fixture", ["vit", "rn"])
def test_bf16_precision_stays_within_two_percent(fixture, request):
    """Stated tolerance of precision="bf16": every tap within 2 % relative (Frobenius) error of fp32."""
    bundle = request.getfixturevalue(fixture)
    x = _images(2, 64, 64)
    ref, fast = CLIPDenseEncoder(bundle), CLIPDenseEncoder(bundle, precision="bf16")
    ours = fast(x)
    assert all(t.dtype == torch.float32 for t in ours)
    assert 0 < _relative_error(ours, ref(x)) < 2e-2
    assert _relative_error([fast.dense_embeddings(x)], [ref.dense_embeddings(x)]) < 2e-2
    with pytest.raises(ConfigError, match="precision='fp16' is invalid: give one of fp32, bf16"):
        CLIPDenseEncoder(bundle, precision="fp16")


@pytest.mark.slow
def test_compiled_encoder_gives_the_same_taps(vit):
    """torch.compile of the frozen part: within 1e-5 relative error of the eager encoder (CPU)."""
    x = _images(2, 64, 64)
    assert _relative_error(CLIPDenseEncoder(vit, compile=True)(x), CLIPDenseEncoder(vit)(x)) < 1e-5


def test_frozen_part_runs_without_autograd_and_the_tail_trains(vit):
    enc = CLIPDenseEncoder(copy.deepcopy(vit.model), layers=[2, 4], trainable_last_blocks=1)
    shallow, deep = enc(_images(1))
    assert not shallow.requires_grad and deep.requires_grad  # block 2 is frozen, block 4 trains
    frozen = CLIPDenseEncoder(vit)
    assert not any(t.requires_grad for t in frozen(_images(1)))


def test_post_norm_applies_clips_ln_post_over_channels(vit, rn):
    enc = CLIPDenseEncoder(vit)
    deep = enc(_images())[-1]
    tokens = deep.flatten(2).transpose(1, 2)
    with torch.no_grad():
        ref = vit.model.visual.ln_post(tokens).transpose(1, 2).reshape(deep.shape)
    torch.testing.assert_close(enc.post_norm(deep), ref)
    rn_deep = CLIPDenseEncoder(rn)(_images())[-1]
    assert torch.equal(CLIPDenseEncoder(rn).post_norm(rn_deep), rn_deep)


def test_feature_cache_folders_differ_for_other_encoder_settings(rn):
    """Same weights, another grid or precision: other features, so another on-disk folder."""
    prints = {FeatureCache(CLIPDenseEncoder(rn, **kw)).fingerprint()
              for kw in ({}, {"same_size": False}, {"grid_stride": 32}, {"precision": "bf16"})}
    assert len(prints) == 4
