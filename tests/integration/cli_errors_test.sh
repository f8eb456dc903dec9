#!/bin/sh
# The sluice CLI on bad input: the documented exit status (2 for usage and
# configuration errors) and a message that says what is wrong and where;
# --help on every command exits 0 and prints its usage.
#
# usage: cli_errors_test.sh SLUICE_BINARY
set -u
. "$(cd "$(dirname "$0")" && pwd)/wait_lib.sh"
S=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
[ -x "$S" ] || { echo "cli_errors_test: FAIL: no binary at $S" >&2; exit 1; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-cli-errors.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM
cd "$WORK" || exit 1
E="embedded:$WORK/data"
PASSED=0
FAILED=0

# check NAME WANT_EXIT STREAM [TEXT...] -- COMMAND...
# Runs COMMAND (stdin empty); passes when it exits WANT_EXIT and STREAM
# (out or err) contains every TEXT (a TEXT starting with ~ is an extended
# regular expression).
check() {
    name=$1 want=$2 stream=$3
    shift 3
    texts=
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
        texts="$texts$1
"
        shift
    done
    shift
    "$@" >"$WORK/out" 2>"$WORK/err" </dev/null
    rc=$?
    why=
    if [ "$rc" -ne "$want" ]; then
        why="exit status $rc, want $want"
    else
        while IFS= read -r text; do
            [ -n "$text" ] || continue
            case $text in
            "~"*) set -- -qE -- "${text#\~}" ;;
            *) set -- -qF -- "$text" ;;
            esac
            if ! grep "$@" "$WORK/$stream"; then
                why="std$stream lacks '$text'"
                break
            fi
        done <<EOF
$texts
EOF
    fi
    if [ -n "$why" ]; then
        FAILED=$((FAILED + 1))
        echo "FAIL: $name: $why" >&2
        sed 's/^/  stdout: /' "$WORK/out" >&2
        sed 's/^/  stderr: /' "$WORK/err" >&2
    else
        PASSED=$((PASSED + 1))
        echo "ok: $name"
    fi
}

# ---- commands -----------------------------------------------------------

check "unknown command" 2 err "unknown command 'frobnicate'" "sluice --help" \
    -- "$S" frobnicate
check "no command prints usage" 2 err "usage: sluice COMMAND" -- "$S"

# ---- sluice run ---------------------------------------------------------

# An unknown key at line 7, column 5.
cat >bad-key.yaml <<'EOF'
service:
  name: broken
engine:
  url: embedded:./data/run
channels:
  - name: orders
    max_lenght: 10
EOF
check "run: unknown key names FILE:LINE:COLUMN and the key" 2 err \
    "bad-key.yaml:7:5:" "max_lenght" -- "$S" run -q bad-key.yaml

# A value of the wrong type at line 10, column 15.
cat >bad-value.yaml <<'EOF'
service:
  name: broken
engine:
  url: embedded:./data/run
channels:
  - name: orders
consumers:
  - channel: orders
    group: billing
    prefetch: many
    handler:
      kind: fail
EOF
check "run: bad value names FILE:LINE:COLUMN and the key" 2 err \
    "bad-value.yaml:10:15:" "prefetch" -- "$S" run -q bad-value.yaml

# A plugin that does not exist: its path is the value at line 12, column 13.
cat >no-plugin.yaml <<'EOF'
service:
  name: broken
engine:
  url: embedded:./data/run
channels:
  - name: orders
consumers:
  - channel: orders
    group: billing
    handler:
      kind: plugin
      path: ./no-such-plugin.so
EOF
check "run: missing plugin names the file position" 2 err \
    "no-plugin.yaml:12:13: consumers[0].handler.path:" "no-such-plugin.so" \
    -- "$S" run -q no-plugin.yaml

check "run: missing config file" 2 err "missing.yaml" \
    -- "$S" run -q missing.yaml
check "run: no config prints usage" 2 err "usage: sluice run" -- "$S" run
check "run: unknown option prints usage" 2 err "usage: sluice run" \
    -- "$S" run --bogus bad-key.yaml

# ---- sluice publish -------------------------------------------------------

check "publish: --channel is required" 2 err "--channel is required" \
    -- "$S" publish -e "$E" '{}'
check "publish: undeclared channel" 2 err "'nowhere' is not declared" \
    -- "$S" publish -e "$E" -C nowhere '{}'
check "publish: --rate not a number" 2 err "--rate" "'fast'" \
    -- "$S" publish -e "$E" -C orders --rate fast '{}'
check "publish: --rate zero" 2 err "--rate" "'0'" \
    -- "$S" publish -e "$E" -C orders --rate 0 '{}'
check "publish: --count zero" 2 err "--count" "'0'" \
    -- "$S" publish -e "$E" -C orders --count 0 '{}'
