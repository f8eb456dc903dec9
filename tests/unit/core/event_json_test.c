/* Tests of CloudEvents structured mode (JSON). */
#include "sluice/event.h"

#include "sluice/alloc.h"

#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static sl_event *base_event(const char *content_type)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_ID, "A234-1234-1234"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SOURCE, "/mycontext"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_TYPE, "com.example.someevent"),
                     SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT, "larger-context"),
                     SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, content_type),
                     SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_CORRELATIONID, "c-1"), SL_OK);
    assert_int_equal(sl_event_set_time_ms(ev, UINT64_C(1524151722000)), SL_OK);
    assert_int_equal(sl_event_set_deadline_ms(ev, UINT64_C(1524151782000)),
                     SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "comexampleext", "value"), SL_OK);
    return ev;
}

static void assert_same(const sl_event *a, const sl_event *b)
{
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        const char *x = sl_event_get(a, (sl_attr)i);
        const char *y = sl_event_get(b, (sl_attr)i);
        if (x == NULL) {
            assert_null(y);
        } else {
            assert_non_null(y);
            assert_string_equal(x, y);
        }
    }
    assert_int_equal(sl_event_time_ms(a), sl_event_time_ms(b));
    assert_int_equal(sl_event_deadline_ms(a), sl_event_deadline_ms(b));
    size_t la, lb;
    const void *da = sl_event_data(a, &la);
    const void *db = sl_event_data(b, &lb);
    assert_int_equal(la, lb);
    if (la > 0) {
        assert_memory_equal(da, db, la);
    }
    assert_int_equal(sl_event_ext_count(a), sl_event_ext_count(b));
    for (size_t i = 0; i < sl_event_ext_count(a); i++) {
        const char *name, *value;
        sl_event_ext_at(a, i, &name, &value);
        assert_string_equal(sl_event_get_ext(b, name), value);
    }
}

/* to_json, then check the output is JSON, then from_json. */
static sl_event *round_trip(const sl_event *ev, json_t **parsed)
{
    char *json = NULL;
    sl_event *back = NULL;
    sl_diag diag = {0};
    json_error_t err;
    assert_int_equal(sl_event_to_json(ev, &json), SL_OK);
    *parsed = json_loads(json, 0, &err);
    assert_non_null(*parsed);
    if (sl_event_from_json(json, strlen(json), &back, &diag) != SL_OK) {
        fail_msg("from_json: %s in %s", diag.msg, json);
    }
    sl_free(json);
    return back;
}

static void json_round_trip_with_json_data(void **state)
{
    (void)state;
    static const char data[] = "{\"orderId\":42,\"items\":[\"a\",\"b\"],"
                               "\"paid\":true,\"note\":null}";
    sl_event *ev = base_event("application/json");
    assert_int_equal(sl_event_set_data(ev, data, strlen(data)), SL_OK);
    json_t *obj;
    sl_event *back = round_trip(ev, &obj);

    /* Data is a JSON value, not a string, and not base64. */
    json_t *d = json_object_get(obj, "data");
    assert_true(json_is_object(d));
    assert_int_equal(json_integer_value(json_object_get(d, "orderId")), 42);
    assert_null(json_object_get(obj, "data_base64"));
    assert_string_equal(json_string_value(json_object_get(obj, "time")),
                        "2018-04-19T15:28:42.000Z");
    assert_int_equal(json_integer_value(json_object_get(obj, "deadline")),
                     1524151782000);
    assert_string_equal(
        json_string_value(json_object_get(obj, "comexampleext")), "value");
    assert_same(ev, back);
    json_decref(obj);
    sl_event_unref(back);
    sl_event_unref(ev);
}

static void json_round_trip_with_binary_data_uses_base64(void **state)
{
    (void)state;
    uint8_t data[67];
    for (size_t i = 0; i < sizeof data; i++) {
        data[i] = (uint8_t)(i * 37 + 3);
    }
    /* Every length 1..67 covers each base64 tail (0, 1 and 2 padding). */
    for (size_t n = 1; n <= sizeof data; n++) {
        sl_event *ev = base_event("application/octet-stream");
        assert_int_equal(sl_event_set_data(ev, data, n), SL_OK);
        json_t *obj;
        sl_event *back = round_trip(ev, &obj);
        assert_null(json_object_get(obj, "data"));
        assert_true(json_is_string(json_object_get(obj, "data_base64")));
        assert_same(ev, back);
        json_decref(obj);
        sl_event_unref(back);
        sl_event_unref(ev);
    }
}

