/*
 * SPOP codec tests: byte vectors written by hand from doc/SPOE.txt, round
 * trips, and every kind of truncated or malformed input.
 */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "spop.h"

/* String literals carry a trailing NUL; vectors below exclude it. */
#define BV(lit) lit, sizeof(lit) - 1
#define VEC(name, lit)                                                                             \
    static const uint8_t name[] = lit;                                                             \
    static const size_t name##_len = sizeof(name) - 1

/* --- varints ------------------------------------------------------------------- */

struct varint_case {
    uint64_t value;
    const char *bytes;
    size_t len;
};

/* Boundaries from the table in SPOE.txt 3.1, encodings worked out by hand. */
static const struct varint_case varints[] = {
    {0, "\x00", 1},
    {239, "\xEF", 1},
    {240, "\xF0\x00", 2},
    {300, "\xFC\x03", 2},
    {2287, "\xFF\x7F", 2},
    {2288, "\xF0\x80\x00", 3},
    {16380, "\xFC\xF0\x06", 3},
};

START_TEST(varint_vectors)
{
    const struct varint_case *c = &varints[_i];
    uint8_t buf[16];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    spop_put_varint(&w, c->value);
    ck_assert(!w.overflow);
    ck_assert_uint_eq(w.len, c->len);
    ck_assert_mem_eq(buf, c->bytes, c->len);

    struct spop_reader r = {(const uint8_t *)c->bytes, (const uint8_t *)c->bytes + c->len};
    uint64_t v;
    ck_assert(spop_get_varint(&r, &v));
    ck_assert_uint_eq(v, c->value);
    ck_assert_ptr_eq(r.p, r.end);
}
END_TEST

START_TEST(varint_lengths_at_boundaries)
{
    /* SPOE.txt: 3 bytes below 264432, 4 below 33818864, 5 below 4328786160. */
    static const struct {
        uint64_t v;
        size_t len;
    } cases[] = {{264431, 3},        {264432, 4},        {33818863, 4},   {33818864, 5},
                 {4328786159ULL, 5}, {4328786160ULL, 6}, {UINT64_MAX, 10}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[16];
        struct spop_writer w;
        spop_writer_init(&w, buf, sizeof(buf));
        spop_put_varint(&w, cases[i].v);
        ck_assert_msg(w.len == cases[i].len, "%llu took %zu bytes", (unsigned long long)cases[i].v,
                      w.len);
        struct spop_reader r = {buf, buf + w.len};
        uint64_t v;
        ck_assert(spop_get_varint(&r, &v));
        ck_assert_uint_eq(v, cases[i].v);
    }
}
END_TEST

START_TEST(varint_round_trip_many)
{
    uint64_t x = 0x9E3779B97F4A7C15ULL;
    for (int i = 0; i < 100000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        uint64_t v = x >> (i % 64);
        uint8_t buf[16];
        struct spop_writer w;
        spop_writer_init(&w, buf, sizeof(buf));
        spop_put_varint(&w, v);
        struct spop_reader r = {buf, buf + w.len};
        uint64_t got;
        ck_assert(spop_get_varint(&r, &got));
        ck_assert_uint_eq(got, v);
        ck_assert_ptr_eq(r.p, r.end);
    }
}
END_TEST

START_TEST(varint_refuses_truncated_and_overflowing)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {BV("")},
        {BV("\xF0")},
        {BV("\xF0\x80")},
        {BV("\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x01")}, /* 11 bytes */
        {BV("\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x7F")},     /* bits above 63 */
        {BV("\xFF\xF0\xFE\xFE\xFE\xFE\xFE\xFE\xFE\x0F")},     /* UINT64_MAX + 2^60 */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct spop_reader r = {(const uint8_t *)bad[i].bytes,
                                (const uint8_t *)bad[i].bytes + bad[i].len};
        uint64_t v;
        ck_assert_msg(!spop_get_varint(&r, &v), "case %zu accepted", i);
    }
}
END_TEST

/* --- typed data ------------------------------------------------------------------ */

struct data_case {
    const char *bytes;
    size_t len;
    enum spop_type type;
};

