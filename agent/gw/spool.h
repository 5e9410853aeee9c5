/*
 * The billing spool: an append-only file of records (JSON strings framed as
 * MessagePack str) with a committed offset in its header. Every billable
 * record is written here before it goes to Redis, and the offset moves past
 * it only once Redis has acknowledged it: a record survives Redis outages
 * and agent restarts or kills (write(2) reaches the page cache at once;
 * fsync is batched for power loss).
 *
 * Every spool has a random id and counts the records ever committed (its
 * sequence). The pusher stores "sequence after this batch" in Redis in the
 * same transaction as the batch (billing.c), so a batch whose answer was lost
 * (agent killed, connection dropped) is recognized after a reconnect and
 * skipped instead of pushed twice.
 *
 *   header (32 bytes): "GWSPOOL1" | committed offset | spool id | committed sequence
 *                      (three u64, big-endian)
 *   records:           msgpack str (d9/da/db + length) each, back to back
 *
 * Single-threaded: one owner (the billing thread).
 */
#ifndef GW_SPOOL_H
#define GW_SPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SPOOL_HEADER_LEN 32

struct spool;

/* Opens or creates the spool at path (mode 0600). A torn last record (a
 * crash mid-write) is cut off and logged. NULL with err on failure. */
struct spool *spool_open(const char *path, uint64_t max_bytes, char *err, size_t errlen);
void spool_close(struct spool *sp);

/* Appends one record. Returns 0, or -1 when the spool is full (max_bytes) or
 * the write failed (logged): the caller must stop taking records. */
int spool_append(struct spool *sp, const char *rec, size_t len);
/* fsyncs when something was appended since the last sync. */
void spool_sync(struct spool *sp);

/* Up to max records from the first one not yet taken, copied into buf
 * (records[i] point into it). Returns how many. Taking does not commit. */
size_t spool_take(struct spool *sp, size_t max, char *buf, size_t cap, const char **records,
                  size_t *lens);
/* Everything taken is acknowledged: the sequence advances by that many
 * records. When nothing is left, the file is emptied. Returns -1 when the
 * header write failed (logged). */
int spool_commit(struct spool *sp);
/* Forget what was taken but not committed: it will be taken again. */
void spool_rewind(struct spool *sp);
/* Commits the first n pending records without reading them (they are known
 * to be in Redis already). Rewinds first. Returns how many were skipped:
 * fewer than n when fewer are pending. */
uint64_t spool_skip(struct spool *sp, uint64_t n);

uint64_t spool_id(const struct spool *sp);
uint64_t spool_sequence(const struct spool *sp); /* records committed, ever */
uint64_t spool_taken(const struct spool *sp);    /* records taken, not committed */

uint64_t spool_pending_bytes(const struct spool *sp); /* appended, not committed */
uint64_t spool_max_bytes(const struct spool *sp);

#endif
