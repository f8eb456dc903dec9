#!/bin/sh
# NATS crash loop (semantics 5 of docs/semantics.md): a poison event kills
# its worker process (SIGKILL from the handler, nothing settled) every
# time it is handled; a supervisor loop starts `sluice run` again after
# each death. The poison must end in the group's dead-letter channel with
# its reason and attempt count after at most max_attempts deaths, and
# leave the stream, while every other event is processed. Two ways, one phase each:
#
#   A. default server limit (MaxDeliver = 2 x max_attempts + 20): the
#      delivery after the last attempt is dead-lettered by the engine at
#      fetch, reason max_attempts;
#   B. max_deliver = max_attempts in the engine URL: the server stops
#      delivering after the last attempt and publishes its max-deliveries
#      advisory; the engine's advisory listener dead-letters the event,
#      reason max_deliveries.
#
# usage: nats_crashloop_test.sh SLUICE NATS_TOOL PLUGIN
# Needs the nats-server of scripts/with-brokers.sh ($NATS_URL, default
# nats://127.0.0.1:14222); fails without it.
set -eu

SLUICE=$1
TOOL=$2
PLUGIN=$3
TEST=nats_crashloop_test
. "$(cd "$(dirname "$0")" && pwd)/nats_lib.sh"

[ -x "$SLUICE" ] && [ -x "$TOOL" ] && [ -f "$PLUGIN" ] ||
    fail "missing binaries: $SLUICE $TOOL $PLUGIN"
need_shared_nats

MAX_ATTEMPTS=3

# supervise PHASE CONFIG: start `sluice run` again whenever it dies, until
# $WORK/stop-PHASE exists; each start is a line in $WORK/starts-PHASE.
supervise() {
    while [ ! -f "$WORK/stop-$1" ]; do
        echo start >>"$WORK/starts-$1"
        "$SLUICE" run -q "$2" 2>>"$WORK/run-$1.log" &
        echo $! >"$WORK/child-$1"
        rc=0
        wait $! || rc=$?
        if [ "$rc" -eq 2 ]; then
            return 1 # a configuration error: no point in starting again
        fi
    done
}

done_count() { # PHASE: distinct events handled to the end
    [ -f "$WORK/handled-$1.txt" ] || { echo 0; return; }
    sed -n 's/^D \([^ ]*\) .*/\1/p' "$WORK/handled-$1.txt" | sort -u | wc -l
}
all_done() { [ "$(done_count "$1")" -ge 40 ]; }
dead_listed() { # URL: the poison is in the dead-letter channel
    "$SLUICE" dlq list -e "$1" -C loop.events -g workers 2>/dev/null |
        grep -q '^poison '
}

run_phase() { # PHASE URL_PARAMS WANT_REASON
    phase=$1
    url=$(nats_url "ns=crashloop$phase-$$&ack_wait_ms=1000$2")
    cat >"$WORK/service-$phase.yaml" <<YAML
service:
  name: crashloop-$phase
engine:
  url: "$url"
channels:
  - name: loop.events
consumers:
  - channel: loop.events
    group: workers
    prefetch: 1
    concurrency: 1
    max_attempts: $MAX_ATTEMPTS
    backoff: [200ms]
    handler:
      kind: plugin
      path: $PLUGIN
      config: "$WORK/handled-$phase.txt"
drain_timeout: 2s
admin:
  enabled: false
YAML
    supervise "$phase" "$WORK/service-$phase.yaml" &
    sup=$!
    track_pid "$sup"
    # The group exists once the first run declared it; a group gets the
    # events published after it was declared.
    wait_for 20 grep -qs 'started on nats' "$WORK/run-$phase.log" ||
        fail "phase $phase: sluice run did not start"
    "$TOOL" publish "$url" loop.events ok 20 1 ||
        fail "phase $phase: publish"
    "$TOOL" publish "$url" loop.events poison 0 1 ||
        fail "phase $phase: publish poison"
    "$TOOL" publish "$url" loop.events late 20 1 ||
        fail "phase $phase: publish"

    wait_for 90 dead_listed "$url" ||
        fail "phase $phase: the poison never reached the dead-letter channel"
    wait_for 60 all_done "$phase" ||
        fail "phase $phase: only $(done_count "$phase") of 40 other events processed"
    touch "$WORK/stop-$phase"
    kill -TERM "$(cat "$WORK/child-$phase")" 2>/dev/null || true
    wait "$sup" || true

    line=$("$SLUICE" dlq list -e "$url" -C loop.events -g workers |
        grep '^poison ')
    reason=$(echo "$line" | awk '{print $2}')
    attempts=$(echo "$line" | sed -n 's/.*attempts=\([0-9]*\).*/\1/p')
    starts=$(wc -l <"$WORK/starts-$phase")
    [ "$reason" = "$3" ] ||
        fail "phase $phase: dead letter reason '$reason', want $3 ($line)"
    [ "$attempts" = "$MAX_ATTEMPTS" ] ||
        fail "phase $phase: dead letter attempts=$attempts, want $MAX_ATTEMPTS"
    # At most one death per attempt: the poison never reached a handler
    # after its last attempt. (Fewer when a process gave the poison back
    # unstarted before dying: its memory of that release died with it, so
    # the next process counts that delivery as an attempt.)
    deaths=$((starts - 1))
    [ "$deaths" -ge 1 ] && [ "$deaths" -le "$MAX_ATTEMPTS" ] ||
        fail "phase $phase: $deaths deaths of sluice run, want 1..$MAX_ATTEMPTS"
    left=$("$TOOL" stream-msgs "$url" loop.events) ||
        fail "phase $phase: stream info"
    [ "$left" -eq 0 ] ||
        fail "phase $phase: $left message(s) left in the stream"
    grep -q '^S poison' "$WORK/handled-$phase.txt" &&
        fail "phase $phase: the poison was recorded as handled"
    echo "phase $phase: poison dead-lettered ($reason, attempts=$attempts)" \
        "after $deaths deaths; 40 other events processed; stream empty"
}

run_phase A "" max_attempts
run_phase B "&max_deliver=$MAX_ATTEMPTS" max_deliveries
echo "$TEST: passed"
