/* RabbitMQ's refusals of a declaration with other arguments, rephrased:
 * the entity, the argument, both values (texts from RabbitMQ 3.10). */
#include "engine/amqp/amqp_int.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

static const char *describe(const char *text)
{
    static char out[512];
    out[0] = '\0';
    if (!sl__amqp_describe_difference(text, strlen(text), out, sizeof out)) {
        return NULL;
    }
    return out;
}

static void both_values_short_form(void **state)
{
    (void)state;
    const char *m = describe(
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue "
        "'sluice/orders.created/workers' in vhost '/': received '5000' but "
        "current is '1000'");
    assert_non_null(m);
    assert_non_null(strstr(m, "queue 'sluice/orders.created/workers': "
                              "x-max-length (the channel's max_length) is "
                              "1000 on the broker, the configuration wants "
                              "5000"));
    assert_non_null(strstr(m, "delete it"));
}

static void value_with_type_against_none(void **state)
{
    (void)state;
    const char *m = describe(
        "PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue "
        "'q' in vhost '/': received the value '5000' of type 'long' but "
        "current is none");
    assert_non_null(m);
    assert_non_null(strstr(m, "x-max-length (the channel's max_length) is "
                              "not set on the broker, the configuration "
                              "wants 5000"));
}

static void none_against_value_with_type(void **state)
{
    (void)state;
    const char *m = describe(
        "PRECONDITION_FAILED - inequivalent arg 'x-delivery-limit' for "
        "queue 'q' in vhost 'prod': received none but current is the value "
        "'30' of type 'long'");
    assert_non_null(m);
    assert_non_null(strstr(m, "queue 'q': x-delivery-limit (2 x the "
                              "group's max_attempts + 20) is 30 on the "
                              "broker, the configuration wants it unset"));
}

static void exchange_type(void **state)
{
    (void)state;
    const char *m = describe(
        "PRECONDITION_FAILED - inequivalent arg 'type' for exchange "
        "'sluice/orders' in vhost '/': received 'topic' but current is "
        "'direct'");
    assert_non_null(m);
    assert_non_null(strstr(m, "exchange 'sluice/orders': type (sluice's "
                              "channels are topic exchanges) is direct on "
                              "the broker, the configuration wants topic"));
    assert_non_null(strstr(m, "existing exchange"));
}

static void unknown_argument_has_no_gloss(void **state)
{
    (void)state;
    const char *m = describe(
        "PRECONDITION_FAILED - inequivalent arg 'x-custom' for queue 'q' in "
        "vhost '/': received the value '1' of type 'long' but current is "
        "the value '2' of type 'signedint'");
    assert_non_null(m);
    assert_non_null(strstr(m, "x-custom is 2 on the broker, the "
                              "configuration wants 1"));
}

static void other_refusals_are_not_rephrased(void **state)
{
    (void)state;
    assert_null(describe("PRECONDITION_FAILED - unknown delivery tag 5"));
    assert_null(describe("NOT_FOUND - no queue 'q' in vhost '/'"));
    assert_null(describe("PRECONDITION_FAILED - inequivalent arg 'x' for"));
    assert_null(describe(""));
}

static void output_is_truncated_not_overrun(void **state)
{
    (void)state;
    const char *text = "PRECONDITION_FAILED - inequivalent arg 'x-max-length' "
                       "for queue 'q' in vhost '/': received '5' but current "
                       "is '1'";
    char small[16];
    memset(small, 'z', sizeof small);
    assert_true(sl__amqp_describe_difference(text, strlen(text), small, 12));
    assert_int_equal(strlen(small), 11);
    assert_int_equal(small[12], 'z');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(both_values_short_form),
        cmocka_unit_test(value_with_type_against_none),
        cmocka_unit_test(none_against_value_with_type),
        cmocka_unit_test(exchange_type),
        cmocka_unit_test(unknown_argument_has_no_gloss),
        cmocka_unit_test(other_refusals_are_not_rephrased),
        cmocka_unit_test(output_is_truncated_not_overrun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