check "publish: --deadline not a duration" 2 err "--deadline" "'soon'" \
    -- "$S" publish -e "$E" -C orders --deadline soon '{}'
check "publish: --timeout not a duration" 2 err "--timeout" "'forever'" \
    -- "$S" publish -e "$E" -C orders --timeout forever '{}'
check "publish: unexpected argument" 2 err "unexpected argument 'extra'" \
    -- "$S" publish -e "$E" -C orders '{}' extra
check "publish: missing --data-file" 2 err "--data-file" "no-such-data.json" \
    -- "$S" publish -e "$E" -C orders --data-file no-such-data.json
check "publish: unknown option prints usage" 2 err "usage: sluice publish" \
    -- "$S" publish --bogus -C orders '{}'
check "publish: config with an error" 2 err "bad-key.yaml:7:5:" \
    -- "$S" publish -c bad-key.yaml -C orders '{}'

# ---- sluice dlq -------------------------------------------------------------

check "dlq: unknown subcommand" 2 err "unknown subcommand 'bogus'" \
    -- "$S" dlq bogus -C orders -g billing
check "dlq: no subcommand prints usage" 2 err "usage: sluice dlq" -- "$S" dlq
check "dlq: --group is required" 2 err "--channel and --group are required" \
    -- "$S" dlq list -e "$E" -C orders
check "dlq: --limit zero" 2 err "--limit" \
    -- "$S" dlq list -e "$E" -C orders -g billing --limit 0
check "dlq: unknown group" 2 err "no group 'billing' on channel 'orders'" \
    -- "$S" dlq list -e "$E" -C orders -g billing

# ---- sluice config ----------------------------------------------------------

check "config check: error names FILE:LINE:COLUMN and the key" 2 err \
    "bad-key.yaml:7:5:" "max_lenght" -- "$S" config check bad-key.yaml
check "config: no subcommand prints usage" 2 err "usage: sluice config" \
    -- "$S" config

# ---- config check catches what run would reject ---------------------------
#
# Each case: `config check` exits 2 naming FILE:LINE:COLUMN of the value and
# its key, and `run` refuses the same file with the same message.

# check_both NAME FILE TEXT...: config check and run fail alike.
check_both() {
    cb_name=$1 cb_file=$2
    shift 2
    check "config check: $cb_name" 2 err "$@" -- "$S" config check "$cb_file"
    check "run: $cb_name" 2 err "$@" -- "$S" run -q "$cb_file"
}

PLUGIN=$(dirname "$S")/examples/libgreeter.so
[ -f "$PLUGIN" ] || { echo "cli_errors_test: FAIL: no $PLUGIN" >&2; exit 1; }

# service_with FILE ENGINE_URL HANDLER_LINES [SECTION [ADMIN_ENABLED]]:
# one channel, one group, the admin listener off unless asked, SECTION
# appended (after "admin:", so "  listen: ..." lines belong to it).
service_with() {
    {
        printf 'service:\n  name: checked\nengine:\n  url: %s\n' "$2"
        printf 'channels:\n  - name: orders\nconsumers:\n'
        printf '  - channel: orders\n    group: billing\n    handler:\n'
        printf '%s\n' "$3"
        printf 'admin:\n  enabled: %s\n' "${5:-false}"
        [ -z "${4:-}" ] || printf '%s\n' "$4"
    } >"$1"
}
FAILH='      kind: fail'

service_with port-range.yaml "embedded:$WORK/never" "$FAILH" 'gateway:
  listen: 127.0.0.1:80800
  routes:
    - {path: /orders, channel: orders, type: order}'
check_both "gateway port out of range" port-range.yaml \
    "port-range.yaml:15:11: gateway.listen:" "127.0.0.1:80800" "0..65535"

service_with admin-listen.yaml "embedded:$WORK/never" "$FAILH" \
    '  listen: localhost' true
check_both "admin listen without a port" admin-listen.yaml \
    "admin-listen.yaml:14:11: admin.listen:" "expected host:port"

service_with kafka.yaml "kafka://127.0.0.1:9092" "$FAILH"
check_both "engine scheme this build lacks" kafka.yaml \
    "kafka.yaml:4:8: engine.url:" "unknown engine" "kafka://"

service_with emb-param.yaml "embedded:$WORK/never?sync=fast" "$FAILH"
check_both "embedded URL parameter" emb-param.yaml \
    "emb-param.yaml:4:8: engine.url:" "sync=fast"

service_with mem-path.yaml "memory://somewhere" "$FAILH"
check_both "memory:// with a path" mem-path.yaml \
    "mem-path.yaml:4:8: engine.url:" "memory:// takes no path"

