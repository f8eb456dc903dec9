/* sluice — engines: where channels, groups and deliveries live.
 *
 * An engine is chosen by URL ("embedded:./data", "embedded::memory:",
 * later "amqp://", "nats://", "kafka://"). Every engine gives the same
 * semantics (docs/semantics.md): confirmed publish, bounded prefetch per
 * subscription, ACK / RETRY with delay / REJECT, per-group dead-letter
 * channel "<channel>.<group>.dlq", deadlines, crash redelivery counted as an
 * attempt. The producer and consumer runtimes are built on this interface;
 * applications may also use it directly.
 *
 * Thread safety: every function here may be called from any thread.
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

/** Options for sl_engine_open; zero is default. Copied. */
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
 * ("embedded:./data?sync=full").
 * @return SL_OK; SL_INVALID for an unknown scheme or bad URL; SL_IO when the
 *         store cannot be opened; SL_EXISTS when another process holds an
 *         embedded store.
 */
SL_API sl_status sl_engine_open(const char *url, const sl_engine_opts *opts,
                                sl_engine **out, sl_diag *diag);

/**
 * Check an engine URL without opening anything: its scheme is one this
 * build has, and its engine accepts its syntax, parameters and the files
 * they name (certificates, keys), as sl_engine_open would. Nothing is
 * created and no connection is made.
 * @return SL_OK; SL_INVALID for an unknown scheme or a bad URL; SL_CONFIG
 *         for a file the URL names that cannot be read.
 */
SL_API sl_status sl_engine_check_url(const char *url, sl_diag *diag);

/** Close: pending publishes are committed first. Open subscriptions must be
 * closed before. NULL is a no-op. */
SL_API void sl_engine_close(sl_engine *eng);

/** Short engine name ("embedded"). */
SL_API const char *sl_engine_name(const sl_engine *eng);

/** True while the engine is connected and usable (readiness). */
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

/** Declare (or re-declare identically) a channel. */
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

/** Declare a group; declares its dead-letter channel
 * "<channel>.<group>.dlq" too, which keeps its events in the group "dlq". */
SL_API sl_status sl_engine_declare_group(sl_engine *eng,
                                         const sl_group_opts *opts,
                                         sl_diag *diag);

/* ---- publishing -------------------------------------------------------- */

/** Publish flags. */
enum {
    SL_PUBLISH_NO_DEDUP = 1u << 0, /* replay: deliver even if id is known */
};

/**
 * Called exactly once when the engine has durably accepted the event (SL_OK;
 * a deduplicated republish is SL_OK too) or refused it. Runs on an engine
 * thread or inside sl_engine_publish_async; must not block.
 */
typedef void (*sl_publish_cb)(sl_status st, void *ctx);

/**
 * Publish without waiting for the confirm. The engine takes its own
 * reference to @p ev, which must not be modified afterwards.
 * @return SL_OK when accepted for confirmation (@p cb will be called);
 *         SL_FULL when the channel is at max_length; SL_NOT_FOUND for an
 *         undeclared channel; SL_TOO_LARGE; SL_INVALID for an event without
 *         id, source or type; SL_CLOSED. On a non-OK return @p cb is not
 *         called.
 */
SL_API sl_status sl_engine_publish_async(sl_engine *eng, const char *channel,
                                         sl_event *ev, unsigned flags,
                                         sl_publish_cb cb, void *ctx);

/** Publish and wait up to @p timeout_ms for the confirm (SL_TIMEOUT: the
 * outcome is unknown). */
SL_API sl_status sl_engine_publish(sl_engine *eng, const char *channel,
                                   sl_event *ev, unsigned flags,
                                   uint64_t timeout_ms, sl_diag *diag);

/* ---- consuming ------------------------------------------------------- */

/** Options for a subscription; zero is default. */
typedef struct sl_subscribe_opts {
    uint32_t prefetch; /* unacked deliveries held at most; 0 = 10 */
} sl_subscribe_opts;

/** Subscribe to a declared group. Each subscription is one consumer; closing
 * it without settling its deliveries redelivers them (counted). */
