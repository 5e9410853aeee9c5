/*
 * libFuzzer target: the SPOP frame decoder and every payload decoder, over a
 * stream of frames as the agent reads them from HAProxy.
 *
 * Besides "no crash, no UB", it checks what the connection code relies on:
 * a parsed frame lies inside the input, consumes at least its header, and
 * any NOTIFY that decodes re-encodes to a payload that decodes to the same
 * messages.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "spop.h"

static void check(int cond)
{
    if (!cond) abort();
}

static void same_data(const struct spop_data *a, const struct spop_data *b)
{
    check(a->type == b->type);
    switch (a->type) {
    case SPOP_T_STRING:
    case SPOP_T_BINARY:
        check(a->u.str.len == b->u.str.len);
        check(a->u.str.len == 0 || memcmp(a->u.str.ptr, b->u.str.ptr, a->u.str.len) == 0);
        break;
    case SPOP_T_BOOL:
        check(a->u.b == b->u.b);
        break;
    case SPOP_T_INT32:
        check(a->u.i32 == b->u.i32);
        break;
    case SPOP_T_UINT32:
        check(a->u.u32 == b->u.u32);
        break;
    case SPOP_T_INT64:
        check(a->u.i64 == b->u.i64);
        break;
    case SPOP_T_UINT64:
        check(a->u.u64 == b->u.u64);
        break;
    case SPOP_T_IPV4:
        check(memcmp(a->u.ipv4, b->u.ipv4, 4) == 0);
        break;
    case SPOP_T_IPV6:
        check(memcmp(a->u.ipv6, b->u.ipv6, 16) == 0);
        break;
    case SPOP_T_NULL:
        break;
    }
}

static void notify_round_trip(const struct spop_msg *msgs, size_t n)
{
    static uint8_t buf[1 << 17];
    static struct spop_msg again[SPOP_MAX_MSGS];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    for (size_t m = 0; m < n; m++) {
        spop_put_str(&w, msgs[m].name.ptr, msgs[m].name.len);
        uint8_t nargs = (uint8_t)msgs[m].nargs;
        spop_put_bytes(&w, &nargs, 1);
        for (unsigned i = 0; i < msgs[m].nargs; i++) {
            spop_put_str(&w, msgs[m].args[i].name.ptr, msgs[m].args[i].name.len);
            spop_put_data(&w, &msgs[m].args[i].value);
        }
    }
    check(!w.overflow);
    size_t n2;
    check(spop_notify_decode(buf, w.len, again, SPOP_MAX_MSGS, &n2) == SPOP_OK);
    check(n2 == n);
    for (size_t m = 0; m < n; m++) {
        check(again[m].nargs == msgs[m].nargs);
        for (unsigned i = 0; i < msgs[m].nargs; i++)
            same_data(&again[m].args[i].value, &msgs[m].args[i].value);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct spop_msg msgs[SPOP_MAX_MSGS];
    size_t off = 0;

    while (off < size) {
        struct spop_frame f;
        size_t used;
        int st = spop_frame_parse(data + off, size - off, 16380, &f, &used);
        if (st != SPOP_OK) break;
        check(used >= 11 && used <= size - off);
        check(f.payload >= data + off && f.payload + f.payload_len == data + off + used);

        struct spop_hello h;
        struct spop_disconnect d;
        struct spop_action acts[SPOP_MAX_ACTIONS];
        size_t n;
        switch (f.type) {
        case SPOP_FRAME_HAPROXY_HELLO:
            if (spop_hello_decode(f.payload, f.payload_len, &h) == SPOP_OK)
                check(h.max_frame_size >= SPOP_MIN_FRAME_SIZE && h.version_2_supported);
            break;
        case SPOP_FRAME_NOTIFY:
            if (spop_notify_decode(f.payload, f.payload_len, msgs, SPOP_MAX_MSGS, &n) == SPOP_OK)
                notify_round_trip(msgs, n);
            break;
        case SPOP_FRAME_ACK:
            spop_ack_decode(f.payload, f.payload_len, acts, SPOP_MAX_ACTIONS, &n);
            break;
        case SPOP_FRAME_HAPROXY_DISCONNECT:
        case SPOP_FRAME_AGENT_DISCONNECT:
            spop_disconnect_decode(f.payload, f.payload_len, &d);
            break;
        default:
            break;
        }
        off += used;
    }
    return 0;
}
