#!/bin/sh
# Start and stop the brokers the tests need, on loopback high ports.
#
#   sh scripts/brokers.sh start nats   nats-server with JetStream on
#                                      127.0.0.1:$NATS_PORT (default 14222)
#   sh scripts/brokers.sh stop nats    stop exactly the server started here
#   sh scripts/brokers.sh status nats
#   sh scripts/brokers.sh start nats-cluster
#                                      three nats-servers with JetStream in
#                                      one cluster ("sluice-test"), clients
#                                      on 127.0.0.1:$NATS_CLUSTER_PORT+1..3
#                                      (default 14231-14233), routes on
#                                      $NATS_ROUTE_PORT+1..3 (16231-16233),
#                                      each with its own store; start waits
#                                      for a JetStream meta leader
#   sh scripts/brokers.sh kill-node N nats-cluster
#                                      SIGKILL node N (1-3), by its PID
#   sh scripts/brokers.sh start-node N nats-cluster
#                                      start node N again, keeping its store
#   sh scripts/brokers.sh start rabbitmq
#                                      rabbitmq-server as a plain process
#                                      (not a system service), AMQP on
#                                      127.0.0.1:$RABBITMQ_PORT (default
#                                      15673), AMQP over TLS on
#                                      $RABBITMQ_TLS_PORT (default 15675;
#                                      a CA, server and client certificates
#                                      made with openssl at each start, see
#                                      tls-dir), its own epmd on
#                                      $RABBITMQ_EPMD_PORT (default 14369)
#                                      and distribution port
#                                      $RABBITMQ_DIST_PORT (default 15674)
#   sh scripts/brokers.sh tls-dir rabbitmq
#                                      print the directory of the TLS
#                                      files: ca.pem, server.pem/.key,
#                                      client.pem/.key (signed by ca.pem),
#                                      other-ca.pem and rogue-client.pem/.key
#                                      (signed by other-ca.pem)
#   sh scripts/brokers.sh alarm|clear-alarm rabbitmq
#                                      raise / clear a memory alarm on our
#                                      node (memory high watermark 0 /
#                                      0.4): the broker blocks publishing
#                                      connections (connection.blocked)
#   sh scripts/brokers.sh freeze|thaw rabbitmq
#                                      SIGSTOP / SIGCONT our node's VM by
#                                      its PID: a broker that stops
#                                      answering without closing its
#                                      sockets (heartbeat tests)
#   sh scripts/brokers.sh kill rabbitmq
#                                      SIGKILL our node's VM by its PID (a
#                                      broker crash; chaos tests); its data
#                                      stays
#   sh scripts/brokers.sh restart-keep-data rabbitmq
#                                      start it again on the data it had
#                                      (queues, messages), unlike start,
#                                      which begins with a fresh node
#   sh scripts/brokers.sh await-durable rabbitmq QUEUE...
#                                      wait until the node has written the
#                                      Raft registration of each quorum
#                                      queue QUEUE (vhost "/") to its data
#                                      directory, so that it survives a
#                                      SIGKILL (see rabbitmq_await_durable)
#
# State (PID file, log, JetStream store) lives in $SLUICE_BROKER_DIR
# (default: $TMPDIR/sluice-brokers-$USER). Idempotent: start does nothing
# when our server already runs, stop does nothing when none runs. The
# server is stopped by the PID it was started with, never by name.
set -eu

NATS_PORT=${NATS_PORT:-14222}
NATS_CLUSTER_PORT=${NATS_CLUSTER_PORT:-14230}
NATS_ROUTE_PORT=${NATS_ROUTE_PORT:-16230}
NATS_MON_PORT=${NATS_MON_PORT:-18230}
RMQ_PORT=${RABBITMQ_PORT:-15673}
RMQ_TLS_PORT=${RABBITMQ_TLS_PORT:-15675}
RMQ_DIST_PORT=${RABBITMQ_DIST_PORT:-15674}
RMQ_EPMD_PORT=${RABBITMQ_EPMD_PORT:-14369}
RMQ_NODE=${RABBITMQ_NODE:-sluice-test@localhost}
# A CI container may run as a UID without a name.
ME=$(id -un 2>/dev/null || id -u)
DIR=${SLUICE_BROKER_DIR:-${TMPDIR:-/tmp}/sluice-brokers-$ME}
WAIT_S=${SLUICE_BROKER_WAIT_S:-15}
RABBIT_WAIT_S=${SLUICE_RABBITMQ_WAIT_S:-60}

