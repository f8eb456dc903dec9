/* Logging through an installable sink, and the JSON-lines sink. */
#include "sluice/log.h"

#include "sluice/clock.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <string.h>

/* A sink that keeps copies of what it got. */
#define MAX_RECORDS 8

typedef struct captured {
    sl_log_level level;
    uint64_t time_ms;
    char component[64];
    char msg[256];
    char fields[4][2][64];
    size_t nfields;
} captured;

typedef struct capture {
    captured recs[MAX_RECORDS];
    size_t n;
} capture;

static void capture_sink(const sl_log_record *rec, void *ctx)
{
    capture *c = ctx;
    if (c->n == MAX_RECORDS) {
        return;
    }
    captured *r = &c->recs[c->n++];
    r->level = rec->level;
    r->time_ms = rec->time_ms;
    snprintf(r->component, sizeof r->component, "%s",
             rec->component ? rec->component : "(null)");
    snprintf(r->msg, sizeof r->msg, "%s", rec->msg ? rec->msg : "(null)");
    r->nfields = rec->nfields;
    for (size_t i = 0; i < rec->nfields && i < 4; i++) {
        snprintf(r->fields[i][0], sizeof r->fields[i][0], "%s",
                 rec->fields[i].key ? rec->fields[i].key : "(null)");
        snprintf(r->fields[i][1], sizeof r->fields[i][1], "%s",
                 rec->fields[i].value ? rec->fields[i].value : "(null)");
    }
}

static int restore_default_sink(void **state)
{
    (void)state;
    sl_log_set_sink(NULL, NULL, SL_LOG_DEBUG);
    return 0;
}

static void sink_receives_level_component_message_and_fields(void **state)
{
    (void)state;
    capture cap = {0};
    sl_log_set_sink(capture_sink, &cap, SL_LOG_DEBUG);
    sl_log_field fields[] = {{"event_id", "evt-1"}, {"attempt", "2"}};
    uint64_t before = sl_time_wall_ms();
    sl_log_fields(SL_LOG_INFO, "consumer", "handled", fields, 2);
    uint64_t after = sl_time_wall_ms();
    assert_int_equal(cap.n, 1);
    captured *r = &cap.recs[0];
    assert_int_equal(r->level, SL_LOG_INFO);
    assert_string_equal(r->component, "consumer");
    assert_string_equal(r->msg, "handled");
    assert_int_equal(r->nfields, 2);
    assert_string_equal(r->fields[0][0], "event_id");
    assert_string_equal(r->fields[0][1], "evt-1");
    assert_string_equal(r->fields[1][0], "attempt");
    assert_string_equal(r->fields[1][1], "2");
    assert_true(r->time_ms >= before && r->time_ms <= after);
}

static void logf_formats_the_message(void **state)
{
    (void)state;
    capture cap = {0};
    sl_log_set_sink(capture_sink, &cap, SL_LOG_DEBUG);
    sl_logf(SL_LOG_ERROR, "engine.embedded", "recovered %d of %s", 42,
            "orders");
    assert_int_equal(cap.n, 1);
    assert_int_equal(cap.recs[0].level, SL_LOG_ERROR);
    assert_string_equal(cap.recs[0].component, "engine.embedded");
    assert_string_equal(cap.recs[0].msg, "recovered 42 of orders");
    assert_int_equal(cap.recs[0].nfields, 0);
}

static void min_level_filters_lower_levels(void **state)
{
    (void)state;
    capture cap = {0};
    sl_log_set_sink(capture_sink, &cap, SL_LOG_WARN);
    assert_false(sl_log_enabled(SL_LOG_DEBUG));
    assert_false(sl_log_enabled(SL_LOG_INFO));
    assert_true(sl_log_enabled(SL_LOG_WARN));
    assert_true(sl_log_enabled(SL_LOG_ERROR));
    sl_logf(SL_LOG_DEBUG, "test", "dropped");
    sl_log_fields(SL_LOG_INFO, "test", "dropped", NULL, 0);
    sl_logf(SL_LOG_WARN, "test", "kept warn");
    sl_log_fields(SL_LOG_ERROR, "test", "kept error", NULL, 0);
    assert_int_equal(cap.n, 2);
    assert_string_equal(cap.recs[0].msg, "kept warn");
    assert_string_equal(cap.recs[1].msg, "kept error");
}

