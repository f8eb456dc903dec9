/* The consumer runtime: workers that fetch, run the handler and settle.
 *
 * Each worker owns one engine subscription with its share of the prefetch,
 * so the sum of unsettled deliveries never exceeds prefetch and handler
 * concurrency never exceeds the worker count (<= prefetch). A watchdog
 * thread settles deliveries whose handler overran its time as RETRY; the
 * handler's late result is then discarded. Handlers hold their own reference
 * to the event, so a watchdog settle never frees what a handler reads.
 */
#include "sluice/consumer.h"

#include "core/waiter.h"
#include "engine/driver.h"
#include "obs/std_metrics.h"
#include "runtime/inbox.h"
#include "sluice/alloc.h"
#include "sluice/log.h"
#include "sluice/retry.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_PREFETCH 10
#define DEFAULT_HANDLER_TIMEOUT_MS 30000
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_IDEMPOTENCY_TTL_MS (24ull * 3600 * 1000)
#define FETCH_WAIT_MS 200
#define WATCHDOG_TICK_MS 20
/* Pause between fetches while the engine is unavailable. */
#define UNAVAILABLE_BACKOFF_MS 50
/* Acks are sent in batches of up to ACK_BATCH, and never held longer than
 * ACK_LINGER_MS: one engine round trip (or lock) for many deliveries. As
 * large as a worker's fetch (batch[] in worker_main), so that a fetched
 * batch handled within the linger is acked in one call: on NATS, acks in
 * fewer, larger writes cost both the client and the server less. */
#define ACK_BATCH 256
#define ACK_LINGER_MS 5
/* Expected outcomes (a handler's REJECT or RETRY: a card declined, a
 * provider busy) are logged at info, at most LOG_SAMPLE_LINES lines per
 * LOG_SAMPLE_MS per group and outcome: the metrics count every one, the log
 * shows what they look like. A few per window so that a quiet service
 * still logs each one (an event's second retry right after its first). */
#define LOG_SAMPLE_MS 1000
#define LOG_SAMPLE_LINES 5
/* A shared inbox's claim outlives the handler timeout by this much (clock
 * skew between processes, late handler results). */
#define INBOX_LEASE_MARGIN_MS 5000
/* A delivery whose id another process is handling looks again after the
 * other claim's lease, within these bounds. */
#define INBOX_BUSY_MIN_MS 100
#define INBOX_BUSY_MAX_MS 5000

typedef struct worker worker;

/* LOG_SAMPLE_LINES lines per LOG_SAMPLE_MS window for one kind of log
 * line, shared by the workers; a line written carries the count of those
 * left out since the previous one. */
typedef struct log_sampler {
    pthread_mutex_t mu;
    uint64_t window_ms;  /* mono ms the current window began */
    uint32_t lines;      /* written in the current window */
    uint64_t suppressed; /* left out since the last line written */
} log_sampler;

struct sl_handler_ctx {
    sl_consumer *c;
    sl_event *ev; /* own reference */
    uint32_t attempt;
    uint64_t timeout_at_mono; /* ms */
    uint64_t retry_after_ms;  /* 0 = the schedule decides */
    bool has_retry_after;
    void *db;
    char error[512];
};

struct worker {
    sl_consumer *c;
    pthread_t thread;
    bool started;
    sl_subscription *sub;
    uint32_t share;     /* of the prefetch */
    pthread_mutex_t mu; /* cur / abandoned, shared with the watchdog */
    sl_delivery *cur;
    uint64_t cur_timeout_at; /* mono ms */
    bool abandoned;
    bool exited;
    sl_delivery *acks[ACK_BATCH]; /* handled, ack not yet sent */
    size_t nacks;
    uint64_t first_ack_mono;
};

struct sl_consumer {
    sl_engine *eng;
    char *channel;
    char *group;
    char *service;
    sl_status_report_fn report; /* status projection; NULL = none */
    void *report_ctx;
    char *status_start, *status_ack, *status_dead;
    uint32_t prefetch;
    uint32_t concurrency;
    uint64_t handler_timeout_ms;
    uint32_t max_attempts;
    sl_handler_fn handler;
    void *handler_ctx;
    bool transactional;
    sl_producer *producer;
    sl_retry_schedule *retry;
    sl_inbox *inbox;
    const sl_clock *clock; /* NULL = the system's clocks */

    worker *workers;
    pthread_t watchdog;
    bool watchdog_started;
    atomic_bool stopping;
    atomic_bool signalled; /* sl_consumer_signal_stop ran */
    bool started;
    bool stopped;
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a worker exited / the watchdog should stop */
    uint32_t live_workers;

