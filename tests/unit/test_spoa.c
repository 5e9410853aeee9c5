/*
 * SPOA server tests: the real server on a loopback port, driven by a blocking
 * test client, with a fake handler that can answer late and out of order
 * (and, for one test, the gateway handler over a static snapshot store).
 * No HAProxy involved: these pin the connection layer's behaviour frame by
 * frame (handshake, pipelining, errors, shutdown).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "handler_gw.h"
#include "snapshot.h"
#include "spoa.h"

/* --- fake handler ------------------------------------------------------------------ */

/* Answers each message with set-var(txn, "n", <arg n>) after <arg delay_ms>
 * milliseconds, so tests choose the order in which ACKs leave. */
struct fake_thread;

struct pending {
    ev_timer timer;
    struct spoa_req *req;
    struct fake_thread *owner;
    struct pending *next;
};

struct fake_thread {
    struct ev_loop *loop;
    struct pending *list;
};

static void *fake_init(struct ev_loop *loop, void *global)
{
    (void)global;
    struct fake_thread *t = calloc(1, sizeof(*t));
    t->loop = loop;
    return t;
}

static void fake_answer(struct fake_thread *t, struct pending *p)
{
    struct pending **pp = &t->list;
    while (*pp != p)
        pp = &(*pp)->next;
    *pp = p->next;
    ev_timer_stop(t->loop, &p->timer);
    spoa_req_done(p->req);
    free(p);
}

static void fake_fini(void *tctx)
{
    struct fake_thread *t = tctx;
    while (t->list)
        fake_answer(t, t->list);
    free(t);
}

static void fake_timer_cb(struct ev_loop *loop, ev_timer *timer, int revents)
{
    (void)loop;
    (void)revents;
    struct pending *p = timer->data;
    fake_answer(p->owner, p);
}

static void fake_notify(void *tctx, struct spoa_req *req, const struct spop_msg *msgs, size_t nmsgs)
{
    struct fake_thread *t = tctx;
    uint64_t delay = 0;
    for (size_t m = 0; m < nmsgs; m++) {
        for (unsigned i = 0; i < msgs[m].nargs; i++) {
            const struct spop_kv *kv = &msgs[m].args[i];
            if (spop_str_eq(kv->name, "n"))
                spoa_req_set_var(req, SPOP_SCOPE_TXN, "n", &kv->value);
            else if (spop_str_eq(kv->name, "delay_ms"))
                spop_data_as_u64(&kv->value, &delay);
            else if (spop_str_eq(kv->name, "big")) {
                /* ask for more than any frame holds */
                static char blob[20000];
                memset(blob, 'x', sizeof(blob));
                struct spop_data v = spop_data_str(blob, sizeof(blob));
                spoa_req_set_var(req, SPOP_SCOPE_TXN, "big", &v);
            }
        }
    }
    if (delay == 0) {
        spoa_req_done(req);
        return;
    }
    struct pending *p = calloc(1, sizeof(*p));
    p->owner = t;
    p->req = req;
    p->next = t->list;
    t->list = p;
    ev_timer_init(&p->timer, fake_timer_cb, (double)delay / 1000.0, 0.);
    p->timer.data = p;
    ev_timer_start(t->loop, &p->timer);
}

/* --- server in a thread ---------------------------------------------------------- */

static struct spoa_stats stats;
static pthread_t server_thread;
static int server_rc;
static struct spoa_config cfg;
static struct spoa_handler handler = {"fake", fake_init, fake_fini, fake_notify, NULL};
static struct spoa_handler *serving = &handler; /* the handler server_start runs */

static void *server_main(void *arg)
{
    (void)arg;
    server_rc = spoa_server_run(&cfg, serving, &stats);
    return NULL;
}

