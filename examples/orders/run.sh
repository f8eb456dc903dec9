#!/bin/sh
# `make run`: the order-processing system on the embedded engine, with the
# payment provider simulator, in the foreground. Ctrl-C (or SIGTERM to this
# script, or to make) drains and stops both; a second Ctrl-C stops at once.
#
# usage: run.sh [BUILD_DIR]
# Ports and data directory (defaults 8080, 9090, 8090, data/orders):
#   ORDERS_GATEWAY_PORT, ORDERS_ADMIN_PORT, ORDERS_SIM_PORT, ORDERS_DATA
#
# The script ends by exec-ing `sluice run`: signals go straight to it, once,
# and its exit status is the script's. The simulator, started here with
# --exit-with-parent, stops when sluice exits, however it exits.
set -eu
BUILD=$(cd "${1:-build}" && pwd)
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
GW_PORT=${ORDERS_GATEWAY_PORT:-8080}
ADMIN_PORT=${ORDERS_ADMIN_PORT:-9090}
SIM_PORT=${ORDERS_SIM_PORT:-8090}
DATA=${ORDERS_DATA:-data/orders}
EXAMPLE=examples/orders/service.yaml
mkdir -p "$DATA"

# The example as it is, or a copy in the data directory with the ports, the
# data directory and the plugin's build directory replaced; each rewrite is
# checked, so an edited example fails here rather than running elsewhere.
CONFIG=$EXAMPLE
if [ "$GW_PORT:$ADMIN_PORT:$SIM_PORT:$DATA:$BUILD" != \
    "8080:9090:8090:data/orders:$ROOT/build" ]; then
    CONFIG=$DATA/service.yaml
    sed -e "s#listen: 127\.0\.0\.1:8080\$#listen: 127.0.0.1:$GW_PORT#" \
        -e "s#listen: 127\.0\.0\.1:9090\$#listen: 127.0.0.1:$ADMIN_PORT#" \
        -e "s#url: http://127\.0\.0\.1:8090/#url: http://127.0.0.1:$SIM_PORT/#" \
        -e "s#url: embedded:\./data/orders\$#url: embedded:$DATA#" \
        -e "s#path: \./build/examples/liborders\.so\$#path: $BUILD/examples/liborders.so#" \
        "$EXAMPLE" >"$CONFIG"
    for want in "listen: 127.0.0.1:$GW_PORT" "listen: 127.0.0.1:$ADMIN_PORT" \
        "url: http://127.0.0.1:$SIM_PORT/charges" "url: embedded:$DATA" \
        "path: $BUILD/examples/liborders.so"; do
        grep -qF "$want" "$CONFIG" || {
            echo "run.sh: $EXAMPLE changed: cannot set '$want'" >&2
            exit 2
        }
    done
fi

"$BUILD/examples/payment-sim" --listen "127.0.0.1:$SIM_PORT" \
    --latency-ms 5 --failure-rate 0.02 --decline-rate 0.05 \
    --exit-with-parent >"$DATA/payment-sim.log" 2>&1 &
SIM=$!
i=0
until grep -q "listening on" "$DATA/payment-sim.log" 2>/dev/null; do
    if ! kill -0 "$SIM" 2>/dev/null || [ "$i" -ge 100 ]; then
        echo "run.sh: the payment simulator did not start:" >&2
        cat "$DATA/payment-sim.log" >&2
        kill -TERM "$SIM" 2>/dev/null || true
        exit 1
    fi
    i=$((i + 1))
    sleep 0.05
done

cat <<TXT

  sluice orders — HTTP gateway on :$GW_PORT, admin on :$ADMIN_PORT, embedded engine
  (SQLite store in $DATA), payment provider simulator on :$SIM_PORT
  (5% of orders declined, 2% of calls failing transiently).

  In another terminal:

    # place an order: 202 once the engine has it, with a status URL
    curl -si -H 'Content-Type: application/json' \\
         -d '{"sku":"A-1","qty":2,"amount":19.90,"customer":"ada"}' \\
         http://127.0.0.1:$GW_PORT/orders

    # follow it: pending -> processing -> completed (or failed + reason)
    curl -s http://127.0.0.1:$GW_PORT/status/<id>

    # bad input is refused with problem+json and publishes nothing
    curl -si -H 'Content-Type: application/json' -d '{"sku":"A-1","qty":0}' \\
         http://127.0.0.1:$GW_PORT/orders

    # retries are safe: the same Idempotency-Key gets the first answer
    curl -si -H 'Idempotency-Key: k-1' -H 'Content-Type: application/json' \\
         -d '{"sku":"B-2","qty":1,"amount":5,"customer":"bob"}' \\
         http://127.0.0.1:$GW_PORT/orders

    # metrics, readiness, the autoscaling signal, the payment provider
    curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep ^orders_
    curl -s http://127.0.0.1:$ADMIN_PORT/readyz
    curl -s 'http://127.0.0.1:$ADMIN_PORT/scale?group=payment'
    curl -s http://127.0.0.1:$SIM_PORT/stats

    # load: 30 s of orders from wrk
    wrk -t2 -c32 -d30s -s bench/wrk_orders.lua http://127.0.0.1:$GW_PORT/orders

  Ctrl-C drains in-flight work and exits 0; a second Ctrl-C stops at once.

TXT
exec "$BUILD/sluice" run "$CONFIG"
