/*
 * UTF-8 as RFC 3629 defines it: no overlong forms, no UTF-16 surrogates,
 * nothing above U+10FFFF. What the JSON writer passes through as is and the
 * JSON reader accepts.
 */
#ifndef GW_UTF8_H
#define GW_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Length (1..4) of the valid UTF-8 sequence at p (avail >= 1 bytes there),
 * or 0 when the bytes there are not one. */
size_t utf8_seq(const unsigned char *p, size_t avail);

/* Is s[0..len) valid UTF-8? */
bool utf8_valid(const char *s, size_t len);

/* Writes the UTF-8 encoding of cp (<= U+10FFFF) to o (4 bytes of room);
 * returns its length. */
size_t utf8_put(char *o, uint32_t cp);

/* Characters in s[0..len), which is valid UTF-8 (lead bytes counted). */
size_t utf8_chars(const char *s, size_t len);

#endif
