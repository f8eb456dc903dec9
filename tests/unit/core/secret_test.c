/* Secrets from the environment or a file; URLs with credentials hidden. */
#include "core/secret.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A temporary file holding @p len bytes of @p text; its path in @p path. */
static void temp_file(char *path, size_t size, const char *text, size_t len)
{
    snprintf(path, size, "%s/sluice-secret-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

static void secret_from_env_is_the_variable_value(void **state)
{
    (void)state;
    setenv("SLUICE_TEST_SECRET", "s3cr3t", 1);
    char *s = NULL;
    assert_int_equal(sl__secret_read("env:SLUICE_TEST_SECRET", &s, NULL),
                     SL_OK);
    assert_string_equal(s, "s3cr3t");
    sl__secret_free(s);
    unsetenv("SLUICE_TEST_SECRET");
}

static void secret_from_unset_env_names_the_variable(void **state)
{
    (void)state;
    unsetenv("SLUICE_TEST_UNSET");
    char *s = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__secret_read("env:SLUICE_TEST_UNSET", &s, &diag),
                     SL_NOT_FOUND);
    assert_null(s);
    assert_non_null(strstr(diag.msg, "SLUICE_TEST_UNSET"));
    assert_non_null(strstr(diag.msg, "not set"));
}

static void secret_from_empty_env_is_refused(void **state)
{
    (void)state;
    setenv("SLUICE_TEST_EMPTY", "", 1);
    char *s = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__secret_read("env:SLUICE_TEST_EMPTY", &s, &diag),
                     SL_INVALID);
    assert_non_null(strstr(diag.msg, "SLUICE_TEST_EMPTY is empty"));
    unsetenv("SLUICE_TEST_EMPTY");
}

static void secret_from_file_drops_trailing_line_breaks(void **state)
{
    (void)state;
    char path[256];
    temp_file(path, sizeof path, "pa ss\r\n\n", 8);
    char ref[300];
    snprintf(ref, sizeof ref, "file:%s", path);
    char *s = NULL;
    assert_int_equal(sl__secret_read(ref, &s, NULL), SL_OK);
    assert_string_equal(s, "pa ss");
    sl__secret_free(s);
    unlink(path);
}

static void secret_from_file_keeps_inner_line_breaks(void **state)
{
    (void)state;
    char path[256];
    temp_file(path, sizeof path, "a\nb\n", 4);
    char ref[300];
    snprintf(ref, sizeof ref, "file:%s", path);
    char *s = NULL;
    assert_int_equal(sl__secret_read(ref, &s, NULL), SL_OK);
    assert_string_equal(s, "a\nb");
    sl__secret_free(s);
    unlink(path);
}

static void secret_from_missing_file_names_the_file(void **state)
{
    (void)state;
    char *s = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__secret_read("file:/nonexistent/sluice/pw", &s, &diag),
                     SL_NOT_FOUND);
    assert_null(s);
    assert_non_null(strstr(diag.msg, "/nonexistent/sluice/pw"));
}

static void secret_from_empty_file_is_refused(void **state)
{
    (void)state;
    char path[256];
    temp_file(path, sizeof path, "\n", 1);
    char ref[300];
    snprintf(ref, sizeof ref, "file:%s", path);
    char *s = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__secret_read(ref, &s, &diag), SL_INVALID);
    assert_non_null(strstr(diag.msg, "is empty"));
    assert_non_null(strstr(diag.msg, path));
    unlink(path);
}

static void secret_from_file_with_nul_is_refused(void **state)
{
    (void)state;
    char path[256];
    temp_file(path, sizeof path, "ab\0cd", 5);
    char ref[300];
    snprintf(ref, sizeof ref, "file:%s", path);
    char *s = NULL;
    assert_int_equal(sl__secret_read(ref, &s, NULL), SL_INVALID);
    unlink(path);
}

static void secret_from_oversized_file_is_refused(void **state)
{
    (void)state;
    size_t len = SL_SECRET_MAX_FILE + 1;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, 'x', len);
    char path[256];
    temp_file(path, sizeof path, big, len);
    free(big);
    char ref[300];
    snprintf(ref, sizeof ref, "file:%s", path);
    char *s = NULL;
    assert_int_equal(sl__secret_read(ref, &s, NULL), SL_TOO_LARGE);
    unlink(path);
}

