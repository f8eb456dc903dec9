# Front door. `make run` starts the example service on the embedded engine;
# `make test` runs every test, including the sanitizer build; `make bench`
# prints the benchmark ratios.
BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_TSAN ?= build-tsan
BUILD_FUZZ ?= build-fuzz
FUZZ_SECONDS ?= 10
JOBS       ?= 2
CMAKE_ARGS ?=
# The release build's configuration (make build, make run).
RELEASE_ARGS = -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSLUICE_WERROR=ON $(CMAKE_ARGS)

.PHONY: all deps build build-san build-tsan build-fuzz run test test-run \
        chaos fuzz bench clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(RELEASE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-san: deps
	@cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DSLUICE_WERROR=ON \
	    -DSLUICE_SANITIZE=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_SAN) -j$(JOBS)

build-tsan: deps
	@cmake -S . -B $(BUILD_TSAN) -DCMAKE_BUILD_TYPE=Debug -DSLUICE_WERROR=ON \
	    -DSLUICE_TSAN=ON $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_TSAN) -j$(JOBS)

# The libFuzzer targets need clang; only they (and the library) are built.
build-fuzz: deps
	@CC=clang cmake -S . -B $(BUILD_FUZZ) -DCMAKE_BUILD_TYPE=Debug \
	    -DSLUICE_WERROR=ON -DSLUICE_FUZZ=ON \
	    -DSLUICE_FUZZ_SECONDS=$(FUZZ_SECONDS) $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD_FUZZ) -j$(JOBS) --target config_fuzz \
	    event_decode_fuzz event_json_fuzz gateway_input_fuzz nats_codec_fuzz

# A short smoke of every fuzz target (make fuzz FUZZ_SECONDS=600 for more).
fuzz: build-fuzz
	@ctest --test-dir $(BUILD_FUZZ) --output-on-failure -j$(JOBS) -L fuzz

# Builds quietly (the compiler's output only when the build fails), so the
# example's guide and sluice's banner are the last lines on the screen.
run: deps
	@printf 'building %s ... ' "$(BUILD)"; log=$$(mktemp); \
	if cmake -S . -B $(BUILD) $(RELEASE_ARGS) >"$$log" 2>&1 && \
	   cmake --build $(BUILD) -j$(JOBS) >>"$$log" 2>&1; then \
	    echo done; rm -f "$$log"; \
	else \
	    echo failed; cat "$$log"; rm -f "$$log"; exit 1; \
	fi
	@exec sh examples/orders/run.sh $(BUILD)

# The release build's tests (unit, conformance, integration), then the same
# unit and conformance tests under ASan+UBSan and under TSan.
# The brokers (nats-server, rabbitmq-server) run on loopback high ports for
# the whole run and are stopped by PID afterwards, also when a test fails
# (scripts/with-brokers.sh).
test: build build-san build-tsan build-fuzz
	@sh scripts/with-brokers.sh $(MAKE) --no-print-directory test-run

test-run:
	@ctest --test-dir $(BUILD) --output-on-failure -j$(JOBS) -LE chaos
	@ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
	    ctest --test-dir $(BUILD_SAN) --output-on-failure -j$(JOBS) \
	    -L sanitize
	@TSAN_OPTIONS=halt_on_error=1 \
	    ctest --test-dir $(BUILD_TSAN) --output-on-failure -j$(JOBS) \
	    -L sanitize
	@ctest --test-dir $(BUILD_FUZZ) --output-on-failure -j$(JOBS) -L fuzz

# Long chaos soaks (broker and node kills), kept out of `make test`.
chaos: build
	@sh scripts/with-brokers.sh ctest --test-dir $(BUILD) \
	    --output-on-failure -L chaos

# Broker benchmarks need the test brokers: they run for the whole bench.
bench: build
	@sh scripts/with-brokers.sh sh bench/run.sh $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_TSAN) $(BUILD_FUZZ)
