/*
 * Unit tests for agent/common/net.c (host:port, listening sockets, resolving
 * off the loop), agent/common/redis_conn.c (the kept-up Redis connection) and
 * agent/common/clock.c.
 *
 * Resolution is made slow with net_set_getaddrinfo: the name "slow.test"
 * takes SLOW_MS to resolve (to 127.0.0.1). A 10 ms timer on the same loop
 * shows the loop keeps running meanwhile; hiredis, connecting to the numeric
 * address, resolves nothing itself. A fake Redis (a listening socket on the
 * loop) records what the connection sends.
 */
#include <arpa/inet.h>
#include <check.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "clock.h"
#include "net.h"
#include "redis_conn.h"

#define SLOW_MS 600

static int slow_gai(const char *node, const char *service, const struct addrinfo *hints,
                    struct addrinfo **res)
{
    if (node && strcmp(node, "slow.test") == 0) {
        usleep(SLOW_MS * 1000);
        node = "127.0.0.1";
    }
    if (node && strcmp(node, "nx.test") == 0) return EAI_NONAME;
    return getaddrinfo(node, service, hints, res);
}

/* --- host:port ------------------------------------------------------------------- */

START_TEST(hostport_forms)
{
    char h[64];
    int p;
    ck_assert(net_parse_hostport("redis:6379", h, sizeof(h), &p, 0));
    ck_assert_str_eq(h, "redis");
    ck_assert_int_eq(p, 6379);
    ck_assert(net_parse_hostport("[::1]:80", h, sizeof(h), &p, 0));
    ck_assert_str_eq(h, "::1");
    ck_assert(net_parse_hostport("127.0.0.1:65535", h, sizeof(h), &p, 0));
    ck_assert_int_eq(p, 65535);
    const char *bad[] = {"redis",       ":6379",     "redis:",   "redis:0",
                         "redis:65536", "redis:12a", "redis:-1", "[]:1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        ck_assert_msg(!net_parse_hostport(bad[i], h, sizeof(h), &p, 0), "%s", bad[i]);
    ck_assert(!net_parse_hostport("averyveryverylonghostname:1", h, 8, &p, 0));
    /* what a listen address may be */
    ck_assert(net_parse_hostport(":0", h, sizeof(h), &p, NET_ANY_HOST | NET_PORT_ZERO));
    ck_assert_str_eq(h, "");
    ck_assert_int_eq(p, 0);
    ck_assert(net_parse_hostport("*:12345", h, sizeof(h), &p, NET_ANY_HOST));
    ck_assert_str_eq(h, "");
    ck_assert(net_is_numeric("127.0.0.1"));
    ck_assert(net_is_numeric("::1"));
    ck_assert(!net_is_numeric("localhost"));
    ck_assert(!net_is_numeric("[::1]"));
}
END_TEST

START_TEST(listen_binds_a_free_port)
{
    int fd = net_listen("127.0.0.1:0");
    ck_assert_int_ge(fd, 0);
    unsigned port = net_bound_port(fd);
    ck_assert_uint_gt(port, 0);
    char spec[32];
    snprintf(spec, sizeof(spec), "127.0.0.1:%u", port);
    ck_assert_int_eq(net_listen(spec), -1); /* in use */
    close(fd);
    ck_assert_int_eq(net_listen("127.0.0.1"), -1);
    ck_assert_int_eq(net_listen("127.0.0.1:http"), -1);
}
END_TEST

START_TEST(resolve_blocking)
{
    char addr[NET_ADDR_MAX], err[320];
    ck_assert_int_eq(net_resolve("127.0.0.1", addr, err, sizeof(err)), 0);
    ck_assert_str_eq(addr, "127.0.0.1");
    ck_assert_int_eq(net_resolve("::1", addr, err, sizeof(err)), 0);
    ck_assert_str_eq(addr, "::1");
    net_set_getaddrinfo(slow_gai);
    ck_assert_int_eq(net_resolve("nx.test", addr, err, sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "cannot resolve 'nx.test'"));
    net_set_getaddrinfo(NULL);
}
END_TEST

/* --- resolving off the loop -------------------------------------------------------- */

struct ticker {
    ev_timer t;
    int ticks;
    ev_tstamp last, max_gap;
};

static void tick_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)revents;
    struct ticker *k = (struct ticker *)t;
    ev_tstamp now = ev_time();
    if (k->ticks++ > 0 && now - k->last > k->max_gap) k->max_gap = now - k->last;
    k->last = now;
    (void)loop;
}

