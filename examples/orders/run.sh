#!/bin/sh
# `make run`: the order-processing system on the embedded engine, with the
# payment provider simulator, in the foreground. Ctrl-C drains and stops
# both.
set -eu
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
mkdir -p data/orders

"$BUILD/examples/payment-sim" --listen 127.0.0.1:8090 --latency-ms 5 \
    --failure-rate 0.02 --decline-rate 0.05 > data/orders/payment-sim.log 2>&1 &
SIM=$!
trap 'kill -TERM $SIM 2>/dev/null || true' EXIT INT TERM

cat <<TXT

  sluice orders — HTTP gateway on :8080, admin on :9090, embedded engine
  (SQLite store in ./data/orders), payment provider simulator on :8090
  (5% of orders declined, 2% of calls failing transiently).

  In another terminal:

    # place an order: 202 once the engine has it, with a status URL
    curl -si -H 'Content-Type: application/json' \\
         -d '{"sku":"A-1","qty":2,"amount":19.90,"customer":"ada"}' \\
         http://127.0.0.1:8080/orders

    # follow it: pending -> processing -> completed (or failed + reason)
    curl -s http://127.0.0.1:8080/status/<id>

    # bad input is refused with problem+json and publishes nothing
    curl -si -H 'Content-Type: application/json' -d '{"sku":"A-1","qty":0}' \\
         http://127.0.0.1:8080/orders

    # retries are safe: the same Idempotency-Key gets the first answer
    curl -si -H 'Idempotency-Key: k-1' -H 'Content-Type: application/json' \\
         -d '{"sku":"B-2","qty":1,"amount":5,"customer":"bob"}' \\
         http://127.0.0.1:8080/orders

    # metrics, readiness, the autoscaling signal, the payment provider
    curl -s http://127.0.0.1:9090/metrics | grep ^orders_
    curl -s http://127.0.0.1:9090/readyz
    curl -s 'http://127.0.0.1:9090/scale?group=payment'
    curl -s http://127.0.0.1:8090/stats

    # load: 30 s of orders from wrk
    wrk -t2 -c32 -d30s -s bench/wrk_orders.lua http://127.0.0.1:8080/orders

  Ctrl-C drains in-flight work and exits 0.

TXT
"$BUILD/sluice" run examples/orders/service.yaml