    _Atomic uint64_t acked, retried, rejected, exhausted, expired, timed_out,
        duplicates, released;
    _Atomic uint32_t running;
    /* The channels handlers published to (sl_consumer_emits): written
     * once each under emits_mu, then published by nemits (release), so
     * the publish path reads them without the lock. */
    char *emits[SL_CONSUMER_MAX_EMITS];
    _Atomic size_t nemits;
    pthread_mutex_t emits_mu;
    /* The log lines of expected outcomes, sampled (LOG_SAMPLE_MS). */
    log_sampler rejects_logged, retries_logged;

    /* Metrics, when opts.metrics was set: series resolved once, so the
     * hot path only adds (every update accepts NULL). */
    sl_metrics *reg;
    sl_std_metrics sm;
    struct {
        sl_metric *acked, *retried, *rejected, *exhausted, *expired,
            *duplicates, *released, *timed_out, *duration, *in_flight;
    } m;
};

const char *sl_outcome_str(sl_outcome outcome)
{
    switch (outcome) {
    case SL_OUTCOME_ACK:
        return "ack";
    case SL_OUTCOME_RETRY:
        return "retry";
    case SL_OUTCOME_REJECT:
        return "reject";
    }
    return "unknown";
}

/* ---- the handler's view ----------------------------------------------------
 */

const sl_event *sl_handler_event(const sl_handler_ctx *ctx)
{
    return ctx->ev;
}

uint32_t sl_handler_attempt(const sl_handler_ctx *ctx)
{
    return ctx->attempt;
}

/* Intervals and handler timeouts: the consumer's clock, else the monotonic
 * one. */
static uint64_t mono_ms(const sl_consumer *c)
{
    return sl__clock_or_mono_ms(c->clock);
}

/* Event deadlines and inbox times: the consumer's clock, else the wall
 * clock. */
static uint64_t wall_ms(const sl_consumer *c)
{
    return sl__clock_or_wall_ms(c->clock);
}

uint64_t sl_handler_remaining_ms(const sl_handler_ctx *ctx)
{
    uint64_t now = mono_ms(ctx->c);
    return ctx->timeout_at_mono > now ? ctx->timeout_at_mono - now : 0;
}

const char *sl_handler_group(const sl_handler_ctx *ctx)
{
    return ctx->c->group;
}

const char *sl_handler_channel(const sl_handler_ctx *ctx)
{
    return ctx->c->channel;
}

void sl_handler_set_error(sl_handler_ctx *ctx, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->error, sizeof ctx->error, fmt, ap);
    va_end(ap);
}

void sl_handler_retry_after(sl_handler_ctx *ctx, uint64_t delay_ms)
{
    ctx->retry_after_ms = delay_ms;
    ctx->has_retry_after = true;
}

/* Remember that this consumer's handlers publish to @p channel: the
 * service learns its pipeline's stages from it (admission by wait looks
 * at every group downstream of a route). */
static void note_emit(sl_consumer *c, const char *channel)
{
    size_t n = atomic_load_explicit(&c->nemits, memory_order_acquire);
    for (size_t i = 0; i < n; i++) {
        if (strcmp(c->emits[i], channel) == 0) {
            return;
        }
    }
    pthread_mutex_lock(&c->emits_mu);
    n = atomic_load_explicit(&c->nemits, memory_order_relaxed);
    bool known = false;
    for (size_t i = 0; i < n && !known; i++) {
        known = strcmp(c->emits[i], channel) == 0;
    }
    if (!known && n < SL_CONSUMER_MAX_EMITS &&
        (c->emits[n] = sl_strdup(channel)) != NULL) {
        atomic_store_explicit(&c->nemits, n + 1, memory_order_release);
    }
    pthread_mutex_unlock(&c->emits_mu);
}

size_t sl_consumer_emits(sl_consumer *c, const char **out, size_t max)
{
    size_t n = atomic_load_explicit(&c->nemits, memory_order_acquire);
    for (size_t i = 0; i < n && i < max; i++) {
        out[i] = c->emits[i];
    }
    return n < max ? n : max;
}

sl_status sl_handler_publish(sl_handler_ctx *ctx, const char *channel,
                             sl_event *ev, sl_diag *diag)
{
    if (channel != NULL) {
        note_emit(ctx->c, channel);
    }
    if (ctx->c->producer == NULL) {
        return sl_diag_set(diag, SL_UNSUPPORTED,
                           "consumer %s has no producer to publish with",
                           ctx->c->group);
    }
    sl_status st = sl_event_derive(ev, ctx->ev);
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "deriving the child event: %s",
                           sl_status_str(st));
    }
    return sl_producer_publish(ctx->c->producer, channel, ev, diag);
}

void *sl_handler_db(sl_handler_ctx *ctx)
{
    return ctx->db;
}

sl_metrics *sl_handler_metrics(sl_handler_ctx *ctx)
{
    return ctx->c->reg;
}