usage() {
    echo "usage: $0 start|stop|status nats|nats-cluster|rabbitmq" >&2
    echo "       $0 kill-node|start-node N nats-cluster" >&2
    echo "       $0 kill|restart-keep-data rabbitmq" >&2
    echo "       $0 await-durable rabbitmq QUEUE..." >&2
    echo "       $0 tls-dir|freeze|thaw|alarm|clear-alarm rabbitmq" >&2
    exit 2
}

# True while the process in pid file $1 is alive.
alive() {
    [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null
}

# True once something listens on TCP port $1 (IPv4 or IPv6).
accepts() {
    # bash's /dev/tcp is not POSIX; nc may be missing: ask the kernel.
    port_hex=$(printf '%04X' "$1")
    grep -q ":$port_hex 00000000:0000 0A" /proc/net/tcp 2>/dev/null ||
        grep -q ":$port_hex 0\{32\}:0000 0A" /proc/net/tcp6 2>/dev/null
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

# ---- a three-node NATS JetStream cluster -------------------------------------
# Node N (1-3): client port NATS_CLUSTER_PORT+N, route port NATS_ROUTE_PORT+N,
# monitoring port NATS_MON_PORT+N (for /jsz: the meta leader), store and log
# in $DIR/nats-cluster/nN. Stopped (and killed) by the PIDs recorded here.

ncl_dir() { echo "$DIR/nats-cluster/n$1"; }

ncl_start_node() { # N [fresh]
    n=$1
    d=$(ncl_dir "$n")
    pidf="$d/nats.pid"
    if alive "$pidf"; then
        return 0
    fi
    port=$((NATS_CLUSTER_PORT + n))
    if accepts "$port"; then
        echo "brokers.sh: port $port is taken by another process" >&2
        return 1
    fi
    bin=$(nats_find)
    if [ "${2:-}" = fresh ]; then
        rm -rf "$d"
    fi
    mkdir -p "$d/store"
    routes=
    for m in 1 2 3; do
        if [ "$m" != "$n" ]; then
            routes="${routes:+$routes,}nats-route://127.0.0.1:$((NATS_ROUTE_PORT + m))"
        fi
    done
    cat >"$d/nats.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:$port
http: 127.0.0.1:$((NATS_MON_PORT + n))
jetstream { store_dir: "$d/store" }
cluster {
  name: sluice-test
  listen: 127.0.0.1:$((NATS_ROUTE_PORT + n))
  routes: [$routes]
}
CONF
    "$bin" -c "$d/nats.conf" -l "$d/nats.log" >/dev/null 2>&1 &
    echo $! >"$pidf"
}

# True once node $1 answers /jsz with a meta leader.
ncl_has_leader() {
    command -v curl >/dev/null 2>&1 || return 1
    curl -sf "http://127.0.0.1:$((NATS_MON_PORT + $1))/jsz" 2>/dev/null |
        grep -q '"leader": *"n[123]"'
}

ncl_wait() { # wait until every running node has a meta leader
    i=0
    while [ "$i" -lt $((WAIT_S * 10)) ]; do
        ok=1
        for n in 1 2 3; do
            pidf="$(ncl_dir "$n")/nats.pid"
            if [ -f "$pidf" ] && ! alive "$pidf"; then
                echo "brokers.sh: cluster node $n exited; see" \
                    "$(ncl_dir "$n")/nats.log" >&2
                tail -5 "$(ncl_dir "$n")/nats.log" >&2 || true
                return 1
            fi
            if alive "$pidf" && ! ncl_has_leader "$n"; then
                ok=0
            fi
        done
        if [ "$ok" = 1 ]; then
            return 0
        fi
        sleep 0.1
        i=$((i + 1))
    done
    echo "brokers.sh: nats-cluster has no JetStream meta leader after" \
        "${WAIT_S}s" >&2
    return 1
}

nats_cluster_start() {
    command -v curl >/dev/null 2>&1 ||
        { echo "brokers.sh: nats-cluster needs curl" >&2; return 1; }
    for n in 1 2 3; do
        ncl_start_node "$n" fresh || { nats_cluster_stop >/dev/null; return 1; }
    done
    if ! ncl_wait; then
        nats_cluster_stop >/dev/null
        return 1
    fi
    echo "brokers.sh: nats-cluster ready on 127.0.0.1:$((NATS_CLUSTER_PORT + 1))," \
        "$((NATS_CLUSTER_PORT + 2)), $((NATS_CLUSTER_PORT + 3))" \
        "(logs $DIR/nats-cluster/n*/nats.log)"
}

ncl_stop_node() { # N SIGNAL
    pidf="$(ncl_dir "$1")/nats.pid"
    if ! alive "$pidf"; then
        rm -f "$pidf"
        return 0
    fi
    pid=$(cat "$pidf")
    kill "-$2" "$pid" 2>/dev/null || true
    i=0
    while kill -0 "$pid" 2>/dev/null && [ "$i" -lt 100 ]; do
        sleep 0.1
        i=$((i + 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
    rm -f "$pidf"
}

nats_cluster_stop() {
    for n in 1 2 3; do
        ncl_stop_node "$n" TERM
    done
    echo "brokers.sh: nats-cluster stopped"
}

nats_cluster_status() {
    up=0
    for n in 1 2 3; do
        if alive "$(ncl_dir "$n")/nats.pid"; then
            echo "nats-cluster node $n running (pid $(cat "$(ncl_dir "$n")/nats.pid"))"
            up=$((up + 1))
        else
            echo "nats-cluster node $n not running"
        fi
    done
    [ "$up" -gt 0 ]
}

# ---- RabbitMQ ---------------------------------------------------------------
# The node runs from the Debian package's scripts as the calling user (root
# included: the scripts under /usr/lib/rabbitmq/bin do not switch users),
# with every path under $DIR/rabbitmq: HOME and the Erlang cookie
# rabbitmqctl needs, the Mnesia and quorum-queue data, logs, config, an
# empty plugin list (faster start). Nothing of the system's installation is
# read (/etc/rabbitmq, a system service, its epmd, inherited RABBITMQ_* and
# ERL_* variables). epmd is our own, on its own port, started before the
# node; the node is told not to start one itself, so every process we start
# has a recorded PID.

rabbit_env() {
    d="$DIR/rabbitmq"
    # Whatever the caller's environment says about RabbitMQ or Erlang
    # (a CI image, a developer's shell) must not reach this node.
    for v in $(env | sed -n 's/^\(RABBITMQ_[A-Za-z0-9_]*\)=.*/\1/p
                           s/^\(ERL_[A-Za-z0-9_]*\)=.*/\1/p'); do
        unset "$v"
    done
    unset NOTIFY_SOCKET
    export HOME="$d/home"
    export RABBITMQ_NODENAME="$RMQ_NODE"
    export RABBITMQ_USE_LONGNAME=false
    export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    export RABBITMQ_NODE_PORT="$RMQ_PORT"
    export RABBITMQ_DIST_PORT="$RMQ_DIST_PORT"
    export ERL_EPMD_PORT="$RMQ_EPMD_PORT"
    export ERL_EPMD_ADDRESS=127.0.0.1
    export ERL_CRASH_DUMP="$d/erl_crash.dump"
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-start_epmd false"
    export RABBITMQ_MNESIA_BASE="$d/mnesia"
    export RABBITMQ_LOG_BASE="$d/log"
    export RABBITMQ_PID_FILE="$d/node.pid"
    export RABBITMQ_ENABLED_PLUGINS_FILE="$d/enabled_plugins"
    export RABBITMQ_CONFIG_FILE="$d/rabbitmq"
    export RABBITMQ_CONFIG_FILES="$d/conf.d"
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

# A fresh Erlang cookie, readable by its owner only (Erlang refuses any
# other mode), shared by the node and rabbitmqctl through HOME.
rabbit_cookie() {
    cookie="$HOME/.erlang.cookie"
    rm -f "$cookie"
    (
        umask 077
        od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f' 'A-F' \
            >"$cookie"
    )
    chmod 400 "$cookie"
}

# Tell why the node did not come up: its console output, its log, the
# last rabbitmqctl answer.
rabbit_explain() {
    for f in "$d/rabbitmq.out" "$d/log/$RMQ_NODE.log" "$d/ctl.err" \
            "$d/log-epmd.txt"; do
        if [ -s "$f" ]; then
            echo "---- last lines of $f:" >&2
            tail -15 "$f" >&2 || true
        fi
    done
    if [ -f "$d/erl_crash.dump" ]; then
        echo "---- Erlang crash dump: $d/erl_crash.dump ($(sed -n \
            's/^Slogan: //p' "$d/erl_crash.dump" | head -1))" >&2
    fi
}

# True while our node runs: the script, and the VM once it wrote its PID
# (a VM killed on its own leaves the script behind for a moment).
rabbit_alive() {
    alive "$DIR/rabbitmq/rabbitmq.pid" &&
        { [ ! -f "$DIR/rabbitmq/node.pid" ] ||
            alive "$DIR/rabbitmq/node.pid"; }
}

# A CA, a server certificate for localhost / 127.0.0.1 and a client
# certificate it signed; a second CA and a client certificate it signed
# (tests of refusals). Made fresh unless $1 = keep and they exist.
rabbit_tls_files() {
    t="$d/tls"
    if [ "${1:-}" = keep ] && [ -f "$t/client.key" ]; then
        return 0
    fi
    if ! command -v openssl >/dev/null 2>&1; then
        echo "brokers.sh: openssl not found (sh scripts/deps.sh)" >&2
        return 1
    fi
    rm -rf "$t"
    mkdir -p "$t"
    (
        set -e
        cd "$t"
        umask 077
        for ca in ca other-ca; do
            openssl req -x509 -newkey rsa:2048 -nodes -days 30 \
                -subj "/CN=sluice test $ca" -keyout "$ca.key" \
                -out "$ca.pem" 2>/dev/null
        done
        printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' >server.ext
        printf 'extendedKeyUsage=clientAuth\n' >client.ext
        # name signer extfile
        for c in "server ca server.ext" "client ca client.ext" \
                "rogue-client other-ca client.ext"; do
            set -- $c
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" \
                -keyout "$1.key" -out "$1.csr" 2>/dev/null
            openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" \
                -CAcreateserial -days 30 -extfile "$3" -out "$1.pem" \
                2>/dev/null
        done
        rm -f ./*.csr ./*.srl ./*.ext
        chmod 644 ./*.pem
    ) >/dev/null 2>&1
    for f in ca.pem server.pem server.key client.pem client.key \
            other-ca.pem rogue-client.pem rogue-client.key; do
        if [ ! -s "$t/$f" ]; then
            echo "brokers.sh: making the TLS files in $t failed ($f)" >&2
            return 1
        fi
    done
}

rabbitmq_start() {
    rabbit_env
    pidf="$d/rabbitmq.pid"
    epmdf="$d/epmd.pid"
    if rabbit_alive; then
        echo "brokers.sh: rabbitmq already running (pid $(cat "$pidf"))"
        return 0
    fi
    if alive "$pidf"; then
        # The VM died (SIGKILL in a chaos test): clear what is left.
        rabbitmq_stop >/dev/null
        rabbit_env
    fi
    for port in "$RMQ_PORT" "$RMQ_DIST_PORT" "$RMQ_TLS_PORT"; do
        if accepts "$port"; then
            echo "brokers.sh: port $port is taken by another process" \
                "(set RABBITMQ_PORT / RABBITMQ_DIST_PORT /" \
                "RABBITMQ_TLS_PORT)" >&2
            return 1
        fi
    done
    server=$(rabbit_bin rabbitmq-server)
    ctl=$(rabbit_bin rabbitmqctl)
    if ! command -v epmd >/dev/null 2>&1; then
        echo "brokers.sh: epmd not found (erlang-base; sh scripts/deps.sh)" >&2
        return 1
    fi
    host=${RMQ_NODE#*@}
    if ! getent hosts "$host" >/dev/null 2>&1; then
        echo "brokers.sh: host name '$host' of node $RMQ_NODE does not" \
            "resolve (add it to /etc/hosts or set RABBITMQ_NODE)" >&2
        return 1
    fi
    # A fresh node each start: tests must not see an earlier run's queues.
    # restart-keep-data keeps the node's data (a restart after a crash).
    if [ "${RMQ_KEEP_DATA:-0}" = 1 ]; then
        rm -rf "$d/conf.d" "$d/erl_crash.dump" "$d/ctl.err"
    else
        rm -rf "$d/mnesia" "$d/log" "$d/conf.d" "$d/erl_crash.dump" \
            "$d/ctl.err"
    fi
    mkdir -p "$d/home" "$d/mnesia" "$d/log" "$d/conf.d"
    if [ "${RMQ_KEEP_DATA:-0}" = 1 ]; then
        rabbit_tls_files keep || return 1
    else
        rabbit_tls_files || return 1
    fi
    rabbit_cookie
    echo '[].' >"$d/enabled_plugins"
    : >"$d/rabbitmq-env.conf"
    echo '[].' >"$d/advanced.config"
    cat >"$d/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$RMQ_PORT
listeners.ssl.default = 127.0.0.1:$RMQ_TLS_PORT
ssl_options.cacertfile = $d/tls/ca.pem
ssl_options.certfile = $d/tls/server.pem
ssl_options.keyfile = $d/tls/server.key
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = false
loopback_users.guest = true
log.console = false
log.file.level = warning
CONF
    if ! alive "$epmdf"; then
        if accepts "$RMQ_EPMD_PORT"; then
            echo "brokers.sh: epmd port $RMQ_EPMD_PORT is taken" \
                "(set RABBITMQ_EPMD_PORT)" >&2
            return 1
        fi
        epmd -port "$RMQ_EPMD_PORT" -address 127.0.0.1 \
            >"$d/log-epmd.txt" 2>&1 &
        echo $! >"$epmdf"
        i=0
        while ! accepts "$RMQ_EPMD_PORT"; do
            if ! alive "$epmdf" || [ "$i" -ge 50 ]; then
                echo "brokers.sh: epmd did not start on port" \
                    "$RMQ_EPMD_PORT" >&2
                rabbit_explain
                rabbitmq_stop_epmd
                return 1
            fi
            sleep 0.1
            i=$((i + 1))
        done
    fi
    "$server" >"$d/rabbitmq.out" 2>&1 &
    echo $! >"$pidf"
    # One deadline bounds the whole wait, rabbitmqctl calls included.
    deadline=$(($(date +%s) + RABBIT_WAIT_S))
    while :; do
        if ! alive "$pidf"; then
            echo "brokers.sh: rabbitmq-server exited during start-up" >&2
            rabbit_explain
            rm -f "$pidf"
            rabbitmq_stop_epmd
            return 1
        fi
        left=$((deadline - $(date +%s)))
        if [ "$left" -le 0 ]; then
            break
        fi
        if accepts "$RMQ_PORT"; then
            # The listener opens late in the boot; await_startup confirms.
            t=$((left < 20 ? left : 20))
            if timeout -k 2 "$t" "$ctl" -n "$RMQ_NODE" -t "$t" \
                    await_startup >/dev/null 2>"$d/ctl.err"; then
                echo "brokers.sh: rabbitmq ready on 127.0.0.1:$RMQ_PORT" \
                    "and TLS $RMQ_TLS_PORT (pid $(cat "$pidf")," \
                    "node $RMQ_NODE, log $d/log)"
                return 0
            fi
        fi
        sleep 0.2
    done
    echo "brokers.sh: rabbitmq not ready after ${RABBIT_WAIT_S}s" \
        "(SLUICE_RABBITMQ_WAIT_S); stopping it" >&2
    rabbit_explain
    rabbitmq_stop >/dev/null
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
    rm -f "$pidf" "$d/node.pid"
    rabbitmq_stop_epmd
    echo "brokers.sh: rabbitmq stopped (pid $pid)"
}

# A broker crash: SIGKILL the VM (and the script that runs it) by the
# recorded PIDs; epmd and the data stay for restart-keep-data.
rabbitmq_kill() {
    rabbit_env
    pidf="$d/rabbitmq.pid"
    if ! alive "$pidf"; then
        echo "brokers.sh: rabbitmq not running" >&2
        return 1
    fi
    pid=$(cat "$pidf")
    vm=$(cat "$d/node.pid" 2>/dev/null || true)
    for p in $vm $pid; do
        kill -KILL "$p" 2>/dev/null || true
    done
    i=0
    while { kill -0 "$pid" 2>/dev/null ||
            { [ -n "$vm" ] && kill -0 "$vm" 2>/dev/null; }; } &&
            [ "$i" -lt 100 ]; do
        sleep 0.05
        i=$((i + 1))
    done
    rm -f "$pidf" "$d/node.pid"
    echo "brokers.sh: rabbitmq killed (vm ${vm:-?}, pid $pid)"
}

rabbitmq_restart_keep_data() {
    RMQ_KEEP_DATA=1 rabbitmq_start
}

# RabbitMQ 3.10 (ra 2.2) records which Raft server holds each quorum queue
# in a dets table, quorum/<node>/names.dets, which it writes lazily (dets
# caches writes; ra asks for a save after 500 ms without access; ra 2.10+
# syncs each registration, ra pull request 443). A node SIGKILLed before a
# new queue's registration reached the file restarts with the queue in its
# schema but without its Raft server: it starts a new, empty one under a
# new id that never elects a leader, and the queue's messages stay in the
# orphaned server's log (basic.consume and publishes time out). A crash
# test must therefore crash the node only once the queues it uses are on
# disk, as they are for any queue declared more than a few seconds
# before. This reads a copy of the file with a separate Erlang VM.
rabbitmq_await_durable() {
    rabbit_env
    shift 2
    f="$d/mnesia/$RMQ_NODE/quorum/$RMQ_NODE/names.dets"
    tmp="$d/names-copy.dets"
    deadline=$(($(date +%s) + RABBIT_WAIT_S))
    while :; do
        missing=
        if [ -f "$f" ] && cp "$f" "$tmp" 2>/dev/null; then
            for q in "$@"; do
                if ! ERL_CRASH_DUMP_BYTES=0 erl -noshell -eval "
                    {ok, T} = dets:open_file(t, [{file, \"$tmp\"},
                                                {repair, true}]),
                    K = list_to_atom(\"%2F_\" ++ \"$q\"),
                    halt(case dets:lookup(T, K) of [] -> 1; _ -> 0 end)." \
                        >/dev/null 2>&1; then
                    missing="$missing '$q'"
                fi
            done
        else
            missing=" (no $f)"
        fi
        rm -f "$tmp"
        if [ -z "$missing" ]; then
            return 0
        fi
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "brokers.sh: not on disk after ${RABBIT_WAIT_S}s:$missing" >&2
            return 1
        fi
        sleep 0.2
    done
}

# SIGSTOP / SIGCONT the VM: it keeps its sockets open and answers nothing.
rabbitmq_signal_vm() { # SIGNAL
    rabbit_env
    if ! rabbit_alive || [ ! -f "$d/node.pid" ]; then
        echo "brokers.sh: rabbitmq not running" >&2
        return 1
    fi
    kill "-$1" "$(cat "$d/node.pid")"
}

# A memory alarm on the node (rabbitmqctl set_vm_memory_high_watermark):
# the broker blocks every publishing connection (connection.blocked) until
# the alarm clears. 0 raises it at once; RabbitMQ's default is 0.4.
rabbitmq_watermark() { # FRACTION
    rabbit_env
    if ! rabbit_alive; then
        echo "brokers.sh: rabbitmq not running" >&2
        return 1
    fi
    timeout -k 2 20 "$(rabbit_bin rabbitmqctl)" -n "$RMQ_NODE" -t 15 \
        set_vm_memory_high_watermark "$1" >/dev/null
}

rabbitmq_status() {
    if rabbit_alive; then
        echo "rabbitmq running (pid $(cat "$DIR/rabbitmq/rabbitmq.pid"))"
    else
        echo "rabbitmq not running"
        return 1
    fi
}

case "${1:-}" in
kill-node | start-node)
    [ $# -eq 3 ] && [ "$3" = nats-cluster ] || usage
    case "$2" in
    1 | 2 | 3) ;;
    *) usage ;;
    esac
    if [ "$1" = kill-node ]; then
        ncl_stop_node "$2" KILL
        echo "brokers.sh: nats-cluster node $2 killed"
    else
        ncl_start_node "$2" && ncl_wait &&
            echo "brokers.sh: nats-cluster node $2 started" \
                "(pid $(cat "$(ncl_dir "$2")/nats.pid"))"
    fi
    exit $?
    ;;
await-durable)
    [ $# -ge 3 ] && [ "$2" = rabbitmq ] || usage
    rabbitmq_await_durable "$@"
    exit $?
    ;;
esac
[ $# -eq 2 ] || usage
case "$2" in
nats | rabbitmq) b=$2 ;;
nats-cluster) b=nats_cluster ;;
*) usage ;;
esac
case "$1:$b" in
start:* | stop:* | status:*) "${b}_$1" ;;
kill:rabbitmq) rabbitmq_kill ;;
freeze:rabbitmq) rabbitmq_signal_vm STOP ;;
thaw:rabbitmq) rabbitmq_signal_vm CONT ;;
alarm:rabbitmq) rabbitmq_watermark 0 ;;
clear-alarm:rabbitmq) rabbitmq_watermark 0.4 ;;
tls-dir:rabbitmq) rabbit_env && echo "$d/tls" ;;
restart-keep-data:rabbitmq) rabbitmq_restart_keep_data ;;
*) usage ;;
esac
