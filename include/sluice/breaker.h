/* sluice — circuit breaker.
 *
 * A breaker stops calls to a dependency that keeps failing, so that callers
 * fail fast instead of piling up behind timeouts, and lets a few probe calls
 * through after a pause to find out whether it has recovered.
 *
 *   CLOSED     every call is allowed. Failures are counted; the breaker
 *              opens after `failure_threshold` consecutive failures or, with
 *              a sliding window, when the failure rate of the last
 *              `window_size` calls reaches `failure_rate` (once at least
 *              `min_calls` are in the window). To trip on the rate alone,
 *              set failure_threshold to UINT32_MAX.
 *   OPEN       every call is refused until `open_ms` have passed since the
 *              breaker opened; then it is HALF_OPEN.
 *   HALF_OPEN  at most `half_open_probes` calls are allowed. When that many
 *              probes have succeeded the breaker closes (counters and window
 *              reset); the first failed probe opens it again.
 *
 * A successful call slower than `slow_call_ms` (when set) counts as a
 * failure. Callers must follow every allowed call with exactly one
 * sl_breaker_record(), or sl_breaker_cancel() if the call was not made after
 * all (e.g. a later admission check refused it). Probes with neither are
 * presumed lost `open_ms` after the latest probe was admitted, and their
 * slots given back. Outcomes
 * recorded while OPEN (calls that started before the breaker opened) are
 * ignored.
 *
 * Time is passed in as `now_ms` from one monotonic millisecond clock.
 *
 * Thread safety: every function may be called from any thread,
 * concurrently (an internal mutex serialises them), except
 * sl_breaker_destroy; sl_breaker_state_str is a pure function.
 */
#ifndef SLUICE_BREAKER_H
#define SLUICE_BREAKER_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** State of a circuit breaker. */
typedef enum sl_breaker_state {
    SL_BREAKER_STATE_CLOSED,   /**< calls flow; failures are counted */
    SL_BREAKER_STATE_OPEN,     /**< calls are refused for open_ms */
    SL_BREAKER_STATE_HALF_OPEN /**< a few probe calls are allowed */
} sl_breaker_state;

/**
 * Called on every state change, on the thread whose call caused it, while
 * the breaker's lock is held: keep it short and do not call any sl_breaker
 * function on the same breaker from it.
 */
typedef void (*sl_breaker_change_fn)(sl_breaker_state from, sl_breaker_state to,
                                     void *ctx);

/** Options of a circuit breaker; zero-is-default, copied at creation. */
typedef struct sl_breaker_opts {
    uint32_t failure_threshold;     /* consecutive failures; 0 selects 5 */
    uint64_t open_ms;               /* OPEN before HALF_OPEN; 0 selects 30000 */
    uint32_t half_open_probes;      /* 0 selects 1 */
    uint32_t window_size;           /* last M calls; 0 turns the window off */
    double failure_rate;            /* in (0, 1]; 0 selects 0.5 */
    uint32_t min_calls;             /* 0 selects window_size */
    uint64_t slow_call_ms;          /* slower successes fail; 0 turns it off */
    sl_breaker_change_fn on_change; /* optional */
    void *on_change_ctx;
} sl_breaker_opts;

/** Counters of a breaker, for metrics. */
typedef struct sl_breaker_stats {
    sl_breaker_state state;       /* current state */
    uint64_t transitions_to_open; /* times the breaker opened */
    uint64_t transitions_to_half_open;
    uint64_t transitions_to_closed;
    uint64_t allowed;    /* sl_breaker_allow() returned true */
    uint64_t rejected;   /* sl_breaker_allow() returned false */
    uint64_t successes;  /* recorded successes (not slow) */
    uint64_t failures;   /* recorded failures, slow calls included */
    uint64_t slow_calls; /* successes counted as failures for slowness */
    uint64_t cancelled;  /* sl_breaker_cancel() calls */
} sl_breaker_stats;

/** A circuit breaker (opaque). */
typedef struct sl_breaker sl_breaker;

/**
 * Create a closed breaker.
 *
 * @param[in]  opts options (NULL selects the defaults: open after 5
 *                  consecutive failures, half-open after 30 s, 1 probe).
 * @param[out] out  the new breaker, owned by the caller
 *                  (sl_breaker_destroy); written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL, failure_rate is outside
 *         [0, 1] or NaN, or min_calls > window_size with a window;
 *         SL_NOMEM.
 *
 * Thread-safety: every sl_breaker function may be called from any thread
 * concurrently; an internal mutex serialises them.
 */
SL_API sl_status sl_breaker_create(const sl_breaker_opts *opts,
                                   sl_breaker **out);

/**
 * Ask whether a call may go ahead now.
 *
 * Moves OPEN to HALF_OPEN once open_ms have passed. In HALF_OPEN, admits at
 * most half_open_probes calls until their outcomes are recorded.
 *
 * @param[in] brk    the breaker.
 * @param[in] now_ms the current time in ms.
 * @return true if the call may go ahead (then record its outcome), false if
 *         the caller should fail fast (e.g. with status SL_BREAKER_OPEN).
 *
 * Thread-safety: internally locked.
 */
SL_API bool sl_breaker_allow(sl_breaker *brk, uint64_t now_ms);

/**
 * Record the outcome of a call that sl_breaker_allow() admitted.
 *
 * @param[in] brk         the breaker.
 * @param[in] ok          whether the call succeeded.
 * @param[in] duration_ms how long the call took (compared to slow_call_ms).
 * @param[in] now_ms      the current time in ms.
 *
 * Thread-safety: internally locked.
 */
SL_API void sl_breaker_record(sl_breaker *brk, bool ok, uint64_t duration_ms,
                              uint64_t now_ms);

/**
 * Give back a call that sl_breaker_allow() admitted but that was not made
 * (another admission check refused it, or setting it up failed). Frees its
 * probe slot in HALF_OPEN; records no outcome.
 *
 * @param[in] brk    the breaker.
 * @param[in] now_ms the current time in ms.
 *
 * Thread-safety: internally locked.
 */
SL_API void sl_breaker_cancel(sl_breaker *brk, uint64_t now_ms);

/**
 * The state at @p now_ms (OPEN turns HALF_OPEN here too once due).
 *
 * Thread-safety: internally locked.
 */
SL_API sl_breaker_state sl_breaker_state_at(sl_breaker *brk, uint64_t now_ms);

/**
 * Time until the breaker lets a probe through, for a Retry-After hint.
 *
 * @return the remaining open time in ms while OPEN; 0 when CLOSED or
 *         HALF_OPEN (a half-open breaker may still refuse while its probes
 *         are outstanding).
 *
 * Thread-safety: internally locked.
 */
SL_API uint64_t sl_breaker_retry_after_ms(sl_breaker *brk, uint64_t now_ms);

/**
 * Read the counters and the state at @p now_ms.
 *
 * @param[in]  brk    the breaker.
 * @param[in]  now_ms the current time in ms.
 * @param[out] out    the counters.
 *
 * Thread-safety: internally locked.
 */
SL_API void sl_breaker_get_stats(sl_breaker *brk, uint64_t now_ms,
                                 sl_breaker_stats *out);

/** Static lower-case name of a state ("closed", "open", "half_open"), for
 * logs and metric labels; "unknown" if out of range. Never NULL. */
SL_API const char *sl_breaker_state_str(sl_breaker_state state);

/** Destroy a breaker. NULL is a no-op. No other call may be using @p brk. */
SL_API void sl_breaker_destroy(sl_breaker *brk);

#ifdef __cplusplus
}
#endif
#endif
