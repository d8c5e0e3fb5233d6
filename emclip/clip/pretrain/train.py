"""Contrastive image-text pretraining of an open_clip model on the kit's own corpus.

The recipe (:class:`PretrainConfig`; every value is a design choice, not from the paper):

* the model: an open_clip config of this package (default ``emclip-tiny``), randomly
  initialised from ``init_seed`` exactly as ``load_clip(model, "random")`` builds the control;
* the data: :func:`emclip.clip.pretrain.corpus.cached_corpus` scenes, each read with a fresh
  prior style per epoch and one of its captions (:class:`~emclip.clip.pretrain.corpus.StyledCorpus`);
  the batches of an epoch follow a permutation seeded by ``(seed, epoch)``;
* the loss: open_clip's own :class:`open_clip.loss.ClipLoss` (symmetric InfoNCE over the batch)
  with the model's learnable temperature ``logit_scale`` (clamped at ln 100 as in open_clip);
* optionally (``dense_weight > 0``) a patch-level term that also learns from the captions alone,
  added with that weight (``dense_loss``: ``"where"``, the default, :func:`~emclip.clip.pretrain.dense_loss.where_loss`,
  which reads the position words of each caption; ``"pacl"``, :func:`~emclip.clip.pretrain.dense_loss.pacl_loss`;
  or ``"mean"``, :func:`~emclip.clip.pretrain.dense_loss.mean_pool_loss`);
* AdamW (no weight decay on gains, biases, embeddings and the temperature, as open_clip does),
  linear warm-up then cosine decay to zero.

Only image-level text supervises the model, as in CLIP: no pixel mask of the corpus is used.

Exact resume: the batch of step ``s`` depends only on ``(seed, s)`` and the model has no
dropout, so a checkpoint holds everything the rest of the run needs (weights, optimiser, step,
history). A run killed after a checkpoint and resumed ends with the same weights, bit for bit on
the CPU, as an uninterrupted run (tested). Checkpoints are written atomically and read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from open_clip.loss import ClipLoss
from tqdm.auto import tqdm

from emclip.clip.pretrain.corpus import StyledCorpus, build_corpus, cached_corpus
from emclip.clip.pretrain.evaluate import normalise_images, retrieval_accuracy
from emclip.errors import CheckpointError, ConfigError
from emclip.fileio import atomic_write

EVAL_SEED_OFFSET = 1_000_003
DENSE_LOSSES = ("pacl", "mean", "where")  # the held-out pairs: another corpus seed and another style seed


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretraining run (recorded in its checkpoint and model card).

    The defaults are the recipe of the shipped `synth-v2` weights (`emclip/clip/weights/registry.json`)."""

    model: str = "emclip-tiny"
    image_size: int = 64
    corpus_size: int = 12000
    corpus_seed: int = 0
    steps: int = 1500
    batch_size: int = 128
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_steps: int = 100
    dense_weight: float = 1.0
    dense_loss: str = "where"
    seed: int = 0
    init_seed: int = 0
    eval_pairs: int = 512
    eval_every: int = 500
    checkpoint_every: int = 250

    def __post_init__(self):
        for key in ("image_size", "corpus_size", "steps", "batch_size", "eval_pairs", "checkpoint_every", "eval_every"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"pretraining config {key}={value!r}: expected an int >= 1.")
        if self.dense_loss not in DENSE_LOSSES:
            raise ConfigError(f"dense_loss={self.dense_loss!r}; valid: {', '.join(DENSE_LOSSES)}.")
        if self.image_size % 8:
            raise ConfigError(f"image_size={self.image_size} must be a multiple of 8 (the tiny ViT's patch).")
        if self.batch_size > self.corpus_size:
            raise ConfigError(f"batch_size={self.batch_size} exceeds corpus_size={self.corpus_size}.")
        if not (self.lr > 0 and self.weight_decay >= 0 and self.warmup_steps >= 0 and self.dense_weight >= 0):
            raise ConfigError(f"need lr > 0, weight_decay >= 0, warmup_steps >= 0, dense_weight >= 0; got {self.lr}, "
                              f"{self.weight_decay}, {self.warmup_steps}, {self.dense_weight}.")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class PretrainResult:
    """The trained model (eval mode), its tokenizer, the history rows, the checkpoint path and the
    wall time of the whole run in seconds (summed over resumed sessions)."""

    model: torch.nn.Module
    tokenizer: object
    history: list[dict]
    checkpoint_path: Path | None
    seconds: float


