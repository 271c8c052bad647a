#!/usr/bin/env bash
# `make bench-overload`: the overload workloads W1-W5 (docs/benchmarks.md, "Overload workloads")
# against sluice alone, plus the throughput-against-credit-window chart for acks=fsync. Results,
# tables (results.md) and plots under bench-results/overload/ (gitignored).
#   scripts/bench-overload.sh [BUILD_DIR] [--rounds N] [--quick] [--workloads ...] [--out DIR]
# SL_BENCH_QUICK=1 or --quick: short workloads for development.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    build=$1
    shift
fi
exec "$here/bench-peers.sh" "$build" --systems sluice --out bench-results/overload "$@"
