/* Tests of UUIDv7, W3C traceparent and RFC 3339 time handling. */
#include "sluice/event.h"

#include "sluice/clock.h"

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- UUIDv7 -------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    return -1;
}

static void assert_canonical_uuid(const char *u)
{
    assert_int_equal(strlen(u), 36);
    for (int i = 0; i < 36; i++) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            assert_int_equal(u[i], '-');
        } else {
            assert_true(hex_value(u[i]) >= 0); /* lower-case hex only */
        }
    }
}

static uint64_t uuid_ms(const char *u)
{
    uint64_t ms = 0;
    for (int i = 0; i < 13; i++) {
        if (u[i] != '-') {
            ms = ms << 4 | (uint64_t)hex_value(u[i]);
        }
    }
    return ms;
}

static void uuid7_has_canonical_format(void **state)
{
    (void)state;
    char u[37];
    for (int i = 0; i < 1000; i++) {
        sl_uuid7(u, sl_time_wall_ms());
        assert_canonical_uuid(u);
    }
}

static void uuid7_sets_version_and_variant_bits(void **state)
{
    (void)state;
    char u[37];
    for (int i = 0; i < 1000; i++) {
        sl_uuid7(u, sl_time_wall_ms());
        assert_int_equal(u[14], '7');                  /* version 0111 */
        assert_int_equal(hex_value(u[19]) & 0xC, 0x8); /* variant 10 */
    }
}

static void uuid7_encodes_timestamp_big_endian(void **state)
{
    (void)state;
    char u[37];
    /* Far from the wall clock, so it is not folded into a recent ms. */
    sl_uuid7(u, UINT64_C(0x0123456789AB));
    assert_memory_equal(u, "01234567-89ab-7", 15);
    assert_int_equal(uuid_ms(u), UINT64_C(0x0123456789AB));
}

static void uuid7_is_monotonic_and_unique_within_one_ms(void **state)
{
    (void)state;
    /* 100k ids in one millisecond: the counter alone orders them. Lower-case
     * hex compares like the bytes, so strcmp is the byte order. */
    enum { N = 100000 };
    const uint64_t ms = UINT64_C(1900000000000);
    char prev[37];
    char cur[37];
    sl_uuid7(prev, ms);
    for (int i = 1; i < N; i++) {
        sl_uuid7(cur, ms);
        if (strcmp(prev, cur) >= 0) {
            fail_msg("id %d not after its predecessor: %s <= %s", i, cur, prev);
        }
        assert_int_equal(uuid_ms(cur), ms);
        memcpy(prev, cur, sizeof cur);
    }
}

static void uuid7_is_monotonic_with_the_wall_clock(void **state)
{
    (void)state;
    enum { N = 100000 };
    char prev[37];
    char cur[37];
    sl_uuid7(prev, sl_time_wall_ms());
    for (int i = 1; i < N; i++) {
        sl_uuid7(cur, sl_time_wall_ms());
        assert_true(strcmp(prev, cur) < 0);
        memcpy(prev, cur, sizeof cur);
    }
}

static void uuid7_stays_monotonic_when_the_clock_steps_back(void **state)
{
    (void)state;
    const uint64_t ms = UINT64_C(1900000005000);
    char a[37];
    char b[37];
    sl_uuid7(a, ms);
    sl_uuid7(b, ms - 1000);
    assert_true(strcmp(a, b) < 0);
    assert_int_equal(uuid_ms(b), ms);
}

enum { THREAD_IDS = 20000 };

static void *make_ids(void *arg)
{
    char(*ids)[37] = arg;
    for (int i = 0; i < THREAD_IDS; i++) {
        sl_uuid7(ids[i], UINT64_C(1900000010000));
    }
    return NULL;
}

