/* sluice — the consumer: a worker pool that runs a handler per delivery.
 *
 * Handler concurrency never exceeds prefetch. Outcomes: ACK (done), RETRY
 * (redelivered after the group's backoff, without holding a prefetch slot),
 * REJECT (dead-letter now). A handler that overruns its timeout counts as
 * RETRY. After max_attempts the event is dead-lettered with reason
 * max_attempts; an event past its deadline is dead-lettered with reason
 * expired and never reaches the handler. With idempotency on, processed ids
 * are recorded (after ACK) in an SQLite inbox and skipped when seen again.
 *
 * Ownership: the consumer borrows its engine, producer and metrics
 * registry (they must outlive it) and copies its options. Deliveries stay
 * with the consumer: a handler sees its event through an sl_handler_ctx
 * that is valid only during the call.
 *
 * Thread safety: create/start/stop/destroy from one controlling thread;
 * sl_consumer_signal_stop and sl_consumer_get_stats from any thread;
 * handlers run on the consumer's worker threads, and the sl_handler_*
 * functions are called only from inside a handler, on its thread.
 */
#ifndef SLUICE_CONSUMER_H
#define SLUICE_CONSUMER_H

#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/export.h"
#include "sluice/metrics.h"
#include "sluice/producer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_consumer sl_consumer;

/** What a handler decided. */
typedef enum sl_outcome {
    SL_OUTCOME_ACK,
    SL_OUTCOME_RETRY,
    SL_OUTCOME_REJECT,
} sl_outcome;

/** "ack", "retry", "reject": static text; "unknown" out of range. Any
 * thread. */
SL_API const char *sl_outcome_str(sl_outcome outcome);

/* ---- inside a handler ------------------------------------------------
 *
 * The sl_handler_* functions take the handler's ctx, are called on the
 * handler's thread during the handler call, and return pointers borrowed
 * from the delivery: valid until the handler returns. */

/** The handler's view of one delivery; valid only during the call. */
typedef struct sl_handler_ctx sl_handler_ctx;

/** The delivered event; borrowed (sl_event_ref to keep it longer). Never
 * NULL. */
SL_API const sl_event *sl_handler_event(const sl_handler_ctx *ctx);
/** 1-based attempt number, crashed attempts included. */
SL_API uint32_t sl_handler_attempt(const sl_handler_ctx *ctx);
/** Milliseconds left before the handler timeout or the event's deadline,
 * whichever is sooner. */
SL_API uint64_t sl_handler_remaining_ms(const sl_handler_ctx *ctx);
/** The group's name and channel; borrowed from the consumer. */
SL_API const char *sl_handler_group(const sl_handler_ctx *ctx);
SL_API const char *sl_handler_channel(const sl_handler_ctx *ctx);
/** Error text recorded with a RETRY or REJECT (dead letters carry it);
 * formatted into a copy. */
