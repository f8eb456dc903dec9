/* sluice — engines: where channels, groups and deliveries live.
 *
 * An engine is chosen by URL: "embedded:./data", "embedded::memory:" and
 * "memory://" (in process, SQLite), "amqp://" and "amqps://" (RabbitMQ),
 * "nats://" and "tls://" (NATS JetStream); the RabbitMQ and NATS engines
 * exist when the library was built with their client libraries
 * (sl_engine_check_url says which). Every engine gives the same semantics
 * (docs/semantics.md): confirmed publish, bounded prefetch per
 * subscription, ACK / RETRY with delay / REJECT, per-group dead-letter
 * channel "<channel>.<group>.dlq", deadlines, crash redelivery counted as
 * an attempt. The producer and consumer runtimes are built on this
 * interface; applications may also use it directly.
 *
 * Ownership: the engine owns its subscriptions' bookkeeping, a subscription
 * owns the deliveries it hands out until they are settled, and settling
 * (sl_delivery_ack, _retry, _dead_letter, _release) takes the delivery
 * (sl_delivery **: the caller's pointer is set to NULL). Strings and
 * options passed in are borrowed for the call and copied when kept.
 *
 * Thread safety: every function here may be called from any thread,
 * concurrently, except that sl_engine_close and sl_subscription_close must
 * not race with other calls on the object they close. A delivery is settled
 * once, by one thread, but not necessarily the one that fetched it.
 *
 * Statuses shared by every call: SL_INVALID for NULL or malformed
 * arguments; SL_UNAVAILABLE while a broker engine is disconnected (it
 * reconnects by itself); SL_CLOSED once the object is closing.
 */
#ifndef SLUICE_ENGINE_H
#define SLUICE_ENGINE_H

#include "sluice/clock.h"
#include "sluice/event.h"
#include "sluice/export.h"
#include "sluice/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_engine sl_engine;
typedef struct sl_subscription sl_subscription;
typedef struct sl_delivery sl_delivery;

/** Durability of the embedded engine's SQLite store. */
typedef enum sl_sync_mode {
    SL_SYNC_NORMAL, /* WAL, fsync at checkpoints: survives a process crash */
    SL_SYNC_FULL,   /* WAL, fsync at every commit: survives a power cut */
    SL_SYNC_OFF,    /* no fsync at all */
} sl_sync_mode;

/** Options for sl_engine_open; zero is default. Copied (the clock is
 * borrowed). */
typedef struct sl_engine_opts {
    sl_sync_mode sync;
    uint32_t commit_interval_ms; /* wait this long after the first change
                                    to gather a larger commit; 0 = commit
                                    at once (group commit still batches
                                    whatever arrives during a commit) */
    size_t max_event_size;       /* encoded; 0 = SL_EVENT_MAX_SIZE_DEFAULT */
    uint64_t dedup_window_ms;    /* republished ids dropped; 0 = 120000 */
    const sl_clock *clock;       /* NULL = system clock; borrowed */
    /* Store-backed engines: bytes of queued events kept in memory. Beyond
     * it, committed events live only in the store and are read back when
     * delivered, so a backlog costs little memory. 0 = 256 KiB. */
    size_t memory_budget;
    /* Open only a store that exists; never create one (SL_NOT_FOUND).
     * For tools that only read, such as listing dead letters. */
    bool open_existing;
} sl_engine_opts;

/**
 * Open an engine by URL. Query parameters override @p opts
 * ("embedded:./data?sync=full"; docs/engines/ lists them per engine).
 *
 * @param[in]  url  the engine URL; borrowed for the call.
 * @param[in]  opts options, NULL for the defaults; copied (opts->clock is
 *                  borrowed and must outlive the engine).
 * @param[out] out  the engine, owned by the caller, who closes it with
 *                  sl_engine_close; written only on SL_OK.
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_INVALID for an unknown scheme, a bad URL or parameter
 *         (detail in @p diag); SL_CONFIG for a file the URL
 *         names that cannot be read; SL_IO when the store cannot be opened;
 *         SL_EXISTS when another process holds an embedded store;
 *         SL_NOT_FOUND with opts->open_existing and no store;
 *         SL_UNAVAILABLE when a broker cannot be reached; SL_NOMEM.
 *
 * Thread safety: any thread.
 */
