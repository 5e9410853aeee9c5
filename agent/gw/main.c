/*
 * gw-agent: the gateway's SPOA. Reads its settings from command-line options
 * and environment variables (an option wins over its variable), picks the
 * handler, and runs the SPOP server until SIGTERM/SIGINT.
 *
 * Every setting is one row of the `options` table below, which also produces
 * --help: a new setting cannot be undocumented.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "billing.h"
#include "crypt_pool.h"
#include "gw_metrics.h"
#include "handler_echo.h"
#include "handler_gw.h"
#include "health.h"
#include "health_check.h"
#include "log.h"
#include "metrics_http.h"
#include "net.h"
#include "options.h"
#include "spoa.h"

#define GW_VERSION "0.1.0"

enum {
    O_LISTEN,
    O_THREADS,
    O_MAX_FRAME,
    O_MAX_INFLIGHT,
    O_SHUTDOWN,
    O_HANDLER,
    O_ECHO_DELAY,
    O_LOG_LEVEL,
    O_POSTGRES_URI,
    O_REFRESH,
    O_FULL_EVERY,
    O_SNAPSHOT,
    O_TRAFFIC,
    O_REDIS_ADDR,
    O_REDIS_PASSWORD,
    O_REDIS_DB,
    O_BALANCE_TIMEOUT,
    O_MAX_CONNS,
    O_MAX_RPS,
    O_CRYPT_THREADS,
    O_LOG_LISTEN,
    O_SPOOL_PATH,
    O_SPOOL_MAX,
    O_HAPROXY_CLI,
    O_BILLING_RING,
    O_MASTER_CLI,
    O_BILLING_HOLD,
    O_DEDUP,
    O_LIVE,
    O_LIVE_INTERVAL,
    O_LIVE_MAX,
    O_METRICS_LISTEN,
    O_HEALTH,
    O_HEALTH_FAILS,
    O_HEALTH_RATIO,
    O_HEALTH_MIN_REQUESTS,
    O_HEALTH_WINDOW,
    O_HEALTH_BACKOFF_MIN,
    O_HEALTH_BACKOFF_MAX,
    O_HEALTH_TRIALS,
    O_HEALTH_TRIAL_TIMEOUT,
    O_HEALTH_CHECK_INTERVAL,
    O_HEALTH_CHECK_TIMEOUT,
    O_HEALTH_CHECK_RATE,
    O_COUNT
};

static const struct option_def options[O_COUNT] = {
    [O_LISTEN] = {"listen", "GW_LISTEN", OPT_STR, "127.0.0.1:12345", 0, 0,
                  "address HAProxy's SPOE backend connects to (host:port, [v6]:port, *:port)"},
    [O_THREADS] = {"threads", "GW_THREADS", OPT_UINT, "0", 0, 256,
                   "worker threads, each with its own event loop (0: one per CPU core)"},
    [O_MAX_FRAME] = {"max-frame-size", "GW_MAX_FRAME_SIZE", OPT_UINT, "16380", 256, 1048576,
                     "largest SPOP frame in bytes; HAProxy's own limit wins when smaller"},
    [O_MAX_INFLIGHT] = {"max-inflight", "GW_MAX_INFLIGHT", OPT_UINT, "1024", 1, 1000000,
                        "unanswered NOTIFY frames per connection before reading pauses"},
    [O_SHUTDOWN] = {"shutdown-timeout", "GW_SHUTDOWN_TIMEOUT", OPT_UINT, "10", 0, 3600,
                    "seconds to finish in-flight frames after SIGTERM/SIGINT"},
    [O_HANDLER] = {"handler", "GW_HANDLER", OPT_STR, "gateway", 0, 0,
                   "'gateway' (the verdicts) or 'echo' (diagnostic: echoes arguments back)"},
    [O_ECHO_DELAY] = {"echo-delay-ms", "GW_ECHO_DELAY_MS", OPT_UINT, "0", 0, 60000,
                      "echo handler: answer this many ms later (tests asynchronous answers)"},
    [O_LOG_LEVEL] = {"log-level", "LOG_LEVEL", OPT_STR, "info", 0, 0, "debug, info, warn or error"},
    [O_POSTGRES_URI] = {"postgres-uri", "POSTGRES_URI", OPT_STR, "", 0, 0,
                        "PostgreSQL connection string (required by the gateway handler)"},
    [O_REFRESH] = {"refresh-interval", "REFRESH_INTERVAL", OPT_UINT, "30", 1, 86400,
                   "seconds between periodic reloads (providers, changed users and whitelist "
                   "rows; changes also apply at once via NOTIFY)"},
    [O_FULL_EVERY] = {"full-reload-every", "GW_FULL_RELOAD_EVERY", OPT_UINT, "20", 0, 100000,
                      "read every user and whitelist row again every this many refresh "
                      "intervals, a safety net for changes made with the triggers disabled "
                      "(0: only after a reconnect or a bulk statement)"},
    [O_SNAPSHOT] = {"snapshot-path", "GW_SNAPSHOT_PATH", OPT_STR,
                    "/var/lib/gw-agent/snapshot.msgpack", 0, 0,
                    "file the last good snapshot is saved to, and started from when "
                    "PostgreSQL is down ('' disables)"},
    [O_TRAFFIC] = {"traffic-logging", "ENABLE_TRAFFIC_LOGGING", OPT_BOOL, "true", 0, 0,
                   "balance checks and traffic logging (true/false)"},
    [O_REDIS_ADDR] = {"redis-addr", "REDIS_ADDR", OPT_STR, "localhost:6379", 0, 0,
                      "Redis host:port"},
    [O_REDIS_PASSWORD] = {"redis-password", "REDIS_PASSWORD", OPT_STR, "", 0, 0,
                          "Redis password (AUTH), empty for none"},
    [O_REDIS_DB] = {"redis-db", "REDIS_DB", OPT_UINT, "0", 0, 1000, "Redis database number"},
    [O_BALANCE_TIMEOUT] = {"balance-timeout-ms", "GW_BALANCE_TIMEOUT_MS", OPT_UINT, "100", 1, 10000,
                           "wait this long for a balance from Redis, then allow (fail open)"},
    [O_MAX_CONNS] = {"max-conns", "GW_MAX_CONNS", OPT_UINT, "0", 0, 1000000,
                     "default for users whose users.max_conns is NULL: requests and tunnels "
                     "in progress at once per user, per gateway node (0: unlimited)"},
    [O_MAX_RPS] = {"max-rps", "GW_MAX_RPS", OPT_UINT, "0", 0, 1000000,
                   "default for users whose users.max_rps is NULL: requests per second per "
                   "user, per gateway node (0: unlimited)"},
    [O_CRYPT_THREADS] = {"crypt-threads", "GW_CRYPT_THREADS", OPT_UINT, "2", 1, 64,
                         "threads verifying crypt(3) password hashes off the event loops"},
    [O_LOG_LISTEN] = {"billing-listen", "GW_BILLING_LISTEN", OPT_STR, "127.0.0.1:12346", 0, 0,
                      "address HAProxy's billing ring sends per-request records to"},
    [O_SPOOL_PATH] = {"spool-path", "GW_SPOOL_PATH", OPT_STR, "/var/lib/gw-agent/billing.spool", 0,
                      0, "billing records on their way to Redis (survives restarts)"},
    [O_SPOOL_MAX] = {"spool-max-mb", "GW_SPOOL_MAX_MB", OPT_UINT, "1024", 1, 1048576,
                     "spool size limit in MiB; when full, reading pauses (loud warnings first)"},
    [O_HAPROXY_CLI] = {"haproxy-cli", "GW_HAPROXY_CLI", OPT_STR, "", 0, 0,
                       "HAProxy's CLI (socket path or host:port, level operator): after the "
                       "billing stream reconnects, the records it lost in flight are read "
                       "back from the ring; empty: they are lost"},
    [O_BILLING_RING] = {"billing-ring", "GW_BILLING_RING", OPT_STR, "gw-billing", 0, 0,
                        "name of HAProxy's billing ring (for --haproxy-cli)"},
    [O_MASTER_CLI] = {"haproxy-master-cli", "GW_HAPROXY_MASTER_CLI", OPT_STR, "", 0, 0,
                      "HAProxy's master CLI (haproxy -S: socket path or host:port): after a "
                      "reload the old worker's ring is read before it exits; empty: what it "
                      "logs after the reload is lost"},
    [O_BILLING_HOLD] = {"billing-hold", "GW_BILLING_HOLD", OPT_STR, "127.0.0.1:12347", 0, 0,
                        "HAProxy's gw-billing-hold frontend: the agent's idle connection there "
                        "keeps a worker alive after a reload until its ring is read"},
    [O_DEDUP] = {"billing-dedup", "GW_BILLING_DEDUP", OPT_UINT, "1048576", 16, 268435456,
                 "request ids remembered to drop records delivered twice (must cover the "
                 "ring: GW_BILLING_RING_BYTES / 150); 24 bytes each on disk, 32 in memory"},
    [O_LIVE] = {"live-balance", "GW_LIVE_BALANCE", OPT_BOOL, "true", 0, 0,
                "count running requests and tunnels against balances and cut them when a "
                "balance runs out (needs traffic logging, --haproxy-cli at level admin, and "
                "gw-settle to settle traffic:logs)"},
    [O_LIVE_INTERVAL] = {"live-interval-ms", "GW_LIVE_INTERVAL_MS", OPT_UINT, "500", 50, 60000,
                         "how often the bytes of running requests and tunnels are read from "
                         "HAProxy's CLI (show sess all) and put in Redis"},
    [O_LIVE_MAX] = {"live-max-streams", "GW_LIVE_MAX_STREAMS", OPT_UINT, "262144", 1, 16777216,
                    "running streams the live balance tracks at most (about 150 bytes each); "
                    "beyond, a stream counts only when it ends"},
    [O_METRICS_LISTEN] = {"metrics-listen", "GW_METRICS_LISTEN", OPT_STR, "127.0.0.1:12348", 0, 0,
                          "where GET /metrics serves Prometheus metrics (host:port; '' "
                          "disables); a bind failure is logged, verdicts go on without it"},
    [O_HEALTH] = {"health", "GW_HEALTH", OPT_BOOL, "true", 0, 0,
                  "provider health: take failing providers out of selection (true/false)"},
    [O_HEALTH_FAILS] = {"health-fails", "GW_HEALTH_FAILS", OPT_UINT, "5", 0, 1000000,
                        "failures in a row that take a provider out (0: not by count)"},
    [O_HEALTH_RATIO] = {"health-ratio", "GW_HEALTH_RATIO", OPT_UINT, "50", 0, 100,
                        "failure percentage over the window that takes a provider out (0: off)"},
    [O_HEALTH_MIN_REQUESTS] = {"health-min-requests", "GW_HEALTH_MIN_REQUESTS", OPT_UINT, "20", 1,
                               1000000, "outcomes in the window before the ratio counts"},
    [O_HEALTH_WINDOW] = {"health-window-s", "GW_HEALTH_WINDOW_S", OPT_UINT, "30", 1, 86400,
                         "the failure ratio's window in seconds"},
    [O_HEALTH_BACKOFF_MIN] = {"health-backoff-min-ms", "GW_HEALTH_BACKOFF_MIN_MS", OPT_UINT, "5000",
                              100, 86400000, "how long a provider is out the first time (ms)"},
    [O_HEALTH_BACKOFF_MAX] = {"health-backoff-max-ms", "GW_HEALTH_BACKOFF_MAX_MS", OPT_UINT,
                              "300000", 100, 86400000,
                              "the longest back-off (ms): it doubles each time a half-open "
                              "provider fails again"},
    [O_HEALTH_TRIALS] = {"health-trials", "GW_HEALTH_TRIALS", OPT_UINT, "1", 1, 1000,
                         "requests at a time sent to a half-open provider"},
    [O_HEALTH_TRIAL_TIMEOUT] = {"health-trial-timeout-ms", "GW_HEALTH_TRIAL_TIMEOUT_MS", OPT_UINT,
                                "10000", 100, 86400000,
                                "a trial request without an outcome this long (a tunnel still "
                                "open) frees its place for another"},
    [O_HEALTH_CHECK_INTERVAL] = {"health-check-interval-ms", "GW_HEALTH_CHECK_INTERVAL_MS",
                                 OPT_UINT, "10000", 0, 86400000,
                                 "active checks: a TCP connect to each provider this often (ms), "
                                 "and before trial requests after a back-off; 0: no checks"},
    [O_HEALTH_CHECK_TIMEOUT] = {"health-check-timeout-ms", "GW_HEALTH_CHECK_TIMEOUT_MS", OPT_UINT,
                                "2000", 10, 60000, "a check's connect fails after this (ms)"},
    [O_HEALTH_CHECK_RATE] = {"health-check-rate", "GW_HEALTH_CHECK_RATE", OPT_UINT, "20", 1, 100000,
                             "checks started per second at most"},
};

static const struct options_program program = {
    .name = "gw-agent",
    .version = GW_VERSION,
    .about = "The proxy gateway's SPOE agent (SPOP 2.0): answers HAProxy's per-request\n"
             "NOTIFY messages with verdict variables, and takes HAProxy's per-request\n"
             "billing records to Redis.\n",
    .details = "Signals: SIGTERM or SIGINT stop accepting, answer in-flight frames,\n"
               "send AGENT-DISCONNECT and exit within --shutdown-timeout.\n"
               "Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on bad\n"
               "configuration.\n",
};

/* Creates the snapshot file's directory (mode 0700: the file holds
 * credentials) when it is missing; a failure is logged, not fatal: the agent
 * still serves, it only cannot save. */
