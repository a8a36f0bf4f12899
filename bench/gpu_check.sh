#!/usr/bin/env bash
# The engine's GPU checks as one script, for a lent GPU machine (PyTorch with
# CUDA, CMake, a C++ compiler; nothing fetched). Prepare here first with
# bench/gpu_prepare.sh and carry .gpu-deps. It
#   1. builds the engine (-DRESTYLE_ENGINE_ONLY=ON) against the LibTorch inside
#      the machine's PyTorch;
#   2. runs the StyleGAN2 and trainer (IPL stages 1 and 2, layer selection,
#      NADA) golden cases on CUDA (RESTYLE_TEST_DEVICE=cuda, TF32 off), and
#      the channels-last and bfloat16 generator unit tests there;
#   3. runs the demo job (restyle-train --demo, IPL and NADA) on CUDA with the
#      fast paths on;
#   4. times, on CUDA, one stage-1 and one stage-2 IPL iteration at 1024
#      config-f + ViT-B/32 shapes (random weights) and the per-block generator
#      forward of stage 1's 32 images, in the job's default (TF32, cuDNN
#      autotuning) and the candidate fast paths (channels-last activations, a
#      bfloat16 frozen source, bf16 autocast); a full IPL adaptation is 300
#      stage-1 + 300 stage-2 iterations, so the summary prints that estimate.
#      Among them it times bench/reference_baseline.py (the research code's
#      formulation, CLIP in float16 as on a GPU) on the same 1024 steps, in
#      TF32 and as run, and prints the engine's full-run time as a ratio of it,
#      and profiles the steps (GPU time by operator and by kernel);
#   5. times Generate's engine side on CUDA (serve/*: images per second per
#      batch size at 256 and 1024, batch-invariant and fastest; one grouped
#      forward for 2-8 adapted generators against one forward each; PNG
#      encoding on that machine's CPU), which set the worker's CUDA defaults
#      (docs/benchmarks.md#serving).
# Steps after the build run under a time budget (GPU_CHECK_BUDGET_S, default
# 480 s) so that the script always ends and packs its logs in one call.
# Output: JSON lines and logs under OUT_DIR (default $OUT, else gpu-out/).
#
#   bench/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-gpu-out}}"
mkdir -p "$out"
deps="$PWD/.gpu-deps"
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$out/gpu_check.log"; }
status=0

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
    -DCMAKE_PREFIX_PATH="$torch_prefix;$deps/prefix" -DCMAKE_CUDA_ARCHITECTURES=90 -DCMAKE_CXX_STANDARD="$cxx_std" \
    -DRESTYLE_CUDA_KERNELS=ON "$@" \
    >>"$out/configure.log" 2>&1
}
# LibTorch's CMake package first, with the engine's CUDA kernels; then
# without the kernels; then importing LibTorch directly (RESTYLE_TORCH_ROOT)
# where the package's CUDA discovery fails, with and without the kernels.
torch_root_flags="-DRESTYLE_TORCH_ROOT=$torch_root -DRESTYLE_TORCH_CXX11_ABI=$torch_abi"
configured=0
for attempt in "" "-DRESTYLE_CUDA_KERNELS=OFF" "$torch_root_flags" \
               "$torch_root_flags -DRESTYLE_CUDA_KERNELS=OFF"; do
  rm -rf "$build"
  # shellcheck disable=SC2086  # flags are words
  if configure $attempt; then configured=1; break; fi
  log "configure ${attempt:-(default)} failed (tail of configure.log below)"
  tail -15 "$out/configure.log"
  status=1
done
(( configured )) || { log "configure failed"; exit 1; }
t0=$(date +%s)
targets=(restyle-bench restyle-train stylegan2_golden_test stylegan2_test adapt_golden_test)
# With the engine's CUDA kernels (RESTYLE_CUDA_KERNELS) first; should they not
# build, without them, so that everything else still runs.
if ! cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" -- -k 0 >"$out/build.log" 2>&1; then
  log "build with the CUDA kernels failed:"; grep -m20 -A4 "error" "$out/build.log"
  cmake -S . -B "$build" -DRESTYLE_CUDA_KERNELS=OFF >>"$out/configure.log" 2>&1
  cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" -- -k 0 >>"$out/build.log" 2>&1 || {
    log "build failed"; grep -m30 -A4 "error:" "$out/build.log"; exit 1; }
  status=1
