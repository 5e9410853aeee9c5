/*
 * Verdict tests: every branch of policy_decide, table-driven, over a snapshot
 * built from rows (no database), in the reference's order of checks.
 */
#include <arpa/inet.h>
#include <check.h>
#include <crypt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "basic_auth.h"
#include "policy.h"
#include "rendezvous.h"
#include "snapshot.h"
#include "verdict_stats.h"

#define S(x)          x, sizeof(x) - 1
#define F(field, lit) .field = lit, .field##_len = sizeof(lit) - 1

static char sha_hash[128]; /* crypt("s3cret", "$6$...") computed at setup */

static int fake_resolve(void *arg, const char *host, char addr[46])
{
    (void)arg;
    if (strcmp(host, "gw.provider.test") == 0) {
        strcpy(addr, "192.0.2.10");
        return 0;
    }
    unsigned char tmp[16];
    if (inet_pton(AF_INET, host, tmp) == 1) {
        snprintf(addr, 46, "%s", host);
        return 0;
    }
    return -1;
}

/* Providers: one global, two country ones; `with_global` drops the global. */
static struct snapshot *build(bool with_global, bool with_country)
{
    struct crypt_data cd = {0};
    snprintf(sha_hash, sizeof(sha_hash), "%s", crypt_r("s3cret", "$6$abcdefgh$", &cd));

    static struct snapshot_user_row users[4];
    users[0] = (struct snapshot_user_row){1, S("myuser"), S("mypassword"), SNAPSHOT_TRUE, {0}, {0}};
    users[1] =
        (struct snapshot_user_row){2, S("my-user"), S("pw:with:colons"), SNAPSHOT_NULL, {0}, {0}};
    users[2] = (struct snapshot_user_row){3, S("off"), S("pw"), SNAPSHOT_FALSE, {0}, {0}};
    users[3] = (struct snapshot_user_row){
        4, S("hashed"), sha_hash, strlen(sha_hash), SNAPSHOT_TRUE, {0}, {0}};
    static const struct snapshot_ip_row ips[] = {
        {1, S("127.0.0.1/32"), SNAPSHOT_TRUE},
        {2, S("10.0.0.0/8"), SNAPSHOT_TRUE},
        {3, S("::1"), SNAPSHOT_TRUE},
        {4, S("192.168.0.0/16"), SNAPSHOT_FALSE},
    };
    static struct snapshot_provider_row provs[3];
    size_t np = 0;
    if (with_global)
        provs[np++] = (struct snapshot_provider_row){
            .id = 1,
            F(base_url, "gw.provider.test"),
            .name = "Global",
            .name_len = 6,
            F(slug, "global"),
            F(username, "guser"),
            F(password, "gpass"),
            F(url_template, "{username}-country-{country}-session-{session_id}-sessTime-"
                            "{duration}:{password}@{host}:{port}"),
            F(country_format, "ISO"),
            .port_min = 10000,
            .port_max = 10100,
            .is_global = SNAPSHOT_TRUE,
        };
    if (with_country) {
        provs[np++] = (struct snapshot_provider_row){
            .id = 2,
            F(base_url, "198.51.100.7"),
            .name = "DE",
            .name_len = 2,
            F(slug, "de-one"),
            F(username, "de-user"),
            F(password, "de:p@ss"),
            F(url_template, "{username}_cc-{country}_sid-{session_id}_ttl-{duration}:{password}"
                            "@{host}:{port}"),
            F(country_format, "FULL_NAME"),
            .port_min = 20000,
            .port_max = 20009,
        };
        provs[np++] = (struct snapshot_provider_row){
            .id = 3,
            F(base_url, "198.51.100.8"),
            .name = "DE2",
            .name_len = 3,
            F(slug, "de-two"),
            F(username, "two"),
            F(password, "pw2"),
            .url_template = NULL, /* the default template */
            F(country_format, "NO_SPACES"),
            .port_min = 30000,
            .port_max = 30000,
        };
    }
    struct snapshot_rows rows = {users, 4, ips, 4, provs, np, 1700000000000};
    struct snapshot *s = snapshot_build(&rows, fake_resolve, NULL);
    ck_assert_ptr_nonnull(s);
    return s;
}

