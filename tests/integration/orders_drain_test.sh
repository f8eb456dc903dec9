#!/bin/sh
# The gateway during a drain, over real sockets: after SIGTERM `sluice run`
# of the orders example keeps its gateway listening until the drain is
# over. While a payment is still being charged (the simulator answers after
# 4 s), a new order is answered 503 with Retry-After and an
# application/problem+json body (not "connection refused"), GET
# /status/{id} of the order accepted before the signal still answers 200,
# /readyz on the admin listener says 503, and the process then exits 0.
#
# usage: orders_drain_test.sh SOURCE_DIR BUILD_DIR
set -eu
NAME=orders_drain_test
. "$(dirname "$0")/orders_lib.sh"
orders_setup "$1" "$2"
DRAIN_S=20

start_sim --latency-ms 4000 --failure-rate 0 --decline-rate 0
example_config "$WORK/service.yaml" "${DRAIN_S}s"
start_sluice "$WORK/service.yaml"

ORDER='{"sku":"A-1","qty":1,"amount":9.5,"customer":"ada"}'
# post_order OUT: POST /orders; the headers in OUT.h, the body in OUT; the
# HTTP status on stdout (000 when no answer came).
post_order() {
    curl -s -o "$1" -D "$1.h" -w '%{http_code}' \
        -H 'Content-Type: application/json' -d "$ORDER" "$GW/orders" || true
}

code=$(post_order "$WORK/first.json")
[ "$code" = 202 ] || fail "the first order got $code: $(cat "$WORK/first.json")"
ID=$(jq -er .id "$WORK/first.json") || fail "no id in $(cat "$WORK/first.json")"
# The payment handler holds the order for the simulator's 4 s: the drain
# has to wait for it.
charging() {
    [ "$(metric '^sluice_handlers_in_flight\{channel="orders.validated",group="payment"')" \
        -ge 1 ]
}
wait_for 10 charging || fail "the payment handler did not start"

STOP_T0=$(now_ms)
kill -TERM "$RUN_PID"
not_ready() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$ADMIN/readyz")" = 503 ]
}
check "/readyz answers 503 once draining" wait_for 5 not_ready

code=$(post_order "$WORK/second.json")
during_ms=$(($(now_ms) - STOP_T0))
check "a new order during the drain is answered 503, not refused (got $code)" \
    [ "$code" = 503 ]
check "the 503 carries Retry-After" \
    grep -qi '^Retry-After: [0-9][0-9]*' "$WORK/second.json.h"
check "the 503 is application/problem+json" \
    grep -qi '^Content-Type: application/problem+json' "$WORK/second.json.h"
check "the problem says why: $(cat "$WORK/second.json")" \
    [ "$(jq -r .detail "$WORK/second.json")" = "the service is shutting down" ]
status=$(curl -s -o "$WORK/status.json" -w '%{http_code}' \
    "$GW/status/$ID" || true)
check "GET /status/{id} of the accepted order answers 200 (got $status)" \
    [ "$status" = 200 ]
check "the status names the order" \
    [ "$(jq -r .id "$WORK/status.json")" = "$ID" ]
check "all of it while the drain still ran (${during_ms} ms after SIGTERM)" \
    kill -0 "$RUN_PID"

await_sluice_exit $((DRAIN_S + 5))
check "the drain waited for the payment (exit after $STOP_MS ms)" \
    [ "$STOP_MS" -ge 1000 ]
check "drain logged" grep -q '"orders drained in' "$WORK/run.log"
echo "$NAME: $PASSED passed, 0 failed"
