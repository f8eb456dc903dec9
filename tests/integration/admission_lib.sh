# Shared by the admission test and the overload benchmark (sourced after
# orders_lib.sh and orders_setup): `sluice run` with one route POST /jobs
# onto the channel "jobs", consumed by the group "work" with one worker and
# the paced plugin (SLEEP_MS per event: about 1000 / SLEEP_MS events/s);
# loadgen offers the load while /scale is polled for the queue's depth;
# the plugin's file says when each handled event was accepted, its deadline
# and when it was done.

# admission_setup: finds the plugin; sets PACED.
admission_setup() {
    PACED=$BUILD/tests/libpaced_plugin.so
    [ -f "$PACED" ] || fail "missing plugin $PACED (build it first)"
}

# admission_config OUT ADMIT_BY_WAIT DEADLINE SLEEP_MS MAX_LENGTH [STAGES]
# STAGES 2: the route's channel "jobs" is relayed by a fast group "relay"
# (kind forward) to "jobs.paced", where "work" is the slow stage; the
# gateway learns that path as the relay publishes.
admission_config() {
    if [ "${6:-1}" = 2 ]; then
        work_channel=jobs.paced
        relay="  - channel: jobs
    group: relay
    prefetch: 64
    handler: {kind: forward, to: jobs.paced}"
        paced_channel="  - {name: jobs.paced, max_length: $5}"
    else
        work_channel=jobs
        relay=
        paced_channel=
    fi
    cat >"$1" <<YAML
service:
  name: admission
engine:
  url: embedded:$WORK/data
  sync: normal
producer:
  max_in_flight: 10000
channels:
  - {name: jobs, max_length: $5}
$paced_channel
gateway:
  listen: 127.0.0.1:0
  threads: 8
  routes:
    - path: /jobs
      channel: jobs
      type: job.submitted
      deadline: $3
      admit_by_wait: $2
admin:
  listen: 127.0.0.1:0
consumers:
$relay
  - channel: $work_channel
    group: work
    prefetch: 1
    concurrency: 1
    handler:
      kind: plugin
      path: $PACED
      config: "$WORK/done.txt,$4"
drain_timeout: 10s
YAML
}

# backlog: ready + delayed + in flight of the group, from /scale.
backlog() {
    curl -sf "$ADMIN/scale?group=work" |
        jq -er '.depth + .in_flight + .delayed'
}

# Poll the backlog every 100 ms into $WORK/depth.txt until poll.stop.
poll_depth() {
    while [ ! -f "$WORK/poll.stop" ]; do
        backlog >>"$WORK/depth.txt" 2>/dev/null || true
        sleep 0.1
    done
}

drained() {
    [ "$(backlog)" -eq 0 ]
}

# admission_run WARM_RATE WARM_S RATE SECONDS: a warm-up at WARM_RATE (so
# that a drain rate is measured), then RATE for SECONDS while the depth is
# polled; waits until the queue is empty. Leaves $WORK/warm.json,
# $WORK/post.json, $WORK/depth.txt and $WORK/done.txt.
admission_run() {
    rm -f "$WORK/poll.stop" "$WORK/depth.txt"
    "$LOADGEN" post "$GW/jobs" -d "$2" -r "$1" -c 8 \
        >"$WORK/warm.json" || fail "loadgen warm-up failed"
    poll_depth &
    POLL_PID=$!
    "$LOADGEN" post "$GW/jobs" -d "$4" -r "$3" -c 64 -o "$WORK/ids.txt" \
        >"$WORK/post.json" || fail "loadgen post failed"
    touch "$WORK/poll.stop"
    wait "$POLL_PID" || true
    POLL_PID=
    wait_for 120 drained || fail "the queue did not drain within 120 s"
}

# figures: one line of key=value from the last run: sent, accepted and
# refused of the overload phase; warm_accepted; of both phases, handled
# events, late (handled after their deadline), expired (dead-lettered by
# the consumer for the deadline), unserved (accepted but not handled by
# their deadline: late, or dropped unhandled by the consumer or the engine),
# p50_ms and p99_ms from acceptance to handled; max_depth of the polls.
figures() {
    sent=$(js "$WORK/post.json" .sent)
    acc=$(js "$WORK/post.json" '.by_code["202"] // 0')
    ref=$(js "$WORK/post.json" '.by_code["503"] // 0')
    wacc=$(js "$WORK/warm.json" '.by_code["202"] // 0')
    maxd=$(sort -n "$WORK/depth.txt" | tail -n 1)
    expired=$(metric '^sluice_events_consumed_total\{channel="jobs",group="work",outcome="expired"')
    late=$(awk '$3 > $2 { n++ } END { print n + 0 }' "$WORK/done.txt")
    # Latency of handled work, acceptance to done, sorted for percentiles.
    awk '{ print $3 - $1 }' "$WORK/done.txt" | sort -n >"$WORK/lat.txt"
    awk -v sent="$sent" -v acc="$acc" -v ref="$ref" -v wacc="$wacc" \
        -v maxd="${maxd:-0}" -v expired="$expired" -v late="$late" '
        { lat[NR] = $1 }
        END {
            n = NR
            p50 = n ? lat[int(n * 0.50 + 0.999999)] : -1
            p99 = n ? lat[int(n * 0.99 + 0.999999)] : -1
            printf "sent=%d accepted=%d refused=%d warm_accepted=%d " \
                   "handled=%d late=%d expired=%d unserved=%d " \
                   "p50_ms=%d p99_ms=%d max_depth=%d\n", sent, acc, ref,
                   wacc, n, late, expired, acc + wacc - (n - late), p50,
                   p99, maxd
        }' "$WORK/lat.txt"
}

# fig KEY: a value of the line `figures` printed into $WORK/figures.txt.
fig() {
    tr ' ' '\n' <"$WORK/figures.txt" | sed -n "s/^$1=//p"
}