static void ticker_start(struct ev_loop *loop, struct ticker *k)
{
    memset(k, 0, sizeof(*k));
    ev_timer_init(&k->t, tick_cb, 0.01, 0.01);
    ev_timer_start(loop, &k->t);
    k->last = ev_time();
}

struct answer {
    int calls;
    char addr[NET_ADDR_MAX];
    char err[320];
    int64_t at_ms;
};

static void resolved_cb(void *arg, const char *addr, const char *err)
{
    struct answer *a = arg;
    a->calls++;
    a->at_ms = clock_mono_ms();
    snprintf(a->addr, sizeof(a->addr), "%s", addr ? addr : "");
    snprintf(a->err, sizeof(a->err), "%s", err ? err : "");
}

static void stop_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
    (void)t;
    (void)revents;
    ev_break(loop, EVBREAK_ALL);
}

/* Runs the loop until *flag is non-zero or `limit` seconds have passed. */
static void run_until(struct ev_loop *loop, const int *flag, double limit)
{
    ev_timer guard;
    ev_timer_init(&guard, stop_cb, limit, 0.);
    ev_timer_start(loop, &guard);
    while (!*flag && ev_is_active(&guard))
        ev_run(loop, EVRUN_ONCE);
    ev_timer_stop(loop, &guard);
}

START_TEST(slow_resolution_leaves_the_loop_running)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct ticker k;
    struct answer a = {0};
    net_set_getaddrinfo(slow_gai);
    int64_t start = clock_mono_ms();
    ticker_start(loop, &k);
    struct net_resolve_job *job = net_resolve_start(loop, "slow.test", resolved_cb, &a);
    ck_assert_ptr_nonnull(job);
    ck_assert_int_eq(a.calls, 0); /* never from within the call */
    run_until(loop, &a.calls, 5.0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_str_eq(a.addr, "127.0.0.1");
    ck_assert_int_ge(a.at_ms - start, SLOW_MS - 10);
    /* the loop ran all along: ticks every 10 ms, no long gap */
    ck_assert_int_ge(k.ticks, 10);
    ck_assert_msg(k.max_gap < SLOW_MS / 2000.0, "the loop stalled %.3f s", k.max_gap);

    /* a name that does not resolve: the reason comes back */
    a.calls = 0;
    ck_assert_ptr_nonnull(net_resolve_start(loop, "nx.test", resolved_cb, &a));
    run_until(loop, &a.calls, 5.0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_str_eq(a.addr, "");
    ck_assert_ptr_nonnull(strstr(a.err, "nx.test"));
    net_set_getaddrinfo(NULL);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(cancelled_resolution_never_calls_back)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct answer a = {0};
    net_set_getaddrinfo(slow_gai);
    struct net_resolve_job *job = net_resolve_start(loop, "slow.test", resolved_cb, &a);
    ck_assert_ptr_nonnull(job);
    net_resolve_cancel(job);
    int never = 0;
    run_until(loop, &never, (SLOW_MS + 200) / 1000.0); /* the thread finishes meanwhile */
    ck_assert_int_eq(a.calls, 0);
    net_set_getaddrinfo(NULL);
    ev_loop_destroy(loop);
}
END_TEST

/* --- the Redis connection, against a fake Redis ---------------------------------------- */

struct fake_redis {
    int lfd, cfd;
    ev_io accept_io, read_io;
    char got[512];
    size_t len;
    int accepted;
};

static void fake_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct fake_redis *f = io->data;
    ssize_t n = read(f->cfd, f->got + f->len, sizeof(f->got) - 1 - f->len);
    if (n <= 0) {
        ev_io_stop(loop, io);
        return;
    }
    f->len += (size_t)n;
    f->got[f->len] = '\0'; /* no answers: hiredis is up once TCP connects */
}