static void null_sink_restores_the_default_warn_level(void **state)
{
    (void)state;
    capture cap = {0};
    sl_log_set_sink(capture_sink, &cap, SL_LOG_DEBUG);
    sl_log_set_sink(NULL, NULL, SL_LOG_DEBUG);
    assert_false(sl_log_enabled(SL_LOG_INFO));
    assert_true(sl_log_enabled(SL_LOG_WARN));
    sl_logf(SL_LOG_INFO, "test", "not captured");
    assert_int_equal(cap.n, 0);
}

static void level_names_are_lower_case(void **state)
{
    (void)state;
    assert_string_equal(sl_log_level_str(SL_LOG_DEBUG), "debug");
    assert_string_equal(sl_log_level_str(SL_LOG_INFO), "info");
    assert_string_equal(sl_log_level_str(SL_LOG_WARN), "warn");
    assert_string_equal(sl_log_level_str(SL_LOG_ERROR), "error");
    assert_string_equal(sl_log_level_str((sl_log_level)99), "unknown");
}

/* ---- the JSON-lines sink ------------------------------------------------- */

/* Every line of @p fp, parsed; fails on a line that is not one object. */
static size_t read_json_lines(FILE *fp, json_t **out, size_t max)
{
    rewind(fp);
    char line[4096];
    size_t n = 0;
    while (fgets(line, sizeof line, fp) != NULL) {
        size_t len = strlen(line);
        assert_true(len > 0 && line[len - 1] == '\n');
        json_error_t err;
        json_t *obj = json_loadb(line, len - 1, 0, &err);
        if (obj == NULL || !json_is_object(obj)) {
            fail_msg("not a JSON object: %s (%s)", line, err.text);
        }
        assert_true(n < max);
        out[n++] = obj;
    }
    return n;
}

