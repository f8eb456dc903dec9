/* A one-shot rendezvous between an asynchronous confirm and a thread that
 * waits for it with a timeout. If the waiter gives up first, the confirm
 * frees the object, so a late callback is always safe. */
#ifndef SLUICE_CORE_WAITER_H
#define SLUICE_CORE_WAITER_H

#include "sluice/status.h"

#include <pthread.h>
#include <stdint.h>
#include <time.h>

typedef struct sl_waiter sl_waiter;

sl_status sl__waiter_create(sl_waiter **out);

/** The confirm side: an sl_publish_cb-compatible function (ctx = waiter). */
void sl__waiter_signal(sl_status st, void *ctx);

/** Wait up to @p timeout_ms. Returns the signalled status, or SL_TIMEOUT
 * (the waiter then belongs to the pending signal). Frees the waiter unless
 * it timed out. */
sl_status sl__waiter_wait(sl_waiter *w, uint64_t timeout_ms);

/** Free a waiter that was never handed to a signaller. */
void sl__waiter_destroy(sl_waiter *w);

/** Absolute CLOCK_MONOTONIC time @p ms from now, for pthread timed waits. */
void sl__deadline_after(struct timespec *ts, uint64_t ms);

/** A condition variable that measures timeouts on CLOCK_MONOTONIC. */
void sl__cond_init_mono(pthread_cond_t *cv);

#endif
