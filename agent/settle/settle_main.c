/*
 * gw-settle: the settlement worker. Reads its settings from command-line
 * options and environment variables (an option wins over its variable), the
 * same way gw-agent does, then runs settle_run() until SIGTERM/SIGINT, which
 * finish the batch in progress and exit 0.
 *
 * Every setting is one row of the `options` table below, which also produces
 * --help: a new setting cannot be undocumented.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "metrics_http.h"
#include "net.h"
#include "options.h"
#include "settle.h"
#include "settle_metrics.h"

#define GW_VERSION "0.1.0"

enum {
    O_POSTGRES_URI,
    O_REDIS_ADDR,
    O_REDIS_PASSWORD,
    O_REDIS_DB,
    O_LOG_LEVEL,
    O_BATCH,
    O_IDLE,
    O_PAUSE,
    O_TIMEOUT,
    O_BACKOFF_MAX,
    O_METRICS_LISTEN,
    O_COUNT
};

static const struct option_def options[O_COUNT] = {
    [O_POSTGRES_URI] = {"postgres-uri", "POSTGRES_URI", OPT_STR, "", 0, 0,
                        "PostgreSQL connection string (required)"},
    [O_REDIS_ADDR] = {"redis-addr", "REDIS_ADDR", OPT_STR, "localhost:6379", 0, 0,
                      "Redis host:port (Redis >= 6.2: LMOVE, BLMOVE)"},
    [O_REDIS_PASSWORD] = {"redis-password", "REDIS_PASSWORD", OPT_STR, "", 0, 0,
                          "Redis password (AUTH), empty for none"},
    [O_REDIS_DB] = {"redis-db", "REDIS_DB", OPT_UINT, "0", 0, 1000, "Redis database number"},
    [O_LOG_LEVEL] = {"log-level", "LOG_LEVEL", OPT_STR, "info", 0, 0, "debug, info, warn or error"},
    [O_BATCH] = {"batch", "GW_SETTLE_BATCH", OPT_UINT, "500", 1, SETTLE_BATCH_MAX,
                 "records settled per PostgreSQL transaction"},
    [O_IDLE] = {"idle-ms", "GW_SETTLE_IDLE_MS", OPT_UINT, "1000", 10, 600000,
                "wait this long in BLMOVE while traffic:logs is empty"},
    [O_PAUSE] = {"pause-ms", "GW_SETTLE_PAUSE_MS", OPT_UINT, "0", 0, 600000,
                 "pause after each COMMIT, before the ack (throttle; tests)"},
    [O_TIMEOUT] = {"timeout-ms", "GW_SETTLE_TIMEOUT_MS", OPT_UINT, "5000", 100, 600000,
                   "Redis command timeout and PostgreSQL connect timeout"},
    [O_BACKOFF_MAX] = {"backoff-max-ms", "GW_SETTLE_BACKOFF_MAX_MS", OPT_UINT, "5000", 100, 600000,
                       "longest retry wait (100 ms, doubling) while a service fails"},
    [O_METRICS_LISTEN] = {"metrics-listen", "GW_SETTLE_METRICS_LISTEN", OPT_STR, "127.0.0.1:12349",
                          0, 0,
                          "where GET /metrics serves Prometheus metrics (host:port; '' "
                          "disables); a bind failure is logged, settling goes on without it"},
};

static const struct options_program program = {
    .name = "gw-settle",
    .version = GW_VERSION,
    .about = "The proxy gateway's settlement worker: moves billing records from the Redis\n"
             "list traffic:logs into PostgreSQL (traffic_logs, balances.used_bytes), each\n"
             "request_id exactly once, and keeps balance:cache:{username} in Redis equal to\n"
             "traffic_bytes - used_bytes.\n",
    .details = "Redis lists: traffic:logs (input), traffic:logs:processing (records being\n"
               "settled; settled first at start), traffic:logs:dead (refused records, as\n"
               "{\"reason\": ..., \"record\": ...}).\n"
               "Signals: SIGTERM or SIGINT finish the batch in progress, then exit.\n"
               "Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on bad\n"
               "configuration. PostgreSQL or Redis being down is not a failure: the worker\n"
               "retries, and loses nothing.\n",
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
    (void)sig;
    stopping = 1;
}

int main(int argc, char **argv)
{
    const char *values[O_COUNT];
    int early = options_parse(&program, options, O_COUNT, argc, argv, values);
    if (early >= 0) return early;

    unsigned redis_db, batch, idle, pause, timeout, backoff_max;
    if (!options_uint(program.name, &options[O_REDIS_DB], values[O_REDIS_DB], &redis_db) ||
        !options_uint(program.name, &options[O_BATCH], values[O_BATCH], &batch) ||
        !options_uint(program.name, &options[O_IDLE], values[O_IDLE], &idle) ||
        !options_uint(program.name, &options[O_PAUSE], values[O_PAUSE], &pause) ||
        !options_uint(program.name, &options[O_TIMEOUT], values[O_TIMEOUT], &timeout) ||
        !options_uint(program.name, &options[O_BACKOFF_MAX], values[O_BACKOFF_MAX], &backoff_max))
        return 2;
    enum log_level lvl;
    if (!log_parse_level(values[O_LOG_LEVEL], &lvl)) {
        fprintf(stderr, "gw-settle: LOG_LEVEL='%s': expected debug, info, warn or error\n",
                values[O_LOG_LEVEL]);
        return 2;
    }
    log_set_level(lvl);
    if (!values[O_POSTGRES_URI][0]) {
        fprintf(stderr, "gw-settle: POSTGRES_URI is required (or --postgres-uri)\n");
        return 2;
    }
    char redis_host[256];
    int redis_port;
    if (!net_parse_hostport(values[O_REDIS_ADDR], redis_host, sizeof(redis_host), &redis_port, 0)) {
        fprintf(stderr, "gw-settle: REDIS_ADDR='%s': expected host:port\n", values[O_REDIS_ADDR]);
        return 2;
    }

    struct sigaction sa = {.sa_handler = on_signal}; /* no SA_RESTART: waits end early */
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct settle_config cfg = {
        .postgres_uri = values[O_POSTGRES_URI],
        .redis_host = redis_host,
        .redis_port = redis_port,
        .redis_password = values[O_REDIS_PASSWORD],
        .redis_db = redis_db,
        .batch = batch,
        .idle_ms = idle,
        .pause_ms = pause,
        .timeout_ms = timeout,
        .backoff_max_ms = backoff_max,
    };
    static struct settle_stats stats;
    /* Metrics: a thread of their own (settle_run blocks this one). */
    static struct settle_metrics sm;
    sm = (struct settle_metrics){
        .st = &stats,
        .redis = {.host = redis_host,
                  .port = redis_port,
                  .password = values[O_REDIS_PASSWORD],
                  .db = redis_db,
                  .name = "gw-settle metrics: Redis"},
        .timeout_ms = timeout < 1000 ? timeout : 1000,
    };
    struct metrics_http *metrics = NULL;
    if (values[O_METRICS_LISTEN][0]) {
        struct metrics_http_config mcfg = {
            .listen = values[O_METRICS_LISTEN],
            .name = "gw-settle",
            .render = settle_metrics_render,
            .arg = &sm,
        };
        metrics = metrics_http_start(&mcfg);
    }
    log_info("gw-settle %s starting: redis %s:%d db %u, batch %u, idle %u ms%s", GW_VERSION,
             redis_host, redis_port, redis_db, batch, idle, pause ? ", pausing after commits" : "");
    int rc = settle_run(&cfg, &stats, &stopping);
    metrics_http_stop(metrics);
    settle_metrics_close(&sm);
    log_info("gw-settle stopped%s", rc == 0 ? "" : " on a failure");
    return rc;
}
