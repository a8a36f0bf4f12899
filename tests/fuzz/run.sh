#!/usr/bin/env bash
# Runs one libFuzzer target of build-fuzz/ for a bounded time on a copy of
# its seed corpus (new inputs stay out of the repository; a crash input is
# kept under build-fuzz/crashes/ and printed).
#   tests/fuzz/run.sh FUZZ_BUILD_DIR TARGET SECONDS
set -euo pipefail
build="$1" target="$2" seconds="$3"
here="$(cd "$(dirname "$0")" && pwd)"
binary="$build/tests/fuzz/${target}_fuzz"
if [[ ! -x "$binary" ]]; then
  echo "$binary is not built (make fuzz-build: clang and libclang-rt-14-dev)"
  [[ "${CI:-}" == true ]] && exit 1
  exit 77
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$build/crashes"
# Leak checking stays off: the process-wide tokenizer and LibTorch's
# allocator caches are meant to live until exit.
ASAN_OPTIONS="detect_leaks=0:${ASAN_OPTIONS:-}" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
  "$binary" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 \
  -artifact_prefix="$build/crashes/${target}-" "$work/corpus" "$here/corpus/$target"
