/*
 * One HAProxy connection: bytes in, frames out.
 *
 * Reads fill a bounded input buffer; every complete frame in it is handled
 * (HELLO handshake, NOTIFY dispatch, DISCONNECT); ACKs are appended to the
 * output buffer and written once per loop iteration by the worker's prepare
 * watcher, so a burst of pipelined NOTIFYs costs one read and one write.
 *
 * Backpressure instead of unbounded buffers: reading pauses while a
 * connection has max_inflight unanswered NOTIFYs or max_output unwritten
 * bytes, and resumes (processing what is already buffered first) when the
 * handler or the socket catches up.
 *
 * Any protocol violation ends the connection with an AGENT-DISCONNECT that
 * carries the spec's status code; a reset or EOF from HAProxy is a normal
 * close. A request still with the handler when its connection closes is
 * "orphaned": its answer is dropped when it arrives.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "spoa_worker.h"

#define STAT_INC(w, field) atomic_fetch_add_explicit(&(w)->stats->field, 1, memory_order_relaxed)
#define STAT_DEC(w, field) atomic_fetch_sub_explicit(&(w)->stats->field, 1, memory_order_relaxed)

/* For the verdict latency histogram (spoa_stats.notify_latency). */
static inline uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Requests kept for reuse per worker; beyond this they are freed. */
#define FREE_REQS_MAX 1024
/* How long a closing connection may take to drain before it is cut. */
#define CLOSE_LINGER_S 2.0
/* Read granularity; a single frame may need up to max_frame_size + 4. */
#define READ_CHUNK (64 * 1024)

enum conn_state {
    CONN_HELLO,   /* waiting for HAPROXY-HELLO */
    CONN_READY,   /* handshake done, NOTIFYs flow */
    CONN_CLOSING, /* last frame queued: flush, half-close, then close */
};

struct spoa_conn {
    struct spoa_worker *w;
    int fd;
    enum conn_state state;
    ev_io rio, wio;
    ev_timer linger;    /* bounds CONN_CLOSING */
    uint32_t max_frame; /* bytes: our limit, then the negotiated one */

    uint8_t *in;                      /* unparsed input */
    size_t in_len, in_cap;            /* bytes */
    uint8_t *out;                     /* pending output: frames end to end */
    size_t out_off, out_len, out_cap; /* bytes; [out_off, out_len) unwritten */

    struct spoa_req *inflight; /* NOTIFYs given to the handler, unanswered */
    unsigned ninflight;
    bool reading;     /* read watcher active */
    bool half_closed; /* our side shut down after the last frame */
    bool on_dirty;    /* linked into w->dirty */
    bool processing;  /* inside conn_process_input */

    struct spoa_conn *prev, *next; /* w->conns */
    struct spoa_conn *dirty_next;
};

struct spoa_req {
    struct spoa_conn *conn; /* NULL once orphaned */
    struct spoa_worker *w;
    struct spoa_req *prev, *next; /* conn->inflight, or w->free_reqs via next */
    uint64_t stream_id, frame_id; /* echoed in the ACK */
    uint64_t t0_ns;               /* when the NOTIFY was read (CLOCK_MONOTONIC) */
    unsigned nactions;
    size_t frame_start;
    struct spop_writer ack;
    size_t buf_cap;
    uint8_t buf[]; /* the ACK frame being built */
};

static void conn_destroy(struct spoa_conn *c);
static void conn_process_input(struct spoa_conn *c);

static void mark_dirty(struct spoa_conn *c)
{
    if (!c->on_dirty) {
        c->on_dirty = true;
        c->dirty_next = c->w->dirty;
        c->w->dirty = c;
    }
}

/* Appends one encoded frame to the output buffer, growing it as needed. Its
 * growth is bounded by the reading pause: at most max_output plus one ACK per
 * in-flight request. */