static const char *str_of(json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

static void json_sink_writes_one_object_per_line_with_the_fields(void **state)
{
    (void)state;
    FILE *fp = tmpfile();
    assert_non_null(fp);
    sl_log_set_sink(sl_log_json_sink, fp, SL_LOG_DEBUG);
    sl_log_field fields[] = {{"event_id", "evt-9"}, {"trace_id", "abc123"}};
    uint64_t before = sl_time_wall_ms();
    sl_log_fields(SL_LOG_WARN, "consumer", "handler timed out", fields, 2);
    sl_logf(SL_LOG_DEBUG, "engine.embedded", "batch of %d", 7);

    json_t *objs[4];
    size_t n = read_json_lines(fp, objs, 4);
    assert_int_equal(n, 2);
    assert_string_equal(str_of(objs[0], "level"), "warn");
    assert_string_equal(str_of(objs[0], "component"), "consumer");
    assert_string_equal(str_of(objs[0], "msg"), "handler timed out");
    assert_string_equal(str_of(objs[0], "event_id"), "evt-9");
    assert_string_equal(str_of(objs[0], "trace_id"), "abc123");
    json_t *ts = json_object_get(objs[0], "ts");
    assert_true(json_is_integer(ts));
    assert_true((uint64_t)json_integer_value(ts) >= before);
    assert_string_equal(str_of(objs[1], "level"), "debug");
    assert_string_equal(str_of(objs[1], "msg"), "batch of 7");
    for (size_t i = 0; i < n; i++) {
        json_decref(objs[i]);
    }
    fclose(fp);
}

static void json_sink_keeps_a_multi_line_message_on_one_line(void **state)
{
    (void)state;
    FILE *fp = tmpfile();
    assert_non_null(fp);
    sl_log_set_sink(sl_log_json_sink, fp, SL_LOG_DEBUG);
    const char *msg = "line one\nline \"two\"\tand a \\ backslash";
    sl_log_field fields[] = {{"error", "bad\nvalue"}};
    sl_log_fields(SL_LOG_ERROR, "test", msg, fields, 1);
    json_t *objs[2];
    assert_int_equal(read_json_lines(fp, objs, 2), 1);
    assert_string_equal(str_of(objs[0], "msg"), msg);
    assert_string_equal(str_of(objs[0], "error"), "bad\nvalue");
    json_decref(objs[0]);
    fclose(fp);
}

static void json_sink_leaves_out_fields_without_a_value(void **state)
{
    (void)state;
    FILE *fp = tmpfile();
    assert_non_null(fp);
    sl_log_set_sink(sl_log_json_sink, fp, SL_LOG_DEBUG);
    sl_log_field fields[] = {{"trace_id", NULL}, {"group", "billing"}};
    sl_log_fields(SL_LOG_INFO, "consumer", "handled", fields, 2);
    json_t *objs[2];
    assert_int_equal(read_json_lines(fp, objs, 2), 1);
    assert_null(json_object_get(objs[0], "trace_id"));
    assert_string_equal(str_of(objs[0], "group"), "billing");
    json_decref(objs[0]);
    fclose(fp);
}

static void json_sink_fields_never_replace_the_record_keys(void **state)
{
    (void)state;
    FILE *fp = tmpfile();
    assert_non_null(fp);
    sl_log_set_sink(sl_log_json_sink, fp, SL_LOG_DEBUG);
    sl_log_field fields[] = {{"msg", "spoofed"}, {"level", "debug"}};
    sl_log_fields(SL_LOG_ERROR, "consumer", "real", fields, 2);
    json_t *objs[2];
    assert_int_equal(read_json_lines(fp, objs, 2), 1);
    assert_string_equal(str_of(objs[0], "msg"), "real");
    assert_string_equal(str_of(objs[0], "level"), "error");
    json_decref(objs[0]);
    fclose(fp);
}

static void json_sink_keeps_text_that_is_not_utf8(void **state)
{
    (void)state;
    FILE *fp = tmpfile();
    assert_non_null(fp);
    sl_log_set_sink(sl_log_json_sink, fp, SL_LOG_DEBUG);
    sl_log_field fields[] = {{"error", "bad byte \xff here"}};
    sl_log_fields(SL_LOG_WARN, "consumer", "msg \xfe", fields, 1);
    json_t *objs[2];
    assert_int_equal(read_json_lines(fp, objs, 2), 1);
    assert_string_equal(str_of(objs[0], "msg"), "msg ?");
    assert_string_equal(str_of(objs[0], "error"), "bad byte ? here");
    json_decref(objs[0]);
    fclose(fp);
}

static void redact_url_hides_passwords_and_tokens(void **state)
{
    (void)state;
    char buf[128];
    assert_string_equal(
        sl_log_redact_url("amqp://app:hunter2@mq:5672/v", buf, sizeof buf),
        "amqp://app:***@mq:5672/v");
    assert_string_equal(
        sl_log_redact_url("nats://s3cret@n1:4222", buf, sizeof buf),
        "nats://***@n1:4222");
    assert_string_equal(
        sl_log_redact_url("amqp://mq/?password=x&pass=env:P", buf, sizeof buf),
        "amqp://mq/?password=***&pass=env:P");
    assert_string_equal(sl_log_redact_url("embedded:./data", buf, sizeof buf),
                        "embedded:./data");
    char small[8];
    assert_ptr_equal(sl_log_redact_url("amqp://u:p@h", small, sizeof small),
                     small);
    assert_int_equal(strlen(small), sizeof small - 1);
}

int main(void)
{
#define T(fn) cmocka_unit_test_teardown(fn, restore_default_sink)
    const struct CMUnitTest tests[] = {
        T(sink_receives_level_component_message_and_fields),
        T(logf_formats_the_message),
        T(min_level_filters_lower_levels),
        T(null_sink_restores_the_default_warn_level),
        T(level_names_are_lower_case),
        T(json_sink_writes_one_object_per_line_with_the_fields),
        T(json_sink_keeps_a_multi_line_message_on_one_line),
        T(json_sink_leaves_out_fields_without_a_value),
        T(json_sink_fields_never_replace_the_record_keys),
        T(json_sink_keeps_text_that_is_not_utf8),
        T(redact_url_hides_passwords_and_tokens),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
