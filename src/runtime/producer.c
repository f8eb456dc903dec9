#include "sluice/producer.h"

#include "core/waiter.h"
#include "sluice/alloc.h"
#include "sluice/token_bucket.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>

#define DEFAULT_MAX_IN_FLIGHT 1000
#define DEFAULT_PUBLISH_TIMEOUT_MS 5000
/* How often a publish blocked on a full channel tries again. */
#define FULL_RETRY_MS 5

struct sl_producer {
    sl_engine *eng;
    uint32_t max_in_flight;
    uint64_t timeout_ms;
    const sl_clock *clock;
    sl_token_bucket *bucket; /* guarded by mu */
    sl_breaker *brk;         /* internally locked */
    pthread_mutex_t mu;
    pthread_cond_t cv; /* a window slot was freed */
    uint32_t in_flight;
    sl_producer_stats stats;
};

/* Carries one publish from the window to its confirm. */
typedef struct pending {
    sl_producer *p;
    sl_publish_cb cb;
    void *ctx;
    uint64_t start_ms;
} pending;

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
    p->max_in_flight = o.max_in_flight ? o.max_in_flight
                                       : DEFAULT_MAX_IN_FLIGHT;
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
        st = sl_token_bucket_create(&bo, sl_clock_now_ms(p->clock),
                                    &p->bucket);
    }
    if (st == SL_OK && o.breaker != NULL) {
        st = sl_breaker_create(o.breaker, &p->brk);
    }
    if (st != SL_OK) {
        sl_producer_destroy(p);
        return st;
    }
    *out = p;
    return SL_OK;
}

