/*
 * The billing record of one gateway request, as the agent pushes it on the
 * Redis list traffic:logs (the reference's JSON object plus `request_id`),
 * and the small strict JSON reader and writer it needs.
 *
 * The reader accepts one JSON object whose members are scalars (string,
 * number, true, false, null); it refuses nesting, duplicate keys, trailing
 * bytes, raw control characters and invalid UTF-8 in strings, lone UTF-16
 * surrogates in \u escapes, and every other deviation from RFC 8259. Input is
 * hostile by assumption: every length is checked, nothing is allocated.
 */
#ifndef GW_TRAFFIC_RECORD_H
#define GW_TRAFFIC_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "json.h"

/* Longest record accepted, in bytes of JSON; a longer one is refused. */
#define TRAFFIC_RECORD_MAX_LEN 65536
/* Longest request_id, in bytes (it is a btree key: keep it short). */
#define TRAFFIC_REQUEST_ID_MAX 256
/* Latest timestamp accepted: 9999-12-31T23:59:59.999Z, in ms since the epoch. */
#define TRAFFIC_TIMESTAMP_MAX INT64_C(253402300799999)

/* Width of each text column in the reference schema, in characters (VARCHAR(n)). */
#define TRAFFIC_W_USERNAME   255
#define TRAFFIC_W_HOST       255
#define TRAFFIC_W_METHOD     10
#define TRAFFIC_W_SLUG       255
#define TRAFFIC_W_COUNTRY    10
#define TRAFFIC_W_SESSION    100
#define TRAFFIC_W_CLIENT_IP  45
#define TRAFFIC_UTF8_CAP(ch) ((ch)*4 + 1) /* bytes for ch characters and a NUL */

/*
 * One validated record: every string is valid UTF-8, NUL-terminated, holds no
 * NUL, and fits its traffic_logs column. Billing fields (username, the byte
 * counts, timestamp, request_id) are exactly what the JSON said, or the record
 * is refused. Descriptive fields never cost a bill: a value wider than its
 * column is cut at a character boundary (flagged in `truncated`), and an
 * escaped U+0000 in one becomes U+FFFD.
 */
struct traffic_record {
    char username[TRAFFIC_UTF8_CAP(TRAFFIC_W_USERNAME)]; /* non-empty */
    char target_host[TRAFFIC_UTF8_CAP(TRAFFIC_W_HOST)];
    char target_method[TRAFFIC_UTF8_CAP(TRAFFIC_W_METHOD)];
    char proxy_slug[TRAFFIC_UTF8_CAP(TRAFFIC_W_SLUG)];
    char country[TRAFFIC_UTF8_CAP(TRAFFIC_W_COUNTRY)];
    char session_id[TRAFFIC_UTF8_CAP(TRAFFIC_W_SESSION)];
    char client_ip[TRAFFIC_UTF8_CAP(TRAFFIC_W_CLIENT_IP)];
    char request_id[TRAFFIC_REQUEST_ID_MAX + 1]; /* 1..TRAFFIC_REQUEST_ID_MAX bytes */
    int64_t request_bytes;                       /* bytes, >= 0 */
    int64_t response_bytes; /* bytes, >= 0; request_bytes + response_bytes fits int64 */
    int64_t timestamp_ms;   /* ms since the epoch, 0..TRAFFIC_TIMESTAMP_MAX */
    int32_t duration;       /* the session's sessTime, minutes */
    int32_t status_code;    /* HTTP status */
    unsigned truncated;     /* bit (1 << TRAFFIC_F_x) per descriptive field cut to width */
};

/* The record's members; the bit numbers of traffic_record.truncated. */
enum traffic_field {
    TRAFFIC_F_USERNAME,
    TRAFFIC_F_REQUEST_BYTES,
    TRAFFIC_F_RESPONSE_BYTES,
    TRAFFIC_F_TARGET_HOST,
    TRAFFIC_F_TARGET_METHOD,
    TRAFFIC_F_PROXY_SLUG,
    TRAFFIC_F_COUNTRY,
    TRAFFIC_F_SESSION_ID,
    TRAFFIC_F_DURATION,
    TRAFFIC_F_STATUS_CODE,
    TRAFFIC_F_CLIENT_IP,
    TRAFFIC_F_TIMESTAMP,
    TRAFFIC_F_REQUEST_ID,
    TRAFFIC_F_COUNT
};

/* The member's JSON name ("username", ...). */
const char *traffic_field_name(enum traffic_field f);

/*
 * Parses and validates one record (`len` bytes at `json`, not NUL-terminated).
 * Every member of the reference's object and request_id is required; other
 * members are ignored when their value is a scalar (room for the producer to
 * add fields). Returns 0 and fills *out, or -1 with a one-line reason in
 * err (always NUL-terminated when errlen > 0); *out is then unspecified.
 */
int traffic_record_parse(const char *json, size_t len, struct traffic_record *out, char *err,
                         size_t errlen);

/* --- the JSON layer underneath, usable on its own ------------------------------- */

enum json_kind {
    JSON_STRING,
    JSON_INT,       /* an integer within int64: `i` */
    JSON_INT_RANGE, /* an integer literal outside int64 */
    JSON_REAL,      /* a number with a fraction or an exponent */
    JSON_TRUE,
    JSON_FALSE,
    JSON_NULL
};

struct json_value {
    enum json_kind kind;
    const char *str; /* JSON_STRING: decoded UTF-8, NUL-terminated, may contain NUL */
    size_t len;      /* JSON_STRING: bytes, without the terminator */
    int64_t i;       /* JSON_INT */
};

/* Called once per member, in input order; key is decoded and NUL-terminated
 * (it may contain NUL: klen is the truth). Returns 0 to go on, or -1 to stop
 * the scan, having written the reason to err. Pointers stay valid until
 * traffic_json_scan returns. */
typedef int (*json_member_fn)(void *ctx, const char *key, size_t klen, const struct json_value *v,
                              char *err, size_t errlen);

/*
 * Scans one JSON object of scalar members. Decoded keys and strings are
 * written to scratch, which must hold at least len + 1 bytes (decoding never
 * grows a string). Does not look for duplicate keys: that is the callback's
 * business. Returns 0, or -1 with the reason (and byte offset) in err.
 */
int traffic_json_scan(const char *in, size_t len, char *scratch, size_t scratch_cap,
                      json_member_fn fn, void *ctx, char *err, size_t errlen);

/*
 * Writes s[0..len) as a JSON string, quotes included, into out (capacity
 * cap), by the one rule of agent/common/json.h. Returns the bytes written (no
 * NUL added), or 0 when cap is smaller than traffic_json_quote_max(len).
 */
size_t traffic_json_quote(const char *s, size_t len, char *out, size_t cap);
#define traffic_json_quote_max(len) JSON_STRING_MAX(len)

/*
 * The dead-letter entry for a refused record:
 *   {"reason":"...","record":"<the record as a JSON string>"}
 * plus "record_base64" (the exact bytes) when the record is not valid UTF-8,
 * since a JSON string cannot carry those bytes. Returns a malloc'd buffer of
 * *outlen bytes (NUL-terminated too), or NULL when out of memory.
 */
char *traffic_dead_letter(const char *reason, const char *rec, size_t len, size_t *outlen);

#endif
