#include "sluice/retry.h"

#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static sl_retry_schedule *make(const sl_retry_opts *opts)
{
    sl_retry_schedule *sched = NULL;
    assert_int_equal(sl_retry_create(opts, &sched), SL_OK);
    assert_non_null(sched);
    return sched;
}

static uint64_t ceiling_of(uint64_t base, uint64_t cap, uint32_t attempt)
{
    uint64_t c = base;
    for (uint32_t i = 1; i < attempt && c < cap; i++) {
        c *= 2;
    }
    return c < cap ? c : cap;
}

static void retry_default_ladder_is_1s_5s_10s_last_repeats(void **state)
{
    (void)state;
    sl_retry_schedule *sched = make(NULL);
    assert_int_equal(sl_retry_delay_ms(sched, 1), 1000);
    assert_int_equal(sl_retry_delay_ms(sched, 2), 5000);
    assert_int_equal(sl_retry_delay_ms(sched, 3), 10000);
    assert_int_equal(sl_retry_delay_ms(sched, 4), 10000);
    assert_int_equal(sl_retry_delay_ms(sched, UINT32_MAX), 10000);
    sl_retry_destroy(sched);
}

static void retry_custom_ladder_is_copied_and_last_value_repeats(void **state)
{
    (void)state;
    uint64_t ladder[] = {250, 2000};
    sl_retry_schedule *sched =
        make(&(sl_retry_opts){.ladder_ms = ladder, .ladder_len = 2});
    ladder[0] = 999; /* the schedule holds its own copy */
    assert_int_equal(sl_retry_delay_ms(sched, 1), 250);
    assert_int_equal(sl_retry_delay_ms(sched, 2), 2000);
    assert_int_equal(sl_retry_delay_ms(sched, 7), 2000);
    sl_retry_destroy(sched);
}

static void retry_attempt_zero_counts_as_first(void **state)
{
    (void)state;
    sl_retry_schedule *sched = make(NULL);
    assert_int_equal(sl_retry_delay_ms(sched, 0), 1000);
    sl_retry_destroy(sched);
}

static void retry_exponential_stays_within_full_jitter_bounds(void **state)
{
    (void)state;
    sl_retry_schedule *sched = make(&(sl_retry_opts){
        .kind = SL_RETRY_EXPONENTIAL, .base_ms = 100, .cap_ms = 5000});
    for (uint32_t attempt = 1; attempt <= 12; attempt++) {
        uint64_t ceiling = ceiling_of(100, 5000, attempt);
        for (int i = 0; i < 1000; i++) {
            assert_in_range(sl_retry_delay_ms(sched, attempt), 0, ceiling);
        }
    }
    sl_retry_destroy(sched);
}

static void retry_exponential_jitter_spans_whole_range(void **state)
{
    (void)state;
    sl_retry_schedule *sched = make(&(sl_retry_opts){
        .kind = SL_RETRY_EXPONENTIAL, .base_ms = 1000, .cap_ms = 1000});
    uint64_t lo = UINT64_MAX, hi = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t d = sl_retry_delay_ms(sched, 1);
        lo = d < lo ? d : lo;
        hi = d > hi ? d : hi;
    }
    assert_true(lo < 50);
    assert_true(hi > 950);
    sl_retry_destroy(sched);
}

static void retry_exponential_defaults_are_100ms_base_30s_cap(void **state)
{
    (void)state;
    sl_retry_schedule *sched =
        make(&(sl_retry_opts){.kind = SL_RETRY_EXPONENTIAL});
    uint64_t hi1 = 0, hi20 = 0;
    for (int i = 0; i < 2000; i++) {
        uint64_t d1 = sl_retry_delay_ms(sched, 1);
        uint64_t d20 = sl_retry_delay_ms(sched, 20);
        hi1 = d1 > hi1 ? d1 : hi1;
        hi20 = d20 > hi20 ? d20 : hi20;
    }
    assert_in_range(hi1, 90, 100);
    assert_in_range(hi20, 29000, 30000);
    sl_retry_destroy(sched);
}

