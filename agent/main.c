/*
 * gw-agent: the gateway's SPOA. Reads its settings from command-line options
 * and environment variables (an option wins over its variable), picks the
 * handler, and runs the SPOP server until SIGTERM/SIGINT.
 *
 * Every setting is one row of the `options` table below, which also produces
 * --help: a new setting cannot be undocumented.
 */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "handler_echo.h"
#include "log.h"
#include "spoa.h"

#define GW_VERSION "0.1.0"

enum opt_kind { OPT_STR, OPT_UINT };

struct option_def {
    const char *name; /* --name */
    const char *env;  /* environment variable, or NULL */
    enum opt_kind kind;
    const char *def;   /* default, as text */
    unsigned min, max; /* OPT_UINT bounds */
    const char *help;
};

enum {
    O_LISTEN,
    O_THREADS,
    O_MAX_FRAME,
    O_MAX_INFLIGHT,
    O_SHUTDOWN,
    O_HANDLER,
    O_ECHO_DELAY,
    O_LOG_LEVEL,
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
    [O_HANDLER] = {"handler", "GW_HANDLER", OPT_STR, "echo", 0, 0,
                   "request handler: 'echo' (diagnostic: echoes arguments as variables)"},
    [O_ECHO_DELAY] = {"echo-delay-ms", "GW_ECHO_DELAY_MS", OPT_UINT, "0", 0, 60000,
                      "echo handler: answer this many ms later (tests asynchronous answers)"},
    [O_LOG_LEVEL] = {"log-level", "LOG_LEVEL", OPT_STR, "info", 0, 0, "debug, info, warn or error"},
};

static void usage(FILE *out)
{
    fprintf(out, "Usage: gw-agent [OPTION]...\n"
                 "The proxy gateway's SPOE agent (SPOP 2.0): answers HAProxy's per-request\n"
                 "NOTIFY messages with verdict variables.\n\n"
                 "Each option can also be set by the environment variable shown; the option\n"
                 "wins when both are given.\n\n");
    for (int i = 0; i < O_COUNT; i++) {
        const struct option_def *o = &options[i];
        char left[64];
        snprintf(left, sizeof(left), "--%s=%s", o->name, o->kind == OPT_UINT ? "N" : "VALUE");
        fprintf(out, "  %-28s %s\n  %-28s env %s, default %s\n", left, o->help, "",
                o->env ? o->env : "-", o->def);
    }
    fprintf(out, "  %-28s %s\n  %-28s %s\n", "--help", "print this help and exit", "--version",
            "print the version and exit");
    fprintf(out, "\nSignals: SIGTERM or SIGINT stop accepting, answer in-flight frames,\n"
                 "send AGENT-DISCONNECT and exit within --shutdown-timeout.\n"
                 "Exit status: 0 after a clean stop, 1 on a runtime failure, 2 on bad\n"
                 "configuration.\n");
}

static bool parse_uint(const struct option_def *o, const char *s, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || end == s || *end != '\0' || s[0] == '-' || v < o->min || v > o->max) {
        fprintf(stderr, "gw-agent: %s%s%s='%s': expected an integer in %u..%u\n",
                o->env ? o->env : "", o->env ? " / --" : "--", o->name, s, o->min, o->max);
        return false;
    }
    *out = (unsigned)v;
    return true;
}

int main(int argc, char **argv)
{
    const char *values[O_COUNT];
    struct option longopts[O_COUNT + 3];

    for (int i = 0; i < O_COUNT; i++) {
        const char *env = options[i].env ? getenv(options[i].env) : NULL;
        values[i] = env && *env ? env : options[i].def;
        longopts[i] = (struct option){options[i].name, required_argument, NULL, 1000 + i};
    }
    longopts[O_COUNT] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[O_COUNT + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[O_COUNT + 2] = (struct option){0, 0, 0, 0};

    int c;
    while ((c = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 0;
        }
        if (c == 'V') {
            printf("gw-agent %s\n", GW_VERSION);
            return 0;
        }
        if (c < 1000 || c >= 1000 + O_COUNT) {
            usage(stderr);
            return 2;
        }
        values[c - 1000] = optarg;
    }
    if (optind < argc) {
        fprintf(stderr, "gw-agent: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }

    unsigned threads, max_frame, max_inflight, shutdown_s, echo_delay;
    if (!parse_uint(&options[O_THREADS], values[O_THREADS], &threads) ||
        !parse_uint(&options[O_MAX_FRAME], values[O_MAX_FRAME], &max_frame) ||
        !parse_uint(&options[O_MAX_INFLIGHT], values[O_MAX_INFLIGHT], &max_inflight) ||
        !parse_uint(&options[O_SHUTDOWN], values[O_SHUTDOWN], &shutdown_s) ||
        !parse_uint(&options[O_ECHO_DELAY], values[O_ECHO_DELAY], &echo_delay))
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

    struct spoa_handler handler;
    struct echo_config echo = {.delay_ms = echo_delay};
    if (strcmp(values[O_HANDLER], "echo") == 0) {
        handler_echo_init(&handler, &echo);
    } else {
        fprintf(stderr, "gw-agent: unknown handler '%s' (see --help)\n", values[O_HANDLER]);
        return 2;
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
    static struct spoa_stats stats;
    log_info("gw-agent %s starting: handler %s", GW_VERSION, handler.name);
    if (spoa_server_run(&cfg, &handler, &stats) != 0) return 1;
    log_info("stopped: %llu connections, %llu NOTIFY, %llu ACK, %llu protocol errors",
             (unsigned long long)stats.conns_accepted, (unsigned long long)stats.notify_frames,
             (unsigned long long)stats.ack_frames, (unsigned long long)stats.proto_errors);
    return 0;
}
