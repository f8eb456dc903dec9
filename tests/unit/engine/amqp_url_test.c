/* The RabbitMQ engine's URL: parameters are checked before any connection
 * is made, errors name what is wrong, and no message holds a password.
 * Needs no broker (port 1 on loopback refuses connections at once). */
#include "sluice/engine.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Open @p url, which must fail with @p want; the message is left in
 * @p diag. */
static void expect_open_fails(const char *url, sl_status want, sl_diag *diag)
{
    sl_engine *eng = NULL;
    *diag = (sl_diag){0};
    sl_status st = sl_engine_open(url, NULL, &eng, diag);
    if (st != want) {
        print_error("%s: got %s (%s), want %s\n", url, sl_status_name(st),
                    diag->msg, sl_status_name(want));
    }
    assert_int_equal(st, want);
    assert_null(eng);
}

static void heartbeat_must_be_seconds_up_to_65535(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=x", SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "heartbeat"));
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=65536", SL_INVALID,
                      &diag);
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=-1", SL_INVALID, &diag);
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=", SL_INVALID, &diag);
    /* Valid values get as far as connecting. */
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=0", SL_UNAVAILABLE,
                      &diag);
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=65535", SL_UNAVAILABLE,
                      &diag);
}

static void unknown_parameter_suggests_the_closest_or_lists_them(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g:g@127.0.0.1:1?hartbeat=5", SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "'hartbeat'"));
    assert_non_null(strstr(diag.msg, "did you mean 'heartbeat'?"));
    expect_open_fails("amqp://g:g@127.0.0.1:1?colour=5", SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "'colour'"));
    assert_non_null(strstr(diag.msg, "cacert"));
    assert_non_null(strstr(diag.msg, "verify"));
}

static void parameter_given_twice_is_refused(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g:g@127.0.0.1:1?heartbeat=5&heartbeat=6",
                      SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "heartbeat"));
    assert_non_null(strstr(diag.msg, "twice"));
}

static void literal_password_parameter_is_refused_unechoed(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g@127.0.0.1:1?password=s3cr3t", SL_INVALID,
                      &diag);
    assert_non_null(strstr(diag.msg, "env:NAME or file:PATH"));
    assert_null(strstr(diag.msg, "s3cr3t"));
}

static void password_from_unset_variable_names_it(void **state)
{
    (void)state;
    unsetenv("SLUICE_TEST_NO_PW");
    sl_diag diag;
    expect_open_fails("amqp://g@127.0.0.1:1?password=env:SLUICE_TEST_NO_PW",
                      SL_NOT_FOUND, &diag);
    assert_non_null(strstr(diag.msg, "SLUICE_TEST_NO_PW is not set"));
}

static void password_from_missing_file_names_it(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g@127.0.0.1:1?password=file:/nonexistent/pw",
                      SL_NOT_FOUND, &diag);
    assert_non_null(strstr(diag.msg, "/nonexistent/pw"));
}

static void password_in_user_info_and_parameter_is_ambiguous(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g:s3cr3t@127.0.0.1:1?password=env:X", SL_INVALID,
                      &diag);
    assert_non_null(strstr(diag.msg, "both"));
    assert_null(strstr(diag.msg, "s3cr3t"));
}

static void connection_errors_hold_no_password(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://user:s3cr3t@127.0.0.1:1/vh", SL_UNAVAILABLE,
                      &diag);
    assert_non_null(strstr(diag.msg, "127.0.0.1:1"));
    assert_null(strstr(diag.msg, "s3cr3t"));
    setenv("SLUICE_TEST_PW", "s3cr3t", 1);
    expect_open_fails("amqp://user@127.0.0.1:1?password=env:SLUICE_TEST_PW",
                      SL_UNAVAILABLE, &diag);
    assert_null(strstr(diag.msg, "s3cr3t"));
    unsetenv("SLUICE_TEST_PW");
}

static void unknown_scheme_message_hides_the_password(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("rabbit://user:s3cr3t@127.0.0.1:1", SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "user:***@127.0.0.1:1"));
    assert_null(strstr(diag.msg, "s3cr3t"));
}

static void tls_parameters_need_amqps(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqp://g:g@127.0.0.1:1?verify=none", SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "amqps://"));
    expect_open_fails("amqps://g:g@127.0.0.1:1?verify=maybe", SL_INVALID,
                      &diag);
    assert_non_null(strstr(diag.msg, "full, peer or none"));
}

static void unreadable_certificate_file_is_named(void **state)
{
    (void)state;
    sl_diag diag;
    expect_open_fails("amqps://g:g@127.0.0.1:1?cacert=/nonexistent/ca.pem",
                      SL_CONFIG, &diag);
    assert_non_null(strstr(diag.msg, "/nonexistent/ca.pem"));
}

static void client_certificate_needs_its_key(void **state)
{
    (void)state;
    char path[256];
    snprintf(path, sizeof path, "%s/sluice-cert-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    char url[512];
    snprintf(url, sizeof url, "amqps://g:g@127.0.0.1:1?verify=none&cert=%s",
             path);
    sl_diag diag;
    expect_open_fails(url, SL_INVALID, &diag);
    assert_non_null(strstr(diag.msg, "cert= and key="));
    unlink(path);
}

/* The parse-only check (config check) refuses what open refuses, and
 * accepts a good URL without a broker. */
static void check_url_needs_no_broker(void **state)
{
    (void)state;
    sl_diag diag = {0};
    assert_int_equal(
        sl_engine_check_url("amqp://g:g@127.0.0.1:1?heartbeat=x", &diag),
        SL_INVALID);
    assert_non_null(strstr(diag.msg, "heartbeat"));
    assert_int_equal(sl_engine_check_url("amqps://g:g@127.0.0.1:1?cacert="
                                         "/nonexistent/ca.pem",
                                         &diag),
                     SL_CONFIG);
    assert_non_null(strstr(diag.msg, "/nonexistent/ca.pem"));
    assert_int_equal(sl_engine_check_url("amqp://g:g@127.0.0.1:1/?ns=a&"
                                         "heartbeat=5",
                                         &diag),
                     SL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(heartbeat_must_be_seconds_up_to_65535),
        cmocka_unit_test(unknown_parameter_suggests_the_closest_or_lists_them),
        cmocka_unit_test(parameter_given_twice_is_refused),
        cmocka_unit_test(literal_password_parameter_is_refused_unechoed),
        cmocka_unit_test(password_from_unset_variable_names_it),
        cmocka_unit_test(password_from_missing_file_names_it),
        cmocka_unit_test(password_in_user_info_and_parameter_is_ambiguous),
        cmocka_unit_test(connection_errors_hold_no_password),
        cmocka_unit_test(unknown_scheme_message_hides_the_password),
        cmocka_unit_test(tls_parameters_need_amqps),
        cmocka_unit_test(unreadable_certificate_file_is_named),
        cmocka_unit_test(client_certificate_needs_its_key),
        cmocka_unit_test(check_url_needs_no_broker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
