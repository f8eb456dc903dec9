/* Drain rates of consumer groups, sampled on a fixed period.
 *
 * A sampler owns one thread that, once per period of its clock, reads each
 * group's settled count (events that left the group for good) and its
 * ready count, and keeps them in a ring per group that spans the rate
 * window. Two rates are read from the rings:
 *
 *   the drain rate     settled per second over the window (default 60 s):
 *                      what `/scale` reports;
 *   the busy rate      settled per second in the slowest of the recent
 *                      intervals (default the last 10 s) in which events
 *                      were waiting at both ends (ready > 0): what the
 *                      group drains when it has work, on a bad second,
 *                      which the gateway's admission by predicted wait
 *                      divides by (the slowest, so that a wobbling rate
 *                      errs towards refusing, not towards expiring).
 *
 * Sampling on the period, not on request, makes the rates independent of
 * when they are read: the first read after a quiet minute sees the quiet
 * minute. Time comes from an injected clock; the thread waits on a
 * condition variable until the clock's next period (on real time, up to one
 * period), and sl__drain_kick() makes it look at the clock again, so that
 * tests move a manual clock instead of sleeping.
 *
 * Thread safety: every function from any thread, except create and
 * destroy (the controlling thread).
 */
#ifndef SLUICE_RUNTIME_DRAIN_RATE_H
#define SLUICE_RUNTIME_DRAIN_RATE_H

#include "sluice/clock.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sl_drain sl_drain;

/** What the sampler reads of one group. */
typedef struct sl_drain_reading {
    uint64_t settled; /* acked, duplicates and dead-lettered, ever */
    uint64_t ready;   /* deliverable now, not yet delivered */
    uint64_t backlog; /* ready + delayed + in flight */
} sl_drain_reading;

/** Read group @p group; false when it cannot be read now (the sample is
 * skipped). Called on the sampler's thread and on sl__drain_backlog's
 * caller's; must be thread-safe. */
typedef bool (*sl_drain_read_fn)(size_t group, sl_drain_reading *out,
                                 void *ctx);

/** Options; zero is default. Copied. */
typedef struct sl_drain_opts {
    size_t ngroups;
    sl_drain_read_fn read; /* required */
    void *read_ctx;
    uint64_t period_ms;      /* between samples; 0 = 1000 */
    uint64_t window_ms;      /* of the drain rate; 0 = 60000 */
    uint64_t busy_window_ms; /* of the busy rate; 0 = 10000 */
    const sl_clock *clock;   /* NULL = the monotonic clock; borrowed */
} sl_drain_opts;

/**
 * Create a sampler and take the first sample of every group now; the
 * thread starts with sl__drain_start.
 * @return SL_OK; SL_INVALID without a read function; SL_NOMEM.
 */
sl_status sl__drain_create(const sl_drain_opts *opts, sl_drain **out);

/** Start the sampling thread. @return SL_OK or SL_NOMEM. */
sl_status sl__drain_start(sl_drain *d);

/** Stop the thread (if started) and free. NULL is a no-op. */
void sl__drain_destroy(sl_drain *d);

/** Make the thread read its clock again now (after a manual clock moved).
 * A sample is taken only when a period has passed on the clock. */
void sl__drain_kick(sl_drain *d);

/** Rounds of samples taken so far (the one at creation included). */
uint64_t sl__drain_rounds(sl_drain *d);

/** Wait until at least @p rounds rounds were taken, up to @p timeout_ms of
 * real time. @return true when they were. For tests. */
bool sl__drain_wait_rounds(sl_drain *d, uint64_t rounds, uint64_t timeout_ms);

/** Drain rate of @p group over the window, events/s, as of the last
 * sample; 0 until two samples a second apart exist. */
double sl__drain_rate_per_s(sl_drain *d, size_t group);

/** Busy rate of @p group (see the top of this file), events/s: the
 * slowest recent busy interval's; 0 when no recent interval was busy or
 * none settled anything. */
double sl__drain_busy_rate_per_s(sl_drain *d, size_t group);

/** The rate admission divides by: the busy rate, else the drain rate
 * (a lower bound of what the group can do); 0 = not measured. */
double sl__drain_capacity_per_s(sl_drain *d, size_t group);

/**
 * The group's backlog (ready + delayed + in flight) and, in @p ready_out
 * (may be NULL), its ready part, read at most @p max_age_ms ago on the
 * sampler's clock; read again when older.
 * @return SL_OK; SL_UNAVAILABLE when it cannot be read.
 */
sl_status sl__drain_backlog(sl_drain *d, size_t group, uint64_t max_age_ms,
                            uint64_t *out, uint64_t *ready_out);

#endif