static void conn_append(struct spoa_conn *c, const uint8_t *p, size_t n)
{
    if (c->out_off == c->out_len) c->out_off = c->out_len = 0;
    if (c->out_cap - c->out_len < n) {
        if (c->out_off) {
            memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
            c->out_len -= c->out_off;
            c->out_off = 0;
        }
        size_t cap = c->out_cap ? c->out_cap : 16384;
        while (cap - c->out_len < n)
            cap *= 2;
        if (cap != c->out_cap) {
            uint8_t *nb = realloc(c->out, cap);
            if (!nb) {
                log_error("spoa: out of memory growing output buffer to %zu bytes", cap);
                abort(); /* losing an ACK silently would stall HAProxy's stream */
            }
            c->out = nb;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, p, n);
    c->out_len += n;
    mark_dirty(c);
}

static void conn_set_reading(struct spoa_conn *c, bool on)
{
    if (on == c->reading) return;
    c->reading = on;
    if (on)
        ev_io_start(c->w->loop, &c->rio);
    else
        ev_io_stop(c->w->loop, &c->rio);
}

static bool conn_may_read(const struct spoa_conn *c)
{
    return c->state != CONN_CLOSING && c->ninflight < c->w->cfg->max_inflight &&
           c->out_len - c->out_off < c->w->cfg->max_output;
}

static void linger_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)loop;
    (void)revents;
    conn_destroy(t->data);
}

/* Queues a final frame (if any) and starts the close. */
static void conn_close_with(struct spoa_conn *c, const uint8_t *frame, size_t n)
{
    if (c->state == CONN_CLOSING) return;
    if (frame) conn_append(c, frame, n);
    c->state = CONN_CLOSING;
    conn_set_reading(c, false);
    ev_timer_start(c->w->loop, &c->linger);
    mark_dirty(c);
}

/* Refuses the connection with an AGENT-DISCONNECT carrying `status`. */
static void conn_fail(struct spoa_conn *c, uint32_t status, const char *why)
{
    uint8_t buf[512];
    struct spop_writer wr;
    spop_writer_init(&wr, buf, sizeof(buf));
    spop_disconnect_encode(&wr, SPOP_FRAME_AGENT_DISCONNECT, status,
                           why ? why : spop_status_str(status));
    STAT_INC(c->w, proto_errors);
    log_warn("spoa: closing connection (fd %d): status %u (%s)%s%s", c->fd, status,
             spop_status_str(status), why ? ": " : "", why ? why : "");
    conn_close_with(c, buf, wr.len);
}

static void conn_disconnect_normal(struct spoa_conn *c, const char *message)
{
    uint8_t buf[256];
    struct spop_writer wr;
    spop_writer_init(&wr, buf, sizeof(buf));
    spop_disconnect_encode(&wr, SPOP_FRAME_AGENT_DISCONNECT, SPOP_OK, message);
    conn_close_with(c, buf, wr.len);
}

/* --- requests ---------------------------------------------------------------- */

static struct spoa_req *req_get(struct spoa_worker *w)
{
    struct spoa_req *r = w->free_reqs;
    if (r) {
        w->free_reqs = r->next;
        w->nfree_reqs--;
        return r;
    }
    size_t cap = (size_t)w->cfg->max_frame_size + 4;
    r = malloc(sizeof(*r) + cap);
    if (r) r->buf_cap = cap;
    return r;
}

static void req_put(struct spoa_req *r)
{
    struct spoa_worker *w = r->w;
    if (w->nfree_reqs >= FREE_REQS_MAX) {
        free(r);
        return;
    }
    r->next = w->free_reqs;
    w->free_reqs = r;
    w->nfree_reqs++;
}

static void req_begin_ack(struct spoa_req *r)
{
    spop_writer_init(&r->ack, r->buf, r->buf_cap);
    r->nactions = 0;
    r->frame_start =
        spop_frame_begin(&r->ack, SPOP_FRAME_ACK, SPOP_FLAG_FIN, r->stream_id, r->frame_id);
}

static void req_unlink(struct spoa_req *r)
{
    struct spoa_conn *c = r->conn;
    if (r->prev)
        r->prev->next = r->next;
    else
        c->inflight = r->next;
    if (r->next) r->next->prev = r->prev;
    c->ninflight--;
}

bool spoa_req_set_var(struct spoa_req *r, enum spop_scope scope, const char *name,
                      const struct spop_data *v)
{
    spop_ack_set_var(&r->ack, scope, name, strlen(name), v);
    r->nactions++;
    return !r->ack.overflow;
}