static void fake_accept_cb(struct ev_loop *loop, ev_io *io, int revents)
{
    (void)revents;
    struct fake_redis *f = io->data;
    f->cfd = accept(f->lfd, NULL, NULL);
    if (f->cfd < 0) return;
    f->accepted++;
    ev_io_init(&f->read_io, fake_read_cb, f->cfd, EV_READ);
    f->read_io.data = f;
    ev_io_start(loop, &f->read_io);
}

static unsigned fake_start(struct ev_loop *loop, struct fake_redis *f)
{
    memset(f, 0, sizeof(*f));
    f->cfd = -1;
    f->lfd = net_listen("127.0.0.1:0");
    ck_assert_int_ge(f->lfd, 0);
    ev_io_init(&f->accept_io, fake_accept_cb, f->lfd, EV_READ);
    f->accept_io.data = f;
    ev_io_start(loop, &f->accept_io);
    return net_bound_port(f->lfd);
}

static void fake_stop(struct ev_loop *loop, struct fake_redis *f)
{
    ev_io_stop(loop, &f->accept_io);
    ev_io_stop(loop, &f->read_io);
    close(f->lfd);
    if (f->cfd >= 0) close(f->cfd);
}

struct owner {
    int ups, downs, lost;
    int again; /* up a second time */
    int64_t up_at_ms;
    char why[256];
};

static void up_cb(struct redis_conn *c, void *arg)
{
    struct owner *o = arg;
    o->again = ++o->ups >= 2;
    o->up_at_ms = clock_mono_ms();
    redisAsyncCommand(redis_conn_ctx(c), NULL, NULL, "PING");
}

static void down_cb(struct redis_conn *c, bool was_up, const char *why, void *arg)
{
    (void)c;
    struct owner *o = arg;
    o->downs++;
    o->lost += was_up;
    snprintf(o->why, sizeof(o->why), "%s", why);
}

static int ping_seen(const struct fake_redis *f)
{
    return strstr(f->got, "PING") != NULL;
}

