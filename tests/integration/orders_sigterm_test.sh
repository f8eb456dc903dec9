#!/bin/sh
# SIGTERM under load: while the loadgen keeps posting
# orders, `sluice run` of the orders example gets SIGTERM. It exits 0 within
# drain_timeout (10 s here; the bound checked is drain_timeout + 5 s of
# margin for process exit and polling, a behavioural bound, not a
# performance figure); the requests it gets meanwhile are answered 503 with
# Retry-After, those after its exit find the port closed (connection
# refused). After a restart
# the backlog left in the store completes: every order that got 202 ends
# completed or failed (declined), none is lost, none is charged twice.
#
# The payment provider answers after 20 ms and is called 32 at a time (at
# most 1 600 orders/s) while the loadgen offers 3 000/s, so a backlog is
# waiting in orders.validated when the signal comes.
#
# usage: orders_sigterm_test.sh SOURCE_DIR BUILD_DIR
set -eu
NAME=orders_sigterm_test
. "$(dirname "$0")/orders_lib.sh"
orders_setup "$1" "$2"
command -v sqlite3 >/dev/null || fail "needs sqlite3"
DRAIN_S=10

start_sim --latency-ms 20 --failure-rate 0.02 --decline-rate 0.05 --seed 99
example_config "$WORK/service.yaml" "${DRAIN_S}s"
start_sluice "$WORK/service.yaml"

# ---- load, then SIGTERM in the middle of it ---------------------------------
"$LOADGEN" post "$GW/orders" -d 6 -r 3000 -c 64 -o "$WORK/ids.txt" \
    >"$WORK/post.json" &
LG_PID=$!
busy() { # 4 000 orders accepted and payments flowing
    [ "$(metric '^sluice_events_published_total\{channel="orders.created",outcome="ok"')" \
        -ge 4000 ] && [ "$(metric '^orders_processed_total$')" -gt 0 ]
}
wait_for 30 busy || fail "the load did not get going"
stop_sluice $((DRAIN_S + 5))
check "exit 0 within drain_timeout + 5 s ($STOP_MS ms)" \
    [ "$STOP_MS" -lt $(((DRAIN_S + 5) * 1000)) ]
check "drain logged" grep -q '"orders drained in' "$WORK/run.log"
# What the provider saw before the restart: orders that reached payment.
paid_before=$(($(sim_stat charges) + $(sim_stat declines)))

lg_rc=0
wait "$LG_PID" || lg_rc=$?
LG_PID=
[ "$lg_rc" -eq 0 ] || fail "loadgen post failed"
P=$WORK/post.json
note "offered: $(cat "$P")"
sent=$(js "$P" .sent)
accepted=$(js "$P" '.by_code["202"] // 0')
r503=$(js "$P" '.by_code["503"] // 0')
refused=$(js "$P" '.by_code.refused // 0')
unanswered=$(js "$P" '.by_code.error // 0')
check "requests came after the exit (refused: $refused)" [ "$refused" -gt 0 ]
check "every 503 carries Retry-After" \
    [ "$(js "$P" .retry_after_missing)" -eq 0 ]
check "every 202 names its event id" [ "$(js "$P" .ids_missing)" -eq 0 ]
check "ids file holds every accepted order" \
    [ "$(sort -u "$WORK/ids.txt" | wc -l)" -eq "$accepted" ]
left=$((accepted - paid_before))
check "a backlog was left for the restart ($left of $accepted)" [ "$left" -gt 0 ]

# ---- restart: the rest completes ---------------------------------------------
start_sluice "$WORK/service.yaml"
t0=$(now_ms)
wait_for 90 all_final "$WORK/ids.txt" declined ||
    fail "orders still open 90 s after the restart: $(cat "$WORK/status.json")"
finish_ms=$(($(now_ms) - t0))
note "statuses: $(cat "$WORK/status.json")"
completed=$(st completed)
failed=$(st failed)
check "none lost: completed + failed = accepted" \
    [ "$((completed + failed))" -eq "$accepted" ]
check "every failed order was declined" [ "$(st failed_matching)" -eq "$failed" ]
check "one charge per idempotency key" \
    [ "$(sim_stat keys)" -eq "$(sim_stat charges)" ]
check "max_charges_per_key = 1" [ "$(sim_stat max_charges_per_key)" -eq 1 ]
check "max_charges_per_order = 1 (no order charged twice)" [ "$(sim_stat max_charges_per_order)" -eq 1 ]
stop_sluice $((DRAIN_S + 5))

# The status projection (the gateway_status table of the gateway's state
# file, docs/gateway.md) holds every order the gateway published, answered
# or not.
projected=$(sqlite3 -cmd ".timeout 5000" "$WORK/data/gateway.db" \
    "SELECT count(*) FROM gateway_status") || fail "reading gateway.db"
projected_completed=$(sqlite3 -cmd ".timeout 5000" "$WORK/data/gateway.db" \
    "SELECT count(*) FROM gateway_status WHERE status = 'completed'")
check "charges = completed orders ($(sim_stat charges) vs $projected_completed)" \
    [ "$(sim_stat charges)" -eq "$projected_completed" ]
note "figures: SIGTERM under $(js "$P" .offered_per_s)/s offered:" \
    "exit 0 after $STOP_MS ms; $accepted accepted ($left left in the store" \
    "at the stop), $r503 answered 503, $refused refused," \
    "$unanswered closed without an answer;" \
    "after the restart all final in $finish_ms ms;" \
    "$completed completed, $failed declined;" \
    "duplicates absorbed by the provider: $(sim_stat duplicates_absorbed)"

# ---- the drain answered every request it took ------------------------------------
# A request the gateway read is answered (202, or 503 while draining); the
# others find the port closed. A connection closed without an answer leaves
# the client unsure whether its order was placed.
check "every answer is 202, 503 or connection refused: $(jq -c .by_code "$P")" \
    [ "$((accepted + r503 + refused))" -eq "$sent" ]
check "no order published without its 202 reaching the client ($projected in the projection, $accepted answered 202)" \
    [ "$projected" -eq "$accepted" ]
echo "$NAME: $PASSED passed, 0 failed"