static struct snapshot *snap;
static struct policy_ctx ctx;

static void setup(void)
{
    snap = build(true, true);
    policy_ctx_init(&ctx);
}

static void teardown(void)
{
    snapshot_free(snap);
}

/* Decides for 127.0.0.1 with `user:pass` as Proxy-Authorization Basic. */
static enum policy_outcome decide_as(const char *userpass, struct policy_verdict *v,
                                     struct policy_hash_job *job)
{
    char hdr[1024] = "Basic ";
    const char *colon = strchr(userpass, ':');
    size_t n = basic_auth_encode(userpass, (size_t)(colon - userpass), colon + 1, strlen(colon + 1),
                                 hdr + 6, sizeof(hdr) - 6);
    ck_assert_uint_gt(n, 0);
    struct policy_request rq = {.family = AF_INET, .addr = {127, 0, 0, 1}};
    rq.proxy_auth = hdr;
    rq.proxy_auth_len = strlen(hdr);
    return policy_decide(snap, &rq, &ctx, v, job);
}

/* The upstream credentials the verdict carries, decoded. */
static void upstream_userpass(const struct policy_verdict *v, char *out, size_t cap)
{
    struct basic_auth_cred cred;
    const char *why;
    char buf[BASIC_AUTH_BUF_SIZE];
    ck_assert_int_eq(basic_auth_decode(v->upstream_auth, strlen(v->upstream_auth), buf, sizeof(buf),
                                       &cred, &why),
                     0);
    snprintf(out, cap, "%.*s:%.*s", (int)cred.user_len, cred.user, (int)cred.pass_len, cred.pass);
}

/* --- refusals, in the reference's order ------------------------------------------ */

struct refusal {
    const char *what;
    int family;
    uint8_t addr[16];
    const char *pauth; /* raw Proxy-Authorization; NULL: absent */
    const char *auth;  /* raw Authorization */
    int status;
    const char *reason_part;
};

/* base64("myuser:mypassword") = bXl1c2VyOm15cGFzc3dvcmQ= */
static const struct refusal refusals[] = {
    {"IP not whitelisted",
     AF_INET,
     {192, 168, 1, 1},
     "Basic bXl1c2VyOm15cGFzc3dvcmQ=",
     NULL,
     403,
     "not authorized"},
    {"inactive whitelist row",
     AF_INET,
     {192, 168, 0, 1},
     "Basic bXl1c2VyOm15cGFzc3dvcmQ=",
     NULL,
     403,
     "not authorized"},
    {"IPv6 not whitelisted", AF_INET6, {0x20, 0x01, 0x0d, 0xb8}, NULL, NULL, 403, NULL},
    {"no credentials", AF_INET, {127, 0, 0, 1}, NULL, NULL, 407, "required"},
    {"empty header", AF_INET, {127, 0, 0, 1}, "", NULL, 407, "required"},
    {"not Basic", AF_INET, {127, 0, 0, 1}, "Bearer abc", NULL, 407, "malformed"},
    {"bad base64", AF_INET, {127, 0, 0, 1}, "Basic !!!!", NULL, 407, "malformed"},
    {"no colon", AF_INET, {127, 0, 0, 1}, "Basic bXl1c2Vy", NULL, 407, "malformed"}, /* myuser */
    {"unknown user", AF_INET, {127, 0, 0, 1}, "Basic bm9ib2R5OnB3", NULL, 407, "invalid"},
    {"wrong password", AF_INET, {127, 0, 0, 1}, "Basic bXl1c2VyOndyb25n", NULL, 407, "invalid"},
    {"inactive user", AF_INET, {127, 0, 0, 1}, "Basic b2ZmOnB3", NULL, 407, "invalid"}, /* off:pw */
    /* bad options but a wrong password: 407 wins over 400 */
    {"bad option, bad password",
     AF_INET,
     {127, 0, 0, 1},
     "Basic bXl1c2VyLWNvdW50cnktWFg6d3Jvbmc=",
     NULL,
     407,
     "invalid"}, /* myuser-country-XX:wrong */
    /* ... and with the right password it is the option's 400 */
    {"unknown country",
     AF_INET,
     {127, 0, 0, 1},
     "Basic bXl1c2VyLWNvdW50cnktWFg6bXlwYXNzd29yZA==",
     NULL,
     400,
     "country"},
    /* Authorization is used when Proxy-Authorization is absent */
    {"Authorization fallback",
     AF_INET,
     {127, 0, 0, 1},
     NULL,
     "Basic bXl1c2VyOndyb25n",
     407,
     "invalid"},
    /* IP check comes before credentials */
    {"bad IP and no credentials", AF_INET, {8, 8, 8, 8}, NULL, NULL, 403, NULL},
};