fi
log "built in $(( $(date +%s) - t0 )) s; $(grep -m1 "Restyle CUDA kernels\|no CUDA compiler" "$out/configure.log")"

export RESTYLE_GOLDEN_DIR="$deps/golden" CI=true
# Everything after the build runs in priority order under a time budget, so
# the script ends (and packs its logs) before the lent machine's limit even
# when a step is slower than planned: a step that would start after
# GPU_CHECK_BUDGET_S seconds (default 480, counted from the script's start)
# is skipped and logged as skipped.
budget=${GPU_CHECK_BUDGET_S:-480}
in_budget() {
  if (( SECONDS >= budget )); then log "skipped (budget ${budget} s spent): $*"; return 1; fi
}

# 1. Correctness on CUDA: golden StyleGAN2 and trainer cases (TF32 off), and
#    the channels-last / bfloat16 generator unit tests (does every layer keep
#    NHWC under cuDNN?). GPU_CHECK_CPU_GOLDEN=1 repeats the golden cases on
#    this machine's CPU (CI covers the CPU on every commit).
devices="cuda"
[[ ${GPU_CHECK_CPU_GOLDEN:-0} == 1 ]] && devices="cuda cpu"
run_test() {  # run_test DEVICE TEST [gtest filter]
  local device=$1 test=$2 filter=${3:-*} short=${2##*/}
  in_budget "$short on $device" || return 0
  if RESTYLE_TEST_DEVICE=$device "$build/tests/worker/engine/$test" --gtest_filter="$filter" \
      >"$out/${short}_$device.log" 2>&1; then
    log "$short ($filter) on $device: pass"
  else
    log "$short ($filter) on $device: FAIL"; status=1
    grep -B2 -A6 "Failure" "$out/${short}_$device.log" | head -40
  fi
  grep -A16 "Largest deviation" "$out/${short}_$device.log" | grep -v "^--" | tee -a "$out/gpu_check.log"
}
for device in $devices; do
  run_test "$device" stylegan2/stylegan2_golden_test
  run_test "$device" adapt/adapt_golden_test
done
run_test cuda stylegan2/stylegan2_test '*ChannelsLast*:*Bfloat16*:*StyledTail*:*Subpixel*:*Deterministic*'

# 2. The whole job runner on CUDA: the demo job (tiny models), IPL and NADA,
#    with the fast paths on (bf16 source, channels-last).
if in_budget "demo job on CUDA"; then
  if "$build/worker/engine/adapt_job/restyle-train" --demo --device cuda --method both \
      --source-precision bf16 --selection-precision bf16 --train-precision bf16 --channels-last \
      --out "$PWD/gpu-demo-out" --stage1-iters 20 --stage2-iters 20 >"$out/demo_cuda.log" 2>&1; then
    log "restyle-train --demo --device cuda with every bfloat16 path and channels-last: pass"
  else
    log "restyle-train --demo --device cuda: FAIL"; tail -5 "$out/demo_cuda.log"; status=1
  fi
fi
# 3. Speed: each line is "benchmark filter | flags", most informative first.
#    The first of each pair is the in-session baseline (TF32 + cuDNN
#    autotuning, the job's CUDA default: 182 / 214 ms per step on an H200 on
#    2026-11-27); then channels-last activations, a bfloat16 frozen source
#    (stage-1 images), both, bf16 autocast, and the fused formulation with
#    LibTorch's transposed convolution for upsampling (--conv
#    fused-transposed; on the CPU the phase split is faster) or with each
#    upsampling conv and its blur as one plain conv (--conv fused-subpixel;
#    1.8x slower on the CPU, which is compute-bound); stage 2 with its layer
#    selection on a bfloat16 copy (--selection-precision bf16), its whole
#    generator work in bfloat16 (--train-precision bf16 too), and without
#    the engine's kernels (--no-cuda-kernels: the no-grad tail and the
#    training tail, forward and backward). sg2/blocks times each
#    resolution block of a 32-image forward (stage 1's generator work).
#    "baseline" lines time the research code's formulation in PyTorch on the
#    same GPU (bench/reference_baseline.py: CLIP in float16 as clip.load gives
#    it there) with those flags: TF32 and cuDNN autotuning like the engine's
#    default, and as the research code runs (PyTorch's defaults).
#    "--profile DIR" adds one profiled iteration (Kineto: CPU and CUDA); its
#    GPU time by launching operator and by kernel goes to gpu_check.log.
#    GPU_CHECK_VARIANTS replaces the list (same format, one per line).
bench="$build/worker/engine/bench/restyle-bench"
prof="$out/profiles"
default_variants="
adapt/stage1_step/1024 | --precision tf32 --cudnn-benchmark --profile $prof/tf32
adapt/stage1_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16 --profile $prof/fast
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --profile $prof/tf32
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --profile $prof/fast
serve/generate/1024/ | --precision tf32 --cudnn-benchmark
serve/generate/256/ | --precision tf32 --cudnn-benchmark
serve/cross/ | --precision tf32 --cudnn-benchmark
serve/png/ |
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16 --selection-precision bf16
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16 --selection-precision bf16 --train-precision bf16 --profile $prof/bf16
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --no-cuda-kernels
sg2/blocks/1024/b32/fused$ | --precision tf32 --cudnn-benchmark
sg2/blocks/1024/b32/fused$ | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16
sg2/blocks/1024/b32/fused$ | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16 --no-cuda-kernels
sg2/blocks/1024/b32/fused-transposed | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16
sg2/blocks/1024/b32/fused-subpixel | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16
baseline | --precision tf32 --cudnn-benchmark
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --conv fused-subpixel
adapt/stage1_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --source-precision bf16 --no-cuda-kernels
sg2/blocks/1024/b32/fused$ | --precision tf32 --cudnn-benchmark --channels-last
sg2/blocks/1024/b32/fused$ | --precision tf32 --cudnn-benchmark --source-precision bf16
adapt/stage1_step/1024 | --precision tf32 --cudnn-benchmark --source-precision bf16
adapt/stage2_step/1024 | --precision bf16 --cudnn-benchmark --channels-last
adapt/stage2_step/1024 | --precision tf32 --cudnn-benchmark --channels-last --conv fused-transposed
sg2/blocks/1024/b32/fused-transposed | --precision tf32 --cudnn-benchmark
baseline | --precision default
adapt/stage1_step/1024 | --precision tf32 --cudnn-benchmark --channels-last
"
baseline_names=adapt/stage1_step/1024/vit_b32/b32,adapt/stage2_step/1024/vit_b32/b2
while IFS='|' read -r filter flags; do
  filter=$(echo $filter)
  [[ -z $filter ]] && continue
  in_budget "$filter $flags" || continue
  if [[ $filter == baseline ]]; then
    # shellcheck disable=SC2086  # flags are words
    python3 bench/reference_baseline.py --device cuda --names "$baseline_names" $flags \
      >>"$out/baseline.jsonl" 2>>"$out/bench.log" || { log "baseline $flags failed"; status=1; }
    log "baseline $flags: $(tail -2 "$out/baseline.jsonl" | python3 -c 'import json,sys; print(", ".join("%s %.1f ms" % (d["name"].split("/")[2], d["median_ms"]) for d in map(json.loads, sys.stdin)))' 2>/dev/null)"
    continue
  fi
  if [[ $flags =~ --profile\ ([^ ]+) ]]; then mkdir -p "${BASH_REMATCH[1]}"; fi
  # shellcheck disable=SC2086
  "$bench" --device cuda $flags --filter "$filter" >>"$out/bench.jsonl" 2>>"$out/bench.log" ||
    { log "bench $filter $flags failed"; status=1; }
  log "bench $filter $flags: $(tail -1 "$out/bench.jsonl" | python3 -c 'import json,sys; print("%.1f ms" % json.loads(sys.stdin.read())["median_ms"])' 2>/dev/null)"
done <<<"${GPU_CHECK_VARIANTS:-$default_variants}"
# Profiles: the summaries come back in the log; the traces (large) do not.
for trace in "$prof"/*/*.json; do
  [[ -f $trace ]] || continue
  { echo "== profile ${trace#"$prof"/}"; python3 bench/profile_summary.py "$trace" --top 20; } \
    >>"$out/gpu_check.log" 2>&1
done
rm -rf "$prof"

grep -h "failed:\|Error" "$out/bench.log" | sort | uniq -c | head -10
python3 - "$out" <<'PY' | tee -a "$out/gpu_check.log"
import json, sys, glob
def key(d):
    return (d["name"], d.get("precision", "fp32"), bool(d.get("cudnn_benchmark")),
            d.get("conv", "default"), bool(d.get("channels_last")), d.get("source_precision", "fp32"),
            bool(d.get("cuda_kernels")), d.get("selection_precision", "fp32"),
            d.get("train_precision", "fp32"))
rows = {}
for f in sorted(glob.glob(sys.argv[1] + "/*.jsonl")):
    for line in open(f):
        if line.startswith("{"):
            d = json.loads(line)
            rows[key(d)] = d
print("%-38s %7s %6s %16s %4s %6s %7s %6s %6s %10s %10s %5s" % ("benchmark", "prec", "cudnnB", "conv",
      "NHWC", "source", "kernels", "select", "train", "median ms", "min ms", "iters"))
for k, d in sorted(rows.items()):
    name, prec, cb, conv, cl, src, kern, sel, train = k
    print("%-38s %7s %6s %16s %4s %6s %7s %6s %6s %10.1f %10.1f %5d" % (name, prec, "yes" if cb else "no",
          conv, "yes" if cl else "no", src, "yes" if kern else "no", sel, train, d["median_ms"],
          d["min_ms"], d["iters"]))
    blocks = {int(b.split(".")[1]): float(v) for b, v in d.get("extra", {}).items()
              if b.startswith("block_ms.")}
    if blocks:
        print("    per block (ms): " + ", ".join("%d: %.2f" % (r, blocks[r]) for r in sorted(blocks)))
def full(prefix, rest):
    s1 = rows.get((prefix + "adapt/stage1_step/1024/vit_b32/b32",) + rest)
    s2 = rows.get((prefix + "adapt/stage2_step/1024/vit_b32/b2",) + rest)
    return 300 * (s1["median_ms"] + s2["median_ms"]) / 1000 if s1 and s2 else None
# Full run (300 + 300) for every setting both steps ran with, and the best
# stage-1 and stage-2 settings combined.
best = {}
for k, d in rows.items():
    for stage in ("stage1", "stage2"):
        if k[0] == "adapt/%s_step/1024/vit_b32/%s" % (stage, "b32" if stage == "stage1" else "b2"):
            if stage not in best or d["median_ms"] < best[stage][1]["median_ms"]:
                best[stage] = (k, d)
for k in sorted(rows):
    if k[0] == "adapt/stage1_step/1024/vit_b32/b32":
        total = full("", k[1:])
        if total:
            print("full IPL run at 1024 (300 + 300), %s: %.1f s (goal <= 30 s)" % (k[1:], total))
if len(best) == 2:
    t = 300 * (best["stage1"][1]["median_ms"] + best["stage2"][1]["median_ms"]) / 1000
    print("full IPL run, best stage 1 %s + best stage 2 %s: %.1f s" % (best["stage1"][0][1:],
          best["stage2"][0][1:], t))
ours = (full("", ("tf32", True, "default", False, "fp32", True, "fp32", "fp32")) or
        full("", ("tf32", True, "default", False, "fp32", False, "fp32", "fp32")))
for label, rest in (("as the research code runs (PyTorch defaults)",
                     ("default", False, "default", False, "fp32", False, "fp32", "fp32")),
                    ("in TF32 with cuDNN autotuning",
                     ("tf32", True, "default", False, "fp32", False, "fp32", "fp32"))):
    ref = full("ref/", rest)
    if ref:
        print("research-code formulation, %s: %.1f s%s" % (
            label, ref, "; engine (tf32, autotuned) / it = %.2f" % (ours / ref) if ours else ""))
PY
# At most 8 files come back from a lent machine: keep the JSON lines and the
# summary log, pack the other logs into one archive.
( cd "$out" && packed=$(ls | grep -v -e '\.jsonl$' -e '^gpu_check\.log$') &&
  tar -czf logs.tar.gz $packed && rm -f $packed )
exit $status