/* ---- settling
 * ----------------------------------------------------------------- */

/* The log line of one delivery; @p suppressed (when not 0) counts the
 * lines of the same kind a sampler left out before this one. */
static void log_delivery_n(sl_consumer *c, sl_log_level level, const char *msg,
                           const sl_event *ev, uint32_t attempt,
                           const char *error, uint64_t duration_ms,
                           uint64_t suppressed)
{
    if (!sl_log_enabled(level)) {
        return;
    }
    char att[16], dur[24], sup[24], trace[33] = "";
    char span[17];
    snprintf(att, sizeof att, "%" PRIu32, attempt);
    snprintf(dur, sizeof dur, "%" PRIu64, duration_ms);
    snprintf(sup, sizeof sup, "%" PRIu64, suppressed);
    const char *tp = sl_event_get(ev, SL_ATTR_TRACEPARENT);
    if (tp != NULL) {
        sl_traceparent_parse(tp, trace, span);
    }
    sl_log_field f[] = {
        {"service", c->service},
        {"group", c->group},
        {"channel", c->channel},
        {"event_id", sl_event_id(ev)},
        {"type", sl_event_type(ev)},
        {"trace_id", trace[0] ? trace : NULL},
        {"attempt", att},
        {"duration_ms", dur},
        {"error", error && error[0] ? error : NULL},
        {"suppressed", suppressed ? sup : NULL},
    };
    sl_log_fields(level, "consumer", msg, f, sizeof f / sizeof f[0]);
}

static void log_delivery(sl_consumer *c, sl_log_level level, const char *msg,
                         const sl_event *ev, uint32_t attempt,
                         const char *error, uint64_t duration_ms)
{
    log_delivery_n(c, level, msg, ev, attempt, error, duration_ms, 0);
}

/* An expected outcome's line, at info, at most once per LOG_SAMPLE_MS. */
static void log_sampled(sl_consumer *c, log_sampler *ls, const char *msg,
                        const sl_event *ev, uint32_t attempt, const char *error,
                        uint64_t duration_ms)
{
    if (!sl_log_enabled(SL_LOG_INFO)) {
        return;
    }
    uint64_t now = mono_ms(c);
    uint64_t suppressed = 0;
    pthread_mutex_lock(&ls->mu);
    if (ls->lines == 0 || now - ls->window_ms >= LOG_SAMPLE_MS) {
        ls->window_ms = now;
        ls->lines = 0;
    }
    bool write = ls->lines < LOG_SAMPLE_LINES;
    if (write) {
        ls->lines++;
        suppressed = ls->suppressed;
        ls->suppressed = 0;
    } else {
        ls->suppressed++;
    }
    pthread_mutex_unlock(&ls->mu);
    if (write) {
        log_delivery_n(c, SL_LOG_INFO, msg, ev, attempt, error, duration_ms,
                       suppressed);
    }
}

/* At stop: the count of lines a sampler left out since its last line, so
 * that the log adds up to the metrics. */
static void log_sampler_flush(sl_consumer *c, log_sampler *ls, const char *msg)
{
    pthread_mutex_lock(&ls->mu);
    uint64_t n = ls->suppressed;
    ls->suppressed = 0;
    pthread_mutex_unlock(&ls->mu);
    if (n == 0) {
        return;
    }
    char sup[24];
    snprintf(sup, sizeof sup, "%" PRIu64, n);
    sl_log_field f[] = {
        {"service", c->service},
        {"group", c->group},
        {"channel", c->channel},
        {"suppressed", sup},
    };
    sl_log_fields(SL_LOG_INFO, "consumer", msg, f, sizeof f / sizeof f[0]);
}

/* Report @p status for the request behind @p ev (its correlationid, or
 * its own id) to the status projection. */
static void report(sl_consumer *c, const sl_event *ev, const char *status,
                   const char *reason, const char *error)
{
    if (c->report == NULL || status == NULL) {
        return;
    }
    const char *key = sl_event_get(ev, SL_ATTR_CORRELATIONID);
    char detail[600];
    if (reason != NULL) {
        snprintf(detail, sizeof detail, "%s in %s: %s", reason, c->group,
                 error ? error : "");
    }
    c->report(key ? key : sl_event_id(ev), status, reason ? detail : NULL,
              c->report_ctx);
}

/* RETRY, or the dead letter when attempts are used up. */
static void settle_retry(sl_consumer *c, sl_delivery **d, uint32_t attempt,
                         const sl_handler_ctx *ctx, const char *error)
{
    if (attempt >= c->max_attempts) {
        atomic_fetch_add(&c->exhausted, 1);
        sl_counter_inc(c->m.exhausted);
        report(c, sl_delivery_event(*d), c->status_dead, "max_attempts", error);
        sl_delivery_dead_letter(d, SL_DEAD_MAX_ATTEMPTS, error);
        return;
    }
    uint64_t delay = ctx != NULL && ctx->has_retry_after
                         ? ctx->retry_after_ms
                         : sl_retry_delay_ms(c->retry, attempt);
    atomic_fetch_add(&c->retried, 1);
    sl_counter_inc(c->m.retried);
    sl_delivery_retry(d, delay, error);
}

