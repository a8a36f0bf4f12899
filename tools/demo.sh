#!/usr/bin/env bash
# make demo: the service end to end on this machine, with the embedded models
# of the toy world (tools/world/: a 32px generator of shapes in the "photo"
# style, a CLIP that reads the world's styles, and a judge). Starts restyled
# and one CPU restyle-worker on loopback with a temporary data directory,
# adapts the world's generator to a target style with `restyle adapt
# --follow`, draws a grid of the source and a grid of the adapted generator on
# the same seeds, prints the job (with the judge's numbers) and what the
# metrics said, and stops everything, also when something fails or you press
# Ctrl-C.
#   tools/demo.sh [BUILD_DIR] [OUT_DIR]
set -euo pipefail
build=${1:-build}
out=${2:-demo-out}
# The world's styles: sketch, pixel art, neon, watercolor.
target=${RESTYLE_DEMO_TARGET:-sketch}
for bin in server/restyled worker/restyle-worker client/restyle; do
  [[ -x "$build/$bin" ]] || { echo "demo: $build/$bin is missing (make build)"; exit 1; }
done
restyle="$build/client/restyle"
run=$(mktemp -d /tmp/restyle-demo.XXXXXX)
mkdir -p "$out"

stop() {
  local status=$?
  trap - EXIT INT TERM
  # The worker first (it hands its job back to the front), then the front.
  for pid in ${worker_pid:-} ${front_pid:-}; do
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done
  wait 2>/dev/null || true
  if [[ $status -eq 130 ]]; then
    echo "demo: interrupted; restyled and the worker are stopped"
  elif [[ $status -ne 0 ]]; then
    echo "demo: failed (exit $status); the last lines of the logs:"
    tail -n 5 "$run/front.log" "$run/worker.log" 2>/dev/null || true
  fi
  rm -rf "$run"
  exit "$status"
}
trap stop EXIT
trap 'exit 130' INT TERM HUP

json() { /usr/bin/python3 -c "import json,sys; print(json.load(open('$1'))['$2'])"; }
wait_file() { for _ in $(seq 200); do [[ -s "$1" ]] && return 0; sleep 0.05; done; echo "demo: $1 never appeared"; return 1; }

# Started in this script's process group: a Ctrl-C (or a closed terminal)
# reaches them too, so nothing outlives the demo whatever ends it.
"$build/server/restyled" --data-dir "$run/front" --host 127.0.0.1 --port 0 --worker-port 0 \
  --health-port 0 --metrics-port 0 --port-file "$run/front.json" --drain-delay 0 > "$run/front.log" 2>&1 &
front_pid=$!
wait_file "$run/front.json"
export RESTYLE_SERVER="127.0.0.1:$(json "$run/front.json" api)"
front_metrics="http://127.0.0.1:$(json "$run/front.json" metrics)/metrics"
"$build/worker/restyle-worker" --front "127.0.0.1:$(json "$run/front.json" worker)" \
  --work-dir "$run/worker" --metrics-address 127.0.0.1:0 --health-address 127.0.0.1:0 --port-file "$run/worker.json" \
  > "$run/worker.log" 2>&1 &
worker_pid=$!
wait_file "$run/worker.json"
worker_metrics="http://127.0.0.1:$(json "$run/worker.json" metrics)/metrics"
for _ in $(seq 200); do "$restyle" workers 2>/dev/null | grep -q workers/ && break; sleep 0.05; done

echo "== restyled at $RESTYLE_SERVER, one worker with the toy world's models:"
"$restyle" generators
echo
echo "== restyle adapt --source demo --target \"$target\" --follow"
"$restyle" adapt --source demo --target "$target" --stage1-iters 100 --stage1-batch 16 \
  --stage2-iters 150 --stage2-lr 0.01 --stage2-batch 4 --mean-latent-samples 1024 --sample-truncation 1 \
  --quality-samples 64 --preview-every 25 --follow | tee "$run/adapt.txt"
job=$(grep -o 'jobs/[a-z0-9]*' "$run/adapt.txt" | head -1)
generator="generators/${job#jobs/}"
echo
echo "== the same 16 seeds from the source and from the adapted generator"
"$restyle" generate demo --seeds 0-15 --grid "$out/source.png" --truncation 1
"$restyle" generate "$generator" --seeds 0-15 --grid "$out/adapted.png" --truncation 1
"$restyle" generate "$generator" --seeds 0-7 --grid "$out/pairs.png" --with-source --truncation 1
"$restyle" get "$job" | tee "$out/job.txt" | grep -E "^(Quality|Judge):"

echo
echo "== what the metrics said (while it ran: $front_metrics and $worker_metrics)"
/usr/bin/python3 - "$front_metrics" "$worker_metrics" <<'PY'
import sys, urllib.request
wanted = ("restyle_jobs_finished_total", "restyle_training_steps_total", "restyle_images_generated_total",
          "restyle_job_stage_seconds_sum", "restyle_worker_step_seconds_count", "restyle_generator_loads_total")
for url in sys.argv[1:]:
    for line in urllib.request.urlopen(url, timeout=10).read().decode().splitlines():
        if line.startswith(wanted) and not line.endswith(" 0"):
            print("  " + line)
PY
echo
echo "Done. In $out/: source.png and adapted.png (the same seeds from each), pairs.png (source"
echo "row above adapted row), job.txt (the job, with its quality report and the judge's numbers)."
echo "The toy world's models were trained here (docs/world.md); for real models, see the README"
echo "(\"The service, for real\")."