SL_API void sl_handler_set_error(sl_handler_ctx *ctx, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/** Ask for a specific delay before the next attempt (e.g. Retry-After),
 * instead of the group's backoff, when the handler returns RETRY. */
SL_API void sl_handler_retry_after(sl_handler_ctx *ctx, uint64_t delay_ms);
/**
 * Publish an event caused by this one: it becomes the child of the current
 * event (trace, deadline, correlation), then is published through the
 * consumer's producer and confirmed before return. @p ev is borrowed (the
 * caller keeps its reference) and is modified, so it must not be shared.
 * @return SL_OK; SL_UNSUPPORTED when the consumer has no producer; the
 *         statuses of sl_producer_publish.
 */
SL_API sl_status sl_handler_publish(sl_handler_ctx *ctx, const char *channel,
                                    sl_event *ev, sl_diag *diag);
/** The inbox database (an sqlite3 *) with a transaction open, for handlers
 * declared transactional: their writes commit with the inbox record, so
 * their effects happen exactly once. NULL otherwise. */
SL_API void *sl_handler_db(sl_handler_ctx *ctx);
/** The metrics registry of the consumer (its service's), for a handler's
 * own domain metrics: declaring a family again with the same definition
 * returns the same family. NULL when the consumer has none. */
SL_API sl_metrics *sl_handler_metrics(sl_handler_ctx *ctx);

/** A handler: runs on a worker thread; @p user is the consumer's
 * handler_ctx (borrowed). Must be thread-safe if concurrency > 1. Its
 * return value settles the delivery; @p ctx is invalid once it returns. */
typedef sl_outcome (*sl_handler_fn)(sl_handler_ctx *ctx, void *user);

/** Reports a status for the request behind an event (status projection):
 * @p key is the event's correlationid, or its id; @p detail may be NULL.
 * Called on worker threads; must not block for long. */
typedef void (*sl_status_report_fn)(const char *key, const char *status,
                                    const char *detail, void *ctx);

/** Options; zero is default. Copied (strings and arrays too). */
typedef struct sl_consumer_opts {
    const char *channel;         /* required */
    const char *group;           /* required */
    uint32_t prefetch;           /* 0 = 10 */
    uint32_t concurrency;        /* worker threads; 0 = prefetch; <= prefetch */
    uint64_t handler_timeout_ms; /* 0 = 30000 */
    uint32_t max_attempts;       /* 0 = 5 */
    const uint64_t *backoff_ms;  /* NULL = 1000, 5000, 10000 (last repeats) */
    size_t backoff_len;
    sl_handler_fn handler; /* required */
    void *handler_ctx;
    /* Idempotency: an SQLite inbox at this path (":memory:" allowed), or
     * with the NATS engine "nats-kv" / "nats-kv:BUCKET" (JetStream KV,
     * shared by every process of the group: a delivery claims its id
     * before the handler runs; not with transactional); NULL turns it
     * off. */
    const char *inbox_path;
    uint64_t idempotency_ttl_ms; /* 0 = 24 h */
    bool transactional;    /* run the handler inside the inbox transaction */
    sl_producer *producer; /* for sl_handler_publish; borrowed; optional */
    const char *service;   /* for logs; NULL = "sluice" */
    /* Metrics (docs/observability.md): deliveries by outcome, handler
     * duration, timeouts and handlers in flight, labelled with channel and
     * group. NULL = none; borrowed, must outlive the consumer. */
    sl_metrics *metrics;
    /* Status projection: which status to report when a handler starts,
     * after its ACK, and when the event is dead-lettered; NULL = none. */
    sl_status_report_fn report;
    void *report_ctx;
    const char *status_start;
    const char *status_ack;
    const char *status_dead;
    /* Time of handler timeouts, event deadlines, inbox records and the
     * drain; NULL = the system's (monotonic for intervals, wall for
     * deadlines). A manual clock's advance wakes the consumer's waits.
     * Borrowed, must outlive the consumer. */
    const sl_clock *clock;
} sl_consumer_opts;

/** Counters for metrics. */
typedef struct sl_consumer_stats {
    uint64_t acked;
    uint64_t retried;
    uint64_t rejected;   /* dead-lettered by REJECT */
    uint64_t exhausted;  /* dead-lettered after max_attempts */
    uint64_t expired;    /* dead-lettered for the deadline */
    uint64_t timed_out;  /* handler overran its timeout */
    uint64_t duplicates; /* skipped by the inbox */
    uint64_t released;   /* given back at shutdown */
    uint32_t in_flight;  /* handlers running now */
} sl_consumer_stats;

/**
 * Create a consumer: declares the group if needed and opens the inbox. Does
 * not start.
 *
 * @param[in]  eng  the engine; borrowed, must outlive the consumer.
 * @param[in]  opts options; copied (producer and metrics are borrowed).
 * @param[out] out  the consumer, owned by the caller (sl_consumer_destroy);
 *                  written only on SL_OK.
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_INVALID for a missing channel, group or handler,
 *         concurrency above prefetch, or an inbox the engine cannot serve;
 *         the statuses of sl_engine_declare_group and of opening the inbox
 *         (SL_IO, SL_UNAVAILABLE); SL_NOMEM.
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_consumer_create(sl_engine *eng,
                                    const sl_consumer_opts *opts,
                                    sl_consumer **out, sl_diag *diag);

/**
 * Start the worker threads.
 * @return SL_OK; SL_INVALID when already started; SL_INTERNAL when a thread
 *         cannot be created (the consumer is then stopping; destroy it).
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_consumer_start(sl_consumer *c);

/** First half of a stop: stop fetching now, without waiting. A host with
 * several consumers calls this on all of them, then sl_consumer_stop on
 * each, so that they drain in parallel. Idempotent. Any thread, but not
 * from a signal handler (it takes the engine's locks). */
SL_API void sl_consumer_signal_stop(sl_consumer *c);

/**
 * Graceful stop: stop fetching, let running handlers finish within
 * @p drain_timeout_ms, release deliveries not started, then release
 * deliveries whose handler is still running (their late result is
 * discarded).
 * @return SL_OK when every handler finished; SL_TIMEOUT when some were still
 *         running (destroy then waits for them to return).
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_consumer_stop(sl_consumer *c, uint64_t drain_timeout_ms);

/** Copy the counters into @p out. Any thread. */
SL_API void sl_consumer_get_stats(sl_consumer *c, sl_consumer_stats *out);

/** Distinct channels a consumer remembers having published to. */
#define SL_CONSUMER_MAX_EMITS 16

/**
 * The channels this consumer's handlers have published to so far
 * (sl_handler_publish), in the order first seen, at most
 * SL_CONSUMER_MAX_EMITS: the stages downstream of its group, as the
 * running service learns them.
 *
 * @param[out] out  up to @p max channel names, valid until the consumer
 *                  is destroyed.
 * @return how many were written. Any thread.
 */
SL_API size_t sl_consumer_emits(sl_consumer *c, const char **out, size_t max);

/** Stop (if running) with the default drain, wait for every worker, free.
 * NULL is a no-op. The controlling thread, once no other call on @p c
 * runs. */
SL_API void sl_consumer_destroy(sl_consumer *c);

#ifdef __cplusplus
}
#endif
#endif
