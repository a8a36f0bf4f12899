#!/usr/bin/env bash
# The restyle CLI as a person uses it, against live restyled and restyle-worker
# processes on loopback: plain commands and their exit codes, -o json, the
# errors people see, and `restyle adapt --follow` in a real terminal (tmux):
# the bar moves, Ctrl-C detaches and the job goes on, a followed job ends.
#   cli_test.sh RESTYLED RESTYLE_WORKER RESTYLE
set -uo pipefail
RESTYLED=$1 WORKER=$2 RESTYLE=$3
if ! command -v tmux >/dev/null; then
  echo "tmux is not installed (make deps)"
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
dir=$(mktemp -d)
session="restyle-cli-$$"
cleanup() {
  tmux kill-session -t "$session" 2>/dev/null
  [[ -n "${worker_pid:-}" ]] && kill "$worker_pid" 2>/dev/null
  [[ -n "${front_pid:-}" ]] && kill "$front_pid" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$dir"
}
trap cleanup EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
# grep -q at the end of a pipe exits at the first match, and the writer's
# SIGPIPE then fails the pipe (pipefail): `has` reads everything.
has() { grep "$@" >/dev/null; }
check() {  # check "what" expected_code actual_code
  [[ "$2" == "$3" ]] || fail "$1: exit code $3, expected $2"
}

"$RESTYLED" --data-dir "$dir/front" --host 127.0.0.1 --port 0 --worker-port 0 --health-port 0 --metrics-port 0 \
  --port-file "$dir/ports.json" --lease-ttl 3 --heartbeat-interval 0.5 --drain-delay 0 \
  > "$dir/front.log" 2>&1 &
