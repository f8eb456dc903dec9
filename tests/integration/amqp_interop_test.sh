#!/bin/sh
# RabbitMQ interoperability, with Debian's python3-pika as
# the client that knows nothing of sluice:
#
# 1. pika publishes plain AMQP messages (message_id, type, timestamp,
#    content_type, app_id, correlation_id; no cloudEvents: headers) to the
#    channel's exchange; a sluice consumer receives them with those mapped
#    onto the envelope (id, type, time, datacontenttype, source,
#    correlationid).
# 2. sluice publishes an event; a pika consumer reads it from the group's
#    queue: cloudEvents: headers and the plain properties.
#
# usage: amqp_interop_test.sh AMQP_TOOL
# Needs the broker of scripts/with-brokers.sh (RABBITMQ_PORT, default 15673)
# and python3-pika; fails without either.
set -eu

TOOL=$1
PORT=${RABBITMQ_PORT:-15673}
PY=/usr/bin/python3
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-interop.XXXXXX")
CPID=
cleanup() {
    if [ -n "$CPID" ]; then kill -KILL "$CPID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
fail() {
    echo "amqp_interop_test: FAIL: $*" >&2
    exit 1
}

"$PY" -c 'import pika' 2>/dev/null ||
    fail "python3-pika is missing (sh scripts/deps.sh)"
ns="interop-$$"
url="amqp://guest:guest@127.0.0.1:$PORT?ns=$ns"
plain="amqp://guest:guest@127.0.0.1:$PORT"
"$TOOL" declare "$url" interop plain ||
    fail "cannot declare on RabbitMQ at 127.0.0.1:$PORT (is it running?)"

# ---- 1. pika -> sluice -----------------------------------------------------
"$TOOL" consume "$url" interop plain "$WORK/got.tsv" attrs \
    >"$WORK/consumer.log" 2>&1 &
CPID=$!
"$PY" - "$plain" "sluice/$ns/interop" <<'PY' || fail "pika could not publish"
import sys, pika
conn = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
ch = conn.channel()
ch.confirm_delivery()
ch.basic_publish(sys.argv[2], "interop", b'{"order": 42}',
                 pika.BasicProperties(message_id="pika-1", type="order.created",
                                      timestamp=1700000000,
                                      content_type="application/json",
                                      app_id="/legacy/shop",
                                      correlation_id="corr-7",
                                      delivery_mode=2))
conn.close()
PY
i=0
while [ ! -s "$WORK/got.tsv" ]; do
    i=$((i + 1))
    [ "$i" -le 200 ] || fail "the sluice consumer received nothing: $(cat "$WORK/consumer.log")"
    sleep 0.05
done
kill -TERM "$CPID"
wait "$CPID" || true
CPID=
want="$(printf 'pika-1\torder.created\t/legacy/shop\t1700000000000\tapplication/json\tcorr-7\t{"order": 42}')"
got=$(head -1 "$WORK/got.tsv")
[ "$got" = "$want" ] ||
    fail "pika -> sluice: envelope mismatch
  got:  $got
  want: $want"
echo "amqp_interop_test: pika -> sluice ok: message_id, type, app_id," \
    "timestamp, content_type, correlation_id mapped onto the envelope"

# ---- 2. sluice -> pika -----------------------------------------------------
"$TOOL" publish-one "$url" interop ev-sluice-1 order.shipped /sluice/shop \
    corr-9 "shipped" || fail "sluice could not publish"
"$PY" - "$plain" "sluice/$ns/interop/plain" <<'PY' >"$WORK/pika.txt" ||
import sys, pika
conn = pika.BlockingConnection(pika.URLParameters(sys.argv[1]))
ch = conn.channel()
for _ in range(100):
    method, props, body = ch.basic_get(sys.argv[2], auto_ack=True)
    if method is not None:
        break
    conn.sleep(0.05)
else:
    sys.exit("no message")
h = props.headers or {}
def s(v):
    return v.decode() if isinstance(v, bytes) else str(v)
print("ce", s(h.get("cloudEvents:id")), s(h.get("cloudEvents:type")),
      s(h.get("cloudEvents:source")), s(h.get("cloudEvents:specversion")),
      s(h.get("cloudEvents:correlationid")))
print("props", props.message_id, props.type, props.app_id, props.content_type,
      props.correlation_id, props.delivery_mode, props.timestamp is not None)
print("body", body.decode())
conn.close()
PY
    fail "pika could not read sluice's event"
expect="ce ev-sluice-1 order.shipped /sluice/shop 1.0 corr-9
props ev-sluice-1 order.shipped /sluice/shop text/plain corr-9 2 True
body shipped"
[ "$(cat "$WORK/pika.txt")" = "$expect" ] ||
    fail "sluice -> pika mismatch
  got:
$(cat "$WORK/pika.txt")
  want:
$expect"
echo "amqp_interop_test: sluice -> pika ok: cloudEvents: headers and plain" \
    "properties (message_id, type, app_id, content_type, correlation_id," \
    "timestamp, persistent)"
echo "amqp_interop_test: 2 passed, 0 failed"
