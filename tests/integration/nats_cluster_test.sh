#!/bin/sh
# NATS cluster chaos test: a three-node JetStream cluster on
# loopback (scripts/brokers.sh nats-cluster) and an R3 stream. Each round
# publishes EVENTS events through sluice while a consumer group (`sluice
# run`, append handler) processes them, SIGKILLs one node mid-run, starts
# it again, and checks that the run completes and that every event whose
# publish was confirmed was processed at least once (zero loss).
#
# Publishing goes in chunks of CHUNK events with fixed ids; a chunk whose
# publish fails (the node went away under it) is published again with the
# same ids, which the stream's duplicate window absorbs.
#
# usage: nats_cluster_test.sh SLUICE_BINARY [ROUNDS] [EVENTS]
# Without nats-server the test fails (never skips).
set -eu

SLUICE=$1
ROUNDS=${2:-5}
EVENTS=${3:-20000}
CHUNK=1000
HERE=$(cd "$(dirname "$0")" && pwd)
BROKERS="sh $HERE/../../scripts/brokers.sh"
P=${NATS_CLUSTER_PORT:-14230}
URLS="nats://127.0.0.1:$((P + 1)),127.0.0.1:$((P + 2)),127.0.0.1:$((P + 3))"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-nats-cluster.XXXXXX")
RUN_PID=
PUB_PID=
cleanup() {
    for p in $PUB_PID $RUN_PID; do
        kill -KILL "$p" 2>/dev/null || true
    done
    $BROKERS stop nats-cluster >/dev/null 2>&1 || true
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "nats_cluster_test: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "nats_cluster_test: FAIL: $*" >&2
    for f in "$WORK"/run.log "$WORK"/pub.*.log; do
        if [ -s "$f" ]; then
            echo "--- last lines of $f:" >&2
            tail -n 5 "$f" >&2
        fi
    done
    exit 1
}

[ -x "$SLUICE" ] || fail "missing executable $SLUICE"
command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ] ||
    fail "nats-server not found (sh scripts/deps.sh)"
command -v curl >/dev/null 2>&1 || fail "needs curl"

. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

processed() { [ -f "$WORK/appended.txt" ] && sort -u "$WORK/appended.txt" | wc -l || echo 0; }
processed_at_least() { [ "$(processed)" -ge "$1" ]; }
confirmed_count() { cat "$WORK"/ids.*.txt 2>/dev/null | sort -u | wc -l; }
confirmed_at_least() { [ "$(confirmed_count)" -ge "$1" ]; }

# Publish chunks LANES at a time (each `sluice publish` waits for every
# confirm), each until confirmed in full (a background job).
LANES=4
publish_lane() { # ROUND LANE
    chunks=$((EVENTS / CHUNK))
    c=$2
    while [ "$c" -le "$chunks" ]; do
        tries=0
        until "$SLUICE" publish -e "$URL" -C chaos.events -i "r$1-c$c" \
                -n "$CHUNK" --timeout 10s '{"k":1}' \
                >"$WORK/ids.$c.txt" 2>>"$WORK/pub.$2.log"; do
            tries=$((tries + 1))
            [ "$tries" -lt 30 ] || return 1
            sleep 0.5
        done
        c=$((c + LANES))
    done
}
publish_all() { # ROUND
    pids=
    lane=1
    while [ "$lane" -le "$LANES" ]; do
        publish_lane "$1" "$lane" &
        pids="$pids $!"
        lane=$((lane + 1))
    done
    rc=0
    for p in $pids; do
        wait "$p" || rc=1
    done
    return $rc
}

passed=0
failed=0
round=1
while [ "$round" -le "$ROUNDS" ]; do
    rm -f "$WORK"/ids.*.txt "$WORK/appended.txt" "$WORK"/pub.*.log "$WORK/run.log"
    $BROKERS start nats-cluster >"$WORK/brokers.log" 2>&1 ||
        { cat "$WORK/brokers.log" >&2; fail "round $round: cluster did not start"; }
    URL="$URLS?replicas=3&ack_wait_ms=2000&ns=chaos$round"
    cat >"$WORK/service.yaml" <<YAML
service:
  name: nats-chaos
engine:
  url: "$URL"
channels:
  - name: chaos.events
consumers:
  - channel: chaos.events
    group: workers
    prefetch: 64
    concurrency: 4
    handler:
      kind: append
      file: $WORK/appended.txt
drain_timeout: 5s
admin:
  enabled: false
YAML
    "$SLUICE" run -q "$WORK/service.yaml" 2>"$WORK/run.log" &
    RUN_PID=$!
    # The group exists once the service declared it; only then publish
    # (a group gets the events published after it was declared).
    wait_for 30 grep -q . "$WORK/run.log" 2>/dev/null || true
    sleep 1
    kill -0 "$RUN_PID" 2>/dev/null || fail "round $round: sluice run exited"
    publish_all "$round" &
    PUB_PID=$!

    # Kill the node that is one third into the run, restart it shortly after.
    victim=$(( (round - 1) % 3 + 1 ))
    wait_for 60 confirmed_at_least $((EVENTS / 3)) ||
        fail "round $round: no publishing progress before the kill"
    $BROKERS kill-node "$victim" nats-cluster >/dev/null
    at_kill=$(processed)
    sleep 2
    $BROKERS start-node "$victim" nats-cluster >>"$WORK/brokers.log" 2>&1 ||
        fail "round $round: node $victim did not come back"

    wait "$PUB_PID" || fail "round $round: publishing did not complete"
    PUB_PID=
    confirmed=$(confirmed_count)
    [ "$confirmed" -eq "$EVENTS" ] ||
        fail "round $round: $confirmed of $EVENTS publishes confirmed"
    wait_for 90 processed_at_least "$confirmed" ||
        fail "round $round: only $(processed) of $confirmed confirmed events processed"
    kill -TERM "$RUN_PID"
    wait "$RUN_PID" || fail "round $round: drain did not exit 0"
    RUN_PID=
    cat "$WORK"/ids.*.txt | sort -u >"$WORK/confirmed.sorted"
    sort -u "$WORK/appended.txt" >"$WORK/processed.sorted"
    missing=$(comm -23 "$WORK/confirmed.sorted" "$WORK/processed.sorted" | wc -l)
    total=$(wc -l <"$WORK/appended.txt")
    if [ "$missing" -eq 0 ]; then
        passed=$((passed + 1))
        echo "round $round: node $victim killed at $at_kill processed;" \
            "$confirmed confirmed, all processed ($((total - confirmed))" \
            "redelivered)"
    else
        failed=$((failed + 1))
        echo "round $round: $missing confirmed events never processed" >&2
    fi
    $BROKERS stop nats-cluster >/dev/null
    round=$((round + 1))
done
echo "nats_cluster_test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
