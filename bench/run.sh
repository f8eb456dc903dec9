#!/bin/sh
# Run every benchmark in one go and end with one summary table.
#
#   sh bench/run.sh [BUILD_DIR]        (what `make bench` runs)
#
# BENCH_QUICK=1     a short check of everything (about 35 s instead of ~3 min)
# BENCH_SECONDS=S   seconds of load per overload scenario (default 30)
# BENCH_TMPDIR=DIR  where the temporary SQLite stores go (default $TMPDIR or
#                   /tmp); they are removed after each run
#
# The machine is shared and noisy: compare the ratios printed side by side in
# one run rather than absolute numbers across runs. See docs/benchmarks.md.
set -eu

build=${1:-build}
quick=${BENCH_QUICK:-0}

for prog in embedded_bench overload_bench gateway_load; do
    if [ ! -x "$build/$prog" ]; then
        echo "bench/run.sh: $build/$prog not found; build first (make build)" >&2
        exit 1
    fi
done

summary=$(mktemp "${TMPDIR:-/tmp}/sluice-bench-summary.XXXXXX")
trap 'rm -f "$summary"' EXIT INT TERM

if [ "$quick" = 1 ]; then
    set -- --quick
    echo "BENCH_QUICK=1: short runs, for checking that everything works"
else
    set --
fi
seconds=${BENCH_SECONDS:-}
if [ -n "$seconds" ]; then
    overload_seconds="--seconds $seconds"
else
    overload_seconds=
fi

echo "sluice benchmarks: $(uname -m), $(nproc) cores, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo

"$build/embedded_bench" "$@" --summary "$summary"
# The overload figure depends on the channel's bound: a queue held at
# max_length costs max_length x (bytes per queued event). 1 000 is half a
# second of this consumer's capacity; 10 000 (five seconds) is shown too.
# shellcheck disable=SC2086
"$build/overload_bench" "$@" $overload_seconds --max-length 1000 \
    --summary "$summary"
# shellcheck disable=SC2086
"$build/overload_bench" "$@" $overload_seconds --max-length 10000 \
    --summary "$summary"

# The same overload through the HTTP gateway, with admission by predicted
# wait on and off side by side (needs the test plugin: build with tests).
sh "$(dirname "$0")/overload_gateway.sh" "$build" "$summary"

# The HTTP gateway under wrk and an open-loop generator, next to the raw
# engine publish rate (needs wrk: apt-get install wrk).
sh "$(dirname "$0")/gateway_bench.sh" "$build" "$summary"

# Broker engines against their raw client libraries, side by side (the
# brokers are started by `make bench` through scripts/with-brokers.sh).
if [ -x "$build/nats_bench" ]; then
    "$build/nats_bench" "$@" --summary "$summary"
fi
if [ -x "$build/amqp_bench" ]; then
    "$build/amqp_bench" "$@" --pika "$(dirname "$0")/amqp_pika_bench.py" \
        --summary "$summary"
fi
echo

echo "== summary (ratio = measured / target) =="
awk -F '\t' '
    BEGIN { printf "%-44s %14s %14s %7s\n", "figure", "measured", "target", "ratio" }
    { printf "%-44s %14s %14s %7s\n", $1, $2, $3, $4 }
' "$summary"