static void ensure_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash || slash == path || (size_t)(slash - path) >= sizeof(dir)) return;
    memcpy(dir, path, (size_t)(slash - path));
    dir[slash - path] = '\0';
    if (mkdir(dir, 0700) != 0 && errno != EEXIST)
        log_warn("cannot create %s for the snapshot file: %s", dir, strerror(errno));
}

/* Runs the gateway handler: snapshot store, crypt pool, then the server. */
static int run_gateway(const char *const *values, const struct spoa_config *cfg)
{
    unsigned refresh, full_every, redis_db, balance_timeout, crypt_threads, spool_max_mb, dedup;
    unsigned live_interval, live_max;
    unsigned max_conns, max_rps;
    unsigned hv[O_HEALTH_CHECK_RATE + 1] = {0};
    bool traffic, live_on, health_on;
    char redis_host[256];
    int redis_port;
    if (!options_uint(program.name, &options[O_REFRESH], values[O_REFRESH], &refresh) ||
        !options_uint(program.name, &options[O_FULL_EVERY], values[O_FULL_EVERY], &full_every) ||
        !options_uint(program.name, &options[O_REDIS_DB], values[O_REDIS_DB], &redis_db) ||
        !options_uint(program.name, &options[O_BALANCE_TIMEOUT], values[O_BALANCE_TIMEOUT],
                      &balance_timeout) ||
        !options_uint(program.name, &options[O_CRYPT_THREADS], values[O_CRYPT_THREADS],
                      &crypt_threads) ||
        !options_uint(program.name, &options[O_SPOOL_MAX], values[O_SPOOL_MAX], &spool_max_mb) ||
        !options_uint(program.name, &options[O_DEDUP], values[O_DEDUP], &dedup) ||
        !options_uint(program.name, &options[O_LIVE_INTERVAL], values[O_LIVE_INTERVAL],
                      &live_interval) ||
        !options_uint(program.name, &options[O_LIVE_MAX], values[O_LIVE_MAX], &live_max) ||
        !options_bool(program.name, &options[O_LIVE], values[O_LIVE], &live_on) ||
        !options_uint(program.name, &options[O_MAX_CONNS], values[O_MAX_CONNS], &max_conns) ||
        !options_uint(program.name, &options[O_MAX_RPS], values[O_MAX_RPS], &max_rps) ||
        !options_bool(program.name, &options[O_TRAFFIC], values[O_TRAFFIC], &traffic) ||
        !options_bool(program.name, &options[O_HEALTH], values[O_HEALTH], &health_on))
        return 2;
    for (int o = O_HEALTH_FAILS; o <= O_HEALTH_CHECK_RATE; o++)
        if (!options_uint(program.name, &options[o], values[o], &hv[o])) return 2;
    if (!values[O_POSTGRES_URI][0]) {
        fprintf(stderr, "gw-agent: POSTGRES_URI is required (or --postgres-uri)\n");
        return 2;
    }
    if (!net_parse_hostport(values[O_REDIS_ADDR], redis_host, sizeof(redis_host), &redis_port, 0)) {
        fprintf(stderr, "gw-agent: REDIS_ADDR='%s': expected host:port\n", values[O_REDIS_ADDR]);
        return 2;
    }

    if (values[O_SNAPSHOT][0]) ensure_parent_dir(values[O_SNAPSHOT]);
    struct snapshot_store_config scfg = {
        .postgres_uri = values[O_POSTGRES_URI],
        .refresh_s = refresh,
        .snapshot_path = values[O_SNAPSHOT][0] ? values[O_SNAPSHOT] : NULL,
        .connect_timeout_s = 5,
        .full_every = full_every == 0 ? -1 : (int)full_every,
    };
    struct snapshot_store *store = snapshot_store_start(&scfg);
    if (!store) return 1; /* the store logged why: no database and no saved snapshot */
    struct crypt_pool *pool = crypt_pool_start(crypt_threads, 1024);
    if (!pool) {
        snapshot_store_stop(store);
        return 1;
    }
    /* Provider health: fed by the billing records (passive) and the
     * health thread's checks (active); read by the verdicts. */
    struct health *health = NULL;
    struct health_checker *checker = NULL;
    if (health_on) {
        struct health_config hcfg = {
            .fails = hv[O_HEALTH_FAILS],
            .ratio_pct = hv[O_HEALTH_RATIO],
            .min_requests = hv[O_HEALTH_MIN_REQUESTS],
            .window_ms = hv[O_HEALTH_WINDOW] * 1000u,
            .backoff_min_ms = hv[O_HEALTH_BACKOFF_MIN],
            .backoff_max_ms = hv[O_HEALTH_BACKOFF_MAX],
            .trials = hv[O_HEALTH_TRIALS],
            .trial_timeout_ms = hv[O_HEALTH_TRIAL_TIMEOUT],
            .gate_on_check = hv[O_HEALTH_CHECK_INTERVAL] > 0,
        };
        struct health_checker_config ccfg = {
            .store = store,
            .interval_ms = hv[O_HEALTH_CHECK_INTERVAL],
            .timeout_ms = hv[O_HEALTH_CHECK_TIMEOUT],
            .rate_per_s = hv[O_HEALTH_CHECK_RATE],
        };
        if (!(health = health_new(&hcfg)) || !(ccfg.health = health) ||
            !(checker = health_checker_start(&ccfg))) {
            log_error("cannot start provider health");
            health_free(health);
            crypt_pool_stop(pool);
            snapshot_store_stop(store);
            return 1;
        }
        if (!traffic)
            log_warn("provider health: passive health needs the billing records "
                     "(ENABLE_TRAFFIC_LOGGING); only active checks feed it");
    }
    /* Live balance: needs the billing records (they end each stream) and
     * the CLI (it reads the streams' bytes and shuts them down). */
    struct live *live = NULL;
    static struct meter_stats mstats;
    if (live_on && traffic && !values[O_HAPROXY_CLI][0])
        log_warn("live balance off: it needs HAProxy's CLI (GW_HAPROXY_CLI); balances are "
                 "enforced only when requests start");
    if (live_on && traffic && values[O_HAPROXY_CLI][0] && !(live = live_new(live_max))) {
        log_error("out of memory for the live registry");
        health_checker_stop(checker);
        health_free(health);
        crypt_pool_stop(pool);
        snapshot_store_stop(store);
        return 1;
    }
    /* Billing: HAProxy's records through the spool to Redis. */
    static struct billing_stats bstats;
    struct billing *billing = NULL;
    if (traffic) {
        ensure_parent_dir(values[O_SPOOL_PATH]);
        struct billing_config bcfg = {
            .listen = values[O_LOG_LISTEN],
            .spool_path = values[O_SPOOL_PATH],
            .spool_max_bytes = (uint64_t)spool_max_mb << 20,
            .redis_host = redis_host,
            .redis_port = redis_port,
            .redis_password = values[O_REDIS_PASSWORD],
            .redis_db = redis_db,
            .batch = 500,
            .haproxy_cli = values[O_HAPROXY_CLI],
            .ring = values[O_BILLING_RING],
            .master_cli = values[O_MASTER_CLI],
            .hold_addr = values[O_BILLING_HOLD],
            .dedup_records = dedup,
            .live = live,
            .live_interval_ms = live_interval,
            .meter_stats = &mstats,
            .health = health,
        };
        billing = billing_start(&bcfg, &bstats);
        if (!billing) {
            live_free(live);
            health_checker_stop(checker);
            health_free(health);
            crypt_pool_stop(pool);
            snapshot_store_stop(store);
            return 1;
        }
    }
    struct gw_config gcfg = {
        .store = store,
        .crypt = pool,
        .balance_checks = traffic,
        .redis_host = redis_host,
        .redis_port = redis_port,
        .redis_password = values[O_REDIS_PASSWORD],
        .redis_db = redis_db,
        .balance_timeout_ms = balance_timeout,
        .live = live,
        .health = health,
        .max_conns = max_conns,
        .max_rps = max_rps,
    };
    static struct gw_stats gstats;
    struct spoa_handler handler;
    handler_gw_init(&handler, &gcfg, &gstats);

    static struct spoa_stats stats;
    /* Metrics: a thread of their own, reading the counters above. */
    static struct gw_metrics gm;
    gm = (struct gw_metrics){
        .gw = &gstats,
        .spoa = &stats,
        .billing = billing ? &bstats : NULL,
        .meter = live ? &mstats : NULL,
        .live = live,
        .health = health,
        .store = store,
        .crypt = pool,
        .balance_checks = traffic,
    };
    struct metrics_http *metrics = NULL;
    if (values[O_METRICS_LISTEN][0]) {
        struct metrics_http_config mcfg = {
            .listen = values[O_METRICS_LISTEN],
            .name = "gw-agent",
            .render = gw_metrics_render,
            .arg = &gm,
        };
        metrics = metrics_http_start(&mcfg);
    }
    log_info("gw-agent %s starting: handler gateway, balance checks %s, redis %s:%d, default "
             "limits per user: %u concurrent, %u/s (0: unlimited)",
             GW_VERSION, traffic ? "on" : "off", redis_host, redis_port, max_conns, max_rps);
    int rc = spoa_server_run(cfg, &handler, &stats) == 0 ? 0 : 1;
    metrics_http_stop(metrics); /* before what it reads goes away */
    billing_stop(billing);
    health_checker_stop(checker);
    if (live) {
        struct live_counts lc = live_counts(live);
        log_info("live: %llu streams registered (%llu not: full or no memory), %llu ended, %llu "
                 "pruned; %llu dumps (%llu failed), %llu progress counts sent, %llu lost, %llu "
                 "cut messages, %llu sessions shut down",
                 (unsigned long long)lc.registered, (unsigned long long)lc.refused,
                 (unsigned long long)lc.finished, (unsigned long long)lc.pruned,
                 (unsigned long long)mstats.dumps, (unsigned long long)mstats.dump_errors,
                 (unsigned long long)mstats.progress, (unsigned long long)mstats.progress_lost,
                 (unsigned long long)mstats.cut_messages, (unsigned long long)mstats.sessions_shut);
        live_free(live);
    }
    health_free(health);
    crypt_pool_stop(pool);
    snapshot_store_stop(store);
    log_info("stopped: %llu NOTIFY; verdicts 200=%llu 400=%llu 402=%llu 403=%llu 407=%llu "
             "503=%llu; balance missing=%llu unreachable=%llu timeout=%llu",
             (unsigned long long)stats.notify_frames, (unsigned long long)gstats.verdicts[0],
             (unsigned long long)gstats.verdicts[1], (unsigned long long)gstats.verdicts[2],
             (unsigned long long)gstats.verdicts[3], (unsigned long long)gstats.verdicts[4],
             (unsigned long long)gstats.verdicts[5], (unsigned long long)gstats.balance_missing,
             (unsigned long long)gstats.balance_unreachable,
             (unsigned long long)gstats.balance_timeout);
    log_info("billing: %llu records received, %llu billed (%llu of them read back from the "
             "ring), %llu pushed to Redis, %llu not billed (refused requests), %llu duplicates "
             "dropped, %llu malformed",
             (unsigned long long)bstats.received, (unsigned long long)bstats.billed,
             (unsigned long long)bstats.recovered, (unsigned long long)bstats.pushed,
             (unsigned long long)bstats.not_billed, (unsigned long long)bstats.duplicates,
             (unsigned long long)bstats.malformed);
    return rc;
}

