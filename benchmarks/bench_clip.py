"""Benchmark of the CLIP layer on CPU: encode time per image and the FeatureCache speed-up.

    python benchmarks/bench_clip.py [--threads 1] [--size 224]

Prints, at 224x224 on CPU: milliseconds per image for the dense features of the tiny model
(``emclip-tiny``) and of ViT-B-16 (random init -- no weights needed, same cost as real ones),
then the time of three "epochs" over the same images with and without ``FeatureCache``.
"""

from __future__ import annotations

import argparse
import time

import torch

from emclip.clip import CLIPDenseEncoder, FeatureCache, load_clip


def per_image_ms(encoder, images: torch.Tensor, repeats: int) -> float:
    with torch.no_grad():
        encoder(images[:1])  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            encoder(images)
    return 1000 * (time.perf_counter() - start) / (repeats * images.shape[0])


def cache_speedup(encoder, images: torch.Tensor, epochs: int = 3, batch: int = 8) -> tuple[float, float]:
    ids = [f"img{i}" for i in range(images.shape[0])]

    def run(fn) -> float:
        start = time.perf_counter()
        with torch.no_grad():
            for _ in range(epochs):
                for s in range(0, images.shape[0], batch):
                    fn(images[s:s + batch], ids[s:s + batch])
        return time.perf_counter() - start

    plain = run(lambda x, _ids: encoder(x))
    cache = FeatureCache(encoder)
    cached = run(cache)
    return plain, cached


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--size", type=int, default=224, help="input side in pixels (default 224)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    print(f"CPU, {torch.get_num_threads()} thread(s), input {args.size}x{args.size}, torch {torch.__version__}")
    for name, batch, repeats in (("emclip-tiny", 8, 3), ("ViT-B-16", 4, 1)):
        bundle = load_clip(name)  # random init: the cost is the architecture's
        encoder = CLIPDenseEncoder(bundle)
        images = torch.rand(batch, 3, args.size, args.size, generator=gen)
        ms = per_image_ms(encoder, images, repeats)
        params = sum(p.numel() for p in encoder.parameters()) / 1e6
        print(f"  {name:12s} ({params:6.1f} M visual params): {ms:8.1f} ms / image (dense taps {encoder.layers})")
    encoder = CLIPDenseEncoder(load_clip("emclip-tiny"))
    images = torch.rand(32, 3, args.size, args.size, generator=gen)
    plain, cached = cache_speedup(encoder, images)
    print(f"FeatureCache, emclip-tiny, 32 images x 3 epochs: recompute {plain:.2f} s, cached {cached:.2f} s "
          f"-> speed-up x{plain / cached:.1f} (the first epoch computes, later epochs only read)")


if __name__ == "__main__":
    main()