SL_API sl_status sl_engine_open(const char *url, const sl_engine_opts *opts,
                                sl_engine **out, sl_diag *diag);

/**
 * Check an engine URL without opening anything: its scheme is one this
 * build has, and its engine accepts its syntax, parameters and the files
 * they name (certificates, keys), as sl_engine_open would. Nothing is
 * created and no connection is made.
 *
 * @param[in]  url  the engine URL; borrowed for the call.
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_INVALID for a NULL or unknown scheme or a bad URL;
 *         SL_CONFIG for a file the URL names that cannot be read.
 *
 * Thread safety: any thread; it reads no shared state.
 */
SL_API sl_status sl_engine_check_url(const char *url, sl_diag *diag);

/**
 * Close the engine and free it: pending publishes are committed (or
 * confirmed) first. Subscriptions must be closed before; no other call on
 * @p eng may be running or start. NULL is a no-op.
 *
 * Thread safety: any one thread, after every other user of @p eng is done.
 */
SL_API void sl_engine_close(sl_engine *eng);

/**
 * Short engine name ("embedded", "rabbitmq", "nats").
 *
 * @return static text, never NULL.
 *
 * Thread safety: any thread.
 */
SL_API const char *sl_engine_name(const sl_engine *eng);

/**
 * Whether the engine is connected and usable (readiness probes). The
 * embedded engine is always ready; a broker engine is not while it
 * reconnects.
 *
 * Thread safety: any thread.
 */
SL_API bool sl_engine_is_ready(const sl_engine *eng);

/** A channel: a named stream of events. */
typedef struct sl_channel_opts {
    const char *name;    /* [a-zA-Z0-9._-]+ */
    uint64_t max_length; /* per group: ready + delayed + in flight; 0 = no
                            limit. Publishing beyond it fails SL_FULL. */
    uint64_t max_bytes;  /* per group: bytes of the events it holds, as
                            the engine measures an event (docs/engines);
                            0 = no limit. A publish that would take a
                            group past it fails SL_FULL. */
} sl_channel_opts;

/**
 * Declare a channel, or declare it again: the same name with the same
 * limits is a no-op. The embedded engine takes new limits; a broker that
 * already has the channel with other arguments refuses (SL_CONFIG).
 *
 * @param[in]  eng  the engine.
 * @param[in]  opts the channel; borrowed for the call.
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_INVALID for a bad name; SL_CONFIG when a broker already
 *         has the channel with other arguments (the RabbitMQ engine names
 *         them); SL_UNAVAILABLE; SL_IO; SL_NOMEM.
 *
 * Thread safety: any thread.
 */
SL_API sl_status sl_engine_declare_channel(sl_engine *eng,
                                           const sl_channel_opts *opts,
                                           sl_diag *diag);

/** A group: a durable subscription on a channel that gets every event. */
typedef struct sl_group_opts {
    const char *channel;
    const char *name;
    uint32_t max_attempts; /* 0 = 5; a delivery beyond it is dead-lettered
                              with reason max_attempts (crash-loop backstop) */
    /* The group's retry schedule (the consumer's backoff), for engines
     * whose broker redelivers after a crash on a schedule of its own
     * (JetStream BackOff); NULL = none. Borrowed for the call. */
    const uint64_t *backoff_ms;
    size_t backoff_len;
} sl_group_opts;

/**
 * Declare a group on a declared channel, and its dead-letter channel
 * "<channel>.<group>.dlq" too, which keeps its events in the group "dlq".
 * Idempotent, as sl_engine_declare_channel.
 *
 * @param[in]  eng  the engine.
 * @param[in]  opts the group; borrowed for the call (backoff_ms too).
 * @param[out] diag optional detail on failure.
 * @return SL_OK; SL_INVALID for a bad channel or group name; SL_NOT_FOUND
 *         for an undeclared channel; SL_CONFIG when a broker already has
 *         the group with other arguments; SL_UNAVAILABLE; SL_IO; SL_NOMEM.
 *
 * Thread safety: any thread.
 */
SL_API sl_status sl_engine_declare_group(sl_engine *eng,
                                         const sl_group_opts *opts,
                                         sl_diag *diag);

