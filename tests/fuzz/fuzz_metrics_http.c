/*
 * libFuzzer target for the /metrics listener's request parser
 * (agent/common/metrics_http.c). Any bytes: the parser reads only its input
 * (a copy of exactly that size, so ASan sees any overread), answers one of
 * its documented statuses, and once it has answered, more bytes never
 * change the answer (the listener answers as soon as it can).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_http.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static int parse_copy(const uint8_t *data, size_t n)
{
    char *buf = malloc(n ? n : 1);
    CHECK(buf);
    if (n) memcpy(buf, data, n);
    int st = metrics_http_parse(buf, n);
    free(buf);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int st = parse_copy(data, size);
    CHECK(st == 0 || st == 200 || st == 400 || st == 404 || st == 405 || st == 431 || st == 505);
    if (size >= METRICS_HTTP_HEAD_MAX) CHECK(st != 0);
    int half = parse_copy(data, size / 2);
    if (half != 0) CHECK(st == half);
    return 0;
}
