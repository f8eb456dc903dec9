/* The embedded engine's memory of recently published ids. */
#include "engine/dedup.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <cmocka.h>

#define T0 1700000000000ull /* an arbitrary wall-clock start, ms */
#define WINDOW 1000

/* Two distinct scopes, as the engine uses channel pointers. */
static const int channel_a = 1;
static const int channel_b = 2;

static sl_dedup *make(size_t max_ids, uint64_t window_ms)
{
    sl_dedup *dd = NULL;
    assert_int_equal(sl__dedup_create(max_ids, window_ms, &dd), SL_OK);
    assert_non_null(dd);
    return dd;
}

static void dedup_contains_an_id_only_after_it_was_added(void **state)
{
    (void)state;
    sl_dedup *dd = make(16, WINDOW);
    assert_false(sl__dedup_contains(dd, &channel_a, "evt-1", T0));
    sl__dedup_add(dd, &channel_a, "evt-1", T0);
    assert_true(sl__dedup_contains(dd, &channel_a, "evt-1", T0));
    assert_false(sl__dedup_contains(dd, &channel_a, "evt-2", T0));
    assert_int_equal(sl__dedup_size(dd), 1);
    sl__dedup_destroy(dd);
}

static void dedup_forgets_ids_after_the_window(void **state)
{
    (void)state;
    sl_dedup *dd = make(16, WINDOW);
    sl__dedup_add(dd, &channel_a, "evt-1", T0);
    assert_true(sl__dedup_contains(dd, &channel_a, "evt-1", T0 + WINDOW - 1));
    assert_false(sl__dedup_contains(dd, &channel_a, "evt-1", T0 + WINDOW));
    assert_int_equal(sl__dedup_size(dd), 0);
    sl__dedup_destroy(dd);
}

static void dedup_window_is_counted_from_each_ids_own_time(void **state)
{
    (void)state;
    sl_dedup *dd = make(16, WINDOW);
    sl__dedup_add(dd, &channel_a, "early", T0);
    sl__dedup_add(dd, &channel_a, "late", T0 + 600);
    assert_false(sl__dedup_contains(dd, &channel_a, "early", T0 + WINDOW));
    assert_true(sl__dedup_contains(dd, &channel_a, "late", T0 + WINDOW));
    assert_true(
        sl__dedup_contains(dd, &channel_a, "late", T0 + 600 + WINDOW - 1));
    assert_false(sl__dedup_contains(dd, &channel_a, "late", T0 + 600 + WINDOW));
    sl__dedup_destroy(dd);
}

static void
dedup_holds_at_most_max_ids_forgetting_the_oldest_first(void **state)
{
    (void)state;
    sl_dedup *dd = make(3, WINDOW);
    sl__dedup_add(dd, &channel_a, "a", T0);
    sl__dedup_add(dd, &channel_a, "b", T0 + 1);
    sl__dedup_add(dd, &channel_a, "c", T0 + 2);
    sl__dedup_add(dd, &channel_a, "d", T0 + 3);
    assert_int_equal(sl__dedup_size(dd), 3);
    assert_false(sl__dedup_contains(dd, &channel_a, "a", T0 + 3));
    assert_true(sl__dedup_contains(dd, &channel_a, "b", T0 + 3));
    assert_true(sl__dedup_contains(dd, &channel_a, "c", T0 + 3));
    assert_true(sl__dedup_contains(dd, &channel_a, "d", T0 + 3));
    sl__dedup_add(dd, &channel_a, "e", T0 + 4);
    assert_false(sl__dedup_contains(dd, &channel_a, "b", T0 + 4));
    assert_true(sl__dedup_contains(dd, &channel_a, "e", T0 + 4));
    sl__dedup_destroy(dd);
}

/* Many ids share hash buckets and the ring wraps several times: every id
 * still in the bound is found, every evicted one is not. */