static int cmp_ids(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void uuid7_threads_in_one_ms_get_distinct_ids(void **state)
{
    (void)state;
    char(*ids)[37] = calloc(2 * THREAD_IDS, sizeof *ids);
    assert_non_null(ids);
    pthread_t t1, t2;
    assert_int_equal(pthread_create(&t1, NULL, make_ids, ids), 0);
    assert_int_equal(pthread_create(&t2, NULL, make_ids, ids + THREAD_IDS), 0);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    qsort(ids, 2 * THREAD_IDS, sizeof *ids, cmp_ids);
    for (int i = 1; i < 2 * THREAD_IDS; i++) {
        assert_string_not_equal(ids[i - 1], ids[i]);
    }
    free(ids);
}

/* ---- traceparent --------------------------------------------------------- */

static void traceparent_new_is_well_formed(void **state)
{
    (void)state;
    char tp[56];
    char tp2[56];
    char trace[33];
    char span[17];
    sl_traceparent_new(tp);
    assert_int_equal(strlen(tp), 55);
    assert_memory_equal(tp, "00-", 3);
    assert_string_equal(tp + 52, "-01");
    assert_int_equal(sl_traceparent_parse(tp, trace, span), SL_OK);
    assert_memory_equal(trace, tp + 3, 32);
    assert_memory_equal(span, tp + 36, 16);
    sl_traceparent_new(tp2);
    assert_string_not_equal(tp, tp2);
}

static void traceparent_parse_extracts_ids(void **state)
{
    (void)state;
    char trace[33];
    char span[17];
    assert_int_equal(
        sl_traceparent_parse(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", trace,
            span),
        SL_OK);
    assert_string_equal(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(span, "00f067aa0ba902b7");
}

static void traceparent_parse_accepts_future_version_suffix(void **state)
{
    (void)state;
    assert_int_equal(
        sl_traceparent_parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what",
            NULL, NULL),
        SL_OK);
    assert_int_equal(
        sl_traceparent_parse(
            "cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x", NULL,
            NULL),
        SL_INVALID);
}

static void traceparent_parse_rejects_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "garbage",
        /* all-zero trace id, all-zero span id */
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        /* upper-case hex, forbidden version, bad separators, lengths */
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g",
    };
    char trace[33] = "untouched";
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (sl_traceparent_parse(bad[i], trace, NULL) != SL_INVALID) {
            fail_msg("accepted '%s'", bad[i]);
        }
    }
    assert_string_equal(trace, "untouched");
    assert_int_equal(sl_traceparent_parse(NULL, trace, NULL), SL_INVALID);
}

/* ---- RFC 3339 ------------------------------------------------------------ */

static void time_format_writes_utc_with_milliseconds(void **state)
{
    (void)state;
    static const struct {
        uint64_t ms;
        const char *text;
    } cases[] = {
        {0, "1970-01-01T00:00:00.000Z"},
        {UINT64_C(1795780800123), "2026-11-27T12:00:00.123Z"},
        {UINT64_C(951782400000), "2000-02-29T00:00:00.000Z"},
        {UINT64_C(1709251199999), "2024-02-29T23:59:59.999Z"},
        {UINT64_C(4102444800000), "2100-01-01T00:00:00.000Z"},
        {UINT64_C(253402300799999), "9999-12-31T23:59:59.999Z"},
        /* Beyond RFC 3339's four-digit years: clamped. */
        {UINT64_MAX, "9999-12-31T23:59:59.999Z"},
    };
    char buf[32];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_time_format_rfc3339(cases[i].ms, buf);
        assert_string_equal(buf, cases[i].text);
    }
}

