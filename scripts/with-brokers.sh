#!/bin/sh
# Run a command with the test brokers up: start them, run "$@", stop them
# whatever happened (success, failure, interrupt), exit with the command's
# status. A broker that does not start fails the run (and stops those
# already started).
#
#   sh scripts/with-brokers.sh ctest --test-dir build
#   SLUICE_BROKERS=nats sh scripts/with-brokers.sh ...   only some of them
set -eu

here=$(dirname "$0")
BROKERS=${SLUICE_BROKERS:-nats rabbitmq}

stop_all() {
    for b in $BROKERS; do
        sh "$here/brokers.sh" stop "$b" >/dev/null 2>&1 || true
    done
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

for b in $BROKERS; do
    sh "$here/brokers.sh" start "$b"
done
set +e
"$@"
status=$?
set -e
exit $status