static void flush_acks(worker *w)
{
    if (w->nacks > 0) {
        sl_delivery_ack_many(w->acks, w->nacks);
        w->nacks = 0;
    }
}

/* Queue an ack; the id is already in the inbox if the group has one. */
static void queue_ack(worker *w, sl_delivery *d, uint64_t now_mono)
{
    if (w->nacks == 0) {
        w->first_ack_mono = now_mono;
    }
    w->acks[w->nacks++] = d;
    if (w->nacks == ACK_BATCH) {
        flush_acks(w);
    }
}

static void process(worker *w, sl_delivery *d)
{
    sl_consumer *c = w->c;
    const sl_event *dev = sl_delivery_event(d);
    uint32_t attempt = sl_delivery_attempt(d);
    uint64_t deadline = sl_event_deadline_ms(dev);
    uint64_t start = mono_ms(c);
    /* The wall clock only matters for deadlines and inbox times. */
    uint64_t now = deadline != 0 || c->inbox != NULL ? wall_ms(c) : 0;
    if (w->nacks > 0 && start - w->first_ack_mono >= ACK_LINGER_MS) {
        flush_acks(w);
    }

    if (deadline != 0 && deadline <= now) {
        atomic_fetch_add(&c->expired, 1);
        sl_counter_inc(c->m.expired);
        log_delivery(c, SL_LOG_WARN, "expired before handling", dev, attempt,
                     NULL, 0);
        report(c, dev, c->status_dead, "expired", "deadline passed");
        sl_delivery_dead_letter(&d, SL_DEAD_EXPIRED,
                                "deadline passed before handling");
        return;
    }
    /* Claim the id before the handler: a shared store (JetStream KV)
     * lets exactly one of two deliveries of one id racing in two
     * processes run its handler. */
    bool claimed = false;
    uint64_t claim_token = 0;
    if (c->inbox != NULL && !c->transactional) {
        sl_inbox_claim seen = SL_INBOX_NEW;
        uint64_t retry_ms = 0;
        sl_status ist =
            sl__inbox_claim(c->inbox, c->group, sl_event_id(dev),
                            c->handler_timeout_ms + INBOX_LEASE_MARGIN_MS, now,
                            &seen, &claim_token, &retry_ms);
        if (ist != SL_OK) {
            char err[128];
            snprintf(err, sizeof err, "idempotency inbox unavailable: %s",
                     sl_status_str(ist));
            log_delivery(c, SL_LOG_WARN, "idempotency inbox unavailable", dev,
                         attempt, err, 0);
            settle_retry(c, &d, attempt, NULL, err);
            return;
        }
        if (seen == SL_INBOX_DONE) {
            atomic_fetch_add(&c->duplicates, 1);
            sl_counter_inc(c->m.duplicates);
            queue_ack(w, d, start);
            return;
        }
        if (seen == SL_INBOX_BUSY) {
            /* Another delivery of the id is being handled (a duplicate
             * in another process): look again when its claim ends, not
             * counted as an attempt. */
            if (retry_ms < INBOX_BUSY_MIN_MS) {
                retry_ms = INBOX_BUSY_MIN_MS;
            } else if (retry_ms > INBOX_BUSY_MAX_MS) {
                retry_ms = INBOX_BUSY_MAX_MS;
            }
            atomic_fetch_add(&c->released, 1);
            sl_counter_inc(c->m.released);
            sl__delivery_release_after(&d, retry_ms);
            return;
        }
        claimed = true;
    }

    sl_handler_ctx ctx = {.c = c, .attempt = attempt};
    ctx.ev = sl_event_ref((sl_event *)dev);
    report(c, ctx.ev, c->status_start, NULL, NULL);
    uint64_t budget = c->handler_timeout_ms;
    if (deadline != 0 && deadline - now < budget) {
        budget = deadline - now;
    }
    ctx.timeout_at_mono = start + budget;

    pthread_mutex_lock(&w->mu);
    w->cur = d;
    w->cur_timeout_at = ctx.timeout_at_mono;
    w->abandoned = false;
    pthread_mutex_unlock(&w->mu);
    atomic_fetch_add(&c->running, 1);
    double started_s = c->m.duration != NULL ? sl__obs_now_s() : 0;

    sl_outcome outcome;
    bool in_tx = false;
    bool duplicate = false;
    if (c->inbox != NULL && c->transactional) {
        if (sl__inbox_begin(c->inbox) != SL_OK) {
            outcome = SL_OUTCOME_RETRY;
            snprintf(ctx.error, sizeof ctx.error, "idempotency inbox failed");
        } else if (sl__inbox_seen_in_tx(c->inbox, c->group, sl_event_id(dev),
                                        now)) {
            sl__inbox_rollback(c->inbox);
            duplicate = true;
            outcome = SL_OUTCOME_ACK;
        } else {
            in_tx = true;
            ctx.db = sl__inbox_db(c->inbox);
            outcome = c->handler(&ctx, c->handler_ctx);
        }
    } else {
        outcome = c->handler(&ctx, c->handler_ctx);
    }
    /* Record the id before the engine ack: a crash in between redelivers
     * and the inbox then absorbs the duplicate. */
    if (in_tx) {
        if (outcome == SL_OUTCOME_ACK) {
            if (sl__inbox_commit_record(c->inbox, c->group, sl_event_id(dev),
                                        wall_ms(c)) != SL_OK) {
                outcome = SL_OUTCOME_RETRY;
                snprintf(ctx.error, sizeof ctx.error,
                         "idempotency inbox commit failed");
            }
        } else {
            sl__inbox_rollback(c->inbox);
        }
    } else if (claimed) {
        /* ACK records the id; anything else gives the claim back. */
        if (sl__inbox_finish(c->inbox, c->group, sl_event_id(dev), claim_token,
                             outcome == SL_OUTCOME_ACK, wall_ms(c)) != SL_OK &&
            outcome == SL_OUTCOME_ACK) {
            outcome = SL_OUTCOME_RETRY;
            snprintf(ctx.error, sizeof ctx.error,
                     "idempotency inbox write failed");
        }
    }
    atomic_fetch_sub(&c->running, 1);
    if (c->m.duration != NULL && !duplicate) {
        sl_histogram_observe(c->m.duration, sl__obs_now_s() - started_s);
    }

    pthread_mutex_lock(&w->mu);
    bool abandoned = w->abandoned;
    w->cur = NULL;
    w->abandoned = false;
    pthread_mutex_unlock(&w->mu);

    /* Durations only for the logs that print them. */
    uint64_t took = outcome != SL_OUTCOME_ACK || sl_log_enabled(SL_LOG_DEBUG)
                        ? mono_ms(c) - start
                        : 0;
    if (abandoned) {
        /* The watchdog (or the drain) settled it already. */
        log_delivery(c, SL_LOG_WARN, "late handler result discarded", ctx.ev,
                     attempt, NULL, took);
    } else if (duplicate) {
        atomic_fetch_add(&c->duplicates, 1);
        sl_counter_inc(c->m.duplicates);
        queue_ack(w, d, start);
    } else {
        switch (outcome) {
        case SL_OUTCOME_ACK:
            atomic_fetch_add(&c->acked, 1);
            sl_counter_inc(c->m.acked);
            report(c, ctx.ev, c->status_ack, NULL, NULL);
            queue_ack(w, d, start);
            log_delivery(c, SL_LOG_DEBUG, "handled", ctx.ev, attempt, NULL,
                         took);
            break;
        case SL_OUTCOME_RETRY:
            log_sampled(c, &c->retries_logged, "handler asked to retry", ctx.ev,
                        attempt, ctx.error, took);
            settle_retry(c, &d, attempt, &ctx,
                         ctx.error[0] ? ctx.error : "handler returned RETRY");
            break;
        case SL_OUTCOME_REJECT:
            atomic_fetch_add(&c->rejected, 1);
            sl_counter_inc(c->m.rejected);
            log_sampled(c, &c->rejects_logged, "handler rejected", ctx.ev,
                        attempt, ctx.error, took);
            report(c, ctx.ev, c->status_dead, "rejected",
                   ctx.error[0] ? ctx.error : "handler returned REJECT");
            sl_delivery_dead_letter(&d, SL_DEAD_REJECTED,
                                    ctx.error[0] ? ctx.error
                                                 : "handler returned REJECT");
            break;
        }
    }
    sl_event_unref(ctx.ev);
}

