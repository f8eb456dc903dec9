#include "sluice/limiter.h"

#include "sluice/alloc.h"

#include <pthread.h>

#define DEFAULT_LIMIT 10
#define DEFAULT_MIN_LIMIT 1
#define DEFAULT_MAX_LIMIT 1000
#define DEFAULT_BACKOFF 0.9
#define DEFAULT_TOLERANCE 2.0
#define DEFAULT_RTT_WINDOW_MS 60000

struct sl_limiter {
    pthread_mutex_t mu;
    sl_limiter_opts opts; /* with defaults applied */
    double limit;         /* fractional, so that backoff compounds exactly */
    uint32_t in_flight;
    uint32_t good;          /* good samples towards the next +1 */
    uint32_t since_backoff; /* samples since the last decrease */
    /* Minimum RTT: the previous period's and the current period's. */
    uint64_t prev_min_rtt_ms;
    uint64_t cur_min_rtt_ms;
    uint64_t period_start_ms;
    bool period_started;
};

static uint32_t current_limit(const sl_limiter *lim)
{
    return (uint32_t)lim->limit;
}

/* Samples per adjustment: the configured window, else the limit itself
 * (roughly one round trip's worth of calls, as in TCP). */
static uint32_t window_of(const sl_limiter *lim)
{
    return lim->opts.window != 0 ? lim->opts.window : current_limit(lim);
}

/* Fold an RTT sample in and return the minimum RTT to compare against. */
static uint64_t sample_rtt(sl_limiter *lim, uint64_t rtt_ms, uint64_t now_ms)
{
    if (!lim->period_started) {
        lim->period_started = true;
        lim->period_start_ms = now_ms;
    }
    if (now_ms >= lim->period_start_ms &&
        now_ms - lim->period_start_ms >= lim->opts.rtt_window_ms) {
        lim->prev_min_rtt_ms = lim->cur_min_rtt_ms;
        lim->cur_min_rtt_ms = UINT64_MAX;
        lim->period_start_ms = now_ms;
    }
    if (rtt_ms < lim->cur_min_rtt_ms) {
        lim->cur_min_rtt_ms = rtt_ms;
    }
    return lim->prev_min_rtt_ms < lim->cur_min_rtt_ms ? lim->prev_min_rtt_ms
                                                      : lim->cur_min_rtt_ms;
}

sl_status sl_limiter_create(const sl_limiter_opts *opts, sl_limiter **out)
{
    static const sl_limiter_opts defaults = {0};
    if (opts == NULL) {
        opts = &defaults;
    }
    if (out == NULL) {
        return SL_INVALID;
    }
    sl_limiter_opts o = *opts;
    o.limit = o.limit != 0 ? o.limit : DEFAULT_LIMIT;
    o.min_limit = o.min_limit != 0 ? o.min_limit : DEFAULT_MIN_LIMIT;
    o.max_limit = o.max_limit != 0 ? o.max_limit : DEFAULT_MAX_LIMIT;
    o.backoff = o.backoff != 0 ? o.backoff : DEFAULT_BACKOFF;
    o.tolerance = o.tolerance != 0 ? o.tolerance : DEFAULT_TOLERANCE;
    o.rtt_window_ms =
        o.rtt_window_ms != 0 ? o.rtt_window_ms : DEFAULT_RTT_WINDOW_MS;
    if (o.kind != SL_LIMITER_FIXED && o.kind != SL_LIMITER_ADAPTIVE) {
        return SL_INVALID;
    }
    if (o.kind == SL_LIMITER_ADAPTIVE &&
        (o.min_limit > o.limit || o.limit > o.max_limit ||
         !(o.backoff > 0 && o.backoff < 1) || !(o.tolerance >= 1))) {
        return SL_INVALID;
    }

    sl_limiter *lim = sl_calloc(1, sizeof *lim);
    if (lim == NULL) {
        return SL_NOMEM;
    }
    if (pthread_mutex_init(&lim->mu, NULL) != 0) {
        sl_free(lim);
        return SL_NOMEM;
    }
    lim->opts = o;
    lim->limit = o.limit;
    lim->since_backoff = UINT32_MAX; /* the first congestion backs off */
    lim->prev_min_rtt_ms = UINT64_MAX;
    lim->cur_min_rtt_ms = UINT64_MAX;
    *out = lim;
    return SL_OK;
}

bool sl_limiter_try_acquire(sl_limiter *lim)
{
    if (lim == NULL) {
        return false;
    }
    pthread_mutex_lock(&lim->mu);
    bool ok = lim->in_flight < current_limit(lim);
    lim->in_flight += ok;
    pthread_mutex_unlock(&lim->mu);
    return ok;
}

/* Learn from one finished call (adaptive limiter, lock held). */
static void adapt(sl_limiter *lim, sl_limiter_outcome outcome, uint64_t rtt_ms,
                  uint64_t now_ms, uint32_t was_in_flight)
{
    bool congested = outcome == SL_LIMITER_DROPPED;
    if (outcome == SL_LIMITER_SUCCESS) {
        uint64_t min_rtt = sample_rtt(lim, rtt_ms, now_ms);
        double base = min_rtt > 1 ? (double)min_rtt : 1.0;
        congested = (double)rtt_ms > lim->opts.tolerance * base;
    }
    if (lim->since_backoff < UINT32_MAX) {
        lim->since_backoff++;
    }

    if (congested) {
        if (lim->since_backoff >= window_of(lim)) {
            double next = lim->limit * lim->opts.backoff;
            lim->limit =
                next > lim->opts.min_limit ? next : lim->opts.min_limit;
            lim->since_backoff = 0;
            lim->good = 0;
        }
    } else if ((uint64_t)was_in_flight * 2 >= current_limit(lim)) {
        if (++lim->good >= window_of(lim)) {
            double next = lim->limit + 1;
            lim->limit =
                next < lim->opts.max_limit ? next : lim->opts.max_limit;
            lim->good = 0;
        }
    }
}

void sl_limiter_release(sl_limiter *lim, sl_limiter_outcome outcome,
                        uint64_t rtt_ms, uint64_t now_ms)
{
    if (lim == NULL) {
        return;
    }
    pthread_mutex_lock(&lim->mu);
    if (lim->in_flight > 0) {
        uint32_t was_in_flight = lim->in_flight--;
        if (lim->opts.kind == SL_LIMITER_ADAPTIVE &&
            outcome != SL_LIMITER_IGNORE) {
            adapt(lim, outcome, rtt_ms, now_ms, was_in_flight);
        }
    }
    pthread_mutex_unlock(&lim->mu);
}

uint32_t sl_limiter_limit(sl_limiter *lim)
{
    if (lim == NULL) {
        return 0;
    }
    pthread_mutex_lock(&lim->mu);
    uint32_t limit = current_limit(lim);
    pthread_mutex_unlock(&lim->mu);
    return limit;
}

uint32_t sl_limiter_in_flight(sl_limiter *lim)
{
    if (lim == NULL) {
        return 0;
    }
    pthread_mutex_lock(&lim->mu);
    uint32_t n = lim->in_flight;
    pthread_mutex_unlock(&lim->mu);
    return n;
}

void sl_limiter_destroy(sl_limiter *lim)
{
    if (lim == NULL) {
        return;
    }
    pthread_mutex_destroy(&lim->mu);
    sl_free(lim);
}
