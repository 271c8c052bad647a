#!/usr/bin/env bash
# `make run`: starts sluiced in the foreground on its embedded default (127.0.0.1:7420, data in
# ./data) and prints how to try it. Extra arguments go to sluiced (make run ARGS="--fsync always").
set -euo pipefail
build=${1:-build}
shift || true
cat <<EOT
Starting sluiced (Ctrl-C stops it cleanly). In another terminal, try:

  $build/sluice topic create demo --max-backlog 8MiB
  $build/sluice produce --topic demo --count 200000 --ack-log acks.txt &   # as fast as it may
  $build/sluice consume --topic demo --rate 20000 --count 200000 > got.txt  # a slow consumer
  $build/sluice stats --topic demo   # backlog, throttles, credit granted, memory held

The producer is slowed to the consumer's pace by credit: memory stays inside the budget and
nothing acknowledged is lost. See README.md and docs/cli.md.

EOT
exec "$build/sluiced" "$@"
