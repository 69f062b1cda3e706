#!/usr/bin/env bash
# lcbench-plot [--log-y] OUT.png FILE[=LABEL]... [-- TITLE]
#
# Draws latency by percentile, HdrHistogram-plotter style: the x axis is 1/(1 - percentile) on a
# log scale, labelled 0% 90% 99% 99.9% ..., so that the tail gets the room; one line per file, the
# files being percentile distributions in HdrHistogram's text format (lcbench --percentiles,
# wrk2's -U, HdrHistogram's outputPercentileDistribution), values in milliseconds. LABEL names a
# line (default: the file's name). `lcbench --plot OUT.png` runs this on its own run. Needs
# gnuplot (Debian's gnuplot-nox). --log-y puts latency on a log scale too (runs whose tails differ
# by orders of magnitude, such as fixed-rate runs near saturation).
set -euo pipefail
usage() {
    echo "usage: lcbench-plot [--log-y] OUT.png FILE[=LABEL]... [-- TITLE]" >&2
    exit 2
}
logy=0
if [ "${1:-}" = --log-y ]; then
    logy=1
    shift
fi
[ $# -ge 2 ] || usage
out=$1
shift
title="Latency by percentile"
files=() labels=()
while [ $# -gt 0 ]; do
    if [ "$1" = -- ]; then
        shift
        title=${*:-$title}
        break
    fi
    f=${1%%=*}
    l=${1#*=}
    [ "$l" = "$1" ] && l=$(basename "$f")
    [ -r "$f" ] || { echo "lcbench-plot: cannot read $f" >&2; exit 1; }
    files+=("$f")
    labels+=("$l")
    shift
done
[ ${#files[@]} -gt 0 ] || usage
command -v gnuplot > /dev/null || { echo "lcbench-plot: gnuplot not found (apt-get install gnuplot-nox)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The data rows only: value, percentile, count, 1/(1-percentile); the 100% row (inf) is drawn at
# the right edge of the widest finite row.
plot=""
max=1
for i in "${!files[@]}"; do
    awk 'NF == 4 && $1 ~ /^[0-9.]+$/ && $4 ~ /^[0-9.]+$/ { print $4, $1 }' "${files[$i]}" \
        > "$tmp/$i.dat"
    [ -s "$tmp/$i.dat" ] || { echo "lcbench-plot: no percentile rows in ${files[$i]}" >&2; exit 1; }
    m=$(awk 'END { print $1 }' "$tmp/$i.dat")
    max=$(awk -v a="$max" -v b="$m" 'BEGIN { print (b > a ? b : a) }')
    label=${labels[$i]//\"/\'}
    plot+="${plot:+, }\"$tmp/$i.dat\" using 1:2 with lines linewidth 2 title \"$label\""
done
tics='"0%%" 1, "90%%" 10, "99%%" 100, "99.9%%" 1000, "99.99%%" 10000, "99.999%%" 100000, "99.9999%%" 1000000'
gnuplot << GP
set terminal pngcairo noenhanced size 1000,600 font ",11"
set output "$out"
set title "${title//\"/\'}"
set logscale x
set xrange [1:$(awk -v m="$max" 'BEGIN { x = 10; while (x < m) x *= 10; print x }')]
set xtics ($tics)
set xlabel "Percentile"
set ylabel "Latency (ms)"
$([ "$logy" = 1 ] && echo "set logscale y" || echo "set yrange [0:*]")
set grid
set key top left
plot $plot
GP
echo "lcbench-plot: wrote $out"