/* Wait UNAVAILABLE_BACKOFF_MS on the clock, or until a stop. */
static void back_off(sl_consumer *c)
{
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &c->cv, &c->mu, c->clock);
    pthread_mutex_lock(&c->mu);
    uint64_t until = mono_ms(c) + UNAVAILABLE_BACKOFF_MS;
    while (!atomic_load(&c->stopping) && !sl__clock_wait(&cw, until)) {
    }
    pthread_mutex_unlock(&c->mu);
    sl__clock_wait_end(&cw);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    sl_consumer *c = w->c;
    sl_delivery *batch[ACK_BATCH];
    size_t cap = w->share < ACK_BATCH ? w->share : ACK_BATCH;

    while (!atomic_load(&c->stopping)) {
        size_t n = 0;
        sl_status st =
            sl_subscription_fetch(w->sub, batch, cap, FETCH_WAIT_MS, &n);
        if (st == SL_EMPTY) {
            continue;
        }
        if (st == SL_CLOSED) {
            break;
        }
        if (st != SL_OK) {
            /* The engine is unavailable: back off instead of spinning
             * (a stop ends the back-off). */
            back_off(c);
            continue;
        }
        size_t i = 0;
        for (; i < n && !atomic_load(&c->stopping); i++) {
            process(w, batch[i]);
        }
        flush_acks(w);
        for (; i < n; i++) {
            /* Fetched but never started: give back, not an attempt. */
            atomic_fetch_add(&c->released, 1);
            sl_counter_inc(c->m.released);
            sl_delivery_release(&batch[i]);
        }
    }
    pthread_mutex_lock(&c->mu);
    w->exited = true;
    c->live_workers--;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* Settle deliveries whose handler overran its time. */
