/* Waits with deadlines.
 *
 * sl_waiter: a one-shot rendezvous between an asynchronous confirm and a
 * thread that waits for it with a timeout. If the waiter gives up first,
 * the confirm frees the object, so a late callback is always safe.
 *
 * sl_clock_wait: a condition-variable wait whose deadline is read on an
 * injected clock, which a manual clock's advance wakes. */
#ifndef SLUICE_CORE_WAITER_H
#define SLUICE_CORE_WAITER_H

#include "sluice/clock.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>

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

/** As sl__waiter_wait, until @p clk (NULL = the monotonic clock) reads
 * @p deadline_ms. */
sl_status sl__waiter_wait_until(sl_waiter *w, const sl_clock *clk,
                                uint64_t deadline_ms);

/** Free a waiter that was never handed to a signaller. */
void sl__waiter_destroy(sl_waiter *w);

/** Absolute CLOCK_MONOTONIC time @p ms from now, for pthread timed waits. */
void sl__deadline_after(struct timespec *ts, uint64_t ms);

/** A condition variable that measures timeouts on CLOCK_MONOTONIC. */
void sl__cond_init_mono(pthread_cond_t *cv);

/**
 * A wait on a condition variable whose deadline is read on an sl_clock.
 *
 * On any clock but a manual one the thread sleeps on the condition variable
 * for the time left on the clock, in real time. On a manual clock it also
 * sleeps that long, and sl_manual_clock_advance wakes it to look at the
 * clock again: the wait is listed from begin to end, and the advancing
 * thread takes the listed mutex to broadcast (the list's lock first, then
 * the mutex; so begin and end are called without @p mu or another listed
 * mutex held).
 *
 *     sl_clock_wait cw;
 *     sl__clock_wait_begin(&cw, &cv, &mu, clk);
 *     pthread_mutex_lock(&mu);
 *     while (!done && !sl__clock_wait(&cw, deadline_ms)) {}
 *     pthread_mutex_unlock(&mu);
 *     sl__clock_wait_end(&cw);
 */
typedef struct sl_clock_wait {
    pthread_cond_t *cv; /* measures timeouts on CLOCK_MONOTONIC */
    pthread_mutex_t *mu;
    const sl_clock *clk; /* NULL = the monotonic clock */
    bool listed;         /* a manual clock's: woken by its advance */
    struct sl_clock_wait *prev, *next;
} sl_clock_wait;

/** Prepare a wait on @p cv / @p mu, @p mu not held; @p cv must come from
 * sl__cond_init_mono. */
void sl__clock_wait_begin(sl_clock_wait *cw, pthread_cond_t *cv,
                          pthread_mutex_t *mu, const sl_clock *clk);

/** With @p mu held: sleep until signalled or the clock reads
 * @p deadline_ms, a time on the wait's clock (sl__clock_or_mono_ms of it
 * plus an interval; never a reading of another clock). @return true when
 * the deadline has passed; false when woken before (signalled, advanced
 * or spurious: the caller checks its condition and calls again). */
bool sl__clock_wait(sl_clock_wait *cw, uint64_t deadline_ms);

/** Finish a wait, @p mu not held. */
void sl__clock_wait_end(sl_clock_wait *cw);

/** Read @p clk, or the monotonic clock when it is NULL: intervals and
 * deadlines of components whose clock is optional. */
uint64_t sl__clock_or_mono_ms(const sl_clock *clk);

/** Read @p clk, or the wall clock when it is NULL. */
uint64_t sl__clock_or_wall_ms(const sl_clock *clk);

/** Wake every listed wait (sl__clock_wait_begin on a manual clock); for
 * sl_manual_clock_advance. */
void sl__clock_waiters_wake(void);

/** How many waits are listed now (on manual clocks); tests wait for a
 * component to be asleep before they move its clock. */
size_t sl__clock_waits_listed(void);

/** Whether @p clk is a manual clock (sl_manual_clock_init). */
bool sl__clock_is_manual(const sl_clock *clk);

#endif
