# Restyle: the user's entry point.
#   make deps    install the missing Debian packages (apt-get; sudo when not root)
#   make build   configure and build (Release, ccache when present) in build/
#   make test    deps + build + the whole ctest suite
#   make bench   run restyle-bench (one JSON line per benchmark)
#   make bench-compare  engine vs the Python baseline, as ratios
#   make demo    deps + build + the end-to-end demo on the embedded tiny models
BUILD_DIR  ?= build
BUILD_TYPE ?= Release
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?=
CTEST_FLAGS ?=

.PHONY: all deps configure build test bench bench-compare demo clean

all: build

deps:
	@tools/install_deps.sh

configure: deps
	@cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD_DIR) -j $(JOBS)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure -j $(JOBS) $(CTEST_FLAGS)

bench: build
	$(BUILD_DIR)/worker/engine/bench/restyle-bench $(BENCH_FLAGS)

# Engine and Python baseline side by side in one session, with ratios.
bench-compare: build
	bench/compare.py --bench $(BUILD_DIR)/worker/engine/bench/restyle-bench $(BENCH_FLAGS)

# Adapt (IPL and NADA on the same seeds), then draw more images from the IPL
# result by seed.
demo: build
	$(BUILD_DIR)/worker/engine/adapt_job/restyle-train --demo --out demo-out
	$(BUILD_DIR)/worker/engine/adapt_job/restyle-generate --job demo-out/ipl --seeds 0-15 \
	  --grid demo-out/ipl/more.png --with-source

clean:
	rm -rf $(BUILD_DIR)
