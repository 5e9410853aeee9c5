/*
 * NOTIFY frames (doc/SPOE.txt 3.2.6): a list of messages, each a name, an
 * argument count on one byte and that many key/value arguments.
 *
 * The decoder fills a caller-provided array and refuses, rather than
 * truncates, anything that does not fit: a dropped argument could change a
 * verdict, a refused frame only costs one request.
 */
#include "spop.h"

int spop_notify_decode(const uint8_t *p, size_t len, struct spop_msg *msgs, size_t max,
                       size_t *nmsgs)
{
    struct spop_reader r = {p, p + len};
    size_t n = 0;

    while (r.p < r.end) {
        if (n == max) return SPOP_ERR_RES;
        struct spop_msg *m = &msgs[n];
        if (!spop_get_str(&r, &m->name) || r.p >= r.end) return SPOP_ERR_INVALID;
        m->nargs = *r.p++;
        if (m->nargs > SPOP_MAX_ARGS) return SPOP_ERR_RES;
        for (unsigned i = 0; i < m->nargs; i++) {
            if (!spop_get_str(&r, &m->args[i].name) || !spop_get_data(&r, &m->args[i].value))
                return SPOP_ERR_INVALID;
        }
        n++;
    }
    *nmsgs = n;
    return SPOP_OK;
}

void spop_notify_put_msg(struct spop_writer *w, const char *name, uint8_t nargs)
{
    size_t len = 0;
    while (name[len])
        len++;
    spop_put_str(w, name, len);
    spop_put_bytes(w, &nargs, 1);
}

void spop_put_kv(struct spop_writer *w, const char *name, const struct spop_data *v)
{
    size_t len = 0;
    while (name[len])
        len++;
    spop_put_str(w, name, len);
    spop_put_data(w, v);
}