START_TEST(refusal_cases)
{
    const struct refusal *c = &refusals[_i];
    struct policy_request rq = {.family = c->family};
    memcpy(rq.addr, c->addr, 16);
    rq.proxy_auth = c->pauth;
    rq.proxy_auth_len = c->pauth ? strlen(c->pauth) : 0;
    rq.auth = c->auth;
    rq.auth_len = c->auth ? strlen(c->auth) : 0;
    struct policy_verdict v;
    struct policy_hash_job job;
    ck_assert_int_eq(policy_decide(snap, &rq, &ctx, &v, &job), POLICY_DONE);
    ck_assert_msg(v.status == c->status, "%s: status %d, want %d", c->what, v.status, c->status);
    ck_assert(!v.check_balance);
    if (c->reason_part)
        ck_assert_msg(strstr(v.reason, c->reason_part), "%s: reason '%s'", c->what, v.reason);
    /* every refusal has its own reason label in /metrics (verdict_stats.c) */
    ck_assert_msg(verdict_reason_of(v.status, v.reason) != VR_OTHER,
                  "%s: reason '%s' counts as other", c->what, v.reason);
}
END_TEST

struct option_case {
    const char *userpass;
    const char *reason_part;
};

static const struct option_case bad_options[] = {
    {"myuser-country-XX:mypassword", "country"},
    {"myuser-session-bad!id:mypassword", "session"},
    {"myuser-sessTime-0:mypassword", "sessTime"},
    {"myuser-sessTime-1441:mypassword", "sessTime"},
    {"myuser-sessTime-abc:mypassword", "sessTime"},
    {"myuser-country-DE-country-FR:mypassword", "repeated"},
    {"myuser-country-:mypassword", NULL},
    {"myuser-country-DE-bogus-1:mypassword", NULL},
};

START_TEST(bad_options_are_400)
{
    struct policy_verdict v;
    struct policy_hash_job job;
    ck_assert_int_eq(decide_as(bad_options[_i].userpass, &v, &job), POLICY_DONE);
    ck_assert_msg(v.status == 400, "%s: %d %s", bad_options[_i].userpass, v.status, v.reason);
    if (bad_options[_i].reason_part)
        ck_assert_msg(strcasestr(v.reason, bad_options[_i].reason_part), "reason '%s'", v.reason);
}
END_TEST

/* --- allowed requests ---------------------------------------------------------------- */

START_TEST(minimal_goes_global_with_us_default)
{
    struct policy_verdict v;
    struct policy_hash_job job;
    ck_assert_int_eq(decide_as("myuser:mypassword", &v, &job), POLICY_DONE);
    ck_assert_int_eq(v.status, 200);
    ck_assert(v.check_balance);
    ck_assert_str_eq(v.user, "myuser");
    ck_assert_str_eq(v.slug, "global");
    ck_assert_str_eq(v.country, "US");
    ck_assert_uint_eq(v.duration_min, 5);
    ck_assert_uint_eq(strlen(v.session), 10); /* generated */
    ck_assert_str_eq(v.upstream_addr, "192.0.2.10");
    ck_assert(v.upstream_port >= 10000 && v.upstream_port <= 10100);
    char up[600], want[600];
    upstream_userpass(&v, up, sizeof(up));
    snprintf(want, sizeof(want), "guser-country-US-session-%s-sessTime-5:gpass", v.session);
    ck_assert_str_eq(up, want);
}
END_TEST

