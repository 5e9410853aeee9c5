/*
 * A bounded text writer: appends into a caller's buffer and, once something
 * does not fit, writes nothing more and remembers it. Callers write a whole
 * object and look once at the end (textbuf_len returns 0 when it overflowed),
 * instead of checking every append.
 *
 * The appends are inline: the billing path writes a JSON record per request
 * through them.
 */
#ifndef GW_TEXTBUF_H
#define GW_TEXTBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct textbuf {
    char *start; /* the caller's buffer */
    char *p;     /* next byte to write */
    char *end;   /* one past the last byte of the buffer */
    bool full;   /* an append did not fit: the text is incomplete */
};

static inline void textbuf_init(struct textbuf *b, char *buf, size_t cap)
{
    b->start = b->p = buf;
    b->end = buf + cap;
    b->full = false;
}

/* Appends n bytes, or marks the buffer full (nothing written). */
static inline void textbuf_put(struct textbuf *b, const void *s, size_t n)
{
    if (n == 0) return;
    if (b->full || (size_t)(b->end - b->p) < n) {
        b->full = true;
        return;
    }
    memcpy(b->p, s, n);
    b->p += n;
}

static inline void textbuf_putc(struct textbuf *b, char c)
{
    if (b->full || b->p == b->end) {
        b->full = true;
        return;
    }
    *b->p++ = c;
}

static inline void textbuf_puts(struct textbuf *b, const char *s)
{
    textbuf_put(b, s, strlen(s));
}

/* Appends v in decimal. */
void textbuf_put_int(struct textbuf *b, int64_t v);

/* Bytes written, or 0 when something did not fit. No NUL is added. */
static inline size_t textbuf_len(const struct textbuf *b)
{
    return b->full ? 0 : (size_t)(b->p - b->start);
}

#endif
