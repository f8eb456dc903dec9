#include "sluice/token_bucket.h"

#include "sluice/alloc.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#define T0 1000000 /* an arbitrary start time, ms */

static sl_token_bucket *make(double rate_per_s, double burst)
{
    sl_token_bucket *tb = NULL;
    sl_token_bucket_opts opts = {.rate_per_s = rate_per_s, .burst = burst};
    assert_int_equal(sl_token_bucket_create(&opts, T0, &tb), SL_OK);
    return tb;
}

static int take_all(sl_token_bucket *tb, uint64_t now_ms)
{
    int n = 0;
    while (sl_token_bucket_try_take(tb, 1, now_ms)) {
        n++;
    }
    return n;
}

static void token_bucket_defaults_are_20_per_s_burst_40(void **state)
{
    (void)state;
    sl_token_bucket *tb = NULL;
    assert_int_equal(sl_token_bucket_create(NULL, T0, &tb), SL_OK);
    assert_int_equal(take_all(tb, T0), 40);
    assert_int_equal(take_all(tb, T0 + 1000), 20);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_starts_full(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(1, 5);
    assert_true(sl_token_bucket_tokens(tb, T0) == 5.0);
    assert_true(sl_token_bucket_try_take(tb, 5, T0));
    assert_false(sl_token_bucket_try_take(tb, 1, T0));
    sl_token_bucket_destroy(tb);
}

static void token_bucket_refills_at_rate(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(10, 10);
    assert_int_equal(take_all(tb, T0), 10);
    assert_int_equal(take_all(tb, T0 + 99), 0);
    assert_int_equal(take_all(tb, T0 + 100), 1);
    assert_int_equal(take_all(tb, T0 + 600), 5);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_never_holds_more_than_burst(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(100, 3);
    assert_int_equal(take_all(tb, T0), 3);
    assert_true(sl_token_bucket_tokens(tb, T0 + 3600 * 1000) == 3.0);
    assert_int_equal(take_all(tb, T0 + 3600 * 1000), 3);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_takes_fractional_tokens(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(1, 1);
    assert_true(sl_token_bucket_try_take(tb, 0.25, T0));
    assert_true(sl_token_bucket_try_take(tb, 0.75, T0));
    assert_false(sl_token_bucket_try_take(tb, 0.01, T0));
    sl_token_bucket_destroy(tb);
}

static void token_bucket_refusal_takes_nothing(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(1, 4);
    assert_true(sl_token_bucket_try_take(tb, 3, T0));
    assert_false(sl_token_bucket_try_take(tb, 2, T0));
    assert_true(sl_token_bucket_try_take(tb, 1, T0));
    sl_token_bucket_destroy(tb);
}

static void token_bucket_wait_ms_is_zero_when_tokens_are_there(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(1, 2);
    assert_int_equal(sl_token_bucket_wait_ms(tb, 2, T0), 0);
    assert_int_equal(sl_token_bucket_wait_ms(tb, 0, T0), 0);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_wait_ms_is_exactly_when_take_succeeds(void **state)
{
    (void)state;
    /* Awkward rates exercise the rounding of the wait. */
    const double rates[] = {3, 7, 0.3, 33.3, 1000, 1e-3};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        sl_token_bucket *tb = make(rates[i], 5);
        assert_true(sl_token_bucket_try_take(tb, 5, T0));
        for (uint64_t now = T0, k = 0; k < 20; k++) {
            uint64_t wait = sl_token_bucket_wait_ms(tb, 1, now);
            assert_true(wait > 0 && wait < UINT64_MAX);
            if (wait > 1) {
                assert_false(sl_token_bucket_try_take(tb, 1, now + wait - 1));
            }
            now += wait;
            assert_true(sl_token_bucket_try_take(tb, 1, now));
        }
        sl_token_bucket_destroy(tb);
    }
}

static void token_bucket_more_than_burst_never_passes(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(10, 5);
    assert_false(sl_token_bucket_try_take(tb, 6, T0 + 1000000));
    assert_int_equal(sl_token_bucket_wait_ms(tb, 6, T0), UINT64_MAX);
    assert_false(sl_token_bucket_try_take(tb, NAN, T0));
    assert_int_equal(sl_token_bucket_wait_ms(tb, NAN, T0), UINT64_MAX);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_time_going_backwards_adds_nothing(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(10, 10);
    assert_int_equal(take_all(tb, T0 + 5000), 10);
    assert_int_equal(take_all(tb, T0), 0);
    assert_int_equal(take_all(tb, T0 + 5000), 0);
    assert_int_equal(take_all(tb, T0 + 5100), 1);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_wait_ms_from_a_stale_clock_is_prompt(void **state)
{
    (void)state;
    sl_token_bucket *tb = make(1, 1);
    assert_true(sl_token_bucket_try_take(tb, 1, UINT64_MAX / 2));
    /* A reading far behind the last take counts as no time passing. */
    assert_int_equal(sl_token_bucket_wait_ms(tb, 1, 0), 1000);
    sl_token_bucket_destroy(tb);
}

static void token_bucket_create_rejects_invalid_opts(void **state)
{
    (void)state;
    sl_token_bucket *tb = (sl_token_bucket *)&tb;
    sl_token_bucket *const sentinel = tb;
    const sl_token_bucket_opts bad[] = {
        {.rate_per_s = -1},       {.burst = -1},
        {.rate_per_s = NAN},      {.burst = NAN},
        {.rate_per_s = INFINITY}, {.burst = INFINITY},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(sl_token_bucket_create(&bad[i], T0, &tb), SL_INVALID);
    }
    assert_int_equal(sl_token_bucket_create(NULL, T0, NULL), SL_INVALID);
    assert_ptr_equal(tb, sentinel);
}

static void token_bucket_destroy_null_is_noop(void **state)
{
    (void)state;
    sl_token_bucket_destroy(NULL);
    sl_keyed_bucket_destroy(NULL);
}

/* Keyed buckets. */

static sl_keyed_bucket *make_keyed(double rate_per_s, double burst,
                                   size_t max_keys)
{
    sl_keyed_bucket *kb = NULL;
    sl_keyed_bucket_opts opts = {
        .rate_per_s = rate_per_s, .burst = burst, .max_keys = max_keys};
    assert_int_equal(sl_keyed_bucket_create(&opts, &kb), SL_OK);
    return kb;
}

static int take_all_keyed(sl_keyed_bucket *kb, const char *key, uint64_t now_ms)
{
    int n = 0;
    while (sl_keyed_bucket_try_take(kb, key, 1, now_ms, NULL)) {
        n++;
    }
    return n;
}

static sl_keyed_bucket_stats stats_of(sl_keyed_bucket *kb)
{
    sl_keyed_bucket_stats st;
    sl_keyed_bucket_get_stats(kb, &st);
    return st;
}

static void keyed_bucket_defaults_are_20_per_s_burst_40(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = NULL;
    assert_int_equal(sl_keyed_bucket_create(NULL, &kb), SL_OK);
    assert_int_equal(take_all_keyed(kb, "a", T0), 40);
    assert_int_equal(take_all_keyed(kb, "a", T0 + 1000), 20);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_keys_are_independent(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = make_keyed(1, 3, 0);
    assert_int_equal(take_all_keyed(kb, "tenant-a", T0), 3);
    assert_int_equal(take_all_keyed(kb, "tenant-b", T0), 3);
    assert_int_equal(take_all_keyed(kb, "tenant-a", T0), 0);
    assert_int_equal(stats_of(kb).keys, 2);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_refusal_reports_retry_after(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = make_keyed(4, 2, 0);
    uint64_t retry_after = 12345;
    assert_true(sl_keyed_bucket_try_take(kb, "k", 2, T0, &retry_after));
    assert_int_equal(retry_after, 12345); /* untouched on success */
    assert_false(sl_keyed_bucket_try_take(kb, "k", 1, T0, &retry_after));
    assert_int_equal(retry_after, 250);
    assert_true(sl_keyed_bucket_try_take(kb, "k", 1, T0 + 250, NULL));
    assert_false(sl_keyed_bucket_try_take(kb, "k", 3, T0, &retry_after));
    assert_int_equal(retry_after, UINT64_MAX);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_key_count_never_exceeds_max(void **state)
{
    (void)state;
    const size_t max_keys = 100;
    sl_keyed_bucket *kb = make_keyed(1, 1, max_keys);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(key, sizeof key, "client-%d", i);
        assert_true(sl_keyed_bucket_try_take(kb, key, 1, T0, NULL));
        assert_true(stats_of(kb).keys <= max_keys);
    }
    sl_keyed_bucket_stats st = stats_of(kb);
    assert_int_equal(st.keys, max_keys);
    assert_int_equal(st.evictions, 5000 - max_keys);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_evicts_least_recently_used(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = make_keyed(1, 1, 2);
    assert_true(sl_keyed_bucket_try_take(kb, "a", 1, T0, NULL));
    assert_true(sl_keyed_bucket_try_take(kb, "b", 1, T0, NULL));
    assert_false(sl_keyed_bucket_try_take(kb, "a", 1, T0, NULL)); /* touch */
    assert_true(sl_keyed_bucket_try_take(kb, "c", 1, T0, NULL));  /* evicts b */
    assert_false(sl_keyed_bucket_try_take(kb, "a", 1, T0, NULL)); /* kept */
    assert_int_equal(stats_of(kb).evictions, 1);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_evicted_key_starts_full(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = make_keyed(1, 2, 1);
    assert_int_equal(take_all_keyed(kb, "a", T0), 2);
    assert_true(sl_keyed_bucket_try_take(kb, "b", 1, T0, NULL)); /* evicts a */
    assert_int_equal(take_all_keyed(kb, "a", T0), 2);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_remembers_every_key_below_max(void **state)
{
    (void)state;
    /* Enough keys to make the hash table grow several times. */
    const int n = 3000;
    sl_keyed_bucket *kb = make_keyed(1, 1, 0);
    char key[32];
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%d", i);
        assert_true(sl_keyed_bucket_try_take(kb, key, 1, T0, NULL));
    }
    for (int i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%d", i);
        assert_false(sl_keyed_bucket_try_take(kb, key, 1, T0, NULL));
    }
    sl_keyed_bucket_stats st = stats_of(kb);
    assert_int_equal(st.keys, n);
    assert_int_equal(st.evictions, 0);
    assert_int_equal(st.allowed, n);
    assert_int_equal(st.refused, n);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_null_key_is_refused(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = make_keyed(1, 1, 0);
    assert_false(sl_keyed_bucket_try_take(kb, NULL, 1, T0, NULL));
    assert_int_equal(stats_of(kb).keys, 0);
    sl_keyed_bucket_destroy(kb);
}

static int fail_malloc_now;

static void *failing_malloc(size_t size)
{
    return fail_malloc_now ? NULL : malloc(size);
}

static void keyed_bucket_fails_closed_without_memory(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = make_keyed(1, 1, 0);
    sl_alloc_set(&(sl_allocator){failing_malloc, realloc, free});
    fail_malloc_now = 1;
    uint64_t retry_after = 99;
    bool ok = sl_keyed_bucket_try_take(kb, "new", 1, T0, &retry_after);
    fail_malloc_now = 0;
    sl_alloc_set(NULL);
    assert_false(ok);
    assert_int_equal(retry_after, 0);
    sl_keyed_bucket_stats st = stats_of(kb);
    assert_int_equal(st.alloc_failed, 1);
    assert_int_equal(st.keys, 0);
    assert_true(sl_keyed_bucket_try_take(kb, "new", 1, T0, NULL));
    sl_keyed_bucket_destroy(kb);
}

typedef struct hammer_arg {
    sl_keyed_bucket *kb;
    int allowed;
} hammer_arg;

static void *hammer(void *p)
{
    hammer_arg *arg = p;
    char key[16];
    for (int i = 0; i < 2000; i++) {
        snprintf(key, sizeof key, "k%d", i % 8);
        arg->allowed += sl_keyed_bucket_try_take(arg->kb, key, 1, T0, NULL);
    }
    return NULL;
}

static void keyed_bucket_is_exact_under_concurrent_use(void **state)
{
    (void)state;
    /* At one instant, 8 keys with burst 10 admit exactly 80 takes however
     * the threads interleave. */
    sl_keyed_bucket *kb = make_keyed(1, 10, 0);
    pthread_t threads[4];
    hammer_arg args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (hammer_arg){kb, 0};
        assert_int_equal(pthread_create(&threads[i], NULL, hammer, &args[i]),
                         0);
    }
    int allowed = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(threads[i], NULL);
        allowed += args[i].allowed;
    }
    assert_int_equal(allowed, 80);
    assert_int_equal(stats_of(kb).allowed, 80);
    sl_keyed_bucket_destroy(kb);
}

static void keyed_bucket_create_rejects_invalid_opts(void **state)
{
    (void)state;
    sl_keyed_bucket *kb = (sl_keyed_bucket *)&kb;
    sl_keyed_bucket *const sentinel = kb;
    assert_int_equal(
        sl_keyed_bucket_create(&(sl_keyed_bucket_opts){.rate_per_s = -2}, &kb),
        SL_INVALID);
    assert_int_equal(
        sl_keyed_bucket_create(&(sl_keyed_bucket_opts){.burst = NAN}, &kb),
        SL_INVALID);
    assert_int_equal(sl_keyed_bucket_create(NULL, NULL), SL_INVALID);
    assert_ptr_equal(kb, sentinel);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(token_bucket_defaults_are_20_per_s_burst_40),
        cmocka_unit_test(token_bucket_starts_full),
        cmocka_unit_test(token_bucket_refills_at_rate),
        cmocka_unit_test(token_bucket_never_holds_more_than_burst),
        cmocka_unit_test(token_bucket_takes_fractional_tokens),
        cmocka_unit_test(token_bucket_refusal_takes_nothing),
        cmocka_unit_test(token_bucket_wait_ms_is_zero_when_tokens_are_there),
        cmocka_unit_test(token_bucket_wait_ms_is_exactly_when_take_succeeds),
        cmocka_unit_test(token_bucket_more_than_burst_never_passes),
        cmocka_unit_test(token_bucket_time_going_backwards_adds_nothing),
        cmocka_unit_test(token_bucket_wait_ms_from_a_stale_clock_is_prompt),
        cmocka_unit_test(token_bucket_create_rejects_invalid_opts),
        cmocka_unit_test(token_bucket_destroy_null_is_noop),
        cmocka_unit_test(keyed_bucket_defaults_are_20_per_s_burst_40),
        cmocka_unit_test(keyed_bucket_keys_are_independent),
        cmocka_unit_test(keyed_bucket_refusal_reports_retry_after),
        cmocka_unit_test(keyed_bucket_key_count_never_exceeds_max),
        cmocka_unit_test(keyed_bucket_evicts_least_recently_used),
        cmocka_unit_test(keyed_bucket_evicted_key_starts_full),
        cmocka_unit_test(keyed_bucket_remembers_every_key_below_max),
        cmocka_unit_test(keyed_bucket_null_key_is_refused),
        cmocka_unit_test(keyed_bucket_fails_closed_without_memory),
        cmocka_unit_test(keyed_bucket_is_exact_under_concurrent_use),
        cmocka_unit_test(keyed_bucket_create_rejects_invalid_opts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
