"""``emclip download-weights NAME [TAG]``: fetch CLIP weights into the cache, failing fast offline."""

from __future__ import annotations


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download-weights",
        help="download CLIP weights (open_clip name + tag, or hf-hub:org/repo) into the cache",
        description="Download CLIP weights once (e.g. `emclip download-weights ViT-B-16 openai`) so that "
        "notebooks and tests can run offline later. Fails within seconds without a network.",
    )
    parser.add_argument("name", nargs="?", default=None, help="open_clip model name (ViT-B-16, RN50, ...) or hf-hub:org/repo")
    parser.add_argument("tag", nargs="?", default=None, help="pretrained tag (openai, laion2b_s34b_b88k, ...)")
    parser.add_argument("--cache-dir", default=None, help="download folder (default: open_clip's/HF's cache)")
    parser.add_argument("--list", action="store_true", help="list the known (name, tag) pairs and exit")
    parser.set_defaults(func=run)


def run(args) -> int:
    from emclip.clip.loading import default_tag, download_weights, list_clip_models

    if args.list:
        for name, tag in list_clip_models():
            print(f"{name:40s} {tag or '-'}")
        return 0
    if not args.name:
        raise ValueError("give a model NAME (e.g. ViT-B-16 openai), or --list to see the valid pairs")
    tag = args.tag if args.tag is not None or args.name.startswith("hf-hub:") else default_tag(args.name)
    path = download_weights(args.name, tag, cache_dir=args.cache_dir)
    print(f"CLIP weights {args.name} {tag or ''} ready: {path}")
    return 0
