#!/bin/sh
# Admission by predicted wait, over real sockets with a real consumer.
#
# One worker takes 10 ms per event (about 100 events/s); the route gives
# every request a 4 s deadline (short, so that the test is quick; long
# enough that a stall of a few hundred ms on a busy host, after a request
# was admitted, does not make it late: the prediction keeps 10% in hand). After a warm-up at half capacity (so that a
# drain rate is measured), loadgen offers 1 000 requests/s, ten times the
# capacity, for 5 s. Then:
#
#   * every accepted request's event was handled before its deadline (the
#     plugin compares its finishing time with the event's `deadline`), and
#     none expired in the queue;
#   * every refusal is a 503 with Retry-After, answered at once (its
#     latency is far below the deadline: it never waited in the queue);
#   * the queue stayed near deadline x drain rate (about 400), far from the
#     channel's max_length (20 000).
#
# Bounds are generous on purpose; timing figures are printed, not asserted.
#
# With STAGES 2 the route feeds a fast relay group whose handler forwards
# to the slow stage's channel: the slowest group on the path (learned from
# what the relay publishes) must bound the wait, not the fast first stage.
#
# usage: admission_test.sh SOURCE_DIR BUILD_DIR [STAGES]
set -eu
STAGES=${3:-1}
NAME=admission_test
. "$(dirname "$0")/orders_lib.sh"
. "$(dirname "$0")/admission_lib.sh"
orders_setup "$1" "$2"
admission_setup
POLL_PID=
trap 'touch "$WORK/poll.stop" 2>/dev/null || true; orders_cleanup' EXIT

DEADLINE_MS=4000
CAPACITY=100
MAX_LENGTH=20000
admission_config "$WORK/service.yaml" true 4s 10 "$MAX_LENGTH" "$STAGES"
start_sluice "$WORK/service.yaml"
# A quiet service admits: one job, then nothing for 6 s, then one more.
# Its throughput meanwhile (one event in 6 s) is demand, not capacity:
# taken for a drain rate it predicted a 6.5 s wait for the second job, past
# the 4 s deadline, and refused it on an idle service.
quiet_post() {
    curl -s -o /dev/null -w '%{http_code}' -H 'Content-Type: application/json' \
        -d '{"n":0}' "$GW/jobs"
}
check "a quiet service admits the first job" [ "$(quiet_post)" = 202 ]
sleep 6
check "and the next one, 6 s later" [ "$(quiet_post)" = 202 ]
QUIET=2
admission_run 50 3 1000 5
figures >"$WORK/figures.txt"
note "figures: $(cat "$WORK/figures.txt")"
P=$WORK/post.json
note "offered: $(cat "$P")"

sent=$(fig sent)
accepted=$(fig accepted)
refused=$(fig refused)
check "every answer is 202 or 503: $(jq -c .by_code "$P")" \
    [ "$((accepted + refused))" -eq "$sent" ]
check "the warm-up was all accepted" \
    [ "$(fig warm_accepted)" -eq "$(js "$WORK/warm.json" .sent)" ]
check "some requests accepted under overload" [ "$accepted" -gt 0 ]
check "most of the overload refused: $refused of $sent" \
    [ "$((refused * 2))" -gt "$sent" ]
check "every 503 carries Retry-After" \
    [ "$(js "$P" .retry_after_missing)" -eq 0 ]
total=$((accepted + $(fig warm_accepted) + QUIET))
check "every accepted event was handled: $(fig handled) of $total" \
    [ "$(fig handled)" -eq "$total" ]
check "none was handled after its deadline: $(fig late) late" \
    [ "$(fig late)" -eq 0 ]
check "none expired in the queue: $(fig expired)" [ "$(fig expired)" -eq 0 ]
# The event's time is taken as its body is decoded, its deadline a little
# later, as the request is admitted.
check "every deadline is acceptance + 4 s" \
    awk -v d="$DEADLINE_MS" '$2 - $1 < d || $2 - $1 > d + 100 { exit 1 }' \
    "$WORK/done.txt"
# A refusal does not wait for the queue: even the slowest is answered well
# within the deadline (the 202s take as long as the engine's confirm).
rej_max=$(js "$P" '.max_ms_by_class.rejected')
check "every refusal was immediate: slowest ${rej_max} ms" \
    awk -v v="$rej_max" -v d="$DEADLINE_MS" 'BEGIN { exit !(v < d / 2) }'
# The queue holds about deadline x drain rate; three times that is far
# from max_length and would still catch a gateway that ignored the wait.
max_depth=$(fig max_depth)
bound=$((3 * DEADLINE_MS * CAPACITY / 1000))
check "the queue stayed near deadline x rate: max ${max_depth} <= ${bound}" \
    [ "$max_depth" -le "$bound" ]
check "the queue filled some: max ${max_depth} >= 20" [ "$max_depth" -ge 20 ]
check "the gateway counted the same 503s" \
    [ "$(metric '^sluice_http_requests_total\{server="gateway",route="/jobs",code="503"')" \
        -eq "$refused" ]

stop_sluice 20
echo "$NAME: $PASSED passed, 0 failed"
