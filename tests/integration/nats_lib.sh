# Shared by the NATS integration tests (sourced; POSIX sh).
#
# The caller sets TEST (its name, for messages) and may set NATS_URL (the
# shared server, default nats://127.0.0.1:14222, started by `make test`
# through scripts/with-brokers.sh). Tests that need a server of their own
# (TLS, authentication, a server killed and restarted) start it with
# nats_start on a free loopback port, from a generated configuration, and
# it is stopped by its PID when the test exits. Everything lives in $WORK.

NATS_URL=${NATS_URL:-nats://127.0.0.1:14222}
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-$TEST.XXXXXX")
PIDS=

nats_lib_cleanup() {
    for p in $PIDS; do
        kill -KILL "$p" 2>/dev/null || true
    done
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "$TEST: work directory kept: $WORK" >&2
    else
        rm -rf "$WORK"
    fi
}
trap nats_lib_cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "$TEST: FAIL: $*" >&2
    for f in "$WORK"/*.log; do
        if [ -s "$f" ]; then
            echo "--- last lines of $f:" >&2
            tail -n 8 "$f" >&2
        fi
    done
    exit 1
}

# Remember a PID to kill (SIGKILL) when the test exits.
track_pid() { PIDS="$PIDS $1"; }

. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

nats_bin() {
    for b in nats-server /usr/sbin/nats-server /usr/bin/nats-server; do
        if command -v "$b" >/dev/null 2>&1; then
            command -v "$b"
            return 0
        fi
    done
    fail "nats-server not found (sh scripts/deps.sh)"
}

# nats_start NAME CONF: run nats-server -c CONF (its log $WORK/NAME.log)
# and wait until it is ready; sets NATS_PID. The configuration names the
# port; the caller waits for it with `listening`.
nats_start() {
    "$(nats_bin)" -c "$2" -l "$WORK/$1.log" >/dev/null 2>&1 &
    NATS_PID=$!
    track_pid "$NATS_PID"
    wait_for 15 grep -qs "Server is ready" "$WORK/$1.log" ||
        fail "nats-server $1 did not start"
}

# The shared server must be there: the test fails (never skips) without it.
# nats_url PARAMS: $NATS_URL with PARAMS (a=b&c=d) added to its query,
# which may already have one (?domain=...).
nats_url() {
    case $NATS_URL in
    *\?*) echo "$NATS_URL&$1" ;;
    *) echo "$NATS_URL?$1" ;;
    esac
}

need_shared_nats() {
    hostport=${NATS_URL#nats://}
    hostport=${hostport%%\?*}
    listening "${hostport##*:}" ||
        fail "no nats-server on $NATS_URL (make test starts it;" \
            "sh scripts/brokers.sh start nats)"
}

# sluice_run NAME CONFIG: `sluice run` in the background (stderr to
# $WORK/NAME.log); sets RUN_PID.
sluice_run() {
    "$SLUICE" run "$2" >"$WORK/$1.out" 2>"$WORK/$1.log" &
    RUN_PID=$!
    track_pid "$RUN_PID"
}