/** The group that keeps a dead-letter channel's events: subscribe to or
 * browse "<channel>.<group>.dlq" as this group to read them. */
#define SL_DLQ_GROUP "dlq"

/**
 * The name of a group's dead-letter channel, "<channel>.<group>.dlq".
 *
 * @param[in]  channel the group's channel
 * @param[in]  group   the group
 * @param[out] buf     receives the name, NUL-terminated
 * @param[in]  size    bytes at @p buf
 * @return SL_OK; SL_TOO_LARGE when the name does not fit (@p buf then
 *         holds a truncated name, not to be used).
 *
 * Thread-safety: any thread; touches no engine.
 */
SL_API sl_status sl_dlq_channel_name(const char *channel, const char *group,
                                     char *buf, size_t size);

/* ---- publishing -------------------------------------------------------- */

/** Publish flags. */
enum {
    SL_PUBLISH_NO_DEDUP = 1u << 0, /* replay: deliver even if id is known */
};

/**
 * Called exactly once when the engine has durably accepted the event (SL_OK;
 * a deduplicated republish is SL_OK too) or refused it (SL_FULL,
 * SL_TOO_LARGE, SL_IO, SL_UNAVAILABLE, SL_TIMEOUT when a broker never
 * confirmed, SL_CLOSED at close). Runs on an engine thread or inside
 * sl_engine_publish_async; must not block and must not call back into the
 * engine's publish.
 */
typedef void (*sl_publish_cb)(sl_status st, void *ctx);

/**
 * Publish without waiting for the confirm.
 *
 * @param[in] eng     the engine.
 * @param[in] channel a declared channel; borrowed for the call.
 * @param[in] ev      the event; borrowed: the engine takes its own
 *                    reference (sl_event_ref), so the caller keeps and
 *                    unrefs its own. The event must not be modified
 *                    afterwards.
 * @param[in] flags   SL_PUBLISH_* bits; 0 for none.
 * @param[in] cb      called once with the outcome, only on SL_OK; may be
 *                    NULL.
 * @param[in] ctx     passed to @p cb; borrowed until @p cb runs.
 * @return SL_OK when accepted for confirmation (@p cb will be called);
 *         SL_FULL when the channel is at max_length or max_bytes;
 *         SL_NOT_FOUND for an undeclared channel; SL_TOO_LARGE; SL_INVALID
 *         for a NULL channel or event, or an event without id, source or
 *         type; SL_UNAVAILABLE; SL_CLOSED. On a non-OK return @p cb is not
 *         called.
 *
 * Thread safety: any thread, concurrently.
 */
SL_API sl_status sl_engine_publish_async(sl_engine *eng, const char *channel,
                                         sl_event *ev, unsigned flags,
                                         sl_publish_cb cb, void *ctx);

/**
 * Publish and wait up to @p timeout_ms for the confirm.
 *
 * @p ev is borrowed as in sl_engine_publish_async.
 * @return SL_OK once the engine durably accepted the event; SL_TIMEOUT when
 *         no confirm came in time (the outcome is unknown: publishing the
 *         same id again is absorbed by deduplication); the statuses of
 *         sl_engine_publish_async and of sl_publish_cb; SL_NOMEM.
 *
 * Thread safety: any thread, concurrently; never from inside an
 * sl_publish_cb.
 */
SL_API sl_status sl_engine_publish(sl_engine *eng, const char *channel,
                                   sl_event *ev, unsigned flags,
                                   uint64_t timeout_ms, sl_diag *diag);

/* ---- consuming ------------------------------------------------------- */

/** Options for a subscription; zero is default. */
typedef struct sl_subscribe_opts {
    uint32_t prefetch; /* unacked deliveries held at most; 0 = 10 */
} sl_subscribe_opts;

/**
 * Subscribe to a declared group. Each subscription is one consumer of the
 * group; the group's events are shared among its subscriptions.
 *
 * @param[in]  eng     the engine; must outlive the subscription.
 * @param[in]  channel the channel; borrowed for the call.
 * @param[in]  group   the group; borrowed for the call.
 * @param[in]  opts    options, NULL for the defaults; copied.
 * @param[out] out     the subscription, owned by the caller, who closes it
 *                     with sl_subscription_close; written only on SL_OK.
 * @param[out] diag    optional detail on failure.
 * @return SL_OK; SL_INVALID for a NULL channel, group or out; SL_NOT_FOUND
 *         for an undeclared channel or group; SL_UNAVAILABLE; SL_CLOSED;
 *         SL_NOMEM.
 *
 * Thread safety: any thread.
 */
