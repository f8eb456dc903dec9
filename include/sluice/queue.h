/* sluice — bounded multi-producer, multi-consumer queue of pointers.
 *
 * Every boundary between threads in sluice is one of these: a ring buffer
 * with a fixed capacity and an explicit policy for a full queue, so that a
 * slow consumer pushes back on its producers instead of growing memory.
 * Items are borrowed pointers: the queue never frees them (except through
 * drop_fn, which hands a dropped item back to its owner).
 *
 * Timeouts are measured on CLOCK_MONOTONIC.
 *
 * Thread-safety: every function except sl_queue_destroy() may be called
 * from any thread concurrently; one internal mutex serialises them.
 */
#ifndef SLUICE_QUEUE_H
#define SLUICE_QUEUE_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** What sl_queue_push() does when the queue is full. */
typedef enum sl_queue_overflow {
    SL_QUEUE_BLOCK,      /**< wait up to the push timeout, then SL_FULL */
    SL_QUEUE_REJECT,     /**< return SL_FULL at once */
    SL_QUEUE_DROP_OLDEST /**< drop the oldest item to make room */
} sl_queue_overflow;

/** Options of a queue; zero-is-default, copied at creation. */
typedef struct sl_queue_opts {
    size_t capacity;            /* 0 selects 1024 */
    sl_queue_overflow overflow; /* default SL_QUEUE_BLOCK */
    /* Called (outside the lock, on the pushing thread) with each item
     * dropped by DROP_OLDEST; it receives ownership of the item. */
    void (*drop_fn)(void *item, void *ctx);
    void *drop_ctx;
} sl_queue_opts;

/** A bounded MPMC queue (opaque). */
typedef struct sl_queue sl_queue;

/**
 * Create an empty, open queue.
 *
 * @param[in]  opts options (NULL selects the defaults).
 * @param[out] out  the new queue, owned by the caller (sl_queue_destroy);
 *                  written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL or the overflow policy is
 *         unknown; SL_NOMEM (also when a lock or condition variable cannot
 *         be created).
 */
SL_API sl_status sl_queue_create(const sl_queue_opts *opts, sl_queue **out);

/**
 * Append @p item (NULL is a valid item).
 *
 * When the queue is full: BLOCK waits up to @p timeout_ms for room (0 = do
 * not wait), REJECT fails at once, DROP_OLDEST removes the oldest item,
 * counts it in sl_queue_dropped() and passes it to drop_fn (if any) after
 * the lock is released.
 *
 * @param[in] q          the queue.
 * @param[in] item       the item; the queue borrows it until popped.
 * @param[in] timeout_ms how long BLOCK may wait; ignored by the others.
 * @return SL_OK; SL_FULL when there was no room (BLOCK after the timeout,
 *         REJECT at once); SL_CLOSED once the queue is closed (also for a
 *         push waiting when it is closed); SL_INVALID when @p q is NULL.
 */
SL_API sl_status sl_queue_push(sl_queue *q, void *item, uint64_t timeout_ms);

/**
 * Remove the oldest item, waiting up to @p timeout_ms for one (0 = do not
 * wait).
 *
 * @param[in]  q          the queue.
 * @param[out] item       the item; written only on SL_OK.
 * @param[in]  timeout_ms how long to wait for an item.
 * @return SL_OK; SL_EMPTY on timeout; SL_CLOSED once the queue is closed
 *         and drained; SL_INVALID when @p q or @p item is NULL.
 */
SL_API sl_status sl_queue_pop(sl_queue *q, void **item, uint64_t timeout_ms);

/**
 * Remove up to @p max items in order, waiting up to @p timeout_ms for the
 * first; the rest are taken only if already there.
 *
 * @param[in]  q          the queue.
 * @param[out] items      room for @p max items; the first n are written.
 * @param[in]  max        most items to take.
 * @param[in]  timeout_ms how long to wait for the first item.
 * @return the number of items taken n; 0 on timeout, when the queue is
 *         closed and empty, or for NULL arguments or @p max == 0.
 */
SL_API size_t sl_queue_pop_many(sl_queue *q, void **items, size_t max,
                                uint64_t timeout_ms);

/**
 * Close the queue: wake every waiter; later pushes fail with SL_CLOSED;
 * pops still return what is left, then SL_CLOSED. Idempotent; NULL is a
 * no-op.
 */
SL_API void sl_queue_close(sl_queue *q);

/** Number of items in the queue now (0 for NULL). */
SL_API size_t sl_queue_len(const sl_queue *q);

/** Capacity given at creation (0 for NULL). */
SL_API size_t sl_queue_capacity(const sl_queue *q);

/** Number of items dropped by DROP_OLDEST so far (0 for NULL). */
SL_API uint64_t sl_queue_dropped(const sl_queue *q);

/**
 * Destroy the queue. NULL is a no-op. Items still queued are not freed
 * (pop them first if they own memory). No other thread may be using @p q,
 * or waiting in it: close it and join its users first.
 */
SL_API void sl_queue_destroy(sl_queue *q);

#ifdef __cplusplus
}
#endif
#endif