START_TEST(country_goes_to_country_providers)
{
    struct policy_verdict v;
    struct policy_hash_job job;
    ck_assert_int_eq(decide_as("myuser-country-de-session-abc_1-sessTime-10:mypassword", &v, &job),
                     POLICY_DONE);
    ck_assert_int_eq(v.status, 200);
    ck_assert_str_eq(v.country, "DE");
    ck_assert_str_eq(v.session, "abc_1");
    ck_assert_uint_eq(v.duration_min, 10);
    ck_assert(strcmp(v.slug, "de-one") == 0 || strcmp(v.slug, "de-two") == 0);
    char up[600];
    upstream_userpass(&v, up, sizeof(up));
    if (strcmp(v.slug, "de-one") == 0) {
        /* FULL_NAME, and a provider password with ':' and '@' intact */
        ck_assert_str_eq(up, "de-user_cc-Germany_sid-abc_1_ttl-10:de:p@ss");
        ck_assert_str_eq(v.upstream_addr, "198.51.100.7");
    } else {
        ck_assert_str_eq(up, "two:pw2"); /* default template */
        ck_assert_uint_eq(v.upstream_port, 30000);
    }
}
END_TEST

START_TEST(hyphenated_user_and_colon_password)
{
    struct policy_verdict v;
    struct policy_hash_job job;
    ck_assert_int_eq(decide_as("my-user-country-GB:pw:with:colons", &v, &job), POLICY_DONE);
    ck_assert_int_eq(v.status, 200);
    ck_assert_str_eq(v.user, "my-user");
    ck_assert_str_eq(v.country, "GB");
}
END_TEST

START_TEST(sticky_session_is_deterministic)
{
    struct policy_verdict first, v;
    struct policy_hash_job job;
    ck_assert_int_eq(decide_as("myuser-country-DE-session-sticky1:mypassword", &first, &job),
                     POLICY_DONE);
    ck_assert_int_eq(first.status, 200);
    for (int i = 0; i < 20; i++) {
        policy_ctx_init(&ctx); /* another thread, another node: new random state */
        decide_as("myuser-country-DE-session-sticky1:mypassword", &v, &job);
        ck_assert_str_eq(v.slug, first.slug);
        ck_assert_uint_eq(v.upstream_port, first.upstream_port);
        ck_assert_str_eq(v.upstream_auth, first.upstream_auth);
    }
    /* many sessions use both providers and several ports */
    bool seen_one = false, seen_two = false;
    uint32_t ports = 0;
    for (int i = 0; i < 200; i++) {
        char up[128];
        snprintf(up, sizeof(up), "myuser-country-DE-session-s%d:mypassword", i);
        decide_as(up, &v, &job);
        seen_one |= strcmp(v.slug, "de-one") == 0;
        seen_two |= strcmp(v.slug, "de-two") == 0;
        if (strcmp(v.slug, "de-one") == 0) ports |= 1u << (v.upstream_port - 20000);
    }
    ck_assert(seen_one && seen_two);
    ck_assert_uint_gt(__builtin_popcount(ports), 5);
}
END_TEST

/* The sticky choice is rendezvous_pick's (the function the rendezvous tests
 * pin down), over the country's providers, and the port rendezvous_port's. */
START_TEST(sticky_session_is_rendezvous_pick)
{
    static const struct rendezvous_str slugs[] = {{"de-two", 6}, {"de-one", 6}};
    struct policy_verdict v;
    struct policy_hash_job job;
    for (int i = 0; i < 50; i++) {
        char sess[16], up[128];
        snprintf(sess, sizeof(sess), "p%d", i);
        snprintf(up, sizeof(up), "myuser-country-DE-session-%s:mypassword", sess);
        ck_assert_int_eq(decide_as(up, &v, &job), POLICY_DONE);
        ck_assert_int_eq(v.status, 200);
        struct rendezvous_key key = {{"myuser", 6}, {"DE", 2}, {sess, strlen(sess)}};
        size_t best = rendezvous_pick(&key, slugs, 2, NULL);
        ck_assert_str_eq(v.slug, slugs[best].ptr);
        uint16_t lo = best == 0 ? 30000 : 20000, hi = best == 0 ? 30000 : 20009;
        ck_assert_uint_eq(v.upstream_port,
                          rendezvous_port(rendezvous_port_hash(&key, &slugs[best]), lo, hi));
    }
}
END_TEST

