#!/bin/sh
# Start and stop the brokers the tests need, on loopback high ports.
#
#   sh scripts/brokers.sh start nats   nats-server with JetStream on
#                                      127.0.0.1:$NATS_PORT (default 14222)
#   sh scripts/brokers.sh stop nats    stop exactly the server started here
#   sh scripts/brokers.sh status nats
#   sh scripts/brokers.sh start rabbitmq
#                                      rabbitmq-server as a plain process
#                                      (not a system service), AMQP on
#                                      127.0.0.1:$RABBITMQ_PORT (default
#                                      15673), its own epmd on
#                                      $RABBITMQ_EPMD_PORT (default 14369)
#                                      and distribution port
#                                      $RABBITMQ_DIST_PORT (default 15674)
#
# State (PID file, log, JetStream store) lives in $SLUICE_BROKER_DIR
# (default: $TMPDIR/sluice-brokers-$USER). Idempotent: start does nothing
# when our server already runs, stop does nothing when none runs. The
# server is stopped by the PID it was started with, never by name.
set -eu

NATS_PORT=${NATS_PORT:-14222}
RABBITMQ_PORT=${RABBITMQ_PORT:-15673}
RABBITMQ_DIST_PORT=${RABBITMQ_DIST_PORT:-15674}
RABBITMQ_EPMD_PORT=${RABBITMQ_EPMD_PORT:-14369}
RABBITMQ_NODE=${RABBITMQ_NODE:-sluice-test@localhost}
DIR=${SLUICE_BROKER_DIR:-${TMPDIR:-/tmp}/sluice-brokers-$(id -un)}
WAIT_S=${SLUICE_BROKER_WAIT_S:-15}
RABBIT_WAIT_S=${SLUICE_RABBITMQ_WAIT_S:-60}

