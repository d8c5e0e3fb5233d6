"""Benchmark: pretraining speed, and what a pretrained CLIP knows compared with random init.

    python benchmarks/bench_pretrain.py --speed                      # s/step of the recipe (CPU, or GPU when present)
    python benchmarks/bench_pretrain.py --evaluate                   # the shipped weights vs random init
    python benchmarks/bench_pretrain.py --evaluate --weights w.safetensors --json out.json

``--evaluate`` prints, for the random control and the weights: image-text retrieval top-1 on the
held-out pairs of the recipe (another corpus seed and style seed; chance level beside it) and the
zero-shot pixel-text contrast per region (mean similarity inside minus outside, notebook 03's
measure) on the test images of the eight benchmark domains, whose styles pretraining never came
near, at 64 px (the pretraining size) and 96 px (the ``cpu`` profile's input).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import torch

from emclip.clip import load_clip
from emclip.clip.pretrain.corpus import LazyCorpus
from emclip.clip.pretrain.evaluate import benchmark_images, retrieval_accuracy, zero_shot_contrast
from emclip.clip.pretrain.train import PretrainConfig, batch_indices, eval_pairs, pretrain
from emclip.clip.weights import shipped_entry


def recipe() -> PretrainConfig:
    entry = shipped_entry("emclip-tiny", "synth-v2")
    return PretrainConfig(**entry["config"]) if entry else PretrainConfig()


def speed(config: PretrainConfig, steps: int, device: str) -> dict:
    """Seconds per step of the recipe (the corpus rendered lazily; the first step not timed)."""
    corpus = LazyCorpus(config.corpus_size, config.image_size, config.corpus_seed)
    for step in range(steps + 1):  # render the scenes first: the timing is of the training step
        for index in batch_indices(step, config):
            corpus.scene(int(index))
    pretrain(config, corpus=corpus, stop_after=1, held_out=False, progress=False, device=device)
    start = time.perf_counter()
    pretrain(dataclasses.replace(config), corpus=corpus, stop_after=steps, held_out=False, progress=False,
             device=device)
    per_step = (time.perf_counter() - start) / steps
    return {"device": device, "threads": torch.get_num_threads(), "seconds_per_step": per_step,
            "projected_minutes": per_step * config.steps / 60}


def evaluate(weights: str | None, pairs: int, per_domain: int) -> dict:
    bundles = {"random": load_clip("emclip-tiny", "random"),
               "pretrained": load_clip("emclip-tiny", weights) if weights else load_clip("emclip-tiny", "synth-v2")}
    config = dataclasses.replace(recipe(), eval_pairs=pairs)
    images, captions = eval_pairs(config)
    out = {"retrieval": {}, "zero_shot": {}}
    for name, bundle in bundles.items():
        out["retrieval"][name] = retrieval_accuracy(bundle.model, bundle.tokenizer, images, captions)
    for size in (64, 96):
        for task in ("fundus", "cardiac"):
            imgs, masks, _ = benchmark_images(task, size, per_domain)
            for name, bundle in bundles.items():
                values = zero_shot_contrast(bundle.model, bundle.tokenizer, task, imgs, masks)
                out["zero_shot"][f"{task}@{size}px/{name}"] = values
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", action="store_true")
    parser.add_argument("--steps", type=int, default=10, help="timed steps for --speed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--evaluate", action="store_true")
    parser.add_argument("--weights", default=None, help="a weights file (default: the shipped synth-v2)")
    parser.add_argument("--pairs", type=int, default=512, help="held-out pairs for retrieval")
    parser.add_argument("--per-domain", type=int, default=32, help="benchmark test images per domain")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = {}
    if args.speed:
        results["speed"] = speed(recipe(), args.steps, args.device)
        s = results["speed"]
        print(f"{s['device']} ({s['threads']} threads): {s['seconds_per_step']:.3f} s/step -> "
              f"{s['projected_minutes']:.1f} min for the recipe's {recipe().steps} steps")
    if args.evaluate:
        results["evaluate"] = evaluate(args.weights, args.pairs, args.per_domain)
        for name, r in results["evaluate"]["retrieval"].items():
            print(f"retrieval {name:10s} i2t {r['image_to_text']:.3f} t2i {r['text_to_image']:.3f} "
                  f"chance {r['chance']:.4f} ({r['n']} pairs)")
        for key, values in results["evaluate"]["zero_shot"].items():
            print(f"zero-shot {key:28s} " + "  ".join(f"{k} {v:+.3f}" for k, v in values.items()))
    if args.json:
        from emclip.fileio import atomic_write_json

        atomic_write_json(args.json, json.loads(json.dumps(results, default=float)))
    if not (args.speed or args.evaluate):
        parser.print_help()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