int main(int argc, char **argv)
{
    const char *values[O_COUNT];
    int early = options_parse(&program, options, O_COUNT, argc, argv, values);
    if (early >= 0) return early;

    unsigned threads, max_frame, max_inflight, shutdown_s, echo_delay;
    if (!options_uint(program.name, &options[O_THREADS], values[O_THREADS], &threads) ||
        !options_uint(program.name, &options[O_MAX_FRAME], values[O_MAX_FRAME], &max_frame) ||
        !options_uint(program.name, &options[O_MAX_INFLIGHT], values[O_MAX_INFLIGHT],
                      &max_inflight) ||
        !options_uint(program.name, &options[O_SHUTDOWN], values[O_SHUTDOWN], &shutdown_s) ||
        !options_uint(program.name, &options[O_ECHO_DELAY], values[O_ECHO_DELAY], &echo_delay))
        return 2;
    enum log_level lvl;
    if (!log_parse_level(values[O_LOG_LEVEL], &lvl)) {
        fprintf(stderr, "gw-agent: LOG_LEVEL='%s': expected debug, info, warn or error\n",
                values[O_LOG_LEVEL]);
        return 2;
    }
    log_set_level(lvl);
    if (threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (unsigned)n : 1;
    }

    struct spoa_config cfg = {
        .listen = values[O_LISTEN],
        .threads = threads,
        .max_frame_size = max_frame,
        .max_inflight = max_inflight,
        .max_output = 256 * 1024,
        .shutdown_ms = shutdown_s * 1000u,
    };
    signal(SIGPIPE, SIG_IGN);
    if (strcmp(values[O_HANDLER], "gateway") == 0)
        return run_gateway((const char *const *)values, &cfg);
    if (strcmp(values[O_HANDLER], "echo") != 0) {
        fprintf(stderr, "gw-agent: unknown handler '%s' (see --help)\n", values[O_HANDLER]);
        return 2;
    }
    struct spoa_handler handler;
    struct echo_config echo = {.delay_ms = echo_delay};
    handler_echo_init(&handler, &echo);
    static struct spoa_stats stats;
    log_info("gw-agent %s starting: handler %s", GW_VERSION, handler.name);
    if (spoa_server_run(&cfg, &handler, &stats) != 0) return 1;
    log_info("stopped: %llu connections, %llu NOTIFY, %llu ACK, %llu protocol errors",
             (unsigned long long)stats.conns_accepted, (unsigned long long)stats.notify_frames,
             (unsigned long long)stats.ack_frames, (unsigned long long)stats.proto_errors);
    return 0;
}