usage() {
    echo "usage: $0 start|stop|status nats|rabbitmq" >&2
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

# ---- RabbitMQ ---------------------------------------------------------------
# The node runs from the Debian package's scripts, with every path under
# $DIR/rabbitmq: HOME (the Erlang cookie rabbitmqctl needs), the Mnesia and
# quorum-queue data, logs, an empty plugin list (faster start). epmd is our
# own, on its own port, so that nothing of the system's is touched.

rabbit_env() {
    d="$DIR/rabbitmq"
    export HOME="$d/home"
    export RABBITMQ_NODENAME="$RABBITMQ_NODE"
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$RABBITMQ_PORT"
    export RABBITMQ_DIST_PORT
    export ERL_EPMD_PORT="$RABBITMQ_EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export RABBITMQ_MNESIA_BASE="$d/mnesia"
    export RABBITMQ_LOG_BASE="$d/log"
    export RABBITMQ_PID_FILE="$d/node.pid"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$d/rabbitmq"
    export RABBITMQ_ADVANCED_CONFIG_FILE="$d/advanced.config"
    export RABBITMQ_CONF_ENV_FILE="$d/rabbitmq-env.conf"
}

rabbit_bin() {
    for b in /usr/lib/rabbitmq/bin/$1 /usr/sbin/$1; do
        if [ -x "$b" ]; then
            echo "$b"
            return 0
        fi
    done
    echo "brokers.sh: $1 not found (sh scripts/deps.sh)" >&2
    return 1
}

rabbitmq_start() {
    rabbit_env
    pidf="$d/rabbitmq.pid"
    epmdf="$d/epmd.pid"
    if alive "$pidf"; then
        echo "brokers.sh: rabbitmq already running (pid $(cat "$pidf"))"
        return 0
    fi
    for port in "$RABBITMQ_PORT" "$RABBITMQ_DIST_PORT"; do
        if accepts "$port"; then
            echo "brokers.sh: port $port is taken by another process" >&2
            return 1
        fi
    done
    server=$(rabbit_bin rabbitmq-server)
    ctl=$(rabbit_bin rabbitmqctl)
    # A fresh node each start: tests must not see an earlier run's queues.
    rm -rf "$d/mnesia" "$d/log"
    mkdir -p "$d/home" "$d/mnesia" "$d/log"
    echo '[].' >"$d/enabled_plugins"
    : >"$d/rabbitmq-env.conf"
    echo '[].' >"$d/advanced.config"
    cat >"$d/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RABBITMQ_PORT
loopback_users.guest = true
log.console = false
log.file.level = warning
CONF
    if ! alive "$epmdf"; then
        if accepts "$RABBITMQ_EPMD_PORT"; then
            echo "brokers.sh: epmd port $RABBITMQ_EPMD_PORT is taken" >&2
            return 1
        fi
        epmd -port "$RABBITMQ_EPMD_PORT" -address 127.0.0.1 \
            >"$d/log-epmd.txt" 2>&1 &
        echo $! >"$epmdf"
    fi
    "$server" >"$d/rabbitmq.out" 2>&1 &
    echo $! >"$pidf"
    i=0
    while [ "$i" -lt $((RABBIT_WAIT_S * 10)) ]; do
        if ! alive "$pidf"; then
            echo "brokers.sh: rabbitmq-server exited; see $d/rabbitmq.out" >&2
            tail -15 "$d/rabbitmq.out" >&2 || true
            rm -f "$pidf"
            rabbitmq_stop_epmd
            return 1
        fi
        if accepts "$RABBITMQ_PORT"; then
            # The listener opens late in the boot; await_startup confirms.
            if timeout 20 "$ctl" -n "$RABBITMQ_NODE" await_startup \
                    >/dev/null 2>&1; then
                echo "brokers.sh: rabbitmq ready on 127.0.0.1:$RABBITMQ_PORT" \
                    "(pid $(cat "$pidf"), node $RABBITMQ_NODE, log $d/log)"
                return 0
            fi
        fi
        sleep 0.2
        i=$((i + 2))
    done
    echo "brokers.sh: rabbitmq not ready after ${RABBIT_WAIT_S}s; stopping it" >&2
    tail -15 "$d/rabbitmq.out" >&2 || true
    rabbitmq_stop
    return 1
}

rabbitmq_stop_epmd() {
    epmdf="$DIR/rabbitmq/epmd.pid"
    if alive "$epmdf"; then
        kill -TERM "$(cat "$epmdf")" 2>/dev/null || true
    fi
    rm -f "$epmdf"
}

rabbitmq_stop() {
    rabbit_env
    pidf="$d/rabbitmq.pid"
    if ! alive "$pidf"; then
        rm -f "$pidf"
        rabbitmq_stop_epmd
        echo "brokers.sh: rabbitmq not running"
        return 0
    fi
    pid=$(cat "$pidf")
    # The script's PID is the shell that runs the Erlang VM (or the VM
    # itself after exec); the VM writes its own PID to node.pid.
    vm=$(cat "$d/node.pid" 2>/dev/null || true)
    for p in $pid $vm; do
        kill -TERM "$p" 2>/dev/null || true
    done
    i=0
    while { kill -0 "$pid" 2>/dev/null ||
            { [ -n "$vm" ] && kill -0 "$vm" 2>/dev/null; }; } &&
            [ "$i" -lt 150 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    for p in $pid $vm; do
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -f "$pidf"
    rabbitmq_stop_epmd
    echo "brokers.sh: rabbitmq stopped (pid $pid)"
}

rabbitmq_status() {
    if alive "$DIR/rabbitmq/rabbitmq.pid"; then
        echo "rabbitmq running (pid $(cat "$DIR/rabbitmq/rabbitmq.pid"))"
    else
        echo "rabbitmq not running"
        return 1
    fi
}

[ $# -eq 2 ] || usage
case "$2" in
nats | rabbitmq) ;;
*) usage ;;
esac
case "$1" in
start | stop | status) "$2_$1" ;;
*) usage ;;
esac
