/* Drain rates sampled on a fixed period (drain_rate.h). */
#include "runtime/drain_rate.h"

#include "core/waiter.h"
#include "sluice/alloc.h"

#include <pthread.h>

#define DEFAULT_PERIOD_MS 1000
#define DEFAULT_WINDOW_MS 60000
#define DEFAULT_BUSY_WINDOW_MS 10000
/* The drain rate needs this much history at least. */
#define MIN_SPAN_MS 1000

typedef struct sample {
    uint64_t t_ms;
    uint64_t settled;
    uint64_t ready;
} sample;

/* One group: a ring of samples, and the last backlog read for admission. */
typedef struct group_ring {
    sample *ring;
    size_t head; /* next slot */
    size_t n;
    uint64_t backlog;
    uint64_t backlog_ready; /* the ready part of backlog */
    uint64_t backlog_t_ms;
    bool has_backlog;
} group_ring;

struct sl_drain {
    sl_drain_read_fn read;
    void *read_ctx;
    uint64_t period_ms;
    uint64_t window_ms;
    uint64_t busy_window_ms;
    const sl_clock *clock;
    size_t cap; /* samples per ring */
    size_t ngroups;
    group_ring *groups;
    pthread_mutex_t mu;      /* the rings, the backlogs, rounds, stop */
    pthread_cond_t cv;       /* kicks and stop (to the thread), rounds (from) */
    pthread_mutex_t read_mu; /* one backlog read at a time */
    uint64_t rounds;
    uint64_t next_due_ms;
    bool stop;
    bool started;
    pthread_t thread;
};

static uint64_t now_ms(const sl_drain *d)
{
    return sl__clock_or_mono_ms(d->clock);
}

/* The i-th newest sample (0 = the last). d->mu held. */
static const sample *nth_newest(const group_ring *g, size_t cap, size_t i)
{
    return &g->ring[(g->head + cap - 1 - i) % cap];
}

