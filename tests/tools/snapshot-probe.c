/*
 * snapshot-probe: a snapshot store (agent/snapshot*.c) driven from stdin,
 * for tests/integration/t_snapshot.sh and tests/bench/snapshot.sh.
 *
 *   snapshot-probe --uri POSTGRES_URI [--path FILE] [--refresh S] [--full-every N]
 *                  [--connect-timeout S] [--log-level LEVEL]
 *
 * Starts the store (PostgreSQL, else the file) and prints one line:
 *   ready generation=G from_disk=0|1 start_ms=T users=N ips=N providers=N
 * or "start failed" and exits 1. Then answers one line per command:
 *   user NAME            user NAME id=ID hash=0|1 password=PW | user NAME none
 *   ip ADDR              ip ADDR allow | deny | bad
 *   providers global|country   providers KIND N SLUG...
 *   provider SLUG        provider SLUG id= host= addr= ports=MIN-MAX global= format= | none
 *   counts               counts users= ips= providers= global= country=
 *   skips                skips bad_cidr= bad_port_range= ... duplicate=
 *   status               status postgres_ok= from_disk= generation= loads_ok= ...
 *   wait-generation N [S]    generation G | timeout generation G
 *   wait-pg ok|down [S]      pg ok|down | timeout pg ok|down
 *   move                 move us=T from=G0 to=G  (time to take up the current generation)
 *   rss                  rss kb=RSS hwm=PEAK  (kB, from /proc/self/status)
 *   bench-users PREFIX COUNT SECONDS
 *                        lookups of PREFIX<i>, i random in 1..COUNT, on this thread:
 *                        bench-users lookups=N found=F seconds=S rate=R
 *   bench-ips RANGE SECONDS
 *                        lookups of 10.0.0.0 + random(RANGE):
 *                        bench-ips lookups=N allowed=A seconds=S rate=R
 *   quit
 * Every lookup asks the store for the current snapshot first, as a worker
 * does per request.
 */
#include <arpa/inet.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "snapshot.h"

