#include "sluice/duration.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

static uint64_t parse_ok(const char *text)
{
    uint64_t ms = 0;
    assert_int_equal(sl_duration_parse_ms(text, &ms), SL_OK);
    return ms;
}

static void assert_refused(const char *text)
{
    uint64_t ms = 77;
    assert_int_equal(sl_duration_parse_ms(text, &ms), SL_INVALID);
    assert_int_equal(ms, 77); /* out-param untouched on failure */
}

static void duration_plain_number_is_milliseconds(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("250"), 250);
    assert_int_equal(parse_ok("0"), 0);
}

static void duration_accepts_each_unit(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("250ms"), 250);
    assert_int_equal(parse_ok("5s"), 5000);
    assert_int_equal(parse_ok("2m"), 120000);
    assert_int_equal(parse_ok("24h"), 86400000);
}

static void duration_accepts_exact_fractions(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("1.5s"), 1500);
    assert_int_equal(parse_ok("0.25m"), 15000);
    assert_int_equal(parse_ok("0.001s"), 1);
    assert_int_equal(parse_ok("2.0ms"), 2);
}

static void duration_ignores_blanks_around_number_and_unit(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("  10 s "), 10000);
    assert_int_equal(parse_ok("\t3ms"), 3);
}

static void duration_rejects_sub_millisecond_values(void **state)
{
    (void)state;
    assert_refused("0.5ms");
    assert_refused("0.5");
    assert_refused("1.0005s");
}

static void duration_rejects_malformed_text(void **state)
{
    (void)state;
    const char *bad[] = {"",   " ",     "s",   "-1s",  "+1s",
                         "1x", "1.s",   ".5s", "1 2s", "1ms s",
                         "1S", "1 sec", "1e3", "0x10", "1.0000000001s"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_refused(bad[i]);
    }
}

static void duration_rejects_overflow(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("18446744073709551615"), UINT64_MAX);
    assert_refused("18446744073709551616");
    assert_refused("18446744073709551615s");
    assert_refused("5124095576030432h");
}

static void duration_rejects_null_arguments(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(sl_duration_parse_ms(NULL, &ms), SL_INVALID);
    assert_int_equal(sl_duration_parse_ms("1s", NULL), SL_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(duration_plain_number_is_milliseconds),
        cmocka_unit_test(duration_accepts_each_unit),
        cmocka_unit_test(duration_accepts_exact_fractions),
        cmocka_unit_test(duration_ignores_blanks_around_number_and_unit),
        cmocka_unit_test(duration_rejects_sub_millisecond_values),
        cmocka_unit_test(duration_rejects_malformed_text),
        cmocka_unit_test(duration_rejects_overflow),
        cmocka_unit_test(duration_rejects_null_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