static void json_base64_matches_rfc4648_vectors(void **state)
{
    (void)state;
    static const struct {
        const char *plain;
        const char *b64;
    } vec[] = {{"f", "Zg=="},         {"fo", "Zm8="},
               {"foo", "Zm9v"},       {"foob", "Zm9vYg=="},
               {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
    for (size_t i = 0; i < sizeof vec / sizeof vec[0]; i++) {
        sl_event *ev = base_event("text/plain");
        char *json = NULL;
        assert_int_equal(
            sl_event_set_data(ev, vec[i].plain, strlen(vec[i].plain)), SL_OK);
        assert_int_equal(sl_event_to_json(ev, &json), SL_OK);
        json_t *obj = json_loads(json, 0, NULL);
        assert_string_equal(
            json_string_value(json_object_get(obj, "data_base64")), vec[i].b64);
        json_decref(obj);
        sl_free(json);
        sl_event_unref(ev);
    }
}

static void json_data_without_content_type_is_json_when_it_parses(void **state)
{
    (void)state;
    sl_event *ev = base_event(NULL);
    char *json = NULL;
    assert_int_equal(sl_event_set_data(ev, "[1,2,3]", 7), SL_OK);
    assert_int_equal(sl_event_to_json(ev, &json), SL_OK);
    assert_non_null(strstr(json, "\"data\":[1,2,3]"));
    sl_free(json);

    assert_int_equal(sl_event_set_data(ev, "not json", 8), SL_OK);
    assert_int_equal(sl_event_to_json(ev, &json), SL_OK);
    assert_non_null(strstr(json, "\"data_base64\":\"bm90IGpzb24=\""));
    sl_free(json);
    sl_event_unref(ev);
}

static void json_suffix_content_type_counts_as_json(void **state)
{
    (void)state;
    sl_event *ev = base_event("application/vnd.order+JSON; charset=utf-8");
    char *json = NULL;
    assert_int_equal(sl_event_set_data(ev, "{\"a\":1}", 7), SL_OK);
    assert_int_equal(sl_event_to_json(ev, &json), SL_OK);
    assert_non_null(strstr(json, "\"data\":{\"a\":1}"));
    sl_free(json);
    sl_event_unref(ev);
}

static void json_data_bytes_are_emitted_verbatim(void **state)
{
    (void)state;
    /* Whitespace and number spelling survive to_json untouched. */
    static const char data[] = "{ \"price\": 1.10 }";
    sl_event *ev = base_event("application/json");
    char *json = NULL;
    assert_int_equal(sl_event_set_data(ev, data, strlen(data)), SL_OK);
    assert_int_equal(sl_event_to_json(ev, &json), SL_OK);
    assert_non_null(strstr(json, "\"data\":{ \"price\": 1.10 }}"));
    sl_free(json);
    sl_event_unref(ev);
}

static void json_string_data_with_text_type_is_the_raw_text(void **state)
{
    (void)state;
    static const char in[] =
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
        "\"type\":\"t\",\"data\":\"hello <b>\",\"datacontenttype\":"
        "\"text/html\"}";
    sl_event *ev = NULL;
    size_t len;
    assert_int_equal(sl_event_from_json(in, strlen(in), &ev, NULL), SL_OK);
    const void *data = sl_event_data(ev, &len);
    assert_int_equal(len, 9);
    assert_memory_equal(data, "hello <b>", 9);
    sl_event_unref(ev);
}

static void json_unknown_members_become_extensions(void **state)
{
    (void)state;
    static const char in[] =
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"source\":\"/s\","
        "\"type\":\"t\",\"tenant\":\"acme\",\"retries\":3,\"ratio\":0.5,"
        "\"urgent\":true,\"gone\":null,\"deadline\":\"77\"}";
    sl_event *ev = NULL;
    assert_int_equal(sl_event_from_json(in, strlen(in), &ev, NULL), SL_OK);
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "acme");
    assert_string_equal(sl_event_get_ext(ev, "retries"), "3");
    assert_string_equal(sl_event_get_ext(ev, "ratio"), "0.5");
    assert_string_equal(sl_event_get_ext(ev, "urgent"), "true");
    assert_null(sl_event_get_ext(ev, "gone"));
    assert_int_equal(sl_event_ext_count(ev), 4);
    assert_int_equal(sl_event_deadline_ms(ev), 77);
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);
    sl_event_unref(ev);
}

