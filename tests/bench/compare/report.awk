# tests/bench/compare/report.awk: the report of tests/bench/compare.sh.
# Reads compare.csv (one row per run; -F,), takes medians per (workload,
# contender, load), prints the tables with ratios and goals, and writes the
# Markdown (md=), the JSON (json=) and the plot data (dat=). Plain awk (mawk).
# Variables from compare.sh: date kernel cpu ncpu haproxy squid wrk pin repeat
# secs quick http_conns tunnel_conns xfer idle_n idle_want nofile load_start
# load_end elapsed creds.

function isna(x) { return x == "" || x == "NA" }
function na(r) { return r == "-" ? "NA" : r }

# med(w, c, l, col): the median of a column over the repetitions (NA if none).
function med(w, c, l, col,    key, n, i, j, m, t, a) {
    key = w SUBSEP c SUBSEP l
    n = cnt[key] + 0
    m = 0
    for (i = 1; i <= n; i++) {
        t = val[key, i, ci[col]]
        if (!isna(t)) a[++m] = t + 0
    }
    if (m == 0) return "NA"
    for (i = 2; i <= m; i++) {
        t = a[i]
        for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    if (m % 2) return a[(m + 1) / 2]
    return (a[m / 2] + a[m / 2 + 1]) / 2
}

# busy(w, c, l): "proxy core / load core" busy %, whoever used them.
function busy(w, c, l) { return f0(med(w, c, l, "proxy_cpu_busy_pct")) "/" f0(med(w, c, l, "load_cpu_busy_pct")) }

# rng(w, c, l, col, fmt): "min-max" of a column over the repetitions.
function rng(w, c, l, col,    key, n, i, t, lo, hi, m) {
    key = w SUBSEP c SUBSEP l
    n = cnt[key] + 0
    m = 0
    for (i = 1; i <= n; i++) {
        t = val[key, i, ci[col]]
        if (isna(t)) continue
        t += 0
        if (!m || t < lo) lo = t
        if (!m || t > hi) hi = t
        m++
    }
    if (!m) return "-"
    return (hi >= 100 ? sprintf("%.0f-%.0f", lo, hi) : sprintf("%.2f-%.2f", lo, hi))
}

# runs(w, c, l): how many repetitions produced a row.
function runs(w, c, l) { return cnt[w SUBSEP c SUBSEP l] + 0 }

function f0(x) { return isna(x) ? "-" : sprintf("%.0f", x) }
function f1(x) { return isna(x) ? "-" : sprintf("%.1f", x) }
function f2(x) { return isna(x) ? "-" : sprintf("%.2f", x) }
function f3(x) { return isna(x) ? "-" : sprintf("%.3f", x) }
function ms(us) { return isna(us) ? "-" : (us < 10000 ? sprintf("%.2f", us / 1000) : sprintf("%.1f", us / 1000)) }
function mb(kb) { return isna(kb) ? "-" : sprintf("%.1f", kb / 1024) }
function ratio(a, b) { return (isna(a) || isna(b) || b + 0 == 0) ? "-" : sprintf("%.2f", a / b) }
function jnum(x) { return isna(x) ? "null" : sprintf("%.6g", x) }
function jv(x) { return (x ~ /^-?[0-9]+(\.[0-9]+)?$/) ? x : jstr(x) }
function jstr(s) { gsub(/\\/, "\\\\", s); gsub(/"/, "\\\"", s); return "\"" s "\"" }

# row(cells...): one table row on the console (fixed widths) and in Markdown.
function emit(n, cells, widths,    i, ln, mdl) {
    ln = sprintf("%-18s", cells[1])
    mdl = "| " cells[1]
    for (i = 2; i <= n; i++) {
        ln = ln sprintf(" %" widths[i] "s", cells[i])
        mdl = mdl " | " cells[i]
    }
    if (!md_only) print ln
    if (!con_only) print mdl " |" > md
}
function header(n, cells, widths,    i, sep) {
    for (i = 1; i <= n; i++) cur_w[i] = widths[i]
    emit(n, cells, widths)
    sep = "|---"
    for (i = 2; i <= n; i++) sep = sep "|--:"
    if (!con_only) print sep "|" > md
}
function section(title) {
    print ""
    print title
    print "" > md
    print "### " title > md
    print "" > md
}
function setcells(s, cells, widths,    n, i, parts) {
    # s: "text:width|text:width|..."
    n = split(s, parts, "|")
    for (i = 1; i <= n; i++) {
        cells[i] = parts[i]
        widths[i] = (i in cur_w) ? cur_w[i] : 10
        if (match(parts[i], /:[0-9]+$/)) {
            widths[i] = substr(parts[i], RSTART + 1)
            cells[i] = substr(parts[i], 1, RSTART - 1)
        }
    }
    return n
}
function line(s,    n, cells, widths) { n = setcells(s, cells, widths); emit(n, cells, widths) }
function head(s,    n, cells, widths) { split("", cur_w); n = setcells(s, cells, widths); header(n, cells, widths) }

# summary(): one row per contender, the headline figure of each workload.
function summary(    k, c, l) {
    head("contender|HTTP req/s (x direct, x plain):30|HTTP p50/p99 ms:15|CONNECT tunnels/s (x plain):26|CONNECT p50/p99 ms:18|" \
        xfer " MB/s (x direct):16|KiB per idle tunnel (x plain):28|CPU s/10k HTTP, CONNECT:23|peak RSS MB:11")
    for (k = 1; k <= nc; k++) {
        c = C[k]; l = tunnel_conns
        line(label[c] "|" f0(med("http", c, hmain, "rate")) " (" ratio(med("http", c, hmain, "rate"), med("http", "direct", hmain, "rate")) ", " \
            ratio(med("http", c, hmain, "rate"), med("http", "plain", hmain, "rate")) ")|" \
            ms(med("http", c, hmain, "p50_us")) " / " ms(med("http", c, hmain, "p99_us")) "|" \
            f0(med("connect", c, l, "rate")) " (" ratio(med("connect", c, l, "rate"), med("connect", "plain", l, "rate")) ")|" \
            ms(med("connect", c, l, "p50_us")) " / " ms(med("connect", c, l, "p99_us")) "|" \
            f0(med("xfer", c, 1, "rate")) " (" ratio(med("xfer", c, 1, "rate"), med("xfer", "direct", 1, "rate")) ")|" \
            (c == "direct" ? "-" : f2(med("idle", c, idle_n, "kib_per_tunnel")) " (" ratio(med("idle", c, idle_n, "kib_per_tunnel"), med("idle", "plain", idle_n, "kib_per_tunnel")) ")") "|" \
            (c == "direct" ? "-" : f2(med("http", c, hmain, "cpu_per")) ", " f2(med("connect", c, l, "cpu_per"))) "|" \
            mb(max_peak(c)))
    }
}

# keepalive(): HTTP with one credential and with many, against direct and
# Squid: rate, CPU per request, and the upstream connections opened.
function keepalive(    k, c, w, W, i, s) {
    head("contender|1 credential: req/s (x direct, x Squid):38|CPU s/10k (x Squid):19|upstream conns/1k req:21|" \
        creds " credentials: req/s (x direct, x Squid):40|CPU s/10k (x Squid):19|upstream conns/1k req:21")
    split("http creds", W, " ")
    for (k = 1; k <= nc; k++) {
        c = C[k]; s = label[c]
        for (i = 1; i <= 2; i++) {
            w = W[i]
            s = s "|" f0(med(w, c, hmain, "rate")) " (" ratio(med(w, c, hmain, "rate"), med(w, "direct", hmain, "rate")) ", " \
                ratio(med(w, c, hmain, "rate"), med(w, "squid", hmain, "rate")) ")|" \
                (c == "direct" ? "-" : f2(med(w, c, hmain, "cpu_per")) " (" ratio(med(w, c, hmain, "cpu_per"), med(w, "squid", hmain, "cpu_per")) ")") "|" \
                f1(med(w, c, hmain, "up_conns_per_k"))
        }
        line(s)
    }
}

# spread(): the same headline figures, lowest and highest of the repetitions.
function spread(    k, c) {
    head("contender|HTTP req/s:15|CONNECT tunnels/s:17|" xfer " MB/s:11|KiB per idle tunnel:19|CPU s/10k HTTP:14")
    for (k = 1; k <= nc; k++) {
        c = C[k]
        line(label[c] "|" rng("http", c, hmain, "rate") "|" rng("connect", c, tunnel_conns, "rate") "|" \
            rng("xfer", c, 1, "rate") "|" (c == "direct" ? "-" : rng("idle", c, idle_n, "kib_per_tunnel")) "|" \
            (c == "direct" ? "-" : rng("http", c, hmain, "cpu_per")))
    }
}
function max_peak(c,    w, m, v) {
    m = "NA"
    split("http connect xfer", w, " ")
    v = med("http", c, hmain, "peak_rss_kb"); if (!isna(v) && (isna(m) || v > m)) m = v
    v = med("connect", c, tunnel_conns, "peak_rss_kb"); if (!isna(v) && (isna(m) || v > m)) m = v
    v = med("xfer", c, 1, "peak_rss_kb"); if (!isna(v) && (isna(m) || v > m)) m = v
    return m
}

function goal(name, value, op, target,    met, s) {
    if (isna(value)) { met = "no result"; s = "-" }
    else {
        s = sprintf("%.2f", value)
        met = (op == ">=" ? value + 0 >= target : value + 0 <= target) ? "met" : "NOT met"
    }
    printf "  %-58s %6s  (goal %s %s)  %s\n", name, s, op, target, met
    printf "| %s | %s | %s %s | %s |\n", name, s, op, target, met > md
    ng++
    gj[ng] = sprintf("{\"goal\": %s, \"value\": %s, \"op\": %s, \"target\": %s, \"met\": %s}",
        jstr(name), jnum(value), jstr(op), target, isna(value) ? "null" : (met == "met" ? "true" : "false"))
}

NR == 1 {
    for (i = 1; i <= NF; i++) { ci[$i] = i; cname[i] = $i }
    ncol = NF
    next
}
{
    key = $2 SUBSEP $3 SUBSEP $4
    if (!(key in cnt)) { nkeys++; keys[nkeys] = key }
    cnt[key]++
    for (i = 1; i <= NF; i++) val[key, cnt[key], i] = $i
}

END {
    nc = split("direct plain gateway squid", C, " ")
    label["direct"] = "direct (stand-in)"; label["plain"] = "plain HAProxy"
    label["gateway"] = "gateway"; label["squid"] = "Squid"
    nh = split(http_conns, H, " ")
    hmain = H[nh]
    rep = "median of " repeat " x " secs " s"

    print "# Gateway vs direct, plain HAProxy and Squid" > md
    print "" > md
    printf "Produced by `tests/bench/compare.sh`%s on %s (%s, %s CPUs, kernel %s), %s s in all.\n", \
        (quick == 1 ? " (QUICK=1)" : ""), date, cpu, ncpu, kernel, elapsed > md
    printf "HAProxy %s, Squid %s, wrk %s. Pinning: %s. Medians of %s repetitions (%s s per run), contenders alternating.\n", \
        haproxy, squid, wrk, pin, repeat, secs > md
    print "Ratios are the gateway's (or each contender's) figure over direct's and over plain HAProxy's;" > md
    print "CPU is the proxy processes' own (HAProxy master+worker, + agent for the gateway, Squid + helpers);" > md
    print "\"other %\" is the share of both cores used outside the benchmark's processes during the run" > md
    print "(other engineers' jobs, plus kernel time charged to no process). Raw runs: `compare.csv`;" > md
    print "medians and goals: `compare.json`; how plain HAProxy differs from the gateway: `plain-haproxy.diff`." > md
    print "" > md
    print "Columns: *CPU s/10k* = CPU seconds the proxy processes used per 10,000 requests (or tunnels; per GiB" > md
    print "for the download), from `/proc/<pid>/stat`; *of it agent* / *Redis* = the gateway's agent, and the Redis" > md
    print "server it asks once per request (Redis runs on the load core, it is not in the proxy's figure);" > md
    print "*proxy core %* / *load core %* = how busy the run kept the proxy core and the load core (wrk or" > md
    print "tunnel-load or curl, stand-in, origin, Redis), counting only the benchmark's processes; *cores busy %*" > md
    print "= how busy each of the two cores was (proxy core / load core), whoever used it, interrupts included:" > md
    print "a core near 100 % is the bottleneck of that run;" > md
    print "*peak RSS* = VmHWM of the proxy processes, reset before each run; *x direct*, *x plain* = the" > md
    print "figure over direct's and plain HAProxy's; latencies are wrk's (per request, keep-alive) or" > md
    print "tunnel-load's (connect() to the last body byte; setup = connect() to the end of the 200)." > md
    print "Run it: `bash tests/bench/compare.sh` (or `make bench`), `QUICK=1` for a 2-minute version." > md
    print "" > md
    print "### Summary: HTTP at -c" hmain ", CONNECT at " tunnel_conns " at once, one " xfer " download, " idle_n " idle tunnels" > md
    print "" > md
    md_only = 1; summary(); md_only = 0
    print "" > md
    print "### Keep-alive to the provider: HTTP at -c" hmain ", one credential and " creds " credentials (" rep ")" > md
    print "" > md
    print "*upstream conns/1k req* = connections the upstream stand-in accepted per 1,000 requests (1,000: one" > md
    print "per request). The gateway's one credential is a sticky session (one upstream credential); with " creds > md
    print "credentials each is a session of its own (its own upstream credential and provider port), taken in turn" > md
    print "over the connections. Squid's peer login is one whatever the client's; plain HAProxy's upstream" > md
    print "credential is static (it reuses as if there were one customer)." > md
    print "" > md
    md_only = 1; keepalive(); md_only = 0
    if (repeat + 0 > 1) {
        print "" > md
        print "Spread: the lowest and highest of the " repeat " repetitions for the same figures." > md
        print "" > md
        md_only = 1; spread(); md_only = 0
    }

    print ""
    printf "Comparison: %s; %s\n", rep, pin

    # (a) HTTP at the largest connection count
    section("(a) HTTP keep-alive, absolute-form GET of 1 KiB, wrk -t1 -c" hmain " (" rep ")")
    head("contender|req/s:9|p50 ms:7|p99 ms:7|CPU s/10k req:13|CPU x plain:11|of it agent:11|Redis:6|proxy core %:12|load core %:11|peak RSS MB:11|x direct:8|x plain:7|errors:6|cores busy %:12|other %:7")
    for (k = 1; k <= nc; k++) {
        c = C[k]
        line(label[c] "|" f0(med("http", c, hmain, "rate")) "|" ms(med("http", c, hmain, "p50_us")) "|" \
            ms(med("http", c, hmain, "p99_us")) "|" (c == "direct" ? "-" : f3(med("http", c, hmain, "cpu_per"))) "|" \
            (c == "direct" ? "-" : ratio(med("http", c, hmain, "cpu_per"), med("http", "plain", hmain, "cpu_per"))) "|" f3(med("http", c, hmain, "agent_cpu_per")) "|" \
            f3(med("http", c, hmain, "redis_cpu_per")) "|" \
            (c == "direct" ? "-" : f0(med("http", c, hmain, "core_pct"))) "|" f0(med("http", c, hmain, "load_core_pct")) "|" mb(med("http", c, hmain, "peak_rss_kb")) "|" \
            ratio(med("http", c, hmain, "rate"), med("http", "direct", hmain, "rate")) "|" \
            ratio(med("http", c, hmain, "rate"), med("http", "plain", hmain, "rate")) "|" \
            f0(med("http", c, hmain, "errors")) "|" busy("http", c, hmain) "|" f0(med("http", c, hmain, "other_pct")))
    }

    # (a2) many credentials
    section("(a2) HTTP as (a) with " creds " credentials taken in turn, wrk -t1 -c" hmain " (" rep ")")
    head("contender|req/s:9|p50 ms:7|p99 ms:7|CPU s/10k req:13|CPU x Squid:11|of it agent:11|upstream conns/1k req:21|x direct:8|x Squid:7|errors:6|cores busy %:12|other %:7")
    for (k = 1; k <= nc; k++) {
        c = C[k]
        line(label[c] "|" f0(med("creds", c, hmain, "rate")) "|" ms(med("creds", c, hmain, "p50_us")) "|" \
            ms(med("creds", c, hmain, "p99_us")) "|" (c == "direct" ? "-" : f3(med("creds", c, hmain, "cpu_per"))) "|" \
            (c == "direct" ? "-" : ratio(med("creds", c, hmain, "cpu_per"), med("creds", "squid", hmain, "cpu_per"))) "|" \
            f3(med("creds", c, hmain, "agent_cpu_per")) "|" f1(med("creds", c, hmain, "up_conns_per_k")) "|" \
            ratio(med("creds", c, hmain, "rate"), med("creds", "direct", hmain, "rate")) "|" \
            ratio(med("creds", c, hmain, "rate"), med("creds", "squid", hmain, "rate")) "|" \
            f0(med("creds", c, hmain, "errors")) "|" busy("creds", c, hmain) "|" f0(med("creds", c, hmain, "other_pct")))
    }

    # (b) CONNECT
    section("(b) a new CONNECT tunnel per exchange (GET 1 KiB inside, then close), " tunnel_conns " at once (" rep ")")
    head("contender|tunnels/s:9|p50 ms:7|p99 ms:7|setup p50 ms:12|setup p99 ms:12|CPU s/10k:9|CPU x plain:11|of it agent:11|Redis:6|proxy core %:12|load core %:11|peak RSS MB:11|x direct:8|x plain:7|errors:6|cores busy %:12|other %:7")
    for (k = 1; k <= nc; k++) {
        c = C[k]; l = tunnel_conns
        line(label[c] "|" f0(med("connect", c, l, "rate")) "|" ms(med("connect", c, l, "p50_us")) "|" \
            ms(med("connect", c, l, "p99_us")) "|" ms(med("connect", c, l, "setup_p50_us")) "|" \
            ms(med("connect", c, l, "setup_p99_us")) "|" (c == "direct" ? "-" : f3(med("connect", c, l, "cpu_per"))) "|" \
            (c == "direct" ? "-" : ratio(med("connect", c, l, "cpu_per"), med("connect", "plain", l, "cpu_per"))) "|" f3(med("connect", c, l, "agent_cpu_per")) "|" \
            f3(med("connect", c, l, "redis_cpu_per")) "|" \
            (c == "direct" ? "-" : f0(med("connect", c, l, "core_pct"))) "|" f0(med("connect", c, l, "load_core_pct")) "|" mb(med("connect", c, l, "peak_rss_kb")) "|" \
            ratio(med("connect", c, l, "rate"), med("connect", "direct", l, "rate")) "|" \
            ratio(med("connect", c, l, "rate"), med("connect", "plain", l, "rate")) "|" \
            f0(med("connect", c, l, "errors")) "|" busy("connect", c, l) "|" f0(med("connect", c, l, "other_pct")))
    }

    # (c) one big transfer
    section("(c) one " xfer " download through a CONNECT tunnel, curl -p (" rep ")")
    head("contender|MB/s:8|first byte ms:13|CPU s/GiB:9|proxy core %:12|load core %:11|peak RSS MB:11|x direct:8|x plain:7|cores busy %:12|other %:7")
    for (k = 1; k <= nc; k++) {
        c = C[k]
        line(label[c] "|" f0(med("xfer", c, 1, "rate")) "|" ms(med("xfer", c, 1, "setup_p50_us")) "|" \
            (c == "direct" ? "-" : f3(med("xfer", c, 1, "cpu_per"))) "|" (c == "direct" ? "-" : f0(med("xfer", c, 1, "core_pct"))) "|" f0(med("xfer", c, 1, "load_core_pct")) "|" \
            mb(med("xfer", c, 1, "peak_rss_kb")) "|" ratio(med("xfer", c, 1, "rate"), med("xfer", "direct", 1, "rate")) "|" \
            ratio(med("xfer", c, 1, "rate"), med("xfer", "plain", 1, "rate")) "|" busy("xfer", c, 1) "|" f0(med("xfer", c, 1, "other_pct")))
    }

    # (d) idle tunnels
    idle_title = "(d) " idle_n " idle tunnels held open (one 1 KiB exchange each first), fresh proxy processes (" rep ")"
    if (idle_n + 0 < idle_want + 0) idle_title = idle_title "; " idle_want " wanted, ulimit -n " nofile " allows " idle_n
    section(idle_title)
    head("contender|KiB/tunnel:10|RSS before MB:13|RSS after MB:12|held:6|closed:6|setups/s:8|setup p99 ms:12|CPU s/10k setups:16|x plain:7|other %:7")
    for (k = 1; k <= nc; k++) {
        c = C[k]; l = idle_n
        line(label[c] "|" f2(med("idle", c, l, "kib_per_tunnel")) "|" mb(med("idle", c, l, "rss_before_kb")) "|" \
            mb(med("idle", c, l, "rss_after_kb")) "|" f0(med("idle", c, l, "count")) "|" f0(med("idle", c, l, "closed")) "|" \
            f0(med("idle", c, l, "rate")) "|" ms(med("idle", c, l, "setup_p99_us")) "|" \
            (c == "direct" ? "-" : f3(med("idle", c, l, "cpu_per"))) "|" \
            ratio(med("idle", c, l, "kib_per_tunnel"), med("idle", "plain", l, "kib_per_tunnel")) "|" \
            f0(med("idle", c, l, "other_pct")))
    }

    # latency against load
    section("(a) at each load: req/s, p50 / p99 ms (" rep "; plotted in compare-latency.png)")
    s = "wrk connections"
    for (k = 1; k <= nc; k++) s = s "|" label[C[k]] ":26"
    head(s)
    for (h = 1; h <= nh; h++) {
        s = H[h]
        for (k = 1; k <= nc; k++)
            s = s "|" f0(med("http", C[k], H[h], "rate")) " " ms(med("http", C[k], H[h], "p50_us")) "/" ms(med("http", C[k], H[h], "p99_us"))
        line(s)
    }
    print "" > md
    print "![latency against load](compare-latency.png)" > md

    # goals
    g_http_plain = ratio(med("http", "gateway", hmain, "rate"), med("http", "plain", hmain, "rate"))
    g_http_squid = ratio(med("http", "gateway", hmain, "rate"), med("http", "squid", hmain, "rate"))
    g_conn_plain = ratio(med("connect", "gateway", tunnel_conns, "rate"), med("connect", "plain", tunnel_conns, "rate"))
    g_xfer_direct = ratio(med("xfer", "gateway", 1, "rate"), med("xfer", "direct", 1, "rate"))
    g_mem_plain = ratio(med("idle", "gateway", idle_n, "kib_per_tunnel"), med("idle", "plain", idle_n, "kib_per_tunnel"))
    if (g_http_plain == "-") g_http_plain = "NA"
    if (g_http_squid == "-") g_http_squid = "NA"
    if (g_conn_plain == "-") g_conn_plain = "NA"
    if (g_xfer_direct == "-") g_xfer_direct = "NA"
    if (g_mem_plain == "-") g_mem_plain = "NA"
    print ""
    print "Summary: HTTP at -c" hmain ", CONNECT at " tunnel_conns " at once, one " xfer " download, " idle_n " idle tunnels (" rep ")"
    con_only = 1; summary(); con_only = 0
    print ""
    print "Keep-alive to the provider: HTTP at -c" hmain ", one credential and " creds " credentials"
    con_only = 1; keepalive(); con_only = 0
    if (repeat + 0 > 1) {
        print ""
        print "Spread (lowest-highest of the " repeat " repetitions)"
        con_only = 1; spread(); con_only = 0
    }
    print ""
    print "Goals (reported, not asserted):"
    print "" > md
    print "### Goals (reported, not asserted)" > md
    print "" > md
    print "| goal | ratio | target | |" > md
    print "|---|--:|--:|---|" > md
    goal("gateway HTTP req/s / plain HAProxy (-c" hmain ")", g_http_plain, ">=", 0.8)
    goal("gateway HTTP req/s / Squid (-c" hmain ")", g_http_squid, ">=", 1)
    goal("gateway HTTP req/s / direct (-c" hmain ")", na(ratio(med("http", "gateway", hmain, "rate"), med("http", "direct", hmain, "rate"))), ">=", 0.8)
    goal("gateway HTTP CPU per request / Squid (-c" hmain ")", na(ratio(med("http", "gateway", hmain, "cpu_per"), med("http", "squid", hmain, "cpu_per"))), "<=", 0.6)
    goal("gateway HTTP req/s / Squid, " creds " credentials", na(ratio(med("creds", "gateway", hmain, "rate"), med("creds", "squid", hmain, "rate"))), ">=", 1)
    goal("gateway HTTP req/s / direct, " creds " credentials", na(ratio(med("creds", "gateway", hmain, "rate"), med("creds", "direct", hmain, "rate"))), ">=", 0.8)
    goal("gateway HTTP CPU per request / Squid, " creds " credentials", na(ratio(med("creds", "gateway", hmain, "cpu_per"), med("creds", "squid", hmain, "cpu_per"))), "<=", 0.6)
    goal("gateway CONNECT setups/s / plain HAProxy", g_conn_plain, ">=", 0.8)
    goal("gateway tunnel throughput / direct", g_xfer_direct, ">=", 0.9)
    goal("gateway memory per idle tunnel / plain HAProxy", g_mem_plain, "<=", 1.2)

    # conditions
    n_other = 0; max_other = 0; max_steal = 0
    for (i = 1; i <= nkeys; i++) {
        for (j = 1; j <= cnt[keys[i]]; j++) {
            o = val[keys[i], j, ci["other_pct"]]; st = val[keys[i], j, ci["steal_pct"]]
            if (!isna(o)) { n_other++; oth[n_other] = o + 0; if (o + 0 > max_other) max_other = o + 0 }
            if (!isna(st) && st + 0 > max_steal) max_steal = st + 0
        }
    }
    for (i = 2; i <= n_other; i++) { t = oth[i]; for (j = i - 1; j >= 1 && oth[j] > t; j--) oth[j + 1] = oth[j]; oth[j + 1] = t }
    med_other = n_other ? oth[int((n_other + 1) / 2)] : "NA"
    cond = sprintf("the machine was %s%% busy before the start; other load during the runs: median %s%%, max %s%% of both cores; hypervisor steal max %s%%; load average %s at the start, %s at the end",
        busy_start, med_other, max_other, max_steal, load_start, load_end)
    print ""
    print cond
    print "" > md
    print "Conditions: " cond "." > md

    # JSON
    printf "{\n  \"meta\": {\"date\": %s, \"cpu\": %s, \"ncpu\": %s, \"kernel\": %s, \"haproxy\": %s, \"squid\": %s, \"wrk\": %s,\n", \
        jstr(date), jstr(cpu), jv(ncpu), jstr(kernel), jstr(haproxy), jstr(squid), jstr(wrk) > json
    printf "    \"pinning\": %s, \"repeat\": %s, \"seconds_per_run\": %s, \"quick\": %s, \"http_conns\": [%s], \"tunnel_conns\": %s,\n", \
        jstr(pin), jv(repeat), jv(secs), (quick == 1 ? "true" : "false"), http_conns_json(), jv(tunnel_conns) > json
    printf "    \"xfer\": %s, \"idle_tunnels\": %s, \"idle_tunnels_wanted\": %s, \"ulimit_n\": %s, \"loadavg_start\": %s, \"loadavg_end\": %s,\n", \
        jstr(xfer), jv(idle_n), jv(idle_want), jv(nofile), jstr(load_start), jstr(load_end) > json
    printf "    \"busy_pct_before_start\": %s, \"other_load_pct_median\": %s, \"other_load_pct_max\": %s, \"steal_pct_max\": %s, \"elapsed_s\": %s},\n", \
        jv(busy_start), jnum(med_other), jnum(max_other), jnum(max_steal), jv(elapsed) > json
    print "  \"units\": {\"rate\": \"http: req/s; connect: tunnels/s; xfer: MB/s (1e6 bytes); idle: tunnel setups/s\", \"cpu_per\": \"proxy CPU s per 10,000 requests / tunnels / setups; xfer: per GiB\", \"latency\": \"microseconds\", \"rss\": \"kB\"}," > json
    print "  \"medians\": [" > json
    first = 1
    for (i = 1; i <= nkeys; i++) {
        split(keys[i], kp, SUBSEP)
        s = sprintf("    {\"workload\": %s, \"contender\": %s, \"load\": %s, \"runs\": %d", jstr(kp[1]), jstr(kp[2]), kp[3], cnt[keys[i]])
        for (j = 5; j <= ncol; j++) s = s sprintf(", \"%s\": %s", cname[j], jnum(med(kp[1], kp[2], kp[3], cname[j])))
        printf "%s%s}", (first ? "" : ",\n"), s > json
        first = 0
    }
    print "\n  ]," > json
    print "  \"goals\": [" > json
    for (i = 1; i <= ng; i++) printf "    %s%s\n", gj[i], (i < ng ? "," : "") > json
    print "  ]\n}" > json

    # plot data: one block per contender (gnuplot index 0..3)
    for (k = 1; k <= nc; k++) {
        printf "# %s\n# conns req/s p50_ms p99_ms\n", label[C[k]] > dat
        for (h = 1; h <= nh; h++) {
            r = med("http", C[k], H[h], "rate"); p5 = med("http", C[k], H[h], "p50_us"); p9 = med("http", C[k], H[h], "p99_us")
            printf "%s %s %s %s\n", H[h], (isna(r) ? "NaN" : r), (isna(p5) ? "NaN" : p5 / 1000), (isna(p9) ? "NaN" : p9 / 1000) > dat
        }
        printf "\n\n" > dat
    }
}

function http_conns_json(    n, a, i, s) {
    n = split(http_conns, a, " ")
    s = ""
    for (i = 1; i <= n; i++) s = s (i > 1 ? ", " : "") jv(a[i])
    return s
}
