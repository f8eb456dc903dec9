#!/bin/sh
# The HTTP gateway on the embedded engine, measured from outside with wrk
# and an open-loop generator (gateway_load paced), next to the raw engine
# publish rate (gateway_load raw). See docs/benchmarks.md, "Gateway".
#
#   sh bench/gateway_bench.sh [BUILD_DIR [SUMMARY_FILE]]
#
# BENCH_QUICK=1 shortens every phase (about 25 s instead of about 80 s).
# BENCH_TMPDIR as for run.sh: where the engine's and the gateway's SQLite
# files go.
#
# The service under test (`sluice run`, config written below): one route,
# POST /orders -> orders.created with the orders example's validation
# rules; the channel's max_length is 1 000 000 (never the limit); one
# consumer group whose handler is `append` to /dev/null: a real delivery,
# fetch and ACK through the consumer runtime, with a write(2) per event
# and nothing else, so the figure is the gateway's and the engine's. The
# engine is embedded with SQLite sync=normal, the default; the gateway's
# state (idempotency keys, status projection) is a SQLite file next to it.
# The open-loop phases use gateway_load's epoll client (GATEWAY_CLIENT=curl
# selects the libcurl client of earlier runs: same schedule, about three
# times the generator's CPU per request, which on two cores comes out of
# the service's share); each run prints the generator's CPU per request.
# gateway.threads is 8 (GATEWAY_THREADS overrides it): no server thread
# waits for a confirm (the connection is suspended until the engine
# confirms), so the threads only do the requests' CPU work, and a few per
# core are enough. The service's default (gateway.threads 64, the setting
# that suited the earlier design, where a thread held each request until
# its confirm) is measured once as well.
set -eu

build=${1:-build}
summary=${2:-}
quick=${BENCH_QUICK:-0}
load="$build/gateway_load"
sluice="$build/sluice"

for prog in "$load" "$sluice"; do
    if [ ! -x "$prog" ]; then
        echo "gateway_bench: $prog not found; build first (make build)" >&2
        exit 1
    fi
done
if ! command -v wrk >/dev/null 2>&1; then
    echo "gateway_bench: wrk not found (apt-get install wrk)" >&2
    exit 1
fi
here=$(cd "$(dirname "$0")" && pwd)

if [ "$quick" = 1 ]; then
    rounds=1 raw_s=1 wrk_s=2 paced_s=3 warm_s=1
else
    rounds=3 raw_s=2 wrk_s=5 paced_s=10 warm_s=2
fi
conns=64           # wrk connections at saturation (wrk -c256 is shown once)
threads=${GATEWAY_THREADS:-8} # gateway.threads
client=${GATEWAY_CLIENT:-epoll} # gateway_load paced --client
over_capacity=1000 # overload: the client's rate limit, requests/s
over_factor=10

