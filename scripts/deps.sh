#!/usr/bin/env bash
# Installs the Debian packages sluice needs to build, test and benchmark, and only those that
# are missing. Quiet when everything is present. Usage: scripts/deps.sh [--check]
set -euo pipefail

PACKAGES=(
    build-essential cmake pkg-config
    libcmocka-dev   # unit tests
    libuv1-dev      # event loop (broker, client)
    libmicrohttpd-dev   # the broker's admin HTTP endpoint
    libzmq3-dev     # benchmark baseline: ZeroMQ inproc PUSH/PULL
    libzstd-dev liblz4-dev
    libjansson-dev libcurl4-openssl-dev   # CLI: JSON operators, admin-port queries
    librdkafka-dev kcat   # Kafka endpoints of the pipeline runtime; kcat inspects the mock cluster
    prometheus      # promtool and a real server scrape /metrics in the tests
    clang libclang-rt-14-dev   # libFuzzer and sanitizer runtimes
    clang-format cppcheck
)

missing=()
for p in "${PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done

if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "${1:-}" = "--check" ]; then
    echo "deps: missing: ${missing[*]}" >&2
    exit 1
fi

echo "deps: installing ${missing[*]}" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "deps: not root and no sudo; install these by hand: ${missing[*]}" >&2
        exit 1
    fi
fi
export DEBIAN_FRONTEND=noninteractive
# Refresh the package lists at most once per run; a fresh machine has none.
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "deps: done" >&2
