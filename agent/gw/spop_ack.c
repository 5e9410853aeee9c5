/*
 * ACK frames (doc/SPOE.txt 3.2.7 and 3.4): a list of set-var / unset-var
 * actions answering one NOTIFY.
 *
 * The agent only encodes them; the decoder exists for the SPOP test client
 * and the unit tests, which check what HAProxy would read.
 */
#include "spop.h"

static void put_action_head(struct spop_writer *w, uint8_t type, uint8_t nargs, uint8_t scope)
{
    uint8_t head[3] = {type, nargs, scope};
    spop_put_bytes(w, head, sizeof(head));
}

void spop_ack_set_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                      size_t name_len, const struct spop_data *v)
{
    put_action_head(w, SPOP_ACT_SET_VAR, 3, (uint8_t)scope);
    spop_put_str(w, name, name_len);
    spop_put_data(w, v);
}

void spop_ack_unset_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                        size_t name_len)
{
    put_action_head(w, SPOP_ACT_UNSET_VAR, 2, (uint8_t)scope);
    spop_put_str(w, name, name_len);
}

int spop_ack_decode(const uint8_t *p, size_t len, struct spop_action *acts, size_t max,
                    size_t *nacts)
{
    struct spop_reader r = {p, p + len};
    size_t n = 0;

    while (r.p < r.end) {
        if (n == max) return SPOP_ERR_RES;
        if (r.end - r.p < 3) return SPOP_ERR_INVALID;
        struct spop_action *a = &acts[n];
        uint8_t nargs;
        a->type = *r.p++;
        nargs = *r.p++;
        a->scope = *r.p++;
        if (a->scope > SPOP_SCOPE_RES || !spop_get_str(&r, &a->name)) return SPOP_ERR_INVALID;
        if (a->type == SPOP_ACT_SET_VAR && nargs == 3) {
            if (!spop_get_data(&r, &a->value)) return SPOP_ERR_INVALID;
        } else if (a->type == SPOP_ACT_UNSET_VAR && nargs == 2) {
            a->value.type = SPOP_T_NULL;
        } else {
            return SPOP_ERR_INVALID;
        }
        n++;
    }
    *nacts = n;
    return SPOP_OK;
}
