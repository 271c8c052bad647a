#!/usr/bin/env bash
# `make fuzz`: runs each libFuzzer target for N seconds, seeded from fuzz/corpus/<name>/. New inputs
# go to <build>/corpus/<name>/ (not committed); copy a crash reproducer into fuzz/corpus/ by hand.
set -euo pipefail
build=${1:-build-fuzz}
seconds=${2:-60}
for f in "$build"/fuzz_*; do
    [ -x "$f" ] || continue
    name=$(basename "$f")
    seeds="fuzz/corpus/${name#fuzz_}"
    work="$build/corpus/${name#fuzz_}"
    mkdir -p "$work"
    echo "== $name for ${seconds}s"
    "$f" -max_total_time="$seconds" -max_len=65536 -timeout=10 -rss_limit_mb=1024 \
        -artifact_prefix="$build/" "$work" "$seeds"
done
