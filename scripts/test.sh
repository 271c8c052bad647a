#!/usr/bin/env bash
# Runs the test suite in up to three build trees:
#   plain  RelWithDebInfo, every test (ctest), fuzz corpora replayed
#   asan   Debug with AddressSanitizer + UndefinedBehaviorSanitizer, every test but the timing
#          scenarios (label "scenario": rates and convergence measured against real processes;
#          the plain tree runs them, and the code they drive is covered here by the other tests)
#   tsan   Debug with ThreadSanitizer, the tests labelled "concurrent"
#   soak   plain tree, with SL_SOAK=1 and the "slow" label included
# Usage: scripts/test.sh [plain|asan|tsan|soak ...]   (default: plain asan tsan)
set -euo pipefail
cd "$(dirname "$0")/.."
# Called from make: keep the nested builds from printing "Entering directory" lines.
unset MAKEFLAGS MAKELEVEL MFLAGS

JOBS=${JOBS:-$(nproc 2>/dev/null || echo 2)}
WERROR=${WERROR:-$([ -n "${CI:-}" ] && echo ON || echo OFF)}
trees=("$@")
[ "${#trees[@]}" -gt 0 ] || trees=(plain asan tsan)

configure_build() { # dir, cmake args...
    local dir=$1
    shift
    cmake -S . -B "$dir" -DSL_WERROR="$WERROR" "$@" >/dev/null
    if ! cmake --build "$dir" -j "$JOBS" >"$dir/build.log" 2>&1; then
        grep -E -A5 'error|warning' "$dir/build.log" | head -100 >&2
        echo "test.sh: build of $dir failed (full log: $dir/build.log)" >&2
        exit 1
    fi
    grep -E -A3 'warning:' "$dir/build.log" >&2 || true
}

total_passed=0
total_failed=0
run_ctest() { # dir, label args...
    local dir=$1
    shift
    local rc=0
    (cd "$dir" && ctest --output-on-failure -j "$JOBS" "$@") 2>&1 | tee "$dir/ctest.log" || rc=$?
    local line
    line=$(grep -E 'tests passed, [0-9]+ tests failed out of [0-9]+' "$dir/ctest.log" | tail -1)
    if [ -n "$line" ]; then
        local failed all
        failed=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\1/')
        all=$(echo "$line" | sed -E 's/.* ([0-9]+) tests failed out of ([0-9]+).*/\2/')
        total_passed=$((total_passed + all - failed))
        total_failed=$((total_failed + failed))
    fi
    if [ "$rc" -ne 0 ] || grep -q 'Errors while running CTest' "$dir/ctest.log"; then
        echo "test.sh: tests failed in $dir" >&2
        echo "tests: $total_passed passed, $((total_failed > 0 ? total_failed : 1)) failed"
        exit 1
    fi
}

start=$(date +%s)
for tree in "${trees[@]}"; do
    echo "== tests: $tree"
    case "$tree" in
    plain)
        # The plain tree also builds the benchmarks, so CI catches one that no longer compiles.
        configure_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_BUILD_BENCH=ON
        run_ctest build -LE slow
        ;;
    asan)
        configure_build build-asan -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=address,undefined \
            -DSL_BUILD_BENCH=OFF
        ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
            run_ctest build-asan -LE 'slow|scenario'
        ;;
    tsan)
        configure_build build-tsan -DCMAKE_BUILD_TYPE=Debug -DSL_SANITIZE=thread -DSL_BUILD_BENCH=OFF
        TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 run_ctest build-tsan -L concurrent -LE slow
        ;;
    soak)
        configure_build build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_BUILD_BENCH=ON
        SL_SOAK=1 run_ctest build
        ;;
    *)
        echo "test.sh: unknown tree '$tree' (plain, asan, tsan, soak)" >&2
        exit 2
        ;;
    esac
done
echo "== tests: all trees passed in $(($(date +%s) - start)) s"
echo "tests: $total_passed passed, $total_failed failed"
