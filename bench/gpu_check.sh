#!/usr/bin/env bash
# The engine's GPU checks as one script, for a lent GPU machine (PyTorch with
# CUDA, CMake, a C++ compiler; nothing fetched). Prepare here first with
# bench/gpu_prepare.sh and carry .gpu-deps. It
#   1. builds the engine (-DRESTYLE_ENGINE_ONLY=ON) against the LibTorch inside
#      the machine's PyTorch: restyle-bench and the StyleGAN2 golden test;
#   2. runs the StyleGAN2 and trainer (IPL stages 1 and 2, layer selection,
#      NADA) golden cases on CUDA (RESTYLE_TEST_DEVICE=cuda, TF32 off), and the
#      same on that machine's CPU;
#   3. runs the demo job (restyle-train --demo, IPL and NADA) on CUDA;
#   4. times, on CUDA, the generator forward (sg2/) and one stage-1 and one
#      stage-2 IPL iteration at 1024 config-f + ViT-B/32 shapes, random
#      weights, in tf32 and bf16 autocast (fp32 on request); a full IPL adaptation is 300
#      stage-1 + 300 stage-2 iterations, so the script prints that estimate;
#   5. times bench/reference_baseline.py (the research code's formulation, CLIP
#      in float16 as on a GPU) on the same 1024 steps, as run and in TF32, and
#      prints the engine's full-run time as a ratio of it;
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
torch_root=$(python3 -c 'import torch, os; print(os.path.dirname(torch.__file__))')
torch_abi=$(python3 -c 'import torch; print(int(torch._C._GLIBCXX_USE_CXX11_ABI))')
# PyTorch >= 2.12 headers need C++20.
cxx_std=$(python3 -c 'import torch; v=tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2]); print(20 if v >= (2, 12) else 17)')
configure() {
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DRESTYLE_ENGINE_ONLY=ON \
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/prefix" -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CXX_STANDARD="$cxx_std" "$@" \
    >>"$out/configure.log" 2>&1
}
# LibTorch's CMake package first; if its CUDA discovery fails, import the
# libraries directly (RESTYLE_TORCH_ROOT).
if ! configure; then
  log "find_package(Torch) failed (tail of configure.log below); importing LibTorch directly"
  tail -15 "$out/configure.log"
  rm -rf "$build"
  configure -DRESTYLE_TORCH_ROOT="$torch_root" -DRESTYLE_TORCH_CXX11_ABI="$torch_abi" || {
    log "configure failed"; tail -30 "$out/configure.log"; exit 1; }
fi
t0=$(date +%s)
cmake --build "$build" -j"$(nproc)" --target restyle-bench restyle-train stylegan2_golden_test adapt_golden_test -- -k 0 \
  >"$out/build.log" 2>&1 || { log "build failed"; grep -m30 -A4 "error:" "$out/build.log"; exit 1; }
log "built in $(( $(date +%s) - t0 )) s"