START_TEST(redis_conn_resolves_off_the_loop_then_auth_select_first)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct fake_redis f;
    struct ticker k;
    struct owner o = {0};
    unsigned port = fake_start(loop, &f);
    net_set_getaddrinfo(slow_gai);
    struct redis_conn_config cfg = {
        .host = "slow.test",
        .port = (int)port,
        .password = "s3cret",
        .db = 2,
        .name = "test redis",
        .retry_s = 0.05,
    };
    int64_t start = clock_mono_ms();
    ticker_start(loop, &k);
    struct redis_conn *c = redis_conn_start(loop, &cfg, up_cb, down_cb, &o);
    ck_assert_ptr_nonnull(c);
    ck_assert_ptr_null(redis_conn_ctx(c)); /* not up before the name is known */
    run_until(loop, &o.ups, 5.0);
    ck_assert_int_eq(o.ups, 1);
    ck_assert_int_ge(o.up_at_ms - start, SLOW_MS - 10);
    ck_assert_msg(k.max_gap < SLOW_MS / 2000.0, "the loop stalled %.3f s while resolving",
                  k.max_gap);
    ck_assert_ptr_nonnull(redis_conn_ctx(c));
    /* AUTH and SELECT go first, then the owner's command */
    for (int i = 0; i < 100 && !ping_seen(&f); i++)
        ev_run(loop, EVRUN_ONCE);
    ck_assert_msg(strncmp(f.got,
                          "*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n2\r\n"
                          "*1\r\n$4\r\nPING\r\n",
                          f.len) == 0 &&
                      ping_seen(&f),
                  "sent: %s", f.got);
    ck_assert_int_eq(f.accepted, 1);

    /* the server goes away: down (lost), then it connects again */
    close(f.cfd);
    ev_io_stop(loop, &f.read_io);
    f.cfd = -1;
    f.len = 0;
    f.got[0] = '\0';
    run_until(loop, &o.lost, 5.0);
    ck_assert_int_eq(o.lost, 1);
    ck_assert_ptr_null(redis_conn_ctx(c));
    run_until(loop, &o.again, 5.0); /* resolved again (slowly), connected again */
    ck_assert_int_eq(o.ups, 2);
    ck_assert_int_eq(f.accepted, 2);
    redis_conn_stop(c);
    net_set_getaddrinfo(NULL);
    fake_stop(loop, &f);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(redis_conn_retries_a_refused_connection)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    int fd = net_listen("127.0.0.1:0");
    unsigned port = net_bound_port(fd);
    close(fd); /* nothing listens there now */
    struct owner o = {0};
    struct redis_conn_config cfg = {
        .host = "127.0.0.1", .port = (int)port, .name = "test redis", .retry_s = 0.02};
    struct redis_conn *c = redis_conn_start(loop, &cfg, up_cb, down_cb, &o);
    ck_assert_ptr_nonnull(c);
    for (int i = 0; i < 1000 && o.downs < 3; i++)
        ev_run(loop, EVRUN_ONCE);
    ck_assert_int_ge(o.downs, 3);
    ck_assert_int_eq(o.lost, 0);
    ck_assert_int_eq(o.ups, 0);
    ck_assert_ptr_nonnull(strstr(o.why, "refused"));
    redis_conn_stop(c);
    ev_loop_destroy(loop);
}
END_TEST

START_TEST(redis_conn_stop_while_resolving)
{
    struct ev_loop *loop = ev_loop_new(EVFLAG_AUTO);
    struct owner o = {0};
    net_set_getaddrinfo(slow_gai);
    struct redis_conn_config cfg = {
        .host = "slow.test", .port = 1, .name = "test redis", .retry_s = 0.02};
    struct redis_conn *c = redis_conn_start(loop, &cfg, up_cb, down_cb, &o);
    ck_assert_ptr_nonnull(c);
    redis_conn_stop(c);
    int never = 0;
    run_until(loop, &never, (SLOW_MS + 200) / 1000.0);
    ck_assert_int_eq(o.ups + o.downs, 0);
    net_set_getaddrinfo(NULL);
    ev_loop_destroy(loop);
}
END_TEST

/* --- clocks ------------------------------------------------------------------------ */

START_TEST(clocks_in_ms)
{
    int64_t m1 = clock_mono_ms();
    usleep(20000);
    int64_t m2 = clock_mono_ms();
    ck_assert_int_ge(m2 - m1, 19);
    ck_assert_int_lt(m2 - m1, 1000);
    int64_t w = clock_wall_ms();
    ck_assert_int_le(llabs(w / 1000 - (int64_t)time(NULL)), 1);
}
END_TEST

Suite *net_suite(void)
{
    Suite *s = suite_create("net");
    TCase *tc = tcase_create("sockets");
    tcase_add_test(tc, hostport_forms);
    tcase_add_test(tc, listen_binds_a_free_port);
    tcase_add_test(tc, resolve_blocking);
    tcase_add_test(tc, clocks_in_ms);
    suite_add_tcase(s, tc);
    tc = tcase_create("resolving");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, slow_resolution_leaves_the_loop_running);
    tcase_add_test(tc, cancelled_resolution_never_calls_back);
    suite_add_tcase(s, tc);
    tc = tcase_create("redis_conn");
    tcase_set_timeout(tc, 20);
    tcase_add_test(tc, redis_conn_resolves_off_the_loop_then_auth_select_first);
    tcase_add_test(tc, redis_conn_retries_a_refused_connection);
    tcase_add_test(tc, redis_conn_stop_while_resolving);
    suite_add_tcase(s, tc);
    return s;
}
