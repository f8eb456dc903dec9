#!/bin/sh
# The orders example at ten times its capacity: the excess
# is answered 429 (the client's token bucket) or 503 (the channel at
# max_length), every such answer carries Retry-After, every accepted order
# completes, and the process's memory stays bounded.
#
# Capacity is set small on purpose: the payment provider answers after 20 ms
# and the payment group calls it 4 at a time, so at most 4 / 20 ms = 200
# orders/s get through; orders.created and orders.validated hold 50 events
# per group, so a backlog pushes back to the gateway within a fraction of a
# second; one client (X-API-Key: k-overload) may send 400 requests/s. The
# loadgen offers 2 000/s from that client for 10 s.
#
# Timing is reported, never asserted: the p99 of accepted and rejected
# answers is printed for the record.
#
# usage: orders_overload_test.sh SOURCE_DIR BUILD_DIR [SECONDS]
set -eu
NAME=orders_overload_test
. "$(dirname "$0")/orders_lib.sh"
orders_setup "$1" "$2"
SECONDS_=${3:-10}
RATE=2000
# Peak RSS bound. Idle, `sluice run` on this example holds ~17 MiB (SQLite
# page caches, the plugin, libcurl, thread stacks as touched); under this
# overload every queue is bounded (max_length 50 per channel, prefetch 64,
# 8 gateway threads) and a refusal keeps nothing, so the peak should stay
# near idle. 64 MiB leaves room for allocator slack and still fails if the
# process kept ~2 KiB per refused request (20 000 of them) or queued the
# excess instead of refusing it.
RSS_LIMIT_KIB=$((64 * 1024))

start_sim --latency-ms 20 --failure-rate 0 --decline-rate 0 --seed 7
example_config "$WORK/service.yaml" 10s
C=$WORK/service.yaml
sed -i -e 's/max_length: 100000}/max_length: 50}/' \
    -e 's/^    concurrency: 32$/    concurrency: 4/' \
    -e 's/^      max_concurrency: 32$/      max_concurrency: 4/' \
    -e 's/^  threads: 8$/  threads: 8\n  client_rate: 400\n  client_burst: 400/' "$C"
[ "$(grep -c 'max_length: 50}' "$C")" -eq 4 ] || fail "config: max_length"
grep -q '^    concurrency: 4$' "$C" || fail "config: payment concurrency"
grep -q '^      max_concurrency: 4$' "$C" || fail "config: max_concurrency"
grep -q '^  client_rate: 400$' "$C" || fail "config: client_rate"
start_sluice "$C"
rss_idle=$(peak_rss_kib)

# ---- offer 10x capacity ------------------------------------------------------
"$LOADGEN" post "$GW/orders" -d "$SECONDS_" -r "$RATE" -c 64 -k k-overload \
    -o "$WORK/ids.txt" >"$WORK/post.json" || fail "loadgen post failed"
P=$WORK/post.json
note "offered: $(cat "$P")"
sent=$(js "$P" .sent)
accepted=$(js "$P" '.by_code["202"] // 0')
r429=$(js "$P" '.by_code["429"] // 0')
r503=$(js "$P" '.by_code["503"] // 0')
check "every answer is 202, 429 or 503: $(jq -c .by_code "$P")" \
    [ "$((accepted + r429 + r503))" -eq "$sent" ]
check "some orders accepted" [ "$accepted" -gt 0 ]
check "the client's rate limit answered 429" [ "$r429" -gt 0 ]
check "the full channel answered 503" [ "$r503" -gt 0 ]
check "most of the offer refused (overload): $accepted of $sent accepted" \
    [ "$((accepted * 2))" -lt "$sent" ]
check "every 429 and 503 carries Retry-After" \
    [ "$(js "$P" .retry_after_missing)" -eq 0 ]
check "every 202 names its event id" [ "$(js "$P" .ids_missing)" -eq 0 ]
check "ids file holds every accepted order" \
    [ "$(sort -u "$WORK/ids.txt" | wc -l)" -eq "$accepted" ]
check "the gateway counted the same 429s" \
    [ "$(metric '^sluice_http_requests_total\{server="gateway",route="/orders",code="429"')" \
        -eq "$r429" ]
check "the gateway counted the same 503s" \
    [ "$(metric '^sluice_http_requests_total\{server="gateway",route="/orders",code="503"')" \
        -eq "$r503" ]
check "a refusal published nothing" \
    [ "$(metric '^sluice_events_published_total\{channel="orders.created",outcome="ok"')" \
        -eq "$accepted" ]

# ---- every accepted order completes ---------------------------------------------
wait_for 60 all_final "$WORK/ids.txt" ||
    fail "accepted orders still open after 60 s: $(cat "$WORK/status.json")"
note "statuses: $(cat "$WORK/status.json")"
check "every accepted order completed" [ "$(st completed)" -eq "$accepted" ]
check "none failed" [ "$(st failed)" -eq 0 ]
check "charged once each" [ "$(sim_stat charges)" -eq "$accepted" ]
check "max_charges_per_key = 1" [ "$(sim_stat max_charges_per_key)" -eq 1 ]
check "max_charges_per_order = 1 (no order charged twice)" [ "$(sim_stat max_charges_per_order)" -eq 1 ]

# ---- memory stayed bounded ------------------------------------------------------
rss=$(peak_rss_kib)
check "peak RSS ${rss} KiB < ${RSS_LIMIT_KIB} KiB" [ "$rss" -lt "$RSS_LIMIT_KIB" ]

stop_sluice 20
note "figures: offered $(js "$P" .offered_per_s)/s for $SECONDS_ s" \
    "(capacity 200/s); accepted $(js "$P" .accepted_per_s)/s;" \
    "$accepted 202, $r429 429, $r503 503;" \
    "p99 accepted $(js "$P" .p99_ms_by_class.accepted) ms," \
    "p99 rejected $(js "$P" .p99_ms_by_class.rejected) ms;" \
    "peak RSS $((rss / 1024)) MiB (idle $((rss_idle / 1024)) MiB," \
    "bound $((RSS_LIMIT_KIB / 1024)) MiB)"
echo "$NAME: $PASSED passed, 0 failed"
