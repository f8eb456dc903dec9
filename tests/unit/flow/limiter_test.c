#include "sluice/limiter.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#define T0 7000000 /* an arbitrary start time, ms */

static sl_limiter *make(const sl_limiter_opts *opts)
{
    sl_limiter *lim = NULL;
    assert_int_equal(sl_limiter_create(opts, &lim), SL_OK);
    return lim;
}

static uint32_t acquire_all(sl_limiter *lim)
{
    uint32_t n = 0;
    while (sl_limiter_try_acquire(lim)) {
        n++;
    }
    return n;
}

/* One round at full load: fill the limit, then release every call with the
 * same outcome and RTT. Returns the limit after the round. */
static uint32_t round_at_full_load(sl_limiter *lim, sl_limiter_outcome outcome,
                                   uint64_t rtt_ms, uint64_t *now_ms)
{
    uint32_t n = acquire_all(lim);
    for (uint32_t i = 0; i < n; i++) {
        sl_limiter_release(lim, outcome, rtt_ms, *now_ms);
    }
    *now_ms += rtt_ms;
    return sl_limiter_limit(lim);
}

static void limiter_defaults_to_fixed_10(void **state)
{
    (void)state;
    sl_limiter *lim = make(NULL);
    assert_int_equal(sl_limiter_limit(lim), 10);
    assert_int_equal(acquire_all(lim), 10);
    assert_int_equal(sl_limiter_in_flight(lim), 10);
    sl_limiter_destroy(lim);
}

static void limiter_fixed_admits_again_after_release(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){.limit = 3});
    assert_int_equal(acquire_all(lim), 3);
    sl_limiter_release(lim, SL_LIMITER_SUCCESS, 5, T0);
    assert_int_equal(sl_limiter_in_flight(lim), 2);
    assert_true(sl_limiter_try_acquire(lim));
    assert_false(sl_limiter_try_acquire(lim));
    sl_limiter_destroy(lim);
}

static void limiter_fixed_limit_ignores_latency_and_drops(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){.limit = 4});
    uint64_t now = T0;
    for (int i = 0; i < 50; i++) {
        round_at_full_load(lim, SL_LIMITER_SUCCESS, 1, &now);
        round_at_full_load(lim, SL_LIMITER_SUCCESS, 1000, &now);
        round_at_full_load(lim, SL_LIMITER_DROPPED, 1, &now);
    }
    assert_int_equal(sl_limiter_limit(lim), 4);
    sl_limiter_destroy(lim);
}

typedef struct hammer_arg {
    sl_limiter *lim;
    atomic_uint *in_flight;
    atomic_uint *peak;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *arg = p;
    for (int i = 0; i < 20000; i++) {
        if (!sl_limiter_try_acquire(arg->lim)) {
            continue;
        }
        unsigned now = atomic_fetch_add(arg->in_flight, 1) + 1;
        unsigned peak = atomic_load(arg->peak);
        while (now > peak &&
               !atomic_compare_exchange_weak(arg->peak, &peak, now)) {
        }
        atomic_fetch_sub(arg->in_flight, 1);
        sl_limiter_release(arg->lim, SL_LIMITER_SUCCESS, 1, T0);
    }
    return NULL;
}

