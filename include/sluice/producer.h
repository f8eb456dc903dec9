/* sluice — the producer: publishing with bounded in-flight work.
 *
 * A producer holds at most `max_in_flight` unconfirmed publishes. When the
 * window is full, or the engine refuses (channel at max_length), publish
 * waits at most its timeout and then fails with SL_FULL; try_publish never
 * waits. An optional token bucket limits the rate and an optional circuit
 * breaker stops publishing to an engine that keeps failing.
 *
 * Ownership: the producer borrows its engine, clock and metrics registry
 * (they must outlive it) and copies its options. Publishing borrows the
 * event: the engine takes its own reference, the caller keeps and unrefs
 * its own, and must not modify the event afterwards.
 *
 * Thread safety: every function may be called from any thread,
 * concurrently, except sl_producer_destroy (no other call may be running).
 */
#ifndef SLUICE_PRODUCER_H
#define SLUICE_PRODUCER_H

#include "sluice/breaker.h"
#include "sluice/engine.h"
#include "sluice/export.h"
#include "sluice/metrics.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_producer sl_producer;

/** Options; zero is default. Copied. */
typedef struct sl_producer_opts {
    uint32_t max_in_flight;         /* unconfirmed publishes; 0 = 1000 */
    uint64_t publish_timeout_ms;    /* 0 = 5000 */
    double rate_per_s;              /* token bucket; 0 = no limit */
    double burst;                   /* 0 = 2 x rate */
    const sl_breaker_opts *breaker; /* NULL = no breaker; copied */
    /* For the bucket and the breaker; also the publish timeout and flush
     * (NULL: the monotonic clock), whose waits a manual clock's advance
     * wakes. NULL = system. */
    const sl_clock *clock;
    /* Metrics (docs/observability.md): published events by channel and
     * outcome, confirm latency, rate-limit refusals, breaker state and
     * window use. NULL = none; borrowed, must outlive the producer. */
    sl_metrics *metrics;
} sl_producer_opts;

/** Counters for metrics; read with sl_producer_get_stats. */
typedef struct sl_producer_stats {
    uint64_t published;    /* confirmed */
    uint64_t failed;       /* confirmed with an error, or refused by the
                              engine for another reason than full */
    uint64_t full;         /* refused with SL_FULL */
    uint64_t rate_limited; /* refused by the token bucket */
    uint64_t breaker_open; /* refused by the breaker */
    uint32_t in_flight;    /* unconfirmed now */
} sl_producer_stats;

/**
 * Create a producer on @p eng (borrowed; must outlive the producer).
 *
 * @param[in]  opts options, NULL for the defaults; copied (the breaker
 *                  options too).
 * @param[out] out  the producer, owned by the caller (sl_producer_destroy);
 *                  written only on SL_OK.
 * @return SL_OK; SL_INVALID for a NULL engine or out, or bad breaker
 *         options; SL_NOMEM.
 */
SL_API sl_status sl_producer_create(sl_engine *eng,
                                    const sl_producer_opts *opts,
                                    sl_producer **out);

/**
 * Publish and wait for the confirm, all within the publish timeout.
 * @return SL_OK once the engine durably accepted the event; SL_FULL when
 *         the window stayed full or the channel stayed at max_length for
 *         the whole timeout; SL_RATE_LIMITED; SL_BREAKER_OPEN; SL_TIMEOUT
 *         when the confirm did not come in time (outcome unknown:
 *         republish the same id, duplicates are absorbed); SL_INVALID;
 *         the statuses of sl_engine_publish_async.
 */
SL_API sl_status sl_producer_publish(sl_producer *p, const char *channel,
                                     sl_event *ev, sl_diag *diag);

/**
 * Publish without waiting for the confirm; waits for room in the window at
 * most the publish timeout. @p cb (may be NULL) is called exactly once with
 * the outcome, if and only if SL_OK is returned: on an engine thread, or on
 * a thread inside a later publish call to the same engine (as
 * sl_publish_cb allows); it must not block. @p ctx is borrowed until
 * @p cb has run.
 * @return SL_OK; else as sl_producer_publish, without SL_TIMEOUT for the
 *         confirm.
 */
SL_API sl_status sl_producer_publish_async(sl_producer *p, const char *channel,
                                           sl_event *ev, sl_publish_cb cb,
                                           void *ctx);

/** Like publish_async, but never waits: SL_FULL at once when the window is
 * full or the channel is at max_length; SL_RATE_LIMITED when no token. */
SL_API sl_status sl_producer_try_publish(sl_producer *p, const char *channel,
                                         sl_event *ev, sl_publish_cb cb,
                                         void *ctx);

/** Wait up to @p timeout_ms until no publish is unconfirmed.
 * @return SL_OK or SL_TIMEOUT. */
SL_API sl_status sl_producer_flush(sl_producer *p, uint64_t timeout_ms);

/** Milliseconds until a publish could be admitted (bucket refill, breaker
 * half-open); 0 when it could now. For Retry-After. */
SL_API uint64_t sl_producer_retry_after_ms(sl_producer *p);

/** Copy the counters into @p out. */
SL_API void sl_producer_get_stats(sl_producer *p, sl_producer_stats *out);

/** Wait until every publish is confirmed (each callback has run), then
 * free. NULL is a no-op. No other call on @p p may be running or start. */
SL_API void sl_producer_destroy(sl_producer *p);

#ifdef __cplusplus
}
#endif
#endif
