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
    return sl__waiter_wait_until(w, NULL, sl_time_mono_ms() + timeout_ms);
}

sl_status sl__waiter_wait_until(sl_waiter *w, const sl_clock *clk,
                                uint64_t deadline_ms)
{
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &w->cv, &w->mu, clk);
    pthread_mutex_lock(&w->mu);
    while (!w->done && !sl__clock_wait(&cw, deadline_ms)) {
    }
    pthread_mutex_unlock(&w->mu);
    /* Off the list before the waiter may belong to the signal (which then
     * frees it), so that no advance touches it afterwards. */
    sl__clock_wait_end(&cw);
    pthread_mutex_lock(&w->mu);
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

/* The waits on a manual clock, which sl_manual_clock_advance wakes. The
 * list's lock is always taken before a listed mutex, never after. */
static pthread_mutex_t listed_mu = PTHREAD_MUTEX_INITIALIZER;
static sl_clock_wait *listed;
static size_t nlisted;

uint64_t sl__clock_or_mono_ms(const sl_clock *clk)
{
    return clk != NULL ? sl_clock_now_ms(clk) : sl_time_mono_ms();
}

uint64_t sl__clock_or_wall_ms(const sl_clock *clk)
{
    return clk != NULL ? sl_clock_now_ms(clk) : sl_time_wall_ms();
}

void sl__clock_wait_begin(sl_clock_wait *cw, pthread_cond_t *cv,
                          pthread_mutex_t *mu, const sl_clock *clk)
{
    *cw = (sl_clock_wait){.cv = cv, .mu = mu, .clk = clk};
    if (!sl__clock_is_manual(clk)) {
        return;
    }
    cw->listed = true;
    pthread_mutex_lock(&listed_mu);
    cw->next = listed;
    if (listed != NULL) {
        listed->prev = cw;
    }
    listed = cw;
    nlisted++;
    pthread_mutex_unlock(&listed_mu);
}

bool sl__clock_wait(sl_clock_wait *cw, uint64_t deadline_ms)
{
    uint64_t now = sl__clock_or_mono_ms(cw->clk);
    if (now >= deadline_ms) {
        return true;
    }
    /* An advance after the reading above takes the mutex, so it comes
     * once this thread sleeps, and wakes it. */
    struct timespec until;
    sl__deadline_after(&until, deadline_ms - now);
    pthread_cond_timedwait(cw->cv, cw->mu, &until);
    return sl__clock_or_mono_ms(cw->clk) >= deadline_ms;
}

void sl__clock_wait_end(sl_clock_wait *cw)
{
    if (!cw->listed) {
        return;
    }
    pthread_mutex_lock(&listed_mu);
    if (cw->prev != NULL) {
        cw->prev->next = cw->next;
    } else {
        listed = cw->next;
    }
    if (cw->next != NULL) {
        cw->next->prev = cw->prev;
    }
    nlisted--;
    pthread_mutex_unlock(&listed_mu);
    cw->listed = false;
}

void sl__clock_waiters_wake(void)
{
    pthread_mutex_lock(&listed_mu);
    for (sl_clock_wait *cw = listed; cw != NULL; cw = cw->next) {
        pthread_mutex_lock(cw->mu);
        pthread_cond_broadcast(cw->cv);
        pthread_mutex_unlock(cw->mu);
    }
    pthread_mutex_unlock(&listed_mu);
}

size_t sl__clock_waits_listed(void)
{
    pthread_mutex_lock(&listed_mu);
    size_t n = nlisted;
    pthread_mutex_unlock(&listed_mu);
    return n;
}