service_with nats-param.yaml "nats://127.0.0.1:4222?replicas=many" "$FAILH"
check_both "NATS URL parameter" nats-param.yaml \
    "nats-param.yaml:4:8: engine.url:" \
    "replicas=many: expected a whole number from 1 to 5"

service_with nats-tls.yaml "tls://127.0.0.1:4222?tls_ca=$WORK/no-ca.pem" \
    "$FAILH"
check_both "NATS TLS file missing" nats-tls.yaml \
    "nats-tls.yaml:4:8: engine.url:" "tls_ca file $WORK/no-ca.pem"

service_with amqp-param.yaml "amqp://guest:guest@127.0.0.1:5672/?heartbeat=x" \
    "$FAILH"
check_both "AMQP URL parameter" amqp-param.yaml \
    "amqp-param.yaml:4:8: engine.url:" \
    "heartbeat=x: expected a whole number from 0 to 65535"

service_with amqp-tls.yaml \
    "amqps://guest:guest@127.0.0.1:5671/?cacert=$WORK/no-ca.pem" "$FAILH"
check_both "AMQP TLS file missing" amqp-tls.yaml \
    "amqp-tls.yaml:4:8: engine.url:" "cacert file $WORK/no-ca.pem"

service_with plugin-symbol.yaml "embedded:$WORK/never" "      kind: plugin
      path: $PLUGIN
      symbol: no_such_function"
check_both "plugin symbol missing" plugin-symbol.yaml \
    "plugin-symbol.yaml:13:15: consumers[0].handler.symbol:" \
    "no function 'no_such_function'"

check "config check: missing plugin" 2 err \
    "no-plugin.yaml:12:13: consumers[0].handler.path:" "no-such-plugin.so" \
    -- "$S" config check no-plugin.yaml

service_with http-url.yaml "embedded:$WORK/never" "      kind: http
      url: ftp://payments.example/charge"
check_both "handler URL not http" http-url.yaml \
    "http-url.yaml:12:12: consumers[0].handler.url:" "ftp://payments"

service_with append-dir.yaml "embedded:$WORK/never" "      kind: append
      file: $WORK/no-such-dir/ids.log"
check_both "append file in a missing directory" append-dir.yaml \
    "append-dir.yaml:12:13: consumers[0].handler.file:" "no-such-dir"

if [ -e "$WORK/never" ]; then
    FAILED=$((FAILED + 1))
    echo "FAIL: a refused configuration created its store" >&2
fi

# A valid file passes, and config check creates nothing either.
service_with good.yaml "embedded:$WORK/never" "$FAILH"
check "config check: a valid file" 0 out "good.yaml: ok" \
    -- "$S" config check good.yaml
if [ -e "$WORK/never" ]; then
    FAILED=$((FAILED + 1))
    echo "FAIL: config check created the store" >&2
fi

# Only running can tell that a port is taken: the first service holds an
# admin port, the second one's gateway and admin listeners ask for it.
service_with holder.yaml "memory://" "$FAILH" '  listen: 127.0.0.1:0' true
"$S" run holder.yaml 2>"$WORK/holder.err" &
HOLDER=$!
holder_port() {
    sed -n 's/^  admin on port \([0-9]*\):.*/\1/p' "$WORK/holder.err"
}
if wait_for 20 sh -c "grep -q '^  admin on port' '$WORK/holder.err'"; then
    PORT=$(holder_port)
    service_with gw-busy.yaml "memory://" "$FAILH" "gateway:
  listen: 127.0.0.1:$PORT
  routes:
    - {path: /orders, channel: orders, type: order}"
    check "run: gateway port in use names the address and key" 1 err \
        "gw-busy.yaml:15:11: gateway.listen:" "127.0.0.1:$PORT" \
        "address in use or not available" -- "$S" run -q gw-busy.yaml
    service_with admin-busy.yaml "memory://" "$FAILH" \
        "  listen: 127.0.0.1:$PORT" true
    check "run: admin port in use names the address and key" 1 err \
        "admin-busy.yaml:14:11: admin.listen:" "127.0.0.1:$PORT" \
        "address in use or not available" -- "$S" run -q admin-busy.yaml
else
    FAILED=$((FAILED + 1))
    echo "FAIL: the port holder did not start" >&2
    sed 's/^/  stderr: /' "$WORK/holder.err" >&2
fi
kill "$HOLDER" 2>/dev/null
wait "$HOLDER" 2>/dev/null

# ---- --help everywhere ------------------------------------------------------

check "--help" 0 out "usage: sluice COMMAND" -- "$S" --help
check "-h" 0 out "usage: sluice COMMAND" -- "$S" -h
check "help" 0 out "usage: sluice COMMAND" -- "$S" help
check "run --help" 0 out "usage: sluice run" -- "$S" run --help
check "publish --help" 0 out "usage: sluice publish" "--channel" \
    -- "$S" publish --help
