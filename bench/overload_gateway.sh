#!/bin/sh
# The overload benchmark through the gateway: ten times a consumer's
# capacity offered over HTTP, with the route's admission by predicted wait
# on, then off, side by side (docs/gateway.md, "Admission by predicted
# wait").
#
#   sh bench/overload_gateway.sh [BUILD_DIR [SUMMARY_FILE]]
#
# The service (`sluice run`): one route POST /jobs -> channel jobs with a
# 5 s deadline, max_length 5 000; one consumer group with one worker whose
# handler (tests/integration/paced_plugin.c) takes 10 ms per event, about
# 100 events/s. A warm-up at 50 requests/s for 3 s measures a drain rate;
# then loadgen offers 1 000 requests/s for BENCH_SECONDS (default 10;
# BENCH_QUICK=1: 4) from 64 connections while /scale is polled every
# 100 ms. Reported per mode: accepted and refused requests of the
# overload, events handled (warm-up included) and how many of them after
# their deadline, accepted requests whose event was not handled by its
# deadline (handled late, or expired in the queue and dead-lettered
# unhandled), p50 and p99 from acceptance to handled, and the largest
# queue seen.
set -eu

src=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:-build}" && pwd)
summary=${2:-}
if [ "${BENCH_QUICK:-0}" = 1 ]; then
    seconds=4
else
    seconds=${BENCH_SECONDS:-10}
fi
TMPDIR=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
export TMPDIR
NAME=overload_gateway
TEST_LIB_DIR=$src/tests/integration
. "$src/tests/integration/orders_lib.sh"
. "$src/tests/integration/admission_lib.sh"
orders_setup "$src" "$build"
admission_setup
POLL_PID=
trap 'touch "$WORK/poll.stop" 2>/dev/null || true; orders_cleanup' EXIT

echo "== overload through the gateway: 1000 req/s offered for $seconds s to" \
    "a consumer of ~100 events/s, route deadline 5 s, max_length 5000 =="
for admit in true false; do
    rm -rf "$WORK/data" "$WORK/done.txt"
    admission_config "$WORK/service.yaml" "$admit" 5s 10 5000
    start_sluice "$WORK/service.yaml"
    admission_run 50 3 1000 "$seconds"
    figures >"$WORK/figures.$admit"
    stop_sluice 30
done

row() { # row LABEL KEY
    on=$(tr ' ' '\n' <"$WORK/figures.true" | sed -n "s/^$2=//p")
    off=$(tr ' ' '\n' <"$WORK/figures.false" | sed -n "s/^$2=//p")
    printf '  %-40s %12s %12s\n' "$1" "$on" "$off"
}
printf '  %-40s %12s %12s\n' "admission by wait" "on" "off"
row "offered (overload phase)" sent
row "accepted (202)" accepted
row "refused (503)" refused
row "handled (warm-up included)" handled
row "handled after their deadline" late
row "accepted, not handled by the deadline" unserved
row "accept -> handled p50 (ms)" p50_ms
row "accept -> handled p99 (ms)" p99_ms
row "largest queue (ready+in flight+delayed)" max_depth
echo

if [ -n "$summary" ]; then
    on() { tr ' ' '\n' <"$WORK/figures.true" | sed -n "s/^$1=//p"; }
    off() { tr ' ' '\n' <"$WORK/figures.false" | sed -n "s/^$1=//p"; }
    bad=$(on unserved)
    printf '%s\t%s\t%s\t%s\n' \
        "gateway 10x, wait admission: unserved" "$bad" "0" \
        "$([ "$bad" -eq 0 ] && echo met || echo missed)" \
        "gateway 10x, accept->handled p99 ms (on/off)" \
        "$(on p99_ms)/$(off p99_ms)" "< 5000" \
        "$([ "$(on p99_ms)" -lt 5000 ] && echo met || echo missed)" \
        "gateway 10x, largest queue (on/off)" \
        "$(on max_depth)/$(off max_depth)" "" "" >>"$summary"
fi