static void take_round(sl_drain *d, uint64_t now)
{
    for (size_t i = 0; i < d->ngroups; i++) {
        sl_drain_reading r;
        if (!d->read(i, &r, d->read_ctx)) {
            continue;
        }
        pthread_mutex_lock(&d->mu);
        group_ring *g = &d->groups[i];
        g->ring[g->head] = (sample){now, r.settled, r.ready};
        g->head = (g->head + 1) % d->cap;
        if (g->n < d->cap) {
            g->n++;
        }
        pthread_mutex_unlock(&d->mu);
    }
    pthread_mutex_lock(&d->mu);
    d->rounds++;
    d->next_due_ms = now + d->period_ms;
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

/* The thread: a round whenever the clock reached the next period, else a
 * wait on the condition variable until then (real time, at most a period:
 * a manual clock is looked at again at least that often, and at each
 * kick). */
static void *sampler_main(void *arg)
{
    sl_drain *d = arg;
    pthread_mutex_lock(&d->mu);
    while (!d->stop) {
        uint64_t now = now_ms(d);
        if (now >= d->next_due_ms) {
            pthread_mutex_unlock(&d->mu);
            take_round(d, now);
            pthread_mutex_lock(&d->mu);
            continue;
        }
        uint64_t wait = d->next_due_ms - now;
        struct timespec until;
        sl__deadline_after(&until, wait < d->period_ms ? wait : d->period_ms);
        pthread_cond_timedwait(&d->cv, &d->mu, &until);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

sl_status sl__drain_create(const sl_drain_opts *opts, sl_drain **out)
{
    if (opts == NULL || opts->read == NULL || out == NULL) {
        return SL_INVALID;
    }
    sl_drain *d = sl_calloc(1, sizeof *d);
    if (d == NULL) {
        return SL_NOMEM;
    }
    d->read = opts->read;
    d->read_ctx = opts->read_ctx;
    d->period_ms = opts->period_ms ? opts->period_ms : DEFAULT_PERIOD_MS;
    d->window_ms = opts->window_ms ? opts->window_ms : DEFAULT_WINDOW_MS;
    d->busy_window_ms =
        opts->busy_window_ms ? opts->busy_window_ms : DEFAULT_BUSY_WINDOW_MS;
    d->clock = opts->clock;
    /* Enough samples to span the longer window, plus the two ends. */
    uint64_t span =
        d->window_ms > d->busy_window_ms ? d->window_ms : d->busy_window_ms;
    d->cap = (size_t)(span / d->period_ms) + 2;
    d->ngroups = opts->ngroups;
    pthread_mutex_init(&d->mu, NULL);
    pthread_mutex_init(&d->read_mu, NULL);
    sl__cond_init_mono(&d->cv);
    d->groups = sl_calloc(d->ngroups ? d->ngroups : 1, sizeof *d->groups);
    if (d->groups == NULL) {
        sl__drain_destroy(d);
        return SL_NOMEM;
    }
    for (size_t i = 0; i < d->ngroups; i++) {
        d->groups[i].ring = sl_calloc(d->cap, sizeof(sample));
        if (d->groups[i].ring == NULL) {
            sl__drain_destroy(d);
            return SL_NOMEM;
        }
    }
    take_round(d, now_ms(d));
    *out = d;
    return SL_OK;
}

sl_status sl__drain_start(sl_drain *d)
{
    if (pthread_create(&d->thread, NULL, sampler_main, d) != 0) {
        return SL_NOMEM;
    }
    d->started = true;
    return SL_OK;
}

void sl__drain_destroy(sl_drain *d)
{
    if (d == NULL) {
        return;
    }
    if (d->started) {
        pthread_mutex_lock(&d->mu);
        d->stop = true;
        pthread_cond_broadcast(&d->cv);
        pthread_mutex_unlock(&d->mu);
        pthread_join(d->thread, NULL);
    }
    for (size_t i = 0; d->groups != NULL && i < d->ngroups; i++) {
        sl_free(d->groups[i].ring);
    }
    sl_free(d->groups);
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->read_mu);
    pthread_mutex_destroy(&d->mu);
    sl_free(d);
}

void sl__drain_kick(sl_drain *d)
{
    pthread_mutex_lock(&d->mu);
    pthread_cond_broadcast(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

uint64_t sl__drain_rounds(sl_drain *d)
{
    pthread_mutex_lock(&d->mu);
    uint64_t n = d->rounds;
    pthread_mutex_unlock(&d->mu);
    return n;
}

bool sl__drain_wait_rounds(sl_drain *d, uint64_t rounds, uint64_t timeout_ms)
{
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&d->mu);
    int rc = 0;
    while (d->rounds < rounds && rc == 0) {
        rc = pthread_cond_timedwait(&d->cv, &d->mu, &until);
    }
    bool ok = d->rounds >= rounds;
    pthread_mutex_unlock(&d->mu);
    return ok;
}

double sl__drain_rate_per_s(sl_drain *d, size_t group)
{
    if (group >= d->ngroups) {
        return 0;
    }
    double rate = 0;
    pthread_mutex_lock(&d->mu);
    const group_ring *g = &d->groups[group];
    if (g->n >= 2) {
        const sample *last = nth_newest(g, d->cap, 0);
        /* The oldest sample still inside the window. */
        const sample *oldest = last;
        for (size_t k = g->n - 1; k > 0; k--) {
            const sample *s = nth_newest(g, d->cap, k);
            if (last->t_ms >= s->t_ms && last->t_ms - s->t_ms <= d->window_ms) {
                oldest = s;
                break;
            }
        }
        uint64_t span = last->t_ms - oldest->t_ms;
        if (span >= MIN_SPAN_MS && last->settled >= oldest->settled) {
            rate = (double)(last->settled - oldest->settled) * 1000.0 /
                   (double)span;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return rate;
}

double sl__drain_busy_rate_per_s(sl_drain *d, size_t group)
{
    if (group >= d->ngroups) {
        return 0;
    }
    double slowest = 0;
    pthread_mutex_lock(&d->mu);
    const group_ring *g = &d->groups[group];
    const sample *last = g->n > 0 ? nth_newest(g, d->cap, 0) : NULL;
    for (size_t k = 0; k + 1 < g->n; k++) {
        const sample *b = nth_newest(g, d->cap, k);
        const sample *a = nth_newest(g, d->cap, k + 1);
        if (last->t_ms - a->t_ms > d->busy_window_ms) {
            break;
        }
        /* Busy: events were waiting at both ends. Intervals shorter than
         * half a period say little and are skipped. */
        if (a->ready == 0 || b->ready == 0 || b->settled < a->settled ||
            b->t_ms < a->t_ms + d->period_ms / 2) {
            continue;
        }
        double rate = (double)(b->settled - a->settled) * 1000.0 /
                      (double)(b->t_ms - a->t_ms);
        if (rate > 0 && (slowest == 0 || rate < slowest)) {
            slowest = rate;
        }
    }
    pthread_mutex_unlock(&d->mu);
    return slowest;
}

double sl__drain_capacity_per_s(sl_drain *d, size_t group)
{
    double busy = sl__drain_busy_rate_per_s(d, group);
    return busy > 0 ? busy : sl__drain_rate_per_s(d, group);
}

sl_status sl__drain_backlog(sl_drain *d, size_t group, uint64_t max_age_ms,
                            uint64_t *out, uint64_t *ready_out)
{
    if (group >= d->ngroups) {
        return SL_INVALID;
    }
    group_ring *g = &d->groups[group];
    uint64_t now = now_ms(d);
    pthread_mutex_lock(&d->mu);
    bool fresh = g->has_backlog && now >= g->backlog_t_ms &&
                 now - g->backlog_t_ms < max_age_ms;
    uint64_t backlog = g->backlog;
    uint64_t ready = g->backlog_ready;
    pthread_mutex_unlock(&d->mu);
    if (fresh) {
        *out = backlog;
        if (ready_out != NULL) {
            *ready_out = ready;
        }
        return SL_OK;
    }
    /* One reader at a time: the others find the value it stored. */
    pthread_mutex_lock(&d->read_mu);
    pthread_mutex_lock(&d->mu);
    fresh = g->has_backlog && now_ms(d) - g->backlog_t_ms < max_age_ms;
    backlog = g->backlog;
    ready = g->backlog_ready;
    pthread_mutex_unlock(&d->mu);
    sl_status st = SL_OK;
    sl_drain_reading r;
    if (!fresh) {
        if (d->read(group, &r, d->read_ctx)) {
            backlog = r.backlog;
            ready = r.ready;
            pthread_mutex_lock(&d->mu);
            g->backlog = backlog;
            g->backlog_ready = ready;
            g->backlog_t_ms = now_ms(d);
            g->has_backlog = true;
            pthread_mutex_unlock(&d->mu);
        } else {
            st = SL_UNAVAILABLE;
        }
    }
    pthread_mutex_unlock(&d->read_mu);
    if (st == SL_OK) {
        *out = backlog;
        if (ready_out != NULL) {
            *ready_out = ready;
        }
    }
    return st;
}
