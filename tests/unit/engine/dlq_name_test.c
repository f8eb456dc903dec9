/* The public name of a group's dead-letter channel, which tools such as
 * `sluice dlq` read without the engine's private headers. */
#include "sluice/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

static void dlq_name_is_channel_group_dlq(void **state)
{
    (void)state;
    char buf[64];
    assert_int_equal(sl_dlq_channel_name("orders", "billing", buf, sizeof buf),
                     SL_OK);
    assert_string_equal(buf, "orders.billing.dlq");
    assert_string_equal(SL_DLQ_GROUP, "dlq");
}

static void dlq_name_that_does_not_fit_is_too_large(void **state)
{
    (void)state;
    char buf[18]; /* "orders.billing.dlq" needs 19 bytes */
    assert_int_equal(sl_dlq_channel_name("orders", "billing", buf, sizeof buf),
                     SL_TOO_LARGE);
    char exact[19];
    assert_int_equal(
        sl_dlq_channel_name("orders", "billing", exact, sizeof exact), SL_OK);
}

/* The embedded engine keeps the dead letters where the name says. */
static void dlq_name_is_where_the_engine_keeps_dead_letters(void **state)
{
    (void)state;
    sl_engine *eng = NULL;
    assert_int_equal(sl_engine_open("memory://", NULL, &eng, NULL), SL_OK);
    sl_channel_opts co = {.name = "orders"};
    assert_int_equal(sl_engine_declare_channel(eng, &co, NULL), SL_OK);
    sl_group_opts go = {.channel = "orders", .name = "billing"};
    assert_int_equal(sl_engine_declare_group(eng, &go, NULL), SL_OK);
    char dlq[64];
    assert_int_equal(sl_dlq_channel_name("orders", "billing", dlq, sizeof dlq),
                     SL_OK);
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(eng, dlq, SL_DLQ_GROUP, &d), SL_OK);
    assert_int_equal(d.ready, 0);
    assert_int_not_equal(
        sl_engine_depth(eng, "orders.billing.dead", SL_DLQ_GROUP, &d), SL_OK);
    sl_engine_close(eng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(dlq_name_is_channel_group_dlq),
        cmocka_unit_test(dlq_name_that_does_not_fit_is_too_large),
        cmocka_unit_test(dlq_name_is_where_the_engine_keeps_dead_letters),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
