/* The producer: a window of unconfirmed publishes, a publish timeout, an
 * optional token bucket and an optional circuit breaker.
 *
 * The window count and the counters are atomics so that the common path —
 * room in the window, no bucket, no breaker — takes no lock: a publish and
 * its confirm each touch one atomic. Threads that must wait (window full,
 * bucket empty, flush) sleep on `cv` under `mu`, and a confirm takes the
 * lock to wake them only when someone is waiting.
 */
#include "sluice/producer.h"

#include "core/waiter.h"
#include "engine/driver.h"
#include "obs/std_metrics.h"
#include "sluice/alloc.h"
#include "sluice/token_bucket.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>

#define DEFAULT_MAX_IN_FLIGHT 1000
#define DEFAULT_PUBLISH_TIMEOUT_MS 5000
/* How often a publish blocked on a full channel tries again. */
#define FULL_RETRY_MS 5
/* Longest sleep before a waiter re-checks the window by itself. */
#define WAIT_SLICE_MS 10

struct sl_producer {
    sl_engine *eng;
    uint32_t max_in_flight;
    uint64_t timeout_ms;
    const sl_clock *clock;
    sl_token_bucket *bucket; /* guarded by mu */
    sl_breaker *brk;         /* internally locked */
    pthread_mutex_t mu;
    pthread_cond_t cv;        /* a window slot was freed */
    _Atomic uint32_t waiters; /* threads asleep on cv */
    _Atomic uint32_t in_flight;
    _Atomic uint64_t published, failed, full, rate_limited, breaker_open;
    /* Metrics, when opts.metrics was set (reg != NULL). */
    sl_metrics *reg;
    sl_std_metrics sm;
    sl_breaker_change_fn user_on_change;
    void *user_on_change_ctx;
};

/* Carries one publish from the window to its confirm. */
typedef struct pending {
    sl_producer *p;
    sl_publish_cb cb;
    void *ctx;
    uint64_t start_ms; /* for the breaker's slow-call rule */
    sl_metric *m_ok, *m_failed, *m_confirm; /* NULL without metrics */
    double start_s;
} pending;

/* The breaker's state changes, into metrics; then the user's callback. */
static void on_breaker_change(sl_breaker_state from, sl_breaker_state to,
                              void *ctx)
{
    sl_producer *p = ctx;
    sl__std_metrics_breaker(&p->sm, "producer", to, true);
    if (p->user_on_change != NULL) {
        p->user_on_change(from, to, p->user_on_change_ctx);
    }
}

static void collect(sl_metrics *reg, void *ctx)
{
    sl_producer *p = ctx;
    sl_gauge_set(sl_metric_get(p->sm.producer_in_flight, NULL),
                 (double)atomic_load(&p->in_flight));
}

/* Count a publish that was refused before reaching the engine. */
static void count_refusal(sl_producer *p, const char *channel, sl_status st)
{
    const char *outcome = st == SL_FULL           ? "full"
                          : st == SL_RATE_LIMITED ? "rate_limited"
                          : st == SL_BREAKER_OPEN ? "breaker_open"
                                                  : "failed";
    sl_counter_inc(sl_metric_get(p->sm.published, SL_LABELS(channel, outcome)));
    if (st == SL_RATE_LIMITED) {
        sl_counter_inc(
            sl_metric_get(p->sm.rate_limited, SL_LABELS("producer")));
    }
}

sl_status sl_producer_create(sl_engine *eng, const sl_producer_opts *opts,
                             sl_producer **out)
{
    sl_producer_opts o = opts ? *opts : (sl_producer_opts){0};
    if (eng == NULL || out == NULL || o.rate_per_s < 0) {
        return SL_INVALID;
    }
    sl_producer *p = sl_calloc(1, sizeof *p);
    if (p == NULL) {
        return SL_NOMEM;
    }
    p->eng = eng;
    p->max_in_flight =
        o.max_in_flight ? o.max_in_flight : DEFAULT_MAX_IN_FLIGHT;
    p->timeout_ms = o.publish_timeout_ms ? o.publish_timeout_ms
                                         : DEFAULT_PUBLISH_TIMEOUT_MS;
    p->clock = o.clock;
    pthread_mutex_init(&p->mu, NULL);
    sl__cond_init_mono(&p->cv);
    sl_status st = SL_OK;
    if (o.rate_per_s > 0) {
        sl_token_bucket_opts bo = {
            .rate_per_s = o.rate_per_s,
            .burst = o.burst > 0 ? o.burst : 2 * o.rate_per_s,
        };
        st = sl_token_bucket_create(&bo, sl_clock_now_ms(p->clock), &p->bucket);
    }
    if (st == SL_OK && o.metrics != NULL) {
        st = sl__std_metrics_declare(o.metrics, &p->sm, NULL);
        if (st == SL_OK &&
            (st = sl_metrics_add_collector(o.metrics, collect, p)) == SL_OK) {
            p->reg = o.metrics;
        }
    }
    if (st == SL_OK && o.breaker != NULL) {
        sl_breaker_opts bo = *o.breaker;
        if (p->reg != NULL) {
            p->user_on_change = bo.on_change;
            p->user_on_change_ctx = bo.on_change_ctx;
            bo.on_change = on_breaker_change;
            bo.on_change_ctx = p;
            sl__std_metrics_breaker(&p->sm, "producer", SL_BREAKER_STATE_CLOSED,
                                    false);
        }
        st = sl_breaker_create(&bo, &p->brk);
    }
    if (st != SL_OK) {
        sl_producer_destroy(p);
        return st;
    }
    *out = p;
    return SL_OK;
}

