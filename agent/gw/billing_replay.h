/*
 * Reading HAProxy's billing ring back through its CLI ("show events <ring>"),
 * the way to recover the records that were in flight on the ring's TCP
 * stream when the agent died or the stream dropped: the ring keeps its recent
 * records after sending them, and the CLI prints them all, one per line.
 * billing.c feeds every line to the same path as the stream, where the dedup
 * window (dedup.h) drops the ones it already has.
 *
 * Non-blocking, on the caller's libev loop (the billing thread). The CLI
 * address is a unix socket path ("/run/haproxy.sock") or host:port (a name is
 * resolved when the replay starts, off the loop: net.h); the socket needs level operator or admin.
 */
#ifndef GW_BILLING_REPLAY_H
#define GW_BILLING_REPLAY_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct replay;

struct replay_report {
    uint64_t lines;    /* lines read */
    uint64_t too_long; /* lines over BILLING_LINE_MAX, skipped */
    const char *error; /* NULL when the dump was read to its end */
};

/* Called for every complete line, without its newline. */
typedef void (*replay_line_fn)(void *arg, const char *line, size_t len);
/* Called once at the end (or failure); the replay is freed right after. */
typedef void (*replay_done_fn)(void *arg, const struct replay_report *report);

/* Starts the dump; the callbacks run on loop. NULL (logged) when the
 * connection cannot even be started; a host name that does not resolve is
 * reported through on_done. */
struct replay *replay_start(struct ev_loop *loop, const char *cli, const char *ring,
                            double timeout_s, replay_line_fn on_line, replay_done_fn on_done,
                            void *arg);
/* Any CLI command (without newline; several may be joined by ';'), its
 * answer read line by line the same way: how the live meter (meter.c) reads
 * "show sess all" and shuts sessions down, and billing_hold.c asks the master
 * CLI "show proc" or "@!<pid> show events <ring>". */
#define CLI_CMD_MAX 16000 /* HAProxy reads a command line into one 16 KiB buffer */
struct replay *cli_run(struct ev_loop *loop, const char *cli, const char *cmd, double timeout_s,
                       replay_line_fn on_line, replay_done_fn on_done, void *arg);
/* Abandons a dump in progress (on_done is not called). */
void replay_cancel(struct replay *r);

#endif
