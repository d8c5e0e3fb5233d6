#!/usr/bin/env bash
# The prepared GPU check of issue 15: one script, at most 8 minutes on one H200, that prints
# every figure the issue asks for. Run it from the repository root on a CUDA machine:
#
#     bash benchmarks/gpu_check.sh [OUT_DIR]        # OUT_DIR default: $OUT, else /tmp/emclip-gpu-check
#
# It runs, each under its own time limit (the protocol gets whatever is left of the 8 minutes):
#   1. benchmarks/bench_train.py --profile gpu: s/step, images/s, GFLOP/step, MFU for emclip,
#      emclip-no-em and unet (ViT-B-16 at random init, batch 32 x 224 px, bf16 autocast), then
#      emclip again with the frozen encoder in bf16 and torch.compile'd;
#   2. benchmarks/bench_loader.py --profile gpu: the loader's images/s next to the model's;
#   3. EM at scale: eager vs torch.compile'd em_iterations at x = 16 x 512 x 16,384 (K = 32,
#      T = 3): ms, share of the card's memory bandwidth, max difference between the two;
#   4. the gpu-profile single-source protocol: fundus, split 1->234, emclip + unet + emclip-no-em,
#      seed 0, the profile's full steps (EMCLIP_GPU_CHECK_STEPS=N cuts them), data generation and
#      evaluation included; wall time per stage and the Dice table (results in OUT_DIR/protocol).
#
# This project's device machine (the `run` tool; see its README) has torch, timm, numpy, pandas,
# scipy, scikit-image, tqdm and matplotlib, but not open_clip_torch, ftfy, wcwidth or monai.
# Carry them as wheels: here, in the repository root, once,
#     echo /.whl/ >> .git/info/exclude
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#         --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#         -d .whl open_clip_torch==3.3.0 ftfy wcwidth monai==1.6.1
# (pure-Python wheels: a few MiB); then call `run` with carry [".whl"] and the command
#     bash benchmarks/gpu_check.sh "$OUT"
# This script installs .whl/*.whl into /tmp/site itself when the folder is there.
set -uo pipefail

OUT_DIR=${1:-${OUT:-/tmp/emclip-gpu-check}}
BUDGET=${EMCLIP_GPU_CHECK_BUDGET:-480}   # seconds for the whole script
PY=${PYTHON:-python3}
mkdir -p "$OUT_DIR"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 MPLBACKEND=Agg PYTHONUNBUFFERED=1
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
START=$(date +%s)
left() { echo $(( BUDGET - ($(date +%s) - START) )); }
stage() { echo; echo "== [$(( $(date +%s) - START )) s] $*"; }

stage "$(date -u +%Y-%m-%dT%H:%MZ)  $("$PY" -c 'import torch; print("torch", torch.__version__, "| GPU", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none")')"
stage "1. training step, gpu profile (bf16 autocast, channels-last)"
timeout 150 "$PY" benchmarks/bench_train.py --profile gpu --models emclip emclip-no-em unet --steps 10 --warmup 3
stage "1b. emclip with the frozen encoder in bf16 and compiled"
timeout 100 "$PY" benchmarks/bench_train.py --profile gpu --models emclip --steps 10 --warmup 3 --precision bf16 --compile
stage "2. loader vs model"
timeout 90 "$PY" benchmarks/bench_loader.py --profile gpu --model emclip --steps 10 --epochs 3
stage "3. EM at scale: eager vs torch.compile"
timeout 60 "$PY" - <<'PYEOF'
import time
import torch
from emclip.em import em_iterations

dev = torch.device("cuda")
g = torch.Generator(dev).manual_seed(0)
x = torch.randn(16, 512, 16384, device=dev, generator=g)
mu = torch.nn.functional.normalize(torch.randn(1, 512, 32, device=dev, generator=g), dim=1)


def ms(fn, repeats=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return 1000 * (time.perf_counter() - start) / repeats


compiled = torch.compile(em_iterations, dynamic=False)
ref, fast = em_iterations(x, mu, 3, 1.0), compiled(x, mu, 3, 1.0)
bytes_read = 3 * 2 * x.numel() * x.element_size()  # each of T=3 rounds reads x in the E- and the M-step
for name, fn in (("eager", lambda: em_iterations(x, mu, 3, 1.0)), ("compiled", lambda: compiled(x, mu, 3, 1.0))):
    t = ms(fn)
    print(f"EM {name:8s} {t:7.2f} ms  ({bytes_read / t / 1e9:6.0f} GB/s of x, {100 * bytes_read / t / 1e9 / 4800:4.1f} % of 4.8 TB/s)")
print(f"compiled vs eager: max |d mu| {(fast[0] - ref[0]).abs().max().item():.2e}, max |d z| {(fast[1] - ref[1]).abs().max().item():.2e}")
PYEOF
stage "4. gpu-profile single-source protocol (fundus 1->234; emclip, unet, emclip-no-em; seed 0), $(left) s left"
timeout "$(left)" "$PY" - "$OUT_DIR/protocol" <<'PYEOF'
import os
import sys
import time

import emclip
from emclip.evaluation import run_protocol

prof = emclip.get_profile("gpu")
steps = int(os.environ.get("EMCLIP_GPU_CHECK_STEPS", prof.train_steps))
prof = prof.replace(train_steps=steps)
start = time.perf_counter()
table = run_protocol("fundus", "single-source", ["emclip", "unet", "emclip-no-em"], seeds=[0], profile=prof,
                     splits=["1->234"], out_dir=sys.argv[1], progress=False)
print(f"protocol: {time.perf_counter() - start:.0f} s end to end ({steps} steps per model)")
print(table.groupby(["method", "in_domain"])["dice"].mean().unstack().round(3).to_string())
PYEOF
status=$?
[ $status -eq 124 ] && echo "protocol: NOT finished within the budget (see $OUT_DIR/protocol for the runs it finished)"
stage "done"
