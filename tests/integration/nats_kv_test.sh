#!/bin/sh
# The idempotency store on JetStream KV (semantics 7 of docs/semantics.md):
#
# 1. Race. Two `sluice run` processes consume one idempotent group with
#    `inbox: nats-kv`. Every event id is published twice in a row (the
#    second copy past the stream's duplicate detection, as after its
#    window), so that the two copies are handled at the same moment by
#    different workers and processes. Each id must be handled exactly once
#    in total, and the two processes together must count one duplicate
#    per id. Control: the same with an SQLite inbox per process must show
#    ids handled twice - else the test does not race and proves nothing.
# 2. TTL. A group with idempotency_ttl 2s: a copy published while the
#    record lives is skipped; one published after it expired is handled
#    again.
#
# usage: nats_kv_test.sh SLUICE NATS_TOOL PLUGIN
# Needs the nats-server of scripts/with-brokers.sh ($NATS_URL, default
# nats://127.0.0.1:14222); fails without it.
set -eu

SLUICE=$1
TOOL=$2
PLUGIN=$3
TEST=nats_kv_test
. "$(cd "$(dirname "$0")" && pwd)/nats_lib.sh"

[ -x "$SLUICE" ] && [ -x "$TOOL" ] && [ -f "$PLUGIN" ] ||
    fail "missing binaries: $SLUICE $TOOL $PLUGIN"
command -v curl >/dev/null 2>&1 || fail "needs curl"
need_shared_nats

IDS=300

# config NAME URL INBOX: a service with the racing group (kv.events/race)
# and the TTL group (kv.ttl/ttl), both idempotent, both recording into
# $WORK/NAME.txt through the plugin (5 ms per event).
config() {
    cat >"$WORK/$1.yaml" <<YAML
service:
  name: kv-$1
engine:
  url: "$2"
channels:
  - name: kv.events
  - name: kv.ttl
consumers:
  - channel: kv.events
    group: race
    prefetch: 2
    concurrency: 2
    idempotency: true
    handler:
      kind: plugin
      path: $PLUGIN
      config: "$WORK/handled-$4.txt,5"
  - channel: kv.ttl
    group: ttl
    prefetch: 1
    concurrency: 1
    idempotency: true
    idempotency_ttl: 2s
    handler:
      kind: plugin
      path: $PLUGIN
      config: "$WORK/ttl-$4.txt"
inbox: "$3"
drain_timeout: 5s
admin:
  listen: 127.0.0.1:0
YAML
}

handled() { # FILE: lines "D <id> <pid>" -> ids, one per handling
    sed -n 's/^D \([^ ]*\) .*/\1/p' "$1" 2>/dev/null || true
}
handled_distinct_at_least() { # FILE N
    [ "$(handled "$1" | sort -u | wc -l)" -ge "$2" ]
}
admin_of() { # NAME: the admin base URL from the banner
    echo "http://127.0.0.1:$(sed -n 's/^  admin on port \([0-9]*\):.*/\1/p' \
        "$WORK/$1.log")"
}
# The duplicates a process counted for a group (its /metrics).
duplicates() { # NAME GROUP
    curl -s "$(admin_of "$1")/metrics" |
        sed -n "s/^sluice_events_consumed_total{.*group=\"$2\".*outcome=\"duplicate\"} \([0-9]*\).*/\1/p" |
        head -1 | grep . || echo 0
}

# start NAME: run $WORK/NAME.yaml; RUN_PID, banner in $WORK/NAME.log.
start() {
    sluice_run "$1" "$WORK/$1.yaml"
    eval "PID_$1=\$RUN_PID"
    wait_for 20 grep -qs '^  admin on port' "$WORK/$1.log" ||
        fail "sluice run $1 did not start"
}
stop() {
    eval "p=\$PID_$1"
    kill -TERM "$p"
    wait "$p" || fail "sluice run $1: drain did not exit 0"
}