START_TEST(random_without_session_spreads)
{
    struct policy_verdict v;
    struct policy_hash_job job;
    bool one = false, two = false;
    for (int i = 0; i < 100; i++) {
        decide_as("myuser-country-DE:mypassword", &v, &job);
        ck_assert_int_eq(v.status, 200);
        one |= strcmp(v.slug, "de-one") == 0;
        two |= strcmp(v.slug, "de-two") == 0;
    }
    ck_assert(one && two);
}
END_TEST

START_TEST(no_global_falls_back_to_country_providers_with_us)
{
    snapshot_free(snap);
    snap = build(false, true);
    struct policy_verdict v;
    struct policy_hash_job job;
    decide_as("myuser:mypassword", &v, &job);
    ck_assert_int_eq(v.status, 200);
    ck_assert_str_eq(v.country, "US");
    ck_assert(strncmp(v.slug, "de-", 3) == 0);
}
END_TEST

START_TEST(no_provider_is_503_after_balance)
{
    snapshot_free(snap);
    snap = build(false, false);
    struct policy_verdict v;
    struct policy_hash_job job;
    decide_as("myuser-country-FR:mypassword", &v, &job);
    ck_assert_int_eq(v.status, 503);
    ck_assert(v.check_balance); /* a 402 from Redis still wins */
    ck_assert_str_eq(v.user, "myuser");
}
END_TEST

START_TEST(country_without_country_providers_is_503)
{
    snapshot_free(snap);
    snap = build(true, false);
    struct policy_verdict v;
    struct policy_hash_job job;
    decide_as("myuser-country-FR:mypassword", &v, &job);
    ck_assert_int_eq(v.status, 503);
}
END_TEST

START_TEST(hashed_password_verified_once)
{
    struct policy_verdict v;
    struct policy_hash_job job;
    ck_assert_int_eq(decide_as("hashed:s3cret", &v, &job), POLICY_VERIFY_HASH);
    ck_assert_str_eq(job.hash, sha_hash);
    ck_assert(policy_crypt_check(job.password, job.password_len, job.hash));
    policy_hash_verified(&ctx, job.password, job.password_len, job.hash);
    ck_assert_int_eq(decide_as("hashed:s3cret", &v, &job), POLICY_DONE);
    ck_assert_int_eq(v.status, 200);

    /* a wrong password is still checked, and fails */
    ck_assert_int_eq(decide_as("hashed:wrong", &v, &job), POLICY_VERIFY_HASH);
    ck_assert(!policy_crypt_check(job.password, job.password_len, job.hash));
}
END_TEST

START_TEST(crypt_check_refuses_garbage_hashes)
{
    ck_assert(!policy_crypt_check("x", 1, "*"));
    ck_assert(!policy_crypt_check("x", 1, "$2b$"));
    ck_assert(!policy_crypt_check("x", 1, ""));
}
END_TEST

/* Provider health in the choice: de-one taken out (one failure suffices). */
static struct health *health_with_out(const char *slug)
{
    struct health_config c = {.fails = 1,
                              .backoff_min_ms = 60000,
                              .backoff_max_ms = 60000,
                              .window_ms = 1000,
                              .trials = 1,
                              .trial_timeout_ms = 1000};
    struct health *h = health_new(&c);
    if (slug) health_report(h, slug, strlen(slug), HEALTH_FAIL_CONNECT, 0, 1, 1);
    ck_assert_int_eq(health_state(h, "de-one", 6), slug ? HEALTH_OUT : HEALTH_IN);
    return h;
}

START_TEST(random_skips_providers_out)
{
    struct health *h = health_with_out("de-one");
    ctx.health = h;
    struct policy_verdict v;
    struct policy_hash_job job;
    for (int i = 0; i < 100; i++) {
        decide_as("myuser-country-DE:mypassword", &v, &job);
        ck_assert_int_eq(v.status, 200);
        ck_assert_str_eq(v.slug, "de-two");
    }
    ctx.health = NULL;
    health_free(h);
}
END_TEST