static void limiter_fixed_never_exceeds_limit_across_threads(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){.limit = 3});
    atomic_uint in_flight = 0, peak = 0;
    pthread_t threads[6];
    hammer_arg arg = {lim, &in_flight, &peak};
    for (int i = 0; i < 6; i++) {
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &arg), 0);
    }
    for (int i = 0; i < 6; i++) {
        pthread_join(threads[i], NULL);
    }
    assert_in_range(atomic_load(&peak), 1, 3);
    assert_int_equal(sl_limiter_in_flight(lim), 0);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_grows_while_latency_holds(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){.kind = SL_LIMITER_ADAPTIVE});
    uint64_t now = T0;
    uint32_t prev = sl_limiter_limit(lim);
    assert_int_equal(prev, 10);
    for (int i = 0; i < 40; i++) {
        uint32_t limit = round_at_full_load(lim, SL_LIMITER_SUCCESS, 20, &now);
        assert_true(limit >= prev);
        prev = limit;
    }
    assert_true(prev >= 20);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_grows_by_one_per_window(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 10, .window = 5});
    assert_int_equal(acquire_all(lim), 10);
    for (int i = 0; i < 4; i++) {
        sl_limiter_release(lim, SL_LIMITER_SUCCESS, 20, T0);
    }
    assert_int_equal(sl_limiter_limit(lim), 10);
    sl_limiter_release(lim, SL_LIMITER_SUCCESS, 20, T0);
    assert_int_equal(sl_limiter_limit(lim), 11);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_does_not_grow_when_underused(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){.kind = SL_LIMITER_ADAPTIVE});
    for (int i = 0; i < 1000; i++) {
        assert_true(sl_limiter_try_acquire(lim)); /* 1 of 10 in flight */
        sl_limiter_release(lim, SL_LIMITER_SUCCESS, 20, T0);
    }
    assert_int_equal(sl_limiter_limit(lim), 10);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_backs_off_when_latency_rises(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 100, .tolerance = 2.0});
    uint64_t now = T0;
    round_at_full_load(lim, SL_LIMITER_SUCCESS, 20, &now); /* min RTT 20 */
    uint32_t before = sl_limiter_limit(lim);
    /* 40 ms is within 2 x 20 ms: no backoff. */
    assert_true(round_at_full_load(lim, SL_LIMITER_SUCCESS, 40, &now) >=
                before);
    before = sl_limiter_limit(lim);
    /* 41 ms is above it: the first such call backs off by 0.9. */
    assert_int_equal(acquire_all(lim), before);
    for (int i = 0; i < 10; i++) {
        sl_limiter_release(lim, SL_LIMITER_SUCCESS, 41, now);
    }
    assert_int_equal(sl_limiter_limit(lim), (uint32_t)(before * 0.9));
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_backs_off_on_drop(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 50, .backoff = 0.5});
    assert_true(sl_limiter_try_acquire(lim));
    sl_limiter_release(lim, SL_LIMITER_DROPPED, 0, T0);
    assert_int_equal(sl_limiter_limit(lim), 25);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_backs_off_once_per_window(void **state)
{
    (void)state;
    /* 50 calls in flight all report one congestion episode: that is one
     * decrease, not fifty. */
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 50, .backoff = 0.5});
    assert_int_equal(acquire_all(lim), 50);
    sl_limiter_release(lim, SL_LIMITER_DROPPED, 0, T0);
    assert_int_equal(sl_limiter_limit(lim), 25);
    for (int i = 0; i < 24; i++) {
        sl_limiter_release(lim, SL_LIMITER_DROPPED, 0, T0);
    }
    assert_int_equal(sl_limiter_limit(lim), 25);
    /* 25 samples (the new limit) after the decrease: a new episode. */
    sl_limiter_release(lim, SL_LIMITER_DROPPED, 0, T0);
    assert_int_equal(sl_limiter_limit(lim), 12);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_respects_max(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 10, .max_limit = 13});
    uint64_t now = T0;
    for (int i = 0; i < 200; i++) {
        assert_true(round_at_full_load(lim, SL_LIMITER_SUCCESS, 5, &now) <= 13);
    }
    assert_int_equal(sl_limiter_limit(lim), 13);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_respects_min(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 40, .min_limit = 4});
    uint64_t now = T0;
    for (int i = 0; i < 200; i++) {
        assert_true(round_at_full_load(lim, SL_LIMITER_DROPPED, 5, &now) >= 4);
    }
    assert_int_equal(sl_limiter_limit(lim), 4);
    sl_limiter_destroy(lim);
}

