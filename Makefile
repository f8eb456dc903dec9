# Front door. `make run` starts the example service on the embedded engine;
# `make test` runs every test, including the sanitizer build; `make bench`
# prints the benchmark ratios.
BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_TSAN ?= build-tsan
JOBS       ?= 2
CMAKE_ARGS ?=

.PHONY: all deps build build-san build-tsan run test bench clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	    -DSLUICE_WERROR=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-san: deps
	@cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DSLUICE_WERROR=ON \
	    -DSLUICE_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_SAN) -j$(JOBS)

build-tsan: deps
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=Debug -DSLUICE_WERROR=ON \
	    -DSLUICE_TSAN=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_TSAN) -j$(JOBS)

run: build
	@sh examples/hello/run.sh $(BUILD)

# The release build's tests (unit, conformance, integration), then the same
# unit and conformance tests under ASan+UBSan and under TSan.
test: build build-san build-tsan
	@ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS)
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --test-dir $(BUILD_SAN) --output-on-failure -j$(JOBS) \
	    -L sanitize
	@TSAN_OPTIONS=halt_on_error=1 \
	    ctest --test-dir $(BUILD_TSAN) --output-on-failure -j$(JOBS) \
	    -L sanitize

bench: build
	@sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_TSAN)
