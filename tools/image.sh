#!/usr/bin/env bash
# make image: Restyle's CPU images (Dockerfile targets front and worker) with
# podman, offline. When the Dockerfile's base image is not present (no
# registry is reachable here) it is made from Debian's archive with
# debootstrap and tagged as the name the Dockerfile's FROM uses.
#   tools/image.sh [TARGET...]      (default: front worker)
# Images: restyle-front:VERSION, restyle-worker:VERSION (and :latest).
# Environment: RESTYLE_IMAGE_TAG (VERSION from CMakeLists.txt), DEBIAN_MIRROR.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/tools/containers.conf}"
base=docker.io/library/debian:bookworm-slim
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
version="${RESTYLE_IMAGE_TAG:-$(sed -n 's/^project(restyle VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)}"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=(front worker)

for tool in podman runc debootstrap; do
  command -v "$tool" >/dev/null || { echo "image: $tool is not installed (make deps)" >&2; exit 1; }
done

if ! podman image exists "$base"; then
  echo "image: making $base from $mirror (debootstrap --variant=minbase bookworm)"
  rootfs="$(mktemp -d /var/tmp/restyle-rootfs.XXXXXX)"
  trap 'rm -rf "$rootfs"' EXIT
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$rootfs.log" 2>&1 ||
    { tail -20 "$rootfs.log" >&2; exit 1; }
  rm -f "$rootfs.log"
  # What the official slim image also leaves out.
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
  tar -C "$rootfs" -c . | podman import --message "debootstrap minbase bookworm" - "$base" >/dev/null
  rm -rf "$rootfs"
  trap - EXIT
fi

for target in "${targets[@]}"; do
  name="restyle-$target"
  echo "image: building $name:$version (Dockerfile target $target)"
  podman build --pull=never --format docker --layers --target "$target" \
    --build-arg VERSION="$version" --build-arg REVISION="$revision" \
    -t "$name:$version" -t "$name:latest" .
done
