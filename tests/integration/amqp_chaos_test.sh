#!/bin/sh
# RabbitMQ chaos test: zero loss when the broker or a consumer dies.
#
# (a) broker: two consumer processes run while a producer process publishes
#     EVENTS events; once a quarter of them is confirmed the broker's VM is
#     SIGKILLed, left down for a second and restarted on its data
#     (brokers.sh kill / restart-keep-data). The producer must have seen
#     errors ("full", unavailable, unknown outcome) and finish by itself; the
#     consumers must reconnect by themselves and go on; every event whose
#     publish was confirmed must be processed.
# (b) consumer: three consumer processes; once a quarter of the events is
#     processed one of them is SIGKILLed: the others must go on and every
#     confirmed event must be processed (what the dead one held unacked is
#     redelivered to them).
#
# The queues of (a) are created fresh each round; the broker is killed only
# once it has written them to disk (brokers.sh await-durable): RabbitMQ
# 3.10 loses a quorum queue SIGKILLed within about a second of its
# creation, whatever the client does (docs/engines/rabbitmq.md, "Chaos").
#
# usage: amqp_chaos_test.sh AMQP_TOOL SOURCE_DIR [ROUNDS] [EVENTS_A] [EVENTS_B]
#   ROUNDS rounds of (a), then ROUNDS of (b) (default 5, 20000 events
#   each); docs/engines/rabbitmq.md reports 5 rounds of 100000:
#     sh tests/integration/amqp_chaos_test.sh build/tests/amqp_tool . \
#         5 100000 100000
# Needs the broker of scripts/with-brokers.sh (RABBITMQ_PORT, ... as for
# brokers.sh); fails without it. SLUICE_CHAOS_KEEP=1 keeps the work files
# (ids confirmed and handled, logs) for a post-mortem.
set -eu

TOOL=$1
SRC=$2
ROUNDS=${3:-5}
EVENTS_A=${4:-20000}
EVENTS_B=${5:-20000}
PORT=${RABBITMQ_PORT:-15673}
BROKERS="$SRC/scripts/brokers.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-chaos.XXXXXX")
PIDS=
passed=0
failed=0

cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    # Leave the broker running for the tests after this one.
    if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
        sh "$BROKERS" restart-keep-data rabbitmq >/dev/null 2>&1 || true
    fi
    if [ "${SLUICE_CHAOS_KEEP:-0}" = 1 ]; then
        echo "amqp_chaos_test: files kept in $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "amqp_chaos_test: $*"; }
fail_round() {
    say "FAIL: $*" >&2
    failed=$((failed + 1))
}

if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
    say "FAIL: RabbitMQ is not running (run under scripts/with-brokers.sh)" >&2
    exit 1
fi
[ -x "$TOOL" ] || { say "FAIL: $TOOL not built" >&2; exit 1; }

lines() { if [ -f "$1" ]; then wc -l <"$1" | tr -d ' '; else echo 0; fi; }

# Lines over several files.
total() {
    n=0
    for f in "$@"; do n=$((n + $(lines "$f"))); done
    echo "$n"
}

. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

# Confirmed ids missing from the processed files ($1 = round dir).
missing() {
    # c1.txt, c2.txt...: the consumers' files (not confirmed.txt).
    cat "$1"/c[0-9]*.txt 2>/dev/null | sort -u >"$1/processed.sorted"
    sort -u "$1/confirmed.txt" >"$1/confirmed.sorted"
    comm -23 "$1/confirmed.sorted" "$1/processed.sorted" | wc -l | tr -d ' '
}
none_missing() { [ "$(missing "$1")" -eq 0 ]; }
at_least() { [ "$(total "$@")" -ge "$want" ]; }
producer_done() { ! kill -0 "$prod" 2>/dev/null; }

start_consumer() { # DIR URL NAME
    "$TOOL" consume "$2" chaos workers "$1/$3.txt" >"$1/$3.log" 2>&1 &
    last=$!
    PIDS="$PIDS $last"
}

stop_all() { # PIDS...
    for p in "$@"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "$@"; do wait "$p" 2>/dev/null || true; done
    PIDS=
}

