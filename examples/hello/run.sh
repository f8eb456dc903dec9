#!/bin/sh
# `make run`: start the hello service on the embedded engine, in the
# foreground, after printing how to use it. Ctrl-C drains and stops it.
set -eu
BUILD=${1:-build}
cd "$(dirname "$0")/../.."
mkdir -p data/hello
S="$BUILD/sluice"
E="embedded:./data/hello"
cat <<TXT

  sluice hello service — embedded engine, SQLite store in ./data/hello

  In another terminal, from $(pwd):

    # greet someone (the service answers by publishing hello.greeted)
    $S publish -e $E -C hello.names '{"name":"Ada"}'
    cat data/hello/greetings.log

    # a thousand at 500/s
    $S publish -e $E -C hello.names -n 1000 -r 500 -q '{"name":"Grace"}'

    # retries: "flaky" fails twice, then succeeds
    $S publish -e $E -C hello.names '{"name":"flaky"}'

    # bad input is rejected and kept as a dead letter with the reason
    $S publish -e $E -C hello.names 'not json'
    $S dlq list -e $E -C hello.names -g greeter
    $S dlq show -e $E -C hello.names -g greeter

  Stop with Ctrl-C: the service drains in-flight work and exits 0. Then
  '$S dlq replay -e $E -C hello.names -g greeter' replays dead letters.

TXT
exec "$S" run examples/hello/service.yaml
