/*
 * Unit tests for the metrics floor: the Prometheus text writer and its
 * histogram (agent/common/prom.h), the strict request parser of the /metrics
 * listener (agent/common/metrics_http.h), the listener itself on loopback,
 * and the bounded label sets of the agent's verdict counters
 * (agent/gw/verdict_stats.h).
 */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "metrics_http.h"
#include "prom.h"
#include "verdict_stats.h"

#define LIT(s) (s), (sizeof(s) - 1)

static char *text_of(struct prom_out *o)
{
    char *s = malloc(o->len + 1);
    ck_assert_ptr_nonnull(s);
    if (o->len) memcpy(s, o->p, o->len);
    s[o->len] = '\0';
    return s;
}

/* --- the writer ------------------------------------------------------------------ */

START_TEST(prom_writes_families_and_escapes_labels)
{
    struct prom_out o;
    prom_out_init(&o, 1 << 20);
    prom_counter(&o, "x_total", "Things\\counted\nhere.", 42);
    prom_gauge(&o, "y_seconds", "A gauge.", 0.25);
    prom_head(&o, "z_total", "counter", "Labelled.");
    struct prom_label l[2] = {{"a", "q\"uo\\te\nnl"}, {"b", ""}};
    prom_sample_u64(&o, "z_total", l, 2, 18446744073709551615ull);
    prom_sample_i64(&o, "z_total", l, 1, -3);
    ck_assert(!o.full);
    char *s = text_of(&o);
    ck_assert_str_eq(s, "# HELP x_total Things\\\\counted\\nhere.\n"
                        "# TYPE x_total counter\n"
                        "x_total 42\n"
                        "# HELP y_seconds A gauge.\n"
                        "# TYPE y_seconds gauge\n"
                        "y_seconds 0.25\n"
                        "# HELP z_total Labelled.\n"
                        "# TYPE z_total counter\n"
                        "z_total{a=\"q\\\"uo\\\\te\\nnl\",b=\"\"} 18446744073709551615\n"
                        "z_total{a=\"q\\\"uo\\\\te\\nnl\"} -3\n");
    free(s);
    prom_out_free(&o);
}
END_TEST

START_TEST(prom_special_floats)
{
    struct prom_out o;
    prom_out_init(&o, 1024);
    prom_sample_f64(&o, "a", NULL, 0, 0.0 / 0.0);
    prom_sample_f64(&o, "b", NULL, 0, 1.0 / 0.0);
    prom_sample_f64(&o, "c", NULL, 0, -1.0 / 0.0);
    prom_sample_f64(&o, "d", NULL, 0, 1e-9);
    char *s = text_of(&o);
    ck_assert_str_eq(s, "a NaN\nb +Inf\nc -Inf\nd 1e-09\n");
    free(s);
    prom_out_free(&o);
}
END_TEST

START_TEST(prom_stops_at_its_bound)
{
    struct prom_out o;
    prom_out_init(&o, 20);
    prom_puts(&o, "0123456789");
    prom_puts(&o, "0123456789");
    ck_assert(!o.full);
    ck_assert_uint_eq(o.len, 20);
    prom_puts(&o, "x"); /* one byte too many: refused, and nothing after */
    ck_assert(o.full);
    ck_assert_uint_eq(o.len, 20);
    prom_out_free(&o);
}
END_TEST

START_TEST(prom_histogram_is_cumulative)
{
    static struct prom_hist h;             /* zeroed */
    prom_hist_observe_ns(&h, 0);           /* first bucket (le 25 us) */
    prom_hist_observe_ns(&h, 25000);       /* bounds are inclusive: still le 25 us */
    prom_hist_observe_ns(&h, 25001);       /* le 50 us */
    prom_hist_observe_ns(&h, 3000000);     /* le 5 ms */
    prom_hist_observe_ns(&h, 10000000000); /* 10 s: +Inf only */
    struct prom_out o;
    prom_out_init(&o, 1 << 16);
    prom_hist_write(&o, "lat_seconds", "Latency.", &h);
    char *s = text_of(&o);
    ck_assert_ptr_nonnull(strstr(s, "# TYPE lat_seconds histogram\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_bucket{le=\"2.5e-05\"} 2\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_bucket{le=\"5e-05\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_bucket{le=\"0.0025\"} 3\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_bucket{le=\"0.005\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_bucket{le=\"2.5\"} 4\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_bucket{le=\"+Inf\"} 5\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_sum 10.003050001\n"));
    ck_assert_ptr_nonnull(strstr(s, "lat_seconds_count 5\n"));
    free(s);
    prom_out_free(&o);
}
END_TEST

/* --- the request parser ------------------------------------------------------------ */

