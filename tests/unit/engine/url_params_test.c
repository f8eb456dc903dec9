/* Engine URL parameters parsed from a table: every kind, and the answers
 * to every mistake (unknown name with did-you-mean, bad value with what is
 * accepted, duplicates, percent-encoding). */
#include "engine/url_params.h"

#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

typedef enum color { RED = 1, GREEN = 2, BLUE = 3 } color;

typedef struct params {
    uint16_t port;
    uint64_t big;
    uint8_t small;
    bool tls;
    uint64_t wait_ms;
    uint32_t short_ms;
    char *name;
    color color;
    char *secret_ref; /* through a setter */
    int custom_calls;
} params;

static const sl_url_enum colors[] = {
    {"red", RED}, {"green", GREEN}, {"blue", BLUE}, {NULL, 0}};

static sl_status set_secret(void *dst, const sl_url_param *param,
                            const sl_url_value *value, sl_diag *diag)
{
    params *p = dst;
    p->custom_calls++;
    if (strncmp(value->s, "env:", 4) != 0) {
        return sl_diag_set(diag, SL_INVALID, "%s takes env:NAME", param->name);
    }
    sl_free(p->secret_ref);
    p->secret_ref = sl_strdup(value->s);
    return p->secret_ref ? SL_OK : SL_NOMEM;
}

static const sl_url_param table[] = {
    SL_URL_UINT("port", params, port, 1, 65535, "TCP port"),
    SL_URL_UINT("big", params, big, 0, UINT64_MAX, "anything"),
    SL_URL_UINT("small", params, small, 0, 1000, "clamped by its field"),
    SL_URL_BOOL("tls", params, tls, "use TLS"),
    SL_URL_DURATION("wait", params, wait_ms, 10, 60000, "how long to wait"),
    SL_URL_DURATION("short", params, short_ms, 0, UINT64_MAX, "any"),
    SL_URL_STRING("name", params, name, "a name"),
    SL_URL_ENUM("color", params, color, colors, "a color"),
    SL_URL_CUSTOM_SECRET("password", set_secret, "env:NAME"),
};

#define N SL_URL_PARAMS_COUNT(table)

static sl_status parse(const char *query, params *p, sl_diag *diag)
{
    return sl__url_params_parse(table, N, query, p, "engine URL 'x://h'", diag);
}

static void clear(params *p)
{
    sl_free(p->name);
    sl_free(p->secret_ref);
    *p = (params){0};
}

/* The query is refused with SL_INVALID and a message holding each of the
 * NULL-terminated @p parts. */
static void refused(const char *query, ...)
{
    params p = {0};
    sl_diag diag = {0};
    sl_status st = parse(query, &p, &diag);
    clear(&p);
    if (st != SL_INVALID) {
        fail_msg("%s: got %s, want INVALID", query, sl_status_name(st));
    }
    va_list ap;
    va_start(ap, query);
    for (const char *part = va_arg(ap, const char *); part != NULL;
         part = va_arg(ap, const char *)) {
        if (strstr(diag.msg, part) == NULL) {
            va_end(ap);
            fail_msg("%s: message does not mention '%s': %s", query, part,
                     diag.msg);
        }
    }
    va_end(ap);
}

static void every_kind_is_stored_in_its_field(void **state)
{
    (void)state;
    params p = {.color = RED};
    sl_diag diag = {0};
    assert_int_equal(parse("port=5672&big=18446744073709551615&small=7&"
                           "tls=yes&wait=1.5s&short=250&name=orders&"
                           "color=blue&password=env:PW",
                           &p, &diag),
                     SL_OK);
    assert_int_equal(p.port, 5672);
    assert_true(p.big == UINT64_MAX);
    assert_int_equal(p.small, 7);
    assert_true(p.tls);
    assert_int_equal(p.wait_ms, 1500);
    assert_int_equal(p.short_ms, 250);
    assert_string_equal(p.name, "orders");
    assert_int_equal(p.color, BLUE);
    assert_string_equal(p.secret_ref, "env:PW");
    assert_int_equal(p.custom_calls, 1);
    clear(&p);
}

