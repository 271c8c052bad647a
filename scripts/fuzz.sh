#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target for N seconds, seeded from and adding to fuzz/corpus/.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
for f in "$build"/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    corpus="fuzz/corpus/${name#fuzz_}"
    mkdir -p "$corpus"
    echo "== $name for ${seconds}s"
    "$f" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=1024 "$corpus"
done