export RESTYLE_GOLDEN_DIR="$deps/golden" CI=true
status=0
for device in cuda cpu; do
  for test in stylegan2/stylegan2_golden_test adapt/adapt_golden_test; do
    short=${test##*/}
    if RESTYLE_TEST_DEVICE=$device "$build/tests/worker/engine/$test" \
        >"$out/${short}_$device.log" 2>&1; then
      log "$short on $device: pass"
    else
      log "$short on $device: FAIL"; status=1
      grep -B2 -A6 "Failure" "$out/${short}_$device.log" | head -40
    fi
    grep -A16 "Largest deviation" "$out/${short}_$device.log" | grep -v "^--" | tee -a "$out/gpu_check.log"
  done
done

# The whole job runner on CUDA: the demo job (tiny models), IPL and NADA.
if "$build/worker/engine/adapt_job/restyle-train" --demo --device cuda --method both \
    --out "$PWD/gpu-demo-out" --stage1-iters 20 --stage2-iters 20 >"$out/demo_cuda.log" 2>&1; then
  log "restyle-train --demo --device cuda: pass"
else
  log "restyle-train --demo --device cuda: FAIL"; tail -5 "$out/demo_cuda.log"; status=1
fi

bench="$build/worker/engine/bench/restyle-bench"
# Narrowing, by environment (space-separated lists):
#   GPU_CHECK_FILTERS     benchmark name substrings
#   GPU_CHECK_PRECISIONS  fp32 tf32 bf16 (default: tf32 bf16)
#   GPU_CHECK_CONVS       default fused reference (generator formulation of adapt/)
#   GPU_CHECK_CUDNN       "off on" (cuDNN autotuning of adapt/; sg2/ runs with off)
# The defaults fit one call (~6-7 minutes on an H200, build included); fp32 and
# the 256 forwards were measured on 2026-11-27 (docs/benchmarks.md).
filters="${GPU_CHECK_FILTERS:-sg2/forward/1024 sg2/grad_w sg2/blocks/1024 adapt/stage1_step/1024 adapt/stage2_step/1024}"
read -r first_cudnn _ <<<"${GPU_CHECK_CUDNN:-off on}"
read -r first_conv _ <<<"${GPU_CHECK_CONVS:-default}"
for precision in ${GPU_CHECK_PRECISIONS:-tf32 bf16}; do
  for cudnn in ${GPU_CHECK_CUDNN:-off on}; do
    for conv in ${GPU_CHECK_CONVS:-default}; do
      for filter in $filters; do
        flags=()
        if [[ $filter == adapt/* ]]; then
          [[ $cudnn == on ]] && flags+=(--cudnn-benchmark)
          [[ $conv != default ]] && flags+=(--conv "$conv")
        else  # sg2/ names carry their formulation: once per precision
          [[ $cudnn != "$first_cudnn" || $conv != "$first_conv" ]] && continue
        fi
        "$bench" --device cuda --precision "$precision" "${flags[@]}" --filter "$filter" \
          >>"$out/bench_$precision.jsonl" 2>>"$out/bench.log" ||
          { log "bench $filter $precision ${flags[*]} failed"; status=1; }
      done
    done
  done
  log "bench $precision done"
done
# The research code's formulation in PyTorch on the same GPU (bench/reference_baseline.py:
# CLIP in float16 as clip.load gives it there), as run (PyTorch's defaults) and with TF32 and
# cuDNN autotuning like the engine's best setting. GPU_CHECK_BASELINE=0 skips it.
if [[ ${GPU_CHECK_BASELINE:-1} == 1 ]]; then
  names=adapt/stage1_step/1024/vit_b32/b32,adapt/stage2_step/1024/vit_b32/b2
  for setting in "--precision default" "--precision tf32 --cudnn-benchmark"; do
    python3 bench/reference_baseline.py --device cuda --names "$names" $setting \
      >>"$out/baseline.jsonl" 2>>"$out/bench.log" || { log "baseline $setting failed"; status=1; }
  done
  log "baseline done"
fi
grep -h "failed:\|Error" "$out/bench.log" | sort | uniq -c | head -10
python3 - "$out" <<'PY' | tee -a "$out/gpu_check.log"
import json, sys, glob
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/bench_*.jsonl") + glob.glob(sys.argv[1] + "/baseline.jsonl")):
    for line in open(f):
        if line.startswith("{"):
            d = json.loads(line)
            rows[(d["name"], d.get("precision", "fp32"), d.get("cudnn_benchmark", False),
                  d.get("conv", "default"))] = d
print("%-38s %5s %6s %9s %10s %10s %6s" % ("benchmark", "prec", "cudnnB", "conv", "median ms",
                                          "min ms", "iters"))
for (name, prec, cb, conv), d in sorted(rows.items()):
    print("%-38s %5s %6s %9s %10.1f %10.1f %6d" % (name, prec, "yes" if cb else "no", conv,
                                                  d["median_ms"], d["min_ms"], d["iters"]))
for prec in ("fp32", "tf32", "bf16"):
    for cb in (False, True):
        for conv in ("default", "fused", "reference"):
            s1 = rows.get(("adapt/stage1_step/1024/vit_b32/b32", prec, cb, conv))
            s2 = rows.get(("adapt/stage2_step/1024/vit_b32/b2", prec, cb, conv))
            if s1 and s2:
                total = 300 * (s1["median_ms"] + s2["median_ms"]) / 1000
                print("full IPL adaptation at 1024, 300 + 300 iterations, %s, cuDNN autotune %s, "
                      "conv %s: %.1f s (goal <= 30 s)" % (prec, "on" if cb else "off", conv, total))
for (name, prec, cb, conv), d in sorted(rows.items()):
    blocks = {int(k.split(".")[1]): float(v) for k, v in d.get("extra", {}).items()
              if k.startswith("block_ms.")}
    if blocks:
        print("%s %s per block (ms): %s" % (name, prec, ", ".join(
            "%d: %.2f" % (r, blocks[r]) for r in sorted(blocks))))
def full(prefix, prec, cb, conv):
    s1 = rows.get((prefix + "adapt/stage1_step/1024/vit_b32/b32", prec, cb, conv))
    s2 = rows.get((prefix + "adapt/stage2_step/1024/vit_b32/b2", prec, cb, conv))
    return 300 * (s1["median_ms"] + s2["median_ms"]) / 1000 if s1 and s2 else None
ref_as_run = full("ref/", "default", False, "default")
ref_best = full("ref/", "tf32", True, "default")
ours = full("", "tf32", True, "default")
for label, ref in (("as the research code runs (PyTorch defaults)", ref_as_run),
                   ("in TF32 with cuDNN autotuning", ref_best)):
    if ref:
        print("research-code formulation, %s: %.1f s%s" % (
            label, ref, "; engine (tf32, autotuned) / it = %.2f" % (ours / ref) if ours else ""))
PY
# At most 8 files come back from a lent machine: keep the JSON lines and the
# summary log, pack the other logs into one archive.
( cd "$out" && packed=$(ls | grep -v -e '\.jsonl$' -e '^gpu_check\.log$') &&
  tar -czf logs.tar.gz $packed && rm -f $packed )
exit $status
