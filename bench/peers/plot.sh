#!/usr/bin/env bash
# Plots the series of a bench-peers / bench-overload results directory with gnuplot: one figure
# per workload (PNG and SVG), four panels (offered and accepted msgs/s, backlog, broker RSS, p99
# latency per 100 ms), every system of round 1 on the same axes; plus the credit-window chart.
#   bench/peers/plot.sh RESULTS_DIR
set -euo pipefail
out=${1:?results dir}
command -v gnuplot >/dev/null || { echo "plot: gnuplot missing" >&2; exit 1; }

COLORS=(sluice:#1b9e77 nats:#d95f02 redis:#7570b3 zmq:#e7298a mqtt:#66a61e
    'sluice max_lag':#000000)
color() {
    for c in "${COLORS[@]}"; do [ "${c%%:*}" = "$1" ] && echo "${c#*:}" && return; done
    echo "#444444"
}

# One gnuplot plot command over every system's run1/series.csv for column expression $2; a
# workload's -lag variant (sluice with only a max_lag bound) joins it as "sluice max_lag".
plot_cmd() { # workload column-expr extra-title
    local w=$1 col=$2 cmd="plot" sep=""
    for f in "$out/$w"/*/run1/series.csv "$out/$w-lag"/sluice/run1/series.csv; do
        [ -f "$f" ] || continue
        local sys
        sys=$(basename "$(dirname "$(dirname "$f")")")
        [[ $f == "$out/$w-lag/"* ]] && sys="sluice max_lag"
        cmd+="$sep '$f' using 1:($col) with lines lw 2 lc rgb '$(color "$sys")' title '$sys$3'"
        sep=","
    done
    echo "$cmd"
}

plot_workload() {
    local w=$1 title=$2
    ls "$out/$w"/*/run1/series.csv >/dev/null 2>&1 || return 0
    for term in "pngcairo size 1400,900 font ',10'" "svg size 1400,900 dynamic font ',10'"; do
        local ext=png
        [[ $term == svg* ]] && ext=svg
        gnuplot <<EOF
set terminal $term
set termoption noenhanced
set output '$out/$w.$ext'
set datafile separator ','
set datafile missing 'NaN'
set key autotitle columnhead
set grid
set multiplot layout 2,2 title '$title'
set xlabel 'time (s)'
set key top right
set title 'offered (dashed) and accepted msgs/s (log scale)'
set logscale y
set yrange [1000:*]
set format y '%.1s%c'
$(plot_cmd "$w" '$4' ' accepted'), $(plot_cmd "$w" '$3' ' offered' | sed 's/^plot//; s/lw 2/lw 1 dt 2/g')
set title 'backlog: acked, not yet consumed (msgs)'
unset logscale y
set yrange [*:*]
$(plot_cmd "$w" '$7' '')
set title 'broker RSS (MB)'
set format y '%g'
$(plot_cmd "$w" '$2' '')
set title 'consumer p99 latency per 100 ms (ms)'
set logscale y
$(plot_cmd "$w" '$8 > 0 ? $8 : NaN' '')
unset multiplot
EOF
    done
}

plot_workload w1 'W1: 1,000,000 msgs, unthrottled consumer'
plot_workload w1-fsync 'W1 with acks=fsync'
plot_workload w2 'W2: producer flat out for 20 s, consumer capacity 20,000 msgs/s (sluice max_lag: the topic bounded by max_lag 2 s)'
plot_workload w2b 'W2b: W2 with a 64 MiB bound per system'
plot_workload w3 'W3: bursts of 200,000 msgs every 5 s, consumer capacity 50,000 msgs/s (sluice max_lag: max_lag 1 s)'
plot_workload w5 'W5: three producers (5k, 5k, 50k msgs/s intended), consumer capacity 20,000 msgs/s'

# W4: the fast topic alone and beside the slow one (sluice).
if [ -f "$out/w4/sluice/run1/series.csv" ]; then
    for ext in png svg; do
        term="pngcairo size 1400,500 font ',10'"
        [ $ext = svg ] && term="svg size 1400,500 dynamic font ',10'"
        gnuplot <<EOF
set terminal $term
set termoption noenhanced
set output '$out/w4.$ext'
set datafile separator ','
set datafile missing 'NaN'
set grid
set multiplot layout 1,2 title 'W4: fast topic (capacity 100k/s) alone and beside a topic whose consumer runs at 1 %'
set xlabel 'time (s)'
set title 'consumed msgs/s'
set format y '%.1s%c'
plot '$out/w4-alone/sluice/run1/series.csv' using 1:12 with lines lw 2 title 'fast, alone', \
     '$out/w4/sluice/run1/series.csv' using 1:12 with lines lw 2 title 'fast, beside slow', \
     '$out/w4/sluice/run1/series.csv' using 1:13 with lines lw 2 title 'slow topic'
set title 'p99 latency per 100 ms (ms)'
set logscale y
set format y '%g'
plot '$out/w4-alone/sluice/run1/series.csv' using 1:(\$8 > 0 ? \$8 : NaN) with lines lw 2 title 'fast, alone', \
     '$out/w4/sluice/run1/series.csv' using 1:(\$8 > 0 ? \$8 : NaN) with lines lw 2 title 'fast, beside slow', \
     '$out/w4/sluice/run1/series.csv' using 1:(\$14 > 0 ? \$14 : NaN) with lines lw 2 title 'slow topic'
unset multiplot
EOF
    done
fi

if [ -s "$out/credit/points.csv" ]; then
    for ext in png svg; do
        term="pngcairo size 900,500 font ',10'"
        [ $ext = svg ] && term="svg size 900,500 dynamic font ',10'"
        gnuplot <<EOF
set terminal $term
set termoption noenhanced
set output '$out/credit.$ext'
set datafile separator ','
set grid
set logscale x 2
set xlabel 'producer buffer (KiB; batch = min(buffer / 4, 256 KiB))'
set ylabel 'e2e msgs/s'
set y2label 'p99 (ms)'
set ytics nomirror
set y2tics
set format y '%.0s%c'
set title 'sluice W1 with acks=fsync: throughput against the credit window'
plot '$out/credit/points.csv' using (\$1/1024):3 with linespoints lw 2 title 'e2e msgs/s', \
     '' using (\$1/1024):4 axes x1y2 with linespoints lw 2 dt 2 title 'p99 latency (ms)'
EOF
    done
fi
echo "plot: figures in $out/*.png, *.svg" >&2
