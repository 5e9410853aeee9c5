/*
 * Thread pool for crypt(3) verifications (see crypt_pool.h).
 *
 * Jobs wait in one FIFO guarded by the pool's mutex; a finished job moves to
 * its inbox's list under the inbox's mutex and the inbox's ev_async wakes the
 * loop, which runs the callbacks. Passwords are wiped from job memory as soon
 * as the check is done.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "basic_auth.h"
#include "crypt_pool.h"
#include "log.h"
#include "policy.h"

#define HASH_MAX 256

struct crypt_job {
    struct crypt_job *next;
    struct crypt_inbox *inbox;
    crypt_done_fn done;
    void *arg;
    bool ok;
    size_t password_len;
    char password[BASIC_AUTH_MAX_DECODED + 1];
    char hash[HASH_MAX];
};

struct crypt_inbox {
    struct ev_loop *loop;
    ev_async wake;
    pthread_mutex_t lock;
    pthread_cond_t idle;    /* signalled when outstanding drops to 0 */
    struct crypt_job *done; /* (locked) finished, callbacks not yet run */
    unsigned outstanding;   /* (locked) submitted, callback not yet run */
};

struct crypt_pool {
    pthread_mutex_t lock;
    pthread_cond_t work;
    struct crypt_job *head, *tail; /* (locked) */
    unsigned queued;               /* (locked) */
    unsigned max_queue;
    bool stop; /* (locked) */
    unsigned nthreads;
    pthread_t *threads;
};

static void *pool_main(void *arg)
{
    struct crypt_pool *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stop)
            pthread_cond_wait(&p->work, &p->lock);
        if (!p->head) {
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        struct crypt_job *j = p->head;
        p->head = j->next;
        if (!p->head) p->tail = NULL;
        p->queued--;
        pthread_mutex_unlock(&p->lock);

        j->ok = policy_crypt_check(j->password, j->password_len, j->hash);
        explicit_bzero(j->password, sizeof(j->password));

        struct crypt_inbox *in = j->inbox;
        pthread_mutex_lock(&in->lock);
        j->next = in->done;
        in->done = j;
        pthread_mutex_unlock(&in->lock);
        ev_async_send(in->loop, &in->wake);
    }
}

struct crypt_pool *crypt_pool_start(unsigned threads, unsigned max_queue)
{
    struct crypt_pool *p = calloc(1, sizeof(*p));
    if (!p) return NULL;
    p->threads = calloc(threads, sizeof(*p->threads));
    p->max_queue = max_queue;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work, NULL);
    for (; p->threads && p->nthreads < threads; p->nthreads++) {
        if (pthread_create(&p->threads[p->nthreads], NULL, pool_main, p) != 0) break;
    }
    if (p->nthreads == 0) {
        log_error("crypt pool: cannot start threads");
        crypt_pool_stop(p);
        return NULL;
    }
    return p;
}

void crypt_pool_stop(struct crypt_pool *p)
{
    if (!p) return;
    pthread_mutex_lock(&p->lock);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->nthreads; i++)
        pthread_join(p->threads[i], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->lock);
    pthread_cond_destroy(&p->work);
    free(p);
}

/* Runs the callbacks of finished jobs, on the inbox's loop. */
static void inbox_drain(struct crypt_inbox *in)
{
    pthread_mutex_lock(&in->lock);
    struct crypt_job *j = in->done;
    in->done = NULL;
    pthread_mutex_unlock(&in->lock);
    while (j) {
        struct crypt_job *next = j->next;
        j->done(j->arg, j->ok);
        free(j);
        pthread_mutex_lock(&in->lock);
        if (--in->outstanding == 0) pthread_cond_broadcast(&in->idle);
        pthread_mutex_unlock(&in->lock);
        j = next;
    }
}

static void inbox_wake_cb(struct ev_loop *loop, ev_async *a, int revents)
{
    (void)loop;
    (void)revents;
    inbox_drain(a->data);
}

struct crypt_inbox *crypt_inbox_new(struct ev_loop *loop)
{
    struct crypt_inbox *in = calloc(1, sizeof(*in));
    if (!in) return NULL;
    in->loop = loop;
    pthread_mutex_init(&in->lock, NULL);
    pthread_cond_init(&in->idle, NULL);
    ev_async_init(&in->wake, inbox_wake_cb);
    in->wake.data = in;
    ev_async_start(loop, &in->wake);
    ev_unref(loop); /* the inbox alone does not keep the loop running */
    return in;
}

void crypt_inbox_free(struct crypt_inbox *in)
{
    if (!in) return;
    for (;;) {
        pthread_mutex_lock(&in->lock);
        while (in->outstanding && !in->done)
            pthread_cond_wait(&in->idle, &in->lock);
        bool more = in->done != NULL;
        bool idle = in->outstanding == 0;
        pthread_mutex_unlock(&in->lock);
        if (more)
            inbox_drain(in);
        else if (idle)
            break;
    }
    ev_ref(in->loop);
    ev_async_stop(in->loop, &in->wake);
    pthread_mutex_destroy(&in->lock);
    pthread_cond_destroy(&in->idle);
    free(in);
}

bool crypt_submit(struct crypt_pool *p, struct crypt_inbox *in, const char *password,
                  size_t password_len, const char *hash, crypt_done_fn done, void *arg)
{
    size_t hlen = strlen(hash);
    if (password_len >= sizeof(((struct crypt_job *)0)->password) || hlen >= HASH_MAX) return false;
    struct crypt_job *j = malloc(sizeof(*j));
    if (!j) return false;
    j->next = NULL;
    j->inbox = in;
    j->done = done;
    j->arg = arg;
    j->password_len = password_len;
    memcpy(j->password, password, password_len);
    memcpy(j->hash, hash, hlen + 1);

    /* Count it before it can finish, so outstanding never goes negative. */
    pthread_mutex_lock(&in->lock);
    in->outstanding++;
    pthread_mutex_unlock(&in->lock);

    pthread_mutex_lock(&p->lock);
    if (p->queued >= p->max_queue || p->stop) {
        pthread_mutex_unlock(&p->lock);
        pthread_mutex_lock(&in->lock);
        in->outstanding--;
        pthread_mutex_unlock(&in->lock);
        explicit_bzero(j->password, sizeof(j->password));
        free(j);
        return false;
    }
    if (p->tail)
        p->tail->next = j;
    else
        p->head = j;
    p->tail = j;
    p->queued++;
    pthread_cond_signal(&p->work);
    pthread_mutex_unlock(&p->lock);
    return true;
}

unsigned crypt_pool_queued(struct crypt_pool *p)
{
    pthread_mutex_lock(&p->lock);
    unsigned n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}
