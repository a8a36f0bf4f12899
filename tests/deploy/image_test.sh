#!/usr/bin/env bash
# The container images for real: builds the front and worker images
# (tools/image.sh, podman, layers cached so a second build is quick), starts
# a front and a worker container from them on loopback, checks the front's
# HEALTHCHECK, adapts the demo generator through them with the CLI inside the
# front image, draws a grid, and removes the containers and their files
# (also on failure). Bounded: every wait has a limit.
#   tests/deploy/image_test.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
export CONTAINERS_CONF="$PWD/tools/containers.conf"
for tool in podman runc debootstrap; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tool is not installed (make deps)"
    [[ "${CI:-}" == true ]] && exit 1
    exit 77
  fi
done

tools/image.sh front worker

run="$(mktemp -d /var/tmp/restyle-image-test.XXXXXX)"
name="restyle-it-$$"
cleanup() {
  status=$?
  if [[ $status -ne 0 ]]; then
    for c in front worker; do
      echo "--- $c's log"; podman logs "$name-$c" 2>&1 | tail -40 || true
    done
  fi
  podman rm -f -t 5 "$name-front" "$name-worker" >/dev/null 2>&1 || true
  rm -rf "$run"
  exit $status
}
trap cleanup EXIT INT TERM
mkdir -p "$run/data" "$run/work" "$run/secrets" "$run/out"
echo "image-test-token-5d1e" > "$run/secrets/tokens"
echo "image-test-worker-token-8c20" > "$run/secrets/worker-tokens"
cp "$run/secrets/worker-tokens" "$run/secrets/worker-token"
chown -R 10001:10001 "$run/data" "$run/work" "$run/out"
chmod 0444 "$run/secrets"/*

# podman run, without its complaint that it cannot schedule health checks
# through systemd (this machine runs none; it changes nothing else).
run_container() { podman run "$@" 2> >(grep -v 'systemd connection' >&2); }
json() { /usr/bin/python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
wait_file() {
  for _ in $(seq 600); do [[ -s "$1" ]] && return 0; sleep 0.1; done
  echo "timed out waiting for $1"; return 1
}

# The front on its own network namespace's default ports (8700-8703), the
# host's side on ports the OS picks, loopback only.
# (No periodic health checks: podman schedules them through systemd, which
# this machine does not run; `podman healthcheck run` below runs it once.)
run_container -d --name "$name-front" --runtime runc --health-interval disable \
  -p 127.0.0.1::8700 -p 127.0.0.1::8701 -p 127.0.0.1::8702 -p 127.0.0.1::8703 \
  -v "$run/data:/data" -v "$run/secrets:/secrets:ro" \
  restyle-front:latest --data-dir /data --tokens-file /secrets/tokens \
  --worker-tokens-file /secrets/worker-tokens --drain-delay 0 >/dev/null
port() { podman port "$name-front" "$1/tcp" | head -1 | sed 's/.*://'; }
api="127.0.0.1:$(port 8700)"; worker_port="127.0.0.1:$(port 8701)"; health="127.0.0.1:$(port 8702)"
echo "front: api $api, worker $worker_port, health $health"
cli() { run_container --rm --network host --health-cmd none -v "$run/secrets:/secrets:ro" \
  -v "$run/out:/out" --entrypoint restyle restyle-front:latest "$@"; }
restyle() { cli --server "$api" --token-file /secrets/tokens "$@"; }

# The front's own health (the image's CLI against its health port).
for _ in $(seq 100); do
  podman exec "$name-front" restyle --server 127.0.0.1:8702 health \
    --service restyle.worker.v1.WorkerService >/dev/null 2>&1 && break
  sleep 0.2
done
podman healthcheck run "$name-front"
echo "front: HEALTHCHECK passes"

# The worker, reaching the front through the host's published worker port.
run_container -d --name "$name-worker" --runtime runc --network host \
  -v "$run/work:/work" -v "$run/secrets:/secrets:ro" \
  restyle-worker:latest --front "$worker_port" --work-dir /work --token-file /secrets/worker-token \
  --threads 2 --metrics-address 127.0.0.1:0 --health-address 127.0.0.1:0 \
  --port-file /work/ports.json >/dev/null
wait_file "$run/work/ports.json"
worker_health="127.0.0.1:$(json "$run/work/ports.json" health)"
for _ in $(seq 100); do cli --server "$worker_health" health >/dev/null 2>&1 && break; sleep 0.3; done
for service in liveness models ""; do
  echo "worker health \"$service\": $(cli --server "$worker_health" health --service "$service")"
done
restyle workers | tee "$run/workers.txt"
grep -q 'workers/' "$run/workers.txt"

# The demo job through the containers, then images from its generator.
restyle adapt --source demo --target ukiyo-e --stage1-iters 4 --stage1-batch 4 --stage2-iters 4 \
  --mean-latent-samples 256 --follow | tee "$run/adapt.txt"  # exit status: the outcome
job=$(grep -o 'jobs/[a-z0-9]*' "$run/adapt.txt" | head -1)
restyle generate "generators/${job#jobs/}" --seeds 0-3 --grid /out/grid.png
[[ "$(head -c 8 "$run/out/grid.png" | od -An -tx1 | tr -d ' \n')" == 89504e470d0a1a0a ]]
echo "image_test: the demo generator adapted through the containers ($job), grid.png drawn"
