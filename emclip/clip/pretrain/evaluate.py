"""What a pretrained CLIP has learned: image-text retrieval and zero-shot pixel-text maps.

* :func:`retrieval_accuracy` — held-out image-caption pairs: for each image, is its own caption
  the most similar of all captions (and the other way round)? Captions repeat (two images can
  have the same caption), so a retrieved caption counts as correct when its *text* equals the
  image's caption; the chance level is computed the same way (the mean share of pairs whose
  caption equals one's own).
* :func:`zero_shot_contrast` — notebook 02's measure on the benchmark images: cosine similarity
  of every patch's joint-space embedding (MaskCLIP's value path,
  :meth:`emclip.clip.CLIPDenseEncoder.dense_embeddings`) with each class's prompt-ensembled text
  embedding, mean inside the region minus mean outside (:func:`emclip.clip.analysis.region_contrast`).
  Above 0: the class prompt lights up its own region, with no training on the task.
  ``against_background=True`` scores the *margin* over the background prompt instead (similarity
  to the class minus similarity to the background, per patch): the comparison a zero-shot
  segmenter makes when it labels a pixel by its most similar prompt (MaskCLIP, Zhou et al., ECCV
  2022). A model can fail the first and pass the second: when every prompt is closer to the
  surroundings than to the structure, yet the class prompt less so than the background one.

Neither caches anything per model, so both can run while the model trains.
"""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from emclip.clip.analysis import channel_masks, region_contrast
from emclip.clip.text import encode_prompts, ensemble, pixel_text_similarity
from emclip.tasks import get_task


def _normaliser(model) -> tuple[torch.Tensor, torch.Tensor]:
    from open_clip.constants import OPENAI_DATASET_MEAN, OPENAI_DATASET_STD

    cfg = getattr(model.visual, "preprocess_cfg", {}) or {}
    mean = torch.tensor(cfg.get("mean", OPENAI_DATASET_MEAN), dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(cfg.get("std", OPENAI_DATASET_STD), dtype=torch.float32).view(1, 3, 1, 1)
    return mean, std


def normalise_images(model, images: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W) in [0, 1] -> CLIP's normalised input (the model's mean / std)."""
    mean, std = _normaliser(model)
    return (images - mean.to(images.device)) / std.to(images.device)


@torch.no_grad()
def embed_pairs(model, tokenizer, images: torch.Tensor, captions: list[str], batch_size: int = 256):
    """L2-normalised image (N, D) and caption (N, D) embeddings; the model's mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    image_out, text_out = [], []
    try:
        for start in range(0, len(captions), batch_size):
            chunk = images[start:start + batch_size].to(device)
            image_out.append(F.normalize(model.encode_image(normalise_images(model, chunk)).float(), dim=-1).cpu())
            tokens = tokenizer(list(captions[start:start + batch_size])).to(device)
            text_out.append(F.normalize(model.encode_text(tokens).float(), dim=-1).cpu())
    finally:
        model.train(was_training)
    return torch.cat(image_out), torch.cat(text_out)


def retrieval_accuracy(model, tokenizer, images: torch.Tensor, captions: list[str]) -> dict[str, float]:
    """Top-1 retrieval on N held-out pairs.

    Args:
        images: (N, 3, H, W) in [0, 1]; captions: N strings (caption i belongs to image i).

    Returns:
        ``{"image_to_text", "text_to_image", "chance", "n"}``: accuracies in [0, 1] (correct when
        the retrieved caption's text, or the retrieved image's caption, equals the query's), the
        chance level of that rule, and N.
    """
    if len(images) != len(captions) or len(captions) < 2:
        raise ValueError(f"Need N >= 2 images and N captions, got {len(images)} and {len(captions)}.")
    image_emb, text_emb = embed_pairs(model, tokenizer, images, captions)
    sim = image_emb @ text_emb.T
    ids = {c: i for i, c in enumerate(dict.fromkeys(captions))}
    label = torch.tensor([ids[c] for c in captions])
    same = label[:, None] == label[None, :]
    i2t = same[torch.arange(len(label)), sim.argmax(dim=1)].float().mean()
    t2i = same[torch.arange(len(label)), sim.argmax(dim=0)].float().mean()
    return {"image_to_text": float(i2t), "text_to_image": float(t2i), "chance": float(same.float().mean()),
            "n": len(captions)}


