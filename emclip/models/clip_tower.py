"""The frozen CLIP tower of the CLIP-based models, built from ``config["clip"]`` and ``["encoder"]``.

``config["clip"] = {"model": open_clip name, "pretrained": tag / weights file / null, "seed": int}``:
``null`` and ``"random"`` both mean random initialisation (the control); a tag such as
``"synth-v2"`` or ``"openai"`` loads those weights, and fails fast offline if they are not there
(:func:`emclip.clip.load_clip`). Nothing falls back to another architecture.

open_clip is imported only here, when a CLIP-based model is built, so ``import emclip.models``
and the U-Net never load it.
"""

from __future__ import annotations

import torch

from emclip.errors import ConfigError
from emclip.tasks import Task

RANDOM = (None, "random")


def load_tower(clip_cfg: dict):
    """The :class:`~emclip.clip.ClipBundle` of ``config["clip"]`` (on the CPU)."""
    from emclip.clip import load_clip

    pretrained = None if clip_cfg["pretrained"] in RANDOM else clip_cfg["pretrained"]
    try:
        return load_clip(clip_cfg["model"], pretrained, device="cpu", seed=clip_cfg["seed"])
    except (ValueError, FileNotFoundError) as err:  # unknown model or tag, missing weights file
        raise ConfigError(f"model config key clip = {clip_cfg!r}: {err}") from err


def build_clip_encoder(config: dict):
    """``(encoder, bundle)``: the frozen :class:`~emclip.clip.CLIPDenseEncoder` of ``config``."""
    from emclip.clip import CLIPDenseEncoder

    bundle = load_tower(config["clip"])
    enc = config["encoder"]
    try:
        encoder = CLIPDenseEncoder(bundle, layers=enc["layers"], frozen=True,
                                   trainable_last_blocks=enc["trainable_last_blocks"])
    except ValueError as err:  # block indices out of range for this tower
        raise ConfigError(f"model config key encoder = {enc!r} does not fit {config['clip']['model']!r}: {err}") from err
    return encoder, bundle


def class_text(bundle, task: Task, background: bool) -> torch.Tensor:
    """Prompt-ensembled, L2-normalised class embeddings (G, embed_dim), float32, on the CPU.

    ``background=False``: one row per logit channel (``task.prompts()``); ``True``: background
    and every region (``task.guidance_prompts()``), the classes text guidance attends to.
    """
    from emclip.clip import class_text_embeddings, encode_prompts, ensemble

    if not background or task.guidance_prompts() == task.prompts():
        return class_text_embeddings(bundle, task, device="cpu").detach().float().clone()
    prompts = task.guidance_prompts()
    flat = encode_prompts(bundle, [s for class_prompts in prompts for s in class_prompts], device="cpu")
    sizes = [len(class_prompts) for class_prompts in prompts]
    return ensemble(list(flat.split(sizes))).float()