static const struct data_case data_vectors[] = {
    {"\x00", 1, SPOP_T_NULL},
    {"\x11", 1, SPOP_T_BOOL},
    {"\x01", 1, SPOP_T_BOOL},
    {"\x02\x05", 2, SPOP_T_INT32},
    {"\x02\xFF\xF0\xFE\xFE\xFE\xFE\xFE\xFE\xFE\x0E", 11, SPOP_T_INT32}, /* -1 */
    {"\x03\xFC\x03", 3, SPOP_T_UINT32},                                 /* 300 */
    {"\x04\x2A", 2, SPOP_T_INT64},
    {"\x05\xFF\x7F", 3, SPOP_T_UINT64}, /* 2287 */
    {"\x06\x7F\x00\x00\x01", 5, SPOP_T_IPV4},
    {"\x07\x20\x01\x0d\xb8\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01", 17, SPOP_T_IPV6},
    {"\x08\x03"
     "abc",
     5, SPOP_T_STRING},
    {"\x09\x02\x00\xFF", 4, SPOP_T_BINARY},
    {"\x08\x00", 2, SPOP_T_STRING},
};

START_TEST(data_vectors_decode_and_reencode)
{
    const struct data_case *c = &data_vectors[_i];
    struct spop_reader r = {(const uint8_t *)c->bytes, (const uint8_t *)c->bytes + c->len};
    struct spop_data d;
    ck_assert(spop_get_data(&r, &d));
    ck_assert_int_eq(d.type, c->type);
    ck_assert_ptr_eq(r.p, r.end);

    uint8_t buf[32];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    spop_put_data(&w, &d);
    ck_assert_uint_eq(w.len, c->len);
    ck_assert_mem_eq(buf, c->bytes, c->len);
}
END_TEST

START_TEST(data_values)
{
    struct spop_data d;
    struct spop_reader r;

#define DECODE(lit)                                                                                \
    (r = (struct spop_reader){(const uint8_t *)(lit), (const uint8_t *)(lit) + sizeof(lit) - 1},   \
     spop_get_data(&r, &d))
    ck_assert(DECODE("\x11") && d.u.b == true);
    ck_assert(DECODE("\x01") && d.u.b == false);
    ck_assert(DECODE("\x02\xFF\xF0\xFE\xFE\xFE\xFE\xFE\xFE\xFE\x0E") && d.u.i32 == -1);
    ck_assert(DECODE("\x03\xFC\x03") && d.u.u32 == 300);
    ck_assert(DECODE("\x05\xFF\x7F") && d.u.u64 == 2287);
    ck_assert(DECODE("\x06\x0A\x00\x00\x02") && memcmp(d.u.ipv4, "\x0A\x00\x00\x02", 4) == 0);
    ck_assert(DECODE("\x08\x03"
                     "abc") &&
              spop_str_eq(d.u.str, "abc"));
#undef DECODE
}
END_TEST

START_TEST(data_refuses_malformed)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {BV("")},
        {BV("\x0A")},                                 /* reserved type 10 */
        {BV("\x0F\x00")},                             /* reserved type 15 */
        {BV("\x02")},                                 /* INT32 without value */
        {BV("\x06\x7F\x00\x00")},                     /* short IPv4 */
        {BV("\x07\x00\x00\x00\x00\x00\x00\x00\x00")}, /* short IPv6 */
        {BV("\x08\x05"
            "abc")},                                          /* string longer than buffer */
        {BV("\x09\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\xFF\x0F")}, /* huge length */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct spop_reader r = {(const uint8_t *)bad[i].bytes,
                                (const uint8_t *)bad[i].bytes + bad[i].len};
        struct spop_data d;
        ck_assert_msg(!spop_get_data(&r, &d), "case %zu accepted", i);
    }
}
END_TEST