static void on_confirm(sl_status st, void *ctx)
{
    pending *pd = ctx;
    sl_producer *p = pd->p;
    uint64_t now = sl_clock_now_ms(p->clock);
    if (p->brk != NULL) {
        /* Refusals for capacity are backpressure, not failures. */
        sl_breaker_record(p->brk, st == SL_OK || st == SL_FULL,
                          now - pd->start_ms, now);
    }
    /* The user's callback runs before the slot is given back, so that a
     * flush (and destroy) returns only after every callback finished. */
    pthread_mutex_lock(&p->mu);
    if (st == SL_OK) {
        p->stats.published++;
    } else {
        p->stats.failed++;
    }
    pthread_mutex_unlock(&p->mu);
    if (pd->cb != NULL) {
        pd->cb(st, pd->ctx);
    }
    sl_free(pd);
    pthread_mutex_lock(&p->mu);
    p->in_flight--;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

/* Admission: bucket, window slot, then the breaker last, so that a call
 * the breaker allowed (possibly its one half-open probe) is always made or
 * given back. Waits up to @p deadline_ms (monotonic), never when @p wait is
 * false. */
static sl_status admit(sl_producer *p, bool wait, uint64_t deadline_ms)
{
    uint64_t now = sl_clock_now_ms(p->clock);
    pthread_mutex_lock(&p->mu);
    if (p->bucket != NULL) {
        while (!sl_token_bucket_try_take(p->bucket, 1, now)) {
            uint64_t wait_ms = sl_token_bucket_wait_ms(p->bucket, 1, now);
            uint64_t mono = sl_time_mono_ms();
            if (!wait || wait_ms == UINT64_MAX ||
                mono + wait_ms > deadline_ms) {
                p->stats.rate_limited++;
                pthread_mutex_unlock(&p->mu);
                return SL_RATE_LIMITED;
            }
            struct timespec ts;
            sl__deadline_after(&ts, wait_ms ? wait_ms : 1);
            pthread_cond_timedwait(&p->cv, &p->mu, &ts);
            now = sl_clock_now_ms(p->clock);
        }
    }
    while (p->in_flight >= p->max_in_flight) {
        uint64_t mono = sl_time_mono_ms();
        if (!wait || mono >= deadline_ms) {
            p->stats.full++;
            pthread_mutex_unlock(&p->mu);
            return SL_FULL;
        }
        struct timespec ts;
        sl__deadline_after(&ts, deadline_ms - mono);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    }
    if (p->brk != NULL && !sl_breaker_allow(p->brk, now)) {
        p->stats.breaker_open++;
        pthread_mutex_unlock(&p->mu);
        return SL_BREAKER_OPEN;
    }
    p->in_flight++;
    pthread_mutex_unlock(&p->mu);
    return SL_OK;
}

static void give_back(sl_producer *p, sl_status why)
{
    pthread_mutex_lock(&p->mu);
    p->in_flight--;
    if (why == SL_FULL) {
        p->stats.full++;
    } else {
        p->stats.failed++;
    }
    pthread_cond_signal(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static sl_status publish(sl_producer *p, const char *channel, sl_event *ev,
                         sl_publish_cb cb, void *ctx, bool wait,
                         uint64_t deadline_ms)
{
    sl_status st = admit(p, wait, deadline_ms);
    if (st != SL_OK) {
        return st;
    }
    pending *pd = sl_malloc(sizeof *pd);
    if (pd == NULL) {
        if (p->brk != NULL) {
            sl_breaker_cancel(p->brk, sl_clock_now_ms(p->clock));
        }
        give_back(p, SL_NOMEM);
        return SL_NOMEM;
    }
    *pd = (pending){p, cb, ctx, sl_clock_now_ms(p->clock)};
    for (;;) {
        st = sl_engine_publish_async(p->eng, channel, ev, 0, on_confirm, pd);
        /* A channel at max_length drains as consumers ack: poll it until
         * the deadline rather than fail at once. */
        if (st != SL_FULL || !wait || sl_time_mono_ms() >= deadline_ms) {
            break;
        }
        struct timespec ts;
        sl__deadline_after(&ts, FULL_RETRY_MS);
        pthread_mutex_lock(&p->mu);
        pthread_cond_timedwait(&p->cv, &p->mu, &ts);
        pthread_mutex_unlock(&p->mu);
    }
    if (st != SL_OK) {
        sl_free(pd);
        if (p->brk != NULL) {
            /* Only an engine that fails counts against the breaker; a
             * refusal (full, unknown channel, bad event) is given back. */
            uint64_t now = sl_clock_now_ms(p->clock);
            if (st == SL_IO || st == SL_UNAVAILABLE) {
                sl_breaker_record(p->brk, false, 0, now);
            } else {
                sl_breaker_cancel(p->brk, now);
            }
        }
        give_back(p, st);
    }
    return st;
}

sl_status sl_producer_publish_async(sl_producer *p, const char *channel,
                                    sl_event *ev, sl_publish_cb cb, void *ctx)
{
    return publish(p, channel, ev, cb, ctx, true,
                   sl_time_mono_ms() + p->timeout_ms);
}

sl_status sl_producer_try_publish(sl_producer *p, const char *channel,
                                  sl_event *ev, sl_publish_cb cb, void *ctx)
{
    return publish(p, channel, ev, cb, ctx, false, 0);
}

sl_status sl_producer_publish(sl_producer *p, const char *channel,
                              sl_event *ev, sl_diag *diag)
{
    uint64_t deadline = sl_time_mono_ms() + p->timeout_ms;
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
    uint64_t now = sl_time_mono_ms();
    st = sl__waiter_wait(w, deadline > now ? deadline - now : 0);
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "publish to '%s': %s", channel,
                           sl_status_str(st));
    }
    return SL_OK;
}

sl_status sl_producer_flush(sl_producer *p, uint64_t timeout_ms)
{
    struct timespec ts;
    sl__deadline_after(&ts, timeout_ms);
    pthread_mutex_lock(&p->mu);
    while (p->in_flight > 0) {
        if (pthread_cond_timedwait(&p->cv, &p->mu, &ts) == ETIMEDOUT) {
            break;
        }
    }
    sl_status st = p->in_flight == 0 ? SL_OK : SL_TIMEOUT;
    pthread_mutex_unlock(&p->mu);
    return st;
}

uint64_t sl_producer_retry_after_ms(sl_producer *p)
{
    uint64_t now = sl_clock_now_ms(p->clock);
    uint64_t wait = 0;
    if (p->brk != NULL) {
        wait = sl_breaker_retry_after_ms(p->brk, now);
    }
    pthread_mutex_lock(&p->mu);
    if (p->bucket != NULL) {
        uint64_t b = sl_token_bucket_wait_ms(p->bucket, 1, now);
        wait = b > wait ? b : wait;
    }
    pthread_mutex_unlock(&p->mu);
    return wait;
}

void sl_producer_get_stats(sl_producer *p, sl_producer_stats *out)
{
    pthread_mutex_lock(&p->mu);
    *out = p->stats;
    out->in_flight = p->in_flight;
    pthread_mutex_unlock(&p->mu);
}

void sl_producer_destroy(sl_producer *p)
{
    if (p == NULL) {
        return;
    }
    sl_producer_flush(p, p->timeout_ms);
    /* A confirm still outstanding would touch freed memory: wait for it,
     * since the engine guarantees exactly one callback per publish. */
    pthread_mutex_lock(&p->mu);
    while (p->in_flight > 0) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    sl_token_bucket_destroy(p->bucket);
    sl_breaker_destroy(p->brk);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    sl_free(p);
}
