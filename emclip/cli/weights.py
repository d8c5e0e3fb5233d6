"""``emclip download-weights NAME [TAG]``: fetch CLIP weights into the cache, failing fast offline.

``--sha256 DIGEST`` checks the file: a local weights file given as TAG (a path), or the
downloaded / cached file. The digest must be the full SHA256 or at least its first 16 hex
characters.
"""

from __future__ import annotations

import os

from emclip.errors import ConfigError, InputError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download-weights",
        help="download CLIP weights (open_clip name + tag, or hf-hub:org/repo) into the cache",
        description="Download CLIP weights once (e.g. `emclip download-weights ViT-B-16 openai`) so that "
        "notebooks and tests can run offline later. Fails within seconds without a network. "
        "With a local file as TAG and --sha256, checks the file instead.",
    )
    parser.add_argument("name", nargs="?", default=None, help="open_clip model name (ViT-B-16, RN50, ...) or hf-hub:org/repo")
    parser.add_argument("tag", nargs="?", default=None,
                        help="pretrained tag (openai, laion2b_s34b_b88k, ...) or the path of a local weights file")
    parser.add_argument("--cache-dir", default=None, help="download folder (default: open_clip's/HF's cache)")
    parser.add_argument("--sha256", default=None,
                        help="expected SHA256 of the file (full digest or its first >= 16 hex characters)")
    parser.add_argument("--list", action="store_true", help="list the known (name, tag) pairs and exit")
    parser.set_defaults(func=run)


def _is_local_file(tag: str | None) -> bool:
    return bool(tag) and (os.path.sep in tag or tag.endswith((".pt", ".pth", ".bin", ".safetensors")))


def run(args) -> int:
    from emclip.clip.loading import (
        check_sha256_argument,
        default_tag,
        download_weights,
        list_clip_models,
        verify_sha256,
    )

    if args.list:
        for name, tag in list_clip_models():
            print(f"{name:40s} {tag or '-'}")
        return 0
    if not args.name:
        raise ConfigError("give a model NAME (e.g. ViT-B-16 openai), or --list to see the valid pairs")
    expected = check_sha256_argument(args.sha256) if args.sha256 is not None else None
    if _is_local_file(args.tag):
        if not os.path.isfile(args.tag):
            raise InputError(f"weights file {args.tag} does not exist; pass an existing file or a tag.")
        if expected is None:
            raise ConfigError(f"{args.tag} is a local file: there is nothing to download. Pass --sha256 DIGEST "
                             "to check it, or load it with load_clip(NAME, pretrained=PATH, sha256=DIGEST).")
        digest = verify_sha256(args.tag, expected)
        print(f"CLIP weights file {args.tag}: SHA256 {digest} matches.")
        return 0
    tag = args.tag if args.tag is not None or args.name.startswith("hf-hub:") else default_tag(args.name)
    path = download_weights(args.name, tag, cache_dir=args.cache_dir)
    if expected is not None:
        verify_sha256(path, expected)
    print(f"CLIP weights {args.name} {tag or ''} ready: {path}" + (" (SHA256 matches)" if expected else ""))
    return 0