static void dedup_bound_holds_across_many_ids(void **state)
{
    (void)state;
    enum { MAX = 100, TOTAL = 1050 };
    sl_dedup *dd = make(MAX, 3600 * 1000);
    char id[32];
    for (int i = 0; i < TOTAL; i++) {
        snprintf(id, sizeof id, "evt-%d", i);
        sl__dedup_add(dd, &channel_a, id, T0 + (uint64_t)i);
        assert_true(sl__dedup_size(dd) <= MAX);
    }
    assert_int_equal(sl__dedup_size(dd), MAX);
    for (int i = 0; i < TOTAL; i++) {
        snprintf(id, sizeof id, "evt-%d", i);
        bool kept = i >= TOTAL - MAX;
        assert_int_equal(sl__dedup_contains(dd, &channel_a, id, T0 + TOTAL),
                         kept);
    }
    sl__dedup_destroy(dd);
}

/* Adds at irregular times, with expiry and eviction interleaved, checked
 * against the definition: an id is known iff it is among the last max_ids
 * added and younger than the window. Exercises lookups across removals
 * from a crowded index. */
static void dedup_agrees_with_its_definition_over_many_adds(void **state)
{
    (void)state;
    enum { MAX = 64, STEPS = 3000, CHECK = 100 };
    const uint64_t window = 40;
    sl_dedup *dd = make(MAX, window);
    static uint64_t added_at[STEPS];
    uint64_t now = T0;
    uint32_t rng = 12345;
    char id[32];
    for (int i = 0; i < STEPS; i++) {
        rng = rng * 1103515245u + 12345u;
        now += (rng >> 16) % 3; /* 0, 1 or 2 ms apart */
        snprintf(id, sizeof id, "evt-%d", i);
        sl__dedup_add(dd, i % 2 ? &channel_a : &channel_b, id, now);
        added_at[i] = now;
        for (int j = i; j >= 0 && j > i - CHECK; j--) {
            snprintf(id, sizeof id, "evt-%d", j);
            bool want = j > i - MAX && added_at[j] + window > now;
            bool got = sl__dedup_contains(dd, j % 2 ? &channel_a : &channel_b,
                                          id, now);
            if (got != want) {
                fail_msg("step %d: evt-%d known=%d, want %d", i, j, got, want);
            }
        }
        assert_true(sl__dedup_size(dd) <= MAX);
    }
    sl__dedup_destroy(dd);
}

static void dedup_scope_separates_channels(void **state)
{
    (void)state;
    sl_dedup *dd = make(16, WINDOW);
    sl__dedup_add(dd, &channel_a, "evt-1", T0);
    assert_true(sl__dedup_contains(dd, &channel_a, "evt-1", T0));
    assert_false(sl__dedup_contains(dd, &channel_b, "evt-1", T0));
    sl__dedup_add(dd, &channel_b, "evt-1", T0);
    assert_true(sl__dedup_contains(dd, &channel_b, "evt-1", T0));
    assert_int_equal(sl__dedup_size(dd), 2);
    sl__dedup_destroy(dd);
}

static void dedup_zero_max_ids_still_remembers_the_latest_id(void **state)
{
    (void)state;
    sl_dedup *dd = make(0, WINDOW);
    sl__dedup_add(dd, &channel_a, "a", T0);
    sl__dedup_add(dd, &channel_a, "b", T0);
    assert_false(sl__dedup_contains(dd, &channel_a, "a", T0));
    assert_true(sl__dedup_contains(dd, &channel_a, "b", T0));
    assert_int_equal(sl__dedup_size(dd), 1);
    sl__dedup_destroy(dd);
}

static void dedup_destroy_null_is_noop(void **state)
{
    (void)state;
    sl__dedup_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dedup_contains_an_id_only_after_it_was_added),
        cmocka_unit_test(dedup_forgets_ids_after_the_window),
        cmocka_unit_test(dedup_window_is_counted_from_each_ids_own_time),
        cmocka_unit_test(
            dedup_holds_at_most_max_ids_forgetting_the_oldest_first),
        cmocka_unit_test(dedup_bound_holds_across_many_ids),
        cmocka_unit_test(dedup_agrees_with_its_definition_over_many_adds),
        cmocka_unit_test(dedup_scope_separates_channels),
        cmocka_unit_test(dedup_zero_max_ids_still_remembers_the_latest_id),
        cmocka_unit_test(dedup_destroy_null_is_noop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
