#!/bin/sh
# NATS connection security: TLS with CA verification (and client
# certificates), user/password, token, nkey and JWT credentials, each
# against a nats-server of the test's own (JetStream, a free loopback
# port, a generated configuration), certificates made with openssl, nkeys
# and JWTs with python3-cryptography (tests/integration/nats_nkeys.py).
#
# Each accepted case runs the whole path (declare, publish, fetch, ack:
# `nats_tool roundtrip`); each refused case must fail with a message that
# says why. No secret (password, token) may appear in any output: the
# messages name the URL with its credentials hidden, and secrets are given
# as references (env:NAME, file:PATH).
#
# usage: nats_security_test.sh SLUICE NATS_TOOL
# Fails (never skips) without nats-server, openssl or python3-cryptography.
set -eu

SLUICE=$1
TOOL=$2
TEST=nats_security_test
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/nats_lib.sh"

[ -x "$SLUICE" ] && [ -x "$TOOL" ] || fail "missing binaries: $SLUICE $TOOL"
command -v openssl >/dev/null 2>&1 || fail "needs openssl (sh scripts/deps.sh)"
python3 -c 'import cryptography' 2>/dev/null ||
    fail "needs python3-cryptography (sh scripts/deps.sh)"

PASSWORD="pw-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
WRONG_PASSWORD="wrong-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
TOKEN="tok-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
WRONG_TOKEN="badtok-$(od -An -N8 -tx1 /dev/urandom | tr -d ' \n')"
SECRETS="$PASSWORD $WRONG_PASSWORD $TOKEN $WRONG_TOKEN"
C=$WORK/certs
mkdir -p "$C" "$WORK/keys" "$WORK/creds" "$WORK/wrongkeys"

# ---- material ----------------------------------------------------------------
ossl() { openssl "$@" >>"$WORK/openssl.log" 2>&1 || fail "openssl $1 failed"; }
ec_key() { ossl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:prime256v1 -out "$1"; }
ca() { # NAME
    ec_key "$C/$1.key"
    ossl req -x509 -new -key "$C/$1.key" -out "$C/$1.pem" -days 2 \
        -subj "/CN=sluice test $1"
}
cert() { # NAME CA EXT
    ec_key "$C/$1.key"
    ossl req -new -key "$C/$1.key" -out "$C/$1.csr" -subj "/CN=$1"
    printf '%s\n' "$3" >"$C/$1.ext"
    ossl x509 -req -in "$C/$1.csr" -CA "$C/$2.pem" -CAkey "$C/$2.key" \
        -CAcreateserial -out "$C/$1.pem" -days 2 -extfile "$C/$1.ext"
}
ca ca
ca otherca
cert server ca "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
cert client ca "extendedKeyUsage=clientAuth"
python3 "$HERE/nats_nkeys.py" user "$WORK/keys" || fail "nkey generation"
python3 "$HERE/nats_nkeys.py" user "$WORK/wrongkeys" || fail "nkey generation"
python3 "$HERE/nats_nkeys.py" creds "$WORK/creds" || fail "JWT generation"
printf '%s\n' "$TOKEN" >"$WORK/token"
printf '%s\n' "$WRONG_TOKEN" >"$WORK/wrong-token"
chmod 600 "$WORK/token" "$WORK/wrong-token"

# ---- servers -----------------------------------------------------------------
server() { # NAME CONFIG-BODY: sets PORT_<NAME>
    port=$(free_port)
    mkdir -p "$WORK/$1.store"
    {
        echo "listen: 127.0.0.1:$port"
        echo "jetstream { store_dir: \"$WORK/$1.store\" }"
        printf '%s\n' "$2"
    } >"$WORK/$1.conf"
    nats_start "$1" "$WORK/$1.conf"
    eval "PORT_$1=$port"
}
server tls "tls { cert_file: \"$C/server.pem\", key_file: \"$C/server.key\" }"
server mtls "tls { cert_file: \"$C/server.pem\", key_file: \"$C/server.key\",
  ca_file: \"$C/ca.pem\", verify: true }"
server auth "authorization { users: [
  { user: alice, password: \"$PASSWORD\" },
  { nkey: $(cat "$WORK/keys/user.pub") } ] }"
server token "authorization { token: \"$TOKEN\" }"
server operator "operator: \"$WORK/creds/operator.jwt\"
system_account: $(cat "$WORK/creds/sys.pub")
resolver: MEMORY
resolver_preload: {
  $(cat "$WORK/creds/account.pub"): \"$(cat "$WORK/creds/account.jwt")\"
  $(cat "$WORK/creds/sys.pub"): \"$(cat "$WORK/creds/sys.jwt")\"
}"

