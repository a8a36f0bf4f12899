#!/usr/bin/env bash
# restyle-train's command line: usage errors (unknown flags, values of the
# wrong kind or out of range, bad settings files) exit 2 with a message that
# names the problem, a missing model file exits 1 naming the file, --help and
# --dry-run show the settings, and short demo jobs exit 0, write their files
# and record their settings so that result.json reruns a job exactly.
#
# With a second argument, restyle-generate's command line too, on those jobs:
# images by seed, each the same in any seed list, and clear errors.
#
#   train_cli_test.sh path/to/restyle-train [path/to/restyle-generate]
set -uo pipefail
bin=${1:?usage: train_cli_test.sh RESTYLE_TRAIN [RESTYLE_GENERATE]}
generate_bin=${2:-}
if [[ -z $generate_bin && ${CI:-} == true ]]; then
  echo "FAIL: CI=true and no restyle-generate given (a build without libpng?)"
  exit 1
fi
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
    echo "FAIL: $(basename "$bin") $* -> exit $status (want $rc), output lacks \"$pattern\":"
    echo "$out" | tail -5 | sed 's/^/    /'
    failures=$((failures + 1))
  else
    echo "ok: $(basename "$bin") $* -> $status"
  fi
}

expect 2 "usage: restyle-train"
expect 2 "unknown flag --bogus" --demo --out "$tmp/a" --bogus
expect 2 "drop --source and --clip" --demo --clip x.safetensors --out "$tmp/a"
expect 2 "--clip weight must be > 0" --source g.safetensors --clip "c.safetensors:-1" --target x --out "$tmp/a"
expect 2 "--method must be ipl, nada or both" --demo --method gan --out "$tmp/a"
expect 2 "--stage1-iters must be in [1, 1000000], got 0" --demo --stage1-iters 0 --out "$tmp/a"
expect 2 "--stage1-lr must be > 0" --demo --stage1-lr=-1 --out "$tmp/a"
expect 2 "--stage1-lr needs a finite number, got \"nan\"" --demo --stage1-lr nan --out "$tmp/a"
expect 2 "--stage2-betas needs two numbers" --demo --stage2-betas 0.9 --out "$tmp/a"
expect 2 "--ema-decay must be in [0, 1], got 1.5" --demo --ema-decay 1.5 --out "$tmp/a"
expect 2 "--noise needs one of random|stored" --demo --noise given --out "$tmp/a"
expect 2 "unknown flag --no-stage1-lr" --demo --no-stage1-lr --out "$tmp/a"
expect 2 "unexpected argument \"extra\"" --demo extra --out "$tmp/a"
expect 2 "unknown key \"stage1.learning_rate\"" --demo --config <(echo '{"stage1": {"learning_rate": 1}}') --out "$tmp/a"
expect 2 "not valid JSON" --demo --config <(echo '{"stage1": ') --out "$tmp/a"
# --help lists every setting of the table, with its default.
expect 0 "--auto-layer-k N" --help
expect 0 "[default 0.05; > 0]" --help
# --dry-run prints the settings (flags and --config applied) without running.
expect 0 '"lambda_src": 1.0' --demo --lambda-src 1 --dry-run
expect 0 '"ema_decay": 0.9' --demo --config <(echo '{"stage2.ema_decay": 0.9}') --dry-run
expect 0 '"resume": false' --demo --no-resume --dry-run
expect 2 "unknown flag --no-channels_last" --demo --no-channels_last --dry-run
expect 0 '"ema_decay": 0.8' --demo --config=<(echo '{"stage2.ema_decay": 0.8}') --dry-run
expect 0 '"iterations": 5' --demo --config <(echo '{"stage2": {"iterations": 9}}') --stage2-iters 5 --dry-run
expect 2 "--out is required" --demo
expect 2 "--arithmetic must be fast, fast-transposed, fast-subpixel or reference" --demo --arithmetic x --out "$tmp/a"
expect 2 "--source-precision needs one of fp32|bf16" --demo --source-precision fp16 --out "$tmp/a"
expect 2 "--selection-precision needs one of fp32|bf16" --demo --selection-precision x --out "$tmp/a"
expect 2 "--train-precision needs one of fp32|bf16" --demo --train-precision x --out "$tmp/a"
# A text CLIP cannot read whole is an error (the reference's clip.tokenize
# raises too), not silently cut.
expect 1 "tokens, CLIP reads at most 77: shorten the class text" --demo --method nada \
  --stage2-iters 1 --target "$(printf 'word %.0s' {1..90})" --out "$tmp/long"
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

# Every setting reaches the job's record, and a job's result.json reruns it:
# the same settings, the same adapted generator, bit for bit.
expect 0 "quality report" --demo --method nada --stage2-iters 3 --quality-samples 4 \
  --preview-every 0 --stage2-lr 0.003 --stage2-betas 0.1,0.95 --auto-layer-k 3 \
  --auto-layer-lr 0.02 --ema-decay 0.9 --sample-truncation 0.5 --seed 11 --label tuned \
  --out "$tmp/tuned"
for field in '"lr": 0.003' '"auto_layer_k": 3' '"auto_layer_lr": 0.02' '"ema_decay": 0.9' \
    '"sample_truncation": 0.5' '"label": "tuned"' '"sample_seed": 13'; do
  if ! grep -qF -- "$field" "$tmp/tuned/result.json"; then
    echo "FAIL: result.json of the tuned job lacks $field"
    failures=$((failures + 1))
  fi
