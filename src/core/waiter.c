#include "core/waiter.h"

#include "sluice/alloc.h"

#include <pthread.h>
#include <stdbool.h>
#include <time.h>

struct sl_waiter {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    bool abandoned;
    sl_status st;
};

void sl__deadline_after(struct timespec *ts, uint64_t ms)
{
    clock_gettime(CLOCK_MONOTONIC, ts);
    ts->tv_sec += (time_t)(ms / 1000);
    ts->tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts->tv_nsec >= 1000000000L) {
        ts->tv_sec++;
        ts->tv_nsec -= 1000000000L;
    }
}

void sl__cond_init_mono(pthread_cond_t *cv)
{
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(cv, &ca);
    pthread_condattr_destroy(&ca);
}

sl_status sl__waiter_create(sl_waiter **out)
{
    sl_waiter *w = sl_calloc(1, sizeof *w);
    if (w == NULL) {
        return SL_NOMEM;
    }
    pthread_mutex_init(&w->mu, NULL);
    sl__cond_init_mono(&w->cv);
    *out = w;
    return SL_OK;
}

void sl__waiter_destroy(sl_waiter *w)
{
    if (w != NULL) {
        pthread_mutex_destroy(&w->mu);
        pthread_cond_destroy(&w->cv);
        sl_free(w);
    }
}

void sl__waiter_signal(sl_status st, void *ctx)
{
    sl_waiter *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->done = true;
    w->st = st;
    bool abandoned = w->abandoned;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    if (abandoned) {
        sl__waiter_destroy(w);
    }
}

sl_status sl__waiter_wait(sl_waiter *w, uint64_t timeout_ms)
{
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&w->mu);
    while (!w->done) {
        if (pthread_cond_timedwait(&w->cv, &w->mu, &until) != 0) {
            break;
        }
    }
    if (!w->done) {
        w->abandoned = true;
        pthread_mutex_unlock(&w->mu);
        return SL_TIMEOUT;
    }
    sl_status st = w->st;
    pthread_mutex_unlock(&w->mu);
    sl__waiter_destroy(w);
    return st;
}
