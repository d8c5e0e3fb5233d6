"""Text side of CLIP: prompt-ensembled class embeddings and pixel-text similarity maps.

Prompt ensembling (Radford et al., CLIP, section 3.1.4): every prompt sentence of a class
(``task.prompts()``: templates x descriptions) is encoded, each embedding is L2-normalised, the
embeddings of one class are averaged and the mean is normalised again. The result is cached per
(model object, task, prompts), so notebooks and models can call it freely.
"""

from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from emclip.tasks import Task, get_task

_CACHE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def encode_prompts(bundle, sentences: list[str], device=None) -> torch.Tensor:
    """Sentences -> L2-normalised text embeddings (len(sentences), embed_dim), float32."""
    if isinstance(sentences, str) or not sentences:
        raise ValueError("sentences must be a non-empty list of strings (one prompt per entry).")
    model = bundle.model
    device = torch.device(device) if device is not None else next(model.parameters()).device
    tokens = bundle.tokenizer(list(sentences)).to(next(model.parameters()).device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        emb = model.encode_text(tokens).float()
    model.train(was_training)
    return F.normalize(emb, dim=-1).to(device)


def ensemble(embeddings: list[torch.Tensor]) -> torch.Tensor:
    """Per-class lists of normalised embeddings (P_c, D) -> (num_classes, D): mean, renormalised."""
    return torch.stack([F.normalize(F.normalize(e, dim=-1).mean(dim=0), dim=-1) for e in embeddings])


def class_text_embeddings(bundle, task: str | Task, device=None) -> torch.Tensor:
    """Prompt-ensembled class embeddings (task.num_outputs, embed_dim), L2-normalised, float32.

    Row c belongs to logit channel c (``task.output_names``). Cached per (model, task, prompts); a
    fresh copy is returned each call, so callers may modify it.
    """
    task = get_task(task)
    prompts = task.prompts()
    key = (task.name, tuple(tuple(p) for p in prompts))
    per_model = _CACHE.setdefault(bundle.model, {})
    if key not in per_model:
        flat = [s for class_prompts in prompts for s in class_prompts]
        emb = encode_prompts(bundle, flat, device="cpu")
        chunks, start = [], 0
        for class_prompts in prompts:
            chunks.append(emb[start:start + len(class_prompts)])
            start += len(class_prompts)
        per_model[key] = ensemble(chunks)
    out = per_model[key].clone()
    target = torch.device(device) if device is not None else next(bundle.model.parameters()).device
    return out.to(target)


def clear_text_cache() -> None:
    """Forget every cached class embedding (e.g. after fine-tuning the text tower)."""
    _CACHE.clear()


def pixel_text_similarity(dense: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """Cosine similarity of every pixel embedding with every text embedding.

    Args:
        dense: (B, D, h, w) joint-space pixel embeddings (``CLIPDenseEncoder.dense_embeddings``).
        text: (K, D) text embeddings.

    Returns:
        (B, K, h, w) cosine similarities in [-1, 1].
    """
    if dense.ndim != 4 or text.ndim != 2 or dense.shape[1] != text.shape[1]:
        raise ValueError(f"Expected dense (B, D, h, w) and text (K, D) with the same D, got "
                         f"{tuple(dense.shape)} and {tuple(text.shape)}.")
    return torch.einsum("bdhw,kd->bkhw", F.normalize(dense.float(), dim=1),
                        F.normalize(text.float().to(dense.device), dim=1))
