"""``emclip train``: train a model on source domains and save its checkpoint.

    emclip train --task fundus --model emclip --train-domains domain1 --profile ci
    torchrun --nproc_per_node=2 -m emclip train --task cardiac --model unet --train-domains A B

The checkpoint goes to ``--out`` (default ``results/checkpoints/<checkpoint_name>``, the name
notebook 06 and ``emclip evaluate`` look for); the location is checked before training starts.
``--resume`` continues a killed run exactly, and only an identical run (the engine says what
differs otherwise); ``--overwrite`` replaces a finished checkpoint, which is kept otherwise.
"""

from __future__ import annotations

from emclip.cli.common import positive_int, task_name


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="train a model on source domains (works under torchrun)")
    parser.add_argument("--task", required=True, type=task_name, help="fundus or cardiac")
    parser.add_argument("--model", default="emclip", help="model name (see emclip.models.list_models())")
    parser.add_argument("--train-domains", nargs="+", required=True, metavar="DOMAIN",
                        help="source domain(s), e.g. domain1 (fundus) or A (cardiac)")
    parser.add_argument("--profile", default=None, help="ci, cpu, gpu or auto (default: $EMCLIP_PROFILE)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help="optimiser steps, >= 1 (default: the profile's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--source", default="synthetic", choices=("synthetic", "real"), help="data source")
    parser.add_argument("--root", default=None, help="real-data root (default: $EMCLIP_DATA_DIR)")
    parser.add_argument("--out", default=None, help="checkpoint path (default: results/checkpoints/<name>.pt)")
    again = parser.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true",
                       help="continue the killed run at --out (only the identical run: same record)")
    again.add_argument("--overwrite", action="store_true",
                       help="train from scratch even if --out holds a finished checkpoint (which is replaced)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    from emclip.cli.common import check_domains, check_models, resolve_profile
    from emclip.fileio import check_output_path
    from emclip.runlog import results_dir
    from emclip.tasks import get_task

    task = get_task(args.task)
    check_models([args.model])
    check_domains(task, args.train_domains)
    profile = resolve_profile(args.profile)
    if args.out:
        out = Path(args.out)
    else:
        from emclip.engine import checkpoint_name

        out = results_dir("checkpoints") / checkpoint_name(task, args.model, args.train_domains, profile,
                                                           seed=args.seed)
    check_output_path(out, "file")

    from emclip.engine import distributed as ddp
    from emclip.engine import train_from_profile

    distributed = ddp.init_distributed()
    try:
        result = train_from_profile(args.model, task, args.train_domains, profile=profile, seed=args.seed,
                                    source=args.source, root=args.root, checkpoint_path=out, steps=args.steps,
                                    progress=not args.no_progress, device=args.device, resume=args.resume,
                                    **({"overwrite": True} if args.overwrite else {}))
        if ddp.is_main_process():
            last = result.history.iloc[-1]
            dice = ", ".join(f"{k} {v:.3f}" for k, v in result.final_val_dice().items())
            print(f"trained {args.model} on {task.name} {'+'.join(args.train_domains)} "
                  f"({profile.name} profile, {int(last['step'])} steps"
                  f"{f', {ddp.get_world_size()} processes' if distributed else ''}): "
                  f"loss {last['loss']:.4f}, val Dice {dice or 'n/a'}")
            print(f"checkpoint: {out}")
    finally:
        ddp.cleanup_distributed()
    return 0
