#!/bin/sh
# The payment provider simulator: a charge is made once per Idempotency-Key,
# a repeat returns the same charge without charging again, failures come at
# about the configured rate, bad input gets 400, SIGTERM exits 0.
#
# usage: payment_sim_test.sh PAYMENT_SIM
set -eu
SIM=$1
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-payment-sim.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
fail() {
    echo "payment_sim_test: FAIL: $*" >&2
    exit 1
}
command -v curl >/dev/null || fail "needs curl"
command -v jq >/dev/null || fail "needs jq"

# Start the simulator on a free port; sets PID and BASE.
start() {
    "$SIM" --listen 127.0.0.1:0 "$@" >"$WORK/out" 2>"$WORK/err" &
    PID=$!
    i=0
    while ! grep -q "listening on" "$WORK/out" 2>/dev/null; do
        i=$((i + 1))
        [ "$i" -le 200 ] || fail "simulator did not start: $(cat "$WORK/err")"
        sleep 0.05
    done
    BASE="http://$(sed -n 's/^payment-sim listening on //p' "$WORK/out")"
}

# Stop with SIGTERM; it must exit 0.
stop() {
    kill -TERM "$PID"
    rc=0
    wait "$PID" || rc=$?
    PID=
    [ "$rc" -eq 0 ] || fail "exit status $rc after SIGTERM"
}

# POST a charge; prints "<status> <body>".
charge() {
    curl -s -o "$WORK/body" -w '%{http_code}' -X POST \
        -H "Idempotency-Key: $1" -H 'Content-Type: application/json' \
        --data "$2" "$BASE/charges"
    printf ' %s\n' "$(cat "$WORK/body")"
}

stat() {
    curl -sf "$BASE/stats" | jq -r ".$1"
}

# ---- a charge, and its repeat --------------------------------------------
start --latency-ms 5 --failure-rate 0 --seed 7

out=$(charge key-1 '{"order_id":"o-1","amount":42.5}')
[ "${out%% *}" = 201 ] || fail "first charge: $out"
id1=$(echo "${out#* }" | jq -r .charge_id)
[ -n "$id1" ] && [ "$id1" != null ] || fail "no charge_id: $out"

out=$(charge key-1 '{"order_id":"o-1","amount":42.5}')
[ "${out%% *}" = 201 ] || fail "repeat: $out"
id2=$(echo "${out#* }" | jq -r .charge_id)
[ "$id1" = "$id2" ] || fail "repeat got another charge: $id1 vs $id2"

[ "$(stat charges)" = 1 ] || fail "repeat was charged: $(curl -s "$BASE/stats")"
[ "$(stat duplicates_absorbed)" = 1 ] || fail "duplicate not counted"
[ "$(stat keys)" = 1 ] || fail "keys"
[ "$(stat max_charges_per_key)" = 1 ] || fail "max_charges_per_key"

# Another key is another charge.
out=$(charge key-2 '{"order_id":"o-2","amount":10}')
[ "${out%% *}" = 201 ] || fail "second key: $out"
[ "$(stat charges)" = 2 ] || fail "second key not charged"

# ---- bad input --------------------------------------------------------------
out=$(charge key-3 '{"order_id":')
[ "${out%% *}" = 400 ] || fail "bad JSON: $out"
out=$(charge key-3 '{"order_id":7,"amount":1}')
[ "${out%% *}" = 400 ] || fail "wrong type: $out"
out=$(charge key-3 '{"order_id":"o-3"}')
[ "${out%% *}" = 400 ] || fail "missing amount: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST \
    --data '{"order_id":"o-4","amount":1}' "$BASE/charges")
[ "$code" = 400 ] || fail "no Idempotency-Key: $code"
out=$(charge key-1 '{"order_id":"o-9","amount":42.5}')
[ "${out%% *}" = 422 ] || fail "key reused for another order: $out"
code=$(curl -s -o /dev/null -w '%{http_code}' "$BASE/nowhere")
[ "$code" = 404 ] || fail "unknown route: $code"
[ "$(stat charges)" = 2 ] || fail "bad input was charged"
stop

# ---- failures at the configured rate ----------------------------------------
# 200 charges at 10%: about 20 fail. The bound is wide (binomial: 20 +- 4
# is one standard deviation) and counts answers, never timing.
start --latency-ms 0 --failure-rate 0.1 --seed 42
failed=0
ok=0
n=0
while [ "$n" -lt 200 ]; do
    out=$(charge "rate-$n" "{\"order_id\":\"r-$n\",\"amount\":1}")
    case "${out%% *}" in
    201) ok=$((ok + 1)) ;;
    503) failed=$((failed + 1)) ;;
    *) fail "unexpected answer: $out" ;;
    esac
    n=$((n + 1))
done
[ "$failed" -ge 5 ] && [ "$failed" -le 40 ] ||
    fail "$failed of 200 failed at rate 0.1"
[ "$(stat failures_injected)" = "$failed" ] || fail "failures_injected"
[ "$(stat charges)" = "$ok" ] || fail "a failed request was charged"

# A 503 carries Retry-After: 1, and a retry with the same key charges once.
hdr=$(curl -s -D - -o /dev/null -X POST -H 'Idempotency-Key: rate-x' \
    --data '{"order_id":"x","amount":1}' "$BASE/charges" | tr -d '\r')
tries=0
while ! echo "$hdr" | grep -q '^HTTP/1.1 503'; do
    tries=$((tries + 1))
    [ "$tries" -le 200 ] || fail "no 503 in 200 tries"
    hdr=$(curl -s -D - -o /dev/null -X POST -H "Idempotency-Key: ra-$tries" \
        --data "{\"order_id\":\"ra-$tries\",\"amount\":1}" "$BASE/charges" |
        tr -d '\r')
done
echo "$hdr" | grep -qi '^Retry-After: 1$' || fail "503 without Retry-After: $hdr"
[ "$(stat max_charges_per_key)" = 1 ] || fail "a key was charged twice"
stop

echo "payment_sim_test: ok ($failed of 200 failed)"
