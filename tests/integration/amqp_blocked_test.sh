#!/bin/sh
# RabbitMQ flow control: while the broker blocks publishers
# (connection.blocked, here from a memory alarm), the producer reports
# "full" at once instead of hanging; once the alarm clears it publishes
# again by itself and every event is confirmed.
#
#   1. declare a channel and a group;
#   2. a steady producer process publishes N events, one every 10 ms
#      (amqp_tool produce, AMQP_TOOL_PACE_MS), retrying refusals; N stays
#      below its window (500), so a refusal as full can only come from the
#      engine, not from the producer's own window;
#   3. half a second in, raise the alarm (brokers.sh alarm: memory high
#      watermark 0); from one second after it until BLOCKED_S seconds
#      after it, nothing more may be confirmed;
#   4. clear the alarm: the producer must finish, every id confirmed, and
#      it must have seen SL_FULL refusals (the engine's blocked state, not
#      a silent wait).
#
# usage: amqp_blocked_test.sh AMQP_TOOL SOURCE_DIR [N] [BLOCKED_S]
# Needs the broker of scripts/with-brokers.sh (RABBITMQ_PORT, ...); fails
# without it. The alarm blocks every publisher of that broker for a few
# seconds, hence label chaos.
set -eu

TOOL=$1
SRC=$2
N=${3:-400}
BLOCKED_S=${4:-3}
PORT=${RABBITMQ_PORT:-15673}
BROKERS="$SRC/scripts/brokers.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-blocked.XXXXXX")
url="amqp://guest:guest@127.0.0.1:$PORT?ns=blocked-$$"
PID=
alarm=0

cleanup() {
    if [ "$alarm" = 1 ]; then
        sh "$BROKERS" clear-alarm rabbitmq >/dev/null 2>&1 || true
    fi
    [ -n "$PID" ] && kill -KILL "$PID" 2>/dev/null || true
    for q in blocked/workers blocked.workers.dlq/dlq; do
        "$TOOL" delete-queue "$url" "sluice/blocked-$$/$q" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "amqp_blocked_test: $*"; }
fail() {
    say "FAIL: $*" >&2
    [ -f "$WORK/produce.out" ] && tail -n 5 "$WORK/produce.out" >&2
    exit 1
}
lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
    fail "RabbitMQ is not running (run under scripts/with-brokers.sh)"
fi
[ -x "$TOOL" ] || fail "$TOOL not built"

"$TOOL" declare "$url" blocked workers >/dev/null ||
    fail "declare failed"
AMQP_TOOL_PACE_MS=10 "$TOOL" produce "$url" blocked "$N" \
    "$WORK/confirmed.txt" >"$WORK/produce.out" 2>&1 &
PID=$!
sleep 0.5
sh "$BROKERS" alarm rabbitmq || fail "could not raise the memory alarm"
alarm=1
sleep 1
kill -0 "$PID" 2>/dev/null || fail "the producer ended while blocked"
before=$(lines "$WORK/confirmed.txt")
sleep $((BLOCKED_S - 1))
kill -0 "$PID" 2>/dev/null || fail "the producer ended while blocked"
after=$(lines "$WORK/confirmed.txt")
[ "$after" -eq "$before" ] ||
    fail "$((after - before)) publishes confirmed while the broker blocked" \
        "publishers"
[ "$after" -lt "$N" ] || fail "all published before the alarm (too fast)"

sh "$BROKERS" clear-alarm rabbitmq || fail "could not clear the alarm"
alarm=0
i=0
while kill -0 "$PID" 2>/dev/null; do
    i=$((i + 1))
    [ "$i" -le 600 ] || fail "the producer did not finish 60 s after the alarm cleared"
    sleep 0.1
done
wait "$PID" || fail "the producer failed"
PID=
got=$(sort -u "$WORK/confirmed.txt" | wc -l | tr -d ' ')
[ "$got" -eq "$N" ] || fail "$got of $N ids confirmed"
full=$(sed -n 's/^produce: full \([0-9]*\)$/\1/p' "$WORK/produce.out")
[ "${full:-0}" -gt 0 ] ||
    fail "no SL_FULL refusal while blocked (the producer waited silently)"
say "ok: $before confirmed before the block, none while blocked," \
    "${full} refusals as full, then all $N confirmed after the alarm cleared"