bool spoa_req_unset_var(struct spoa_req *r, enum spop_scope scope, const char *name)
{
    spop_ack_unset_var(&r->ack, scope, name, strlen(name));
    r->nactions++;
    return !r->ack.overflow;
}

bool spoa_req_orphaned(const struct spoa_req *r)
{
    return r->conn == NULL;
}

void spoa_req_done(struct spoa_req *r)
{
    struct spoa_conn *c = r->conn;
    struct spoa_worker *w = r->w;

    if (!c) {
        STAT_INC(w, acks_dropped);
        req_put(r);
        return;
    }
    req_unlink(r);
    /* HAProxy 2.x mishandles ACKs without actions: always send one. */
    if (r->nactions == 0) spop_ack_unset_var(&r->ack, SPOP_SCOPE_TXN, "noop", 4);
    if (!spop_frame_end(&r->ack, r->frame_start, c->max_frame)) {
        req_begin_ack(r);
        struct spop_data err = spop_data_u32(SPOP_ERR_TOO_BIG);
        spop_ack_set_var(&r->ack, SPOP_SCOPE_TXN, "error", 5, &err);
        spop_frame_end(&r->ack, r->frame_start, c->max_frame);
        STAT_INC(w, acks_too_big);
        log_warn("spoa: ACK for stream %llu frame %llu exceeded %u bytes; sent an error instead",
                 (unsigned long long)r->stream_id, (unsigned long long)r->frame_id, c->max_frame);
    }
    conn_append(c, r->buf, r->ack.len);
    STAT_INC(w, ack_frames);
    prom_hist_observe_ns(&w->stats->notify_latency, mono_ns() - r->t0_ns);
    req_put(r);
    if (w->draining && c->ninflight == 0 && c->state == CONN_READY && !c->processing)
        conn_disconnect_normal(c, "agent shutting down");
}

/* --- frames -------------------------------------------------------------------- */

static void handle_hello(struct spoa_conn *c, const struct spop_frame *f)
{
    struct spop_hello h;
    int st = spop_hello_decode(f->payload, f->payload_len, &h);
    if (st != SPOP_OK) {
        conn_fail(c, (uint32_t)st, NULL);
        return;
    }
    uint32_t ours = c->w->cfg->max_frame_size;
    c->max_frame = h.max_frame_size < ours ? h.max_frame_size : ours;

    uint8_t buf[256];
    struct spop_writer wr;
    spop_writer_init(&wr, buf, sizeof(buf));
    /* Only pipelining: async and fragmentation are gone from HAProxy 3.1 and
     * async broke other agents on 2.x. */
    spop_agent_hello_encode(&wr, c->max_frame, "pipelining");
    if (h.healthcheck) {
        STAT_INC(c->w, healthchecks);
        conn_close_with(c, buf, wr.len);
        return;
    }
    conn_append(c, buf, wr.len);
    c->state = CONN_READY;
    log_debug("spoa: fd %d handshake done, max-frame-size %u, pipelining %s", c->fd, c->max_frame,
              h.cap_pipelining ? "yes" : "no");
}

static void handle_notify(struct spoa_conn *c, const struct spop_frame *f)
{
    struct spoa_worker *w = c->w;
    struct spop_msg msgs[SPOP_MAX_MSGS];
    size_t nmsgs;
    int st = spop_notify_decode(f->payload, f->payload_len, msgs, SPOP_MAX_MSGS, &nmsgs);
    if (st != SPOP_OK) {
        conn_fail(c, (uint32_t)st,
                  st == SPOP_ERR_RES ? "NOTIFY holds more messages or arguments than supported"
                                     : "malformed NOTIFY");
        return;
    }
    struct spoa_req *r = req_get(w);
    if (!r) {
        conn_fail(c, SPOP_ERR_RES, "out of memory");
        return;
    }
    STAT_INC(w, notify_frames);
    r->w = w;
    r->conn = c;
    r->prev = NULL;
    r->next = c->inflight;
    if (c->inflight) c->inflight->prev = r;
    c->inflight = r;
    c->ninflight++;
    r->stream_id = f->stream_id;
    r->frame_id = f->frame_id;
    r->t0_ns = mono_ns();
    req_begin_ack(r);
    if (nmsgs == 0) /* HAProxy sends these; nothing to ask the handler */
        spoa_req_done(r);
    else
        w->handler->notify(w->hctx, r, msgs, nmsgs);
}

