#!/bin/sh
# RabbitMQ heartbeats: a broker that stops answering without
# closing its sockets is noticed, and the engine recovers when it answers
# again.
#
# The broker VM is frozen with SIGSTOP (brokers.sh freeze) while two
# engines with heartbeat=H are connected:
#   idle   - nothing to send: rabbitmq-c must see that no heartbeat came
#            for two intervals;
#   flood  - publishing 64 KiB events as fast as it may: its I/O thread
#            blocks in a write the frozen broker never reads, which only
#            the engine's watchdog can end.
# Both must report not ready (sl_engine_is_ready, what /readyz answers)
# within 3 intervals (+ 0.5 s for a loaded machine; expected: idle about
# 2 intervals, flood 1 to 2), then, after SIGCONT
# (brokers.sh thaw), be ready again by themselves; the flood must go on
# publishing (confirms after the thaw).
#
# usage: amqp_heartbeat_test.sh AMQP_TOOL SOURCE_DIR [HEARTBEAT_S]
# Needs the broker of scripts/with-brokers.sh (RABBITMQ_PORT, ...); fails
# without it. Freezes that broker for a few seconds.
set -eu

TOOL=$1
SRC=$2
HB=${3:-2}
PORT=${RABBITMQ_PORT:-15673}
BROKERS="$SRC/scripts/brokers.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-hb.XXXXXX")
PIDS=
frozen=0
base="amqp://guest:guest@127.0.0.1:$PORT?ns=hb-$$"

cleanup() {
    if [ "$frozen" = 1 ]; then
        sh "$BROKERS" thaw rabbitmq >/dev/null 2>&1 || true
    fi
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    # The flood's events are never consumed: do not leave them behind.
    for q in hb/workers hb.workers.dlq/dlq; do
        "$TOOL" delete-queue "$base" "sluice/hb-$$/$q" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "amqp_heartbeat_test: $*"; }
fail() {
    say "FAIL: $*" >&2
    for f in "$WORK"/*.out "$WORK"/*.log; do
        [ -f "$f" ] && { echo "---- $f" >&2; tail -n 5 "$f" >&2; }
    done
    exit 1
}

if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
    fail "RabbitMQ is not running (run under scripts/with-brokers.sh)"
fi
[ -x "$TOOL" ] || fail "$TOOL not built"

now_ms() { date +%s%3N; }

. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

# The last state line of a watcher: "ready T" or "unready T".
state() { grep -E '^(un)?ready ' "$WORK/$1.out" 2>/dev/null | tail -n 1; }
is_state() { state "$1" | grep -q "^$2 "; }
since() { state "$1" | cut -d' ' -f2; }

url="$base&heartbeat=$HB"
"$TOOL" declare "$base" hb workers

for w in idle flood; do
    if [ "$w" = idle ]; then
        "$TOOL" watch "$url" >"$WORK/$w.out" 2>"$WORK/$w.log" &
    else
        "$TOOL" watch "$url" hb >"$WORK/$w.out" 2>"$WORK/$w.log" &
    fi
    PIDS="$PIDS $!"
done
for w in idle flood; do
    wait_for 20 is_state "$w" ready || fail "$w: never ready"
done
sleep 0.5 # the flood fills the sockets and the broker's queue

t0=$(now_ms)
sh "$BROKERS" freeze rabbitmq
frozen=1
limit=$((3 * HB * 1000 + 500))
for w in idle flood; do
    if ! wait_for $((3 * HB + 10)) is_state "$w" unready; then
        fail "$w: still ready $(($(now_ms) - t0)) ms after the freeze"
    fi
    took=$(($(since "$w") - t0))
    say "$w: not ready ${took} ms after the freeze (heartbeat ${HB} s)"
    [ "$took" -le "$limit" ] ||
        fail "$w: noticed after ${took} ms, more than ${limit} ms"
done
grep -q "sent nothing for two heartbeat intervals" "$WORK/idle.log" ||
    fail "idle: no missed-heartbeat message in its log"
grep -q "made no progress" "$WORK/flood.log" ||
    fail "flood: the watchdog did not end the stuck write"

sleep 1
sh "$BROKERS" thaw rabbitmq
frozen=0
t1=$(now_ms)
for w in idle flood; do
    # Reconnect backoff reaches up to 10 s; a few attempts more.
    wait_for 40 is_state "$w" ready ||
        fail "$w: not ready again 40 s after the thaw"
    say "$w: ready again $(($(since "$w") - t1)) ms after the thaw"
done
for p in $PIDS; do kill -TERM "$p" 2>/dev/null || true; done
for p in $PIDS; do wait "$p" 2>/dev/null || true; done
PIDS=
summary=$(grep '^published' "$WORK/flood.out" || true)
confirmed=$(echo "$summary" | sed -n 's/.* confirmed \([0-9]*\) .*/\1/p')
[ "${confirmed:-0}" -gt 0 ] || fail "flood: nothing confirmed ($summary)"
say "ok: flood $summary"