static void absent_parameters_keep_their_defaults(void **state)
{
    (void)state;
    params p = {.port = 4222, .color = GREEN, .wait_ms = 5000};
    assert_int_equal(parse("tls=1", &p, NULL), SL_OK);
    assert_int_equal(p.port, 4222);
    assert_int_equal(p.color, GREEN);
    assert_int_equal(p.wait_ms, 5000);
    assert_true(p.tls);
    assert_int_equal(parse(NULL, &p, NULL), SL_OK);
    assert_int_equal(parse("", &p, NULL), SL_OK);
    /* Empty pairs (a trailing '&') are nothing. */
    assert_int_equal(parse("&&port=1&", &p, NULL), SL_OK);
    assert_int_equal(p.port, 1);
}

static void bool_accepts_its_spellings_and_a_bare_name(void **state)
{
    (void)state;
    const char *yes[] = {"tls", "tls=true", "tls=1", "tls=yes", "tls=on"};
    const char *no[] = {"tls=false", "tls=0", "tls=no", "tls=off"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        params p = {.tls = false};
        assert_int_equal(parse(yes[i], &p, NULL), SL_OK);
        assert_true(p.tls);
    }
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++) {
        params p = {.tls = true};
        assert_int_equal(parse(no[i], &p, NULL), SL_OK);
        assert_false(p.tls);
    }
    refused("tls=maybe", "tls=maybe", "true or false", NULL);
}

static void number_out_of_range_names_the_parameter_and_the_range(void **state)
{
    (void)state;
    refused("port=0", "engine URL 'x://h'", "port=0",
            "a whole number from 1 to 65535", NULL);
    refused("port=65536", "port=65536", "from 1 to 65535", NULL);
    refused("port=-1", "port=-1", "from 1 to 65535", NULL);
    refused("port=12ab", "port=12ab", NULL);
    refused("port= 1", "from 1 to 65535", NULL);
    refused("port=", "port=", "from 1 to 65535", NULL);
    refused("big=18446744073709551616", "big=", "to 18446744073709551615",
            NULL);
    /* A range wider than its field is cut to what the field holds. */
    refused("small=256", "small=256", "from 0 to 255", NULL);
}

static void duration_takes_units_within_its_range(void **state)
{
    (void)state;
    params p = {0};
    assert_int_equal(parse("wait=30s", &p, NULL), SL_OK);
    assert_int_equal(p.wait_ms, 30000);
    assert_int_equal(parse("short=1h", &p, NULL), SL_OK);
    assert_int_equal(p.short_ms, 3600000);
    refused("wait=5ms", "wait=5ms", "a duration from 10ms to 60000ms", NULL);
    refused("wait=2h", "wait=2h", "from 10ms to 60000ms", NULL);
    refused("wait=soon", "wait=soon", "like 250ms, 5s or 2m", NULL);
    /* The field is 32 bits: 50 days do not fit. */
    refused("short=1200h", "short=1200h", "to 4294967295ms", NULL);
}

static void enum_lists_its_choices(void **state)
{
    (void)state;
    refused("color=purple", "color=purple", "expected red, green or blue",
            NULL);
    refused("color=RED", "expected red, green or blue", NULL);
}

static void string_needs_a_value_and_replaces_an_earlier_one(void **state)
{
    (void)state;
    refused("name=", "name needs a value", NULL);
    refused("name", "parameter 'name' needs a value", NULL);
    params p = {0};
    p.name = sl_strdup("default");
    assert_int_equal(parse("name=x", &p, NULL), SL_OK);
    assert_string_equal(p.name, "x"); /* "default" freed: ASan would say */
    clear(&p);
}

static void unknown_parameter_suggests_the_closest_name(void **state)
{
    (void)state;
    refused("prot=1", "unknown parameter 'prot'", "did you mean 'port'?", NULL);
    refused("colour=red", "unknown parameter 'colour'", "'color'", NULL);
    /* Nothing close: the message lists what is accepted. */
    refused("heartbeat=30", "unknown parameter 'heartbeat'",
            "expected port, big, small, tls, wait, short, name, color or "
            "password",
            NULL);
}