round_broker() { # ROUND
    d="$WORK/a$1"
    mkdir -p "$d"
    ns=chaos-a$1-$$
    url="amqp://guest:guest@127.0.0.1:$PORT?ns=$ns"
    "$TOOL" declare "$url" chaos workers
    # The crash comes once the new queues are on the broker's disk, as
    # any queue declared more than a few seconds before is: RabbitMQ 3.10
    # loses a quorum queue created within about a second of a SIGKILL
    # (brokers.sh, rabbitmq_await_durable).
    if ! sh "$BROKERS" await-durable rabbitmq "sluice/$ns/chaos/workers" \
            "sluice/$ns/chaos.workers.dlq/dlq"; then
        fail_round "a$1: the broker did not write the new queues to disk"
        return
    fi
    start_consumer "$d" "$url" c1
    c1=$last
    start_consumer "$d" "$url" c2
    c2=$last
    "$TOOL" produce "$url" chaos "$EVENTS_A" "$d/confirmed.txt" \
        >"$d/producer.log" 2>&1 &
    prod=$!
    PIDS="$PIDS $prod"
    want=$((EVENTS_A / 4))
    if ! wait_for 60 at_least "$d/confirmed.txt"; then
        fail_round "a$1: producer stuck before the kill"
        stop_all $c1 $c2 $prod
        return
    fi
    sh "$BROKERS" kill rabbitmq >/dev/null
    at_kill=$(total "$d/c1.txt" "$d/c2.txt")
    sleep 1
    if ! sh "$BROKERS" restart-keep-data rabbitmq >"$d/restart.log" 2>&1; then
        cat "$d/restart.log" >&2
        fail_round "a$1: the broker did not restart"
        stop_all $c1 $c2 $prod
        return
    fi
    if ! wait_for 150 producer_done || ! wait "$prod"; then
        fail_round "a$1: the producer did not finish: $(cat "$d/producer.log")"
        stop_all $c1 $c2 $prod
        return
    fi
    errors=$(sed -n 's/^produce: confirmed [0-9]* errors \([0-9]*\)$/\1/p' \
        "$d/producer.log")
    if ! wait_for 90 none_missing "$d"; then
        fail_round "a$1: $(missing "$d") confirmed events never processed"
        stop_all $c1 $c2
        return
    fi
    after=$(($(total "$d/c1.txt" "$d/c2.txt") - at_kill))
    alive=0
    for p in $c1 $c2; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
    stop_all $c1 $c2
    if [ "${errors:-0}" -eq 0 ]; then
        fail_round "a$1: the producer saw no error while the broker was down"
    elif [ "$alive" -ne 2 ] || [ "$after" -le 0 ]; then
        fail_round "a$1: consumers did not resume ($alive alive, $after after)"
    else
        say "a$1 ok: broker killed after $want confirmed; producer saw" \
            "$errors errors and finished; $(sort -u "$d/confirmed.txt" |
            wc -l | tr -d ' ') confirmed, all processed" \
            "($(total "$d/c1.txt" "$d/c2.txt") handled, $after after the" \
            "restart)"
        passed=$((passed + 1))
    fi
}

round_consumer() { # ROUND
    d="$WORK/b$1"
    mkdir -p "$d"
    url="amqp://guest:guest@127.0.0.1:$PORT?ns=chaos-b$1-$$"
    "$TOOL" declare "$url" chaos workers
    start_consumer "$d" "$url" c1
    c1=$last
    start_consumer "$d" "$url" c2
    c2=$last
    start_consumer "$d" "$url" c3
    c3=$last
    "$TOOL" produce "$url" chaos "$EVENTS_B" "$d/confirmed.txt" \
        >"$d/producer.log" 2>&1 &
    prod=$!
    PIDS="$PIDS $prod"
    want=$((EVENTS_B / 4))
    if ! wait_for 60 at_least "$d/c1.txt" "$d/c2.txt" "$d/c3.txt" ||
            [ "$(lines "$d/c1.txt")" -eq 0 ]; then
        fail_round "b$1: consumers stuck before the kill"
        stop_all $c1 $c2 $c3 $prod
        return
    fi
    kill -KILL "$c1"
    wait "$c1" 2>/dev/null || true
    at_kill=$(total "$d/c2.txt" "$d/c3.txt")
    if ! wait_for 120 producer_done || ! wait "$prod"; then
        fail_round "b$1: the producer did not finish: $(cat "$d/producer.log")"
        stop_all $c2 $c3 $prod
        return
    fi
    if ! wait_for 90 none_missing "$d"; then
        fail_round "b$1: $(missing "$d") confirmed events never processed"
        stop_all $c2 $c3
        return
    fi
    after=$(($(total "$d/c2.txt" "$d/c3.txt") - at_kill))
    stop_all $c2 $c3
    # Handled by the dead consumer but not acked yet: redelivered.
    again=$(sort "$d/c1.txt" | uniq | sort - "$d/c2.txt" "$d/c3.txt" |
        uniq -d | wc -l | tr -d ' ')
    if [ "$after" -le 0 ]; then
        fail_round "b$1: the other consumers did not go on"
    else
        say "b$1 ok: consumer killed after $(lines "$d/c1.txt") handled;" \
            "the others handled $after more ($again of the dead one's" \
            "again); all $EVENTS_B confirmed events processed"
        passed=$((passed + 1))
    fi
}

r=1
while [ "$r" -le "$ROUNDS" ]; do
    round_broker "$r"
    r=$((r + 1))
done
r=1
while [ "$r" -le "$ROUNDS" ]; do
    round_consumer "$r"
    r=$((r + 1))
done
echo "amqp_chaos_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
