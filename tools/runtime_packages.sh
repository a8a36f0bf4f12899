#!/usr/bin/env bash
# Prints the Debian packages that hold the shared libraries the given
# binaries link directly (their NEEDED entries, found as ldd finds them,
# then dpkg -S), one per line, sorted: what a runtime image installs, apt
# adding their own dependencies, instead of a hand-kept list. Libraries no
# package owns (a LibTorch copied in) are left out.
#   tools/runtime_packages.sh BINARY...
set -euo pipefail
for binary in "$@"; do
  needed=" $(objdump -p "$binary" | awk '/NEEDED/ { printf "%s ", $2 }')"
  ldd "$binary" | awk -v needed="$needed" '$2 == "=>" && index(needed, " " $1 " ") { print $3 }'
done | sort -u | while read -r lib; do
  # Through symlinks and alternatives to the file, whichever path dpkg knows
  # (/lib and /usr/lib are one directory on bookworm).
  for path in "$lib" "$(readlink -f "$lib")"; do
    for candidate in "$path" "${path#/usr}" "/usr$path"; do
      if owner=$(dpkg -S "$candidate" 2>/dev/null); then
        echo "${owner%%:*}"
        continue 3
      fi
    done
  done
  echo "runtime_packages: no package holds $lib (left out)" >&2
done | sort -u
