#!/usr/bin/env bash
# `make run`: start the broker on its embedded default when it exists; until then, run the core
# channel benchmark so the command shows something real.
set -euo pipefail
build=${1:-build}
if [ -x "$build/sluiced" ]; then
    exec "$build/sluiced" "${@:2}"
fi
echo "sluiced is not built yet; running the core channel benchmark instead (quick mode)."
exec "$build/bench_channel" --quick