static struct snapshot_store *store;
static struct snapshot_ref ref;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const struct snapshot *cur(void)
{
    return snapshot_store_current(store, &ref);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void cmd_user(const char *name)
{
    const struct snap_user *u = snapshot_user(cur(), name, strlen(name));
    if (u == NULL)
        printf("user %s none\n", name);
    else
        printf("user %s id=%d hash=%d password=%s\n", name, u->id, u->password_is_hash,
               u->password);
}

static void cmd_ip(const char *text)
{
    uint8_t a[16];
    int fam = inet_pton(AF_INET, text, a) == 1 ? AF_INET : AF_INET6;
    if (fam == AF_INET6 && inet_pton(AF_INET6, text, a) != 1) {
        printf("ip %s bad\n", text);
        return;
    }
    printf("ip %s %s\n", text, snapshot_ip_allowed(cur(), fam, a) ? "allow" : "deny");
}

static void cmd_providers(const char *kind)
{
    const struct snap_provider *const *v;
    size_t n = snapshot_providers(cur(), strcmp(kind, "global") == 0, &v);
    printf("providers %s %zu", kind, n);
    for (size_t i = 0; i < n; i++)
        printf(" %s", v[i]->slug);
    printf("\n");
}

static void cmd_provider(const char *slug)
{
    const struct snap_provider *const *v;
    for (int g = 0; g < 2; g++) {
        size_t n = snapshot_providers(cur(), g == 1, &v);
        for (size_t i = 0; i < n; i++) {
            if (strcmp(v[i]->slug, slug) != 0) continue;
            printf("provider %s id=%d host=%s addr=%s ports=%u-%u global=%d format=%s\n", slug,
                   v[i]->id, v[i]->host, v[i]->addr, v[i]->port_min, v[i]->port_max,
                   v[i]->is_global, country_format_name(v[i]->country_format));
            return;
        }
    }
    printf("provider %s none\n", slug);
}

static void cmd_status(void)
{
    struct snapshot_store_status st;
    snapshot_store_status(store, &st);
    const struct snapshot *s = cur();
    printf("status postgres_ok=%d from_disk=%d generation=%llu loads_ok=%llu loads_failed=%llu "
           "last_ok_ms=%lld last_load_ms=%u loaded_at_ms=%lld\n",
           st.postgres_ok, st.from_disk, (unsigned long long)st.generation,
           (unsigned long long)st.loads_ok, (unsigned long long)st.loads_failed,
           (long long)st.last_ok_ms, st.last_load_ms, (long long)snapshot_loaded_at_ms(s));
}

static void cmd_wait_generation(unsigned long long want, double timeout)
{
    struct snapshot_store_status st;
    double end = now_s() + timeout;
    for (;;) {
        snapshot_store_status(store, &st);
        if (st.generation >= want) {
            printf("generation %llu\n", (unsigned long long)st.generation);
            return;
        }
        if (now_s() > end) break;
        usleep(10 * 1000);
    }
    printf("timeout generation %llu\n", (unsigned long long)st.generation);
}

/* How long this reader's move to the current generation takes: with the
 * replaced snapshot freed by the store, not by the last reader to let go of
 * it, a move is a mutex and a reference count whatever the snapshot's size. */
static void cmd_move(void)
{
    unsigned long long from = ref.generation;
    double t0 = now_s();
    cur();
    double t = now_s() - t0;
    printf("move us=%.1f from=%llu to=%llu\n", t * 1e6, from, (unsigned long long)ref.generation);
}

static void cmd_wait_pg(const char *want, double timeout)
{
    struct snapshot_store_status st;
    bool ok = strcmp(want, "ok") == 0;
    double end = now_s() + timeout;
    for (;;) {
        snapshot_store_status(store, &st);
        if (st.postgres_ok == ok) {
            printf("pg %s\n", want);
            return;
        }
        if (now_s() > end) break;
        usleep(10 * 1000);
    }
    printf("timeout pg %s\n", want);
}

static void cmd_rss(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long rss = -1, hwm = -1;
    while (f != NULL && fgets(line, sizeof(line), f) != NULL) {
        sscanf(line, "VmRSS: %ld", &rss);
        sscanf(line, "VmHWM: %ld", &hwm);
    }
    if (f != NULL) fclose(f);
    printf("rss kb=%ld hwm=%ld\n", rss, hwm);
}

static void cmd_bench_users(const char *prefix, long count, double seconds)
{
    /* names prepared first: the loop measures lookups, not snprintf */
    enum { NAMES = 1 << 20 };
    size_t n = count < NAMES ? (size_t)(count > 0 ? count : 1) : NAMES;
    char(*names)[64] = malloc(n * sizeof(*names));
    size_t *lens = malloc(n * sizeof(*lens));
    if (names == NULL || lens == NULL) {
        printf("bench-users out of memory\n");
        free(names);
        free(lens);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        long k = count > 0 ? 1 + (long)(rnd() % (uint64_t)count) : 1;
        lens[i] = (size_t)snprintf(names[i], sizeof(names[i]), "%s%ld", prefix, k);
    }
    unsigned long long lookups = 0, found = 0;
    double t0 = now_s(), t = t0;
    while (t - t0 < seconds) {
        for (int b = 0; b < 4096; b++) {
            size_t i = (size_t)(lookups % n);
            found += snapshot_user(cur(), names[i], lens[i]) != NULL;
            lookups++;
        }
        t = now_s();
    }
    printf("bench-users lookups=%llu found=%llu seconds=%.2f rate=%.0f\n", lookups, found, t - t0,
           (double)lookups / (t - t0));
    free(names);
    free(lens);
}

static void cmd_bench_ips(long range, double seconds)
{
    enum { ADDRS = 1 << 20 };
    uint8_t(*a)[4] = malloc(ADDRS * sizeof(*a));
    if (a == NULL || range <= 0) {
        printf("bench-ips bad arguments\n");
        free(a);
        return;
    }
    for (size_t i = 0; i < ADDRS; i++) {
        uint32_t v = (10u << 24) + (uint32_t)(rnd() % (uint64_t)range);
        a[i][0] = (uint8_t)(v >> 24), a[i][1] = (uint8_t)(v >> 16);
        a[i][2] = (uint8_t)(v >> 8), a[i][3] = (uint8_t)v;
    }
    unsigned long long lookups = 0, hits = 0;
    double t0 = now_s(), t = t0;
    while (t - t0 < seconds) {
        for (int b = 0; b < 4096; b++) {
            hits += snapshot_ip_allowed(cur(), AF_INET, a[lookups % ADDRS]);
            lookups++;
        }
        t = now_s();
    }
    printf("bench-ips lookups=%llu allowed=%llu seconds=%.2f rate=%.0f\n", lookups, hits, t - t0,
           (double)lookups / (t - t0));
    free(a);
}

static void usage(void)
{
    fprintf(stderr, "usage: snapshot-probe --uri URI [--path FILE] [--refresh S] "
                    "[--full-every N] [--connect-timeout S] [--log-level LEVEL]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    struct snapshot_store_config cfg = {.refresh_s = 60, .connect_timeout_s = 5};
    static const struct option opts[] = {
        {"uri", required_argument, NULL, 'u'},
        {"path", required_argument, NULL, 'p'},
        {"refresh", required_argument, NULL, 'r'},
        {"full-every", required_argument, NULL, 'f'},
        {"connect-timeout", required_argument, NULL, 'c'},
        {"log-level", required_argument, NULL, 'l'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        enum log_level lvl;
        switch (c) {
        case 'u':
            cfg.postgres_uri = optarg;
            break;
        case 'p':
            cfg.snapshot_path = optarg;
            break;
        case 'r':
            cfg.refresh_s = (unsigned)atoi(optarg);
            break;
        case 'f':
            cfg.full_every = atoi(optarg);
            break;
        case 'c':
            cfg.connect_timeout_s = (unsigned)atoi(optarg);
            break;
        case 'l':
            if (!log_parse_level(optarg, &lvl)) usage();
            log_set_level(lvl);
            break;
        default:
            usage();
        }
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    double t0 = now_s();
    store = snapshot_store_start(&cfg);
    if (store == NULL) {
        printf("start failed\n");
        return 1;
    }
    double ms = (now_s() - t0) * 1000;
    struct snapshot_store_status st;
    snapshot_store_status(store, &st);
    const struct snapshot *s = cur();
    printf("ready generation=%llu from_disk=%d start_ms=%.0f users=%zu ips=%zu providers=%zu\n",
           (unsigned long long)st.generation, st.from_disk, ms, snapshot_user_count(s),
           snapshot_ip_count(s), snapshot_provider_count(s));

    char line[1024], a1[512], a2[512], a3[64];
    while (fgets(line, sizeof(line), stdin) != NULL) {
        a1[0] = a2[0] = a3[0] = '\0';
        char cmd[32];
        int n = sscanf(line, "%31s %511s %511s %63s", cmd, a1, a2, a3);
        if (n < 1) continue;
        if (strcmp(cmd, "user") == 0 && n >= 2)
            cmd_user(a1);
        else if (strcmp(cmd, "ip") == 0 && n >= 2)
            cmd_ip(a1);
        else if (strcmp(cmd, "providers") == 0 && n >= 2)
            cmd_providers(a1);
        else if (strcmp(cmd, "provider") == 0 && n >= 2)
            cmd_provider(a1);
        else if (strcmp(cmd, "counts") == 0) {
            const struct snap_provider *const *v;
            s = cur();
            size_t g = snapshot_providers(s, true, &v);
            printf("counts users=%zu ips=%zu providers=%zu global=%zu country=%zu\n",
                   snapshot_user_count(s), snapshot_ip_count(s), snapshot_provider_count(s), g,
                   snapshot_provider_count(s) - g);
        } else if (strcmp(cmd, "skips") == 0) {
            const struct snapshot_skips *k = snapshot_skipped(cur());
            printf("skips bad_cidr=%u bad_port_range=%u bad_country_format=%u bad_template=%u "
                   "unresolved_host=%u bad_user=%u duplicate=%u\n",
                   k->bad_cidr, k->bad_port_range, k->bad_country_format, k->bad_template,
                   k->unresolved_host, k->bad_user, k->duplicate);
        } else if (strcmp(cmd, "status") == 0)
            cmd_status();
        else if (strcmp(cmd, "wait-generation") == 0 && n >= 2)
            cmd_wait_generation(strtoull(a1, NULL, 10), n >= 3 ? atof(a2) : 10);
        else if (strcmp(cmd, "wait-pg") == 0 && n >= 2)
            cmd_wait_pg(a1, n >= 3 ? atof(a2) : 10);
        else if (strcmp(cmd, "move") == 0)
            cmd_move();
        else if (strcmp(cmd, "rss") == 0)
            cmd_rss();
        else if (strcmp(cmd, "bench-users") == 0 && n >= 4)
            cmd_bench_users(a1, atol(a2), atof(a3));
        else if (strcmp(cmd, "bench-ips") == 0 && n >= 3)
            cmd_bench_ips(atol(a1), atof(a2));
        else if (strcmp(cmd, "quit") == 0)
            break;
        else
            printf("error unknown command: %s", line);
    }
    snapshot_ref_release(&ref);
    snapshot_store_stop(store);
    return 0;
}
