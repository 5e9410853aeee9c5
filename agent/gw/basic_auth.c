/*
 * Basic credentials for the gateway's two ends: the customer's
 * Proxy-Authorization header, decoded on every request to find who is asking,
 * and the provider's, encoded for the upstream request.
 *
 * The decoder sees raw client bytes, so it is strict and bounded: the decoded
 * size is capped before any work is done, only canonical base64 is accepted,
 * and it writes into the caller's buffer. The base64 codec is written out
 * here rather than taken from a library because it is a few lines on the hot
 * path and the strictness rules are ours.
 */
#include "basic_auth.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

static const char basic_auth_b64[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Value of a base64 symbol, or -1. A switch of ranges rather than a 256-byte
 * table built at startup: no initialisation, no mutable state. */
static int basic_auth_b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

static bool basic_auth_space(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Decodes the canonical, padded base64 in in[0..n) into out; returns the
 * decoded length or -1. The caller has checked that out holds n / 4 * 3. */
static long basic_auth_b64_decode(const char *in, size_t n, uint8_t *out)
{
    size_t o = 0;

    if (n == 0 || n % 4 != 0) return -1;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int v[4];
        int pad = 0;
        for (int j = 0; j < 4; j++) {
            unsigned char ch = (unsigned char)in[i + j];
            if (ch == '=' && last && j >= 2) {
                /* '=' only in the last two places, and "x=y" is not padding */
                if (j == 2 && in[i + 3] != '=') return -1;
                v[j] = 0;
                pad++;
                continue;
            }
            v[j] = basic_auth_b64_value(ch);
            if (v[j] < 0) return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Canonical form: the bits that padding leaves over must be zero. */
        if ((pad == 2 && (w & 0xffff) != 0) || (pad == 1 && (w & 0xff) != 0)) return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (pad < 2) out[o++] = (uint8_t)(w >> 8);
        if (pad < 1) out[o++] = (uint8_t)w;
    }
    return (long)o;
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
    long dlen = basic_auth_b64_decode(hdr + b, n, (uint8_t *)buf);
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

/* Appends the base64 of the 1..3 bytes in in[0..n) to out. */
static void basic_auth_b64_group(const uint8_t *in, size_t n, char *out)
{
    uint32_t w = (uint32_t)in[0] << 16;
    if (n > 1) w |= (uint32_t)in[1] << 8;
    if (n > 2) w |= in[2];
    out[0] = basic_auth_b64[(w >> 18) & 63];
    out[1] = basic_auth_b64[(w >> 12) & 63];
    out[2] = n > 1 ? basic_auth_b64[(w >> 6) & 63] : '=';
    out[3] = n > 2 ? basic_auth_b64[w & 63] : '=';
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
    uint8_t group[3];
    size_t g = 0, o = 0;
    for (size_t i = 0; i < total; i++) {
        if (i < ulen)
            group[g++] = (uint8_t)user[i];
        else if (i == ulen)
            group[g++] = ':';
        else
            group[g++] = (uint8_t)pass[i - ulen - 1];
        if (g == 3) {
            basic_auth_b64_group(group, 3, out + o);
            o += 4;
            g = 0;
        }
    }
    if (g > 0) {
        basic_auth_b64_group(group, g, out + o);
        o += 4;
    }
    out[o] = '\0';
    return o;
}
