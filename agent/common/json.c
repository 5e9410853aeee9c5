/*
 * The JSON string writer (json.h). Runs of plain bytes are copied in one
 * append: a billing record is mostly ASCII.
 */
#include "json.h"

#include <stdint.h>

#include "utf8.h"

void json_put_string(struct textbuf *b, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* start of the pending run of bytes copied as is */

    textbuf_putc(b, '"');
    if (s == NULL || len == 0) {
        textbuf_putc(b, '"');
        return;
    }
    for (size_t i = 0; i < len;) {
        unsigned c = p[i];
        if (c >= 0x20 && c < 0x7F && c != '"' && c != '\\') {
            i++;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_seq(p + i, len - i);
            if (k > 0) {
                i += k;
                continue;
            }
        }
        textbuf_put(b, p + run, i - run);
        char e[6] = {'\\', 0, 0, 0, 0, 0};
        size_t n = 2;
        switch (c) {
        case '"':
        case '\\':
            e[1] = (char)c;
            break;
        case '\b':
            e[1] = 'b';
            break;
        case '\f':
            e[1] = 'f';
            break;
        case '\n':
            e[1] = 'n';
            break;
        case '\r':
            e[1] = 'r';
            break;
        case '\t':
            e[1] = 't';
            break;
        default:
            n = 6;
            e[1] = 'u';
            if (c >= 0x80) { /* not part of valid UTF-8 */
                e[2] = 'f';
                e[3] = 'f';
                e[4] = 'f';
                e[5] = 'd';
            } else {
                e[2] = e[3] = '0';
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
            }
        }
        textbuf_put(b, e, n);
        run = ++i;
    }
    textbuf_put(b, p + run, len - run);
    textbuf_putc(b, '"');
}