static uint16_t server_start(unsigned shutdown_ms)
{
    memset(&stats, 0, sizeof(stats));
    cfg = (struct spoa_config){.listen = "127.0.0.1:0",
                               .threads = 2,
                               .max_frame_size = 16380,
                               .max_inflight = 64,
                               .max_output = 64 * 1024,
                               .shutdown_ms = shutdown_ms};
    ck_assert_int_eq(pthread_create(&server_thread, NULL, server_main, NULL), 0);
    for (int i = 0; i < 2000 && atomic_load(&stats.listen_port) == 0; i++)
        usleep(1000);
    ck_assert_uint_ne(atomic_load(&stats.listen_port), 0);
    return (uint16_t)atomic_load(&stats.listen_port);
}

static void server_stop(void)
{
    spoa_server_stop();
    pthread_join(server_thread, NULL);
    ck_assert_int_eq(server_rc, 0);
}

/* --- blocking test client -------------------------------------------------------- */

static int client_connect(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    ck_assert_int_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads one frame into buf (2 s timeout). Returns its size, 0 on EOF. */
static size_t read_frame(int fd, uint8_t *buf, size_t cap, struct spop_frame *f)
{
    size_t len = 0;
    for (;;) {
        size_t used;
        if (len >= 4 && spop_frame_parse(buf, len, (uint32_t)cap, f, &used) == SPOP_OK) return used;
        struct pollfd pfd = {fd, POLLIN, 0};
        ck_assert_msg(poll(&pfd, 1, 2000) == 1, "timed out waiting for a frame");
        /* read byte-exact so the next frame stays in the socket */
        size_t want = len < 4 ? 4 - len : 0;
        if (len >= 4) {
            uint32_t flen;
            memcpy(&flen, buf, 4);
            want = 4 + ntohl(flen) - len;
        }
        ck_assert_uint_le(len + want, cap);
        ssize_t n = recv(fd, buf + len, want, 0);
        if (n <= 0) return 0;
        len += (size_t)n;
    }
}

static bool peer_closed(int fd)
{
    struct pollfd pfd = {fd, POLLIN, 0};
    if (poll(&pfd, 1, 2000) != 1) return false;
    char c;
    return recv(fd, &c, 1, 0) <= 0;
}

static void do_hello(int fd, uint32_t mfs, bool healthcheck, struct spop_hello *out_caps,
                     uint32_t *agent_mfs)
{
    uint8_t buf[512];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    ck_assert(spop_haproxy_hello_encode(&w, mfs, healthcheck ? "" : "pipelining", healthcheck));
    send_all(fd, buf, w.len);
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_AGENT_HELLO);
    /* decode the AGENT-HELLO's KV-list by hand: version, max-frame-size, caps */
    struct spop_reader r = {f.payload, f.payload + f.payload_len};
    memset(out_caps, 0, sizeof(*out_caps));
    while (r.p < r.end) {
        struct spop_str k;
        struct spop_data v;
        ck_assert(spop_get_str(&r, &k) && spop_get_data(&r, &v));
        if (spop_str_eq(k, "version"))
            ck_assert(spop_str_eq(v.u.str, "2.0"));
        else if (spop_str_eq(k, "max-frame-size"))
            *agent_mfs = v.u.u32;
        else if (spop_str_eq(k, "capabilities"))
            out_caps->cap_pipelining = spop_str_eq(v.u.str, "pipelining");
    }
}

static size_t encode_notify(uint8_t *buf, size_t cap, uint64_t sid, uint64_t fid, int64_t n,
                            int64_t delay_ms)
{
    struct spop_writer w;
    spop_writer_init(&w, buf, cap);
    size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, sid, fid);
    spop_notify_put_msg(&w, "req", 2);
    struct spop_data v = spop_data_i64(n);
    spop_put_kv(&w, "n", &v);
    v = spop_data_i64(delay_ms);
    spop_put_kv(&w, "delay_ms", &v);
    ck_assert(spop_frame_end(&w, start, 16380));
    return w.len;
}

static uint32_t expect_disconnect(int fd)
{
    uint8_t buf[512];
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_AGENT_DISCONNECT);
    struct spop_disconnect d;
    ck_assert_int_eq(spop_disconnect_decode(f.payload, f.payload_len, &d), SPOP_OK);
    ck_assert(peer_closed(fd));
    return d.status;
}

/* --- tests ------------------------------------------------------------------------ */

