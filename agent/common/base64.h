/*
 * Base64 (RFC 4648, the standard alphabet, padded): the encoding of Basic
 * credentials, of every string field in HAProxy's billing log line, and of a
 * dead-lettered record's exact bytes.
 *
 * Written out here rather than taken from a library: it is a few lines, the
 * decoder sits on the verdict path (every Proxy-Authorization header), and
 * the strictness rules (canonical padding bits or not) are ours to choose.
 * OpenSSL's EVP_DecodeBlock would accept what we refuse (whitespace, missing
 * padding) and needs its own length fix-ups.
 */
#ifndef GW_BASE64_H
#define GW_BASE64_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Characters of the encoding of n bytes (no NUL). */
#define BASE64_LEN(n) (((n) + 2) / 3 * 4)

/* Writes the encoding of in[0..n) to out, which holds BASE64_LEN(n) bytes;
 * returns that length. No NUL is added. */
size_t base64_encode(const void *in, size_t n, char *out);

/* Incremental encoding of a stream, 3 bytes at a time, without joining the
 * pieces first: feed bytes with base64_stream_byte, finish with
 * base64_stream_end. out must hold BASE64_LEN(total) bytes. */
struct base64_stream {
    char *out;
    size_t o; /* characters written */
    uint8_t group[3];
    unsigned g; /* bytes in group */
};
void base64_stream_byte(struct base64_stream *s, uint8_t byte);
size_t base64_stream_end(struct base64_stream *s); /* characters written in all */

/* The value of one base64 symbol, or -1. */
int base64_value(unsigned char ch);

/*
 * Decodes in[0..n) into out (cap bytes). Accepts only the padded form: n a
 * multiple of 4, '=' only as the last one or two characters. With canonical,
 * the bits the padding leaves over must be zero (the one encoding of each
 * byte string). Returns the decoded length, or -1 (bad input, or cap too
 * small: n / 4 * 3 always suffices). n == 0 decodes to 0 bytes.
 */
long base64_decode(const char *in, size_t n, void *out, size_t cap, bool canonical);

#endif