static void retry_exponential_huge_attempt_saturates_at_cap(void **state)
{
    (void)state;
    sl_retry_schedule *sched = make(&(sl_retry_opts){
        .kind = SL_RETRY_EXPONENTIAL, .base_ms = 3, .cap_ms = 1000});
    uint64_t hi = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t d = sl_retry_delay_ms(sched, UINT32_MAX);
        assert_in_range(d, 0, 1000);
        hi = d > hi ? d : hi;
    }
    assert_true(hi > 900);
    sl_retry_destroy(sched);
}

static void retry_exponential_doubling_does_not_wrap(void **state)
{
    (void)state;
    /* base * 2^2 overflows 64 bits: the ceiling must saturate, not wrap. */
    sl_retry_schedule *sched =
        make(&(sl_retry_opts){.kind = SL_RETRY_EXPONENTIAL,
                              .base_ms = UINT64_MAX / 2 + 1,
                              .cap_ms = UINT64_MAX});
    uint64_t hi = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t d = sl_retry_delay_ms(sched, 3);
        hi = d > hi ? d : hi;
    }
    assert_true(hi > UINT64_MAX / 2);
    sl_retry_destroy(sched);
}

static void fill(sl_retry_schedule *sched, uint64_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        out[i] = sl_retry_delay_ms(sched, 10);
    }
}

static void retry_same_seed_gives_same_sequence(void **state)
{
    (void)state;
    sl_retry_opts opts = {.kind = SL_RETRY_EXPONENTIAL, .seed = 42};
    sl_retry_schedule *a = make(&opts);
    sl_retry_schedule *b = make(&opts);
    uint64_t sa[32], sb[32];
    fill(a, sa, 32);
    fill(b, sb, 32);
    assert_memory_equal(sa, sb, sizeof sa);
    sl_retry_destroy(a);
    sl_retry_destroy(b);
}

static void retry_different_seeds_give_different_sequences(void **state)
{
    (void)state;
    sl_retry_schedule *a =
        make(&(sl_retry_opts){.kind = SL_RETRY_EXPONENTIAL, .seed = 1});
    sl_retry_schedule *b =
        make(&(sl_retry_opts){.kind = SL_RETRY_EXPONENTIAL, .seed = 2});
    uint64_t sa[32], sb[32];
    fill(a, sa, 32);
    fill(b, sb, 32);
    assert_memory_not_equal(sa, sb, sizeof sa);
    sl_retry_destroy(a);
    sl_retry_destroy(b);
}

static void retry_zero_seed_is_deterministic(void **state)
{
    (void)state;
    sl_retry_opts opts = {.kind = SL_RETRY_EXPONENTIAL};
    sl_retry_schedule *a = make(&opts);
    sl_retry_schedule *b = make(&opts);
    uint64_t sa[32], sb[32];
    fill(a, sa, 32);
    fill(b, sb, 32);
    assert_memory_equal(sa, sb, sizeof sa);
    sl_retry_destroy(a);
    sl_retry_destroy(b);
}

static void retry_create_rejects_invalid_opts(void **state)
{
    (void)state;
    sl_retry_schedule *sched = (sl_retry_schedule *)&sched;
    sl_retry_schedule *const sentinel = sched;
    assert_int_equal(sl_retry_create(NULL, NULL), SL_INVALID);
    assert_int_equal(
        sl_retry_create(&(sl_retry_opts){.kind = (sl_retry_kind)7}, &sched),
        SL_INVALID);
    assert_int_equal(sl_retry_create(&(sl_retry_opts){.ladder_len = 3}, &sched),
                     SL_INVALID);
    assert_ptr_equal(sched, sentinel); /* out untouched on failure */
}

