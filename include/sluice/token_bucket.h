/* sluice — token-bucket rate limits, single and per key.
 *
 * A bucket holds up to `burst` tokens and refills continuously at
 * `rate_per_s`; a call that takes n tokens passes only if n are there. A
 * bucket starts full. Time is passed in as `now_ms` (any monotonic
 * millisecond clock, e.g. sl_time_mono_ms()); a `now_ms` earlier than the
 * last successful take counts as no time passing. Only a successful take
 * changes a bucket, so polling (wait_ms, tokens, refused takes) is free of
 * side effects.
 *
 * sl_keyed_bucket keeps one such bucket per string key (client, tenant, API
 * key) with a hard bound on the number of keys: when a new key arrives and
 * the bound is reached, the least recently used key is evicted. An evicted
 * key that comes back starts with a full bucket again, so the bound should
 * exceed the number of keys active within one refill period (burst /
 * rate_per_s), or a key cycling through eviction gets more than its rate.
 *
 * Thread safety: an sl_token_bucket is not locked: one thread at a time
 * per bucket. An sl_keyed_bucket is: any thread, concurrently, except
 * sl_keyed_bucket_destroy.
 */
#ifndef SLUICE_TOKEN_BUCKET_H
#define SLUICE_TOKEN_BUCKET_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Options of a token bucket; zero-is-default, copied at creation. */
typedef struct sl_token_bucket_opts {
    double rate_per_s; /* tokens added per second; 0 selects 20 */
    double burst;      /* capacity in tokens; 0 selects 40 */
} sl_token_bucket_opts;

/** A token bucket (opaque). */
typedef struct sl_token_bucket sl_token_bucket;

/**
 * Create a token bucket, full at @p now_ms.
 *
 * @param[in]  opts   options (NULL selects the defaults: 20/s, burst 40).
 * @param[in]  now_ms the current time in ms.
 * @param[out] out    the new bucket, owned by the caller
 *                    (sl_token_bucket_destroy); written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL or a rate or burst is
 *         negative, infinite or NaN; SL_NOMEM.
 *
 * Thread-safety: a bucket is not locked; use it from one thread at a time
 * (sl_keyed_bucket is the locked variant).
 */
SL_API sl_status sl_token_bucket_create(const sl_token_bucket_opts *opts,
                                        uint64_t now_ms, sl_token_bucket **out);

/**
 * Take @p n tokens if they are available at @p now_ms; never blocks.
 *
 * @param[in] tb     the bucket.
 * @param[in] n      tokens wanted (fractions allowed); n <= 0 always passes
 *                   and takes nothing. NaN is refused.
 * @param[in] now_ms the current time in ms.
 * @return true if the tokens were taken, false (nothing taken) otherwise,
 *         and always false when n > burst.
 *
 * Thread-safety: not locked, see sl_token_bucket_create().
 */
SL_API bool sl_token_bucket_try_take(sl_token_bucket *tb, double n,
                                     uint64_t now_ms);

/**
 * Time until @p n tokens will be available, taking nothing.
 *
 * After waiting the returned time, sl_token_bucket_try_take() with the same
 * @p n succeeds unless other takes came in between.
 *
 * @param[in] tb     the bucket.
 * @param[in] n      tokens wanted.
 * @param[in] now_ms the current time in ms.
 * @return 0 if the tokens are there now; UINT64_MAX if they never can be
 *         (n > burst or NaN); otherwise the wait in ms, rounded up.
 *
 * Thread-safety: not locked, see sl_token_bucket_create().
 */
SL_API uint64_t sl_token_bucket_wait_ms(const sl_token_bucket *tb, double n,
                                        uint64_t now_ms);

/**
 * Tokens available at @p now_ms (for metrics and tests).
 *
 * Thread-safety: not locked, see sl_token_bucket_create().
 */
SL_API double sl_token_bucket_tokens(const sl_token_bucket *tb,
                                     uint64_t now_ms);

/** Destroy a bucket. NULL is a no-op. No other call may be using @p tb. */
SL_API void sl_token_bucket_destroy(sl_token_bucket *tb);

/** Options of a keyed bucket; zero-is-default, copied at creation. */
typedef struct sl_keyed_bucket_opts {
    double rate_per_s; /* per key; 0 selects 20 */
    double burst;      /* per key; 0 selects 40 */
    size_t max_keys;   /* bound on tracked keys; 0 selects 10000 */
} sl_keyed_bucket_opts;

/** Counters of a keyed bucket. */
typedef struct sl_keyed_bucket_stats {
    size_t keys;           /* keys tracked now (never above max_keys) */
    uint64_t evictions;    /* keys evicted to respect max_keys */
    uint64_t allowed;      /* try_take calls that took their tokens */
    uint64_t refused;      /* try_take calls refused */
    uint64_t alloc_failed; /* refusals because a new key had no memory */
} sl_keyed_bucket_stats;

/** A set of token buckets by key, bounded with LRU eviction (opaque). */
typedef struct sl_keyed_bucket sl_keyed_bucket;

/**
 * Create a keyed bucket. Keys get their bucket (full) when first seen.
 *
 * @param[in]  opts options (NULL selects the defaults).
 * @param[out] out  the new keyed bucket, owned by the caller
 *                  (sl_keyed_bucket_destroy); written only on SL_OK.
 * @return SL_OK; SL_INVALID when @p out is NULL or a rate or burst is
 *         negative, infinite or NaN; SL_NOMEM.
 *
 * Thread-safety: every sl_keyed_bucket function may be called from any
 * thread concurrently; an internal mutex serialises them.
 */
SL_API sl_status sl_keyed_bucket_create(const sl_keyed_bucket_opts *opts,
                                        sl_keyed_bucket **out);

/**
 * Take @p n tokens from the bucket of @p key; never blocks.
 *
 * If memory for a new key cannot be allocated, the call refuses (fails
 * closed) with a retry hint of 0 and counts it in stats.alloc_failed.
 *
 * @param[in]  kb             the keyed bucket.
 * @param[in]  key            NUL-terminated key (copied); NULL is refused.
 * @param[in]  n              tokens wanted, as in sl_token_bucket_try_take().
 * @param[in]  now_ms         the current time in ms.
 * @param[out] retry_after_ms optional; on refusal, the time until the tokens
 *                            will be there (UINT64_MAX: never, n > burst);
 *                            untouched when the call passes.
 * @return true if the tokens were taken.
 *
 * Thread-safety: internally locked.
 */
SL_API bool sl_keyed_bucket_try_take(sl_keyed_bucket *kb, const char *key,
                                     double n, uint64_t now_ms,
                                     uint64_t *retry_after_ms);

/**
 * Read the counters.
 *
 * @param[in]  kb  the keyed bucket.
 * @param[out] out the counters.
 *
 * Thread-safety: internally locked.
 */
SL_API void sl_keyed_bucket_get_stats(sl_keyed_bucket *kb,
                                      sl_keyed_bucket_stats *out);

/** Destroy a keyed bucket and all its keys. NULL is a no-op. No other call
 * may be using @p kb. */
SL_API void sl_keyed_bucket_destroy(sl_keyed_bucket *kb);

#ifdef __cplusplus
}
#endif
#endif
