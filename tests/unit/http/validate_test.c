/* Validation rules on JSON bodies and the checks of the rules themselves:
 * every message names the field and the rule it broke. */
#include "http/validate.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>

#include <string.h>

/* Validate @p json against @p n rules; returns the violations' count and
 * the first detail in @p detail. */
static size_t run(const sl_gateway_field *f, size_t n, const char *json,
                  char detail[256])
{
    json_error_t err;
    json_t *root = json_loads(json, JSON_DECODE_ANY, &err);
    assert_non_null(root);
    sl_gw_violation v[8];
    size_t nv = sl__gw_validate(f, n, root, v, 8);
    json_decref(root);
    detail[0] = '\0';
    if (nv > 0) {
        snprintf(detail, 256, "%s", v[0].detail);
    }
    return nv;
}

static const sl_gateway_field qty = {
    .name = "qty",
    .type = SL_JSON_INTEGER,
    .required = true,
    .has_min = true,
    .min = 1,
    .has_max = true,
    .max = 100,
};

static void validate_integer_below_min_names_field_and_rule(void **state)
{
    (void)state;
    char d[256];
    assert_int_equal(run(&qty, 1, "{\"qty\": 0}", d), 1);
    assert_string_equal(d, "`qty` must be an integer >= 1");
    assert_int_equal(run(&qty, 1, "{\"qty\": 101}", d), 1);
    assert_string_equal(d, "`qty` must be an integer <= 100");
    assert_int_equal(run(&qty, 1, "{\"qty\": 1}", d), 0);
    assert_int_equal(run(&qty, 1, "{\"qty\": 100}", d), 0);
}

static void validate_integer_refuses_fractions_and_strings(void **state)
{
    (void)state;
    char d[256];
    assert_int_equal(run(&qty, 1, "{\"qty\": 2.5}", d), 1);
    assert_string_equal(d, "`qty` must be an integer");
    assert_int_equal(run(&qty, 1, "{\"qty\": \"3\"}", d), 1);
    assert_string_equal(d, "`qty` must be an integer");
}

static void validate_required_field_missing_or_null(void **state)
{
    (void)state;
    char d[256];
    assert_int_equal(run(&qty, 1, "{}", d), 1);
    assert_string_equal(d, "`qty` is required");
    assert_int_equal(run(&qty, 1, "{\"qty\": null}", d), 1);
    assert_string_equal(d, "`qty` is required");
}

static void validate_optional_field_may_be_absent(void **state)
{
    (void)state;
    sl_gateway_field f = {.name = "note", .type = SL_JSON_STRING};
    char d[256];
    assert_int_equal(run(&f, 1, "{}", d), 0);
    assert_int_equal(run(&f, 1, "{\"note\": null}", d), 0);
    assert_int_equal(run(&f, 1, "{\"note\": 3}", d), 1);
    assert_string_equal(d, "`note` must be a string");
}

static void validate_string_length_counts_characters(void **state)
{
    (void)state;
    sl_gateway_field f = {.name = "name",
                          .type = SL_JSON_STRING,
                          .min_length = 2,
                          .max_length = 3};
    char d[256];
    /* "äöü" is 6 bytes and 3 characters. */
    assert_int_equal(run(&f, 1, "{\"name\": \"\\u00e4\\u00f6\\u00fc\"}", d), 0);
    assert_int_equal(run(&f, 1, "{\"name\": \"a\"}", d), 1);
    assert_string_equal(d, "`name` must be a string of at least 2 characters");
    assert_int_equal(run(&f, 1, "{\"name\": \"abcd\"}", d), 1);
    assert_string_equal(d, "`name` must be a string of at most 3 characters");
}

static void validate_array_length_counts_items(void **state)
{
    (void)state;
    sl_gateway_field f = {
        .name = "items", .type = SL_JSON_ARRAY, .min_length = 1};
    char d[256];
    assert_int_equal(run(&f, 1, "{\"items\": []}", d), 1);
    assert_string_equal(d, "`items` must be an array of at least 1 items");
    assert_int_equal(run(&f, 1, "{\"items\": [1]}", d), 0);
}

static void validate_enum_lists_the_values(void **state)
{
    (void)state;
    static const char *const cur[] = {"EUR", "USD"};
    sl_gateway_field f = {.name = "currency",
                          .type = SL_JSON_STRING,
                          .enum_values = cur,
                          .nenum = 2};
    char d[256];
    assert_int_equal(run(&f, 1, "{\"currency\": \"USD\"}", d), 0);
    assert_int_equal(run(&f, 1, "{\"currency\": \"GBP\"}", d), 1);
    assert_string_equal(d, "`currency` must be one of \"EUR\", \"USD\"");
}

static void validate_enum_list_is_cut_when_long(void **state)
{
    (void)state;
    static const char *const many[] = {
        "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
        "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb",
        "cccccccccccccccccccccccccccccccccccccccc",
        "dddddddddddddddddddddddddddddddddddddddd",
        "eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee",
        "ffffffffffffffffffffffffffffffffffffffff"};
    sl_gateway_field f = {
        .name = "k", .type = SL_JSON_STRING, .enum_values = many, .nenum = 6};
    char d[256];
    assert_int_equal(run(&f, 1, "{\"k\": \"x\"}", d), 1);
    assert_non_null(strstr(d, "\"aaaa"));
    assert_non_null(strstr(d, ", ..."));
}