/* Timeouts and deadlines are read on the producer's clock when one was
 * given, else on the monotonic clock. */
static uint64_t now_ms(const sl_producer *p)
{
    return sl__clock_or_mono_ms(p->clock);
}

/* Sleep on cv until the clock reads @p until_ms (or a wake-up). mu held. */
static void sleep_locked(sl_producer *p, sl_clock_wait *cw, uint64_t until_ms)
{
    atomic_fetch_add(&p->waiters, 1);
    sl__clock_wait(cw, until_ms);
    atomic_fetch_sub(&p->waiters, 1);
}

/* Give a window slot back. The decrement is the last touch of @p when
 * nobody waits, so that a flush that sees the window empty may free the
 * producer at once; when someone waits, it happens under the lock the
 * waiter must take back. A waiter that registers just after the check
 * misses this wake-up and finds the slot at its next slice (WAIT_SLICE_MS).
 */
static void release_slot(sl_producer *p)
{
    if (atomic_load(&p->waiters) > 0) {
        pthread_mutex_lock(&p->mu);
        atomic_fetch_sub(&p->in_flight, 1);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    } else {
        atomic_fetch_sub(&p->in_flight, 1);
    }
}

static void on_confirm(sl_status st, void *ctx)
{
    pending *pd = ctx;
    sl_producer *p = pd->p;
    if (p->brk != NULL) {
        uint64_t now = sl_clock_now_ms(p->clock);
        /* Refusals for capacity are backpressure, not failures. */
        sl_breaker_record(p->brk, st == SL_OK || st == SL_FULL,
                          now - pd->start_ms, now);
    }
    atomic_fetch_add(st == SL_OK ? &p->published : &p->failed, 1);
    if (pd->m_confirm != NULL) {
        sl_histogram_observe(pd->m_confirm, sl__obs_now_s() - pd->start_s);
        sl_counter_inc(st == SL_OK ? pd->m_ok : pd->m_failed);
    }
    /* The user's callback runs before the slot is given back, so that a
     * flush (and destroy) returns only after every callback finished. */
    if (pd->cb != NULL) {
        pd->cb(st, pd->ctx);
    }
    sl_free(pd);
    release_slot(p);
}

/* The confirm of a publish with nothing to carry — no callback, no
 * breaker, no metrics — is only counted: ctx is the producer itself, and
 * the publish costs no allocation. */
static void on_confirm_counted(sl_status st, void *ctx)
{
    sl_producer *p = ctx;
    atomic_fetch_add(st == SL_OK ? &p->published : &p->failed, 1);
    release_slot(p);
}

/* Take a window slot without waiting. */
static bool try_slot(sl_producer *p)
{
    uint32_t n = atomic_load(&p->in_flight);
    while (n < p->max_in_flight) {
        if (atomic_compare_exchange_weak(&p->in_flight, &n, n + 1)) {
            return true;
        }
    }
    return false;
}

/* Take a window slot, waiting until @p deadline_ms (monotonic) unless
 * @p wait is false. */
static sl_status take_slot(sl_producer *p, bool wait, uint64_t deadline_ms)
{
    if (try_slot(p)) {
        return SL_OK;
    }
    if (!wait) {
        atomic_fetch_add(&p->full, 1);
        return SL_FULL;
    }
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &p->cv, &p->mu, p->clock);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        uint64_t now = now_ms(p);
        if (now >= deadline_ms) {
            pthread_mutex_unlock(&p->mu);
            sl__clock_wait_end(&cw);
            atomic_fetch_add(&p->full, 1);
            return SL_FULL;
        }
        /* Registered as a waiter before re-checking, so a confirm in
         * between either sees us or frees a slot we then take. */
        atomic_fetch_add(&p->waiters, 1);
        if (try_slot(p)) {
            atomic_fetch_sub(&p->waiters, 1);
            break;
        }
        uint64_t left = deadline_ms - now;
        sl__clock_wait(&cw,
                       now + (left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS));
        atomic_fetch_sub(&p->waiters, 1);
    }
    pthread_mutex_unlock(&p->mu);
    sl__clock_wait_end(&cw);
    return SL_OK;
}

