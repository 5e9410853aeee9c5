/*
 * Basic credentials for the gateway's two ends: the customer's
 * Proxy-Authorization header, decoded on every request to find who is asking,
 * and the provider's, encoded for the upstream request.
 *
 * The decoder sees raw client bytes, so it is strict and bounded: the decoded
 * size is capped before any work is done, only canonical base64 is accepted,
 * and it writes into the caller's buffer. The base64 codec is the common one
 * (agent/common/base64.h), in its canonical mode.
 */
#include "basic_auth.h"

#include "base64.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static bool basic_auth_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

int basic_auth_decode(const char *hdr, size_t len, char *buf, size_t cap,
                      struct basic_auth_cred *out, const char **reason)
{
    const char *why;
    size_t b = 0;

    if (hdr == NULL) len = 0;
    while (len > 0 && basic_auth_space(hdr[len - 1]))
        len--;
    while (b < len && basic_auth_space(hdr[b]))
        b++;
    if (b == len) {
        why = "missing credentials";
        goto fail;
    }
    if (len - b == 5 && strncasecmp(hdr + b, "basic", 5) == 0) {
        why = "empty Basic credentials";
        goto fail;
    }
    if (len - b < 6 || strncasecmp(hdr + b, "basic", 5) != 0 || !basic_auth_space(hdr[b + 5])) {
        why = "not Basic credentials";
        goto fail;
    }
    b += 5;
    while (b < len && basic_auth_space(hdr[b]))
        b++;

    size_t n = len - b;
    /* Cap before decoding: n / 4 * 3 bounds the decoded size from above. */
    if (n / 4 * 3 > BASIC_AUTH_MAX_DECODED + 2 || buf == NULL || cap < n / 4 * 3) {
        why = "credentials too long";
        goto fail;
    }
    long dlen = n == 0 ? -1 : base64_decode(hdr + b, n, buf, n / 4 * 3, true);
    if (dlen < 0) {
        why = "bad base64 in credentials";
        goto fail;
    }
    if ((size_t)dlen > BASIC_AUTH_MAX_DECODED || (size_t)dlen >= cap) {
        why = "credentials too long";
        goto fail;
    }
    if (memchr(buf, '\0', (size_t)dlen) != NULL) {
        why = "NUL byte in credentials";
        goto fail;
    }
    char *colon = memchr(buf, ':', (size_t)dlen);
    if (colon == NULL) {
        why = "no colon in credentials";
        goto fail;
    }
    if (colon == buf) {
        why = "empty user name";
        goto fail;
    }
    *colon = '\0';
    buf[dlen] = '\0';
    out->user = buf;
    out->user_len = (size_t)(colon - buf);
    out->pass = colon + 1;
    out->pass_len = (size_t)dlen - out->user_len - 1;
    return 0;

fail:
    if (reason) *reason = why;
    return -1;
}

size_t basic_auth_encode(const char *user, size_t ulen, const char *pass, size_t plen, char *out,
                         size_t cap)
{
    if (out == NULL || cap == 0) return 0;
    out[0] = '\0';
    if (user == NULL || ulen == 0 || memchr(user, ':', ulen) != NULL) return 0;
    if (pass == NULL) plen = 0;
    size_t total = ulen + 1 + plen;
    if (total < ulen || total > (SIZE_MAX - 3) / 4 * 3 || BASIC_AUTH_B64_LEN(total) >= cap)
        return 0;

    /* Stream "user" ":" "pass" through 3-byte groups without a joined copy. */
    struct base64_stream st = {.out = out};
    for (size_t i = 0; i < total; i++) {
        if (i < ulen)
            base64_stream_byte(&st, (uint8_t)user[i]);
        else if (i == ulen)
            base64_stream_byte(&st, ':');
        else
            base64_stream_byte(&st, (uint8_t)pass[i - ulen - 1]);
    }
    size_t o = base64_stream_end(&st);
    out[o] = '\0';
    return o;
}