static void handle_frame(struct spoa_conn *c, const struct spop_frame *f)
{
    if (!(f->flags & SPOP_FLAG_FIN) || f->type == SPOP_FRAME_UNSET) {
        conn_fail(c, SPOP_ERR_FRAG_NOT_SUPPORTED, NULL);
        return;
    }
    switch (f->type) {
    case SPOP_FRAME_HAPROXY_HELLO:
        if (c->state != CONN_HELLO)
            conn_fail(c, SPOP_ERR_INVALID, "second HAPROXY-HELLO");
        else
            handle_hello(c, f);
        return;
    case SPOP_FRAME_NOTIFY:
        if (c->state != CONN_READY)
            conn_fail(c, SPOP_ERR_INVALID, "NOTIFY before HELLO");
        else
            handle_notify(c, f);
        return;
    case SPOP_FRAME_HAPROXY_DISCONNECT: {
        struct spop_disconnect d;
        STAT_INC(c->w, peer_disconnects);
        if (spop_disconnect_decode(f->payload, f->payload_len, &d) == SPOP_OK && d.status != 0)
            log_info("spoa: HAProxy disconnected fd %d: status %u (%.*s)", c->fd, d.status,
                     (int)(d.message.len > 200 ? 200 : d.message.len), d.message.ptr);
        conn_disconnect_normal(c, "bye");
        return;
    }
    case SPOP_FRAME_AGENT_HELLO:
    case SPOP_FRAME_AGENT_DISCONNECT:
    case SPOP_FRAME_ACK:
        conn_fail(c, SPOP_ERR_INVALID, "agent frame type sent to the agent");
        return;
    default:
        /* "Unknown frames may be silently skipped" (SPOE.txt 3.2.2). */
        STAT_INC(c->w, frames_unknown);
        log_debug("spoa: fd %d skipped unknown frame type %u", c->fd, f->type);
        return;
    }
}

/* Handles every complete frame in the input buffer, stopping early while the
 * connection is paused or closing. */
static void conn_process_input(struct spoa_conn *c)
{
    size_t off = 0;
    c->processing = true;
    while (c->state != CONN_CLOSING && conn_may_read(c)) {
        struct spop_frame f;
        size_t used;
        int st = spop_frame_parse(c->in + off, c->in_len - off, c->max_frame, &f, &used);
        if (st == SPOP_INCOMPLETE) break;
        if (st != SPOP_OK) {
            conn_fail(c, (uint32_t)st, NULL);
            break;
        }
        off += used;
        handle_frame(c, &f);
    }
    c->processing = false;
    if (off) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    if (c->state != CONN_CLOSING) {
        conn_set_reading(c, conn_may_read(c));
        /* Draining: once nothing is in flight, say goodbye between frames. */
        if (c->w->draining && c->ninflight == 0 && c->state == CONN_READY)
            conn_disconnect_normal(c, "agent shutting down");
    }
}

/* --- socket I/O ------------------------------------------------------------------ */

static void read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct spoa_conn *c = io->data;

    if (c->half_closed) {
        /* Discard until HAProxy closes its side too. */
        char sink[4096];
        ssize_t n = read(c->fd, sink, sizeof(sink));
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) conn_destroy(c);
        return;
    }
    if (c->in_len == c->in_cap) {
        /* cannot happen while a whole frame always fits; never read 0 bytes */
        conn_process_input(c);
        return;
    }
    ssize_t n = read(c->fd, c->in + c->in_len, c->in_cap - c->in_len);
    if (n < 0) {
        if (errno == EAGAIN || errno == EINTR) return;
        if (errno != ECONNRESET) log_info("spoa: read on fd %d: %s", c->fd, strerror(errno));
        conn_destroy(c); /* a reset is HAProxy's normal way to drop idle links */
        return;
    }
    if (n == 0) {
        conn_destroy(c);
        return;
    }
    c->in_len += (size_t)n;
    conn_process_input(c);
    if (c->state == CONN_CLOSING) mark_dirty(c);
}

