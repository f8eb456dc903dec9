#!/bin/sh
# NATS connection state: `sluice run` against a nats-server of
# the test's own (JetStream, file store, a free loopback port). While the
# service works through a backlog, the server is SIGKILLed and started
# again on the same store. /readyz must answer 200 while connected, 503
# while the connection is lost, and 200 again after the reconnect; the
# deliveries held across the outage (their acks may be lost with the
# connection) come back after AckWait, and every event is processed.
#
# usage: nats_reconnect_test.sh SLUICE NATS_TOOL PLUGIN
# Fails (never skips) without nats-server or curl.
set -eu

SLUICE=$1
TOOL=$2
PLUGIN=$3
TEST=nats_reconnect_test
. "$(cd "$(dirname "$0")" && pwd)/nats_lib.sh"

[ -x "$SLUICE" ] && [ -x "$TOOL" ] && [ -f "$PLUGIN" ] ||
    fail "missing binaries: $SLUICE $TOOL $PLUGIN"
command -v curl >/dev/null 2>&1 || fail "needs curl"

EVENTS=400
PORT=$(free_port)
mkdir -p "$WORK/store"
cat >"$WORK/nats.conf" <<CONF
server_name: reconnect
listen: 127.0.0.1:$PORT
jetstream { store_dir: "$WORK/store" }
CONF
nats_start nats "$WORK/nats.conf"
URL="nats://127.0.0.1:$PORT?ack_wait_ms=2000"
LOG="$WORK/handled.txt"
cat >"$WORK/service.yaml" <<YAML
service:
  name: reconnect
engine:
  url: "$URL"
channels:
  - name: conn.events
consumers:
  - channel: conn.events
    group: workers
    prefetch: 8
    concurrency: 4
    handler:
      kind: plugin
      path: $PLUGIN
      config: "$LOG,30"
drain_timeout: 5s
admin:
  listen: 127.0.0.1:0
YAML

done_count() {
    sed -n 's/^D \([^ ]*\) .*/\1/p' "$LOG" 2>/dev/null | sort -u | wc -l
}
done_at_least() { [ "$(done_count)" -ge "$1" ]; }
readyz() { curl -s -o /dev/null -w '%{http_code}' "$ADMIN/readyz" || true; }
ready_is() { [ "$(readyz)" = "$1" ]; }

sluice_run run "$WORK/service.yaml"
wait_for 20 grep -qs '^  admin on port' "$WORK/run.log" ||
    fail "sluice run did not start"
ADMIN=http://127.0.0.1:$(sed -n 's/^  admin on port \([0-9]*\):.*/\1/p' \
    "$WORK/run.log")
wait_for 10 ready_is 200 || fail "/readyz is $(readyz) while connected"

"$TOOL" publish "$URL" conn.events ev "$EVENTS" 1 || fail "publish"
# The server keeps what it confirmed; give its file store a moment to
# hand the writes to the kernel before the process dies.
sleep 1
wait_for 60 done_at_least $((EVENTS / 4)) || fail "no progress"

kill -KILL "$NATS_PID"
wait "$NATS_PID" 2>/dev/null || true
at_kill=$(done_count)
wait_for 10 ready_is 503 ||
    fail "/readyz is $(readyz) with the server gone (want 503)"
body=$(curl -s "$ADMIN/readyz" || true)
echo "$body" | grep -q 'engine not connected' ||
    fail "/readyz does not say why: $body"
sleep 2
nats_start nats2 "$WORK/nats.conf"
wait_for 20 ready_is 200 ||
    fail "/readyz is $(readyz) after the server came back (want 200)"

wait_for 90 done_at_least "$EVENTS" ||
    fail "only $(done_count) of $EVENTS events processed after the reconnect"
kill -TERM "$RUN_PID"
wait "$RUN_PID" || fail "drain did not exit 0"
total=$(grep -c '^D ' "$LOG")
echo "$TEST: server killed at $at_kill/$EVENTS processed; /readyz" \
    "200 -> 503 -> 200; $EVENTS/$EVENTS processed ($((total - EVENTS))" \
    "handled twice)"