def lr_factor(step: int, config: PretrainConfig) -> float:
    """Multiplier of the peak lr at ``step``: linear warm-up, then cosine to zero."""
    if step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def batch_indices(step: int, config: PretrainConfig) -> np.ndarray:
    """The corpus indices of ``step``'s batch: slices of a per-epoch permutation (drop-last)."""
    per_epoch = config.corpus_size // config.batch_size
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([config.seed, epoch]).permutation(config.corpus_size)
    return order[position * config.batch_size:(position + 1) * config.batch_size]


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """open_clip's rule: no decay for 1-D parameters (norms, biases), embeddings and logit_scale."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        exclude = param.ndim < 2 or "bn" in name or "ln" in name or "bias" in name or "logit_scale" in name \
            or "embedding" in name or "token" in name
        (no_decay if exclude else decay).append(param)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def create_random_model(config: PretrainConfig):
    """The randomly initialised model and tokenizer the run starts from (the random control)."""
    from emclip.clip.loading import load_clip

    bundle = load_clip(config.model, "random", device="cpu", seed=config.init_seed)
    return bundle.model, bundle.tokenizer


def eval_pairs(config: PretrainConfig) -> tuple[torch.Tensor, list[str]]:
    """The held-out pairs: scenes of another corpus seed, one fixed prior style each."""
    corpus = build_corpus(config.eval_pairs, config.image_size, config.corpus_seed + EVAL_SEED_OFFSET, progress=False)
    styled = StyledCorpus(corpus, style_seed=config.seed + EVAL_SEED_OFFSET, fixed_style=True)
    return styled.batch(range(len(corpus)))


def save_state(path, model, optimizer, step: int, history: list[dict], config: PretrainConfig, corpus_id: str,
               seconds: float = 0.0) -> None:
    """Write a resumable checkpoint atomically (tensors and plain types only)."""
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "step": int(step),
             "history": history, "config": config.as_dict(), "corpus": corpus_id, "kind": "emclip-pretrain",
             "seconds": float(seconds)}
    with atomic_write(path) as tmp:
        torch.save(state, tmp)


def load_state(path) -> dict:
    """Read a checkpoint written by :func:`save_state` (``weights_only=True``)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated, empty or foreign files
        raise CheckpointError(f"Pretraining checkpoint {path} is unreadable ({type(err).__name__}: {err}); "
                              "delete it to start again, or pass another --checkpoint.") from err
    if not isinstance(state, dict) or state.get("kind") != "emclip-pretrain":
        raise CheckpointError(f"{path} is not an emclip pretraining checkpoint; pass another --checkpoint.")
    return state


def _loss(model, dense_encoder, loss_fn, images: torch.Tensor, tokens: torch.Tensor, config: PretrainConfig,
          captions: list[str] | None = None):
    """ClipLoss on the global embeddings (+ ``dense_weight`` x the dense term on the patch embeddings)."""
    if dense_encoder is None:
        image_features, text_features, logit_scale = model(normalise_images(model, images), tokens)
        return loss_fn(image_features, text_features, logit_scale)
    from emclip.clip.pretrain.dense_loss import (
        caption_regions,
        joint_forward,
        mean_pool_loss,
        pacl_loss,
        where_loss,
    )

    image_global, dense = joint_forward(dense_encoder, images)
    text = F.normalize(model.encode_text(tokens), dim=-1)
    logit_scale = model.logit_scale.exp()
    if config.dense_loss == "where":
        side = images.shape[-1] // int(model.visual.patch_size[0])
        dense_term = where_loss(dense, text, logit_scale, caption_regions(captions, side, side, dense.device))
    else:
        dense_term = (pacl_loss if config.dense_loss == "pacl" else mean_pool_loss)(dense, text, logit_scale)
    return loss_fn(F.normalize(image_global, dim=-1), text, logit_scale) + config.dense_weight * dense_term


