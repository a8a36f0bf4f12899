#!/usr/bin/env bash
# Runs the torch-free unit and integration tests of the sanitizer tree
# (make fuzz-build: build-fuzz/, clang, ASan + UBSan everywhere): the front,
# the CLI and the tests themselves are instrumented, the workers are the main
# tree's. Any sanitizer report makes its process fail, so its test.
#   tests/sanitized_tests.sh FUZZ_BUILD_DIR TEST...
# (The list is RESTYLE_SANITIZED_TESTS in CMakeLists.txt.)
set -euo pipefail
build="$1"
shift
tests=("$@")
for t in "${tests[@]}"; do
  if [[ ! -x "$(find "$build/tests" -name "$t" -type f 2>/dev/null | head -1)" ]]; then
    echo "$t is not built in $build (make fuzz-build: clang and libclang-rt-14-dev)"
    [[ "${CI:-}" == true ]] && exit 1
    exit 77
  fi
done
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:${ASAN_OPTIONS:-}"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
ctest --test-dir "$build" -R "$regex" --output-on-failure -j 1