SL_API sl_status sl_engine_subscribe(sl_engine *eng, const char *channel,
                                     const char *group,
                                     const sl_subscribe_opts *opts,
                                     sl_subscription **out, sl_diag *diag);

/**
 * Take up to @p max deliveries, never more than the free prefetch credit;
 * waits up to @p timeout_ms for the first. Expired events and events past
 * max_attempts are dead-lettered by the engine and never returned.
 * @return SL_OK with *n >= 1; SL_EMPTY when nothing came in time;
 *         SL_FULL when no credit is free; SL_CLOSED.
 */
SL_API sl_status sl_subscription_fetch(sl_subscription *sub, sl_delivery **out,
                                       size_t max, uint64_t timeout_ms,
                                       size_t *n);

/** Wake every fetch waiting on @p sub (they return SL_CLOSED) and refuse
 * new fetches; settling deliveries still works. */
SL_API void sl_subscription_interrupt(sl_subscription *sub);

/** Unsettled deliveries of @p sub. */
SL_API uint32_t sl_subscription_in_flight(const sl_subscription *sub);

/** Close: unsettled deliveries are redelivered as after a crash (the
 * attempt counts). NULL is a no-op. */
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

/** "rejected", "max_attempts", "expired", "max_deliveries". */
SL_API const char *sl_dead_reason_str(sl_dead_reason reason);

/* The event of a delivery: valid until the delivery is settled. */
SL_API const sl_event *sl_delivery_event(const sl_delivery *d);
/** 1-based attempt number, crashes included. */
SL_API uint32_t sl_delivery_attempt(const sl_delivery *d);
SL_API const char *sl_delivery_channel(const sl_delivery *d);
SL_API const char *sl_delivery_group(const sl_delivery *d);

/* Settling. Each takes ownership of *d and sets it to NULL, whatever the
 * status. SL_CLOSED: the engine lost the delivery (it will be redelivered). */

/** Done: the event leaves the group. */
SL_API sl_status sl_delivery_ack(sl_delivery **d);

/** Ack @p n deliveries in one go (one lock or one round trip where the
 * engine can). Takes every ds[i] and sets it to NULL. Returns the first
 * failure, after trying all. */
SL_API sl_status sl_delivery_ack_many(sl_delivery **ds, size_t n);

/** Redeliver after @p delay_ms without holding prefetch credit meanwhile.
 * The caller decides when attempts are exhausted (then: dead_letter). */
SL_API sl_status sl_delivery_retry(sl_delivery **d, uint64_t delay_ms,
                                   const char *error);

/** Move to the group's dead-letter channel with reason, attempt count,
 * @p error text and origin (extensions dlqreason, dlqattempts, dlqerror,
 * dlqchannel, dlqgroup, dlqtime, and dlqid: the dead letter's own id). */
SL_API sl_status sl_delivery_dead_letter(sl_delivery **d, sl_dead_reason reason,
                                         const char *error);

/** Give back unprocessed (graceful shutdown): redelivered at once and the
 * attempt is not counted. */
SL_API sl_status sl_delivery_release(sl_delivery **d);

/* ---- inspection ---------------------------------------------------------- */

/** Counts of a group's events. */
typedef struct sl_depth {
    uint64_t ready;     /* deliverable now */
    uint64_t delayed;   /* waiting for a retry delay */
    uint64_t in_flight; /* delivered, not settled */
} sl_depth;

SL_API sl_status sl_engine_depth(sl_engine *eng, const char *channel,
                                 const char *group, sl_depth *out);

/** Called for each event of a browse; return false to stop. */
typedef bool (*sl_browse_fn)(const sl_event *ev, uint32_t attempts,
                             void *ctx);

/** Visit up to @p max of a group's pending events in order, without
 * delivering them (dead-letter listing). */
SL_API sl_status sl_engine_browse(sl_engine *eng, const char *channel,
                                  const char *group, size_t max,
                                  sl_browse_fn fn, void *ctx);

#ifdef __cplusplus
}
#endif
#endif