static void engine_without_parameters_says_so(void **state)
{
    (void)state;
    sl_diag diag = {0};
    assert_int_equal(
        sl__url_params_parse(NULL, 0, "sync=full", NULL, NULL, &diag),
        SL_INVALID);
    assert_non_null(strstr(diag.msg, "engine URL: unknown parameter 'sync'"));
    assert_non_null(strstr(diag.msg, "takes none"));
    assert_int_equal(sl__url_params_parse(NULL, 0, "", NULL, NULL, NULL),
                     SL_OK);
}

static void parameter_given_twice_is_refused(void **state)
{
    (void)state;
    refused("port=1&tls&port=1", "parameter 'port' given twice", NULL);
    refused("color=red&color=blue", "'color' given twice", NULL);
    /* Spelled differently, the same parameter. */
    refused("tls&%74ls=0", "'tls' given twice", NULL);
}

static void names_and_values_are_percent_decoded(void **state)
{
    (void)state;
    params p = {0};
    assert_int_equal(parse("name=a%2Fb%20c%3D%26d+e&%63olor=gr%65en", &p, NULL),
                     SL_OK);
    /* '+' is not a space: values are paths and names, not form data. */
    assert_string_equal(p.name, "a/b c=&d+e");
    assert_int_equal(p.color, GREEN);
    clear(&p);
    refused("name=a%2", "bad percent-encoding", "'name'", NULL);
    refused("name=a%zz", "bad percent-encoding", NULL);
    refused("name=%", "bad percent-encoding", NULL);
    refused("na%4", "bad percent-encoding", NULL);
    /* A NUL would cut the value short unseen. */
    refused("name=a%00b", "bad percent-encoding", "not %00", NULL);
}

static void secret_values_are_never_repeated(void **state)
{
    (void)state;
    params p = {0};
    sl_diag diag = {0};
    assert_int_equal(parse("password=hunter2", &p, &diag), SL_INVALID);
    assert_null(strstr(diag.msg, "hunter2"));
    assert_non_null(strstr(diag.msg, "password takes env:NAME"));
    clear(&p);
}

static void setter_failure_stops_the_parse(void **state)
{
    (void)state;
    params p = {0};
    assert_int_equal(parse("password=plain&port=9", &p, NULL), SL_INVALID);
    assert_int_equal(p.custom_calls, 1);
    assert_int_equal(p.port, 0); /* never reached */
    clear(&p);
}

static void table_longer_than_the_maximum_is_an_internal_error(void **state)
{
    (void)state;
    static sl_url_param many[SL_URL_PARAMS_MAX + 1];
    for (size_t i = 0; i < SL_URL_PARAMS_COUNT(many); i++) {
        many[i] = (sl_url_param)SL_URL_BOOL("x", params, tls, "");
    }
    params p = {0};
    assert_int_equal(sl__url_params_parse(many, SL_URL_PARAMS_COUNT(many), "x",
                                          &p, NULL, NULL),
                     SL_INTERNAL);
    assert_int_equal(
        sl__url_params_parse(many, SL_URL_PARAMS_MAX, "x", &p, NULL, NULL),
        SL_OK);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(every_kind_is_stored_in_its_field),
        cmocka_unit_test(absent_parameters_keep_their_defaults),
        cmocka_unit_test(bool_accepts_its_spellings_and_a_bare_name),
        cmocka_unit_test(number_out_of_range_names_the_parameter_and_the_range),
        cmocka_unit_test(duration_takes_units_within_its_range),
        cmocka_unit_test(enum_lists_its_choices),
        cmocka_unit_test(string_needs_a_value_and_replaces_an_earlier_one),
        cmocka_unit_test(unknown_parameter_suggests_the_closest_name),
        cmocka_unit_test(engine_without_parameters_says_so),
        cmocka_unit_test(parameter_given_twice_is_refused),
        cmocka_unit_test(names_and_values_are_percent_decoded),
        cmocka_unit_test(secret_values_are_never_repeated),
        cmocka_unit_test(setter_failure_stops_the_parse),
        cmocka_unit_test(table_longer_than_the_maximum_is_an_internal_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