/* Writes pending output. Returns false when the connection was destroyed. */
static bool conn_write(struct spoa_conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = write(c->fd, c->out + c->out_off, c->out_len - c->out_off);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN) {
                ev_io_start(c->w->loop, &c->wio);
                return true;
            }
            if (errno != EPIPE && errno != ECONNRESET)
                log_info("spoa: write on fd %d: %s", c->fd, strerror(errno));
            conn_destroy(c);
            return false;
        }
        c->out_off += (size_t)n;
    }
    c->out_off = c->out_len = 0;
    ev_io_stop(c->w->loop, &c->wio);
    if (c->state == CONN_CLOSING && !c->half_closed) {
        /* Half-close so the DISCONNECT is read before any reset; wait for
         * HAProxy's close, bounded by the linger timer. */
        shutdown(c->fd, SHUT_WR);
        c->half_closed = true;
        c->reading = true;
        ev_io_start(c->w->loop, &c->rio);
    }
    return true;
}

static void write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)loop;
    (void)revents;
    struct spoa_conn *c = io->data;
    if (conn_write(c) && c->state != CONN_CLOSING && !c->reading && conn_may_read(c))
        mark_dirty(c); /* resume: the flush processes buffered input */
}

void spoa_worker_flush(struct spoa_worker *w)
{
    /* Processing buffered input can dirty connections again: loop until
     * nothing is left, so no output waits for the next poll. */
    while (w->dirty) {
        struct spoa_conn *c = w->dirty;
        w->dirty = c->dirty_next;
        c->on_dirty = false;
        if (!conn_write(c)) continue;
        if (c->state != CONN_CLOSING && !c->reading && conn_may_read(c)) conn_process_input(c);
    }
}

void spoa_conn_open(struct spoa_worker *w, int fd)
{
    struct spoa_conn *c = calloc(1, sizeof(*c));
    size_t in_cap = (size_t)w->cfg->max_frame_size + 4;
    if (in_cap < READ_CHUNK) in_cap = READ_CHUNK;
    if (!c || !(c->in = malloc(in_cap))) {
        log_error("spoa: out of memory accepting a connection");
        free(c);
        close(fd);
        return;
    }
    c->w = w;
    c->fd = fd;
    c->in_cap = in_cap;
    c->state = CONN_HELLO;
    c->max_frame = w->cfg->max_frame_size;
    ev_io_init(&c->rio, read_cb, fd, EV_READ);
    ev_io_init(&c->wio, write_cb, fd, EV_WRITE);
    ev_timer_init(&c->linger, linger_cb, CLOSE_LINGER_S, 0.);
    c->rio.data = c->wio.data = c->linger.data = c;
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    STAT_INC(w, conns_accepted);
    STAT_INC(w, conns_open);
    conn_set_reading(c, true);
}

static void conn_destroy(struct spoa_conn *c)
{
    struct spoa_worker *w = c->w;

    for (struct spoa_req *r = c->inflight; r; r = r->next)
        r->conn = NULL; /* the handler still owns it; its answer is dropped */
    ev_io_stop(w->loop, &c->rio);
    ev_io_stop(w->loop, &c->wio);
    ev_timer_stop(w->loop, &c->linger);
    if (c->on_dirty) {
        struct spoa_conn **pp = &w->dirty;
        while (*pp != c)
            pp = &(*pp)->dirty_next;
        *pp = c->dirty_next;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    w->nconns--;
    STAT_DEC(w, conns_open);
    close(c->fd);
    free(c->in);
    free(c->out);
    free(c);
    if (w->draining && w->nconns == 0) ev_break(w->loop, EVBREAK_ALL);
}

void spoa_worker_drain(struct spoa_worker *w)
{
    w->draining = true;
    for (struct spoa_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        if (c->state == CONN_HELLO)
            conn_disconnect_normal(c, "agent shutting down");
        else if (c->state == CONN_READY && c->ninflight == 0)
            conn_disconnect_normal(c, "agent shutting down");
        /* others say goodbye when their last in-flight NOTIFY is answered */
    }
}

void spoa_worker_close_all(struct spoa_worker *w)
{
    while (w->conns)
        conn_destroy(w->conns);
}

void spoa_worker_release(struct spoa_worker *w)
{
    while (w->free_reqs) {
        struct spoa_req *r = w->free_reqs;
        w->free_reqs = r->next;
        free(r);
    }
    w->nfree_reqs = 0;
}
