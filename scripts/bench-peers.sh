#!/usr/bin/env bash
# `make bench-peers`: the overload workloads (W1-W5, docs/benchmarks.md "Overload workloads")
# against sluice, NATS JetStream, Redis Streams, ZeroMQ and mosquitto, side by side. Installs
# the missing Debian packages (servers, client libraries, gnuplot), builds the load clients
# (bench/peers), starts each server on 127.0.0.1 with a temporary directory and stops it by PID
# (system services are never touched), then writes per-run summaries and series, markdown
# tables and gnuplot plots under bench-results/ (gitignored).
#
#   scripts/bench-peers.sh [BUILD_DIR] [--systems a,b] [--workloads w1,w2,...] [--rounds N]
#                          [--first-round N] [--quick] [--out DIR] [--no-credit] [--no-plots] [--report-only]
#
# --quick (or SL_BENCH_QUICK=1): short workloads for development (numbers not comparable).
# Workloads: w1 (acks=log), w1-fsync (sluice only), w2, w2b, w3, w4 (sluice only: w4-alone
# then w4), w5 (sluice only); w2-lag and w3-lag (sluice only): W2 and W3 on a topic whose only
# bound is max_lag (2 s and 1 s), the configuration the goals of W2 and W3 are stated for.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
build=build
if [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; then
    build=$1
    shift
fi
systems=sluice,nats,redis,zmq,mqtt
workloads=w1,w1-fsync,w2,w2-lag,w2b,w3,w3-lag,w4,w5
rounds=2
first_round=1
quick=${SL_BENCH_QUICK:-0}
out=bench-results/peers
credit=1
plots=1
report_only=0
while [ $# -gt 0 ]; do
    case $1 in
    --systems) systems=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --rounds) rounds=$2; shift 2 ;;
    --first-round) first_round=$2; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out=$2; shift 2 ;;
    --no-credit) credit=0; shift ;;
    --no-plots) plots=0; shift ;;
    --report-only) report_only=1; shift ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-peers: unknown argument $1" >&2; exit 2 ;;
    esac
done

STARTUP_TRIES=100 # x 0.1 s for a server to listen
RUN_TIMEOUT=300   # s; a load client's own hard limit is 240 s
BOUND_BYTES=67108864

# ---- packages --------------------------------------------------------------------------------

need_packages() {
    local pkgs=(gnuplot-nox)
    case ",$systems," in *,nats,*) pkgs+=(nats-server libnats-dev) ;; esac
    case ",$systems," in *,redis,*) pkgs+=(redis-server libhiredis-dev) ;; esac
    case ",$systems," in *,zmq,*) pkgs+=(libzmq3-dev) ;; esac
    case ",$systems," in *,mqtt,*) pkgs+=(mosquitto libmosquitto-dev) ;; esac
    local missing=()
    for p in "${pkgs[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ "${#missing[@]}" -eq 0 ] && return 0
    echo "bench-peers: installing ${missing[*]}" >&2
    local sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null || { echo "install by hand: ${missing[*]}" >&2; exit 1; }
        sudo=sudo
    fi
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
    # --no-install-recommends; the services the packages enable are left alone: this script
    # starts its own servers on other ports.
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
}

build_clients() {
    cmake -S "$here" -B "$build" -DSL_BUILD_PEERS=ON >/dev/null
    cmake --build "$build" -j2 --target sluiced load_sluice >/dev/null
    for s in nats redis zmq mqtt; do
        case ",$systems," in *,$s,*) cmake --build "$build" -j2 --target "load_$s" >/dev/null ;; esac
    done
}

# ---- servers ---------------------------------------------------------------------------------

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() { # port pid
    for _ in $(seq $STARTUP_TRIES); do
        kill -0 "$2" 2>/dev/null || return 1
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# Starts the server of system $1 for workload $2 in directory $3; sets PORT, PID, DATA.
start_server() {
    local sys=$1 w=$2 dir=$3
    PID=0 DATA="" PORT=$(free_port)
    case $sys in
    sluice)
        DATA=$dir/data
        local fsync=interval
        [ "$w" = w1-fsync ] && fsync=always
        "$build/sluiced" --listen 127.0.0.1:0 --admin off --data "$DATA" --fsync $fsync \
            >"$dir/server.log" 2>&1 &
        PID=$!
        for _ in $(seq $STARTUP_TRIES); do
            PORT=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$dir/server.log")
            [ -n "$PORT" ] && break
            sleep 0.1
        done
        ;;
    nats)
        DATA=$dir/js
        nats-server -js -a 127.0.0.1 -p "$PORT" -sd "$DATA" >"$dir/server.log" 2>&1 &
        PID=$!
        ;;
    redis)
        DATA=$dir/redis
        mkdir -p "$DATA"
        redis-server --port "$PORT" --bind 127.0.0.1 --dir "$DATA" --appendonly yes \
            --appendfsync everysec --save '' --daemonize no >"$dir/server.log" 2>&1 &
        PID=$!
        ;;
    mqtt)
        {
            echo "listener $PORT 127.0.0.1"
            echo "allow_anonymous true"
            echo "persistence false"
            if [ "$w" = w2b ]; then
                echo "max_queued_messages 0"
                echo "max_queued_bytes $BOUND_BYTES"
            fi
        } >"$dir/mosquitto.conf"
        mosquitto -c "$dir/mosquitto.conf" >"$dir/server.log" 2>&1 &
        PID=$!
        ;;
    zmq) return 0 ;;
    esac
    wait_port "$PORT" "$PID" || { echo "bench-peers: $sys did not start" >&2; cat "$dir/server.log" >&2; return 1; }
}