static void limiter_adaptive_relearns_a_new_baseline_latency(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 20, .rtt_window_ms = 1000});
    uint64_t now = T0;
    round_at_full_load(lim, SL_LIMITER_SUCCESS, 10, &now);
    /* The baseline moves to 100 ms for good. It is congestion at first,
     * but within two RTT periods it is the new minimum and growth resumes. */
    assert_true(round_at_full_load(lim, SL_LIMITER_SUCCESS, 100, &now) < 20);
    for (int i = 0; i < 30; i++) {
        round_at_full_load(lim, SL_LIMITER_SUCCESS, 100, &now);
    }
    uint32_t settled = sl_limiter_limit(lim);
    for (int i = 0; i < 30; i++) {
        round_at_full_load(lim, SL_LIMITER_SUCCESS, 100, &now);
    }
    assert_true(sl_limiter_limit(lim) > settled);
    sl_limiter_destroy(lim);
}

static void limiter_ignore_outcome_only_frees_the_slot(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){
        .kind = SL_LIMITER_ADAPTIVE, .limit = 10, .window = 1});
    uint64_t now = T0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(
            round_at_full_load(lim, SL_LIMITER_IGNORE, 100000, &now), 10);
    }
    sl_limiter_destroy(lim);
}

static void limiter_extra_release_is_ignored(void **state)
{
    (void)state;
    sl_limiter *lim = make(&(sl_limiter_opts){.limit = 2});
    sl_limiter_release(lim, SL_LIMITER_SUCCESS, 1, T0);
    assert_int_equal(sl_limiter_in_flight(lim), 0);
    assert_int_equal(acquire_all(lim), 2);
    sl_limiter_destroy(lim);
}

static void limiter_create_rejects_invalid_opts(void **state)
{
    (void)state;
    sl_limiter *lim = (sl_limiter *)&lim;
    sl_limiter *const sentinel = lim;
    const sl_limiter_opts bad[] = {
        {.kind = (sl_limiter_kind)9},
        {.kind = SL_LIMITER_ADAPTIVE, .min_limit = 20},
        {.kind = SL_LIMITER_ADAPTIVE, .max_limit = 5},
        {.kind = SL_LIMITER_ADAPTIVE, .backoff = 1.0},
        {.kind = SL_LIMITER_ADAPTIVE, .backoff = -0.5},
        {.kind = SL_LIMITER_ADAPTIVE, .tolerance = 0.5},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sl_limiter_create(&bad[i], &lim), SL_INVALID);
    }
    assert_int_equal(sl_limiter_create(NULL, NULL), SL_INVALID);
    assert_ptr_equal(lim, sentinel);
}

static void limiter_null_handle_is_harmless(void **state)
{
    (void)state;
    sl_limiter_destroy(NULL);
    assert_false(sl_limiter_try_acquire(NULL));
    sl_limiter_release(NULL, SL_LIMITER_SUCCESS, 1, T0);
    assert_int_equal(sl_limiter_limit(NULL), 0);
    assert_int_equal(sl_limiter_in_flight(NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limiter_defaults_to_fixed_10),
        cmocka_unit_test(limiter_fixed_admits_again_after_release),
        cmocka_unit_test(limiter_fixed_limit_ignores_latency_and_drops),
        cmocka_unit_test(limiter_fixed_never_exceeds_limit_across_threads),
        cmocka_unit_test(limiter_adaptive_grows_while_latency_holds),
        cmocka_unit_test(limiter_adaptive_grows_by_one_per_window),
        cmocka_unit_test(limiter_adaptive_does_not_grow_when_underused),
        cmocka_unit_test(limiter_adaptive_backs_off_when_latency_rises),
        cmocka_unit_test(limiter_adaptive_backs_off_on_drop),
        cmocka_unit_test(limiter_adaptive_backs_off_once_per_window),
        cmocka_unit_test(limiter_adaptive_respects_max),
        cmocka_unit_test(limiter_adaptive_respects_min),
        cmocka_unit_test(limiter_adaptive_relearns_a_new_baseline_latency),
        cmocka_unit_test(limiter_ignore_outcome_only_frees_the_slot),
        cmocka_unit_test(limiter_extra_release_is_ignored),
        cmocka_unit_test(limiter_create_rejects_invalid_opts),
        cmocka_unit_test(limiter_null_handle_is_harmless),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