static void validate_dotted_path_reaches_nested_members(void **state)
{
    (void)state;
    sl_gateway_field f = {
        .name = "customer.id", .type = SL_JSON_STRING, .required = true};
    char d[256];
    assert_int_equal(run(&f, 1, "{\"customer\": {\"id\": \"c1\"}}", d), 0);
    assert_int_equal(run(&f, 1, "{\"customer\": {}}", d), 1);
    assert_string_equal(d, "`customer.id` is required");
    assert_int_equal(run(&f, 1, "{}", d), 1);
    assert_string_equal(d, "`customer.id` is required");
    assert_int_equal(run(&f, 1, "{\"customer\": 5}", d), 1);
    assert_string_equal(d, "`customer` must be an object (for `customer.id`)");
}

static void validate_number_accepts_fractions_with_bounds(void **state)
{
    (void)state;
    sl_gateway_field f = {
        .name = "price", .type = SL_JSON_NUMBER, .has_min = true, .min = 0.5};
    char d[256];
    assert_int_equal(run(&f, 1, "{\"price\": 0.75}", d), 0);
    assert_int_equal(run(&f, 1, "{\"price\": 3}", d), 0);
    assert_int_equal(run(&f, 1, "{\"price\": 0.25}", d), 1);
    assert_string_equal(d, "`price` must be a number >= 0.5");
}

static void validate_reports_every_broken_rule(void **state)
{
    (void)state;
    sl_gateway_field f[] = {
        qty,
        {.name = "sku", .type = SL_JSON_STRING, .required = true},
        {.name = "gift", .type = SL_JSON_BOOLEAN},
    };
    char d[256];
    assert_int_equal(run(f, 3, "{\"qty\": 0, \"gift\": 1}", d), 3);
}

static void validate_with_rules_needs_an_object(void **state)
{
    (void)state;
    char d[256];
    assert_int_equal(run(&qty, 1, "[1, 2]", d), 1);
    assert_string_equal(d, "the body must be a JSON object");
    /* Without rules any JSON value passes. */
    assert_int_equal(run(NULL, 0, "[1, 2]", d), 0);
}

static void fields_check_accepts_consistent_rules(void **state)
{
    (void)state;
    static const char *const cur[] = {"EUR"};
    sl_gateway_field f[] = {
        qty,
        {.name = "a.b",
         .type = SL_JSON_STRING,
         .max_length = 3,
         .enum_values = cur,
         .nenum = 1},
        {.name = "list", .type = SL_JSON_ARRAY, .min_length = 1},
    };
    assert_int_equal(sl__gw_fields_check(f, 3, NULL), SL_OK);
}

static void fields_check_refuses_inconsistent_rules(void **state)
{
    (void)state;
    static const char *const cur[] = {"EUR"};
    struct {
        sl_gateway_field f;
        const char *want;
    } bad[] = {
        {{.name = "", .type = SL_JSON_STRING}, "name"},
        {{.name = "a..b", .type = SL_JSON_STRING}, "name"},
        {{.name = "x.", .type = SL_JSON_STRING}, "name"},
        {{.name = "q", .type = SL_JSON_STRING, .has_min = true}, "min/max"},
        {{.name = "q",
          .type = SL_JSON_INTEGER,
          .has_min = true,
          .min = 5,
          .has_max = true,
          .max = 1},
         "min > max"},
        {{.name = "q", .type = SL_JSON_INTEGER, .max_length = 2}, "min_length"},
        {{.name = "q",
          .type = SL_JSON_STRING,
          .min_length = 3,
          .max_length = 2},
         "min_length > max_length"},
        {{.name = "q", .type = SL_JSON_INTEGER, .enum_values = cur, .nenum = 1},
         "enum"},
        {{.name = "q", .type = (sl_json_type)42}, "type"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_diag diag = {0};
        assert_int_equal(sl__gw_fields_check(&bad[i].f, 1, &diag), SL_CONFIG);
        assert_non_null(strstr(diag.msg, bad[i].want));
    }
    sl_gateway_field twice[] = {qty, qty};
    sl_diag diag = {0};
    assert_int_equal(sl__gw_fields_check(twice, 2, &diag), SL_CONFIG);
    assert_non_null(strstr(diag.msg, "two rules"));
}

static void json_type_names_round_trip(void **state)
{
    (void)state;
    for (int t = SL_JSON_ANY; t <= SL_JSON_ARRAY; t++) {
        sl_json_type back;
        assert_int_equal(
            sl_json_type_from_name(sl_json_type_name((sl_json_type)t), &back),
            SL_OK);
        assert_int_equal(back, t);
    }
    sl_json_type back;
    assert_int_equal(sl_json_type_from_name("float", &back), SL_NOT_FOUND);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(validate_integer_below_min_names_field_and_rule),
        cmocka_unit_test(validate_integer_refuses_fractions_and_strings),
        cmocka_unit_test(validate_required_field_missing_or_null),
        cmocka_unit_test(validate_optional_field_may_be_absent),
        cmocka_unit_test(validate_string_length_counts_characters),
        cmocka_unit_test(validate_array_length_counts_items),
        cmocka_unit_test(validate_enum_lists_the_values),
        cmocka_unit_test(validate_enum_list_is_cut_when_long),
        cmocka_unit_test(validate_dotted_path_reaches_nested_members),
        cmocka_unit_test(validate_number_accepts_fractions_with_bounds),
        cmocka_unit_test(validate_reports_every_broken_rule),
        cmocka_unit_test(validate_with_rules_needs_an_object),
        cmocka_unit_test(fields_check_accepts_consistent_rules),
        cmocka_unit_test(fields_check_refuses_inconsistent_rules),
        cmocka_unit_test(json_type_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