static void expect_from_json_invalid(const char *in)
{
    sl_event *ev = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_event_from_json(in, strlen(in), &ev, &diag),
                     SL_INVALID);
    assert_null(ev);
    assert_int_equal(diag.status, SL_INVALID);
    assert_true(diag.msg[0] != '\0');
}

static void json_rejects_missing_or_wrong_specversion(void **state)
{
    (void)state;
    expect_from_json_invalid("{\"id\":\"1\",\"source\":\"/s\",\"type\":\"t\"}");
    expect_from_json_invalid("{\"specversion\":\"0.3\",\"id\":\"1\"}");
    expect_from_json_invalid("{\"specversion\":null,\"id\":\"1\"}");
    expect_from_json_invalid("{\"specversion\":1.0,\"id\":\"1\"}");
}

static void json_rejects_malformed_input(void **state)
{
    (void)state;
    expect_from_json_invalid("");
    expect_from_json_invalid("[1]");
    expect_from_json_invalid("{\"specversion\":\"1.0\"");
    expect_from_json_invalid(
        "{\"specversion\":\"1.0\",\"id\":\"1\",\"id\":\"2\"}");
    expect_from_json_invalid(
        "{\"specversion\":\"1.0\",\"time\":\"not a time\"}");
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"time\":5}");
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"deadline\":-1}");
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"Bad-Name\":\"x\"}");
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"obj\":{}}");
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"id\":\"a\\u0000b\"}");
}

static void json_rejects_data_and_data_base64_together(void **state)
{
    (void)state;
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"data\":1,"
                             "\"data_base64\":\"AA==\"}");
}

static void json_rejects_malformed_base64(void **state)
{
    (void)state;
    expect_from_json_invalid(
        "{\"specversion\":\"1.0\",\"data_base64\":\"A===\"}");
    expect_from_json_invalid(
        "{\"specversion\":\"1.0\",\"data_base64\":\"AB=C\"}");
    expect_from_json_invalid(
        "{\"specversion\":\"1.0\",\"data_base64\":\"AB C\"}");
    expect_from_json_invalid(
        "{\"specversion\":\"1.0\",\"data_base64\":\"ABCDE\"}");
    expect_from_json_invalid("{\"specversion\":\"1.0\",\"data_base64\":7}");
}

static void json_to_json_rejects_invalid_utf8(void **state)
{
    (void)state;
    sl_event *ev = base_event(NULL);
    char *json = NULL;
    assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT, "bad \xff byte"), SL_OK);
    assert_int_equal(sl_event_to_json(ev, &json), SL_INVALID);
    assert_null(json);
    sl_event_unref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(json_round_trip_with_json_data),
        cmocka_unit_test(json_round_trip_with_binary_data_uses_base64),
        cmocka_unit_test(json_base64_matches_rfc4648_vectors),
        cmocka_unit_test(json_data_without_content_type_is_json_when_it_parses),
        cmocka_unit_test(json_suffix_content_type_counts_as_json),
        cmocka_unit_test(json_data_bytes_are_emitted_verbatim),
        cmocka_unit_test(json_string_data_with_text_type_is_the_raw_text),
        cmocka_unit_test(json_unknown_members_become_extensions),
        cmocka_unit_test(json_rejects_missing_or_wrong_specversion),
        cmocka_unit_test(json_rejects_malformed_input),
        cmocka_unit_test(json_rejects_data_and_data_base64_together),
        cmocka_unit_test(json_rejects_malformed_base64),
        cmocka_unit_test(json_to_json_rejects_invalid_utf8),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
