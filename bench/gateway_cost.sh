#!/bin/sh
# CPU cost of an accepted order, in instructions, independent of the
# machine's load: the service of gateway_bench.sh runs under callgrind, and
# after a warm-up the instructions of every thread are counted while
# gateway_load paced sends N orders. See docs/benchmarks.md, "Gateway".
#
#   sh bench/gateway_cost.sh [BUILD_DIR [N [RATE]]]
#
# N orders (default 4000) at RATE req/s (default 400: a rate callgrind keeps
# up with, so the figure is the work per request, not the cost of a backlog).
# GATEWAY_THREADS as for gateway_bench.sh (default 8). GATEWAY_STATUS="start:
# processing, ack: completed" has the consumer report statuses (the
# consumers[].status mapping). GATEWAY_COST_OUT=DIR
# keeps the callgrind files (one per thread) there for callgrind_annotate.
# Prints one line:
#   requests=N accepted=A per_request=I http=… status_writer=… timer=…
#   engine=… consumer=… other=…
# per_request counts every thread of the process, which is what a request
# costs the machine; the rest splits it by thread: the HTTP server threads
# (parsing, the gateway's handler, answers, libmicrohttpd), the gateway's
# status writer and timer, the engine's writer (its SQLite commits and the
# confirm callbacks, which resume the connections), the consumer. The
# engine's share depends on how many publishes share a commit, which varies
# from run to run at a low rate; the gateway's threads vary much less.
set -eu

build=${1:-build}
n=${2:-4000}
rate=${3:-400}
threads=${GATEWAY_THREADS:-8}
load="$build/gateway_load"
sluice="$build/sluice"
for prog in "$load" "$sluice"; do
    if [ ! -x "$prog" ]; then
        echo "gateway_cost: $prog not found; build first (make build)" >&2
        exit 1
    fi
done
command -v valgrind >/dev/null 2>&1 || {
    echo "gateway_cost: valgrind not found (apt-get install valgrind)" >&2
    exit 1
}

root=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
dir=$(mktemp -d "$root/sluice-gwcost.XXXXXX")
out=${GATEWAY_COST_OUT:-$dir}
pid=
cleanup() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

. "$(dirname "$0")/gateway_service.sh"
SERVICE_NAME=gwcost write_config "$dir/cost.yaml" "$dir/data" "  threads: $threads"
if [ -n "${GATEWAY_STATUS:-}" ]; then
    echo "    status: {$GATEWAY_STATUS}" >>"$dir/cost.yaml"
fi

log="$dir/run.log"
valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes \
    --callgrind-out-file="$out/callgrind.out.%p" \
    "$sluice" run "$dir/cost.yaml" >"$log" 2>&1 &
pid=$!
port=
for _ in $(seq 600); do
    port=$(sed -n 's/.*gateway on port \([0-9]*\).*/\1/p' "$log")
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "gateway_cost: sluice run did not start:" >&2
    cat "$log" >&2
    exit 2
fi
url="http://127.0.0.1:$port/orders"
callgrind_control -i on "$pid" >/dev/null 2>&1
# Warm-up: connections, SQLite pages, the writer threads.
"$load" paced --url "$url" --rate "$rate" --seconds 1 --connections 16 \
    >/dev/null
callgrind_control -z "$pid" >/dev/null 2>&1
secs=$(awk -v n="$n" -v r="$rate" 'BEGIN { printf "%.3f", n / r }')
line=$("$load" paced --url "$url" --rate "$rate" --seconds "$secs" \
    --connections 16)
# Let the last confirms, status rows and consumer ACKs finish.
sleep 1
callgrind_control -d "$pid" >/dev/null 2>&1
ok=$(printf '%s\n' "$line" | tr ' ' '\n' | sed -n 's/^ok_n=//p')
# Each thread's file of the dump (callgrind.out.PID.1-THREAD): its
# instructions, classified by the thread's main function.
for f in "$out"/callgrind.out."$pid".1-*; do
    v=$(sed -n 's/^summary: *\([0-9]*\).*/\1/p' "$f")
    if [ -z "$v" ]; then
        continue
    fi
    kind=other
    for k in on_request:http pending_writer:status_writer timer_main:timer \
        writer_main:engine worker_main:consumer; do
        if grep -q "^c\{0,1\}fn=([0-9]*) ${k%%:*}\$" "$f"; then
            kind=${k#*:}
            break
        fi
    done
    echo "$kind $v"
done | awk -v ok="$ok" -v n="$n" '
    { t[$1] += $2; all += $2 }
    END {
        d = ok > 0 ? ok : 1
        printf "requests=%d accepted=%d per_request=%.0f", n, ok, all / d
        split("http status_writer timer engine consumer other", ks, " ")
        for (i = 1; i <= 6; i++) printf " %s=%.0f", ks[i], t[ks[i]] / d
        printf "\n"
    }'
