#!/bin/sh
# The hello example, as `make run` starts it: greetings come out, retries
# happen, bad input becomes a dead letter with its reason, replay works
# after a stop, SIGTERM drains with exit 0. An event dead-lettered twice
# (republished past the dedup window) gives two dead letters with one
# event id: replay --id still finds a dead letter behind them, a dlqid
# picks exactly one, and an id that matches nothing is an error.
#
# usage: example_hello_test.sh SOURCE_DIR BUILD_DIR
set -eu
SRC=$(cd "$1" && pwd)
BUILD=$(cd "$2" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-hello.XXXXXX")
PID=
cleanup() {
    if [ -n "$PID" ]; then kill -KILL "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM
fail() {
    echo "example_hello_test: FAIL: $*" >&2
    exit 1
}
. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"

# The example's config, with its paths pointing into this test's folders.
mkdir -p "$WORK/build/examples"
ln -s "$BUILD/examples/libgreeter.so" "$WORK/build/examples/libgreeter.so"
# A short dedup window, so that the same id can be published again.
sed 's/^  sync: normal$/  sync: normal\n  dedup_window: 1ms/' \
    "$SRC/examples/hello/service.yaml" > "$WORK/service.yaml"
grep -q 'dedup_window: 1ms' "$WORK/service.yaml" || fail "config edit"
# Tests run in parallel: the admin listener on a free port, not 9090.
printf 'admin:\n  listen: "127.0.0.1:0"\n' >> "$WORK/service.yaml"
cd "$WORK"
S="$BUILD/sluice"
E="embedded:./data/hello"

"$S" run -q service.yaml 2>run.log &
PID=$!
wait_for 10 test -f data/hello/inbox.db || fail "service did not start"
"$S" publish -e "$E" -C hello.names -q '{"name":"Ada"}' || fail "publish"
"$S" publish -e "$E" -C hello.names -q '{"name":"flaky"}' || fail "publish"
"$S" publish -e "$E" -C hello.names -q -i bad-1 'not json' || fail "publish"
"$S" publish -e "$E" -C hello.names -q -n 200 '{"name":"Grace"}' ||
    fail "publish many"

greeted() { [ "$(grep -c 'Hello, ' data/hello/greetings.log)" -ge 202 ]; }
wait_for 10 greeted || fail "greetings missing: $(cat data/hello/greetings.log)"
grep -q "Hello, Ada!" data/hello/greetings.log || fail "no greeting for Ada"
grep -q "Hello, flaky!" data/hello/greetings.log || fail "flaky not retried"
grep -q '"attempt":"2".*flaky on attempt 2' run.log || fail "no retry logged"
audited() { [ -f data/hello/greeted-ids.txt ] &&
            [ "$(wc -l < data/hello/greeted-ids.txt)" -ge 202 ]; }
wait_for 10 audited || fail "hello.greeted events not consumed"

dead() { "$S" dlq list -e "$E" -C hello.names -g greeter | grep -q bad-1; }
wait_for 10 dead || fail "bad input not dead-lettered"
"$S" dlq list -e "$E" -C hello.names -g greeter | grep -q "bad-1  rejected" ||
    fail "dead letter lacks its reason"
"$S" dlq show -e "$E" -C hello.names -g greeter --id bad-1 |
    grep -q '"dlqerror":"data must be' || fail "dead letter lacks its error"

dlq_count() { "$S" dlq list -e "$E" -C hello.names -g greeter | grep -c "^$1 " || true; }
dead_n() { [ "$(dlq_count "$1")" = "$2" ]; }
"$S" publish -e "$E" -C hello.names -q -i bad-2 'not json' || fail "publish"
wait_for 10 dead_n bad-2 1 || fail "bad-2 not dead-lettered"
"$S" publish -e "$E" -C hello.names -q -i bad-2 'not json' || fail "publish"
wait_for 10 dead_n bad-2 2 || fail "bad-2 not dead-lettered twice"
"$S" publish -e "$E" -C hello.names -q -i bad-3 'not json' || fail "publish"
wait_for 10 dead_n bad-3 1 || fail "bad-3 not dead-lettered"

kill -TERM "$PID"
wait "$PID" || fail "SIGTERM did not exit 0"
PID=

# Replay needs the store to itself: it is stopped now.
"$S" dlq replay -e "$E" -C hello.names -g greeter --id bad-3 >replay.out ||
    fail "replay --id bad-3 failed"
grep -q "bad-3 -> hello.names" replay.out ||
    fail "replay --id bad-3 did not reach it behind two bad-2: $(cat replay.out)"
[ "$(dlq_count bad-3)" = 0 ] && [ "$(dlq_count bad-2)" = 2 ] ||
    fail "replay --id bad-3 replayed the wrong dead letters"
set +e
"$S" dlq replay -e "$E" -C hello.names -g greeter --id nope 2>err.out
rc=$?
set -e
[ "$rc" = 1 ] && grep -q "no dead letter with id 'nope'" err.out ||
    fail "replay of an unknown id: exit $rc, $(cat err.out)"
ids=$("$S" dlq show -e "$E" -C hello.names -g greeter --id bad-2 |
      grep -o '"dlqid":"[^"]*"' | cut -d'"' -f4)
[ "$(echo "$ids" | sort -u | wc -l)" = 2 ] ||
    fail "two dead letters of bad-2 without two dlqids: $ids"
one=$(echo "$ids" | head -n 1)
"$S" dlq replay -e "$E" -C hello.names -g greeter --id "$one" >replay.out ||
    fail "replay --id DLQID failed"
[ "$(grep -c 'bad-2 -> hello.names' replay.out)" = 1 ] &&
    [ "$(dlq_count bad-2)" = 1 ] || fail "a dlqid did not pick exactly one"
"$S" dlq replay -e "$E" -C hello.names -g greeter -r 50 | grep -q "bad-1 -> hello.names" ||
    fail "replay"
[ -z "$("$S" dlq list -e "$E" -C hello.names -g greeter)" ] ||
    fail "replayed dead letter still listed"
echo "example_hello_test: 1 passed, 0 failed"
