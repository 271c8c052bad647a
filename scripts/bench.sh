#!/usr/bin/env bash
# `make bench`: runs every benchmark in bench/ and prints its table. Results that go into
# docs/benchmarks.md are copied from here, with the command that produced them.
set -euo pipefail
build=${1:-build}
for b in "$build"/bench_*; do
    [ -x "$b" ] || continue
    echo "== $(basename "$b")"
    "$b"
done
