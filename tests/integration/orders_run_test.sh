#!/bin/sh
# The front door, as `make run` uses it:
#
# 1. examples/orders/run.sh (ports and data directory from its environment
#    variables, free ports here) serves orders; SIGTERM to the script stops
#    sluice (drained, exit 0) and the payment simulator: no process of the
#    run is left, none orphaned.
# 2. `sluice run` drains on the first SIGINT, saying "draining, up to 25 s
#    (Ctrl-C again to force)" (the example's drain_timeout); a second SIGINT
#    while a payment is still being charged (the simulator answers after
#    30 s) exits at once with status 130 and a line saying so.
#
# usage: orders_run_test.sh SOURCE_DIR BUILD_DIR
set -eu
NAME=orders_run_test
. "$(dirname "$0")/orders_lib.sh"
orders_setup "$1" "$2"
RUNSH=$SRC/examples/orders/run.sh
RS_PID=
trap 'for p in $RS_PID; do kill -KILL "$p" 2>/dev/null || true; done;
      orders_cleanup' EXIT

# The pids of process $1 and of all its descendants.
tree_pids() {
    ps -eo pid=,ppid= | awk -v root="$1" '
        { parent[$1] = $2 }
        END {
            keep[root] = 1
            do {
                grew = 0
                for (p in parent) {
                    if (!(p in keep) && (parent[p] in keep)) {
                        keep[p] = 1
                        grew = 1
                    }
                }
            } while (grew)
            for (p in keep) print p
        }'
}

# True when none of the pids $@ runs (zombies count as gone).
all_gone() {
    for p in "$@"; do
        state=$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null || true)
        if [ -n "$state" ] && [ "$state" != Z ]; then
            return 1
        fi
    done
}

# ---- 1. run.sh: SIGTERM stops sluice and the simulator ----------------------
GW_PORT=$(free_port)
ADMIN_PORT=$(free_port)
while [ "$ADMIN_PORT" = "$GW_PORT" ]; do ADMIN_PORT=$(free_port); done
SIM_PORT=$(free_port)
while [ "$SIM_PORT" = "$GW_PORT" ] || [ "$SIM_PORT" = "$ADMIN_PORT" ]; do
    SIM_PORT=$(free_port)
done
ORDERS_GATEWAY_PORT=$GW_PORT ORDERS_ADMIN_PORT=$ADMIN_PORT \
    ORDERS_SIM_PORT=$SIM_PORT ORDERS_DATA=$WORK/data \
    sh "$RUNSH" "$BUILD" >"$WORK/runsh.out" 2>&1 &
RS_PID=$!
wait_for 20 listening "$GW_PORT" ||
    fail "run.sh: no gateway on $GW_PORT: $(cat "$WORK/runsh.out")"
# line_of TEXT: the number of the first line of run.sh's output holding it.
line_of() { grep -nF -- "$1" "$WORK/runsh.out" | head -n 1 | cut -d: -f1; }
guide=$(line_of "http://127.0.0.1:$GW_PORT/orders")
banner=$(line_of "gateway on port $GW_PORT")
check "the guide names the gateway port" [ -n "$guide" ]
check "sluice's banner (after listening) comes after the guide" \
    [ "${banner:-0}" -gt "${guide:-0}" ]
code=$(curl -s -o "$WORK/order.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    -d '{"sku":"A-1","qty":1,"amount":5,"customer":"ada"}' \
    "http://127.0.0.1:$GW_PORT/orders" || true)
check "an order is accepted (got $code)" [ "$code" = 202 ]
check "the simulator answers on its port" \
    curl -sf -o /dev/null "http://127.0.0.1:$SIM_PORT/stats"
PIDS=$(tree_pids "$RS_PID")
# shellcheck disable=SC2086
check "sluice and the simulator run under run.sh ($(echo $PIDS))" \
    [ "$(echo "$PIDS" | wc -w)" -ge 2 ]
comm_of() { cat "/proc/$1/comm" 2>/dev/null || true; }
RS_SIM=
for p in $PIDS; do
    [ "$(comm_of "$p")" = payment-sim ] && RS_SIM=$p
done
check "the simulator is run.sh's child" [ -n "$RS_SIM" ]

t0=$(now_ms)
kill -TERM "$RS_PID"
# shellcheck disable=SC2086
wait_for 30 all_gone $PIDS ||
    fail "still running 30 s after SIGTERM: $(ps -o pid=,args= -p "$(echo $PIDS | tr ' ' ,)")"
stop_ms=$(($(now_ms) - t0))
rc=0
wait "$RS_PID" || rc=$?
RS_PID=
check "run.sh exits 0 after SIGTERM (got $rc)" [ "$rc" -eq 0 ]
check "sluice drained" grep -q '"orders drained in' "$WORK/runsh.out"
check "nothing of the run is left (no orphan simulator)" \
    [ -z "$(ps -eo args= | grep -F -- "--listen 127.0.0.1:$SIM_PORT" |
        grep -v grep || true)" ]
note "SIGTERM to run.sh: sluice and payment-sim gone after $stop_ms ms"

# ---- 2. sluice run: a second SIGINT forces the exit --------------------------
start_sim --latency-ms 30000 --failure-rate 0 --decline-rate 0
example_config "$WORK/service.yaml"
start_sluice "$WORK/service.yaml"
code=$(curl -s -o "$WORK/order2.json" -w '%{http_code}' \
    -H 'Content-Type: application/json' \
    -d '{"sku":"A-1","qty":1,"amount":5,"customer":"bob"}' \
    "$GW/orders" || true)
[ "$code" = 202 ] || fail "order not accepted: $code"
charging() {
    [ "$(metric '^sluice_handlers_in_flight\{channel="orders.validated",group="payment"')" \
        -ge 1 ]
}
wait_for 10 charging || fail "the payment handler did not start"

kill -INT "$RUN_PID"
draining() { grep -q 'Ctrl-C again to force' "$WORK/run.log"; }
wait_for 5 draining || fail "no drain message after the first SIGINT"
check "the first SIGINT says how long the drain may take" \
    grep -q '^sluice: draining, up to 25 s (Ctrl-C again to force)$' \
    "$WORK/run.log"
check "still draining: the payment holds it" kill -0 "$RUN_PID"
t0=$(now_ms)
kill -INT "$RUN_PID"
wait_for 3 sluice_exited || fail "still running 3 s after the second SIGINT"
force_ms=$(($(now_ms) - t0))
rc=0
wait "$RUN_PID" || rc=$?
RUN_PID=
check "a forced exit has status 130 (got $rc)" [ "$rc" -eq 130 ]
check "the forced exit says so" \
    grep -q '^sluice: second SIGINT: exiting now' "$WORK/run.log"
note "second SIGINT: exit $rc after $force_ms ms"
echo "$NAME: $PASSED passed, 0 failed"