/* Take a token, waiting as above. */
static sl_status take_token(sl_producer *p, bool wait, uint64_t deadline_ms)
{
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &p->cv, &p->mu, p->clock);
    sl_status st = SL_OK;
    pthread_mutex_lock(&p->mu);
    uint64_t now = sl_clock_now_ms(p->clock);
    while (!sl_token_bucket_try_take(p->bucket, 1, now)) {
        uint64_t wait_ms = sl_token_bucket_wait_ms(p->bucket, 1, now);
        if (!wait || wait_ms == UINT64_MAX ||
            now_ms(p) + wait_ms > deadline_ms) {
            atomic_fetch_add(&p->rate_limited, 1);
            st = SL_RATE_LIMITED;
            break;
        }
        /* The bucket reads the clock (NULL: the wall clock), the wait the
         * clock or the monotonic one: the wait is measured from now. */
        sleep_locked(p, &cw, now_ms(p) + (wait_ms ? wait_ms : 1));
        now = sl_clock_now_ms(p->clock);
    }
    pthread_mutex_unlock(&p->mu);
    sl__clock_wait_end(&cw);
    return st;
}

/* Admission: window slot, breaker, then token. Each step gives back what
 * the earlier ones took when it refuses, so a refusal costs no token and
 * no breaker probe (a half-open breaker's one probe is always made or
 * given back). */
static sl_status admit(sl_producer *p, bool wait, uint64_t deadline_ms)
{
    sl_status st = take_slot(p, wait, deadline_ms);
    if (st != SL_OK) {
        return st;
    }
    if (p->brk != NULL &&
        !sl_breaker_allow(p->brk, sl_clock_now_ms(p->clock))) {
        atomic_fetch_add(&p->breaker_open, 1);
        release_slot(p);
        return SL_BREAKER_OPEN;
    }
    if (p->bucket != NULL && (st = take_token(p, wait, deadline_ms)) != SL_OK) {
        if (p->brk != NULL) {
            sl_breaker_cancel(p->brk, sl_clock_now_ms(p->clock));
        }
        release_slot(p);
        return st;
    }
    return SL_OK;
}

static sl_status publish(sl_producer *p, const char *channel, sl_event *ev,
                         sl_publish_cb cb, void *ctx, bool wait,
                         uint64_t deadline_ms)
{
    sl_status st = admit(p, wait, deadline_ms);
    if (st != SL_OK) {
        if (p->reg != NULL) {
            count_refusal(p, channel, st);
        }
        return st;
    }
    pending *pd = NULL;
    sl_publish_cb confirm = on_confirm_counted;
    void *confirm_ctx = p;
    if (cb != NULL || p->brk != NULL || p->reg != NULL) {
        if ((pd = sl_malloc(sizeof *pd)) == NULL) {
            st = SL_NOMEM;
            goto refused;
        }
        *pd = (pending){.p = p,
                        .cb = cb,
                        .ctx = ctx,
                        .start_ms = p->brk ? sl_clock_now_ms(p->clock) : 0};
        confirm = on_confirm;
        confirm_ctx = pd;
    }
    if (p->reg != NULL) {
        pd->m_ok = sl_metric_get(p->sm.published, SL_LABELS(channel, "ok"));
        pd->m_failed =
            sl_metric_get(p->sm.published, SL_LABELS(channel, "failed"));
        pd->m_confirm =
            sl_metric_get(p->sm.confirm_seconds, SL_LABELS(channel));
        pd->start_s = sl__obs_now_s();
    }
    /* Without a callback of the caller's (or with sl_producer_publish's
     * waiter), the confirm is all sluice's own: counters, breaker,
     * metrics, the window, a condition signal. */
    unsigned hints = cb == NULL || cb == sl__waiter_signal
                         ? SL__PUBLISH_HINT_CB_ANY_THREAD
                         : 0;
    for (;;) {
        st = sl__engine_publish_async_ex(p->eng, channel, ev, 0, hints, confirm,
                                         confirm_ctx);
        /* A channel at max_length drains as consumers ack: poll it until
         * the deadline rather than fail at once. */
        uint64_t now = now_ms(p);
        if (st != SL_FULL || !wait || now >= deadline_ms) {
            break;
        }
        sl_clock_wait cw;
        sl__clock_wait_begin(&cw, &p->cv, &p->mu, p->clock);
        pthread_mutex_lock(&p->mu);
        sleep_locked(p, &cw, now + FULL_RETRY_MS);
        pthread_mutex_unlock(&p->mu);
        sl__clock_wait_end(&cw);
    }
    if (st == SL_OK) {
        return SL_OK;
    }
    sl_free(pd);
refused:
    if (p->brk != NULL) {
        /* Only an engine that fails counts against the breaker; a refusal
         * (full, unknown channel, bad event) is given back. */
        uint64_t now = sl_clock_now_ms(p->clock);
        if (st == SL_IO || st == SL_UNAVAILABLE) {
            sl_breaker_record(p->brk, false, 0, now);
        } else {
            sl_breaker_cancel(p->brk, now);
        }
    }
    atomic_fetch_add(st == SL_FULL ? &p->full : &p->failed, 1);
    if (p->reg != NULL) {
        count_refusal(p, channel, st);
    }
    release_slot(p);
    return st;
}