/* Sessions of a healthy provider never move; those of the provider out go
 * to their next rendezvous choice, the same on every node; with every
 * provider out, they stay where they were. */
START_TEST(sticky_sessions_move_only_off_providers_out)
{
    struct policy_verdict before[60], v;
    struct policy_hash_job job;
    char up[128];
    for (int i = 0; i < 60; i++) {
        snprintf(up, sizeof(up), "myuser-country-DE-session-h%d:mypassword", i);
        decide_as(up, &before[i], &job);
    }
    struct health *h = health_with_out("de-one");
    int moved = 0;
    for (int i = 0; i < 60; i++) {
        policy_ctx_init(&ctx); /* another thread or node */
        ctx.health = h;
        snprintf(up, sizeof(up), "myuser-country-DE-session-h%d:mypassword", i);
        decide_as(up, &v, &job);
        ck_assert_int_eq(v.status, 200);
        ck_assert_str_eq(v.slug, "de-two");
        if (strcmp(before[i].slug, "de-two") == 0)
            ck_assert_uint_eq(v.upstream_port, before[i].upstream_port);
        else
            moved++;
    }
    ck_assert_int_gt(moved, 0);
    /* every provider out: the least bad is where the session would go anyway */
    health_report(h, "de-two", 6, HEALTH_FAIL_CONNECT, 0, 1, 1);
    for (int i = 0; i < 60; i++) {
        snprintf(up, sizeof(up), "myuser-country-DE-session-h%d:mypassword", i);
        decide_as(up, &v, &job);
        ck_assert_int_eq(v.status, 200);
        ck_assert_str_eq(v.slug, before[i].slug);
        ck_assert_uint_eq(v.upstream_port, before[i].upstream_port);
    }
    ctx.health = NULL;
    health_free(h);
}
END_TEST

START_TEST(half_open_gets_one_trial)
{
    struct health *h = health_with_out("de-one");
    health_tick(h, 60001, 60001); /* back-off over */
    ck_assert_int_eq(health_state(h, "de-one", 6), HEALTH_HALF_OPEN);
    ctx.health = h;
    struct policy_verdict v;
    struct policy_hash_job job;
    int to_one = 0;
    for (int i = 0; i < 100; i++) {
        decide_as("myuser-country-DE:mypassword", &v, &job);
        ck_assert_int_eq(v.status, 200);
        to_one += strcmp(v.slug, "de-one") == 0;
    }
    ck_assert_int_eq(to_one, 1);
    ctx.health = NULL;
    health_free(h);
}
END_TEST

Suite *policy_suite(void)
{
    Suite *s = suite_create("policy");
    TCase *tc = tcase_create("verdict");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_loop_test(tc, refusal_cases, 0, sizeof(refusals) / sizeof(refusals[0]));
    tcase_add_loop_test(tc, bad_options_are_400, 0, sizeof(bad_options) / sizeof(bad_options[0]));
    tcase_add_test(tc, minimal_goes_global_with_us_default);
    tcase_add_test(tc, country_goes_to_country_providers);
    tcase_add_test(tc, hyphenated_user_and_colon_password);
    tcase_add_test(tc, sticky_session_is_deterministic);
    tcase_add_test(tc, sticky_session_is_rendezvous_pick);
    tcase_add_test(tc, random_without_session_spreads);
    tcase_add_test(tc, no_global_falls_back_to_country_providers_with_us);
    tcase_add_test(tc, no_provider_is_503_after_balance);
    tcase_add_test(tc, country_without_country_providers_is_503);
    tcase_add_test(tc, hashed_password_verified_once);
    tcase_add_test(tc, crypt_check_refuses_garbage_hashes);
    tcase_add_test(tc, random_skips_providers_out);
    tcase_add_test(tc, sticky_sessions_move_only_off_providers_out);
    tcase_add_test(tc, half_open_gets_one_trial);
    suite_add_tcase(s, tc);
    return s;
}