/* An integer whose value exceeds its declared width is refused. */
START_TEST(data_refuses_out_of_range_integers)
{
    static const struct {
        uint8_t type;
        uint64_t v;
        bool ok;
    } cases[] = {
        {SPOP_T_INT32, 0x7FFFFFFFULL, true},
        {SPOP_T_INT32, 0x80000000ULL, false},
        {SPOP_T_INT32, (uint64_t)(int64_t)INT32_MIN, true},
        {SPOP_T_INT32, (uint64_t)((int64_t)INT32_MIN - 1), false},
        {SPOP_T_UINT32, 0xFFFFFFFFULL, true},
        {SPOP_T_UINT32, 0x100000000ULL, false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[16] = {cases[i].type};
        struct spop_writer w;
        spop_writer_init(&w, buf + 1, sizeof(buf) - 1);
        spop_put_varint(&w, cases[i].v);
        struct spop_reader r = {buf, buf + 1 + w.len};
        struct spop_data d;
        ck_assert_msg(spop_get_data(&r, &d) == cases[i].ok, "case %zu", i);
    }
}
END_TEST

START_TEST(data_round_trip_every_type)
{
    struct spop_data in[10] = {{.type = SPOP_T_NULL}};
    in[1] = spop_data_bool(true);
    in[2].type = SPOP_T_INT32;
    in[2].u.i32 = INT32_MIN;
    in[3] = spop_data_u32(UINT32_MAX);
    in[4] = spop_data_i64(INT64_MIN);
    in[5].type = SPOP_T_UINT64;
    in[5].u.u64 = UINT64_MAX;
    in[6].type = SPOP_T_IPV4;
    memcpy(in[6].u.ipv4, "\xC0\xA8\x01\x01", 4);
    in[7].type = SPOP_T_IPV6;
    memcpy(in[7].u.ipv6, "\xfe\x80\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02", 16);
    in[8] = spop_data_cstr("hello, world");
    in[9] = spop_data_str("\x00\x01\x02", 3);
    in[9].type = SPOP_T_BINARY;

    uint8_t buf[256];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    for (int i = 0; i < 10; i++)
        spop_put_data(&w, &in[i]);
    ck_assert(!w.overflow);

    struct spop_reader r = {buf, buf + w.len};
    for (int i = 0; i < 10; i++) {
        struct spop_data d;
        ck_assert(spop_get_data(&r, &d));
        ck_assert_int_eq(d.type, in[i].type);
        switch (d.type) {
        case SPOP_T_STRING:
        case SPOP_T_BINARY:
            ck_assert_uint_eq(d.u.str.len, in[i].u.str.len);
            ck_assert_mem_eq(d.u.str.ptr, in[i].u.str.ptr, d.u.str.len);
            break;
        case SPOP_T_NULL:
            break;
        case SPOP_T_BOOL:
            ck_assert(d.u.b == in[i].u.b);
            break;
        case SPOP_T_INT32:
            ck_assert_int_eq(d.u.i32, in[i].u.i32);
            break;
        case SPOP_T_UINT32:
            ck_assert_uint_eq(d.u.u32, in[i].u.u32);
            break;
        case SPOP_T_INT64:
            ck_assert_int_eq(d.u.i64, in[i].u.i64);
            break;
        case SPOP_T_UINT64:
            ck_assert_uint_eq(d.u.u64, in[i].u.u64);
            break;
        case SPOP_T_IPV4:
            ck_assert_mem_eq(d.u.ipv4, in[i].u.ipv4, 4);
            break;
        case SPOP_T_IPV6:
            ck_assert_mem_eq(d.u.ipv6, in[i].u.ipv6, 16);
            break;
        }
    }
    ck_assert_ptr_eq(r.p, r.end);
}
END_TEST

START_TEST(writer_overflow_latches)
{
    uint8_t buf[4];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    spop_put_str(&w, "abc", 3);
    ck_assert(!w.overflow);
    ck_assert_uint_eq(w.len, 4);
    spop_put_varint(&w, 1);
    ck_assert(w.overflow);
    ck_assert_uint_eq(w.len, 4);
    spop_put_bytes(&w, "", 0);
    ck_assert_uint_eq(w.len, 4);
}
END_TEST

/* --- frames -------------------------------------------------------------------- */

/* HAPROXY-HELLO as HAProxy 2.6 sends it (supported-versions, max-frame-size
 * 16380, capabilities), stream-id and frame-id 0, FIN set. */
VEC(haproxy_hello, "\x00\x00\x00\x4B"
                   "\x01"
                   "\x00\x00\x00\x01"
                   "\x00\x00"
                   "\x12"
                   "supported-versions"
                   "\x08\x03"
                   "2.0"
                   "\x0E"
                   "max-frame-size"
                   "\x03\xFC\xF0\x06"
                   "\x0C"
                   "capabilities"
                   "\x08\x0A"
                   "pipelining");

/* The AGENT-HELLO answering it. */
VEC(agent_hello, "\x00\x00\x00\x40"
                 "\x65"
                 "\x00\x00\x00\x01"
                 "\x00\x00"
                 "\x07"
                 "version"
                 "\x08\x03"
                 "2.0"
                 "\x0E"
                 "max-frame-size"
                 "\x03\xFC\xF0\x06"
                 "\x0C"
                 "capabilities"
                 "\x08\x0A"
                 "pipelining");

/* NOTIFY stream 5 frame 1: message "check" with ip=127.0.0.1, path="/x". */
VEC(notify, "\x00\x00\x00\x1F"
            "\x03"
            "\x00\x00\x00\x01"
            "\x05\x01"
            "\x05"
            "check"
            "\x02"
            "\x02"
            "ip"
            "\x06\x7F\x00\x00\x01"
            "\x04"
            "path"
            "\x08\x02"
            "/x");

/* ACK stream 5 frame 1: set-var(txn, status, uint32 200), unset-var(req, x). */
VEC(ack, "\x00\x00\x00\x18"
         "\x67"
         "\x00\x00\x00\x01"
         "\x05\x01"
         "\x01\x03\x02"
         "\x06"
         "status"
         "\x03\xC8"
         "\x02\x02\x03"
         "\x01"
         "x");

/* AGENT-DISCONNECT: status 3, "frame is too big". */
VEC(agent_disconnect, "\x00\x00\x00\x2F"
                      "\x66"
                      "\x00\x00\x00\x01"
                      "\x00\x00"
                      "\x0B"
                      "status-code"
                      "\x03\x03"
                      "\x07"
                      "message"
                      "\x08\x10"
                      "frame is too big");

START_TEST(frame_parse_hello)
{
    struct spop_frame f;
    size_t used;
    ck_assert_int_eq(spop_frame_parse(haproxy_hello, haproxy_hello_len, 16380, &f, &used), SPOP_OK);
    ck_assert_uint_eq(used, haproxy_hello_len);
    ck_assert_uint_eq(f.type, SPOP_FRAME_HAPROXY_HELLO);
    ck_assert_uint_eq(f.flags, SPOP_FLAG_FIN);
    ck_assert_uint_eq(f.stream_id, 0);
    ck_assert_uint_eq(f.frame_id, 0);

    struct spop_hello h;
    ck_assert_int_eq(spop_hello_decode(f.payload, f.payload_len, &h), SPOP_OK);
    ck_assert(h.version_2_supported);
    ck_assert_uint_eq(h.max_frame_size, 16380);
    ck_assert(h.cap_pipelining);
    ck_assert(!h.cap_async);
    ck_assert(!h.healthcheck);
}
END_TEST

START_TEST(frame_encode_agent_hello)
{
    uint8_t buf[128];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    ck_assert(spop_agent_hello_encode(&w, 16380, "pipelining"));
    ck_assert_uint_eq(w.len, agent_hello_len);
    ck_assert_mem_eq(buf, agent_hello, agent_hello_len);
}
END_TEST

START_TEST(frame_parse_notify)
{
    struct spop_frame f;
    size_t used;
    ck_assert_int_eq(spop_frame_parse(notify, notify_len, 16380, &f, &used), SPOP_OK);
    ck_assert_uint_eq(f.type, SPOP_FRAME_NOTIFY);
    ck_assert_uint_eq(f.stream_id, 5);
    ck_assert_uint_eq(f.frame_id, 1);

    struct spop_msg msgs[4];
    size_t n;
    ck_assert_int_eq(spop_notify_decode(f.payload, f.payload_len, msgs, 4, &n), SPOP_OK);
    ck_assert_uint_eq(n, 1);
    ck_assert(spop_str_eq(msgs[0].name, "check"));
    ck_assert_uint_eq(msgs[0].nargs, 2);
    ck_assert(spop_str_eq(msgs[0].args[0].name, "ip"));
    ck_assert_int_eq(msgs[0].args[0].value.type, SPOP_T_IPV4);
    ck_assert(spop_str_eq(msgs[0].args[1].name, "path"));
    ck_assert(spop_str_eq(msgs[0].args[1].value.u.str, "/x"));
}
END_TEST

START_TEST(frame_encode_notify_matches_vector)
{
    uint8_t buf[128];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    size_t start = spop_frame_begin(&w, SPOP_FRAME_NOTIFY, SPOP_FLAG_FIN, 5, 1);
    spop_notify_put_msg(&w, "check", 2);
    struct spop_data ip = {.type = SPOP_T_IPV4, .u.ipv4 = {127, 0, 0, 1}};
    spop_put_kv(&w, "ip", &ip);
    struct spop_data path = spop_data_cstr("/x");
    spop_put_kv(&w, "path", &path);
    ck_assert(spop_frame_end(&w, start, 16380));
    ck_assert_uint_eq(w.len, notify_len);
    ck_assert_mem_eq(buf, notify, notify_len);
}
END_TEST

START_TEST(frame_encode_ack_matches_vector)
{
    uint8_t buf[128];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    size_t start = spop_frame_begin(&w, SPOP_FRAME_ACK, SPOP_FLAG_FIN, 5, 1);
    struct spop_data st = spop_data_u32(200);
    spop_ack_set_var(&w, SPOP_SCOPE_TXN, "status", 6, &st);
    spop_ack_unset_var(&w, SPOP_SCOPE_REQ, "x", 1);
    ck_assert(spop_frame_end(&w, start, 16380));
    ck_assert_uint_eq(w.len, ack_len);
    ck_assert_mem_eq(buf, ack, ack_len);

    struct spop_frame f;
    size_t used;
    ck_assert_int_eq(spop_frame_parse(buf, w.len, 16380, &f, &used), SPOP_OK);
    struct spop_action acts[4];
    size_t n;
    ck_assert_int_eq(spop_ack_decode(f.payload, f.payload_len, acts, 4, &n), SPOP_OK);
    ck_assert_uint_eq(n, 2);
    ck_assert_uint_eq(acts[0].type, SPOP_ACT_SET_VAR);
    ck_assert_uint_eq(acts[0].scope, SPOP_SCOPE_TXN);
    ck_assert(spop_str_eq(acts[0].name, "status"));
    ck_assert_uint_eq(acts[0].value.u.u32, 200);
    ck_assert_uint_eq(acts[1].type, SPOP_ACT_UNSET_VAR);
    ck_assert_uint_eq(acts[1].scope, SPOP_SCOPE_REQ);
}
END_TEST

START_TEST(ack_every_scope)
{
    for (int scope = SPOP_SCOPE_PROC; scope <= SPOP_SCOPE_RES; scope++) {
        uint8_t buf[64];
        struct spop_writer w;
        spop_writer_init(&w, buf, sizeof(buf));
        struct spop_data v = spop_data_bool(true);
        spop_ack_set_var(&w, (enum spop_scope)scope, "v", 1, &v);
        spop_ack_unset_var(&w, (enum spop_scope)scope, "v", 1);
        struct spop_action acts[2];
        size_t n;
        ck_assert_int_eq(spop_ack_decode(buf, w.len, acts, 2, &n), SPOP_OK);
        ck_assert_uint_eq(n, 2);
        ck_assert_uint_eq(acts[0].scope, (unsigned)scope);
        ck_assert_uint_eq(acts[1].scope, (unsigned)scope);
    }
    /* scope 5 does not exist */
    ck_assert_int_eq(spop_ack_decode((const uint8_t *)"\x01\x03\x05\x01v\x00", 6,
                                     (struct spop_action[1]){0}, 1, &(size_t){0}),
                     SPOP_ERR_INVALID);
}
END_TEST

START_TEST(frame_disconnect_round_trip)
{
    uint8_t buf[128];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    ck_assert(spop_disconnect_encode(&w, SPOP_FRAME_AGENT_DISCONNECT, SPOP_ERR_TOO_BIG,
                                     spop_status_str(SPOP_ERR_TOO_BIG)));
    ck_assert_uint_eq(w.len, agent_disconnect_len);
    ck_assert_mem_eq(buf, agent_disconnect, agent_disconnect_len);

    struct spop_frame f;
    size_t used;
    ck_assert_int_eq(spop_frame_parse(buf, w.len, 16380, &f, &used), SPOP_OK);
    struct spop_disconnect d;
    ck_assert_int_eq(spop_disconnect_decode(f.payload, f.payload_len, &d), SPOP_OK);
    ck_assert_uint_eq(d.status, 3);
    ck_assert(spop_str_eq(d.message, "frame is too big"));
}
END_TEST

START_TEST(status_strings_cover_spec)
{
    for (uint32_t s = 0; s <= 13; s++)
        ck_assert_str_ne(spop_status_str(s), spop_status_str(99));
    ck_assert_str_eq(spop_status_str(10), "payload fragmentation is not supported");
    ck_assert_str_eq(spop_status_str(1234), spop_status_str(99));
}
END_TEST

START_TEST(frame_incomplete_until_whole)
{
    struct spop_frame f;
    size_t used;
    for (size_t n = 0; n < notify_len; n++)
        ck_assert_int_eq(spop_frame_parse(notify, n, 16380, &f, &used), SPOP_INCOMPLETE);
    ck_assert_int_eq(spop_frame_parse(notify, notify_len, 16380, &f, &used), SPOP_OK);
}
END_TEST

START_TEST(frame_too_big_from_prefix_alone)
{
    struct spop_frame f;
    size_t used;
    /* 16381 announced, limit 16380: refused with only the prefix read. */
    ck_assert_int_eq(spop_frame_parse((const uint8_t *)"\x00\x00\x3F\xFD", 4, 16380, &f, &used),
                     SPOP_ERR_TOO_BIG);
    ck_assert_int_eq(spop_frame_parse((const uint8_t *)"\xFF\xFF\xFF\xFF", 4, 16380, &f, &used),
                     SPOP_ERR_TOO_BIG);
    /* the HELLO vector is 75 bytes: refused under a 74-byte limit */
    ck_assert_int_eq(spop_frame_parse(haproxy_hello, haproxy_hello_len, 74, &f, &used),
                     SPOP_ERR_TOO_BIG);
}
END_TEST

START_TEST(frame_malformed_header)
{
    struct spop_frame f;
    size_t used;
    /* shorter than type + flags + two varints */
    ck_assert_int_eq(spop_frame_parse((const uint8_t *)"\x00\x00\x00\x06\x03\x00\x00\x00\x01\x00",
                                      10, 16380, &f, &used),
                     SPOP_ERR_INVALID);
    /* stream-id varint runs past the frame */
    ck_assert_int_eq(
        spop_frame_parse((const uint8_t *)"\x00\x00\x00\x07\x03\x00\x00\x00\x01\xF0\x80", 11, 16380,
                         &f, &used),
        SPOP_ERR_INVALID);
    /* zero-length frame */
    ck_assert_int_eq(spop_frame_parse((const uint8_t *)"\x00\x00\x00\x00", 4, 16380, &f, &used),
                     SPOP_ERR_INVALID);
}
END_TEST

START_TEST(frame_two_in_one_buffer)
{
    uint8_t buf[256];
    memcpy(buf, notify, notify_len);
    memcpy(buf + notify_len, ack, ack_len);
    struct spop_frame f;
    size_t used, off = 0;
    ck_assert_int_eq(spop_frame_parse(buf, notify_len + ack_len, 16380, &f, &used), SPOP_OK);
    ck_assert_uint_eq(f.type, SPOP_FRAME_NOTIFY);
    off += used;
    ck_assert_int_eq(spop_frame_parse(buf + off, notify_len + ack_len - off, 16380, &f, &used),
                     SPOP_OK);
    ck_assert_uint_eq(f.type, SPOP_FRAME_ACK);
    ck_assert_uint_eq(off + used, notify_len + ack_len);
}
END_TEST

START_TEST(frame_end_enforces_max_size)
{
    uint8_t buf[1024];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    size_t start = spop_frame_begin(&w, SPOP_FRAME_ACK, SPOP_FLAG_FIN, 1, 1);
    char name[300];
    memset(name, 'n', sizeof(name));
    struct spop_data v = spop_data_bool(true);
    spop_ack_set_var(&w, SPOP_SCOPE_TXN, name, sizeof(name), &v);
    ck_assert(!spop_frame_end(&w, start, 256));
    ck_assert(w.overflow);

    /* and a writer too small for the frame fails as well */
    uint8_t small[8];
    spop_writer_init(&w, small, sizeof(small));
    ck_assert(!spop_agent_hello_encode(&w, 16380, "pipelining"));
}
END_TEST

/* --- HELLO errors ----------------------------------------------------------------- */

struct hello_case {
    const char *payload;
    size_t len;
    int status;
};

#define KV_VSN                                                                                     \
    "\x12"                                                                                         \
    "supported-versions"                                                                           \
    "\x08\x03"                                                                                     \
    "2.0"
#define KV_MFS                                                                                     \
    "\x0E"                                                                                         \
    "max-frame-size"                                                                               \
    "\x03\xFC\xF0\x06"
#define KV_CAP                                                                                     \
    "\x0C"                                                                                         \
    "capabilities"                                                                                 \
    "\x08\x0A"                                                                                     \
    "pipelining"
#define HC(lit, st)                                                                                \
    {                                                                                              \
        lit, sizeof(lit) - 1, st                                                                   \
    }

static const struct hello_case hello_cases[] = {
    HC(KV_VSN KV_MFS KV_CAP, SPOP_OK),
    HC(KV_CAP KV_MFS KV_VSN, SPOP_OK), /* any order */
    HC(KV_MFS KV_CAP, SPOP_ERR_NO_VSN),
    HC(KV_VSN KV_CAP, SPOP_ERR_NO_FRAME_SIZE),
    HC(KV_VSN KV_MFS, SPOP_ERR_NO_CAP),
    HC("\x12"
       "supported-versions"
       "\x08\x03"
       "1.0" KV_MFS KV_CAP,
       SPOP_ERR_BAD_VSN),
    HC("\x12"
       "supported-versions"
       "\x08\x08"
       "1.0, 2.0" KV_MFS KV_CAP,
       SPOP_OK),
    HC(KV_VSN "\x0E"
              "max-frame-size"
              "\x03\x64" KV_CAP,
       SPOP_ERR_BAD_FRAME_SIZE), /* 100 */
    HC(KV_VSN "\x0E"
              "max-frame-size"
              "\x08\x01"
              "1" KV_CAP,
       SPOP_ERR_INVALID), /* a string */
    HC(KV_VSN KV_MFS "\x0C"
                     "capabilities"
                     "\x08\x00",
       SPOP_OK), /* empty caps: healthcheck */
    HC(KV_VSN KV_MFS KV_CAP "\x0B"
                            "healthcheck"
                            "\x11",
       SPOP_OK),
    HC(KV_VSN KV_MFS KV_CAP "\x09"
                            "engine-id"
                            "\x08\x04"
                            "abcd",
       SPOP_OK),
    HC(KV_VSN KV_MFS KV_CAP "\x07"
                            "unknown"
                            "\x00",
       SPOP_OK), /* unknown keys ignored */
    HC(KV_VSN KV_MFS KV_CAP "\x0B"
                            "healthcheck",
       SPOP_ERR_INVALID), /* value missing */
    HC(KV_VSN KV_MFS "\x0C"
                     "capabi",
       SPOP_ERR_INVALID), /* truncated name */
};

START_TEST(hello_decode_cases)
{
    const struct hello_case *c = &hello_cases[_i];
    struct spop_hello h;
    ck_assert_int_eq(spop_hello_decode((const uint8_t *)c->payload, c->len, &h), c->status);
}
END_TEST

START_TEST(hello_healthcheck_and_caps)
{
    /* spaces around items are ignored (SPOE.txt 3.2.4); the list is 33 bytes */
    static const char p[] = KV_VSN KV_MFS "\x0C"
                                          "capabilities"
                                          "\x08\x21"
                                          " pipelining , async,fragmentation"
                                          "\x0B"
                                          "healthcheck"
                                          "\x11";
    struct spop_hello h;
    ck_assert_int_eq(spop_hello_decode((const uint8_t *)p, sizeof(p) - 1, &h), SPOP_OK);
    ck_assert(h.cap_pipelining && h.cap_async && h.cap_fragmentation);
    ck_assert(h.healthcheck);
}
END_TEST

/* --- NOTIFY errors ------------------------------------------------------------------ */

START_TEST(notify_malformed)
{
    struct spop_msg msgs[2];
    size_t n;
    static const struct {
        const char *p;
        size_t len;
        int status;
    } cases[] = {
        {BV("\x05"
            "check"),
         SPOP_ERR_INVALID}, /* no arg count */
        {BV("\x05"
            "check"
            "\x01"),
         SPOP_ERR_INVALID}, /* 1 arg announced, 0 sent */
        {BV("\x05"
            "check"
            "\x01\x02"
            "ip"
            "\x06\x7F"),
         SPOP_ERR_INVALID}, /* short IPv4 */
        {BV("\x09"
            "check"),
         SPOP_ERR_INVALID}, /* name too long */
        {BV("\x05"
            "check"
            "\x21"),
         SPOP_ERR_RES}, /* 33 args > limit */
        {BV("\x01"
            "a"
            "\x00"
            "\x01"
            "b"
            "\x00"
            "\x01"
            "c"
            "\x00"),
         SPOP_ERR_RES},    /* 3 > max 2 */
        {BV(""), SPOP_OK}, /* no messages at all */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(spop_notify_decode((const uint8_t *)cases[i].p, cases[i].len, msgs, 2, &n) ==
                          cases[i].status,
                      "case %zu", i);
}
END_TEST

START_TEST(notify_many_messages)
{
    uint8_t buf[1024];
    struct spop_writer w;
    spop_writer_init(&w, buf, sizeof(buf));
    for (int m = 0; m < SPOP_MAX_MSGS; m++) {
        spop_notify_put_msg(&w, m % 2 ? "odd" : "even", 1);
        struct spop_data v = spop_data_i64(-m);
        spop_put_kv(&w, "n", &v);
    }
    struct spop_msg msgs[SPOP_MAX_MSGS];
    size_t n;
    ck_assert_int_eq(spop_notify_decode(buf, w.len, msgs, SPOP_MAX_MSGS, &n), SPOP_OK);
    ck_assert_uint_eq(n, SPOP_MAX_MSGS);
    for (int m = 0; m < SPOP_MAX_MSGS; m++)
        ck_assert_int_eq(msgs[m].args[0].value.u.i64, -m);
}
END_TEST

START_TEST(ack_decode_malformed)
{
    struct spop_action acts[2];
    size_t n;
    static const struct {
        const char *p;
        size_t len;
    } cases[] = {
        {BV("\x01\x03")}, /* cut after nb-args */
        {BV("\x01\x03\x02\x01"
            "a")}, /* set-var without value */
        {BV("\x03\x02\x02\x01"
            "a")}, /* unknown action type */
        {BV("\x01\x02\x02\x01"
            "a\x00")}, /* set-var with 2 args */
        {BV("\x02\x02\x02\x05"
            "a")}, /* name longer than payload */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        ck_assert_msg(spop_ack_decode((const uint8_t *)cases[i].p, cases[i].len, acts, 2, &n) ==
                          SPOP_ERR_INVALID,
                      "case %zu", i);
}
END_TEST

Suite *spop_suite(void)
{
    Suite *s = suite_create("spop");
    TCase *tc = tcase_create("codec");
    tcase_add_loop_test(tc, varint_vectors, 0, sizeof(varints) / sizeof(varints[0]));
    tcase_add_test(tc, varint_lengths_at_boundaries);
    tcase_add_test(tc, varint_round_trip_many);
    tcase_add_test(tc, varint_refuses_truncated_and_overflowing);
    tcase_add_loop_test(tc, data_vectors_decode_and_reencode, 0,
                        sizeof(data_vectors) / sizeof(data_vectors[0]));
    tcase_add_test(tc, data_values);
    tcase_add_test(tc, data_refuses_malformed);
    tcase_add_test(tc, data_refuses_out_of_range_integers);
    tcase_add_test(tc, data_round_trip_every_type);
    tcase_add_test(tc, writer_overflow_latches);
    tcase_add_test(tc, frame_parse_hello);
    tcase_add_test(tc, frame_encode_agent_hello);
    tcase_add_test(tc, frame_parse_notify);
    tcase_add_test(tc, frame_encode_notify_matches_vector);
    tcase_add_test(tc, frame_encode_ack_matches_vector);
    tcase_add_test(tc, ack_every_scope);
    tcase_add_test(tc, frame_disconnect_round_trip);
    tcase_add_test(tc, status_strings_cover_spec);
    tcase_add_test(tc, frame_incomplete_until_whole);
    tcase_add_test(tc, frame_too_big_from_prefix_alone);
    tcase_add_test(tc, frame_malformed_header);
    tcase_add_test(tc, frame_two_in_one_buffer);
    tcase_add_test(tc, frame_end_enforces_max_size);
    tcase_add_loop_test(tc, hello_decode_cases, 0, sizeof(hello_cases) / sizeof(hello_cases[0]));
    tcase_add_test(tc, hello_healthcheck_and_caps);
    tcase_add_test(tc, notify_malformed);
    tcase_add_test(tc, notify_many_messages);
    tcase_add_test(tc, ack_decode_malformed);
    suite_add_tcase(s, tc);
    return s;
}
