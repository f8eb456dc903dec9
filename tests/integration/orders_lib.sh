# Shared by the orders integration tests (sourced, not run): start the
# payment provider simulator and `sluice run` on a copy of
# examples/orders/service.yaml, on free loopback ports and a temporary data
# directory, and read what a user would read: GET /status/{id} (through
# loadgen), the simulator's /stats, the admin listener's /metrics.
#
# The sourcing test sets NAME and calls `orders_setup SOURCE_DIR BUILD_DIR`.
# Every component is required: a missing binary or tool fails the test.

orders_setup() {
    SRC=$(cd "$1" && pwd) || fail "no source directory $1"
    BUILD=$(cd "$2" && pwd) || fail "no build directory $2"
    S=$BUILD/sluice
    SIM=$BUILD/examples/payment-sim
    PLUGIN=$BUILD/examples/liborders.so
    LOADGEN=$BUILD/tests/loadgen
    EXAMPLE=$SRC/examples/orders/service.yaml
    for f in "$S" "$SIM" "$LOADGEN"; do
        [ -x "$f" ] || fail "missing executable $f (build it first)"
    done
    [ -f "$PLUGIN" ] || fail "missing plugin $PLUGIN"
    [ -f "$EXAMPLE" ] || fail "missing $EXAMPLE"
    for tool in curl jq awk; do
        command -v "$tool" >/dev/null || fail "needs $tool"
    done
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-$NAME.XXXXXX")
    SIM_PID=
    RUN_PID=
    LG_PID=
    PASSED=0
    trap orders_cleanup EXIT
    trap 'exit 1' INT TERM
}

orders_cleanup() {
    for p in $LG_PID $RUN_PID $SIM_PID; do
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "$NAME: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}

fail() {
    echo "$NAME: FAIL: $*" >&2
    if [ -n "${WORK:-}" ] && [ -f "$WORK/run.log" ]; then
        echo "--- last lines of sluice's log:" >&2
        tail -n 5 "$WORK/run.log" >&2
    fi
    exit 1
}

# check DESCRIPTION CONDITION-COMMAND...: one assertion.
check() {
    desc=$1
    shift
    "$@" || fail "$desc"
    PASSED=$((PASSED + 1))
}

note() {
    echo "$NAME: $*"
}

# wait_for SECONDS CONDITION-COMMAND...: polls every 50 ms until the
# condition holds; false after the deadline.
# (A script outside tests/integration sets TEST_LIB_DIR to that directory.)
. "${TEST_LIB_DIR:-$(cd "$(dirname "$0")" && pwd)}/wait_lib.sh"

now_ms() {
    echo $(($(date +%s%N) / 1000000))
}

# start_sim ARGS...: the simulator on a free port; sets SIM_PID, SIM_ADDR.
start_sim() {
    "$SIM" --listen 127.0.0.1:0 "$@" >"$WORK/sim.out" 2>"$WORK/sim.err" &
    SIM_PID=$!
    wait_for 10 grep -q "listening on" "$WORK/sim.out" ||
        fail "payment-sim did not start: $(cat "$WORK/sim.err")"
    SIM_ADDR=$(sed -n 's/^payment-sim listening on //p' "$WORK/sim.out")
}

sim_stat() {
    curl -sf "http://$SIM_ADDR/stats" | jq -er ".$1" ||
        fail "payment-sim /stats has no $1"
}

# example_config OUT [DRAIN_TIMEOUT]: the example's service.yaml with its
# ports (gateway and admin: 0, a free port each; the simulator: SIM_ADDR),
# data directory and plugin path rewritten for this test. Every rewrite is
# checked, so a changed example fails here rather than testing something
# else.
example_config() {
    out=$1
    sed -e "s#listen: 127\.0\.0\.1:8080#listen: 127.0.0.1:0#" \
        -e "s#listen: 127\.0\.0\.1:9090#listen: 127.0.0.1:0#" \
        -e "s#http://127\.0\.0\.1:8090/#http://$SIM_ADDR/#" \
        -e "s#url: embedded:\./data/orders#url: embedded:$WORK/data#" \
        -e "s#path: \./build/examples/liborders\.so#path: $PLUGIN#" \
        "$EXAMPLE" >"$out"
    if [ -n "${2:-}" ]; then
        sed -i "s#^drain_timeout: .*#drain_timeout: $2#" "$out"
        grep -q "^drain_timeout: $2\$" "$out" || fail "config: drain_timeout"
    fi
    [ "$(grep -c 'listen: 127.0.0.1:0$' "$out")" -eq 2 ] ||
        fail "config: gateway and admin listen not rewritten"
    grep -q "url: http://$SIM_ADDR/charges" "$out" ||
        fail "config: payment URL not rewritten"
    grep -q "url: embedded:$WORK/data" "$out" || fail "config: engine URL"
    ! grep -q '\./build/\|embedded:\./\|127\.0\.0\.1:\(8080\|8090\|9090\)\b' \
        "$out" ||
        fail "config: a path or port of the example is left: $out"
}

# start_sluice CONFIG: `sluice run` in the background, its log in
# $WORK/run.log (an earlier run's log is kept as run.log.1, ...); waits for
# its banner and /readyz; sets RUN_PID, GW (gateway base URL) and ADMIN
# (admin base URL).
start_sluice() {
    n=1
    while [ -f "$WORK/run.log" ] && [ -f "$WORK/run.log.$n" ]; do
        n=$((n + 1))
    done
    if [ -f "$WORK/run.log" ]; then mv "$WORK/run.log" "$WORK/run.log.$n"; fi
    "$S" run "$1" 2>"$WORK/run.log" &
    RUN_PID=$!
    wait_for 15 grep -q '^  admin on port' "$WORK/run.log" ||
        fail "sluice run did not start"
    GW=http://127.0.0.1:$(sed -n 's/^  gateway on port \([0-9]*\):.*/\1/p' \
        "$WORK/run.log")
    ADMIN=http://127.0.0.1:$(sed -n 's/^  admin on port \([0-9]*\):.*/\1/p' \
        "$WORK/run.log")
    wait_for 15 curl -sf -o /dev/null "$ADMIN/readyz" ||
        fail "sluice not ready"
}

