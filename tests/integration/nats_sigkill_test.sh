#!/bin/sh
# NATS consumer SIGKILL (semantics 5 of docs/semantics.md): three `sluice
# run` processes consume one group; one is SIGKILLed while it holds
# deliveries. Every delivery it had started and not finished must be
# handled to the end by a surviving process (the server redelivers it
# after AckWait), and every published event must be processed: zero loss.
#
# The handler plugin records "S <id> <pid>" when it starts an event and
# "D <id> <pid>" when it is done (then acks), sleeping in between, so
# that the victim holds deliveries when it dies.
#
# usage: nats_sigkill_test.sh SLUICE NATS_TOOL PLUGIN
# Needs the nats-server of scripts/with-brokers.sh ($NATS_URL, default
# nats://127.0.0.1:14222); fails without it.
set -eu

SLUICE=$1
TOOL=$2
PLUGIN=$3
TEST=nats_sigkill_test
. "$(cd "$(dirname "$0")" && pwd)/nats_lib.sh"

[ -x "$SLUICE" ] && [ -x "$TOOL" ] && [ -f "$PLUGIN" ] ||
    fail "missing binaries: $SLUICE $TOOL $PLUGIN"
need_shared_nats

EVENTS=2000
ACK_WAIT_MS=2000
URL=$(nats_url "ns=sigkill-$$&ack_wait_ms=$ACK_WAIT_MS")
LOG="$WORK/handled.txt"
cat >"$WORK/service.yaml" <<YAML
service:
  name: sigkill
engine:
  url: "$URL"
channels:
  - name: kill.events
consumers:
  - channel: kill.events
    group: workers
    prefetch: 16
    concurrency: 4
    handler:
      kind: plugin
      path: $PLUGIN
      config: "$LOG,20"
drain_timeout: 5s
admin:
  enabled: false
YAML

done_ids() { sed -n 's/^D \([^ ]*\) .*/\1/p' "$LOG" 2>/dev/null | sort -u; }
done_count() { done_ids | wc -l; }
done_at_least() { [ "$(done_count)" -ge "$1" ]; }

for n in 1 2 3; do
    sluice_run "run$n" "$WORK/service.yaml"
    eval "RUN$n=\$RUN_PID"
    wait_for 20 grep -qs 'started on nats' "$WORK/run$n.log" ||
        fail "sluice run $n did not start"
done
"$TOOL" publish "$URL" kill.events ev "$EVENTS" 1 2>"$WORK/publish.log" &
PUB=$!
track_pid "$PUB"

# Kill the first process a third of the way in, while it holds deliveries.
wait_for 60 done_at_least $((EVENTS / 3)) || fail "no progress before the kill"
victim=$RUN1
kill -KILL "$victim"
wait "$victim" 2>/dev/null || true
killed_at=$(done_count)
# What the victim started and never finished: its deliveries in flight.
sed -n "s/^S \([^ ]*\) $victim\$/\1/p" "$LOG" | sort -u >"$WORK/victim.started"
sed -n "s/^D \([^ ]*\) $victim\$/\1/p" "$LOG" | sort -u >"$WORK/victim.done"
comm -23 "$WORK/victim.started" "$WORK/victim.done" >"$WORK/victim.lost"
in_flight=$(wc -l <"$WORK/victim.lost")
[ "$in_flight" -gt 0 ] ||
    fail "the victim held no unfinished delivery when killed; raise the sleep"

wait "$PUB" || fail "publish"
wait_for 90 done_at_least "$EVENTS" ||
    fail "only $(done_count) of $EVENTS events processed after the kill"
for n in 2 3; do
    eval "pid=\$RUN$n"
    kill -TERM "$pid"
    wait "$pid" || fail "sluice run $n: drain did not exit 0"
done

# Every unfinished delivery of the victim was finished by a survivor.
missing=0
while read -r id; do
    if ! grep -q "^D $id \(${RUN2}\|${RUN3}\)\$" "$LOG"; then
        echo "$TEST: $id (in flight in the killed process) never finished" >&2
        missing=$((missing + 1))
    fi
done <"$WORK/victim.lost"
[ "$missing" -eq 0 ] || fail "$missing in-flight deliveries of the victim lost"
i=1
: >"$WORK/published"
while [ "$i" -le "$EVENTS" ]; do
    echo "ev-$i" >>"$WORK/published"
    i=$((i + 1))
done
sort -u "$WORK/published" -o "$WORK/published"
lost=$(done_ids | comm -13 - "$WORK/published" | wc -l)
[ "$lost" -eq 0 ] || fail "$lost published events never processed"
total=$(grep -c '^D ' "$LOG")
echo "$TEST: killed pid $victim at $killed_at/$EVENTS processed with" \
    "$in_flight unfinished deliveries; all redelivered to the survivors;" \
    "$EVENTS/$EVENTS processed ($((total - EVENTS)) handled twice)"
