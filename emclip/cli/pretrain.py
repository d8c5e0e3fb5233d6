"""``emclip pretrain``: contrastive pretraining of a tiny open_clip model on the kit's own corpus.

    emclip pretrain --out weights.safetensors                     # the recipe of the shipped weights
    emclip pretrain --steps 200 --corpus-size 2000 --out w.safetensors   # a short run
    emclip pretrain --out w.safetensors --checkpoint run.pt       # kill it, run again: it resumes

Writes the weights (safetensors) and a JSON record beside them (config, history, time, sha256,
package versions); ``--card`` also writes a model card. Load the result with
``load_clip("emclip-tiny", "w.safetensors")``. See :mod:`emclip.clip.pretrain.train`.
"""

from __future__ import annotations

import dataclasses

# The recipe's fields (emclip.clip.pretrain.train.PretrainConfig; a test keeps the two in step).
# Declared here so that building the parser does not import torch / open_clip.
RECIPE_FLAGS = {"model": str, "image_size": int, "corpus_size": int, "corpus_seed": int, "steps": int,
                "batch_size": int, "lr": float, "weight_decay": float, "warmup_steps": int, "dense_weight": float, "dense_loss": str,
                "seed": int,
                "init_seed": int, "eval_pairs": int, "eval_every": int, "checkpoint_every": int}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a tiny CLIP on synthetic image-text pairs (open_clip ClipLoss)",
        description="Contrastive image-text pretraining of an open_clip model (default emclip-tiny) on "
        "scenes rendered by the kit, in styles that never come near the benchmark's eight. "
        "Resumable (--checkpoint), deterministic on the CPU, uses the GPU when present (--device auto).",
    )
    for name, kind in RECIPE_FLAGS.items():
        parser.add_argument("--" + name.replace("_", "-"), type=kind, default=None,
                            help="default: the shipped weights' recipe (PretrainConfig)")
    parser.add_argument("--out", required=True, help="where the weights go (.safetensors)")
    parser.add_argument("--checkpoint", default=None, help="resumable checkpoint (resumed when it exists)")
    parser.add_argument("--corpus-cache", default=None, help="folder for the rendered corpus (built once)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--card", default=None, help="also write a model card (markdown) here")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def command_line(args) -> str:
    """The command as given (recipe flags that were set, then the run options), for the record."""
    import shlex

    parts = ["emclip", "pretrain"]
    for name in RECIPE_FLAGS:
        if getattr(args, name) is not None:
            parts += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    for name in ("out", "checkpoint", "corpus_cache", "card", "threads"):
        if getattr(args, name) is not None:
            parts += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    if args.device != "cpu":
        parts += ["--device", args.device]
    return shlex.join(parts)


def run(args) -> int:
    import torch

    from emclip.clip.pretrain.export import export_run
    from emclip.clip.pretrain.train import PretrainConfig, pretrain

    if args.threads:
        torch.set_num_threads(args.threads)
    if not str(args.out).endswith(".safetensors"):
        raise ValueError(f"--out {args.out}: the weights are written as safetensors; end the name in .safetensors.")
    changes = {f.name: getattr(args, f.name) for f in dataclasses.fields(PretrainConfig)
               if getattr(args, f.name) is not None}
    config = PretrainConfig(**changes)
    result = pretrain(config, checkpoint_path=args.checkpoint, corpus_cache=args.corpus_cache,
                      progress=not args.no_progress, device=args.device)
    record = export_run(result, config, args.out, command=command_line(args), card=args.card, device=args.device)
    last = result.history[-1]
    print(f"pretrained {config.model} for {config.steps} steps in {result.seconds / 60:.1f} min: final loss "
          f"{last['loss']:.3f}, held-out retrieval top-1 image->text {last.get('i2t', float('nan')):.3f} "
          f"(chance {last.get('chance', float('nan')):.3f}). Weights: {args.out} (sha256 {record['sha256']}).")
    return 0