@torch.no_grad()
def class_embeddings(model, tokenizer, task, prompts: list[list[str]] | None = None) -> torch.Tensor:
    """Prompt-ensembled class text embeddings (K, D), without the text cache: one row per prompt
    list of ``prompts`` (default ``task.prompts()``, the task.num_outputs logit channels)."""
    task = get_task(task)
    bundle = SimpleNamespace(model=model, tokenizer=tokenizer)  # all encode_prompts reads
    return ensemble([encode_prompts(bundle, p, device="cpu") for p in (prompts or task.prompts())])


@torch.no_grad()
def zero_shot_maps(model, tokenizer, task, images: torch.Tensor,
                   against_background: bool = False) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Patch-level zero-shot maps (B, K, h, w) on the CPU and their K channel names.

    Cosine similarity of each patch (MaskCLIP's value path) with every logit channel's prompts
    (``task.prompts()``), or with ``against_background`` each region's similarity minus the
    background prompt's (``task.guidance_prompts()``, background first). The model keeps its
    training mode and ``requires_grad`` flags.
    """
    from emclip.clip.dense import CLIPDenseEncoder

    task = get_task(task)
    was_training = model.training
    visual_grad = [p.requires_grad for p in model.visual.parameters()]
    try:
        encoder = CLIPDenseEncoder(model, frozen=False).eval()
        device = next(model.parameters()).device
        dense = encoder.dense_embeddings(images.to(device))
        prompts = task.guidance_prompts() if against_background else task.prompts()
        similarity = pixel_text_similarity(dense, class_embeddings(model, tokenizer, task, prompts).to(device)).cpu()
    finally:
        for param, flag in zip(model.visual.parameters(), visual_grad):
            param.requires_grad_(flag)
        model.train(was_training)
    if against_background:
        return similarity[:, 1:] - similarity[:, :1], task.region_names
    return similarity, task.output_names


def zero_shot_contrast(model, tokenizer, task, images: torch.Tensor, masks: torch.Tensor,
                       against_background: bool = False) -> dict[str, float]:
    """Mean inside-minus-outside value of :func:`zero_shot_maps` per channel (see the module docstring).

    Args:
        images: (B, 3, H, W) in [0, 1], sides a multiple of the patch size.
        masks: (B, H, W) int64 label maps of ``task``.
        against_background: score each region's similarity minus the background prompt's
            (``task.guidance_prompts()``, background first) instead of the similarity itself.

    Returns:
        ``{channel name: contrast}``: every logit channel (multiclass tasks include ``background``),
        or with ``against_background`` every region.
    """
    task = get_task(task)
    maps, names = zero_shot_maps(model, tokenizer, task, images, against_background)
    contrast = region_contrast(maps, task.region_masks(masks) if against_background else channel_masks(task, masks))
    return {name: float(value) for name, value in zip(names, contrast.tolist())}


def benchmark_images(task, size: int, per_domain: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Test images of every benchmark domain of ``task`` (the held-out styles).

    Returns images (N, 3, size, size), label maps (N, size, size) and the N domain keys.
    """
    from emclip.data import get_dataset

    task = get_task(task)
    images, masks, domains = [], [], []
    for domain in task.domains:
        dataset = get_dataset(task.name, domain, "test", size=size, seed=seed, n=per_domain)
        for index in range(len(dataset)):
            sample = dataset[index]
            images.append(sample["image"])
            masks.append(sample["mask"])
            domains.append(domain)
    return torch.stack(images), torch.stack(masks), domains
