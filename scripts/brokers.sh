#!/bin/sh
# Start and stop the brokers the tests need, on loopback high ports.
#
#   sh scripts/brokers.sh start nats   nats-server with JetStream on
#                                      127.0.0.1:$NATS_PORT (default 14222)
#   sh scripts/brokers.sh stop nats    stop exactly the server started here
#   sh scripts/brokers.sh status nats
#
# State (PID file, log, JetStream store) lives in $SLUICE_BROKER_DIR
# (default: $TMPDIR/sluice-brokers-$USER). Idempotent: start does nothing
# when our server already runs, stop does nothing when none runs. The
# server is stopped by the PID it was started with, never by name.
set -eu

NATS_PORT=${NATS_PORT:-14222}
DIR=${SLUICE_BROKER_DIR:-${TMPDIR:-/tmp}/sluice-brokers-$(id -un)}
WAIT_S=${SLUICE_BROKER_WAIT_S:-15}

usage() {
    echo "usage: $0 start|stop|status nats" >&2
    exit 2
}

# True while the process in pid file $1 is alive.
alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# True once something accepts TCP connections on 127.0.0.1:$1.
accepts() {
    # bash's /dev/tcp is not POSIX; nc may be missing: ask the kernel.
    port_hex=$(printf '%04X' "$1")
    grep -q ":$port_hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null
}

nats_find() {
    for b in nats-server /usr/sbin/nats-server /usr/bin/nats-server; do
        if command -v "$b" >/dev/null 2>&1; then
            command -v "$b"
            return 0
        fi
    done
    echo "brokers.sh: nats-server not found (sh scripts/deps.sh)" >&2
    return 1
}

nats_start() {
    d="$DIR/nats"
    pidf="$d/nats.pid"
    mkdir -p "$d/store"
    if alive "$pidf"; then
        echo "brokers.sh: nats already running (pid $(cat "$pidf"))"
        return 0
    fi
    if accepts "$NATS_PORT"; then
        echo "brokers.sh: port $NATS_PORT is taken by another process" >&2
        return 1
    fi
    bin=$(nats_find)
    # A fresh store each start: tests must not see an earlier run's streams.
    rm -rf "$d/store"
    mkdir -p "$d/store"
    "$bin" -a 127.0.0.1 -p "$NATS_PORT" -js -sd "$d/store" \
        -l "$d/nats.log" >/dev/null 2>&1 &
    echo $! >"$pidf"
    i=0
    while [ "$i" -lt $((WAIT_S * 10)) ]; do
        if ! alive "$pidf"; then
            echo "brokers.sh: nats-server exited; see $d/nats.log" >&2
            tail -5 "$d/nats.log" >&2 || true
            rm -f "$pidf"
            return 1
        fi
        if accepts "$NATS_PORT" &&
                grep -q "Server is ready" "$d/nats.log" 2>/dev/null; then
            echo "brokers.sh: nats ready on 127.0.0.1:$NATS_PORT" \
                "(pid $(cat "$pidf"), log $d/nats.log)"
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "brokers.sh: nats not ready after ${WAIT_S}s; stopping it" >&2
    nats_stop
    return 1
}

nats_stop() {
    pidf="$DIR/nats/nats.pid"
    if ! alive "$pidf"; then
        rm -f "$pidf"
        echo "brokers.sh: nats not running"
        return 0
    fi
    pid=$(cat "$pidf")
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    if kill -0 "$pid" 2>/dev/null; then
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$pidf"
    echo "brokers.sh: nats stopped (pid $pid)"
}

nats_status() {
    if alive "$DIR/nats/nats.pid"; then
        echo "nats running (pid $(cat "$DIR/nats/nats.pid"))"
    else
        echo "nats not running"
        return 1
    fi
}

[ $# -eq 2 ] || usage
case "$2" in
nats) ;;
*) usage ;;
esac
case "$1" in
start) nats_start ;;
stop) nats_stop ;;
status) nats_status ;;
*) usage ;;
esac