stop_server() {
    [ "${PID:-0}" -gt 0 ] || return 0
    kill "$PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$PID" 2>/dev/null || true
    wait "$PID" 2>/dev/null || true
    PID=0
}
trap stop_server EXIT

# ---- one run ---------------------------------------------------------------------------------

applies() { # system workload
    case $2 in
    w1-fsync | w4 | w5 | w2-lag | w3-lag | credit*) [ "$1" = sluice ] ;;
    *) return 0 ;;
    esac
}

run_one() { # system workload round [extra load args...]
    local sys=$1 w=$2 r=$3
    shift 3
    local res=$out/$w/$sys/run$r
    local tmp
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/sl-peers.XXXXXX")
    mkdir -p "$res"
    local lw=$w args=()
    [ "$w" = w1-fsync ] && lw=w1 && args+=(--opt acks=fsync)
    case $w in credit-*) lw=w1 ;; esac
    # max_lag alone (backlog 0 = no byte bound); --bounded also keeps client buffers small.
    [ "$w" = w2-lag ] && lw=w2 && args+=(--bounded --opt backlog=0 --opt max_lag_ms=2000)
    [ "$w" = w3-lag ] && lw=w3 && args+=(--bounded --opt backlog=0 --opt max_lag_ms=1000)
    [ "$quick" = 1 ] && args+=(--quick)
    start_server "$sys" "$w" "$tmp" || { rm -rf "$tmp"; return 1; }
    echo "== $sys $w round $r ($(cut -d' ' -f1-3 /proc/loadavg))" >&2
    local rc=0
    timeout -k 5 $RUN_TIMEOUT "$build/bench/peers/load_$sys" --workload "$lw" \
        --addr "127.0.0.1:$PORT" --out "$res" --label "$sys" --broker-pid "$PID" \
        ${DATA:+--data-dir "$DATA"} "${args[@]}" "$@" >"$res/client.log" 2>&1 || rc=$?
    stop_server
    cut -d' ' -f1-3 /proc/loadavg >"$res/loadavg"
    cp "$tmp/server.log" "$res/" 2>/dev/null || true
    rm -rf "$tmp"
    [ $rc -eq 0 ] || echo "bench-peers: $sys $w round $r exited $rc (see $res/client.log)" >&2
}

# ---- tables ----------------------------------------------------------------------------------

# Prints a markdown table of every summary under $out/$1 with the columns of workload kind $2.
table() {
    local w=$1 kind=$2
    local files
    files=$(find "$out/$w" -name summary.txt 2>/dev/null | sort || true)
    [ -n "$files" ] || return 0
    echo
    echo "### $w"
    echo
    # shellcheck disable=SC2086
    awk -v kind="$kind" -f "$here/bench/peers/table.awk" $files
}

write_tables() {
    {
        echo "# Overload benchmark results"
        echo
        echo "Machine: $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo);"
        echo "$(date -u '+%Y-%m-%d %H:%M UTC'); quick=$quick; rounds=$rounds."
        for w in w1 w1-fsync; do table $w w1; done
        for w in w2 w2-lag w2b; do table $w w2; done
        for w in w3 w3-lag; do table $w w3; done
        table w4-alone w4
        table w4 w4
        table w5 w5
        [ -f "$out/credit/table.md" ] && { echo; echo "### credit window (acks=fsync, W1)"; echo; cat "$out/credit/table.md"; }
    } >"$out/results.md"
    echo "bench-peers: tables in $out/results.md" >&2
}

# ---- credit window chart (sluice, acks=fsync) ------------------------------------------------

credit_chart() {
    local sizes="65536 262144 1048576 4194304 16777216"
    [ "$quick" = 1 ] && sizes="65536 1048576 16777216"
    mkdir -p "$out/credit"
    : >"$out/credit/points.csv"
    for b in $sizes; do
        local batch=$((b / 4 < 262144 ? b / 4 : 262144))
        run_one sluice "credit-$b" 1 --opt acks=fsync --opt buffer=$b \
            --opt batch=$batch || continue
        local f=$out/credit-$b/sluice/run1/summary.txt
        [ -f "$f" ] || continue
        awk -F= -v b=$b -v bt=$batch '{v[$1]=$2} END {printf "%d,%d,%s,%s\n", b, bt, v["goodput"], v["p99_ms"]}' "$f" >>"$out/credit/points.csv"
    done
    {
        echo "| producer buffer | batch | e2e msgs/s | p99 ms |"
        echo "|---:|---:|---:|---:|"
        awk -F, '{printf "| %d KiB | %d KiB | %s | %s |\n", $1/1024, $2/1024, $3, $4}' "$out/credit/points.csv"
    } >"$out/credit/table.md"
}

# ---- main ------------------------------------------------------------------------------------

IFS=, read -r -a syslist <<<"$systems"
IFS=, read -r -a wlist <<<"$workloads"
if [ "$report_only" = 1 ]; then
    rounds=0 credit=0
else
    need_packages
    build_clients
fi
mkdir -p "$out"
for r in $(seq "$first_round" $((first_round + rounds - 1))); do
    for w in "${wlist[@]}"; do
        for s in "${syslist[@]}"; do
            applies "$s" "$w" || continue
            if [ "$w" = w4 ]; then
                run_one "$s" w4-alone "$r" || true
            fi
            run_one "$s" "$w" "$r" || true
        done
    done
done
if [ "$credit" = 1 ] && [[ ",$systems," == *,sluice,* ]]; then
    credit_chart
fi
write_tables
if [ "$plots" = 1 ]; then
    "$here/bench/peers/plot.sh" "$out" || echo "bench-peers: plotting failed" >&2
fi
