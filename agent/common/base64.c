/*
 * Base64 (base64.h). Pure functions; decoding is on the verdict path, so no
 * table is built at startup and nothing is allocated.
 */
#include "base64.h"

static const char base64_chars[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A switch of ranges rather than a 256-byte table built at startup: no
 * initialisation, no mutable state. */
int base64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z') return ch - 'A';
    if (ch >= 'a' && ch <= 'z') return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9') return ch - '0' + 52;
    if (ch == '+') return 62;
    if (ch == '/') return 63;
    return -1;
}

/* Writes the 4 characters of the 1..3 bytes in in[0..n). */
static void base64_group(const uint8_t *in, size_t n, char *out)
{
    uint32_t w = (uint32_t)in[0] << 16;
    if (n > 1) w |= (uint32_t)in[1] << 8;
    if (n > 2) w |= in[2];
    out[0] = base64_chars[(w >> 18) & 63];
    out[1] = base64_chars[(w >> 12) & 63];
    out[2] = n > 1 ? base64_chars[(w >> 6) & 63] : '=';
    out[3] = n > 2 ? base64_chars[w & 63] : '=';
}

size_t base64_encode(const void *in, size_t n, char *out)
{
    const uint8_t *p = in;
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3, o += 4)
        base64_group(p + i, 3, out + o);
    if (i < n) {
        base64_group(p + i, n - i, out + o);
        o += 4;
    }
    return o;
}

void base64_stream_byte(struct base64_stream *s, uint8_t byte)
{
    s->group[s->g++] = byte;
    if (s->g == 3) {
        base64_group(s->group, 3, s->out + s->o);
        s->o += 4;
        s->g = 0;
    }
}

size_t base64_stream_end(struct base64_stream *s)
{
    if (s->g > 0) {
        base64_group(s->group, s->g, s->out + s->o);
        s->o += 4;
        s->g = 0;
    }
    return s->o;
}

long base64_decode(const char *in, size_t n, void *out, size_t cap, bool canonical)
{
    uint8_t *o = out;
    size_t len = 0;

    if (n % 4 != 0) return -1;
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
            v[j] = base64_value(ch);
            if (v[j] < 0) return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        /* Canonical form: the bits that padding leaves over must be zero. */
        if (canonical && ((pad == 2 && (w & 0xffff) != 0) || (pad == 1 && (w & 0xff) != 0)))
            return -1;
        if (cap - len < (size_t)(3 - pad)) return -1;
        o[len++] = (uint8_t)(w >> 16);
        if (pad < 2) o[len++] = (uint8_t)(w >> 8);
        if (pad < 1) o[len++] = (uint8_t)w;
    }
    return (long)len;
}
