/*
 * Billing records: the line HAProxy logs when a request or tunnel ends
 * (haproxy/gateway.cfg, log-format), and the reference's JSON object the
 * agent pushes to the Redis list traffic:logs.
 *
 * The line is "gw3" followed by space-separated fields; every string field is
 * base64 (so no byte of it can break the parsing) or "-" when absent:
 *
 *   gw3 <request-id> <verdict> <user> <slug> <country> <session> <duration>
 *       <method> <target> <status> <bytes-in> <bytes-out> <client-ip> <ts-ms>
 *       <request-header-lines> <response-header-lines> <stream> <termination>
 *
 * stream is "<HAProxy pid>.<stream counter>" (%pid.%rt), by which the live
 * registry (live.h) knows the stream; termination is HAProxy's %tsc (four
 * characters: "----" for a normal end, "K..." for a stream shut down from
 * the CLI, as the live meter does when a balance runs out).
 * A request the gateway did not forward (refused, or no verdict) has a
 * single "-" in place of <verdict> .. <target>: it is never billed.
 * ("gw2", from configurations before this one, lacks the last two fields;
 * "gw1", from those before the header counts, the last four.)
 * verdict is the agent's txn.gw.status (only 200 is billed). bytes-in is
 * HAProxy's %U, bytes-out its %B: the bytes received from the client and
 * from the upstream, where HAProxy counts a message head as it holds it
 * (HTX), not as it was on the wire. With the header counts the parser turns
 * them back into wire bytes (see wire_bytes in billing_record.c), so
 * request_bytes is everything the client sent (head, body, and for a CONNECT
 * tunnel all it sent through it) and response_bytes everything it received
 * (for a tunnel: the "200 Connection established" head, then the payload).
 * Exceptions, from HAProxy's counting: chunked bodies count without their
 * chunk framing, and a head with unusual spacing ("Name:  value") counts as
 * if it had the usual single space. ts-ms is the accept time in milliseconds
 * since the epoch.
 */
#ifndef GW_BILLING_RECORD_H
#define GW_BILLING_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BILLING_LINE_MAX 4096 /* longer lines are refused (HAProxy's ring maxlen) */

struct billing_str {
    const char *ptr; /* decoded bytes, in the caller's buffer; NULL: absent */
    size_t len;
};

struct billing_record {
    struct billing_str request_id;
    int64_t verdict; /* 0 when absent */
    struct billing_str user, slug, country, session, method, target, client_ip;
    int64_t duration_min;
    int64_t status;
    uint64_t bytes_in;  /* request_bytes */
    uint64_t bytes_out; /* response_bytes */
    int64_t timestamp_ms;
    struct billing_str stream;      /* gw3 (forwarded or not): "<pid>.<rt>", else absent */
    struct billing_str termination; /* gw3: HAProxy's %tsc */
    const char *cut_reason; /* set by the caller: JSON "cut_reason" when the gateway cut it */
};

/* Parses one line; decoded strings go to buf (cap >= len is always enough).
 * Returns 0, or -1 with *err naming the bad field. */
int billing_record_parse(const char *line, size_t len, struct billing_record *r, char *buf,
                         size_t cap, const char **err);

/* True when the record is billable: the agent allowed it (verdict 200). */
bool billing_record_billable(const struct billing_record *r);

/* Writes the reference's JSON object (plus request_id, and cut_reason when
 * the gateway cut the stream: "balance") into out. Any byte in
 * any string yields valid JSON, escaped by the one rule of agent/common/json.h
 * (control characters escaped, a byte that is not UTF-8 written as \ufffd).
 * Returns the length, 0 if cap is too small (6 * BILLING_LINE_MAX + 512
 * always suffices). */
size_t billing_record_json(const struct billing_record *r, char *out, size_t cap);

/* The request_id of a JSON object written by billing_record_json, unescaped
 * into out. Returns its length, 0 when there is none or it does not fit. */
size_t billing_json_request_id(const char *json, size_t len, char *out, size_t cap);

#endif
