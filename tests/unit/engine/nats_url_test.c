/* The NATS engine's URL, through the parse-only check (no server): the
 * parameters come from the shared table, so an unknown one gets the
 * closest name, one given twice is refused, a bad value says what is
 * accepted, and no message holds a secret. */
#include "sluice/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

/* Check @p url, which must fail with @p want and a message holding each
 * of the strings after it (up to NULL). */
static void refused(const char *url, sl_status want, ...)
{
    sl_diag diag = {0};
    sl_status st = sl_engine_check_url(url, &diag);
    if (st != want) {
        print_error("%s: got %s (%s), want %s\n", url, sl_status_name(st),
                    diag.msg, sl_status_name(want));
    }
    assert_int_equal(st, want);
    va_list ap;
    va_start(ap, want);
    for (const char *s = va_arg(ap, const char *); s != NULL;
         s = va_arg(ap, const char *)) {
        if (strstr(diag.msg, s) == NULL) {
            print_error("%s: message '%s' lacks '%s'\n", url, diag.msg, s);
            fail();
        }
    }
    va_end(ap);
}

static void accepted(const char *url)
{
    sl_diag diag = {0};
    sl_status st = sl_engine_check_url(url, &diag);
    if (st != SL_OK) {
        print_error("%s: %s (%s)\n", url, sl_status_name(st), diag.msg);
    }
    assert_int_equal(st, SL_OK);
}

static void unknown_parameter_suggests_the_closest_name(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?replica=3", SL_INVALID,
            "unknown parameter 'replica'", "did you mean 'replicas'?", NULL);
    refused("nats://127.0.0.1:1?ack_wiat_ms=500", SL_INVALID,
            "did you mean 'ack_wait_ms'?", NULL);
    refused("nats://127.0.0.1:1?tls_cs=x", SL_INVALID, "did you mean 'tls_ca'?",
            NULL);
}

static void unknown_parameter_far_from_all_lists_them(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?colour=red", SL_INVALID,
            "unknown parameter 'colour'", "max_ack_pending", "nkey_seed", NULL);
}

static void parameter_given_twice_is_refused(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?replicas=1&replicas=3", SL_INVALID,
            "parameter 'replicas' given twice", NULL);
    refused("nats://127.0.0.1:1?token=env:A&token=env:B", SL_INVALID,
            "parameter 'token' given twice", NULL);
}

static void numbers_outside_their_range_are_refused(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?replicas=many", SL_INVALID,
            "replicas=many: expected a whole number from 1 to 5", NULL);
    refused("nats://127.0.0.1:1?replicas=6", SL_INVALID, "from 1 to 5", NULL);
    refused("nats://127.0.0.1:1?max_deliver=100001", SL_INVALID,
            "max_deliver=100001", "from 1 to 100000", NULL);
    refused("nats://127.0.0.1:1?ack_wait_ms=0", SL_INVALID, "ack_wait_ms=0",
            NULL);
    refused("nats://127.0.0.1:1?max_ack_pending=-1", SL_INVALID,
            "max_ack_pending=-1", NULL);
    accepted("nats://127.0.0.1:1?replicas=5&max_deliver=100000&"
             "ack_wait_ms=1&max_ack_pending=1");
}

static void storage_is_file_or_memory(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?storage=disk", SL_INVALID,
            "storage=disk: expected file or memory", NULL);
    accepted("nats://127.0.0.1:1?storage=memory");
    accepted("nats://127.0.0.1:1?storage=file");
}

static void names_take_letters_digits_dash_and_underscore(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?ns=a.b", SL_INVALID, "ns must be [A-Za-z0-9_-]",
            NULL);
    refused("nats://127.0.0.1:1?ns=", SL_INVALID, "ns needs a value", NULL);
    refused("nats://127.0.0.1:1?domain=a*b", SL_INVALID,
            "domain must be 1-64 of [A-Za-z0-9_-]", NULL);
    char url[128];
    snprintf(url, sizeof url, "nats://127.0.0.1:1?domain=%065d", 0);
    refused(url, SL_INVALID, "domain must be 1-64", NULL);
    accepted("nats://127.0.0.1:1?ns=case-1_a&domain=hub");
}

static void literal_secrets_are_refused_unechoed(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?user=u&password=s3cr3t", SL_INVALID,
            "password must be a reference", NULL);
    refused("nats://127.0.0.1:1?token=s3cr3t", SL_INVALID,
            "token must be a reference", NULL);
    /* A reference given twice names the parameter, not the values. */
    sl_diag diag = {0};
    assert_int_equal(sl_engine_check_url("nats://127.0.0.1:1?token=s3cr3t&"
                                         "token=s3cr3t",
                                         &diag),
                     SL_INVALID);
    assert_null(strstr(diag.msg, "s3cr3t"));
    accepted("nats://127.0.0.1:1?user=u&password=env:NATS_PW");
}

static void credentials_that_go_together(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?user=u", SL_INVALID,
            "user and password go together", NULL);
    refused("nats://127.0.0.1:1?nkey=UABC", SL_INVALID,
            "nkey (the public key) and nkey_seed", NULL);
    refused("nats://127.0.0.1:1?tls_cert=/dev/null", SL_INVALID,
            "tls_cert and tls_key go together", NULL);
    refused("nats://127.0.0.1:1?token=env:T&user=u&password=env:P", SL_INVALID,
            "give one of", NULL);
}

static void files_must_be_readable(void **state)
{
    (void)state;
    refused("tls://127.0.0.1:1?tls_ca=/nonexistent/ca.pem", SL_CONFIG,
            "tls_ca file /nonexistent/ca.pem", NULL);
    refused("nats://127.0.0.1:1?creds=/nonexistent/u.creds", SL_CONFIG,
            "creds file /nonexistent/u.creds", NULL);
}

static void tls_is_a_bool(void **state)
{
    (void)state;
    refused("nats://127.0.0.1:1?tls=maybe", SL_INVALID, "tls=maybe", NULL);
    accepted("nats://127.0.0.1:1?tls=true");
    accepted("nats://127.0.0.1:1?tls");
    refused("nats://127.0.0.1:1?tls_hostname=", SL_INVALID,
            "tls_hostname needs a value", NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unknown_parameter_suggests_the_closest_name),
        cmocka_unit_test(unknown_parameter_far_from_all_lists_them),
        cmocka_unit_test(parameter_given_twice_is_refused),
        cmocka_unit_test(numbers_outside_their_range_are_refused),
        cmocka_unit_test(storage_is_file_or_memory),
        cmocka_unit_test(names_take_letters_digits_dash_and_underscore),
        cmocka_unit_test(literal_secrets_are_refused_unechoed),
        cmocka_unit_test(credentials_that_go_together),
        cmocka_unit_test(files_must_be_readable),
        cmocka_unit_test(tls_is_a_bool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
