/*
 * The billing dedup window: the request ids of the last N billing records,
 * in memory (a hash set) and on disk (so it survives a SIGKILL), so a record
 * that reaches the agent twice is billed once.
 *
 * Why records come twice: HAProxy's log ring has no acknowledgements, so the
 * records in flight on its TCP stream when the agent dies are gone from the
 * stream. After a restart the agent reads the ring's whole retained content
 * from HAProxy's CLI (billing_replay.c) and takes what it has not seen; the
 * overlap with the TCP stream is what this window recognizes. The window
 * must hold at least as many records as HAProxy's ring (GW_BILLING_RING_BYTES
 * / ~150 bytes per record).
 *
 * File: header "GWDEDUP1" | capacity (u64, big-endian), then `capacity`
 * slots of 24 bytes: sequence (u64, 0 = empty) | 16-byte hash of the id.
 * Slots are written in a circle; the highest sequence is the newest. The
 * slots are a shared mapping of the file: an id is in the page cache, and
 * survives a SIGKILL, as soon as it is added; its pages are the kernel's to
 * write back and to reclaim.
 *
 * Single-threaded: one owner (the billing thread).
 */
#ifndef GW_DEDUP_H
#define GW_DEDUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct dedup;

/* Opens or creates the window file for `capacity` ids (a file written with
 * another capacity keeps its newest ids). NULL with err on failure. */
struct dedup *dedup_open(const char *path, uint64_t capacity, char *err, size_t errlen);
/* Unmaps and closes. NULL is fine. */
void dedup_close(struct dedup *d);

/* true when id is in the window. */
bool dedup_seen(const struct dedup *d, const char *id, size_t len);
/* Adds id (evicting the oldest when full); nothing when it is there already. */
void dedup_add(struct dedup *d, const char *id, size_t len);

uint64_t dedup_count(const struct dedup *d); /* ids in the window */

#endif