done
# (the method comes from the file too: one NADA job in $tmp/rerun, not both)
expect 0 "quality report" --demo --config "$tmp/tuned/result.json" --out "$tmp/rerun"
# A rerun on another thread count says that CPU results may then differ.
expect 0 "ran with 1 thread, this run uses 2 threads" --demo --config "$tmp/tuned/result.json" \
  --threads 2 --stage2-iters 1 --out "$tmp/rerun2"
digest() { grep -o '"adapted_digest": "[^"]*"' "$1/result.json"; }
if [[ -z $(digest "$tmp/tuned") || $(digest "$tmp/tuned") != $(digest "$tmp/rerun") ]]; then
  echo "FAIL: rerunning from result.json gave another generator: $(digest "$tmp/tuned") vs $(digest "$tmp/rerun")"
  failures=$((failures + 1))
else
  echo "ok: rerun from result.json -> same adapted generator"
fi

# --output json: every line of stdout is one JSON event; one progress event
# per step, then the result with its files and quality report; errors too.
"$bin" --demo --method nada --stage2-iters 3 --quality-samples 4 --preview-every 2 -o json \
  --out "$tmp/json" >"$tmp/json.out" 2>"$tmp/json.err"
status=$?
check_json=$(python3 - "$tmp/json.out" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
kinds = [e["event"] for e in events]
progress = [e for e in events if e["event"] == "progress"]
assert [e["step"] for e in progress] == [1, 2, 3], kinds
assert all(e["stage"] == 2 and e["total"] == 3 and "loss" in e["losses"] for e in progress)
assert any("preview" in e for e in progress), "no preview event"
assert kinds[-1] == "result", kinds
result = events[-1]
assert result["label"] == "NADA" and result["files"]["result"].endswith("result.json")
assert "target_similarity" in json.dumps(result["quality"]), result["quality"]
print("ok")
PY
)
if [[ $status -ne 0 || $check_json != ok ]]; then
  echo "FAIL: --output json (exit $status): $check_json"
  head -3 "$tmp/json.out" "$tmp/json.err" | sed 's/^/    /'
  failures=$((failures + 1))
else
  echo "ok: --output json events"
fi
expect 1 '{"event":"error","code":"NOT_FOUND"' --source "$tmp/missing.safetensors" \
  --clip "$tmp/clip.safetensors" --target x --out "$tmp/a" --output json

# Ctrl-C cancels a running job after its current step: exit 130, a message
# that says so, and no result written.
"$bin" --demo --method ipl --stage1-iters 100000 --preview-every 0 --out "$tmp/interrupted" \
  >"$tmp/interrupted.log" 2>&1 &
pid=$!
for _ in $(seq 1 600); do  # until the first progress line (at most 60 s)
  grep -q "stage 1" "$tmp/interrupted.log" 2>/dev/null && break
  sleep 0.1
done
kill -INT "$pid"
wait "$pid"
status=$?
if [[ $status -ne 130 ]] || ! grep -q "cancelling after the current step" "$tmp/interrupted.log" ||
   ! grep -q "CANCELLED" "$tmp/interrupted.log" || [[ -e $tmp/interrupted/result.json ]]; then
  echo "FAIL: Ctrl-C -> exit $status (want 130), cancel messages and no result.json:"
  tail -3 "$tmp/interrupted.log" | sed 's/^/    /'
  failures=$((failures + 1))
else
  echo "ok: Ctrl-C cancels the job (exit 130)"
fi

if [[ -n $generate_bin ]]; then
  # expect uses $bin: point it at restyle-generate for these.
  train_bin=$bin
  bin=$generate_bin
  expect 0 "wrote" --job "$tmp/tuned" --seeds 0-2 --out "$tmp/gen" --grid "$tmp/gen/grid.png" \
    --with-source
  for f in seed0000.png seed0001.png seed0002.png seed0002_source.png grid.png; do
    if [[ ! -s $tmp/gen/$f ]]; then
      echo "FAIL: restyle-generate wrote no $f"
      failures=$((failures + 1))
    fi
  done
  expect 0 "wrote 1 image" --job "$tmp/tuned" --seeds 2 --out "$tmp/gen2"
  if ! cmp -s "$tmp/gen/seed0002.png" "$tmp/gen2/seed0002.png"; then
    echo "FAIL: seed 2 gave another image alone than in 0-2"
    failures=$((failures + 1))
  fi
  if cmp -s "$tmp/gen/seed0001.png" "$tmp/gen/seed0002.png" ||
     cmp -s "$tmp/gen/seed0002.png" "$tmp/gen/seed0002_source.png"; then
    echo "FAIL: different seeds, or source and adapted, gave the same image"
    failures=$((failures + 1))
  fi
  expect 2 "runs backwards" --job "$tmp/tuned" --seeds 3-1 --out "$tmp/gen3"
  expect 2 "--out or --grid is required" --job "$tmp/tuned"
  expect 2 "--truncation must be in [0, 1]" --job "$tmp/tuned" --truncation 2 --out "$tmp/gen3"
  expect 1 "NOT_FOUND" --job "$tmp/no-such-job" --out "$tmp/gen3"
  bin=$train_bin
fi

if [[ $failures -gt 0 ]]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "all passed"
