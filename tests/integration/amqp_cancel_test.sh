#!/bin/sh
# RabbitMQ consumer-cancel notifications: the group's queue is
# deleted out from under a running consumer; the broker cancels the
# consumer (basic.cancel); the engine declares the queue again and goes
# on consuming new events, without the consumer process doing anything.
#
#   1. a consumer process runs; N events ("a-*") are published and handled;
#   2. the queue is deleted by an operator (amqp_tool delete-queue: raw
#      rabbitmq-c, not sluice);
#   3. N more events ("b-*") are published (refused as unroutable until the
#      queue is back; the producer retries); every confirmed one must be
#      handled by the same consumer process, whose log must tell that the
#      broker cancelled it and that it subscribed again.
#
# usage: amqp_cancel_test.sh AMQP_TOOL SOURCE_DIR [N]
# Needs the broker of scripts/with-brokers.sh (RABBITMQ_PORT); fails
# without it.
set -eu

TOOL=$1
SRC=$2
N=${3:-2000}
PORT=${RABBITMQ_PORT:-15673}
BROKERS="$SRC/scripts/brokers.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-cancel.XXXXXX")
PIDS=

cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    [ "${SLUICE_KEEP:-0}" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "amqp_cancel_test: $*"; }
fail() {
    say "FAIL: $*" >&2
    for f in "$WORK"/*.log; do
        [ -f "$f" ] && { echo "---- $f" >&2; tail -n 8 "$f" >&2; }
    done
    exit 1
}

if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
    fail "RabbitMQ is not running (run under scripts/with-brokers.sh)"
fi
[ -x "$TOOL" ] || fail "$TOOL not built"

. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

# Confirmed ids ($1) all among the handled ones.
all_handled() {
    sort -u "$1" >"$WORK/want"
    sort -u "$WORK/handled.txt" >"$WORK/got"
    [ "$(comm -23 "$WORK/want" "$WORK/got" | wc -l)" -eq 0 ]
}
consumer_alive() { kill -0 "$cons"; }

ns=cancel-$$
url="amqp://guest:guest@127.0.0.1:$PORT?ns=$ns"
queue="sluice/$ns/cancel/workers"
"$TOOL" declare "$url" cancel workers
"$TOOL" consume "$url" cancel workers "$WORK/handled.txt" \
    >"$WORK/consumer.out" 2>"$WORK/consumer.log" &
cons=$!
PIDS="$PIDS $cons"

"$TOOL" produce "$url" cancel "$N" "$WORK/a.txt" a- >"$WORK/a.log" 2>&1 ||
    fail "producing a-*"
wait_for 60 all_handled "$WORK/a.txt" || fail "a-* not all handled"
say "1: $N events handled"

"$TOOL" delete-queue "$url" "$queue" || fail "cannot delete $queue"
"$TOOL" produce "$url" cancel "$N" "$WORK/b.txt" b- >"$WORK/b.log" 2>&1 ||
    fail "producing b-*: $(cat "$WORK/b.log")"
wait_for 60 all_handled "$WORK/b.txt" ||
    fail "b-*: $(comm -23 "$WORK/want" "$WORK/got" | wc -l) confirmed" \
        "events never handled after the queue was deleted"
consumer_alive || fail "the consumer process died"
grep -q "cancelled the consumer of group 'workers'" "$WORK/consumer.log" ||
    fail "no cancel in the consumer's log"
grep -q "subscribed again to queue $queue" "$WORK/consumer.log" ||
    fail "no resubscription in the consumer's log"
errors=$(sed -n 's/^produce: confirmed [0-9]* errors \([0-9]*\)$/\1/p' \
    "$WORK/b.log")
say "2: queue deleted under the consumer; it was cancelled, declared the" \
    "queue again and handled all $N new events (the producer saw" \
    "${errors:-0} refusals meanwhile)"
kill -TERM "$cons"
wait "$cons" || fail "the consumer did not stop cleanly"
PIDS=
say "ok"
