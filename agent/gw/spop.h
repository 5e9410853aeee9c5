/*
 * SPOP (HAProxy's Stream Processing Offload Protocol, version 2.0) codec.
 *
 * Pure functions over byte buffers: no I/O, no allocation, no global state.
 * Decoders read from a bounded cursor and never look past its end; strings
 * they return point into the caller's buffer and are not NUL-terminated.
 * Encoders append to a bounded writer and latch an overflow flag instead of
 * failing at every call, so a caller checks once at the end.
 *
 * Errors are reported as the SPOP status codes of doc/SPOE.txt section 3.5,
 * ready to be sent in an AGENT-DISCONNECT frame.
 */
#ifndef GW_SPOP_H
#define GW_SPOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Frame types (SPOE.txt 3.2.2). */
enum spop_frame_type {
    SPOP_FRAME_UNSET = 0,
    SPOP_FRAME_HAPROXY_HELLO = 1,
    SPOP_FRAME_HAPROXY_DISCONNECT = 2,
    SPOP_FRAME_NOTIFY = 3,
    SPOP_FRAME_AGENT_HELLO = 101,
    SPOP_FRAME_AGENT_DISCONNECT = 102,
    SPOP_FRAME_ACK = 103,
};

#define SPOP_FLAG_FIN   0x00000001u
#define SPOP_FLAG_ABORT 0x00000002u

/* Status codes (SPOE.txt 3.5). SPOP_OK doubles as "no error". */
enum spop_status {
    SPOP_OK = 0,
    SPOP_ERR_IO = 1,
    SPOP_ERR_TIMEOUT = 2,
    SPOP_ERR_TOO_BIG = 3,
    SPOP_ERR_INVALID = 4,
    SPOP_ERR_NO_VSN = 5,
    SPOP_ERR_NO_FRAME_SIZE = 6,
    SPOP_ERR_NO_CAP = 7,
    SPOP_ERR_BAD_VSN = 8,
    SPOP_ERR_BAD_FRAME_SIZE = 9,
    SPOP_ERR_FRAG_NOT_SUPPORTED = 10,
    SPOP_ERR_INTERLACED_FRAMES = 11,
    SPOP_ERR_FRAMEID_NOTFOUND = 12,
    SPOP_ERR_RES = 13,
    SPOP_ERR_UNKNOWN = 99,
};

/* Returned by spop_frame_parse when the buffer does not hold a whole frame. */
#define SPOP_INCOMPLETE (-1)

/* Typed data (SPOE.txt 3.1). The type is the low nibble of the type byte. */
enum spop_type {
    SPOP_T_NULL = 0,
    SPOP_T_BOOL = 1,
    SPOP_T_INT32 = 2,
    SPOP_T_UINT32 = 3,
    SPOP_T_INT64 = 4,
    SPOP_T_UINT64 = 5,
    SPOP_T_IPV4 = 6,
    SPOP_T_IPV6 = 7,
    SPOP_T_STRING = 8,
    SPOP_T_BINARY = 9,
};

/* Variable scopes of set-var / unset-var actions (SPOE.txt 3.4). */
enum spop_scope {
    SPOP_SCOPE_PROC = 0,
    SPOP_SCOPE_SESS = 1,
    SPOP_SCOPE_TXN = 2,
    SPOP_SCOPE_REQ = 3,
    SPOP_SCOPE_RES = 4,
};

enum spop_action_type {
    SPOP_ACT_SET_VAR = 1,
    SPOP_ACT_UNSET_VAR = 2,
};

/* Smallest max-frame-size a peer may announce (SPOE.txt 3.2). */
#define SPOP_MIN_FRAME_SIZE 256
/* HAProxy's default: tune.bufsize (16384) minus the 4-byte length prefix. */
#define SPOP_DEFAULT_FRAME_SIZE 16380
/* Frame header: 4-byte length, type, 4-byte flags, two varints (<= 10 each). */
#define SPOP_MAX_HEADER 29
/* Decoder limits: bigger NOTIFY frames are refused with SPOP_ERR_RES. */
#define SPOP_MAX_MSGS    16
#define SPOP_MAX_ARGS    32
#define SPOP_MAX_ACTIONS 64

/* A byte string inside a buffer; not NUL-terminated. */
struct spop_str {
    const char *ptr;
    size_t len;
};

struct spop_data {
    enum spop_type type;
    union {
        bool b;
        int32_t i32;
        uint32_t u32;
        int64_t i64;
        uint64_t u64;
        uint8_t ipv4[4];     /* network byte order */
        uint8_t ipv6[16];    /* network byte order */
        struct spop_str str; /* STRING and BINARY */
    } u;
};

/* Read cursor over [p, end). */
struct spop_reader {
    const uint8_t *p;
    const uint8_t *end;
};

/* Append-only writer into buf[0..cap). Once `overflow` is set, every further
 * write is dropped and `len` stops moving. */
struct spop_writer {
    uint8_t *buf;
    size_t len;
    size_t cap;
    bool overflow;
};

/* One decoded frame; `payload` points into the parsed buffer. */
struct spop_frame {
    uint8_t type;
    uint32_t flags;
    uint64_t stream_id;
    uint64_t frame_id;
    const uint8_t *payload;
    size_t payload_len;
};

struct spop_kv {
    struct spop_str name;
    struct spop_data value;
};

/* One message of a NOTIFY frame. */
struct spop_msg {
    struct spop_str name;
    unsigned nargs;
    struct spop_kv args[SPOP_MAX_ARGS];
};

