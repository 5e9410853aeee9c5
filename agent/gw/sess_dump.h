/*
 * A parser for HAProxy's "show info; show sess all" CLI output, the agent's
 * only view of the bytes of requests and tunnels while they flow.
 *
 * Why this dump: HAProxy 2.6 updates its byte counters (stick tables, %U/%B,
 * the stats page) only when a stream's task runs, and a CONNECT tunnel's task
 * sleeps while data is forwarded (with `option contstats` it wakes every 5 s).
 * "show sess all" prints, for every stream, each channel's `total`: the bytes
 * received so far, updated by every read. One dump costs HAProxy about 8 us
 * per stream (measured on 2.6.12: 32 ms for 4,000 tunnels).
 *
 * Pure: lines in, one callback per stream out. The lines it reads (one
 * stream's block; the rest of the block is ignored):
 *
 *   Pid: 1234                                              (show info)
 *   0x55d0c3a1b030: [04/Dec/2026:14:19:49.600348] id=45 proto=tcpv4 source=...
 *     req=0x55d0c3a1b050 (f=0x8848202 an=0x0 pipe=0 tofwd=-1 total=245)
 *     res=0x55d0c3a1b0b0 (f=0x88078202 an=0x0 pipe=0 tofwd=-1 total=9807678)
 *
 * A stream is reported when its res line is read. Malformed lines are
 * counted and skipped, never guessed at.
 */
#ifndef GW_SESS_DUMP_H
#define GW_SESS_DUMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sess_stream {
    uint64_t ptr;       /* the stream's address: what "shutdown session" takes */
    uint64_t id;        /* HAProxy's stream counter in its process (log's %rt) */
    uint64_t req_bytes; /* received from the client so far (req total) */
    uint64_t res_bytes; /* received from the server so far (res total) */
};

typedef void (*sess_stream_fn)(void *arg, const struct sess_stream *s);

struct sess_dump {
    uint64_t pid;       /* from "Pid:" (show info); 0 until seen */
    uint64_t streams;   /* streams reported */
    uint64_t malformed; /* stream lines that did not parse */
    /* private */
    struct sess_stream cur;
    bool in_stream, have_req;
    sess_stream_fn on_stream;
    void *arg;
};

void sess_dump_init(struct sess_dump *d, sess_stream_fn on_stream, void *arg);
/* One line, without its newline. */
void sess_dump_line(struct sess_dump *d, const char *line, size_t len);

#endif