sl_status sl_producer_publish_async(sl_producer *p, const char *channel,
                                    sl_event *ev, sl_publish_cb cb, void *ctx)
{
    return publish(p, channel, ev, cb, ctx, true, now_ms(p) + p->timeout_ms);
}

sl_status sl_producer_try_publish(sl_producer *p, const char *channel,
                                  sl_event *ev, sl_publish_cb cb, void *ctx)
{
    return publish(p, channel, ev, cb, ctx, false, 0);
}

sl_status sl_producer_publish(sl_producer *p, const char *channel, sl_event *ev,
                              sl_diag *diag)
{
    uint64_t deadline = now_ms(p) + p->timeout_ms;
    sl_waiter *w = NULL;
    if (sl__waiter_create(&w) != SL_OK) {
        return sl_diag_set(diag, SL_NOMEM, "out of memory");
    }
    sl_status st =
        publish(p, channel, ev, sl__waiter_signal, w, true, deadline);
    if (st != SL_OK) {
        sl__waiter_destroy(w);
        return sl_diag_set(diag, st, "publish to '%s': %s", channel,
                           sl_status_str(st));
    }
    st = sl__waiter_wait_until(w, p->clock, deadline);
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "publish to '%s': %s", channel,
                           sl_status_str(st));
    }
    return SL_OK;
}

sl_status sl_producer_flush(sl_producer *p, uint64_t timeout_ms)
{
    uint64_t deadline = now_ms(p) + timeout_ms;
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &p->cv, &p->mu, p->clock);
    pthread_mutex_lock(&p->mu);
    for (;;) {
        atomic_fetch_add(&p->waiters, 1);
        if (atomic_load(&p->in_flight) == 0) {
            atomic_fetch_sub(&p->waiters, 1);
            break;
        }
        uint64_t now = now_ms(p);
        if (now >= deadline) {
            atomic_fetch_sub(&p->waiters, 1);
            break;
        }
        uint64_t left = deadline - now;
        sl__clock_wait(&cw,
                       now + (left < WAIT_SLICE_MS ? left : WAIT_SLICE_MS));
        atomic_fetch_sub(&p->waiters, 1);
    }
    sl_status st = atomic_load(&p->in_flight) == 0 ? SL_OK : SL_TIMEOUT;
    pthread_mutex_unlock(&p->mu);
    sl__clock_wait_end(&cw);
    return st;
}

uint64_t sl_producer_retry_after_ms(sl_producer *p)
{
    uint64_t now = sl_clock_now_ms(p->clock);
    uint64_t wait = 0;
    if (p->brk != NULL) {
        wait = sl_breaker_retry_after_ms(p->brk, now);
    }
    if (p->bucket != NULL) {
        pthread_mutex_lock(&p->mu);
        uint64_t b = sl_token_bucket_wait_ms(p->bucket, 1, now);
        pthread_mutex_unlock(&p->mu);
        wait = b > wait ? b : wait;
    }
    return wait;
}

void sl_producer_get_stats(sl_producer *p, sl_producer_stats *out)
{
    *out = (sl_producer_stats){
        .published = atomic_load(&p->published),
        .failed = atomic_load(&p->failed),
        .full = atomic_load(&p->full),
        .rate_limited = atomic_load(&p->rate_limited),
        .breaker_open = atomic_load(&p->breaker_open),
        .in_flight = atomic_load(&p->in_flight),
    };
}

void sl_producer_destroy(sl_producer *p)
{
    if (p == NULL) {
        return;
    }
    /* A confirm still outstanding would touch freed memory: wait for all of
     * them, since the engine guarantees exactly one callback per publish. */
    while (sl_producer_flush(p, p->timeout_ms) != SL_OK) {
    }
    if (p->reg != NULL) {
        sl_metrics_remove_collector(p->reg, collect, p);
    }
    sl_token_bucket_destroy(p->bucket);
    sl_breaker_destroy(p->brk);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    sl_free(p);
}
