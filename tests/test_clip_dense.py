"""CLIPDenseEncoder: shapes, agreement with open_clip's own computations, errors, freezing; FeatureCache."""

from __future__ import annotations

import copy

import open_clip
import pytest
import torch
from open_clip.model import resize_pos_embed

from emclip.clip import CLIPDenseEncoder, FeatureCache, load_clip


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
    side = size // 32
    assert enc.layers == [2, 3, 4] and enc.reduction == 32
    assert [tuple(f.shape) for f in feats] == [(1, c, side, side) for c in enc.out_channels]
    native = CLIPDenseEncoder(rn, same_size=False)(_images(1, size, size))
    assert [f.shape[-1] for f in native] == [size // 8, size // 16, size // 32]
    assert tuple(enc.dense_embeddings(_images(1, size, size)).shape) == (1, enc.embed_dim, side, side)


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


def test_resnet_value_path_pools_to_encode_image_when_attention_is_uniform(rn):
    model = copy.deepcopy(rn.model)
    pool = model.visual.attnpool
    with torch.no_grad():
        pool.q_proj.weight.zero_()
        pool.q_proj.bias.zero_()
    enc = CLIPDenseEncoder(model)
    x = _images()
    with torch.no_grad():
        dense = enc.dense_embeddings(x).flatten(2)  # (B, D, N)
        feats = model.visual.layer4(model.visual.layer3(model.visual.layer2(model.visual.layer1(
            model.visual.stem(enc.normalize(x))))))
        mean_token = feats.flatten(2).mean(dim=2) + pool.positional_embedding[0]
        token0 = pool.c_proj(pool.v_proj(mean_token))
        pooled = (dense.sum(dim=2) + token0) / (dense.shape[2] + 1)
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
