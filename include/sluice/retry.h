/* sluice — retry schedules: how long to wait after the n-th failure.
 *
 * Two kinds. A ladder is an explicit list of delays whose last value repeats
 * (the default, "1s, 5s, 10s", is what consumers use for RETRY). Exponential
 * backoff with full jitter draws each delay uniformly from
 * [0, min(cap, base * 2^(attempt-1))], which spreads retries from many
 * clients instead of synchronising them. The jitter comes from a generator
 * seeded in the options, so a given seed always yields the same sequence.
 */
#ifndef SLUICE_RETRY_H
#define SLUICE_RETRY_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Which formula a schedule uses. */
typedef enum sl_retry_kind {
    SL_RETRY_LADDER,     /**< explicit delays, last one repeats (default) */
    SL_RETRY_EXPONENTIAL /**< exponential backoff with full jitter */
} sl_retry_kind;

/** Options of a retry schedule; zero-is-default, copied at creation. */
typedef struct sl_retry_opts {
    sl_retry_kind kind;        /* default SL_RETRY_LADDER */
    const uint64_t *ladder_ms; /* ladder delays in ms (copied); NULL with */
    size_t ladder_len;         /* ladder_len 0 selects 1000, 5000, 10000 */
    uint64_t base_ms;          /* exponential: 0 selects 100 */
    uint64_t cap_ms;           /* exponential: 0 selects 30000 */
    uint64_t seed;             /* jitter seed; 0 selects a fixed default */
} sl_retry_opts;

/** A retry schedule (opaque). */
typedef struct sl_retry_schedule sl_retry_schedule;

/**
 * Create a retry schedule.
 *
 * @param[in]  opts  options (NULL selects all defaults); copied.
 * @param[out] out   the new schedule, owned by the caller
 *                   (sl_retry_destroy); written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL, the kind is unknown, or
 *         ladder_len > 0 with a NULL ladder_ms; SL_NOMEM.
 *
 * Thread-safety: callable from any thread.
 */
SL_API sl_status sl_retry_create(const sl_retry_opts *opts,
                                 sl_retry_schedule **out);

/**
 * Delay to wait after the @p attempt-th failure.
 *
 * Ladder: ladder_ms[attempt - 1], or the last entry once attempts run past
 * the end. Exponential: a uniform draw from [0, min(cap, base *
 * 2^(attempt-1))], both ends included; each call advances the generator.
 *
 * @param[in] sched   the schedule.
 * @param[in] attempt 1-based attempt number; 0 is treated as 1.
 * @return the delay in ms (0 when @p sched is NULL).
 *
 * Thread-safety: safe to call concurrently on one schedule (the generator
 * advances atomically); the sequence seen by each thread then depends on
 * the interleaving.
 */
SL_API uint64_t sl_retry_delay_ms(sl_retry_schedule *sched, uint32_t attempt);

/**
 * Destroy a schedule. NULL is a no-op.
 *
 * Thread-safety: no other call may be using @p sched.
 */
SL_API void sl_retry_destroy(sl_retry_schedule *sched);

/**
 * Parse a ladder such as "1s, 5s, 10s" or "250ms,2s,1m".
 *
 * Items are durations as accepted by sl_duration_parse_ms() (a plain number
 * is milliseconds), separated by commas; blanks around items are ignored.
 * Empty text and empty items ("1s,,2s", "1s,") are refused.
 *
 * @param[in]  text    NUL-terminated text.
 * @param[out] out     a new array of delays in ms, owned by the caller and
 *                     freed with sl_free(); written only on SL_OK.
 * @param[out] out_len number of entries (at least 1); written only on SL_OK.
 * @param[out] diag    optional; on failure says which item is wrong and why.
 * @return SL_OK; SL_INVALID for NULL arguments or malformed text; SL_NOMEM.
 *
 * Thread-safety: callable from any thread.
 */
SL_API sl_status sl_retry_parse_ladder(const char *text, uint64_t **out,
                                       size_t *out_len, sl_diag *diag);

#ifdef __cplusplus
}
#endif
#endif
