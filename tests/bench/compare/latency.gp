# tests/bench/compare/latency.gp: the plot of tests/bench/compare.sh, from the
# data report.awk writes (one block per contender: conns req/s p50_ms p99_ms).
#   gnuplot -e "dat='compare-latency.dat'; out='compare-latency.png'; conns='1 8 32 64'" latency.gp
set terminal pngcairo size 1500,480 font ",10"
set output out
set key right center
set grid
set logscale x 2
tics = ""
do for [w in conns] { tics = tics . (tics eq "" ? "" : ", ") . w }
eval "set xtics (" . tics . ")"
set xrange [word(conns, 1) * 0.8 : word(conns, words(conns)) * 1.25]
set xlabel "wrk connections (keep-alive, GET 1 KiB)"
titles = "'direct (stand-in)' 'plain HAProxy' 'gateway' 'Squid'"
set multiplot layout 1,3 title "Proxy comparison on loopback: throughput and latency against load"
set ylabel "requests/s"
set yrange [0:*]
plot for [i=0:3] dat index i using 1:2 with linespoints lw 2 pt 7 title word(titles, i + 1)
set logscale y
set yrange [*:*]
set key bottom right
set ylabel "p50 latency, ms (log)"
plot for [i=0:3] dat index i using 1:3 with linespoints lw 2 pt 7 title word(titles, i + 1)
set ylabel "p99 latency, ms (log)"
plot for [i=0:3] dat index i using 1:4 with linespoints lw 2 pt 7 title word(titles, i + 1)
unset multiplot
