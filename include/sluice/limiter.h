/* sluice — concurrency limiter, fixed or adaptive.
 *
 * A limiter bounds the number of calls in flight. A fixed limiter never
 * changes its limit. An adaptive limiter (AIMD, in the style of Netflix's
 * concurrency-limits) finds the limit a dependency can take from the
 * latency it observes:
 *
 *   - increase: after every `window` successful calls whose round-trip time
 *     stays within `tolerance` x the minimum observed RTT, the limit grows
 *     by 1. Only calls released while at least half the limit was in use
 *     count, so an idle service does not inflate its limit.
 *   - decrease: a call whose RTT is above tolerance x the minimum, or that
 *     ended in a drop or timeout (SL_LIMITER_DROPPED), multiplies the limit
 *     by `backoff` — at most once per window, because the calls that were
 *     already in flight report the same congestion again.
 *   - the limit stays within [min_limit, max_limit].
 *
 * The minimum RTT is measured over the last one to two `rtt_window_ms`
 * periods, so that a lasting change of the baseline latency is learnt
 * rather than read as congestion forever. The tolerance applies to at least
 * 1 ms, since RTTs are whole milliseconds.
 *
 * The consumer uses an adaptive limiter for its prefetch (default 10,
 * within [1, 1000]).
 *
 * Thread safety: every function may be called from any thread,
 * concurrently (an internal mutex serialises them), except
 * sl_limiter_destroy.
 */
#ifndef SLUICE_LIMITER_H
#define SLUICE_LIMITER_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** How the limit is set. */
typedef enum sl_limiter_kind {
    SL_LIMITER_FIXED,   /**< limit never changes (default) */
    SL_LIMITER_ADAPTIVE /**< AIMD on latency and drops */
} sl_limiter_kind;

/** How an acquired call ended, as told to sl_limiter_release(). */
typedef enum sl_limiter_outcome {
    SL_LIMITER_SUCCESS, /**< completed; its RTT is a latency sample */
    SL_LIMITER_DROPPED, /**< timed out, was shed or overloaded: back off */
    SL_LIMITER_IGNORE   /**< failed for a reason unrelated to load */
} sl_limiter_outcome;

/** Options of a limiter; zero-is-default, copied at creation. */
typedef struct sl_limiter_opts {
    sl_limiter_kind kind;   /* default SL_LIMITER_FIXED */
    uint32_t limit;         /* fixed limit / adaptive start; 0 selects 10 */
    uint32_t min_limit;     /* adaptive: 0 selects 1 */
    uint32_t max_limit;     /* adaptive: 0 selects 1000 */
    double backoff;         /* adaptive: factor in (0, 1); 0 selects 0.9 */
    double tolerance;       /* adaptive: RTT ratio >= 1; 0 selects 2.0 */
    uint32_t window;        /* adaptive: good calls per +1; 0: the limit */
    uint64_t rtt_window_ms; /* adaptive: min-RTT period; 0 selects 60000 */
} sl_limiter_opts;

/** A concurrency limiter (opaque). */
typedef struct sl_limiter sl_limiter;

/**
 * Create a limiter.
 *
 * @param[in]  opts options (NULL selects a fixed limit of 10).
 * @param[out] out  the new limiter, owned by the caller
 *                  (sl_limiter_destroy); written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL, the kind is unknown,
 *         min_limit > max_limit, the start limit is outside them (adaptive),
 *         backoff is not in (0, 1) or tolerance is below 1; SL_NOMEM.
 *
 * Thread-safety: every sl_limiter function may be called from any thread
 * concurrently; an internal mutex serialises them.
 */
SL_API sl_status sl_limiter_create(const sl_limiter_opts *opts,
                                   sl_limiter **out);

/**
 * Take a slot if fewer than limit calls are in flight; never blocks.
 *
 * @return true if a slot was taken (release it with sl_limiter_release()).
 *
 * Thread-safety: internally locked.
 */
SL_API bool sl_limiter_try_acquire(sl_limiter *lim);

/**
 * Give back a slot taken by sl_limiter_try_acquire() and, for an adaptive
 * limiter, learn from the call. Releasing more than was acquired is a
 * caller bug; the extra release is ignored.
 *
 * @param[in] lim     the limiter.
 * @param[in] outcome how the call ended.
 * @param[in] rtt_ms  the call's round-trip time (used for SUCCESS).
 * @param[in] now_ms  the current time in ms (ages the minimum RTT).
 *
 * Thread-safety: internally locked.
 */
SL_API void sl_limiter_release(sl_limiter *lim, sl_limiter_outcome outcome,
                               uint64_t rtt_ms, uint64_t now_ms);

/** The current limit (0 for NULL). Thread-safety: internally locked. */
SL_API uint32_t sl_limiter_limit(sl_limiter *lim);

/** Calls in flight now (0 for NULL). Thread-safety: internally locked. */
SL_API uint32_t sl_limiter_in_flight(sl_limiter *lim);

/** Destroy a limiter. NULL is a no-op. No other call may be using @p lim. */
SL_API void sl_limiter_destroy(sl_limiter *lim);

#ifdef __cplusplus
}
#endif
#endif
