/*
 * Internals shared by the connection code (spoa_conn.c) and the thread code
 * (spoa_server.c). Handlers never see these types.
 */
#ifndef GW_SPOA_WORKER_H
#define GW_SPOA_WORKER_H

#include <pthread.h>

#include "spoa.h"

struct spoa_conn;

/* One worker thread and everything it owns. Fields marked (locked) are
 * written by the accepting thread under `lock`; everything else is touched
 * only by the worker's own thread. */
struct spoa_worker {
    unsigned id;
    struct ev_loop *loop;
    pthread_t thread;
    ev_async wake;     /* new connections queued, or stop requested */
    ev_prepare flush;  /* writes pending ACKs once per loop iteration */
    ev_timer deadline; /* end of the shutdown grace period */

    pthread_mutex_t lock;
    int *pending_fds;   /* (locked) accepted sockets not yet adopted */
    size_t npending;    /* (locked) */
    size_t pending_cap; /* (locked) */
    atomic_bool stop;   /* set once by the main thread */
    bool draining;      /* stop seen by the worker */

    struct spoa_conn *conns; /* every open connection */
    unsigned nconns;
    struct spoa_conn *dirty;    /* connections with output or input to process */
    struct spoa_req *free_reqs; /* recycled requests, each with its ACK buffer */
    unsigned nfree_reqs;

    const struct spoa_config *cfg;
    const struct spoa_handler *handler;
    void *hctx; /* handler's per-thread context */
    struct spoa_stats *stats;
};

/* Adopts an accepted, non-blocking socket. */
void spoa_conn_open(struct spoa_worker *w, int fd);
/* Writes pending output of every dirty connection and resumes paused ones. */
void spoa_worker_flush(struct spoa_worker *w);
/* Starts the graceful close of every connection (shutdown requested). */
void spoa_worker_drain(struct spoa_worker *w);
/* Closes every connection at once (grace period over); requests still with
 * the handler become orphans. */
void spoa_worker_close_all(struct spoa_worker *w);
/* Frees the recycled requests; call after the handler's thread_fini, which
 * may still complete requests. */
void spoa_worker_release(struct spoa_worker *w);

#endif
