/*
 * The daemons' /metrics listener: a minimal HTTP/1.x server that answers
 * `GET /metrics` with the Prometheus text a render callback writes, on a
 * thread of its own with its own libev loop, so a scrape (or a hostile
 * client) never touches a verdict loop or the settlement loop.
 *
 * Hostile input is the normal case: a request head is at most
 * METRICS_HTTP_HEAD_MAX bytes (431 beyond), each connection has
 * timeout_ms from accept to close whatever it sends (slowloris), at most
 * max_conns are open (503 and close beyond), every answer closes the
 * connection, and nothing a client sends changes any state: the render
 * callback only reads counters.
 */
#ifndef GW_METRICS_HTTP_H
#define GW_METRICS_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#include "prom.h"

#define METRICS_HTTP_HEAD_MAX 8192u

/*
 * Parses a request head in buf[0..len). Returns 0 while the head is
 * incomplete (no empty line yet) and valid so far, or the status to answer:
 *   200 GET /metrics (an optional ?query is ignored), HTTP/1.0 or 1.1
 *   400 malformed request line or header, obsolete line folding, a body
 *       (Content-Length other than 0, Transfer-Encoding), bytes that are not
 *       allowed (control characters, bare LF)
 *   404 another path; 405 another method; 505 another HTTP version
 *   431 no complete head within METRICS_HTTP_HEAD_MAX bytes
 * Pure function: the unit tests feed it byte vectors.
 */
int metrics_http_parse(const char *buf, size_t len);

/* Writes the metrics into out (on the listener's thread; read-only). */
typedef void (*metrics_render_fn)(void *arg, struct prom_out *out);

struct metrics_http_config {
    const char *listen;  /* host:port; port 0 picks a free one */
    const char *name;    /* for log lines: "gw-agent" */
    unsigned max_conns;  /* open connections at most (0: 16) */
    unsigned timeout_ms; /* from accept to close (0: 5000) */
    metrics_render_fn render;
    void *arg;
};

struct metrics_http;

/* Binds and starts the thread. NULL (logged) when the address cannot be
 * bound or no thread can be started. */
struct metrics_http *metrics_http_start(const struct metrics_http_config *cfg);
/* The bound TCP port. */
unsigned metrics_http_port(const struct metrics_http *m);
/* Stops the thread, closes every connection; NULL is fine. */
void metrics_http_stop(struct metrics_http *m);

#endif