SL_API sl_status sl_engine_subscribe(sl_engine *eng, const char *channel,
                                     const char *group,
                                     const sl_subscribe_opts *opts,
                                     sl_subscription **out, sl_diag *diag);

/**
 * Take up to @p max deliveries, never more than the free prefetch credit;
 * waits up to @p timeout_ms for the first. Expired events and events past
 * max_attempts are dead-lettered by the engine and never returned.
 *
 * @param[in]  sub        the subscription.
 * @param[out] out        room for @p max deliveries; the first *n are
 *                        written. Each is owned by the caller until it
 *                        settles it (sl_delivery_ack, _retry,
 *                        _dead_letter, _release).
 * @param[in]  max        at least 1.
 * @param[in]  timeout_ms how long to wait for the first delivery.
 * @param[out] n          deliveries written.
 * @return SL_OK with *n >= 1; SL_EMPTY when nothing came in time; SL_FULL
 *         when no credit is free; SL_INVALID for @p max 0 or NULL
 *         pointers; SL_CLOSED after sl_subscription_interrupt or when the
 *         engine closes; SL_UNAVAILABLE while a broker is unreachable.
 *
 * Thread safety: any thread; several threads may fetch from one
 * subscription, sharing its credit.
 */
SL_API sl_status sl_subscription_fetch(sl_subscription *sub, sl_delivery **out,
                                       size_t max, uint64_t timeout_ms,
                                       size_t *n);

/**
 * Wake every fetch waiting on @p sub (they return SL_CLOSED) and refuse new
 * fetches; settling deliveries still works. For a graceful stop.
 *
 * Thread safety: any thread, also while other threads wait in
 * sl_subscription_fetch.
 */
SL_API void sl_subscription_interrupt(sl_subscription *sub);

/**
 * Unsettled deliveries of @p sub (taken by fetch, not yet settled).
 *
 * Thread safety: any thread.
 */
SL_API uint32_t sl_subscription_in_flight(const sl_subscription *sub);

/**
 * Close the subscription and free it: unsettled deliveries are redelivered
 * as after a crash (the attempt counts); settle or release them first for
 * a graceful stop. Deliveries of @p sub must not be used afterwards. NULL
 * is a no-op.
 *
 * Thread safety: any one thread, once no fetch on @p sub is running.
 */
SL_API void sl_subscription_close(sl_subscription *sub);

/** Why an event was dead-lettered. */
typedef enum sl_dead_reason {
    SL_DEAD_REJECTED,
    SL_DEAD_MAX_ATTEMPTS,
    SL_DEAD_EXPIRED,
    /* The broker stopped delivering it at its own delivery limit (the
     * NATS engine's MaxDeliver; docs/engines/nats.md). */
    SL_DEAD_MAX_DELIVERIES,
} sl_dead_reason;

/**
 * Name of a dead-letter reason: "rejected", "max_attempts", "expired",
 * "max_deliveries" (the dlqreason extension of dead letters).
 *
 * @return static text, never NULL ("unknown" out of range).
 *
 * Thread safety: any thread.
 */
SL_API const char *sl_dead_reason_str(sl_dead_reason reason);

/* ---- deliveries --------------------------------------------------------
 *
 * A delivery is owned by the caller of sl_subscription_fetch until it is
 * settled. The accessors borrow it and return borrowed pointers, valid
 * until it is settled. Any thread may read or settle a delivery, one
 * thread at a time.
 */

/**
 * The delivered event: borrowed, valid until the delivery is settled (take
 * a reference with sl_event_ref to keep it longer). Never NULL.
 */
SL_API const sl_event *sl_delivery_event(const sl_delivery *d);

/** 1-based attempt number of this delivery, crashes included. */
SL_API uint32_t sl_delivery_attempt(const sl_delivery *d);