START_TEST(handshake_negotiates_frame_size)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs = 0;
    int fd = client_connect(port);
    do_hello(fd, 4096, false, &caps, &mfs);
    ck_assert_uint_eq(mfs, 4096); /* never above HAProxy's */
    ck_assert(caps.cap_pipelining);
    close(fd);

    fd = client_connect(port);
    do_hello(fd, 65536, false, &caps, &mfs);
    ck_assert_uint_eq(mfs, 16380); /* never above ours */
    close(fd);
    server_stop();
}
END_TEST

START_TEST(healthcheck_answered_then_closed)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, true, &caps, &mfs);
    ck_assert(peer_closed(fd));
    close(fd);
    ck_assert_uint_eq(atomic_load(&stats.healthchecks), 1);
    server_stop();
}
END_TEST

START_TEST(pipelined_notifies_answered_out_of_order)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);

    /* three frames in one write; the first is answered last */
    uint8_t out[1024];
    size_t len = 0;
    len += encode_notify(out + len, sizeof(out) - len, 11, 1, 100, 60);
    len += encode_notify(out + len, sizeof(out) - len, 12, 7, 200, 30);
    len += encode_notify(out + len, sizeof(out) - len, 13, 3, 300, 1);
    send_all(fd, out, len);

    static const uint64_t want_sid[] = {13, 12, 11}, want_fid[] = {3, 7, 1};
    static const int64_t want_n[] = {300, 200, 100};
    for (int i = 0; i < 3; i++) {
        uint8_t buf[512];
        struct spop_frame f;
        ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
        ck_assert_uint_eq(f.type, SPOP_FRAME_ACK);
        ck_assert_uint_eq(f.stream_id, want_sid[i]);
        ck_assert_uint_eq(f.frame_id, want_fid[i]);
        struct spop_action acts[4];
        size_t n;
        ck_assert_int_eq(spop_ack_decode(f.payload, f.payload_len, acts, 4, &n), SPOP_OK);
        ck_assert_uint_eq(n, 1);
        ck_assert(spop_str_eq(acts[0].name, "n"));
        ck_assert_int_eq(acts[0].value.u.i64, want_n[i]);
    }
    close(fd);
    server_stop();
}
END_TEST

START_TEST(notify_without_messages_gets_an_action)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    uint8_t buf[256];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, 1, 1);
    spop_frame_end(&w, start, 16380);
    send_all(fd, buf, w.len);
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_ACK);
    ck_assert_uint_gt(f.payload_len, 0); /* never an empty ACK */
    close(fd);
    server_stop();
}
END_TEST

START_TEST(oversized_ack_becomes_error_action)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    uint8_t buf[16384];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, 9, 9);
    spop_notify_put_msg(&w, "req", 1);
    struct spop_data v = spop_data_bool(true);
    spop_put_kv(&w, "big", &v);
    spop_frame_end(&w, start, 16380);
    send_all(fd, buf, w.len);
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_ACK);
    ck_assert_uint_eq(f.stream_id, 9);
    struct spop_action acts[2];
    size_t n;
    ck_assert_int_eq(spop_ack_decode(f.payload, f.payload_len, acts, 2, &n), SPOP_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(spop_str_eq(acts[0].name, "error"));
    ck_assert_uint_eq(acts[0].value.u.u32, SPOP_ERR_TOO_BIG);
    close(fd);
    ck_assert_uint_eq(atomic_load(&stats.acks_too_big), 1);
    server_stop();
}
END_TEST

/* Each protocol violation ends the connection with the spec's status code. */
struct violation {
    const char *what;
    bool hello_first;
    const char *bytes;
    size_t len;
    uint32_t status;
};

#define VIOL(what, hello, lit, st)                                                                 \
    {                                                                                              \
        what, hello, lit, sizeof(lit) - 1, st                                                      \
    }