check "dlq --help" 0 out "usage: sluice dlq" -- "$S" dlq --help
check "dlq list --help" 0 out "usage: sluice dlq" -- "$S" dlq list --help
check "config --help" 0 out "usage: sluice config" -- "$S" config --help
check "config -h" 0 out "usage: sluice config" -- "$S" config -h
check "config check --help" 0 out "usage: sluice config" \
    -- "$S" config check --help
check "config check -h" 0 out "usage: sluice config" -- "$S" config check -h
check "config check FILE --help" 0 out "usage: sluice config" \
    -- "$S" config check good.yaml --help
check "config reference --help" 0 out "usage: sluice config" \
    -- "$S" config reference --help
check "run -h" 0 out "usage: sluice run" -- "$S" run -h
check "run CONFIG --help" 0 out "usage: sluice run" -- "$S" run good.yaml --help
check "publish -h" 0 out "usage: sluice publish" -- "$S" publish -h
check "dlq -h" 0 out "usage: sluice dlq" -- "$S" dlq -h
check "dlq list -h" 0 out "usage: sluice dlq" -- "$S" dlq list -h
check "dlq show --help" 0 out "usage: sluice dlq" -- "$S" dlq show --help
check "dlq show -h" 0 out "usage: sluice dlq" -- "$S" dlq show -h
check "dlq replay --help" 0 out "usage: sluice dlq" -- "$S" dlq replay --help
check "dlq replay -h" 0 out "usage: sluice dlq" -- "$S" dlq replay -h
if [ -e "$WORK/--help" ] || [ -e "$WORK/-h" ]; then
    FAILED=$((FAILED + 1))
    echo "FAIL: --help was taken for a file name" >&2
fi

# ---- read-only dlq commands ---------------------------------------------------
#
# list and show (and replay, which has nothing to replay there) never create
# a store: pointed at a directory that does not exist, they say where they
# looked, suggest -c, and leave nothing behind.

for sub in list show replay; do
    check "dlq $sub: a missing store names the URL and suggests -c" 2 err \
        "no group 'payment' on channel 'orders' in embedded:$WORK/nostore" \
        "-c CONFIG" -- "$S" dlq "$sub" -e "embedded:$WORK/nostore" \
        -C orders -g payment
    if [ -e "$WORK/nostore" ]; then
        FAILED=$((FAILED + 1))
        echo "FAIL: dlq $sub created a store in $WORK/nostore" >&2
        rm -rf "$WORK/nostore"
    fi
done

# Typos of channel and group get a did-you-mean from the configuration.
service_with typos.yaml "embedded:$WORK/typos" '      kind: fail'
sed -i 's/group: billing/group: payments/' typos.yaml
check "dlq list: group typo gets a did-you-mean" 2 err \
    "no group 'payment' on channel 'orders' in embedded:$WORK/typos" \
    "did you mean group 'payments'?" \
    -- "$S" dlq list -c typos.yaml -C orders -g payment
check "dlq show: channel typo gets a did-you-mean" 2 err \
    "no group 'payments' on channel 'ordres'" \
    "did you mean channel 'orders'?" \
    -- "$S" dlq show -c typos.yaml -C ordres -g payments
if [ -e "$WORK/typos" ]; then
    FAILED=$((FAILED + 1))
    echo "FAIL: dlq list/show created the store of typos.yaml" >&2
fi
# Once a service has made the store, the same typo is looked up in it,
# and still answered with a did-you-mean.
"$S" run typos.yaml 2>"$WORK/typos.err" &
TYPOS=$!
wait_for 20 grep -q "running on" "$WORK/typos.err" ||
    echo "typos service did not start" >&2
kill "$TYPOS" 2>/dev/null
wait "$TYPOS" 2>/dev/null
check "dlq list: group typo in an existing store" 2 err \
    "no group 'payment' on channel 'orders' in embedded:$WORK/typos" \
    "did you mean group 'payments'?" \
    -- "$S" dlq list -c typos.yaml -C orders -g payment

# ---- the in-memory engine needs no quoting -----------------------------------

printf 'engine:\n  url: memory://\nchannels:\n  - name: orders\n' >mem.yaml
check "config check: memory:// loads unquoted" 0 out "mem.yaml: ok" \
    "engine memory://" -- "$S" config check mem.yaml
printf 'engine:\n  url: "embedded::memory:"\n' >mem-old.yaml
check "config check: quoted embedded::memory: still loads" 0 out \
    "mem-old.yaml: ok" -- "$S" config check mem-old.yaml
printf 'engine:\n  url: embedded::memory:\n' >mem-bare.yaml
check "config check: unquoted embedded::memory: is a YAML error" 2 err \
    "mem-bare.yaml:2:" -- "$S" config check mem-bare.yaml

echo "cli_errors_test: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
