/*
 * The bounded text writer (textbuf.h): what is not inline.
 */
#include "textbuf.h"

void textbuf_put_int(struct textbuf *b, int64_t v)
{
    char tmp[24];
    char *t = tmp + sizeof(tmp);
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        *--t = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *--t = '-';
    textbuf_put(b, t, (size_t)(tmp + sizeof(tmp) - t));
}
