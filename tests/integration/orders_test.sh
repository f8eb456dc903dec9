#!/bin/sh
# The orders example end to end, over real sockets: 10 000
# orders POSTed to the gateway, with the payment provider declining 5% of
# orders and failing 2% of calls transiently. Every accepted order ends
# completed, or failed and compensated; none is lost, none is left pending,
# none is charged twice; /metrics passes `promtool check metrics`.
#
# usage: orders_test.sh SOURCE_DIR BUILD_DIR [ORDERS]
set -eu
NAME=orders_test
. "$(dirname "$0")/orders_lib.sh"
orders_setup "$1" "$2"
ORDERS=${3:-10000}
command -v promtool >/dev/null || fail "needs promtool (Debian: prometheus)"

start_sim --latency-ms 5 --failure-rate 0.02 --decline-rate 0.05 --seed 20261127
example_config "$WORK/service.yaml"
start_sluice "$WORK/service.yaml"
rss_idle=$(peak_rss_kib)

# ---- place the orders ---------------------------------------------------------
t0=$(now_ms)
"$LOADGEN" post "$GW/orders" -n "$ORDERS" -c 32 -o "$WORK/ids.txt" \
    >"$WORK/post.json" || fail "loadgen post failed"
note "posted: $(cat "$WORK/post.json")"
P=$WORK/post.json
check "every order answered 202: $(cat "$P")" \
    [ "$(js "$P" '.by_code["202"] // 0')" -eq "$ORDERS" ]
check "every 202 names its event id" [ "$(js "$P" .ids_missing)" -eq 0 ]
check "ids are unique" [ "$(sort -u "$WORK/ids.txt" | wc -l)" -eq "$ORDERS" ]

# ---- wait until every order reached a final status -----------------------------
# The domain counters first (one scrape per poll), then every order's status.
settled() {
    [ "$(metric '^orders_(processed|failed)_total')" -ge "$ORDERS" ]
}
wait_for 90 settled || fail "orders still open after 90 s"
settled_ms=$(($(now_ms) - t0))
wait_for 60 all_final "$WORK/ids.txt" declined ||
    fail "orders still open after 90 s: $(cat "$WORK/status.json")"
note "statuses: $(cat "$WORK/status.json")"
completed=$(st completed)
failed=$(st failed)
check "none lost: completed + failed = accepted" \
    [ "$((completed + failed))" -eq "$ORDERS" ]
check "no status missing" [ "$(st missing)" -eq 0 ]
# Declines are drawn per order at 5%: 500 +- 22 (one standard deviation).
check "about 5% of orders declined ($failed)" \
    [ "$failed" -ge 350 -a "$failed" -le 650 ]
check "every failed order failed because its card was declined" \
    [ "$(st failed_matching)" -eq "$failed" ]

# ---- the payment provider's side: charged once, declines = failures -------------
check "charges = completed orders ($(sim_stat charges) vs $completed)" \
    [ "$(sim_stat charges)" -eq "$completed" ]
check "one charge per idempotency key" [ "$(sim_stat keys)" -eq "$completed" ]
check "max_charges_per_key = 1" [ "$(sim_stat max_charges_per_key)" -eq 1 ]
check "max_charges_per_order = 1 (no order charged twice)" [ "$(sim_stat max_charges_per_order)" -eq 1 ]
check "declines = failed orders" [ "$(sim_stat declines)" -eq "$failed" ]
injected=$(sim_stat failures_injected)
check "transient failures were injected ($injected)" [ "$injected" -gt 0 ]
check "each transient failure was retried" \
    [ "$(metric '^sluice_events_consumed_total\{.*group="payment".*outcome="retry"')" \
        -eq "$injected" ]

# ---- the saga: every failed order compensated (stock released once) -----------
compensated() {
    [ "$(metric '^orders_failed_total\{reason="payment_(declined|failed)"')" \
        -eq "$failed" ]
}
wait_for 30 compensated ||
    fail "compensated $(metric '^orders_failed_total\{reason="payment_') of $failed"
PASSED=$((PASSED + 1))
check "orders_processed_total = completed" \
    [ "$(metric '^orders_processed_total$')" -eq "$completed" ]
check "orders_published_total = accepted" \
    [ "$(metric '^orders_published_total$')" -eq "$ORDERS" ]
check "nothing out of stock" \
    [ "$(metric '^orders_failed_total\{reason="out_of_stock"')" -eq 0 ]
queues_empty() {
    [ "$(metric '^sluice_queue_depth\{')" -eq 0 ]
}
wait_for 10 queues_empty || fail "events left in the queues"
PASSED=$((PASSED + 1))

# ---- /metrics is valid Prometheus text -------------------------------------------
curl -sf "$ADMIN/metrics" >"$WORK/metrics.txt" || fail "GET /metrics"
check "promtool check metrics: $(promtool check metrics <"$WORK/metrics.txt" 2>&1 | head -5)" \
    promtool check metrics <"$WORK/metrics.txt"

rss=$(peak_rss_kib)
stop_sluice 30
note "figures: $ORDERS orders accepted at $(js "$P" .accepted_per_s)/s" \
    "(p50 $(js "$P" .p50_ms) ms, p99 $(js "$P" .p99_ms) ms, 32 connections);" \
    "all settled $settled_ms ms after the first POST ($((ORDERS * 1000 / settled_ms)) orders/s end to end);" \
    "$completed completed, $failed declined and compensated," \
    "$injected transient payment failures retried;" \
    "peak RSS $((rss / 1024)) MiB (idle $((rss_idle / 1024)) MiB);" \
    "SIGTERM exit after $STOP_MS ms"
echo "$NAME: $PASSED passed, 0 failed"
