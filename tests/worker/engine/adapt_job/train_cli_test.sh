#!/usr/bin/env bash
# restyle-train's command line: usage errors exit 2 with a message that names
# the problem, a missing model file exits 1 naming the file, and a short demo
# job exits 0 and writes its files.
#
#   train_cli_test.sh path/to/restyle-train
set -uo pipefail
bin=${1:?usage: train_cli_test.sh RESTYLE_TRAIN}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
failures=0

# expect RC PATTERN ARGS...: runs the binary, checks its exit status and that
# its output (stdout + stderr) contains PATTERN.
expect() {
  local rc=$1 pattern=$2
  shift 2
  local out status
  out=$("$bin" "$@" 2>&1)
  status=$?
  if [[ $status -ne $rc ]] || ! grep -qF -- "$pattern" <<<"$out"; then
    echo "FAIL: restyle-train $* -> exit $status (want $rc), output lacks \"$pattern\":"
    echo "$out" | tail -5 | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok: restyle-train $* -> $status"
  fi
}

expect 2 "usage: restyle-train"
expect 2 "unknown flag --bogus" --demo --out "$tmp/a" --bogus
expect 2 "drop --source and --clip" --demo --clip x.safetensors --out "$tmp/a"
expect 2 "--clip weight must be > 0" --source g.safetensors --clip "c.safetensors:-1" --target x --out "$tmp/a"
expect 2 "--method must be ipl, nada or both" --demo --method gan --out "$tmp/a"
expect 2 "--stage1-iters needs an integer >= 1" --demo --stage1-iters 0 --out "$tmp/a"
expect 2 "--out is required" --demo
expect 2 "--arithmetic must be fast, fast-transposed, fast-subpixel or reference" --demo --arithmetic x --out "$tmp/a"
expect 2 "--source-precision must be fp32 or bf16" --demo --source-precision fp16 --out "$tmp/a"
expect 2 "--selection-precision must be fp32 or bf16" --demo --selection-precision x --out "$tmp/a"
expect 2 "--train-precision must be fp32 or bf16" --demo --train-precision x --out "$tmp/a"
expect 1 "missing.safetensors" --source "$tmp/missing.safetensors" --clip "$tmp/clip.safetensors" \
  --target x --out "$tmp/a"
expect 0 "quality report" --demo --method nada --stage2-iters 3 --quality-samples 4 \
  --preview-every 0 --out "$tmp/demo"
for f in generator_delta.safetensors quality.json result.json; do
  if [[ ! -s $tmp/demo/$f ]]; then
    echo "FAIL: the demo job wrote no $f"
    failures=$((failures + 1))
  fi
done
# The arithmetic flags reach the job and its record (result.json).
expect 0 "quality report" --demo --method ipl --stage1-iters 2 --stage2-iters 2 --quality-samples 4 \
  --preview-every 0 --arithmetic fast-transposed --channels-last --source-precision bf16 \
  --selection-precision bf16 --train-precision bf16 \
  --out "$tmp/fast"
for field in '"conv_mode": "fused-transposed"' '"channels_last": true' '"source_precision": "bf16"' \
    '"selection_precision": "bf16"' '"train_precision": "bf16"'; do
  if ! grep -qF -- "$field" "$tmp/fast/result.json"; then
    echo "FAIL: result.json of the fast-path job lacks $field"
    failures=$((failures + 1))
  fi
done
expect 0 "quality report" --demo --method nada --stage2-iters 2 --quality-samples 4 \
  --preview-every 0 --arithmetic fast-subpixel --out "$tmp/subpixel"
if ! grep -qF -- '"conv_mode": "fused-subpixel"' "$tmp/subpixel/result.json"; then
  echo "FAIL: result.json of the fast-subpixel job lacks its conv_mode"
  failures=$((failures + 1))
fi

if [[ $failures -gt 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all passed"
