/* The drain-rate sampler with a manual clock and a scripted group: the
 * thread samples on the clock's period, the rates follow the samples. */
#include "runtime/drain_rate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#define T0 1700000000000ull /* manual clock start, ms */

/* What the scripted group reports; the test moves it between samples. */
typedef struct script {
    _Atomic uint64_t settled;
    _Atomic uint64_t ready;
    _Atomic uint64_t backlog;
    _Atomic uint64_t reads;
} script;

static bool read_script(size_t group, sl_drain_reading *out, void *ctx)
{
    script *sc = ctx;
    (void)group;
    out->settled = atomic_load(&sc->settled);
    out->ready = atomic_load(&sc->ready);
    out->backlog = atomic_load(&sc->backlog);
    atomic_fetch_add(&sc->reads, 1);
    return true;
}

typedef struct fx {
    sl_manual_clock mc;
    script sc;
    sl_drain *d;
} fx;

static int setup(void **state)
{
    static fx f;
    memset(&f, 0, sizeof f);
    sl_manual_clock_init(&f.mc, T0);
    sl_drain_opts o = {.ngroups = 1,
                       .read = read_script,
                       .read_ctx = &f.sc,
                       .clock = &f.mc.clock};
    assert_int_equal(sl__drain_create(&o, &f.d), SL_OK);
    assert_int_equal(sl__drain_start(f.d), SL_OK);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl__drain_destroy(f->d);
    return 0;
}

/* One period of the clock passes; the thread takes its sample. */
static void tick(fx *f, uint64_t settled, uint64_t ready)
{
    atomic_store(&f->sc.settled, settled);
    atomic_store(&f->sc.ready, ready);
    uint64_t want = sl__drain_rounds(f->d) + 1;
    f->mc.now_ms += 1000;
    sl__drain_kick(f->d);
    assert_true(sl__drain_wait_rounds(f->d, want, 10000));
}

static void drain_samples_once_per_period_of_the_clock(void **state)
{
    fx *f = *state;
    assert_int_equal(sl__drain_rounds(f->d), 1); /* at creation */
    /* Kicked without the clock moving: no sample. */
    f->mc.now_ms += 999;
    sl__drain_kick(f->d);
    assert_false(sl__drain_wait_rounds(f->d, 2, 50));
    f->mc.now_ms += 1;
    sl__drain_kick(f->d);
    assert_true(sl__drain_wait_rounds(f->d, 2, 10000));
}

static void drain_rate_is_zero_until_a_second_of_history(void **state)
{
    fx *f = *state;
    assert_true(sl__drain_rate_per_s(f->d, 0) == 0);
    tick(f, 30, 0);
    assert_true(sl__drain_rate_per_s(f->d, 0) == 30.0);
}

static void drain_rate_spans_the_window_of_samples(void **state)
{
    fx *f = *state;
    for (uint64_t s = 1; s <= 10; s++) {
        tick(f, 5 * s, 0);
    }
    assert_true(sl__drain_rate_per_s(f->d, 0) == 5.0);
    /* A quiet minute later the window holds only the quiet. */
    for (int s = 0; s < 61; s++) {
        tick(f, 50, 0);
    }
    assert_true(sl__drain_rate_per_s(f->d, 0) == 0);
}

/* The busy rate counts only intervals with events waiting at both ends:
 * what the group does when it has work, not its average over idle time. */
static void drain_busy_rate_ignores_idle_intervals(void **state)
{
    fx *f = *state;
    /* Five idle seconds at 2/s, then three busy ones at 100/s. */
    uint64_t settled = 0;
    for (int s = 0; s < 5; s++) {
        tick(f, settled += 2, 0);
    }
    tick(f, settled += 2, 40);
    for (int s = 0; s < 3; s++) {
        tick(f, settled += 100, 40);
    }
    assert_true(sl__drain_busy_rate_per_s(f->d, 0) == 100.0);
    assert_true(sl__drain_capacity_per_s(f->d, 0) == 100.0);
    /* 312 in 9 s over the window. */
    assert_true(sl__drain_rate_per_s(f->d, 0) == 312.0 / 9.0);
}

/* Admission divides by the slowest recent busy second, so that a rate
 * that wobbles errs towards refusing rather than towards expiring. */
static void drain_busy_rate_is_the_slowest_recent_busy_interval(void **state)
{
    fx *f = *state;
    tick(f, 0, 10);
    tick(f, 100, 10);
    tick(f, 180, 10);
    tick(f, 280, 10);
    assert_true(sl__drain_busy_rate_per_s(f->d, 0) == 80.0);
    /* Ten seconds later the slow one is out of the busy window. */
    uint64_t settled = 280;
    for (int s = 0; s < 10; s++) {
        tick(f, settled += 100, 10);
    }
    assert_true(sl__drain_busy_rate_per_s(f->d, 0) == 100.0);
}

static void drain_capacity_falls_back_to_the_window_rate(void **state)
{
    fx *f = *state;
    assert_true(sl__drain_capacity_per_s(f->d, 0) == 0); /* not measured */
    tick(f, 4, 0);
    tick(f, 8, 0);
    assert_true(sl__drain_busy_rate_per_s(f->d, 0) == 0);
    assert_true(sl__drain_capacity_per_s(f->d, 0) == 4.0);
}

static void drain_backlog_is_read_again_only_when_stale(void **state)
{
    fx *f = *state;
    atomic_store(&f->sc.backlog, 7);
    uint64_t backlog = 0;
    uint64_t reads = atomic_load(&f->sc.reads);
    assert_int_equal(sl__drain_backlog(f->d, 0, 10, &backlog, NULL), SL_OK);
    assert_int_equal(backlog, 7);
    assert_int_equal(atomic_load(&f->sc.reads), reads + 1);
    atomic_store(&f->sc.backlog, 9);
    f->mc.now_ms += 9;
    assert_int_equal(sl__drain_backlog(f->d, 0, 10, &backlog, NULL), SL_OK);
    assert_int_equal(backlog, 7); /* 9 ms old: kept */
    f->mc.now_ms += 1;
    assert_int_equal(sl__drain_backlog(f->d, 0, 10, &backlog, NULL), SL_OK);
    assert_int_equal(backlog, 9);
    assert_int_equal(sl__drain_backlog(f->d, 1, 10, &backlog, NULL),
                     SL_INVALID);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(drain_samples_once_per_period_of_the_clock),
        T(drain_rate_is_zero_until_a_second_of_history),
        T(drain_rate_spans_the_window_of_samples),
        T(drain_busy_rate_ignores_idle_intervals),
        T(drain_busy_rate_is_the_slowest_recent_busy_interval),
        T(drain_capacity_falls_back_to_the_window_rate),
        T(drain_backlog_is_read_again_only_when_stale),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
