/*
 * The SPOA server: HAProxy connections on libev worker threads, and the
 * dispatch interface a policy plugs into.
 *
 * Thread model (spoa_server.c): the main thread accepts and hands each
 * connection to one worker thread, round robin, through an ev_async. A worker
 * owns its connections for their whole life: every callback, including a
 * handler's late answer, runs on that worker's loop, so nothing a connection
 * touches needs a lock.
 */
#ifndef GW_SPOA_H
#define GW_SPOA_H

#include <ev.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "prom.h"
#include "spop.h"

/* One NOTIFY frame waiting for its ACK. Opaque to handlers. */
struct spoa_req;

struct spoa_handler {
    const char *name;
    /* Called on each worker thread before it serves; the result is passed to
     * notify() and thread_fini(). May be NULL. */
    void *(*thread_init)(struct ev_loop *loop, void *global);
    void (*thread_fini)(void *tctx);
    /* Called for every NOTIFY frame holding at least one message. `msgs` and
     * every string in them are valid only during this call. The handler adds
     * actions with spoa_req_set_var() and calls spoa_req_done() exactly once,
     * during this call or later on the same thread (asynchronous answer). */
    void (*notify)(void *tctx, struct spoa_req *req, const struct spop_msg *msgs, size_t nmsgs);
    void *global; /* handler-wide state, shared by all threads (read-only) */
};

/* Adds a set-var / unset-var action to the ACK. Returns false once the ACK no
 * longer fits the negotiated frame size: spoa_req_done() then answers with the
 * single action set-var(txn, "error", SPOP_ERR_TOO_BIG) instead, so HAProxy
 * never sees a partial verdict. */
bool spoa_req_set_var(struct spoa_req *req, enum spop_scope scope, const char *name,
                      const struct spop_data *v);
bool spoa_req_unset_var(struct spoa_req *req, enum spop_scope scope, const char *name);
/* Sends the ACK (or drops it when HAProxy's connection has gone) and releases
 * the request: `req` must not be used afterwards. */
void spoa_req_done(struct spoa_req *req);
/* True once the connection the NOTIFY came on has closed: the answer will be
 * dropped, so an asynchronous handler may skip the remaining work. */
bool spoa_req_orphaned(const struct spoa_req *req);

/* Counters, summed over all workers; relaxed atomics, read at any time. */
struct spoa_stats {
    atomic_uint_fast64_t conns_accepted;
    atomic_uint_fast64_t conns_open;
    atomic_uint_fast64_t healthchecks;
    atomic_uint_fast64_t notify_frames;
    atomic_uint_fast64_t ack_frames;
    atomic_uint_fast64_t acks_dropped;     /* answered after the connection closed */
    atomic_uint_fast64_t acks_too_big;     /* replaced by an error action */
    atomic_uint_fast64_t frames_unknown;   /* unknown frame types, skipped */
    atomic_uint_fast64_t proto_errors;     /* connections refused with a DISCONNECT */
    atomic_uint_fast64_t peer_disconnects; /* HAPROXY-DISCONNECT received */
    atomic_uint listen_port;               /* bound TCP port, 0 until listening */
    struct prom_hist notify_latency;       /* NOTIFY frame in to its ACK queued */
};

struct spoa_config {
    const char *listen;      /* "host:port", IPv4 or [IPv6] */
    unsigned threads;        /* worker threads, >= 1 */
    uint32_t max_frame_size; /* bytes; offered in AGENT-HELLO, capped by HAProxy's */
    unsigned max_inflight;   /* NOTIFYs per connection before reading pauses */
    size_t max_output;       /* bytes of pending ACKs per connection before reading pauses */
    unsigned shutdown_ms;    /* grace period for in-flight frames on SIGTERM */
};

/* Runs the server until SIGTERM/SIGINT and the grace period: blocks the
 * calling thread. Returns 0 on a clean stop, -1 when it could not start (the
 * reason has been logged). */
int spoa_server_run(const struct spoa_config *cfg, const struct spoa_handler *handler,
                    struct spoa_stats *stats);

/* Asks a running server to stop as SIGTERM would; callable from any thread
 * (used by tests and embedders). */
void spoa_server_stop(void);

#endif
