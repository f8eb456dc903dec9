#!/bin/sh
# RabbitMQ topology conflicts: a queue that exists with other
# arguments fails start-up with a message naming the queue, the argument
# and both values, computed from the broker's refusal.
#
#   1. the group's queue is declared with max_length 1000 (amqp_tool);
#   2. declaring it again with 5000 fails: amqp_tool prints the engine's
#      message, and `sluice run` with a configuration that says 5000 exits
#      with status 2 and the same message;
#   3. the same configuration with max_length 1000 starts (its banner
#      shows the engine URL without the password) and stops on SIGTERM
#      with status 0.
#
# usage: amqp_topology_test.sh AMQP_TOOL SLUICE_BINARY SOURCE_DIR
set -eu

TOOL=$1
SLUICE=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
SRC=$3
PORT=${RABBITMQ_PORT:-15673}
BROKERS="$SRC/scripts/brokers.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-topo.XXXXXX")
PIDS=

cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "amqp_topology_test: $*"; }
fail() {
    say "FAIL: $*" >&2
    exit 1
}

if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
    fail "RabbitMQ is not running (run under scripts/with-brokers.sh)"
fi
[ -x "$TOOL" ] || fail "$TOOL not built"
[ -x "$SLUICE" ] || fail "$SLUICE not built"

ns=topo-$$
url="amqp://guest:guest@127.0.0.1:$PORT?ns=$ns"
queue="sluice/$ns/orders.created/workers"
want="queue '$queue': x-max-length (the channel's max_length) is 1000 on the broker, the configuration wants 5000"

"$TOOL" declare "$url" orders.created workers 1000 ||
    fail "declaring with max_length 1000"
if "$TOOL" declare "$url" orders.created workers 5000 2>"$WORK/err"; then
    fail "declaring with max_length 5000 succeeded"
fi
grep -qF "$want" "$WORK/err" || fail "amqp_tool's message: $(cat "$WORK/err")"
say "ok: amqp_tool: $(grep -v '^{' "$WORK/err")"

config() { # MAX_LENGTH
    cat >"$WORK/service.yaml" <<YAML
service:
  name: topo
engine:
  url: "$url"
channels:
  - name: orders.created
    max_length: $1
consumers:
  - channel: orders.created
    group: workers
    handler:
      kind: append
      file: $WORK/handled.txt
admin:
  enabled: false
YAML
}

config 5000
rc=0
(cd "$WORK" && timeout 60 "$SLUICE" run -q service.yaml) \
    >"$WORK/out" 2>"$WORK/err" || rc=$?
[ "$rc" -eq 2 ] || fail "sluice run exited $rc, want 2: $(cat "$WORK/err")"
grep -qF "$want" "$WORK/err" || fail "sluice run's message: $(cat "$WORK/err")"
say "ok: sluice run exits 2: $(grep -v '^{' "$WORK/err")"

config 1000
(cd "$WORK" && exec "$SLUICE" run service.yaml) >"$WORK/out" \
    2>"$WORK/err" &
pid=$!
PIDS=$pid
i=0
while ! grep -q "stop with SIGTERM" "$WORK/err"; do
    i=$((i + 1))
    if [ "$i" -gt 300 ] || ! kill -0 "$pid" 2>/dev/null; then
        fail "sluice run with 1000 did not start: $(cat "$WORK/err")"
    fi
    sleep 0.1
done
grep -qF "running on amqp://guest:***@127.0.0.1:$PORT" "$WORK/err" ||
    fail "the banner shows the URL unredacted: $(head -1 "$WORK/err")"
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
PIDS=
[ "$rc" -eq 0 ] || fail "sluice run with 1000 exited $rc on SIGTERM"
say "ok: the configuration that matches starts ($(grep "running on" "$WORK/err")) and stops cleanly"