static void retry_parse_ladder_accepts_common_forms(void **state)
{
    (void)state;
    uint64_t *ladder = NULL;
    size_t len = 0;
    assert_int_equal(sl_retry_parse_ladder("1s, 5s, 10s", &ladder, &len, NULL),
                     SL_OK);
    assert_int_equal(len, 3);
    assert_int_equal(ladder[0], 1000);
    assert_int_equal(ladder[1], 5000);
    assert_int_equal(ladder[2], 10000);
    sl_free(ladder);

    assert_int_equal(sl_retry_parse_ladder("250ms,2s,1m", &ladder, &len, NULL),
                     SL_OK);
    assert_int_equal(len, 3);
    assert_int_equal(ladder[0], 250);
    assert_int_equal(ladder[1], 2000);
    assert_int_equal(ladder[2], 60000);
    sl_free(ladder);

    assert_int_equal(sl_retry_parse_ladder("500", &ladder, &len, NULL), SL_OK);
    assert_int_equal(len, 1);
    assert_int_equal(ladder[0], 500);
    sl_free(ladder);
}

static void assert_ladder_refused(const char *text, const char *needle)
{
    uint64_t *ladder = (uint64_t *)&ladder;
    uint64_t *const sentinel = ladder;
    size_t len = 99;
    sl_diag diag = {0};
    assert_int_equal(sl_retry_parse_ladder(text, &ladder, &len, &diag),
                     SL_INVALID);
    assert_int_equal(diag.status, SL_INVALID);
    assert_non_null(strstr(diag.msg, needle));
    assert_ptr_equal(ladder, sentinel);
    assert_int_equal(len, 99);
}

static void retry_parse_ladder_names_the_bad_item_in_diag(void **state)
{
    (void)state;
    assert_ladder_refused("1s, 5x, 10s", "item 2 (\"5x\")");
    assert_ladder_refused("1s, 5s, 1.5ms", "item 3");
}

static void retry_parse_ladder_rejects_empty_items(void **state)
{
    (void)state;
    assert_ladder_refused("", "item 1 is empty");
    assert_ladder_refused("1s,,2s", "item 2 is empty");
    assert_ladder_refused("1s, ", "item 2 is empty");
}

static void retry_parsed_ladder_drives_a_schedule(void **state)
{
    (void)state;
    uint64_t *ladder = NULL;
    size_t len = 0;
    assert_int_equal(sl_retry_parse_ladder("2s, 4s", &ladder, &len, NULL),
                     SL_OK);
    sl_retry_schedule *sched =
        make(&(sl_retry_opts){.ladder_ms = ladder, .ladder_len = len});
    sl_free(ladder);
    assert_int_equal(sl_retry_delay_ms(sched, 1), 2000);
    assert_int_equal(sl_retry_delay_ms(sched, 5), 4000);
    sl_retry_destroy(sched);
}

static void retry_destroy_null_is_noop(void **state)
{
    (void)state;
    sl_retry_destroy(NULL);
    assert_int_equal(sl_retry_delay_ms(NULL, 1), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(retry_default_ladder_is_1s_5s_10s_last_repeats),
        cmocka_unit_test(retry_custom_ladder_is_copied_and_last_value_repeats),
        cmocka_unit_test(retry_attempt_zero_counts_as_first),
        cmocka_unit_test(retry_exponential_stays_within_full_jitter_bounds),
        cmocka_unit_test(retry_exponential_jitter_spans_whole_range),
        cmocka_unit_test(retry_exponential_defaults_are_100ms_base_30s_cap),
        cmocka_unit_test(retry_exponential_huge_attempt_saturates_at_cap),
        cmocka_unit_test(retry_exponential_doubling_does_not_wrap),
        cmocka_unit_test(retry_same_seed_gives_same_sequence),
        cmocka_unit_test(retry_different_seeds_give_different_sequences),
        cmocka_unit_test(retry_zero_seed_is_deterministic),
        cmocka_unit_test(retry_create_rejects_invalid_opts),
        cmocka_unit_test(retry_parse_ladder_accepts_common_forms),
        cmocka_unit_test(retry_parse_ladder_names_the_bad_item_in_diag),
        cmocka_unit_test(retry_parse_ladder_rejects_empty_items),
        cmocka_unit_test(retry_parsed_ladder_drives_a_schedule),
        cmocka_unit_test(retry_destroy_null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