front_pid=$!
for _ in $(seq 100); do [[ -s "$dir/ports.json" ]] && break; sleep 0.1; done
read -r api worker_port health_port metrics_port < <(/usr/bin/python3 -c "
import json;p=json.load(open('$dir/ports.json'));print(p['api'],p['worker'],p['health'],p['metrics'])")
"$WORKER" --front "127.0.0.1:$worker_port" --work-dir "$dir/worker" --threads 1 --poll-wait 2 \
  --embedded-models random --metrics-address 127.0.0.1:0 --health-address 127.0.0.1:0 \
  > "$dir/worker.log" 2>&1 &
worker_pid=$!
export RESTYLE_SERVER="127.0.0.1:$api"
for _ in $(seq 100); do "$RESTYLE" workers 2>/dev/null | has workers/ && break; sleep 0.1; done

# --- plain commands ---------------------------------------------------------------
out=$("$RESTYLE" generators); check "generators" 0 $?
grep -q "generators/demo .*source" <<<"$out" || fail "generators does not list the demo source: $out"
"$RESTYLE" -o json generators | /usr/bin/python3 -c '
import json, sys
doc = json.load(sys.stdin)
assert doc["generators"] and doc["generators"][0]["name"] == "generators/demo", doc' || fail "generators -o json"
out=$("$RESTYLE" get jobs/nope 2>&1); check "get of an unknown job" 1 $?
grep -q "^restyle: not found: no job jobs/nope" <<<"$out" || fail "unknown job message: $out"
out=$("$RESTYLE" --server 127.0.0.1:1 list 2>&1); check "unreachable server" 6 $?
[[ $(wc -l <<<"$out") == 1 ]] && grep -q "cannot reach the Restyle server at 127.0.0.1:1" <<<"$out" \
  || fail "unreachable is not one clear line: $out"
out=$("$RESTYLE" adapt --source demo --target x --stage1-lr -1 2>&1); check "bad setting" 2 $?
grep -q -- "--stage1-lr must be > 0" <<<"$out" || fail "bad setting message: $out"
"$RESTYLE" adapt --source demo 2>/dev/null; check "missing --target" 2 $?
"$RESTYLE" adapt --help | has -- "--ema-decay X .*default 0.99; in \[0, 1\]" \
  || fail "adapt --help lacks the settings table's help"

# Bad values are refused before any call: with an address where nothing
# listens, the exit code is still 2 (usage), not 6 (unreachable), and the
# message names the flag, the value and the range.
refused() {  # refused "message (grep -F)" restyle-arguments...
  local want=$1; shift
  local out; out=$("$RESTYLE" --server 127.0.0.1:1 "$@" 2>&1); local code=$?
  check "restyle $*" 2 $code
  grep -qF -- "$want" <<<"$out" || fail "restyle $*: $out (expected: $want)"
}
for t in -0.5 nan inf -inf 5; do
  refused "--truncation must be a number in [0, 1], got $t" generate demo --truncation "$t" --grid "$dir/t.png"
done
[[ -e "$dir/t.png" ]] && fail "a refused generate wrote $dir/t.png"
refused "--columns must be a whole number in [1, 1024], got -3" generate demo --columns -3 --grid "$dir/t.png"
refused "--max-resolution must be a whole number in [0, 16384], got 1.5" generate demo --max-resolution 1.5 --grid "$dir/t.png"
refused "--priority must be a whole number in [-1000, 1000], got 5000" adapt --source demo --target x --priority 5000
refused "--seed must be a whole number >= 0, got -1" adapt --source demo --target x --seed -1
refused "--max-run-time must be a duration from 1ms to 366 days" adapt --source demo --target x --max-run-time inf
refused "--ema-decay must be in [0, 1], got 2" adapt --source demo --target x --ema-decay 2
refused "--stage1-lr needs a finite number > 0, got \"nan\"" adapt --source demo --target x --stage1-lr nan
refused "--stage1-seed must be a whole number >= 0, got -1" adapt --source demo --target x --stage1-seed -1
refused "--timeout must be a duration from 1ms to 366 days" --timeout nan list
refused "--limit must be a whole number in [1, 2147483647], got 0" list --limit 0
refused "--after-seq must be a whole number >= 0, got -1" watch jobs/x --after-seq -1
# --seeds says "seeds" once.
refused "--seeds 0-99999 asks for 100000 images; one call draws at most 1024" generate demo --seeds 0-99999 --grid "$dir/t.png"
refused "--seeds: the range \"9-3\" runs backwards" generate demo --seeds 9-3 --grid "$dir/t.png"
# Output files go into directories that exist; nothing is made for them.
refused "--grid $dir/no/such/g.png: directory $dir/no/such does not exist" generate demo --grid "$dir/no/such/g.png"
refused "--out $dir/no/such: directory $dir/no does not exist" generate demo --out "$dir/no/such"
[[ -e "$dir/no" ]] && fail "a refused generate made $dir/no"
# A name of the wrong collection says which one to give.
refused "\"jobs/k3v9\" names a job, not a generator: use generators/k3v9 (the adapted generator of job k3v9)" \
  generate jobs/k3v9 --grid "$dir/t.png"
refused "\"generators/k3v9\" names a generator, not a job: use jobs/k3v9" get generators/k3v9
# Unknown commands.
refused 'unknown command "frobnicate"' frobnicate
out=$("$RESTYLE" genrate 2>&1); check "a misspelt command" 2 $?
grep -qPz 'Did you mean this\?\n\tgenerate\n' <<<"$out" || fail "no suggestion for genrate: $out"
# --server at a port that is not the API's.
for port in "$worker_port" "$health_port"; do
  out=$("$RESTYLE" --server "127.0.0.1:$port" list 2>&1); check "list at the worker or health port" 6 $?
  grep -qF "127.0.0.1:$port does not serve the Restyle API (restyle.v1.RestyleService): is it the worker or health port?" <<<"$out" \
    || fail "list at port $port: $out"
done
out=$("$RESTYLE" --server "127.0.0.1:$metrics_port" list 2>&1); check "list at the metrics port" 6 $?
grep -qF "127.0.0.1:$metrics_port answers HTTP/1.x, not gRPC" <<<"$out" || fail "list at the metrics port: $out"

job=$("$RESTYLE" -o json adapt --source demo --target ukiyo-e --stage1-iters 3 --stage2-iters 3 |
      /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["name"])')
[[ "$job" == jobs/* ]] || fail "adapt -o json printed no job: $job"
"$RESTYLE" wait "$job" --timeout 60s >/dev/null; check "wait for a short job" 0 $?
"$RESTYLE" list | has "$job .*succeeded" || fail "list does not show $job succeeded"
# -o json of every list-like command is one JSON document, like the API's response.
for command in list generators workers; do
  "$RESTYLE" -o json $command | /usr/bin/python3 -m json.tool >/dev/null || fail "$command -o json is not one JSON document"
done
"$RESTYLE" -o json list --limit 1 | /usr/bin/python3 -c '
import json, sys
doc = json.load(sys.stdin)
assert len(doc["jobs"]) == 1 and doc["jobs"][0]["name"] == "'"$job"'" and "nextPageToken" not in doc, doc' \
  || fail "list -o json --limit 1"
"$RESTYLE" -o json workers | /usr/bin/python3 -c '
import json, sys; doc = json.load(sys.stdin); assert doc["workers"][0]["name"].startswith("workers/"), doc' \
  || fail "workers -o json"
out=$("$RESTYLE" generate "jobs/${job#jobs/}" --seeds 0 --grid "$dir/t.png" 2>&1); check "generate jobs/ID" 2 $?
grep -qF "use generators/${job#jobs/} (the adapted generator of job ${job#jobs/})" <<<"$out" || fail "generate jobs/ID: $out"
"$RESTYLE" generate "generators/${job#jobs/}" --seeds 0-1 --out "$dir/images" >/dev/null; check "generate --out a new directory" 0 $?
[[ -s "$dir/images/seed0000.png" && -s "$dir/images/seed0001.png" ]] || fail "generate --out wrote $(ls "$dir/images")"
"$RESTYLE" generate "generators/${job#jobs/}" --seeds 0-5 --grid "$dir/grid.png" --with-source >/dev/null
check "generate a grid" 0 $?
/usr/bin/python3 -c "
import struct
b = open('$dir/grid.png', 'rb').read()
w, h = struct.unpack('>II', b[16:24])
assert b[:8] == b'\x89PNG\r\n\x1a\n' and (w, h) == (6 * 34 + 2, 2 * 34 + 2), (w, h)" \
  || fail "the grid is not a 6x2 grid of 32px tiles"

long=$("$RESTYLE" -o json adapt --source demo --target "long one" --stage1-iters 100000 |
       /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["name"])')
"$RESTYLE" wait "$long" --timeout 1s >/dev/null 2>&1; check "wait that times out" 5 $?
"$RESTYLE" cancel "$long" | has "cancell" || fail "cancel"
"$RESTYLE" wait "$long" --timeout 30s >/dev/null; check "wait for a cancelled job" 4 $?

# --- adapt --follow in a real terminal ---------------------------------------------------
tmux new-session -d -s "$session" -x 160 -y 40 -e "RESTYLE_SERVER=$RESTYLE_SERVER"
screen() { tmux capture-pane -t "$session" -p; }
step_of_bar() { screen | grep -o '\] *[0-9]*/' | tail -1 | tr -dc '0-9'; }
tmux send-keys -t "$session" \
  "$RESTYLE adapt --source demo --target 'ukiyo-e' --stage1-iters 1500 --stage1-batch 2 --stage2-iters 20 --follow" Enter
for _ in $(seq 200); do screen | has '\[#*\.*\]' && break; sleep 0.1; done
screen | has 'stage 1/2 mapper *\[' || fail "no progress bar on the terminal: $(screen)"
first=$(step_of_bar)
sleep 1.5
second=$(step_of_bar)
[[ -n "$first" && -n "$second" && "$second" -gt "$first" ]] || fail "the bar does not move ($first -> $second)"
followed=$(screen | grep -o 'jobs/[a-z0-9]*' | head -1)
tmux send-keys -t "$session" C-c
for _ in $(seq 50); do screen | has "Detached from $followed" && break; sleep 0.1; done
screen | has "Detached from $followed; it goes on. Follow it again: restyle watch $followed" \
  || fail "Ctrl-C did not detach: $(screen)"
state=$("$RESTYLE" -o json get "$followed" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
[[ "$state" == JOB_STATE_RUNNING ]] || fail "after Ctrl-C the job is $state, not running"
# Re-attach in the terminal and follow it to the end.
tmux send-keys -t "$session" "clear; $RESTYLE watch $followed; echo exit=\$?" Enter
for _ in $(seq 600); do screen | has 'exit=' && break; sleep 0.1; done
screen | has "$followed succeeded in" || fail "the followed job did not end on the screen: $(screen)"
screen | has 'stage 2/2 generator *\[#*\] *20/20' || fail "the stage-2 bar did not finish: $(screen)"
# A finished stage shows how long it ran, never an ETA.
screen | has 'stage 1/2 mapper *\[#*\] *1500/1500 .* done in [0-9.hms]*$' || fail "stage 1 does not say done in: $(screen)"
screen | has 'stage 2/2 generator *\[#*\] *20/20 .* done in [0-9.hms]*$' || fail "stage 2 does not say done in: $(screen)"
screen | has -E '1500/1500.*ETA|20/20.*ETA' && fail "a finished stage shows an ETA: $(screen)"
screen | has 'exit=0' || fail "watch of a succeeded job did not exit 0: $(screen)"

if [[ $failures -gt 0 ]]; then
  echo "--- front"; tail -20 "$dir/front.log"; echo "--- worker"; tail -20 "$dir/worker.log"
  exit 1
fi
echo "cli_test: all checks passed"