static const struct violation violations[] = {
    VIOL("NOTIFY before HELLO", false, "\x00\x00\x00\x07\x03\x00\x00\x00\x01\x01\x01",
         SPOP_ERR_INVALID),
    VIOL("frame bigger than max-frame-size", true, "\x00\x01\x00\x00", SPOP_ERR_TOO_BIG),
    VIOL("fragmented NOTIFY (FIN clear)", true, "\x00\x00\x00\x07\x03\x00\x00\x00\x00\x01\x01",
         SPOP_ERR_FRAG_NOT_SUPPORTED),
    VIOL("UNSET continuation frame", true, "\x00\x00\x00\x07\x00\x00\x00\x00\x01\x01\x01",
         SPOP_ERR_FRAG_NOT_SUPPORTED),
    VIOL("malformed NOTIFY payload", true, "\x00\x00\x00\x09\x03\x00\x00\x00\x01\x01\x01\x05\x61",
         SPOP_ERR_INVALID),
    VIOL("second HELLO", true, "\x00\x00\x00\x07\x01\x00\x00\x00\x01\x00\x00", SPOP_ERR_INVALID),
    VIOL("agent frame type from HAProxy", true, "\x00\x00\x00\x07\x67\x00\x00\x00\x01\x01\x01",
         SPOP_ERR_INVALID),
    VIOL("HELLO without version", false, "\x00\x00\x00\x07\x01\x00\x00\x00\x01\x00\x00",
         SPOP_ERR_NO_VSN),
    VIOL("frame shorter than its header", true, "\x00\x00\x00\x02\x03\x00", SPOP_ERR_INVALID),
};

START_TEST(protocol_violations_refused_with_status)
{
    const struct violation *v = &violations[_i];
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    if (v->hello_first) do_hello(fd, 16380, false, &caps, &mfs);
    send_all(fd, v->bytes, v->len);
    uint32_t status = expect_disconnect(fd);
    ck_assert_msg(status == v->status, "%s: status %u, want %u", v->what, status, v->status);
    close(fd);
    server_stop();
}
END_TEST

START_TEST(unknown_frame_type_skipped)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    send_all(fd, "\x00\x00\x00\x08\x2A\x00\x00\x00\x01\x00\x00\xAB", 12); /* type 42 */
    uint8_t buf[512];
    size_t n = encode_notify(buf, sizeof(buf), 4, 4, 44, 0);
    send_all(fd, buf, n);
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_ACK);
    ck_assert_uint_eq(f.stream_id, 4);
    ck_assert_uint_eq(atomic_load(&stats.frames_unknown), 1);
    close(fd);
    server_stop();
}
END_TEST

START_TEST(haproxy_disconnect_answered)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    uint8_t buf[256];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    spop_disconnect_encode(&w, SPOP_FRAME_HAPROXY_DISCONNECT, 0, "normal");
    send_all(fd, buf, w.len);
    ck_assert_uint_eq(expect_disconnect(fd), SPOP_OK);
    close(fd);
    server_stop();
}
END_TEST

START_TEST(reset_leaves_other_connections_alone)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int a = client_connect(port), b = client_connect(port);
    do_hello(a, 16380, false, &caps, &mfs);
    do_hello(b, 16380, false, &caps, &mfs);
    uint8_t buf[512];
    size_t n = encode_notify(buf, sizeof(buf), 1, 1, 1, 50);
    send_all(a, buf, n);
    struct linger lg = {1, 0};
    setsockopt(a, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    close(a); /* RST with a NOTIFY in flight: its answer becomes an orphan */
    n = encode_notify(buf, sizeof(buf), 2, 2, 2, 0);
    send_all(b, buf, n);
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(b, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.stream_id, 2);
    usleep(100 * 1000);
    ck_assert_uint_eq(atomic_load(&stats.acks_dropped), 1);
    close(b);
    server_stop();
}
END_TEST

START_TEST(shutdown_answers_in_flight_then_disconnects)
{
    uint16_t port = server_start(2000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    uint8_t buf[512];
    size_t n = encode_notify(buf, sizeof(buf), 5, 6, 56, 200);
    send_all(fd, buf, n);
    usleep(20 * 1000);
    spoa_server_stop();

    /* a new connection is refused once the listener is closed */
    usleep(50 * 1000);
    int late = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_ne(connect(late, (struct sockaddr *)&sa, sizeof(sa)), 0);
    close(late);

    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_ACK);
    ck_assert_uint_eq(f.stream_id, 5);
    ck_assert_uint_eq(expect_disconnect(fd), SPOP_OK);
    close(fd);
    pthread_join(server_thread, NULL);
    ck_assert_int_eq(server_rc, 0);
}
END_TEST