static void secret_without_source_prefix_is_invalid(void **state)
{
    (void)state;
    char *s = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl__secret_read("hunter2", &s, &diag), SL_INVALID);
    assert_null(strstr(diag.msg, "hunter2"));
    assert_int_equal(sl__secret_read("env:", &s, NULL), SL_INVALID);
    assert_int_equal(sl__secret_read("file:", &s, NULL), SL_INVALID);
    assert_false(sl__secret_is_ref("hunter2"));
    assert_true(sl__secret_is_ref("env:X"));
    assert_true(sl__secret_is_ref("file:/x"));
}

static void expect_redacted(const char *url, const char *want)
{
    char buf[256];
    assert_string_equal(sl__secret_redact_url(url, buf, sizeof buf), want);
}

static void redact_hides_the_password_of_a_url(void **state)
{
    (void)state;
    expect_redacted("amqp://guest:guest@127.0.0.1:5672/vh",
                    "amqp://guest:***@127.0.0.1:5672/vh");
    expect_redacted("amqps://u:p@h", "amqps://u:***@h");
    expect_redacted("amqp://u:@h", "amqp://u:***@h");
}

static void redact_hides_a_password_with_reserved_characters(void **state)
{
    (void)state;
    expect_redacted("amqp://u:p/a?s@s@h:1/v?ns=x", "amqp://u:***@h:1/v?ns=x");
}

static void redact_hides_a_token_user_info_whole(void **state)
{
    (void)state;
    expect_redacted("nats://s3cr3t@h:4222", "nats://***@h:4222");
}

static void redact_hides_every_server_of_a_cluster_url(void **state)
{
    (void)state;
    expect_redacted("nats://a:b@h1:1,c:d@h2:2,h3:3",
                    "nats://a:***@h1:1,c:***@h2:2,h3:3");
}

static void redact_hides_secret_query_values_but_not_references(void **state)
{
    (void)state;
    expect_redacted("amqp://h/v?ns=x&password=hunter2&token=t#f",
                    "amqp://h/v?ns=x&password=***&token=***#f");
    expect_redacted("amqp://h?password=env:RMQ_PW&user=u",
                    "amqp://h?password=env:RMQ_PW&user=u");
    expect_redacted("amqp://h?password=file:/run/pw",
                    "amqp://h?password=file:/run/pw");
}

static void redact_leaves_urls_without_credentials_alone(void **state)
{
    (void)state;
    expect_redacted("amqp://127.0.0.1:5672", "amqp://127.0.0.1:5672");
    expect_redacted("embedded:./data", "embedded:./data");
    expect_redacted("nats://h1:1,h2:2/x?ns=y", "nats://h1:1,h2:2/x?ns=y");
}

static void redact_truncates_to_the_buffer(void **state)
{
    (void)state;
    char buf[12];
    sl__secret_redact_url("amqp://user:password@host", buf, sizeof buf);
    assert_string_equal(buf, "amqp://user");
    /* Truncation never reveals a password: it is never copied. */
    char small[20];
    sl__secret_redact_url("amqp://u:longpassword@h", small, sizeof small);
    assert_null(strstr(small, "longpass"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(secret_from_env_is_the_variable_value),
        cmocka_unit_test(secret_from_unset_env_names_the_variable),
        cmocka_unit_test(secret_from_empty_env_is_refused),
        cmocka_unit_test(secret_from_file_drops_trailing_line_breaks),
        cmocka_unit_test(secret_from_file_keeps_inner_line_breaks),
        cmocka_unit_test(secret_from_missing_file_names_the_file),
        cmocka_unit_test(secret_from_empty_file_is_refused),
        cmocka_unit_test(secret_from_file_with_nul_is_refused),
        cmocka_unit_test(secret_from_oversized_file_is_refused),
        cmocka_unit_test(secret_without_source_prefix_is_invalid),
        cmocka_unit_test(redact_hides_the_password_of_a_url),
        cmocka_unit_test(redact_hides_a_password_with_reserved_characters),
        cmocka_unit_test(redact_hides_a_token_user_info_whole),
        cmocka_unit_test(redact_hides_every_server_of_a_cluster_url),
        cmocka_unit_test(redact_hides_secret_query_values_but_not_references),
        cmocka_unit_test(redact_leaves_urls_without_credentials_alone),
        cmocka_unit_test(redact_truncates_to_the_buffer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