# stop_sluice DEADLINE_S: SIGTERM; sets STOP_MS (time to exit) and fails
# unless it exits 0 within the deadline.
stop_sluice() {
    STOP_T0=$(now_ms)
    kill -TERM "$RUN_PID"
    await_sluice_exit "$1"
}

# await_sluice_exit DEADLINE_S: after a SIGTERM sent at STOP_T0 (ms), as
# stop_sluice. A second SIGTERM would force the exit, so a test that sent
# its own waits with this.
await_sluice_exit() {
    wait_for "$1" sluice_exited || fail "sluice still running $1 s after SIGTERM"
    STOP_MS=$(($(now_ms) - STOP_T0))
    rc=0
    wait "$RUN_PID" || rc=$?
    RUN_PID=
    [ "$rc" -eq 0 ] || fail "sluice exited $rc after SIGTERM"
}

sluice_exited() {
    ! kill -0 "$RUN_PID" 2>/dev/null
}

peak_rss_kib() {
    awk '/^VmHWM:/ {print $2}' "/proc/$RUN_PID/status"
}

# metric AWK-REGEX: the sum of the /metrics samples whose name and labels
# match (an empty sum is 0).
metric() {
    curl -sf "$ADMIN/metrics" >"$WORK/metrics.txt" || fail "GET /metrics"
    awk -v re="$1" '$1 !~ /^#/ && $1 ~ re {s += $2} END {printf "%d\n", s}' \
        "$WORK/metrics.txt"
}

# statuses IDS [WORD]: the loadgen's status summary of every id, saved in
# $WORK/status.json.
statuses() {
    "$LOADGEN" status "$GW" "$1" -c 16 ${2:+-w "$2"} \
        -f "$WORK/failed.txt" >"$WORK/status.json" ||
        fail "loadgen status failed"
}

st() { # st FIELD: from the last statuses
    jq -er ".$1" "$WORK/status.json"
}

# all_final IDS [WORD]: every id is completed or failed.
all_final() {
    statuses "$@"
    [ "$(jq '.pending + .processing + .missing + .errors' \
        "$WORK/status.json")" -eq 0 ]
}

js() { # js FILE FILTER
    jq -er "$2" "$1" || fail "no $2 in $1: $(cat "$1")"
}