static void *watchdog_main(void *arg)
{
    sl_consumer *c = arg;
    /* A tick on the clock: a manual clock's advance wakes it at once. */
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &c->cv, &c->mu, c->clock);
    pthread_mutex_lock(&c->mu);
    while (!c->stopped) {
        sl__clock_wait(&cw, mono_ms(c) + WATCHDOG_TICK_MS);
        pthread_mutex_unlock(&c->mu);
        uint64_t now = mono_ms(c);
        for (uint32_t i = 0; i < c->concurrency; i++) {
            worker *w = &c->workers[i];
            sl_delivery *d = NULL;
            pthread_mutex_lock(&w->mu);
            if (w->cur != NULL && !w->abandoned && now >= w->cur_timeout_at) {
                d = w->cur;
                w->abandoned = true;
            }
            pthread_mutex_unlock(&w->mu);
            if (d != NULL) {
                uint32_t attempt = sl_delivery_attempt(d);
                atomic_fetch_add(&c->timed_out, 1);
                sl_counter_inc(c->m.timed_out);
                log_delivery(c, SL_LOG_WARN, "handler timed out",
                             sl_delivery_event(d), attempt, NULL,
                             c->handler_timeout_ms);
                settle_retry(c, &d, attempt, NULL, "handler timed out");
            }
        }
        pthread_mutex_lock(&c->mu);
    }
    pthread_mutex_unlock(&c->mu);
    sl__clock_wait_end(&cw);
    return NULL;
}

/* ---- lifecycle
 * ------------------------------------------------------------------ */

static void collect(sl_metrics *reg, void *ctx)
{
    sl_consumer *c = ctx;
    sl_gauge_set(c->m.in_flight, (double)atomic_load(&c->running));
}

/* Resolve the consumer's series once; they live as long as the registry. */
static sl_status bind_metrics(sl_consumer *c, sl_metrics *reg, sl_diag *diag)
{
    sl_status st = sl__std_metrics_declare(reg, &c->sm, diag);
    if (st != SL_OK) {
        return st;
    }
    sl_metric_family *out = c->sm.consumed;
    const char *ch = c->channel;
    const char *g = c->group;
    c->m.acked = sl_metric_get(out, SL_LABELS(ch, g, "ack"));
    c->m.retried = sl_metric_get(out, SL_LABELS(ch, g, "retry"));
    c->m.rejected = sl_metric_get(out, SL_LABELS(ch, g, "rejected"));
    c->m.exhausted = sl_metric_get(out, SL_LABELS(ch, g, "max_attempts"));
    c->m.expired = sl_metric_get(out, SL_LABELS(ch, g, "expired"));
    c->m.duplicates = sl_metric_get(out, SL_LABELS(ch, g, "duplicate"));
    c->m.released = sl_metric_get(out, SL_LABELS(ch, g, "released"));
    c->m.timed_out = sl_metric_get(c->sm.handler_timeouts, SL_LABELS(ch, g));
    c->m.duration = sl_metric_get(c->sm.handler_seconds, SL_LABELS(ch, g));
    c->m.in_flight = sl_metric_get(c->sm.handlers_in_flight, SL_LABELS(ch, g));
    if ((st = sl_metrics_add_collector(reg, collect, c)) != SL_OK) {
        return st;
    }
    c->reg = reg;
    return SL_OK;
}

