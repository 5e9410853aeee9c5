/*
 * Password-hash verification off the event loops. crypt(3) on a bcrypt or
 * yescrypt hash takes tens of milliseconds by design; a worker loop must
 * never stall that long, so checks run on a small thread pool and their
 * results come back to the submitting loop through an ev_async "inbox".
 */
#ifndef GW_CRYPT_POOL_H
#define GW_CRYPT_POOL_H

#include <ev.h>
#include <stdbool.h>
#include <stddef.h>

struct crypt_pool;
struct crypt_inbox;

/* Called on the inbox's loop with the result. */
typedef void (*crypt_done_fn)(void *arg, bool ok);

/* Starts `threads` verifier threads; at most `max_queue` checks wait. */
struct crypt_pool *crypt_pool_start(unsigned threads, unsigned max_queue);
/* Stops the threads; every inbox must have been freed first. */
void crypt_pool_stop(struct crypt_pool *pool);

/* One per event loop that submits checks; call from that loop's thread. */
struct crypt_inbox *crypt_inbox_new(struct ev_loop *loop);
/* Waits for this inbox's outstanding checks (their callbacks still run),
 * then frees it. */
void crypt_inbox_free(struct crypt_inbox *in);

/* Queues a check of password against hash (both copied). Returns false when
 * the queue is full or the arguments are too long: the caller refuses. */
bool crypt_submit(struct crypt_pool *pool, struct crypt_inbox *in, const char *password,
                  size_t password_len, const char *hash, crypt_done_fn done, void *arg);

/* Checks waiting for a thread now (any thread; takes the pool's lock). */
unsigned crypt_pool_queued(struct crypt_pool *pool);

#endif