/** The delivery's channel; borrowed, valid until it is settled. */
SL_API const char *sl_delivery_channel(const sl_delivery *d);

/** The delivery's group; borrowed, valid until it is settled. */
SL_API const char *sl_delivery_group(const sl_delivery *d);

/* Settling. Each function takes ownership of *d and sets it to NULL,
 * whatever the status: the delivery is never usable afterwards. SL_CLOSED
 * (or SL_UNAVAILABLE) means the engine lost the delivery; it will be
 * redelivered. Any thread may settle. */

/**
 * Done: the event leaves the group.
 *
 * @param[in,out] d the delivery; taken, *d set to NULL.
 * @return SL_OK; SL_INVALID when @p d or *d is NULL; SL_CLOSED or
 *         SL_UNAVAILABLE when the engine lost it (it comes back); SL_IO.
 */
SL_API sl_status sl_delivery_ack(sl_delivery **d);

/**
 * Ack @p n deliveries, all of one subscription, in one go (one lock or one
 * round trip where the engine can).
 *
 * @param[in,out] ds the deliveries; every ds[i] is taken and set to NULL.
 * @param[in]     n  0 is a no-op.
 * @return SL_OK; else the first failure, after trying all (statuses as
 *         sl_delivery_ack).
 */
SL_API sl_status sl_delivery_ack_many(sl_delivery **ds, size_t n);

/**
 * Redeliver after @p delay_ms without holding prefetch credit meanwhile.
 * The caller decides when attempts are exhausted (then: dead_letter).
 *
 * @param[in,out] d     the delivery; taken, *d set to NULL.
 * @param[in]     error why, for logs and a later dead letter; borrowed for
 *                      the call; may be NULL.
 * @return as sl_delivery_ack.
 */
SL_API sl_status sl_delivery_retry(sl_delivery **d, uint64_t delay_ms,
                                   const char *error);

/**
 * Move to the group's dead-letter channel with reason, attempt count,
 * @p error text and origin (extensions dlqreason, dlqattempts, dlqerror,
 * dlqchannel, dlqgroup, dlqtime, and dlqid: the dead letter's own id).
 *
 * @param[in,out] d     the delivery; taken, *d set to NULL.
 * @param[in]     error borrowed for the call; may be NULL.
 * @return as sl_delivery_ack.
 */
SL_API sl_status sl_delivery_dead_letter(sl_delivery **d, sl_dead_reason reason,
                                         const char *error);

/**
 * Give back unprocessed (graceful shutdown): redelivered at once and the
 * attempt is not counted.
 *
 * @param[in,out] d the delivery; taken, *d set to NULL.
 * @return as sl_delivery_ack.
 */
SL_API sl_status sl_delivery_release(sl_delivery **d);

/* ---- inspection ---------------------------------------------------------- */

/** Counts of a group's events. */
typedef struct sl_depth {
    uint64_t ready;     /* deliverable now */
    uint64_t delayed;   /* waiting for a retry delay */
    uint64_t in_flight; /* delivered, not settled */
} sl_depth;

/**
 * Count a group's events.
 *
 * @param[out] out the counts; written only on SL_OK.
 * @return SL_OK; SL_INVALID for NULL arguments; SL_NOT_FOUND for an
 *         undeclared channel or group; SL_UNAVAILABLE; SL_IO.
 *
 * Thread safety: any thread.
 */
SL_API sl_status sl_engine_depth(sl_engine *eng, const char *channel,
                                 const char *group, sl_depth *out);

/** Called for each event of a browse, on the browsing thread; @p ev is
 * borrowed for the call. Return false to stop. */
typedef bool (*sl_browse_fn)(const sl_event *ev, uint32_t attempts, void *ctx);

/**
 * Visit up to @p max of a group's pending events in order, without
 * delivering them (dead-letter listing).
 *
 * @return SL_OK (also when @p fn stopped early); SL_INVALID for NULL
 *         arguments; SL_NOT_FOUND for an undeclared channel or group;
 *         SL_UNAVAILABLE; SL_IO.
 *
 * Thread safety: any thread; @p fn runs on the calling thread.
 */
SL_API sl_status sl_engine_browse(sl_engine *eng, const char *channel,
                                  const char *group, size_t max,
                                  sl_browse_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