# ---- cases -------------------------------------------------------------------
n=0
no_secret_in() { # FILE
    for s in $SECRETS; do
        if grep -q -- "$s" "$1"; then
            fail "a secret appears in the output of case $n: $(cat "$1")"
        fi
    done
}
accepts() { # WHAT URL
    n=$((n + 1))
    NATS_PW=$PASSWORD "$TOOL" roundtrip "$2" >"$WORK/case$n.out" 2>&1 ||
        fail "$1 refused: $(cat "$WORK/case$n.out")"
    grep -q 'roundtrip ok' "$WORK/case$n.out" || fail "$1: no round trip"
    no_secret_in "$WORK/case$n.out"
    echo "ok   $1"
}
refuses() { # WHAT URL PATTERN: refused with a message matching PATTERN
    n=$((n + 1))
    if NATS_PW=$PASSWORD NATS_WRONG_PW=$WRONG_PASSWORD \
            "$TOOL" roundtrip "$2" >"$WORK/case$n.out" 2>&1; then
        fail "$1 accepted"
    fi
    grep -Eqi -- "$3" "$WORK/case$n.out" ||
        fail "$1: the message does not say why (want /$3/): $(cat "$WORK/case$n.out")"
    no_secret_in "$WORK/case$n.out"
    echo "ok   $1 refused: $(head -1 "$WORK/case$n.out" | cut -c1-160)"
}

T=127.0.0.1:$PORT_tls
accepts "TLS, server verified with tls_ca" "nats://$T?tls_ca=$C/ca.pem"
accepts "tls:// scheme with tls_ca" "tls://$T?tls_ca=$C/ca.pem"
refuses "TLS, server certificate from another CA" "tls://$T?tls_ca=$C/otherca.pem" \
    'SSL handshake error.*issuer certificate.*check tls_ca'
refuses "TLS, no CA given (system store)" "tls://$T" 'SSL handshake error.*check tls_ca'
refuses "TLS server, plain client (nats.c upgrades, then verifies)" "nats://$T" \
    'SSL handshake error'
refuses "TLS, wrong expected host name" \
    "tls://$T?tls_ca=$C/ca.pem&tls_hostname=other.example" 'certificate|hostname|SSL'
M=127.0.0.1:$PORT_mtls
accepts "TLS with a client certificate" \
    "tls://$M?tls_ca=$C/ca.pem&tls_cert=$C/client.pem&tls_key=$C/client.key"
refuses "TLS, server wants a client certificate" "tls://$M?tls_ca=$C/ca.pem" \
    'client certificate \(tls_cert, tls_key\)'
refuses "tls_cert without tls_key" "tls://$M?tls_ca=$C/ca.pem&tls_cert=$C/client.pem" \
    'tls_cert and tls_key go together'

A=127.0.0.1:$PORT_auth
accepts "user/password, password from env:" "nats://$A?user=alice&password=env:NATS_PW"
printf '%s\n' "$PASSWORD" >"$WORK/pw"
accepts "user/password, password from file:" "nats://$A?user=alice&password=file:$WORK/pw"
accepts "user/password in the URL's user info" "nats://alice:$PASSWORD@$A"
refuses "wrong password" "nats://$A?user=alice&password=env:NATS_WRONG_PW" \
    'authorization'
refuses "wrong password in the user info" "nats://alice:$WRONG_PASSWORD@$A" \
    'alice:\*\*\*@.*authorization'
refuses "no credentials" "nats://$A" 'authorization'
refuses "password given in the URL itself" "nats://$A?user=alice&password=$PASSWORD" \
    'password must be a reference'
refuses "password variable not set" "nats://$A?user=alice&password=env:NATS_UNSET_PW" \
    'NATS_UNSET_PW is not set'
accepts "nkey (public key and seed file)" \
    "nats://$A?nkey=$(cat "$WORK/keys/user.pub")&nkey_seed=$WORK/keys/user.seed"
refuses "nkey with the seed of another key" \
    "nats://$A?nkey=$(cat "$WORK/keys/user.pub")&nkey_seed=$WORK/wrongkeys/user.seed" \
    'authorization|nkey'
K=127.0.0.1:$PORT_token
accepts "token from file:" "nats://$K?token=file:$WORK/token"
refuses "wrong token" "nats://$K?token=file:$WORK/wrong-token" 'authorization'
refuses "token given in the URL itself" "nats://$K?token=$TOKEN" \
    'token must be a reference'
accepts "token as the URL's user info" "nats://$TOKEN@$K"
O=127.0.0.1:$PORT_operator
accepts "JWT credentials file (creds)" "nats://$O?creds=$WORK/creds/user.creds"
refuses "no credentials (operator mode)" "nats://$O" 'authorization'

# `sluice run` with a password in the URL's user info: the banner and the
# logs name the URL with the password hidden.
cat >"$WORK/service.yaml" <<YAML
service:
  name: secure
engine:
  url: "nats://alice:$PASSWORD@$A?ns=sec"
channels:
  - name: sec.events
admin:
  enabled: false
YAML
"$SLUICE" run "$WORK/service.yaml" >"$WORK/run.out" 2>"$WORK/run.log" &
RUN=$!
track_pid "$RUN"
wait_for 20 grep -qs 'running on' "$WORK/run.log" || fail "sluice run did not start"
kill -TERM "$RUN"
wait "$RUN" || fail "sluice run did not exit 0"
grep -q "nats://alice:\*\*\*@$A" "$WORK/run.log" ||
    fail "the banner does not name the URL: $(head -2 "$WORK/run.log")"
n=$((n + 1))
cat "$WORK/run.out" "$WORK/run.log" >"$WORK/case$n.out"
no_secret_in "$WORK/case$n.out"
"$SLUICE" config check "$WORK/service.yaml" >"$WORK/check.out" 2>&1 ||
    fail "config check: $(cat "$WORK/check.out")"
no_secret_in "$WORK/check.out"
echo "ok   sluice run and config check hide the password of the URL"
echo "$TEST: $n cases passed"