sl_status sl_consumer_create(sl_engine *eng, const sl_consumer_opts *opts,
                             sl_consumer **out, sl_diag *diag)
{
    if (eng == NULL || opts == NULL || opts->channel == NULL ||
        opts->group == NULL || opts->handler == NULL || out == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "consumer needs an engine, channel, group and "
                           "handler");
    }
    sl_consumer *c = sl_calloc(1, sizeof *c);
    if (c == NULL) {
        return SL_NOMEM;
    }
    sl_status st = SL_OK;
    pthread_mutex_init(&c->mu, NULL);
    pthread_mutex_init(&c->emits_mu, NULL);
    sl__cond_init_mono(&c->cv);
    pthread_mutex_init(&c->rejects_logged.mu, NULL);
    pthread_mutex_init(&c->retries_logged.mu, NULL);
    c->eng = eng;
    c->clock = opts->clock;
    c->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    c->concurrency = opts->concurrency ? opts->concurrency : c->prefetch;
    if (c->concurrency > c->prefetch) {
        st = sl_diag_set(diag, SL_INVALID,
                         "consumer %s: concurrency %" PRIu32
                         " exceeds prefetch %" PRIu32,
                         opts->group, c->concurrency, c->prefetch);
        goto fail;
    }
    c->handler_timeout_ms = opts->handler_timeout_ms
                                ? opts->handler_timeout_ms
                                : DEFAULT_HANDLER_TIMEOUT_MS;
    c->max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    c->handler = opts->handler;
    c->handler_ctx = opts->handler_ctx;
    c->transactional = opts->transactional;
    c->producer = opts->producer;
    c->channel = sl_strdup(opts->channel);
    c->group = sl_strdup(opts->group);
    c->service = sl_strdup(opts->service ? opts->service : "sluice");
    c->report = opts->report;
    c->report_ctx = opts->report_ctx;
    if (c->report != NULL) {
        c->status_start = sl_strdup(opts->status_start);
        c->status_ack = sl_strdup(opts->status_ack);
        c->status_dead = sl_strdup(opts->status_dead);
    }
    if (c->channel == NULL || c->group == NULL || c->service == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    if (opts->metrics != NULL &&
        (st = bind_metrics(c, opts->metrics, diag)) != SL_OK) {
        goto fail;
    }
    sl_retry_opts ro = {.ladder_ms = opts->backoff_ms,
                        .ladder_len = opts->backoff_len};
    if ((st = sl_retry_create(&ro, &c->retry)) != SL_OK) {
        sl_diag_set(diag, st, "consumer %s: bad backoff", opts->group);
        goto fail;
    }
    /* The delays before attempts 2..max_attempts, for a broker that
     * redelivers after a crash on its own schedule. */
    uint64_t schedule[32];
    size_t schedule_len = c->max_attempts < 32 ? c->max_attempts : 32;
    for (size_t i = 0; i < schedule_len; i++) {
        schedule[i] = sl_retry_delay_ms(c->retry, (uint32_t)i + 1);
    }
    sl_group_opts go = {.channel = opts->channel,
                        .name = opts->group,
                        .max_attempts = c->max_attempts,
                        .backoff_ms = schedule,
                        .backoff_len = schedule_len};
    if ((st = sl_engine_declare_group(eng, &go, diag)) != SL_OK) {
        goto fail;
    }
    if (opts->inbox_path != NULL &&
        (st = sl__inbox_open_for(
             eng, opts->inbox_path, opts->channel, opts->group,
             opts->idempotency_ttl_ms ? opts->idempotency_ttl_ms
                                      : DEFAULT_IDEMPOTENCY_TTL_MS,
             &c->inbox, diag)) != SL_OK) {
        goto fail;
    }
    if (c->inbox != NULL && c->transactional && !sl__inbox_has_db(c->inbox)) {
        st = sl_diag_set(diag, SL_INVALID,
                         "consumer %s: a transactional handler commits its "
                         "effects in the inbox's SQLite transaction; inbox "
                         "%s has none",
                         opts->group, opts->inbox_path);
        goto fail;
    }
    c->workers = sl_calloc(c->concurrency, sizeof *c->workers);
    if (c->workers == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    for (uint32_t i = 0; i < c->concurrency; i++) {
        worker *w = &c->workers[i];
        w->c = c;
        pthread_mutex_init(&w->mu, NULL);
        /* Spread the prefetch; the shares add up to exactly prefetch. */
        w->share = c->prefetch / c->concurrency +
                   (i < c->prefetch % c->concurrency ? 1 : 0);
        sl_subscribe_opts so = {.prefetch = w->share};
        if ((st = sl_engine_subscribe(eng, c->channel, c->group, &so, &w->sub,
                                      diag)) != SL_OK) {
            goto fail;
        }
    }
    *out = c;
    return SL_OK;
fail:
    sl_consumer_destroy(c);
    return st;
}

sl_status sl_consumer_start(sl_consumer *c)
{
    if (c->started) {
        return SL_INVALID;
    }
    c->started = true;
    for (uint32_t i = 0; i < c->concurrency; i++) {
        worker *w = &c->workers[i];
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            atomic_store(&c->stopping, true);
            return SL_INTERNAL;
        }
        w->started = true;
        pthread_mutex_lock(&c->mu);
        c->live_workers++;
        pthread_mutex_unlock(&c->mu);
    }
    if (pthread_create(&c->watchdog, NULL, watchdog_main, c) != 0) {
        return SL_INTERNAL;
    }
    c->watchdog_started = true;
    return SL_OK;
}

