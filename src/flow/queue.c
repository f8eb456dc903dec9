#include "sluice/queue.h"

#include "sluice/alloc.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <time.h>

#define DEFAULT_CAPACITY 1024
/* Longer timeouts are clamped to about 31 years, keeping time_t safe. */
#define MAX_TIMEOUT_MS 1000000000000ULL

struct sl_queue {
    pthread_mutex_t mu;
    pthread_cond_t not_empty; /* signalled when an item is added */
    pthread_cond_t not_full;  /* signalled when room is made */
    sl_queue_overflow overflow;
    void (*drop_fn)(void *item, void *ctx);
    void *drop_ctx;
    bool closed;
    uint64_t dropped;
    size_t capacity;
    size_t head; /* index of the oldest item */
    size_t len;
    void **items; /* ring of capacity slots */
};

static struct timespec deadline_after(uint64_t timeout_ms)
{
    if (timeout_ms > MAX_TIMEOUT_MS) {
        timeout_ms = MAX_TIMEOUT_MS;
    }
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += (time_t)(timeout_ms / 1000);
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

/* Wait on `cond` (lock held) while `q->len == len` and the queue is open,
 * for at most timeout_ms. The caller re-checks the state after: a waiter
 * that times out just as an item or room arrives still sees it. */
static void wait_while_len(sl_queue *q, pthread_cond_t *cond, size_t len,
                           uint64_t timeout_ms)
{
    if (timeout_ms == 0) {
        return;
    }
    struct timespec deadline = deadline_after(timeout_ms);
    while (q->len == len && !q->closed) {
        if (pthread_cond_timedwait(cond, &q->mu, &deadline) == ETIMEDOUT) {
            return;
        }
    }
}

static void *take_oldest(sl_queue *q)
{
    void *item = q->items[q->head];
    q->head = (q->head + 1) % q->capacity;
    q->len--;
    return item;
}

sl_status sl_queue_create(const sl_queue_opts *opts, sl_queue **out)
{
    static const sl_queue_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    if (out == NULL || (opts->overflow != SL_QUEUE_BLOCK &&
                        opts->overflow != SL_QUEUE_REJECT &&
                        opts->overflow != SL_QUEUE_DROP_OLDEST)) {
        return SL_INVALID;
    }
    sl_queue *q = sl_calloc(1, sizeof *q);
    if (q == NULL) {
        return SL_NOMEM;
    }
    q->capacity = opts->capacity != 0 ? opts->capacity : DEFAULT_CAPACITY;
    q->overflow = opts->overflow;
    q->drop_fn = opts->drop_fn;
    q->drop_ctx = opts->drop_ctx;
    q->items = sl_calloc(q->capacity, sizeof *q->items);
    if (q->items == NULL) {
        goto free_queue;
    }

    pthread_condattr_t attr;
    if (pthread_condattr_init(&attr) != 0) {
        goto free_items;
    }
    if (pthread_condattr_setclock(&attr, CLOCK_MONOTONIC) != 0 ||
        pthread_cond_init(&q->not_empty, &attr) != 0) {
        goto destroy_attr;
    }
    if (pthread_cond_init(&q->not_full, &attr) != 0) {
        goto destroy_not_empty;
    }
    if (pthread_mutex_init(&q->mu, NULL) != 0) {
        goto destroy_not_full;
    }
    pthread_condattr_destroy(&attr);
    *out = q;
    return SL_OK;

destroy_not_full:
    pthread_cond_destroy(&q->not_full);
destroy_not_empty:
    pthread_cond_destroy(&q->not_empty);
destroy_attr:
    pthread_condattr_destroy(&attr);
free_items:
    sl_free(q->items);
free_queue:
    sl_free(q);
    return SL_NOMEM;
}

sl_status sl_queue_push(sl_queue *q, void *item, uint64_t timeout_ms)
{
    if (q == NULL) {
        return SL_INVALID;
    }
    sl_status st = SL_OK;
    bool dropped = false;
    void *dropped_item = NULL;

    pthread_mutex_lock(&q->mu);
    if (q->len == q->capacity && !q->closed) {
        switch (q->overflow) {
        case SL_QUEUE_BLOCK:
            wait_while_len(q, &q->not_full, q->capacity, timeout_ms);
            break;
        case SL_QUEUE_REJECT:
            break;
        case SL_QUEUE_DROP_OLDEST:
            dropped_item = take_oldest(q);
            dropped = true;
            q->dropped++;
            break;
        }
    }
    if (q->closed) {
        st = SL_CLOSED;
    } else if (q->len == q->capacity) {
        st = SL_FULL;
    } else {
        q->items[(q->head + q->len) % q->capacity] = item;
        q->len++;
        pthread_cond_signal(&q->not_empty);
    }
    pthread_mutex_unlock(&q->mu);

    /* A DROP_OLDEST push cannot meet a closed queue after dropping (the
     * lock is held throughout), so a dropped item always made room. */
    if (dropped && q->drop_fn != NULL) {
        q->drop_fn(dropped_item, q->drop_ctx);
    }
    return st;
}

/* Take up to max items (lock held), after waiting for the first. Returns
 * how many; *closed tells an empty closed queue from a timeout. */
static size_t take_many(sl_queue *q, void **items, size_t max,
                        uint64_t timeout_ms, bool *closed)
{
    wait_while_len(q, &q->not_empty, 0, timeout_ms);
    size_t n = 0;
    while (n < max && q->len > 0) {
        items[n++] = take_oldest(q);
    }
    if (n == 1) {
        pthread_cond_signal(&q->not_full);
    } else if (n > 1) {
        pthread_cond_broadcast(&q->not_full);
    }
    *closed = q->closed;
    return n;
}

sl_status sl_queue_pop(sl_queue *q, void **item, uint64_t timeout_ms)
{
    if (q == NULL || item == NULL) {
        return SL_INVALID;
    }
    void *got = NULL;
    bool closed = false;
    pthread_mutex_lock(&q->mu);
    size_t n = take_many(q, &got, 1, timeout_ms, &closed);
    pthread_mutex_unlock(&q->mu);
    if (n == 0) {
        return closed ? SL_CLOSED : SL_EMPTY;
    }
    *item = got;
    return SL_OK;
}

size_t sl_queue_pop_many(sl_queue *q, void **items, size_t max,
                         uint64_t timeout_ms)
{
    if (q == NULL || items == NULL || max == 0) {
        return 0;
    }
    bool closed = false;
    pthread_mutex_lock(&q->mu);
    size_t n = take_many(q, items, max, timeout_ms, &closed);
    pthread_mutex_unlock(&q->mu);
    return n;
}

void sl_queue_close(sl_queue *q)
{
    if (q == NULL) {
        return;
    }
    pthread_mutex_lock(&q->mu);
    q->closed = true;
    pthread_cond_broadcast(&q->not_empty);
    pthread_cond_broadcast(&q->not_full);
    pthread_mutex_unlock(&q->mu);
}

/* The accessors take a const queue but must lock its mutex; the cast is
 * safe because every queue is created writable by sl_queue_create(). */
size_t sl_queue_len(const sl_queue *q)
{
    if (q == NULL) {
        return 0;
    }
    sl_queue *mq = (sl_queue *)q;
    pthread_mutex_lock(&mq->mu);
    size_t len = mq->len;
    pthread_mutex_unlock(&mq->mu);
    return len;
}

size_t sl_queue_capacity(const sl_queue *q)
{
    return q != NULL ? q->capacity : 0; /* immutable after creation */
}

uint64_t sl_queue_dropped(const sl_queue *q)
{
    if (q == NULL) {
        return 0;
    }
    sl_queue *mq = (sl_queue *)q;
    pthread_mutex_lock(&mq->mu);
    uint64_t dropped = mq->dropped;
    pthread_mutex_unlock(&mq->mu);
    return dropped;
}

void sl_queue_destroy(sl_queue *q)
{
    if (q == NULL) {
        return;
    }
    pthread_mutex_destroy(&q->mu);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    sl_free(q->items);
    sl_free(q);
}
