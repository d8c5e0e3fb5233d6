"""Text side: prompt ensembling against a hand-made reference, the per-(model, task) cache, similarity maps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emclip.clip import class_text_embeddings, clear_text_cache, load_clip, pixel_text_similarity
from emclip.tasks import get_task


@pytest.fixture(scope="module")
def bundle():
    return load_clip()


@pytest.mark.parametrize("task_name", ["fundus", "cardiac"])
def test_class_embeddings_equal_hand_made_prompt_ensemble(bundle, task_name):
    task = get_task(task_name)
    emb = class_text_embeddings(bundle, task)
    assert emb.shape == (task.num_outputs, bundle.embed_dim) and emb.dtype == torch.float32
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(task.num_outputs))
    with torch.no_grad():
        for row, sentences in zip(emb, task.prompts()):
            each = [F.normalize(bundle.model.encode_text(bundle.tokenizer([s]))[0], dim=0) for s in sentences]
            reference = F.normalize(torch.stack(each).mean(dim=0), dim=0)
            torch.testing.assert_close(row, reference, atol=1e-5, rtol=1e-4)


def test_ensemble_differs_from_a_single_prompt(bundle):
    task = get_task("fundus")
    emb = class_text_embeddings(bundle, task)
    with torch.no_grad():
        single = F.normalize(bundle.model.encode_text(bundle.tokenizer([task.prompts()[0][0]]))[0], dim=0)
    assert not torch.allclose(emb[0], single, atol=1e-4)


def test_text_embeddings_are_cached_per_model_and_task(bundle, monkeypatch):
    clear_text_cache()
    first = class_text_embeddings(bundle, "cardiac")
    calls = []
    original = bundle.model.encode_text
    monkeypatch.setattr(bundle.model, "encode_text", lambda *a, **k: calls.append(1) or original(*a, **k))
    second = class_text_embeddings(bundle, "cardiac")
    assert calls == [] and torch.equal(first, second)
    second.zero_()  # callers get a copy
    assert torch.equal(class_text_embeddings(bundle, "cardiac"), first)
    class_text_embeddings(bundle, "fundus")  # another task is computed
    other = load_clip(pretrained="random", seed=1)
    assert not torch.allclose(class_text_embeddings(other, "cardiac"), first)  # another model too
    assert calls  # fundus needed the encoder


def test_pixel_text_similarity_is_cosine(bundle):
    gen = torch.Generator().manual_seed(0)
    dense, text = torch.randn(2, 8, 3, 4, generator=gen), torch.randn(5, 8, generator=gen)
    sim = pixel_text_similarity(dense, text)
    assert sim.shape == (2, 5, 3, 4)
    ref = F.cosine_similarity(dense[:, None], text[None, :, :, None, None], dim=2)
    torch.testing.assert_close(sim, ref)
    with pytest.raises(ValueError, match="same D"):
        pixel_text_similarity(dense, torch.randn(5, 7))


def test_unknown_task_lists_valid_ones(bundle):
    with pytest.raises(ValueError, match="Valid tasks"):
        class_text_embeddings(bundle, "liver")