/* One action of an ACK frame (decoded by test clients and tools). */
struct spop_action {
    uint8_t type;  /* enum spop_action_type */
    uint8_t scope; /* enum spop_scope */
    struct spop_str name;
    struct spop_data value; /* SPOP_T_NULL for unset-var */
};

/* What a HAPROXY-HELLO announced. */
struct spop_hello {
    bool has_versions;
    bool has_max_frame_size;
    bool has_capabilities;
    bool version_2_supported; /* a "2.x" entry in supported-versions */
    uint32_t max_frame_size;  /* bytes, excluding the 4-byte length prefix */
    bool cap_pipelining;
    bool cap_async;
    bool cap_fragmentation;
    bool healthcheck;
    struct spop_str engine_id;
};

/* Status and message of a DISCONNECT frame. */
struct spop_disconnect {
    uint32_t status;
    struct spop_str message;
};

/* --- primitives (spop_data.c) --- */

/* Varints use HAProxy's "peers" encoding. Decode returns false on truncation
 * or on a value that does not fit 64 bits. */
bool spop_get_varint(struct spop_reader *r, uint64_t *out);
void spop_put_varint(struct spop_writer *w, uint64_t v);
bool spop_get_str(struct spop_reader *r, struct spop_str *out);
void spop_put_str(struct spop_writer *w, const char *s, size_t len);
bool spop_get_data(struct spop_reader *r, struct spop_data *out);
void spop_put_data(struct spop_writer *w, const struct spop_data *d);
void spop_put_bytes(struct spop_writer *w, const void *p, size_t len);

/* Convenience constructors for typed values. */
struct spop_data spop_data_str(const char *s, size_t len);
struct spop_data spop_data_cstr(const char *s);
struct spop_data spop_data_u32(uint32_t v);
struct spop_data spop_data_i64(int64_t v);
struct spop_data spop_data_bool(bool v);

/* Integer value of any integer type; false for other types or negatives. */
bool spop_data_as_u64(const struct spop_data *d, uint64_t *out);
bool spop_str_eq(struct spop_str s, const char *cstr);
void spop_writer_init(struct spop_writer *w, void *buf, size_t cap);

/* --- frames (spop_frame.c) --- */

/* Parses the frame at the start of buf[0..len). On success fills *f, sets
 * *consumed to the bytes used (length prefix included) and returns SPOP_OK.
 * Returns SPOP_INCOMPLETE when more bytes are needed, SPOP_ERR_TOO_BIG when
 * the announced length exceeds max_frame_size (checked from the prefix alone,
 * before any payload arrives) and SPOP_ERR_INVALID on a malformed header. */
int spop_frame_parse(const uint8_t *buf, size_t len, uint32_t max_frame_size, struct spop_frame *f,
                     size_t *consumed);

/* Starts a frame in w (FIN set unless flags say otherwise); returns the frame's
 * offset for spop_frame_end. */
size_t spop_frame_begin(struct spop_writer *w, uint8_t type, uint32_t flags, uint64_t stream_id,
                        uint64_t frame_id);
/* Patches the length prefix. Returns false (and sets overflow) when the frame
 * overflowed the writer or is larger than max_frame_size. */
bool spop_frame_end(struct spop_writer *w, size_t start, uint32_t max_frame_size);

/* --- HELLO and DISCONNECT (spop_hello.c) --- */

/* Decodes a HAPROXY-HELLO payload. Returns SPOP_OK, SPOP_ERR_INVALID for a
 * malformed KV-list, or the handshake error code (missing version, frame size
 * or capabilities; unsupported version; frame size below 256). */
int spop_hello_decode(const uint8_t *p, size_t len, struct spop_hello *h);
/* Encodes a whole AGENT-HELLO frame. */
bool spop_agent_hello_encode(struct spop_writer *w, uint32_t max_frame_size,
                             const char *capabilities);
/* Encodes a whole HAPROXY-HELLO frame (used by test clients). */
bool spop_haproxy_hello_encode(struct spop_writer *w, uint32_t max_frame_size,
                               const char *capabilities, bool healthcheck);
int spop_disconnect_decode(const uint8_t *p, size_t len, struct spop_disconnect *d);
/* Encodes a whole DISCONNECT frame of the given type (agent or haproxy). */
bool spop_disconnect_encode(struct spop_writer *w, uint8_t frame_type, uint32_t status,
                            const char *message);
/* The spec's text for a status code ("frame is too big", ...). */
const char *spop_status_str(uint32_t status);

/* --- NOTIFY (spop_notify.c) --- */

/* Decodes a NOTIFY payload into msgs[0..max). Returns SPOP_OK, SPOP_ERR_INVALID
 * for malformed input, SPOP_ERR_RES when it holds more than `max` messages or
 * a message has more than SPOP_MAX_ARGS arguments. */
int spop_notify_decode(const uint8_t *p, size_t len, struct spop_msg *msgs, size_t max,
                       size_t *nmsgs);
/* Appends one message header; follow with exactly `nargs` spop_put_kv calls. */
void spop_notify_put_msg(struct spop_writer *w, const char *name, uint8_t nargs);
void spop_put_kv(struct spop_writer *w, const char *name, const struct spop_data *v);

/* --- ACK (spop_ack.c) --- */

void spop_ack_set_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                      size_t name_len, const struct spop_data *v);
void spop_ack_unset_var(struct spop_writer *w, enum spop_scope scope, const char *name,
                        size_t name_len);
/* Decodes an ACK payload; same error contract as spop_notify_decode. */
int spop_ack_decode(const uint8_t *p, size_t len, struct spop_action *acts, size_t max,
                    size_t *nacts);

#endif
