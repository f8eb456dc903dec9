#!/bin/sh
# Install the Debian 12 packages sluice needs to build, test and benchmark.
# Idempotent: installs only what is missing, so it is cheap to re-run.
set -eu

# clang and libclang-rt-14-dev: the libFuzzer targets; clang-format: the
# style check of make test; sqlite3: the crash
# test reads the inbox; libmicrohttpd and libcurl: the HTTP server and
# client; prometheus: promtool checks /metrics; wrk: the gateway benchmark;
# time and procps: benchmarks and scripts; nats-server and libnats-dev: the
# NATS JetStream engine and the broker its tests run on; rabbitmq-server
# and librabbitmq-dev (rabbitmq-c): the RabbitMQ engine and its broker;
# python3-pika and python3-aio-pika: the foreign AMQP client of the
# interoperability test and the Python service of the RabbitMQ benchmark;
# openssl: brokers.sh makes the RabbitMQ TLS listener's test certificates,
# and the NATS security test its own; python3-cryptography: that test's
# nkeys and JWT credentials (nsc and nk are not packaged).
PACKAGES="build-essential cmake pkg-config clang clang-format libclang-rt-14-dev
libsqlite3-dev sqlite3 libyaml-dev libjansson-dev libcmocka-dev
libmicrohttpd-dev libcurl4-openssl-dev prometheus wrk
time procps nats-server libnats-dev rabbitmq-server librabbitmq-dev
python3-pika python3-aio-pika openssl python3-cryptography"

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
            grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done

if [ -n "$missing" ]; then
    echo "deps.sh: installing:$missing"
    if [ "$(id -u)" -ne 0 ]; then
        SUDO=sudo
    else
        SUDO=
    fi
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq --no-install-recommends $missing
fi