root=${BENCH_TMPDIR:-${TMPDIR:-/tmp}}
dir=$(mktemp -d "$root/sluice-gwbench.XXXXXX")
pid=
stop_service() {
    if [ -n "$pid" ]; then
        kill -TERM "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
        pid=
    fi
}
cleanup() {
    stop_service
    rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 2' INT TERM

. "$(dirname "$0")/gateway_service.sh"

# start_service CONFIG: starts sluice run, sets pid and url.
start_service() {
    log="$dir/run.$$.log"
    "$sluice" run "$1" >"$log" 2>&1 &
    pid=$!
    port=
    for _ in $(seq 100); do
        port=$(sed -n 's/.*gateway on port \([0-9]*\).*/\1/p' "$log")
        [ -n "$port" ] && break
        sleep 0.05
    done
    if [ -z "$port" ]; then
        echo "gateway_bench: sluice run did not start:" >&2
        cat "$log" >&2
        exit 2
    fi
    url="http://127.0.0.1:$port/orders"
}

kv() { # kv KEY LINE
    printf '%s\n' "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}
median() { # median of the arguments
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 }
        END { if (NR % 2) print v[(NR + 1) / 2];
              else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
ms() { # a wrk latency ("812.00us", "3.21ms", "1.02s") in ms
    echo "$1" | awk '/us$/ { sub(/us$/, ""); print $0 / 1000; next }
        /ms$/ { sub(/ms$/, ""); print $0 + 0; next }
        /s$/ { sub(/s$/, ""); print $0 * 1000 }'
}
# wrk_run CONNECTIONS SECONDS: sets wrk_acc (2xx/s), wrk_p50, wrk_p99 (ms)
wrk_run() {
    out=$(wrk -t2 -c"$1" -d"$2"s --latency -s "$here/wrk_orders.lua" "$url")
    total=$(printf '%s\n' "$out" | awk '/requests in/ { print $1 }')
    secs=$(printf '%s\n' "$out" | awk '/requests in/ { sub(/s,$/, "", $4); print $4 }')
    bad=$(printf '%s\n' "$out" | awk '/Non-2xx/ { print $NF }')
    errs=$(printf '%s\n' "$out" | awk '/Socket errors/ { print }')
    wrk_acc=$(awk -v t="$total" -v b="${bad:-0}" -v s="$secs" \
        'BEGIN { printf "%.0f", (t - b) / s }')
    wrk_p50=$(ms "$(printf '%s\n' "$out" | awk '$1 == "50%" { print $2 }')")
    wrk_p99=$(ms "$(printf '%s\n' "$out" | awk '$1 == "99%" { print $2 }')")
    if [ -n "${bad:-}" ] || [ -n "$errs" ]; then
        echo "  (wrk: ${bad:-0} non-2xx answers ${errs})"
    fi
}

echo "== gateway: POST /orders on embedded sync=normal, wrk and gateway_load =="
write_config "$dir/main.yaml" "$dir/data" "  threads: $threads"
start_service "$dir/main.yaml"
# Warm-up: SQLite files, the connection pool, the page cache.
wrk -t2 -c"$conns" -d1s -s "$here/wrk_orders.lua" "$url" >/dev/null

# (a) saturation and (d) the raw engine, alternating.
accs='' p50s='' p99s='' raws=''
for r in $(seq "$rounds"); do
    raw=$(kv raw_confirmed_per_s "$("$load" raw --seconds "$raw_s")")
    wrk_run "$conns" "$wrk_s"
    printf '  round %d: raw engine %s confirmed publishes/s; gateway (wrk -c%d) %s accepted/s, p50 %s ms, p99 %s ms\n' \
        "$r" "$raw" "$conns" "$wrk_acc" "$wrk_p50" "$wrk_p99"
    raws="$raws $raw" accs="$accs $wrk_acc" p50s="$p50s $wrk_p50" p99s="$p99s $wrk_p99"
done
# shellcheck disable=SC2086
{
    sat=$(median $accs)
    sat_p50=$(median $p50s)
    sat_p99=$(median $p99s)
    raw=$(median $raws)
}
wrk_run 256 "$wrk_s"
c256="$wrk_acc accepted/s, p50 $wrk_p50 ms, p99 $wrk_p99 ms"
echo "  wrk -c256 once: $c256"
ratio=$(awk -v g="$sat" -v r="$raw" 'BEGIN { printf "%.3f", g / r }')
echo "  median: gateway $sat accepted/s (p50 $sat_p50 ms, p99 $sat_p99 ms);" \
    "raw engine $raw/s; gateway / raw = $ratio"

# (b) half of saturation, open loop.
half=$(awk -v s="$sat" 'BEGIN { printf "%.0f", s / 2 }')
line=$("$load" paced --client "$client" --url "$url" --rate "$half" \
    --seconds "$paced_s" --warmup "$warm_s" --connections 128)
half_p50=$(awk -v v="$(kv ok_p50_us "$line")" 'BEGIN { printf "%.2f", v / 1000 }')
half_p99=$(awk -v v="$(kv ok_p99_us "$line")" 'BEGIN { printf "%.2f", v / 1000 }')
echo "  half of saturation, $half req/s offered for ${paced_s} s: $(kv ok_per_s "$line") accepted/s," \
    "p50 $half_p50 ms, p99 $half_p99 ms (errors $(kv errors "$line"), late by > 1 ms $(kv late_1ms "$line");" \
    "generator ($client) $(kv cpu_us_per_req "$line") us CPU per request)"
stop_service

# (c) 10x overload: the client's token bucket (capacity) is the limit.
offered=$((over_capacity * over_factor))
write_config "$dir/over.yaml" "$dir/data-over" \
    "  threads: $threads
  client_rate: $over_capacity
  client_burst: $((over_capacity / 10))"
start_service "$dir/over.yaml"
line=$("$load" paced --client "$client" --url "$url" --rate "$offered" \
    --seconds "$paced_s" --warmup "$warm_s" --connections 128)
stop_service
ov_ok=$(kv ok_per_s "$line")
ov_rej=$(kv rej_per_s "$line")
ov_ok_p99=$(awk -v v="$(kv ok_p99_us "$line")" 'BEGIN { printf "%.2f", v / 1000 }')
ov_rej_p50=$(awk -v v="$(kv rej_p50_us "$line")" 'BEGIN { printf "%.2f", v / 1000 }')
ov_rej_p99=$(awk -v v="$(kv rej_p99_us "$line")" 'BEGIN { printf "%.2f", v / 1000 }')
echo "  10x overload, $offered req/s offered against a $over_capacity req/s client limit:" \
    "$ov_ok accepted/s (p99 $ov_ok_p99 ms), $ov_rej refused/s (429; p50 $ov_rej_p50 ms, p99 $ov_rej_p99 ms)"

# The service default gateway.threads (see docs/configuration.md), once.
write_config "$dir/def.yaml" "$dir/data-def" ""
start_service "$dir/def.yaml"
wrk -t2 -c"$conns" -d1s -s "$here/wrk_orders.lua" "$url" >/dev/null
wrk_run "$conns" "$wrk_s"
stop_service
def_acc=$wrk_acc
echo "  default gateway.threads, wrk -c$conns once: $def_acc accepted/s, p50 $wrk_p50 ms, p99 $wrk_p99 ms"
echo

met() { # met VALUE OP LIMIT -> met|missed
    awk -v v="$1" -v l="$3" -v op="$2" 'BEGIN {
        ok = (op == ">=") ? v >= l : v < l; print ok ? "met" : "missed" }'
}
count() { # thousands separators
    printf '%s\n' "$1" | sed -e ':a' -e 's/\([0-9]\)\([0-9]\{3\}\)\($\|,\)/\1,\2\3/; ta'
}
rows=$(cat <<EOF
gateway accepted orders/s (wrk -c$conns)	$(count "$sat")	>= 20,000	$(awk -v s="$sat" 'BEGIN { printf "%.2f", s / 20000 }')
gateway accepted/s, default threads	$(count "$def_acc")	-	-
raw engine confirmed publishes/s	$(count "$raw")	-	-
gateway / raw engine	$ratio	-	-
gateway p50 / p99 at saturation (ms)	$sat_p50 / $sat_p99	-	-
gateway p99 at half saturation (ms)	$half_p99	< 10	$(met "$half_p99" "<" 10)
10x overload: refusals p99 (ms)	$ov_rej_p99	< 1	$(met "$ov_rej_p99" "<" 1)
10x overload: accepted p99 (ms)	$ov_ok_p99	< 50	$(met "$ov_ok_p99" "<" 50)
EOF
)
if [ -n "$summary" ]; then
    printf '%s\n' "$rows" >>"$summary"
else
    printf '%s\n' "$rows" | awk -F '\t' '
        BEGIN { printf "%-44s %14s %14s %7s\n", "figure", "measured", "target", "ratio" }
        { printf "%-44s %14s %14s %7s\n", $1, $2, $3, $4 }'
fi