# ---- 1. race, JetStream KV shared by both processes ----------------------
URL=$(nats_url "ns=kv-$$&ack_wait_ms=5000")
config a "$URL" nats-kv kv
config b "$URL" nats-kv kv
start a
start b
"$TOOL" publish "$URL" kv.events ev "$IDS" 2 || fail "publish"
wait_for 60 handled_distinct_at_least "$WORK/handled-kv.txt" "$IDS" ||
    fail "only $(handled "$WORK/handled-kv.txt" | sort -u | wc -l) of $IDS ids handled"
# Both copies of every id are settled once the duplicates are counted.
all_dups() { [ $(($(duplicates a race) + $(duplicates b race))) -ge "$IDS" ]; }
wait_for 60 all_dups ||
    fail "duplicates counted: $(duplicates a race) + $(duplicates b race), want $IDS"
dups=$(($(duplicates a race) + $(duplicates b race)))
total=$(handled "$WORK/handled-kv.txt" | wc -l)
twice=$(handled "$WORK/handled-kv.txt" | sort | uniq -d | wc -l)
by_a=$(grep -c "^D .* $PID_a\$" "$WORK/handled-kv.txt" || true)
by_b=$(grep -c "^D .* $PID_b\$" "$WORK/handled-kv.txt" || true)
[ "$twice" -eq 0 ] && [ "$total" -eq "$IDS" ] ||
    fail "with nats-kv $twice ids were handled twice ($total handlings for $IDS ids)"
[ "$dups" -eq "$IDS" ] || fail "$dups duplicates counted, want $IDS"
[ "$by_a" -gt 0 ] && [ "$by_b" -gt 0 ] ||
    fail "one process did all the work ($by_a / $by_b): no race between processes"
echo "race, nats-kv: $IDS ids x 2 copies over 2 processes ($by_a / $by_b" \
    "handlings): each id handled once, $dups duplicates skipped"

# ---- 2. TTL (same processes) ---------------------------------------------
ttl_count() { handled "$WORK/ttl-kv.txt" | grep -c '^t-1$' || true; }
ttl_count_is() { [ "$(ttl_count)" -eq "$1" ]; }
"$TOOL" publish "$URL" kv.ttl t-1 0 1 || fail "publish t-1"
wait_for 20 ttl_count_is 1 || fail "t-1 not handled"
"$TOOL" publish "$URL" kv.ttl t-1 0 1 nodedup || fail "publish t-1 again"
ttl_dups() { [ $(($(duplicates a ttl) + $(duplicates b ttl))) -ge 1 ]; }
wait_for 20 ttl_dups || fail "the copy within the TTL was not skipped"
[ "$(ttl_count)" -eq 1 ] || fail "the copy within the TTL was handled"
sleep 3
"$TOOL" publish "$URL" kv.ttl t-1 0 1 nodedup || fail "publish t-1 late"
wait_for 20 ttl_count_is 2 || fail "the copy after the TTL was not handled"
echo "ttl: within 2s a copy is skipped, after it the id is handled again"
stop a
stop b

# ---- control: an SQLite inbox per process --------------------------------
URL2=$(nats_url "ns=kvc-$$&ack_wait_ms=5000")
config c "$URL2" "$WORK/c-inbox.db" ctl
config d "$URL2" "$WORK/d-inbox.db" ctl
start c
start d
"$TOOL" publish "$URL2" kv.events ev "$IDS" 2 || fail "publish (control)"
wait_for 60 handled_distinct_at_least "$WORK/handled-ctl.txt" "$IDS" ||
    fail "control: not every id handled"
sleep 1
stop c
stop d
twice=$(handled "$WORK/handled-ctl.txt" | sort | uniq -d | wc -l)
[ "$twice" -gt 0 ] ||
    fail "control: no id handled twice with per-process inboxes; the" \
        "race above proves nothing (raise IDS)"
echo "control, SQLite inbox per process: $twice of $IDS ids handled twice"
echo "$TEST: passed"