static void time_parse_accepts_offsets_and_fractions(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t ms;
    } cases[] = {
        {"2026-11-27T12:00:00.123Z", UINT64_C(1795780800123)},
        {"2026-11-27t12:00:00.123z", UINT64_C(1795780800123)},
        {"2026-11-27T12:00:00Z", UINT64_C(1795780800000)},
        {"2026-11-27T12:00:00.1Z", UINT64_C(1795780800100)},
        {"2026-11-27T12:00:00.123456789Z", UINT64_C(1795780800123)},
        {"2026-11-27T13:30:00.123+01:30", UINT64_C(1795780800123)},
        {"2026-11-27T07:00:00.123-05:00", UINT64_C(1795780800123)},
        {"2026-11-27T12:00:00-00:00", UINT64_C(1795780800000)},
        {"1970-01-01T00:00:00Z", 0},
        {"2018-04-19T15:28:42Z", UINT64_C(1524151722000)},
        {"2000-02-29T00:00:00Z", UINT64_C(951782400000)},
        /* A leap second reads as the next minute's first second. */
        {"2016-12-31T23:59:60Z", UINT64_C(1483228800000)},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        uint64_t ms = 1;
        if (sl_time_parse_rfc3339(cases[i].text, &ms) != SL_OK) {
            fail_msg("rejected '%s'", cases[i].text);
        }
        assert_int_equal(ms, cases[i].ms);
    }
}

static void time_parse_rejects_malformed(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "",
        "2026-11-27",
        "2026-11-27T12:00:00",       /* no offset */
        "2026-11-27 12:00:00Z",      /* space separator */
        "2026-11-27T12:00:00.Z",     /* empty fraction */
        "2026-11-27T12:00:00Zjunk",  /* trailing */
        "2026-11-27T12:00:00+0100",  /* offset without colon */
        "2026-11-27T12:00:00+24:00", /* offset hour */
        "2026-00-10T12:00:00Z",
        "2026-13-10T12:00:00Z",
        "2026-02-29T12:00:00Z", /* not a leap year */
        "1900-02-29T12:00:00Z", /* century, not a leap year */
        "2026-04-31T12:00:00Z",
        "2026-11-00T12:00:00Z",
        "2026-11-27T24:00:00Z",
        "2026-11-27T12:60:00Z",
        "2026-11-27T12:00:61Z",
        "26-11-27T12:00:00Z",
        "+2026-11-27T12:00:00Z",
        "1969-12-31T23:59:59Z", /* before the epoch */
        "1970-01-01T00:00:00+00:01",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        uint64_t ms = 42;
        if (sl_time_parse_rfc3339(bad[i], &ms) != SL_INVALID) {
            fail_msg("accepted '%s'", bad[i]);
        }
        assert_int_equal(ms, 42);
    }
}

static void time_format_and_parse_round_trip(void **state)
{
    (void)state;
    /* Every day for 400 years (a full Gregorian cycle), at varied times. */
    char buf[32];
    for (uint64_t day = 0; day < 146097; day++) {
        uint64_t ms = day * UINT64_C(86400000) + (day * 7919u) % 86400000u;
        uint64_t back = 0;
        sl_time_format_rfc3339(ms, buf);
        assert_int_equal(sl_time_parse_rfc3339(buf, &back), SL_OK);
        assert_int_equal(back, ms);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(uuid7_has_canonical_format),
        cmocka_unit_test(uuid7_sets_version_and_variant_bits),
        cmocka_unit_test(uuid7_encodes_timestamp_big_endian),
        cmocka_unit_test(uuid7_is_monotonic_and_unique_within_one_ms),
        cmocka_unit_test(uuid7_is_monotonic_with_the_wall_clock),
        cmocka_unit_test(uuid7_stays_monotonic_when_the_clock_steps_back),
        cmocka_unit_test(uuid7_threads_in_one_ms_get_distinct_ids),
        cmocka_unit_test(traceparent_new_is_well_formed),
        cmocka_unit_test(traceparent_parse_extracts_ids),
        cmocka_unit_test(traceparent_parse_accepts_future_version_suffix),
        cmocka_unit_test(traceparent_parse_rejects_malformed),
        cmocka_unit_test(time_format_writes_utc_with_milliseconds),
        cmocka_unit_test(time_parse_accepts_offsets_and_fractions),
        cmocka_unit_test(time_parse_rejects_malformed),
        cmocka_unit_test(time_format_and_parse_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
