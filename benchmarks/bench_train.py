"""Training throughput of EM-CLIP and the U-Net, and where EM-CLIP's time goes.

    python benchmarks/bench_train.py                 # cpu profile on the CPU (the kit's default)
    python benchmarks/bench_train.py --profile gpu   # on a GPU: bf16 + channels-last
    python benchmarks/bench_train.py --precision bf16 --compile   # the fast frozen encoder's options

Prints, per model: s/step, images/s (AdamW step, Dice+CE loss, batch and image size of the
profile), GFLOP/step (``torch.utils.flop_counter``: the matmuls, convolutions and attention of
one forward + backward, counted by the benchmark itself) and the model FLOP utilisation,
MFU = achieved FLOP/s / peak FLOP/s. The peak is the GPU's dense bf16 datasheet figure on CUDA
and, on the CPU, the FLOP/s of a large fp32 matrix product measured on the same threads just
before (so CPU MFU says how close the step comes to this machine's own matmul speed). Then
EM-CLIP's forward split into encoder (frozen CLIP), neck + EM and decoder.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

import emclip
from emclip.losses import get_loss
from emclip.models import create_model

PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L4": 121.0, "T4": 65.0, "V100": 125.0}


def peak_tflops(device: torch.device) -> tuple[float | None, str]:
    """(peak TFLOP/s, what it is): the GPU's bf16 datasheet peak, or the CPU's measured fp32 matmul rate."""
    if device.type != "cuda":
        return measured_matmul_tflops(), "measured fp32 matmul"
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None), "bf16 datasheet"


def measured_matmul_tflops(n: int = 1024, repeats: int = 10) -> float:
    """TFLOP/s of an n x n x n fp32 matrix product on the CPU (best of ``repeats``)."""
    a, b = torch.rand(n, n), torch.rand(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def tower_summary(encoder) -> str:
    """What the encoder really runs (not what a config asked for): kind, width, depth, patch."""
    visual = encoder.visual
    if encoder.kind == "vit":
        return (f"ViT width {visual.transformer.width}, {len(visual.transformer.resblocks)} blocks, "
                f"patch {visual.patch_size[0]}, taps {encoder.layers}")
    return f"ModifiedResNet, stage widths {encoder.out_channels}, grid stride {encoder.reduction}"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def batch(prof, task, device):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(prof.batch_size, 3, prof.image_size, prof.image_size, generator=g)
    masks = torch.randint(0, task.num_labels, (prof.batch_size, prof.image_size, prof.image_size), generator=g)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    return images.to(device), masks.to(device)


def train_step_fn(model, task, device):
    loss_fn = get_loss(task)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    def step(images, masks):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = model(images)
        loss = loss_fn(logits.float(), masks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def timed(fn, device, repeats: int) -> float:
    """Mean seconds per call (wall clock, synchronised on CUDA)."""
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def step_flops(step, images, masks) -> float:
    with FlopCounterMode(display=False) as counter:
        step(images, masks)
    return float(counter.get_total_flops())


def bench_model(name, prof, task, device, steps: int, warmup: int, parts: bool = True,
                precision: str = "fp32", compile: bool = False) -> dict:
    """Time ``steps`` training steps of ``name`` (after ``warmup``); ``precision``/``compile`` set
    the frozen CLIP encoder's options (:class:`emclip.clip.CLIPDenseEncoder`) where there is one."""
    torch.manual_seed(0)
    model = create_model(name, task, profile=prof).to(device).train()
    encoder = getattr(model, "encoder", None)
    if encoder is not None:
        encoder.precision, encoder.compile = precision, compile
        print(f"    {name}: CLIP tower {tower_summary(encoder)}")
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    images, masks = batch(prof, task, device)
    step = train_step_fn(model, task, device)
    for _ in range(warmup):
        step(images, masks)
    seconds = timed(lambda: step(images, masks), device, steps)
    flops = step_flops(step, images, masks)
    counts = model.parameter_counts()
    out = {"model": name, "s/step": seconds, "steps/s": 1 / seconds, "images/s": prof.batch_size / seconds,
           "GFLOP/step": flops / 1e9, "trainable": counts["trainable"], "frozen": counts["frozen"]}
    peak, out["peak"] = peak_tflops(device)
    if peak:
        out["MFU %"] = 100 * flops / seconds / (peak * 1e12)
        out["peak TFLOP/s"] = peak
    if parts and name.startswith("emclip"):
        out["parts"] = emclip_parts(model, images, device, steps)
    return out


@torch.no_grad()
def emclip_parts(model, images, device, repeats: int) -> dict:
    """Forward seconds of EM-CLIP's parts (training mode, no autograd): encoder, neck + EM, decoder."""
    ctx = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def neck_em(feats):
        deep = model.neck(feats[-1].to(model.neck.weight.dtype))
        return model.em(deep) if model.em is not None else model.residual(deep)

    with ctx:
        feats = model.encoder(images)
        em_out = neck_em(feats)
        deep = em_out.features
        centres = em_out.bases if getattr(model.decoder, "match", None) is not None else None
        shallow = [f.to(deep.dtype) for f in feats[:-1]]
        out = {
            "encoder (frozen CLIP)": timed(lambda: model.encoder(images), device, repeats),
            "neck + EM": timed(lambda: neck_em(feats), device, repeats),
            "decoder": timed(lambda: model.decoder([*shallow, deep], model.class_embeddings(), images,
                                                   centres=centres), device, repeats),
        }
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default=None, help="ci, cpu or gpu (default: cpu on CPU, gpu on CUDA)")
    parser.add_argument("--task", default="fundus")
    parser.add_argument("--models", nargs="+", default=["emclip", "unet"])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per model")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"], help="frozen CLIP encoder precision")
    parser.add_argument("--compile", action="store_true", help="torch.compile the frozen CLIP encoder")
    args = parser.parse_args(argv)
    device = emclip.get_device(args.device)
    prof = emclip.get_profile(args.profile or ("gpu" if device.type == "cuda" else "cpu"))
    if args.threads:
        torch.set_num_threads(args.threads)
    task = emclip.tasks.get_task(args.task)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else "none"
    print(f"device {device} (GPU: {gpu}), torch threads {torch.get_num_threads()}, profile {prof.name}: "
          f"batch {prof.batch_size} x {prof.image_size}px, model overrides {prof.model_overrides or 'none'}, "
          f"task {task.name}, encoder precision {args.precision}"
          f"{', compiled' if args.compile else ''}, torch {torch.__version__}")
    for name in args.models:
        r = bench_model(name, prof, task, device, args.steps, args.warmup, precision=args.precision,
                        compile=args.compile)
        line = (f"{name:16s} {r['s/step']:.3f} s/step  {r['images/s']:8.1f} images/s  {r['GFLOP/step']:8.1f} GFLOP/step  "
                f"trainable {r['trainable']:,}  frozen {r['frozen']:,}")
        if "MFU %" in r:
            line += f"  MFU {r['MFU %']:.2f}% (of {r['peak TFLOP/s']:.2f} TFLOP/s, {r['peak']})"
        print(line)
        if "parts" in r:
            total = sum(r["parts"].values())
            for part, sec in r["parts"].items():
                print(f"    forward {part:22s} {1000 * sec:8.1f} ms  ({100 * sec / total:4.1f}% of the forward)")
        total = prof.train_steps * r["s/step"]
        print(f"    -> {prof.train_steps} steps of the {prof.name} profile: ~{total:.0f} s ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
