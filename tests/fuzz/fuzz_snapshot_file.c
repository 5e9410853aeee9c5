/*
 * libFuzzer target for the snapshot file parser (agent/gw/snapshot_file.c).
 *
 * Each input is parsed twice: as it is (mostly refused by the header checks
 * and the CRC), and with the header's body length and CRC rewritten to match
 * its body, so mutations reach the row parser and the snapshot builder. A
 * parse either refuses with a message or gives a snapshot that answers
 * lookups, and whose encoding parses back to the same bytes (a snapshot
 * restored from disk can be saved and restored again unchanged).
 */
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <string.h>

#include "log.h"
#include "snapshot.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static uint32_t crc32_bitwise(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void exercise(struct snapshot *s, const uint8_t *data, size_t size)
{
    /* lookups with bytes of the input */
    size_t n = size < 64 ? size : 64;
    (void)snapshot_user(s, (const char *)data, n);
    if (size >= 16) {
        (void)snapshot_ip_allowed(s, AF_INET, data);
        (void)snapshot_ip_allowed(s, AF_INET6, data);
    }
    /* providers: sorted, split, fields within bounds */
    const struct snap_provider *const *v;
    for (int g = 0; g < 2; g++) {
        size_t np = snapshot_providers(s, g == 1, &v);
        for (size_t i = 0; i < np; i++) {
            CHECK(v[i]->is_global == (g == 1));
            CHECK(v[i]->port_min >= 1 && v[i]->port_min <= v[i]->port_max);
            CHECK(v[i]->addr[0] != '\0' && strlen(v[i]->addr) < sizeof(v[i]->addr));
            CHECK(strlen(v[i]->host) > 0);
            if (i > 0) {
                size_t a = v[i - 1]->slug_len, b = v[i]->slug_len;
                int c = memcmp(v[i - 1]->slug, v[i]->slug, a < b ? a : b);
                CHECK(c < 0 || (c == 0 && a < b));
            }
        }
    }
    /* save and restore: the same bytes again */
    size_t len1, len2;
    char err[256];
    uint8_t *enc1 = snapshot_file_encode(s, 1, &len1);
    CHECK(enc1 != NULL);
    struct snapshot *t = snapshot_file_parse(enc1, len1, err, sizeof(err));
    CHECK(t != NULL);
    CHECK(snapshot_user_count(t) == snapshot_user_count(s));
    CHECK(snapshot_ip_count(t) == snapshot_ip_count(s));
    CHECK(snapshot_provider_count(t) == snapshot_provider_count(s));
    uint8_t *enc2 = snapshot_file_encode(t, 1, &len2);
    CHECK(enc2 != NULL && len1 == len2 && memcmp(enc1, enc2, len1) == 0);
    free(enc1);
    free(enc2);
    snapshot_free(t);
}

static void parse(const uint8_t *data, size_t size)
{
    char err[256];
    err[0] = '\0';
    struct snapshot *s = snapshot_file_parse(data, size, err, sizeof(err));
    if (s == NULL) {
        CHECK(err[0] != '\0');
        return;
    }
    exercise(s, data, size);
    snapshot_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int init;
    if (!init) {
        log_set_level(LOG_LVL_ERROR); /* skipped rows are logged as warnings */
        init = 1;
    }
    parse(data, size);
    if (size < SNAPSHOT_FILE_HEADER_LEN) return 0;
    uint8_t *copy = malloc(size); /* exact size: ASan sees any overread */
    if (copy == NULL) return 0;
    memcpy(copy, data, size);
    uint64_t body = size - SNAPSHOT_FILE_HEADER_LEN;
    uint32_t crc = crc32_bitwise(copy + SNAPSHOT_FILE_HEADER_LEN, body);
    for (int i = 0; i < 8; i++)
        copy[14 + i] = (uint8_t)(body >> (56 - 8 * i));
    for (int i = 0; i < 4; i++)
        copy[23 + i] = (uint8_t)(crc >> (24 - 8 * i));
    parse(copy, size);
    free(copy);
    return 0;
}
