# Restyle: the user's entry point.
#   make deps    install the missing Debian packages (apt-get; sudo when not root)
#   make build   configure and build (Release, ccache when present) in build/
#   make test    deps + build (and the fuzz tree) + the whole ctest suite
#   make fuzz    the libFuzzer targets for FUZZ_SECONDS each (default 600)
#   make bench   run restyle-bench (one JSON line per benchmark)
#   make bench-compare  engine vs the Python baseline, as ratios
#   make bench-load     the Generate load benchmark on the real service (bench/load.py)
#   make image   the CPU container images (restyle-front, restyle-worker) with podman
#   make demo    deps + build + the service end to end (restyled, a worker, the
#                restyle CLI) on the embedded tiny models (tools/demo.sh)
#   make demo-offline  the same models through restyle-train alone (IPL vs NADA)
#   make world-eval    IPL vs NADA in the toy world for every target style, judged
BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=
# Only these targets (e.g. "restyled restyle"): all when empty.
BUILD_TARGETS ?=

.PHONY: all deps configure build fuzz-build fuzz test image bench bench-compare bench-load demo demo-offline world-eval clean

all: build

deps:
	@tools/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS) $(if $(BUILD_TARGETS),--target $(BUILD_TARGETS))

test: build fuzz-build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

# The libFuzzer targets (tests/fuzz) in a clang tree of their own, every
# library instrumented and under ASan + UBSan.
# The same tree holds the front, the CLI and the torch-free unit and
# integration tests under ASan + UBSan (RESTYLE_SANITIZED_TESTS in
# CMakeLists.txt), run against the main tree's workers by sanitized_tests.
FUZZ_BUILD_DIR ?= build-fuzz
FUZZ_TARGETS = $(patsubst tests/fuzz/%_fuzz.cc,%,$(wildcard tests/fuzz/*_fuzz.cc))
FUZZ_SECONDS ?= 600
fuzz-build: deps
	@cmake -S . -B $(FUZZ_BUILD_DIR) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++-14 \
	  -DRESTYLE_FUZZ=ON -DRESTYLE_BUILD_TESTS=ON -DRESTYLE_TEST_ENGINE_BIN_DIR=$(abspath $(BUILD_DIR)) >/dev/null
	@cmake --build $(FUZZ_BUILD_DIR) -j $(JOBS) --target fuzzers sanitized_service_tests

fuzz: fuzz-build
	@for t in $(FUZZ_TARGETS); do tests/fuzz/run.sh $(FUZZ_BUILD_DIR) $$t $(FUZZ_SECONDS) || exit 1; done

# The Dockerfile's front and worker images, offline (tools/image.sh).
image: deps
	tools/image.sh $(IMAGE_TARGETS)

bench: build
	$(BUILD_DIR)/worker/engine/bench/restyle-bench $(BENCH_FLAGS)

# Engine and Python baseline side by side in one session, with ratios.
bench-compare: build
	bench/compare.py --bench $(BUILD_DIR)/worker/engine/bench/restyle-bench $(BENCH_FLAGS)

# restyled and a worker on loopback under Generate load, against the engine's
# own throughput in the same run (docs/benchmarks.md#serving).
bench-load: build
	/usr/bin/python3 bench/load.py --build $(BUILD_DIR) $(LOAD_FLAGS)

# The service end to end on loopback: restyled, one CPU restyle-worker, and
# `restyle adapt --follow` then `restyle generate`; everything is stopped at
# the end (also on failure or Ctrl-C).
demo: build
	tools/demo.sh $(BUILD_DIR) demo-out

# The offline tool, no service: IPL and NADA on the same seeds with
# restyle-train, then more images of the IPL result with restyle-generate.
demo-offline: build
	$(BUILD_DIR)/worker/engine/adapt_job/restyle-train --world --out demo-out/offline
	$(BUILD_DIR)/worker/engine/adapt_job/restyle-generate --job demo-out/offline/ipl --seeds 0-15 \
	  --grid demo-out/offline/ipl/more.png --with-source

# IPL against NADA in the toy world, every target style, judged (docs/world.md).
world-eval: build
	/usr/bin/python3 tools/world/evaluate.py --build $(BUILD_DIR) --out world-eval $(WORLD_EVAL_FLAGS)

clean:
	rm -rf $(BUILD_DIR)