static int parse(const char *s)
{
    return metrics_http_parse(s, strlen(s));
}

START_TEST(parse_accepts_prometheus_scrapes)
{
    ck_assert_int_eq(
        parse("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9\r\n"
              "User-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4\r\n"
              "Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n"),
        200);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.0\r\n\r\n"), 200);
    ck_assert_int_eq(parse("GET /metrics?x=1 HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), 200);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nA:\r\nB: \t v \t\r\n\r\n"), 200);
}
END_TEST

START_TEST(parse_waits_for_the_whole_head)
{
    const char *req = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
    size_t n = strlen(req);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(metrics_http_parse(req, i) == 0, "prefix of %zu bytes", i);
    ck_assert_int_eq(metrics_http_parse(req, n), 200);
}
END_TEST

START_TEST(parse_refuses_other_paths_methods_versions)
{
    ck_assert_int_eq(parse("GET / HTTP/1.1\r\n\r\n"), 404);
    ck_assert_int_eq(parse("GET /metricsx HTTP/1.1\r\n\r\n"), 404);
    ck_assert_int_eq(parse("GET /metrics/ HTTP/1.1\r\n\r\n"), 404);
    ck_assert_int_eq(parse("GET http://h/metrics HTTP/1.1\r\n\r\n"), 404);
    ck_assert_int_eq(parse("POST /metrics HTTP/1.1\r\n\r\n"), 405);
    ck_assert_int_eq(parse("HEAD /metrics HTTP/1.1\r\n\r\n"), 405);
    ck_assert_int_eq(parse("get /metrics HTTP/1.1\r\n\r\n"), 405);
    ck_assert_int_eq(parse("GET /metrics HTTP/2.0\r\n\r\n"), 505);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.2\r\n\r\n"), 505);
}
END_TEST

START_TEST(parse_refuses_malformed_heads)
{
    ck_assert_int_eq(parse("\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET  /metrics HTTP/1.1\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1 \r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\n\n"), 400);                /* bare LF */
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nA: b\rc\r\n\r\n"), 400); /* bare CR */
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\n folded\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nNo colon\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nName : v\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\n: v\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\ncontent-length: -0\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nX: a\x01b\r\n\r\n"), 400);
    ck_assert_int_eq(parse("GET /met\x7frics HTTP/1.1\r\n\r\n"), 400);
    ck_assert_int_eq(parse("\x16\x03\x01\x02\x00\x01"), 400); /* a TLS hello: at once */
    ck_assert_int_eq(metrics_http_parse(LIT("GET /metrics HTTP/1.1\r\n\0: x\r\n\r\n")), 400);
    ck_assert_int_eq(parse("GET /metrics HTTP/1.1\r\nA: b\r\n\r\r\n"), 400);
}
END_TEST

START_TEST(parse_bounds_the_head)
{
    size_t n = METRICS_HTTP_HEAD_MAX + 100;
    char *buf = malloc(n);
    ck_assert_ptr_nonnull(buf);
    memcpy(buf, "GET /metrics HTTP/1.1\r\nX: ", 26);
    memset(buf + 26, 'a', n - 26);
    ck_assert_int_eq(metrics_http_parse(buf, METRICS_HTTP_HEAD_MAX - 1), 0);
    ck_assert_int_eq(metrics_http_parse(buf, METRICS_HTTP_HEAD_MAX), 431);
    ck_assert_int_eq(metrics_http_parse(buf, n), 431);
    /* a complete head that ends past the bound is refused too */
    memcpy(buf + n - 4, "\r\n\r\n", 4);
    ck_assert_int_eq(metrics_http_parse(buf, n), 431);
    free(buf);
}
END_TEST

/* --- the listener on loopback ---------------------------------------------------------- */

static unsigned renders;

static void render_one(void *arg, struct prom_out *o)
{
    (void)arg;
    renders++;
    prom_counter(o, "t_total", "A test counter.", 7);
}

/* Sends req (n bytes), half-closes, reads the whole answer into buf. */
static size_t exchange(unsigned port, const char *req, size_t n, char *buf, size_t cap)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (n) ck_assert_int_eq(send(fd, req, n, MSG_NOSIGNAL), (ssize_t)n);
    size_t got = 0;
    ssize_t r;
    while (got < cap - 1 && (r = recv(fd, buf + got, cap - 1 - got, 0)) > 0)
        got += (size_t)r;
    buf[got] = '\0';
    close(fd);
    return got;
}

