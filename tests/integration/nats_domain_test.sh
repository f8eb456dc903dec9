#!/bin/sh
# JetStream domains (?domain=D in the engine URL): the JetStream API is
# then "$JS.D.API.", as a client of a leaf node reaches its hub's. Two
# nats-servers of the test's own: a hub (JetStream domain "hub") and a
# leaf node connected to it with a JetStream of its own (domain "leaf"),
# so that the plain "$JS.API." of a client of the leaf is the leaf's, and
# only the domain reaches the hub. Through the leaf, with domain=hub:
#
#   1. the conformance suite passes (streams, consumers, the engine's own
#      pull requests, acks, dead letters, depth), and the streams are the
#      hub's: the leaf has none;
#   2. a crash loop ends in the dead-letter channel, through the engine's
#      fetch-side count and through the max-deliveries advisory
#      (tests/integration/nats_crashloop_test.sh, run with domain=hub);
#   3. with domain=elsewhere nothing answers, and opening the engine fails
#      with a message that names the domain.
#
# usage: nats_domain_test.sh SLUICE NATS_TOOL PLUGIN CONFORMANCE_TEST
# Fails (never skips) without nats-server.
set -eu

SLUICE=$1
TOOL=$2
PLUGIN=$3
CONFORMANCE=$4
TEST=nats_domain_test
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/nats_lib.sh"

[ -x "$SLUICE" ] && [ -x "$TOOL" ] && [ -f "$PLUGIN" ] &&
    [ -x "$CONFORMANCE" ] ||
    fail "missing binaries: $SLUICE $TOOL $PLUGIN $CONFORMANCE"

HUB_PORT=$(free_port)
LEAF_LISTEN=$(free_port)
LEAF_PORT=$(free_port)
cat >"$WORK/hub.conf" <<CONF
listen: 127.0.0.1:$HUB_PORT
jetstream {
  store_dir: "$WORK/hub-store"
  domain: hub
}
leafnodes {
  listen: 127.0.0.1:$LEAF_LISTEN
}
CONF
cat >"$WORK/leaf.conf" <<CONF
listen: 127.0.0.1:$LEAF_PORT
jetstream {
  store_dir: "$WORK/leaf-store"
  domain: leaf
}
leafnodes {
  remotes: [ { url: "nats-leaf://127.0.0.1:$LEAF_LISTEN" } ]
}
CONF
nats_start hub "$WORK/hub.conf"
nats_start leaf "$WORK/leaf.conf"
wait_for 15 grep -qs "Leafnode connection created" "$WORK/leaf.log" ||
    fail "the leaf did not connect to the hub"
HUB="nats://127.0.0.1:$HUB_PORT"
LEAF="nats://127.0.0.1:$LEAF_PORT"

# 1. The conformance suite through the leaf, in the hub's domain.
SLUICE_TEST_ENGINE="$LEAF?domain=hub&ack_wait_ms=500" \
    CMOCKA_MESSAGE_OUTPUT=stdout "$CONFORMANCE" >"$WORK/conformance.log" 2>&1 ||
    { tail -n 30 "$WORK/conformance.log" >&2; fail "conformance in domain hub"; }
grep -q 'PASSED' "$WORK/conformance.log" || fail "conformance: no verdict"
"$TOOL" roundtrip "$LEAF?domain=hub" >"$WORK/roundtrip.out" 2>&1 ||
    { cat "$WORK/roundtrip.out" >&2; fail "round trip in domain hub"; }
"$TOOL" stream-msgs "$HUB" rt.events >"$WORK/hub-msgs.out" 2>&1 ||
    fail "the stream is not on the hub"
if "$TOOL" stream-msgs "$LEAF" rt.events >/dev/null 2>&1; then
    fail "the stream is on the leaf"
fi
echo "$TEST: conformance suite passes through the leaf in domain hub"

# 2. Crash loops (fetch-side count, max-deliveries advisory) likewise.
NATS_URL="$LEAF?domain=hub" sh "$HERE/nats_crashloop_test.sh" \
    "$SLUICE" "$TOOL" "$PLUGIN" >"$WORK/crashloop.log" 2>&1 ||
    { tail -n 30 "$WORK/crashloop.log" >&2; fail "crash loop in domain hub"; }
echo "$TEST: crash loops dead-lettered in domain hub"

# 3. Another domain: refused, named.
if "$TOOL" roundtrip "$LEAF?domain=elsewhere" >"$WORK/elsewhere.out" 2>&1; then
    fail "domain elsewhere: the round trip succeeded"
fi
grep -q "no JetStream answers in domain 'elsewhere'" "$WORK/elsewhere.out" ||
    { cat "$WORK/elsewhere.out" >&2; fail "domain elsewhere: unclear error"; }
echo "$TEST: domain elsewhere refused, named"
echo "$TEST: ok"
