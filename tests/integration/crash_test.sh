#!/bin/sh
# Crash test (semantics 5 and 7 of docs/semantics.md): publish N events, SIGKILL
# `sluice run` while it processes them, restart it, and check that every
# event was processed, none was lost, and — for the idempotent group whose
# effects commit with its inbox — none was processed twice.
#
# usage: crash_test.sh SLUICE_BINARY [ROUNDS] [EVENTS]
set -eu

SLUICE=$1
ROUNDS=${2:-5}
EVENTS=${3:-20000}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-crash.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

fail() {
    echo "crash_test: FAIL: $*" >&2
    exit 1
}

count() { # count SQL
    sqlite3 -cmd ".timeout 5000" "$WORK/data/inbox.db" "$1" 2>/dev/null || echo 0
}

cat > "$WORK/service.yaml" <<YAML
service:
  name: crash-test
engine:
  url: embedded:$WORK/data
  sync: normal
channels:
  - name: crash.events
consumers:
  - channel: crash.events
    group: exactly-once
    prefetch: 64
    concurrency: 4
    idempotency: true
    handler:
      kind: record
  - channel: crash.events
    group: at-least-once
    prefetch: 64
    concurrency: 4
    handler:
      kind: append
      file: $WORK/appended.txt
drain_timeout: 5s
admin:
  enabled: false
YAML

. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

processed_at_least() {
    [ "$(count 'SELECT count(DISTINCT id) FROM processed')" -ge "$1" ]
}

appended_all() {
    [ -f "$WORK/appended.txt" ] &&
        [ "$(sort -u "$WORK/appended.txt" | wc -l)" -ge "$EVENTS" ]
}

round=1
while [ "$round" -le "$ROUNDS" ]; do
    rm -rf "$WORK/data" "$WORK/appended.txt" "$WORK/ids.txt"
    # Declare the topology, then publish every event before the service
    # runs, so the kill lands while it works through a backlog.
    "$SLUICE" run -q "$WORK/service.yaml" 2>"$WORK/run0.log" &
    PID=$!
    wait_for 10 test -f "$WORK/data/inbox.db" || fail "service did not start"
    sleep 0.2
    kill -TERM "$PID"
    wait "$PID" || fail "first start did not exit 0"
    PID=
    "$SLUICE" publish -e "embedded:$WORK/data" -C crash.events \
        -i "evt-$round" -n "$EVENTS" '{"k":1}' > "$WORK/ids.txt" 2>/dev/null ||
        fail "publish failed"
    [ "$(wc -l < "$WORK/ids.txt")" -eq "$EVENTS" ] || fail "publish count"

    # Run, and SIGKILL it a third of the way through.
    "$SLUICE" run -q "$WORK/service.yaml" 2>"$WORK/run1.log" &
    PID=$!
    wait_for 60 processed_at_least $((EVENTS / 3)) ||
        fail "round $round: no progress before the kill"
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    PID=
    at_kill=$(count 'SELECT count(DISTINCT id) FROM processed')
    [ "$at_kill" -lt "$EVENTS" ] ||
        fail "round $round: all events done before the kill; raise EVENTS"

    # Restart and let it finish.
    "$SLUICE" run -q "$WORK/service.yaml" 2>"$WORK/run2.log" &
    PID=$!
    wait_for 120 processed_at_least "$EVENTS" ||
        fail "round $round: exactly-once group did not finish"
    wait_for 120 appended_all ||
        fail "round $round: at-least-once group did not finish"
    kill -TERM "$PID"
    wait "$PID" || fail "round $round: drain did not exit 0"
    PID=

    distinct=$(count 'SELECT count(DISTINCT id) FROM processed')
    total=$(count 'SELECT count(*) FROM processed')
    appended=$(sort -u "$WORK/appended.txt" | wc -l)
    appended_total=$(wc -l < "$WORK/appended.txt")
    missing=$(sort -u "$WORK/appended.txt" | comm -13 - "$(sort "$WORK/ids.txt" > "$WORK/ids.sorted"; echo "$WORK/ids.sorted")" | wc -l)
    [ "$distinct" -eq "$EVENTS" ] || fail "round $round: $distinct of $EVENTS processed"
    [ "$total" -eq "$EVENTS" ] ||
        fail "round $round: $total effects for $EVENTS events (duplicates)"
    [ "$appended" -eq "$EVENTS" ] && [ "$missing" -eq 0 ] ||
        fail "round $round: at-least-once group lost events"
    echo "round $round: killed at $at_kill/$EVENTS; after restart" \
        "exactly-once $total effects for $distinct ids," \
        "at-least-once $appended ids ($((appended_total - appended)) redelivered)"
    round=$((round + 1))
done
echo "crash_test: $ROUNDS passed, 0 failed"
