/*
 * slow-dns.so: an LD_PRELOAD shim that makes name resolution slow, for the
 * test that shows no event loop of the agent waits on DNS
 * (tests/integration/t_slow_dns.sh). Test-only: never loaded in production.
 *
 *   SLOW_DNS_SUFFIX=.slow.test  names ending so take SLOW_DNS_MS to resolve...
 *   SLOW_DNS_MS=3000            ...and then resolve to 127.0.0.1
 *   SLOW_DNS_LOG=path           one line per slow lookup appended there:
 *                               "<name> <thread id> <start ms> <end ms>"
 *
 * Every other name goes to the real getaddrinfo, untouched.
 */
#include <dlfcn.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    const char *suffix = getenv("SLOW_DNS_SUFFIX");
    size_t nl = node ? strlen(node) : 0, sl = suffix ? strlen(suffix) : 0;
    if (real == NULL) return EAI_SYSTEM;
    if (node == NULL || sl == 0 || nl < sl || strcmp(node + nl - sl, suffix) != 0)
        return real(node, service, hints, res);
    const char *ms = getenv("SLOW_DNS_MS");
    long long start = now_ms();
    usleep((useconds_t)(ms ? atoi(ms) : 3000) * 1000);
    const char *log = getenv("SLOW_DNS_LOG");
    FILE *f = log ? fopen(log, "a") : NULL;
    if (f) {
        fprintf(f, "%s %ld %lld %lld\n", node, (long)syscall(SYS_gettid), start, now_ms());
        fclose(f);
    }
    return real("127.0.0.1", service, hints, res);
}