START_TEST(many_pipelined_frames_all_answered)
{
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    /* more than max_inflight (64) at once: reading pauses, nothing is lost */
    enum { N = 500 };
    static uint8_t out[N * 64];
    size_t len = 0;
    for (int i = 0; i < N; i++)
        len += encode_notify(out + len, sizeof(out) - len, (uint64_t)i, 1, i, i % 3);
    send_all(fd, out, len);
    static bool seen[N];
    memset(seen, 0, sizeof(seen));
    for (int i = 0; i < N; i++) {
        uint8_t buf[512];
        struct spop_frame f;
        ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
        ck_assert_uint_lt(f.stream_id, N);
        ck_assert(!seen[f.stream_id]);
        seen[f.stream_id] = true;
    }
    close(fd);
    server_stop();
}
END_TEST

/* The gateway handler: a worker that answered a request and then gets no
 * more still lets go of the snapshot it used once a new one is published,
 * so the store can free it (a replaced million-user snapshot is 100+ MB). */
START_TEST(idle_gateway_worker_lets_go_of_a_replaced_snapshot)
{
    struct snapshot_rows rows = {.loaded_at_ms = 1700000000000};
    struct snapshot_store *store = snapshot_store_new_static(snapshot_build(&rows, NULL, NULL));
    ck_assert_ptr_nonnull(store);
    struct gw_config gcfg = {.store = store, .balance_checks = false};
    static struct gw_stats gstats;
    struct spoa_handler gw;
    handler_gw_init(&gw, &gcfg, &gstats);
    serving = &gw;
    uint16_t port = server_start(1000);
    struct spop_hello caps;
    uint32_t mfs;
    int fd = client_connect(port);
    do_hello(fd, 16380, false, &caps, &mfs);
    uint8_t buf[512];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, 1, 1);
    spop_notify_put_msg(&w, "gw-health", 0);
    ck_assert(spop_frame_end(&w, start, 16380));
    send_all(fd, buf, w.len);
    struct spop_frame f;
    ck_assert_uint_gt(read_frame(fd, buf, sizeof(buf), &f), 0);
    ck_assert_uint_eq(f.type, SPOP_FRAME_ACK); /* the worker holds the first snapshot now */

    snapshot_store_publish(store, snapshot_build(&rows, NULL, NULL));
    size_t held = 1;
    for (int i = 0; i < 500 && held > 0; i++) { /* the workers tick every second */
        usleep(10 * 1000);
        held = snapshot_store_reap(store);
    }
    ck_assert_uint_eq(held, 0);
    close(fd);
    server_stop();
    serving = &handler;
    snapshot_store_stop(store);
}
END_TEST

Suite *spoa_suite(void)
{
    Suite *s = suite_create("spoa");
    TCase *tc = tcase_create("server");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, handshake_negotiates_frame_size);
    tcase_add_test(tc, healthcheck_answered_then_closed);
    tcase_add_test(tc, pipelined_notifies_answered_out_of_order);
    tcase_add_test(tc, notify_without_messages_gets_an_action);
    tcase_add_test(tc, oversized_ack_becomes_error_action);
    tcase_add_loop_test(tc, protocol_violations_refused_with_status, 0,
                        sizeof(violations) / sizeof(violations[0]));
    tcase_add_test(tc, unknown_frame_type_skipped);
    tcase_add_test(tc, haproxy_disconnect_answered);
    tcase_add_test(tc, reset_leaves_other_connections_alone);
    tcase_add_test(tc, shutdown_answers_in_flight_then_disconnects);
    tcase_add_test(tc, many_pipelined_frames_all_answered);
    tcase_add_test(tc, idle_gateway_worker_lets_go_of_a_replaced_snapshot);
    suite_add_tcase(s, tc);
    return s;
}