def pretrain(config: PretrainConfig = PretrainConfig(), checkpoint_path=None, corpus_cache=None,
             progress: bool = True, device="cpu", stop_after: int | None = None, corpus=None,
             held_out: bool = True) -> PretrainResult:
    """Run (or resume) the pretraining recipe of ``config``; see the module docstring.

    Args:
        checkpoint_path: resumable checkpoint, written every ``checkpoint_every`` steps and at the
            end; an existing file whose config equals ``config`` is resumed, another raises.
        corpus_cache: folder for the rendered corpus (built once, then read).
        device: ``"cpu"``, ``"cuda"`` or ``"auto"``.
        stop_after: stop (with a checkpoint) after this many steps of the run, as a kill would.
        corpus: a ready corpus (e.g. :class:`~emclip.clip.pretrain.corpus.LazyCorpus` with the
            config's size and seed, to re-run the first steps cheaply); default: rendered / cached.
        held_out: render the held-out pairs and evaluate retrieval every ``eval_every`` steps.

    Returns:
        :class:`PretrainResult`; ``history`` rows hold ``step, loss, lr, logit_scale`` and, every
        ``eval_every`` steps, ``i2t`` / ``t2i`` retrieval top-1 on the held-out pairs.
    """
    from emclip.runtime import get_device

    device = get_device(device)
    start_time = time.perf_counter()
    torch.manual_seed(config.seed)
    model, tokenizer = create_random_model(config)
    native = int(model.visual.image_size[0])
    if config.image_size != native:
        raise ConfigError(f"image_size={config.image_size} differs from {config.model}'s input size {native}; "
                          f"pretrain at {native} px (dense features work at other sizes afterwards).")
    model = model.to(device).train()
    optimizer = torch.optim.AdamW(_param_groups(model, config.weight_decay), lr=config.lr)
    if corpus is None:
        corpus = cached_corpus(config.corpus_size, config.image_size, config.corpus_seed, corpus_cache, progress)
    if len(corpus) != config.corpus_size:
        raise ConfigError(f"the corpus has {len(corpus)} scenes but the config says corpus_size={config.corpus_size}.")
    data = StyledCorpus(corpus, style_seed=config.seed)
    held_images, held_captions = eval_pairs(config) if held_out else (None, None)
    loss_fn = ClipLoss()
    dense_encoder = None
    if config.dense_weight > 0:
        from emclip.clip.dense import CLIPDenseEncoder

        dense_encoder = CLIPDenseEncoder(model, frozen=False)
    step, history, earlier = 0, [], 0.0
    checkpoint_path = Path(checkpoint_path) if checkpoint_path else None
    if checkpoint_path is not None and checkpoint_path.is_file():
        state = load_state(checkpoint_path)
        if state["config"] != config.as_dict():
            diff = {k: (v, state["config"].get(k)) for k, v in config.as_dict().items() if state["config"].get(k) != v}
            raise CheckpointError(f"{checkpoint_path} holds another pretraining run ({diff}: (asked, stored)); "
                                  "pass another checkpoint path or delete it.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        step, history, earlier = int(state["step"]), list(state["history"]), float(state.get("seconds", 0.0))

    def elapsed() -> float:
        return earlier + time.perf_counter() - start_time

    def save() -> None:
        if checkpoint_path is not None:
            save_state(checkpoint_path, model, optimizer, step, history, config, corpus.fingerprint(), elapsed())

    last = config.steps if stop_after is None else min(config.steps, step + int(stop_after))
    bar = tqdm(total=config.steps, initial=step, desc=f"pretrain {config.model}", disable=not progress,
               dynamic_ncols=True)
    while step < last:
        per_epoch = config.corpus_size // config.batch_size
        images, captions = data.batch(batch_indices(step, config), epoch=step // per_epoch)
        for group in optimizer.param_groups:
            group["lr"] = config.lr * lr_factor(step, config)
        loss = _loss(model, dense_encoder, loss_fn, images.to(device), tokenizer(captions).to(device), config, captions)
        if not torch.isfinite(loss):
            bar.close()
            raise RuntimeError(f"Non-finite pretraining loss at step {step + 1}; lower lr (now {config.lr}). "
                               f"The last checkpoint ({checkpoint_path}) is intact.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        with torch.no_grad():
            model.logit_scale.clamp_(0, math.log(100))
        step += 1
        row = {"step": step, "loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"],
               "logit_scale": float(model.logit_scale.detach().exp())}
        if held_out and (step % config.eval_every == 0 or step == config.steps):
            acc = retrieval_accuracy(model, tokenizer, held_images, held_captions)
            row.update(i2t=acc["image_to_text"], t2i=acc["text_to_image"], chance=acc["chance"])
        history.append(row)
        bar.update(1)
        bar.set_postfix(loss=f"{row['loss']:.3f}", **({"i2t": f"{row['i2t']:.2f}"} if "i2t" in row else {}))
        if step % config.checkpoint_every == 0 or step == last:
            save()
    bar.close()
    return PretrainResult(model.eval(), tokenizer, history, checkpoint_path, elapsed())
