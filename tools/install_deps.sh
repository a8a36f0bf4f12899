#!/usr/bin/env bash
# Installs the Debian bookworm packages Restyle needs to build, test and run.
# Only packages that are missing are installed; nothing is downloaded from
# anywhere but the Debian archive. Runs apt-get through sudo when not root.
set -euo pipefail

# The engine: LibTorch (CPU) with an optimised BLAS (without libopenblas0-pthread
# LibTorch's matrix products fall back to the reference BLAS, ~20x slower),
# header-only JSON, PNG output.
ENGINE_PKGS=(build-essential cmake ccache pkg-config libtorch-dev libopenblas0-pthread
             nlohmann-json3-dev libpng-dev)
# Tests and tools: GoogleTest, Python's torch for the checkpoint converters'
# tests, openssl (test certificates), tmux (the CLI in a terminal), prometheus
# (promtool checks the /metrics scrapes), postgresql (the store tests start a
# server of their own from its binaries; the cluster the package makes is
# not used).
# podman, runc and debootstrap build and run the container images (make
# image, image_test); clang with its sanitizer and libFuzzer runtimes builds
# the fuzz targets (make fuzz-build).
TEST_PKGS=(libgtest-dev libgmock-dev python3 python3-torch python3-numpy openssl tmux prometheus
           postgresql podman runc debootstrap clang-14 libclang-rt-14-dev)
# The service: gRPC, Protocol Buffers, Abseil, Prometheus; SQLite and libpq
# (the front's job store, embedded or on PostgreSQL), OpenSSL (digests, TLS),
# libuuid (request ids), spdlog (logs), CLI11 (command lines), cpp-httplib
# (the /metrics endpoints).
SERVICE_PKGS=(libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
              libabsl-dev prometheus-cpp-dev libsqlite3-dev libpq-dev libssl-dev uuid-dev
              libspdlog-dev libcli11-dev libcpp-httplib-dev)

PKGS=("${ENGINE_PKGS[@]}" "${TEST_PKGS[@]}" "${SERVICE_PKGS[@]}")
# The service's checkers come from the npm registry (tools/package.json, pinned
# by tools/package-lock.json): npm itself is Debian's when none is installed.
TOOLS=1
if [[ "${RESTYLE_ENGINE_ONLY:-OFF}" == "ON" ]]; then
  PKGS=("${ENGINE_PKGS[@]}" "${TEST_PKGS[@]}")
  TOOLS=0
fi
# RESTYLE_DEPS=build: what building the binaries needs, no tests or checkers
# (the Dockerfile's build stage).
if [[ "${RESTYLE_DEPS:-all}" == "build" ]]; then
  PKGS=("${ENGINE_PKGS[@]}" "${SERVICE_PKGS[@]}")
  TOOLS=0
fi
if [[ $TOOLS == 1 ]] && ! command -v npm >/dev/null 2>&1; then PKGS+=(npm); fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [[ ${#missing[@]} -eq 0 ]]; then
  echo "deps: all ${#PKGS[@]} packages present"
else
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# npm ci again whenever the lock file changed since the last install.
tools_dir="$(cd "$(dirname "$0")" && pwd)"
if [[ $TOOLS == 1 ]] && ! cmp -s "$tools_dir/package-lock.json" "$tools_dir/node_modules/.restyle-lock.json"; then
  echo "deps: installing the checkers (tools/package-lock.json)"
  (cd "$tools_dir" && npm ci --no-audit --no-fund --loglevel=error &&
   cp package-lock.json node_modules/.restyle-lock.json)
fi
