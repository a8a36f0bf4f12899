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
read -r api worker_port < <(/usr/bin/python3 -c "import json;p=json.load(open('$dir/ports.json'));print(p['api'],p['worker'])")
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
lines = [json.loads(l) for l in sys.stdin]
assert lines and lines[0]["name"] == "generators/demo", lines' || fail "generators -o json"
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

job=$("$RESTYLE" -o json adapt --source demo --target ukiyo-e --stage1-iters 3 --stage2-iters 3 |
      /usr/bin/python3 -c 'import json,sys; print(json.loads(sys.stdin.readline())["name"])')
[[ "$job" == jobs/* ]] || fail "adapt -o json printed no job: $job"
"$RESTYLE" wait "$job" --timeout 60s >/dev/null; check "wait for a short job" 0 $?
"$RESTYLE" list | has "$job .*succeeded" || fail "list does not show $job succeeded"
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
screen | has 'exit=0' || fail "watch of a succeeded job did not exit 0: $(screen)"

if [[ $failures -gt 0 ]]; then
  echo "--- front"; tail -20 "$dir/front.log"; echo "--- worker"; tail -20 "$dir/worker.log"
  exit 1
fi
echo "cli_test: all checks passed"