void sl_consumer_signal_stop(sl_consumer *c)
{
    if (atomic_exchange(&c->signalled, true)) {
        return;
    }
    /* Interrupt the subscriptions before any worker can see `stopping`
     * and release what it fetched: a broker engine cancels its consumer
     * in the interrupt, and the cancel must reach the broker first, or
     * the broker redelivers (and counts) what was in transit. */
    for (uint32_t i = 0; i < c->concurrency; i++) {
        if (c->workers[i].sub != NULL) {
            sl_subscription_interrupt(c->workers[i].sub);
        }
    }
    atomic_store(&c->stopping, true);
    /* Wake the workers that back off from an unavailable engine. */
    pthread_mutex_lock(&c->mu);
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

sl_status sl_consumer_stop(sl_consumer *c, uint64_t drain_timeout_ms)
{
    if (c->stopped || !c->started) {
        c->stopped = true;
        return SL_OK;
    }
    sl_consumer_signal_stop(c);
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &c->cv, &c->mu, c->clock);
    pthread_mutex_lock(&c->mu);
    uint64_t until = mono_ms(c) + drain_timeout_ms;
    while (c->live_workers > 0 && !sl__clock_wait(&cw, until)) {
    }
    bool all_done = c->live_workers == 0;
    c->stopped = true;
    pthread_cond_broadcast(&c->cv);
    pthread_mutex_unlock(&c->mu);
    sl__clock_wait_end(&cw);
    if (c->watchdog_started) {
        pthread_join(c->watchdog, NULL);
        c->watchdog_started = false;
    }
    log_sampler_flush(c, &c->rejects_logged, "handler rejected");
    log_sampler_flush(c, &c->retries_logged, "handler asked to retry");
    if (!all_done) {
        /* Handlers still running past the drain: give their deliveries
         * back for redelivery; their results will be discarded. */
        for (uint32_t i = 0; i < c->concurrency; i++) {
            worker *w = &c->workers[i];
            sl_delivery *d = NULL;
            pthread_mutex_lock(&w->mu);
            if (w->cur != NULL && !w->abandoned) {
                d = w->cur;
                w->abandoned = true;
            }
            pthread_mutex_unlock(&w->mu);
            if (d != NULL) {
                atomic_fetch_add(&c->released, 1);
                sl_counter_inc(c->m.released);
                sl_delivery_release(&d);
            }
        }
    }
    return all_done ? SL_OK : SL_TIMEOUT;
}

void sl_consumer_get_stats(sl_consumer *c, sl_consumer_stats *out)
{
    *out = (sl_consumer_stats){
        .acked = atomic_load(&c->acked),
        .retried = atomic_load(&c->retried),
        .rejected = atomic_load(&c->rejected),
        .exhausted = atomic_load(&c->exhausted),
        .expired = atomic_load(&c->expired),
        .timed_out = atomic_load(&c->timed_out),
        .duplicates = atomic_load(&c->duplicates),
        .released = atomic_load(&c->released),
        .in_flight = atomic_load(&c->running),
    };
}

void sl_consumer_destroy(sl_consumer *c)
{
    if (c == NULL) {
        return;
    }
    if (c->started && !c->stopped) {
        sl_consumer_stop(c, 25000);
    }
    if (c->workers != NULL) {
        for (uint32_t i = 0; i < c->concurrency; i++) {
            worker *w = &c->workers[i];
            if (w->started) {
                pthread_join(w->thread, NULL);
            }
            sl_subscription_close(w->sub);
            pthread_mutex_destroy(&w->mu);
        }
    }
    if (c->reg != NULL) {
        sl_metrics_remove_collector(c->reg, collect, c);
    }
    sl_free(c->workers);
    sl__inbox_close(c->inbox);
    sl_retry_destroy(c->retry);
    sl_free(c->channel);
    sl_free(c->group);
    sl_free(c->service);
    sl_free(c->status_start);
    sl_free(c->status_ack);
    sl_free(c->status_dead);
    for (size_t i = 0; i < atomic_load(&c->nemits); i++) {
        sl_free(c->emits[i]);
    }
    pthread_mutex_destroy(&c->emits_mu);
    pthread_cond_destroy(&c->cv);
    pthread_mutex_destroy(&c->mu);
    pthread_mutex_destroy(&c->rejects_logged.mu);
    pthread_mutex_destroy(&c->retries_logged.mu);
    sl_free(c);
}
