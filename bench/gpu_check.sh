#!/usr/bin/env bash
# The engine's GPU checks as one script, for a lent GPU machine (PyTorch with
# CUDA, CMake, a C++ compiler; nothing fetched). Prepare here first with
# bench/gpu_prepare.sh and carry .gpu-deps. It
#   1. builds the engine (-DRESTYLE_ENGINE_ONLY=ON) against the LibTorch inside
#      the machine's PyTorch: restyle-bench and the StyleGAN2 golden test;
#   2. runs the StyleGAN2 golden cases on CUDA (RESTYLE_TEST_DEVICE=cuda, TF32
#      off), both formulations, and the same on that machine's CPU;
#   3. times, on CUDA, the generator forward (sg2/) and one stage-1 and one
#      stage-2 IPL iteration at 1024 config-f + ViT-B/32 shapes, random
#      weights, in fp32, tf32 and bf16 autocast; a full IPL adaptation is 300
#      stage-1 + 300 stage-2 iterations, so the script prints that estimate.
# Output: JSON lines and logs under OUT_DIR (default $OUT, else gpu-out/).
#
#   bench/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-out}}"
mkdir -p "$out"
deps="$PWD/.gpu-deps"
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$out/gpu_check.log"; }

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader >"$out/gpu.txt" 2>&1
log "gpu: $(cat "$out/gpu.txt")"
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)') || {
  log "no python3 with torch"; exit 1; }
log "torch $(python3 -c 'import torch; print(torch.__version__, torch.version.cuda)')"

build=build-gpu
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESTYLE_ENGINE_ONLY=ON \
  -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/prefix" -DCMAKE_CUDA_ARCHITECTURES=90 \
  >"$out/configure.log" 2>&1 || { log "configure failed"; tail -30 "$out/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target restyle-bench stylegan2_golden_test \
  >"$out/build.log" 2>&1 || { log "build failed"; grep -m20 -B2 -A6 "error" "$out/build.log"; exit 1; }
log "built"

export RESTYLE_GOLDEN_DIR="$deps/golden" CI=true
status=0
for device in cuda cpu; do
  if RESTYLE_TEST_DEVICE=$device "$build/tests/worker/engine/stylegan2/stylegan2_golden_test" \
      >"$out/golden_$device.log" 2>&1; then
    log "golden sg2 on $device: pass"
  else
    log "golden sg2 on $device: FAIL"; status=1
  fi
  grep -A12 "Largest deviation" "$out/golden_$device.log" | tee -a "$out/gpu_check.log"
done

bench="$build/worker/engine/bench/restyle-bench"
for precision in fp32 tf32 bf16; do
  for filter in sg2/forward adapt/stage1_step/1024 adapt/stage2_step/1024; do
    "$bench" --device cuda --precision "$precision" --filter "$filter" \
      >>"$out/bench_$precision.jsonl" 2>>"$out/bench.log" || { log "bench $filter $precision failed"; status=1; }
  done
  log "bench $precision done"
done
python3 - "$out" <<'PY' | tee -a "$out/gpu_check.log"
import json, sys, glob
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/bench_*.jsonl")):
    for line in open(f):
        if line.startswith("{"):
            d = json.loads(line)
            rows[(d["name"], d.get("precision", "fp32"))] = d
print("%-44s %6s %10s %10s" % ("benchmark", "prec", "median ms", "min ms"))
for (name, prec), d in sorted(rows.items()):
    print("%-44s %6s %10.1f %10.1f" % (name, prec, d["median_ms"], d["min_ms"]))
for prec in ("fp32", "tf32", "bf16"):
    s1 = rows.get(("adapt/stage1_step/1024/vit_b32/b32", prec))
    s2 = rows.get(("adapt/stage2_step/1024/vit_b32/b2", prec))
    if s1 and s2:
        total = 300 * (s1["median_ms"] + s2["median_ms"]) / 1000
        print("full IPL adaptation at 1024, 300 + 300 iterations, %s: %.1f s (goal <= 30 s)" % (prec, total))
PY
exit $status