START_TEST(listener_answers_and_refuses)
{
    struct metrics_http_config cfg = {
        .listen = "127.0.0.1:0", .name = "test", .timeout_ms = 300, .render = render_one};
    struct metrics_http *m = metrics_http_start(&cfg);
    ck_assert_ptr_nonnull(m);
    unsigned port = metrics_http_port(m);
    ck_assert_uint_gt(port, 0);
    static char buf[65536];

    exchange(port, LIT("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"), buf, sizeof(buf));
    ck_assert_msg(strncmp(buf, "HTTP/1.1 200 OK\r\n", 17) == 0, "%s", buf);
    ck_assert_ptr_nonnull(
        strstr(buf, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\r\n\r\n# HELP t_total A test counter.\n"));
    ck_assert_ptr_nonnull(strstr(buf, "\nt_total 7\n"));

    exchange(port, LIT("POST /metrics HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
    ck_assert_msg(strncmp(buf, "HTTP/1.1 405 ", 13) == 0, "%s", buf);
    ck_assert_ptr_nonnull(strstr(buf, "Allow: GET\r\n"));
    exchange(port, LIT("GET /admin HTTP/1.1\r\n\r\n"), buf, sizeof(buf));
    ck_assert_msg(strncmp(buf, "HTTP/1.1 404 ", 13) == 0, "%s", buf);
    /* a head that never ends: 408 once the connection's time is up */
    exchange(port, LIT("GET /metrics HTTP/1.1\r\nX: "), buf, sizeof(buf));
    ck_assert_msg(strncmp(buf, "HTTP/1.1 408 ", 13) == 0, "%s", buf);
    ck_assert_uint_eq(renders, 1); /* only the good request rendered */
    metrics_http_stop(m);
}
END_TEST

/* --- the verdict label sets ----------------------------------------------------------- */

START_TEST(verdict_reasons_are_bounded)
{
    ck_assert_int_eq(verdict_reason_of(200, "ok"), VR_OK);
    ck_assert_int_eq(verdict_reason_of(400, "country: unknown code"), VR_BAD_OPTIONS);
    ck_assert_int_eq(verdict_reason_of(402, "insufficient balance"), VR_NO_BALANCE);
    ck_assert_int_eq(verdict_reason_of(403, "client IP not authorized"), VR_IP_NOT_AUTHORIZED);
    ck_assert_int_eq(verdict_reason_of(407, "invalid proxy credentials"), VR_CREDENTIALS_INVALID);
    ck_assert_int_eq(verdict_reason_of(503, "no upstream provider available"), VR_NO_PROVIDER);
    ck_assert_int_eq(verdict_reason_of(503, "something new"), VR_OTHER);
    ck_assert_int_eq(verdict_reason_of(403, NULL), VR_OTHER);
    ck_assert_int_eq(verdict_reason_of(418, "teapot"), VR_OTHER);
}
END_TEST

START_TEST(provider_labels_are_bounded)
{
    static struct verdict_stats s; /* zeroed */
    char slug[VERDICT_SLUG_MAX + 2];
    for (unsigned i = 0; i < VERDICT_PROVIDERS_MAX + 10; i++) {
        snprintf(slug, sizeof(slug), "p%u", i);
        verdict_stats_provider(&s, slug);
        verdict_stats_provider(&s, slug);
    }
    memset(slug, 'x', sizeof(slug) - 1);
    slug[sizeof(slug) - 1] = '\0';
    verdict_stats_provider(&s, slug); /* too long to be a label */
    ck_assert_uint_eq(atomic_load(&s.nproviders), VERDICT_PROVIDERS_MAX);
    ck_assert_str_eq(s.providers[3].slug, "p3");
    ck_assert_uint_eq(atomic_load(&s.providers[3].requests), 2);
    ck_assert_uint_eq(atomic_load(&s.providers_other), 2 * 10 + 1);
}
END_TEST

Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("prom");
    tcase_add_test(tc, prom_writes_families_and_escapes_labels);
    tcase_add_test(tc, prom_special_floats);
    tcase_add_test(tc, prom_stops_at_its_bound);
    tcase_add_test(tc, prom_histogram_is_cumulative);
    suite_add_tcase(s, tc);
    tc = tcase_create("http_parse");
    tcase_add_test(tc, parse_accepts_prometheus_scrapes);
    tcase_add_test(tc, parse_waits_for_the_whole_head);
    tcase_add_test(tc, parse_refuses_other_paths_methods_versions);
    tcase_add_test(tc, parse_refuses_malformed_heads);
    tcase_add_test(tc, parse_bounds_the_head);
    suite_add_tcase(s, tc);
    tc = tcase_create("listener");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, listener_answers_and_refuses);
    suite_add_tcase(s, tc);
    tc = tcase_create("verdict_stats");
    tcase_add_test(tc, verdict_reasons_are_bounded);
    tcase_add_test(tc, provider_labels_are_bounded);
    suite_add_tcase(s, tc);
    return s;
}
