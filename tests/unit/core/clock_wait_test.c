/* Waits whose deadlines are read on an sl_clock: a manual clock's advance
 * wakes them, a signal ends them early, the system clock times them out. */
#include "core/waiter.h"

#include "sluice/clock.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>

#define T0 1700000000000ull

/* A thread that waits on a clock until a deadline or `done`. */
typedef struct sleeper {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    const sl_clock *clk;
    uint64_t deadline_ms;
    bool done;      /* set by the test: stop waiting */
    bool timed_out; /* the wait reached its deadline */
    pthread_t thread;
} sleeper;

static void *sleeper_main(void *arg)
{
    sleeper *s = arg;
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &s->cv, &s->mu, s->clk);
    pthread_mutex_lock(&s->mu);
    while (!s->done && !sl__clock_wait(&cw, s->deadline_ms)) {
    }
    s->timed_out = !s->done;
    pthread_mutex_unlock(&s->mu);
    sl__clock_wait_end(&cw);
    return NULL;
}

static void sleeper_start(sleeper *s, const sl_clock *clk, uint64_t deadline)
{
    *s = (sleeper){.clk = clk, .deadline_ms = deadline};
    pthread_mutex_init(&s->mu, NULL);
    sl__cond_init_mono(&s->cv);
    assert_int_equal(pthread_create(&s->thread, NULL, sleeper_main, s), 0);
}

static void sleeper_join(sleeper *s)
{
    pthread_join(s->thread, NULL);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->mu);
}

static void manual_clock_advance_ends_a_wait_at_its_deadline(void **state)
{
    (void)state;
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    /* An hour away: only the advance can end this wait within the test. */
    sleeper s;
    sleeper_start(&s, &mc.clock, T0 + 3600 * 1000);
    assert_true(ts_clock_advance_when_waiting(&mc, 1, 3600 * 1000 - 1));
    /* Woken, one millisecond short: it sleeps again. */
    assert_true(ts_clock_waiting(1, TS_WAIT_MS));
    sl_manual_clock_advance(&mc, 1);
    sleeper_join(&s);
    assert_true(s.timed_out);
    assert_int_equal(sl__clock_waits_listed(), 0);
}

static void a_signal_ends_a_wait_on_a_manual_clock(void **state)
{
    (void)state;
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sleeper s;
    sleeper_start(&s, &mc.clock, T0 + 1000);
    assert_true(ts_clock_waiting(1, TS_WAIT_MS));
    pthread_mutex_lock(&s.mu);
    s.done = true;
    pthread_cond_broadcast(&s.cv);
    pthread_mutex_unlock(&s.mu);
    sleeper_join(&s);
    assert_false(s.timed_out);
    assert_int_equal(atomic_load(&mc.now_ms), T0);
}

static void a_wait_on_the_monotonic_clock_times_out_unlisted(void **state)
{
    (void)state;
    sleeper s;
    sleeper_start(&s, NULL, sl_time_mono_ms() + 20);
    sleeper_join(&s);
    assert_true(s.timed_out);
    assert_int_equal(sl__clock_waits_listed(), 0);
}

static void a_waiter_times_out_on_a_manual_clock(void **state)
{
    (void)state;
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_waiter *w = NULL;
    assert_int_equal(sl__waiter_create(&w), SL_OK);
    /* Already past its deadline: the waiter then belongs to the signal. */
    assert_int_equal(sl__waiter_wait_until(w, &mc.clock, T0), SL_TIMEOUT);
    sl__waiter_signal(SL_OK, w);
    assert_int_equal(sl__waiter_create(&w), SL_OK);
    sl__waiter_signal(SL_IO, w);
    assert_int_equal(sl__waiter_wait_until(w, &mc.clock, T0 + 10), SL_IO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(manual_clock_advance_ends_a_wait_at_its_deadline),
        cmocka_unit_test(a_signal_ends_a_wait_on_a_manual_clock),
        cmocka_unit_test(a_wait_on_the_monotonic_clock_times_out_unlisted),
        cmocka_unit_test(a_waiter_times_out_on_a_manual_clock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
