#!/bin/sh
# The layer check fails on each kind of include it forbids, naming the file
# and line, and passes on the tree as it is. Each case copies src/, cmd/
# and include/ to a temporary tree, adds one include as line 2 of a file,
# and expects scripts/check_layers.py to exit 1 with that FILE:2: message.
#
# usage: check_layers_test.sh SOURCE_DIR
set -u
root=${1:?usage: check_layers_test.sh SOURCE_DIR}
check="$root/scripts/check_layers.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
failures=0

fresh() {
    rm -rf "$tmp/tree"
    mkdir "$tmp/tree"
    cp -R "$root/src" "$root/cmd" "$root/include" "$tmp/tree/"
}

# expect_violation FILE INCLUDE MESSAGE: FILE including INCLUDE fails with
# "FILE:2: MESSAGE".
expect_violation() {
    fresh
    sed -i "1a #include \"$2\"" "$tmp/tree/$1"
    out=$(python3 "$check" "$tmp/tree")
    rc=$?
    if [ "$rc" -ne 1 ]; then
        echo "FAIL: $1 including $2: exit $rc, want 1"
        failures=$((failures + 1))
    elif ! printf '%s\n' "$out" | grep -qxF "$1:2: $3"; then
        echo "FAIL: $1 including $2: no line '$1:2: $3' in:"
        printf '%s\n' "$out"
        failures=$((failures + 1))
    else
        echo "ok: $1:2: $3"
    fi
}

fresh
if ! python3 "$check" "$tmp/tree" >"$tmp/out"; then
    echo "FAIL: the tree as it is does not pass:"
    cat "$tmp/out"
    failures=$((failures + 1))
fi

# Upward: core reaching for the host, the runtime for http.
expect_violation src/core/status.c sluice/service.h \
    "upward include: include/sluice/service.h (host) from layer core"
expect_violation src/runtime/consumer.c http/server.h \
    "upward include: src/http/server.h (http) from layer runtime"
# Upward through a public header: flow's header naming the engine's.
expect_violation include/sluice/breaker.h sluice/engine.h \
    "upward include: include/sluice/engine.h (engine) from layer flow"
# Private: a public header or the CLI reaching into src/.
expect_violation include/sluice/event.h core/secret.h \
    "a public header includes the private src/core/secret.h"
expect_violation cmd/sluice/main.c engine/driver.h \
    "the CLI includes the private src/engine/driver.h (public headers only)"
# Private: one engine's header from outside that engine, in its folder or
# (before the move) named after it.
mkdir_engine() {
    mkdir -p "$tmp/tree/src/engine/kafka"
    printf '#pragma once\n' >"$tmp/tree/src/engine/kafka/kafka_int.h"
}
fresh
mkdir_engine
sed -i '1a #include "engine/kafka/kafka_int.h"' "$tmp/tree/src/engine/engine.c"
if python3 "$check" "$tmp/tree" | grep -xF >/dev/null \
    "src/engine/engine.c:2: src/engine/kafka/kafka_int.h is private to the kafka engine"; then
    echo "ok: an engine's folder is private to it"
else
    echo "FAIL: src/engine/engine.c including engine/kafka/kafka_int.h passed"
    failures=$((failures + 1))
fi
expect_violation src/runtime/producer.c engine/nats/nats_int.h \
    "src/engine/nats/nats_int.h is private to the nats engine"
# No exception for the inbox: it reaches engine stores through the driver.
expect_violation src/runtime/inbox.c engine/nats/nats_int.h \
    "src/engine/nats/nats_int.h is private to the nats engine"

if [ "$failures" -ne 0 ]; then
    echo "$failures case(s) failed"
    exit 1
fi
echo "every case failed as it should, naming file and line"
