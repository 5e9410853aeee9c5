/*
 * libFuzzer target for agent/gw/basic_auth.c. The input is decoded as a header
 * value; when accepted, the credentials must respect the rules (non-empty
 * user without ':', no NUL, within the size cap) and re-encoding them must give
 * back exactly the base64 the client sent, since only the canonical encoding
 * is accepted. The input is also split into a user and a password and pushed
 * through encode then decode, which must return them unchanged.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "basic_auth.h"

#define CHECK(c)                                                                                   \
    do {                                                                                           \
        if (!(c)) abort();                                                                         \
    } while (0)

static bool space(char c)
{
    return c == ' ' || c == '\t';
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data;
    char buf[BASIC_AUTH_BUF_SIZE];
    struct basic_auth_cred c;
    const char *reason = NULL;

    if (basic_auth_decode(in, size, buf, sizeof(buf), &c, &reason) == 0) {
        CHECK(c.user == buf && c.user_len >= 1);
        CHECK(c.user_len + 1 + c.pass_len <= BASIC_AUTH_MAX_DECODED);
        CHECK(c.pass == buf + c.user_len + 1);
        CHECK(memchr(c.user, ':', c.user_len) == NULL);
        CHECK(strlen(c.user) == c.user_len && strlen(c.pass) == c.pass_len);
        /* the token is what follows the scheme and its spaces, trimmed */
        size_t b = 0, e = size;
        while (b < e && space(in[b]))
            b++;
        while (e > b && space(in[e - 1]))
            e--;
        b += 5;
        while (b < e && space(in[b]))
            b++;
        char enc[BASIC_AUTH_B64_LEN(BASIC_AUTH_MAX_DECODED) + 1];
        size_t n = basic_auth_encode(c.user, c.user_len, c.pass, c.pass_len, enc, sizeof(enc));
        CHECK(n == e - b && memcmp(enc, in + b, n) == 0);
    } else {
        CHECK(reason != NULL && reason[0] != '\0');
    }

    /* Round trip: the first byte picks where user ends. */
    if (size < 1) return 0;
    size_t ulen = data[0] % size;
    const char *user = in + 1, *pass = in + 1 + ulen;
    size_t plen = size - 1 - ulen;
    char hdr[6 + BASIC_AUTH_B64_LEN(BASIC_AUTH_MAX_DECODED) + 1] = "Basic ";
    size_t n = basic_auth_encode(user, ulen, pass, plen, hdr + 6, sizeof(hdr) - 6);
    bool encodable = ulen > 0 && memchr(user, ':', ulen) == NULL &&
                     BASIC_AUTH_B64_LEN(ulen + 1 + plen) < sizeof(hdr) - 6;
    CHECK((n > 0) == encodable);
    if (!encodable) return 0;
    bool decodable = ulen + 1 + plen <= BASIC_AUTH_MAX_DECODED &&
                     memchr(user, '\0', ulen) == NULL && memchr(pass, '\0', plen) == NULL;
    int rc = basic_auth_decode(hdr, 6 + n, buf, sizeof(buf), &c, &reason);
    CHECK((rc == 0) == decodable);
    if (rc == 0) {
        CHECK(c.user_len == ulen && memcmp(c.user, user, ulen) == 0);
        CHECK(c.pass_len == plen && memcmp(c.pass, pass, plen) == 0);
    }
    return 0;
}
