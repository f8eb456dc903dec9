#!/bin/sh
# RabbitMQ security: amqps:// with CA verification and a client
# certificate, credentials from the URL, the environment or a file, and no
# password in any message.
#
# The broker of scripts/brokers.sh listens for TLS on $RABBITMQ_TLS_PORT
# (default 15675) with a server certificate for localhost signed by the
# test CA in `brokers.sh tls-dir rabbitmq`, and verifies client
# certificates when one is presented (verify_peer, fail_if_no_peer_cert
# false). Checked:
#   1. amqps + cacert: an event goes through (publish confirmed, consumed);
#   2. the same with a client certificate signed by the CA;
#   3. another CA as cacert: refused, "not signed by cacert";
#   4. a client certificate of another CA: refused by the broker;
#   5. the URL's host is an IP address: hostname verification refuses it
#      with a hint, verify=peer accepts it;
#   6. password=env:NAME and password=file:PATH log in; an unset variable
#      and a missing file fail naming them; a wrong password fails; no
#      message ever holds a password.
#
# usage: amqp_security_test.sh AMQP_TOOL SOURCE_DIR
set -eu

TOOL=$1
SRC=$2
PORT=${RABBITMQ_PORT:-15673}
TLS_PORT=${RABBITMQ_TLS_PORT:-15675}
BROKERS="$SRC/scripts/brokers.sh"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-amqp-sec.XXXXXX")
PIDS=
passed=0

cleanup() {
    for p in $PIDS; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say() { echo "amqp_security_test: $*"; }
fail() {
    say "FAIL: $*" >&2
    exit 1
}
ok() {
    say "ok: $*"
    passed=$((passed + 1))
}

if ! sh "$BROKERS" status rabbitmq >/dev/null 2>&1; then
    fail "RabbitMQ is not running (run under scripts/with-brokers.sh)"
fi
[ -x "$TOOL" ] || fail "$TOOL not built"
TLS=$(sh "$BROKERS" tls-dir rabbitmq)
[ -f "$TLS/ca.pem" ] || fail "no TLS files in $TLS (brokers.sh start)"

# Publish one event and consume it through URL $1 (namespace $2).
roundtrip() {
    url=$1
    ns=$2
    "$TOOL" declare "$url&ns=$ns" sec workers 2>"$WORK/err" ||
        return 1
    "$TOOL" publish-one "$url&ns=$ns" sec "id-$ns" sec.test /sec c hello \
        2>"$WORK/err" || return 1
    out="$WORK/$ns.txt"
    "$TOOL" consume "$url&ns=$ns" sec workers "$out" >/dev/null \
        2>"$WORK/err" &
    pid=$!
    PIDS="$PIDS $pid"
    i=0
    while ! grep -q "^id-$ns\$" "$out" 2>/dev/null; do
        i=$((i + 1))
        if [ "$i" -gt 200 ] || ! kill -0 "$pid" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
            return 1
        fi
        sleep 0.05
    done
    kill -TERM "$pid"
    wait "$pid" || return 1
}

# A declare through URL $1 must fail with a message holding $2 (and not
# the password $3).
refused() {
    if "$TOOL" declare "$1" sec workers 2>"$WORK/err"; then
        fail "accepted: $(echo "$1" | sed 's/:[^:@/]*@/:***@/')"
    fi
    grep -q -- "$2" "$WORK/err" ||
        fail "the message lacks \"$2\": $(cat "$WORK/err")"
    if [ -n "${3:-}" ] && grep -q -- "$3" "$WORK/err"; then
        fail "the message holds the password: $(cat "$WORK/err")"
    fi
}

tls="amqps://guest:guest@localhost:$TLS_PORT?cacert=$TLS/ca.pem"
client="cert=$TLS/client.pem&key=$TLS/client.key"
rogue="cert=$TLS/rogue-client.pem&key=$TLS/rogue-client.key"

roundtrip "$tls" "sec1-$$" || fail "1: amqps with cacert: $(cat "$WORK/err")"
ok "1: amqps://localhost with cacert: published, confirmed, consumed"

roundtrip "$tls&$client" "sec2-$$" ||
    fail "2: with a client certificate: $(cat "$WORK/err")"
ok "2: with a client certificate signed by the CA"

refused "amqps://guest:guest@localhost:$TLS_PORT?cacert=$TLS/other-ca.pem" \
    "not signed by cacert"
ok "3: another CA: $(cat "$WORK/err")"

refused "$tls&$rogue" "refused the client certificate"
ok "4: a client certificate of another CA: $(cat "$WORK/err")"

ip="amqps://guest:guest@127.0.0.1:$TLS_PORT?cacert=$TLS/ca.pem"
refused "$ip" "DNS names only"
roundtrip "$ip&verify=peer" "sec5-$$" ||
    fail "5: verify=peer: $(cat "$WORK/err")"
ok "5: an IP address: refused by hostname verification, verify=peer works"

# 6: credentials. The broker's guest password is "guest".
SLUICE_SEC_PW=guest
export SLUICE_SEC_PW
printf 'guest\n' >"$WORK/pw"
printf 'hunter2-wrong\n' >"$WORK/badpw"
plain="amqp://guest@127.0.0.1:$PORT"
roundtrip "$plain?password=env:SLUICE_SEC_PW" "sec6a-$$" ||
    fail "6: password=env: $(cat "$WORK/err")"
roundtrip "$plain?password=file:$WORK/pw" "sec6b-$$" ||
    fail "6: password=file: $(cat "$WORK/err")"
roundtrip "amqps://localhost:$TLS_PORT?cacert=$TLS/ca.pem&user=guest&password=env:SLUICE_SEC_PW" \
    "sec6c-$$" || fail "6: user= and password= over TLS: $(cat "$WORK/err")"
unset SLUICE_SEC_UNSET 2>/dev/null || true
refused "$plain?password=env:SLUICE_SEC_UNSET" "SLUICE_SEC_UNSET is not set"
refused "$plain?password=file:$WORK/nope" "$WORK/nope"
refused "$plain?password=file:$WORK/badpw" "refused the login" hunter2-wrong
refused "amqp://guest:hunter2-wrong@127.0.0.1:$PORT?ns=x" "refused the login" \
    hunter2-wrong
refused "$plain?password=hunter2-wrong" "env:NAME or file:PATH" hunter2-wrong
ok "6: credentials from the environment and a file; clear errors, no" \
    "password in them"
say "$passed passed"
