/* Tests of the event envelope: attributes, ownership, validation, derive. */
#include "sluice/event.h"

#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* ---- an allocator that counts, and fails on request ---------------------- */

static size_t alloc_calls;
static size_t alloc_fail_at = SIZE_MAX; /* fail the call with this index */

static void *counting_malloc(size_t size)
{
    if (alloc_calls++ == alloc_fail_at) {
        return NULL;
    }
    return malloc(size);
}

static void *counting_realloc(void *p, size_t size)
{
    if (alloc_calls++ == alloc_fail_at) {
        return NULL;
    }
    return realloc(p, size);
}

static const sl_allocator counting = {counting_malloc, counting_realloc, free};

static void count_allocations(void)
{
    alloc_calls = 0;
    alloc_fail_at = SIZE_MAX;
    sl_alloc_set(&counting);
}

static int restore_allocator(void **state)
{
    (void)state;
    sl_alloc_set(NULL);
    return 0;
}

/* ---- fixtures ------------------------------------------------------------ */

static const uint8_t payload[512] = {1, 2, 3, 0, 255};

static sl_event *typical_event(void)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(
        sl_event_set(ev, SL_ATTR_ID, "0190c3a4-5b6c-7d8e-9fa0-b1c2d3e4f5a6"),
        SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SOURCE, "/orders/api"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_TYPE, "orders.created"), SL_OK);
    assert_int_equal(
        sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "application/octet-stream"),
        SL_OK);
    assert_int_equal(
        sl_event_set(ev, SL_ATTR_TRACEPARENT,
                     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        SL_OK);
    assert_int_equal(sl_event_set_data(ev, payload, sizeof payload), SL_OK);
    return ev;
}

/* ---- lifecycle and attributes -------------------------------------------- */

static void create_sets_specversion_only(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SPECVERSION), "1.0");
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        if (i != SL_ATTR_SPECVERSION) {
            assert_null(sl_event_get(ev, (sl_attr)i));
        }
    }
    size_t len = 99;
    assert_null(sl_event_data(ev, &len));
    assert_int_equal(len, 0);
    assert_int_equal(sl_event_time_ms(ev), 0);
    assert_int_equal(sl_event_deadline_ms(ev), 0);
    assert_int_equal(sl_event_ext_count(ev), 0);
    sl_event_unref(ev);
}

static void create_new_fills_id_source_type_time(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/src", "t.x", &ev), SL_OK);
    assert_int_equal(strlen(sl_event_id(ev)), 36);
    assert_int_equal(sl_event_id(ev)[14], '7');
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/src");
    assert_string_equal(sl_event_type(ev), "t.x");
    assert_true(sl_event_time_ms(ev) > UINT64_C(1700000000000));
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);
    sl_event_unref(ev);
}

static void set_get_round_trips_every_attribute(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    char want[SL_ATTR_COUNT_][32];
    assert_int_equal(sl_event_create(&ev), SL_OK);
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        snprintf(want[i], sizeof want[i], "value-%d-%s", i,
                 sl_attr_name((sl_attr)i));
        assert_int_equal(sl_event_set(ev, (sl_attr)i, want[i]), SL_OK);
    }
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        assert_string_equal(sl_event_get(ev, (sl_attr)i), want[i]);
    }
    sl_event_unref(ev);
}

static void setn_copies_exactly_len_bytes(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_setn(ev, SL_ATTR_SUBJECT, "abcdef", 3), SL_OK);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "abc");
    assert_int_equal(sl_event_setn(ev, SL_ATTR_SUBJECT, "a\0b", 3), SL_INVALID);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "abc");
    sl_event_unref(ev);
}

static void set_null_removes_attribute(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    assert_int_equal(sl_event_set(ev, SL_ATTR_SOURCE, NULL), SL_OK);
    assert_null(sl_event_get(ev, SL_ATTR_SOURCE));
    assert_int_equal(sl_event_set_data(ev, NULL, 0), SL_OK);
    size_t len = 1;
    assert_null(sl_event_data(ev, &len));
    assert_int_equal(len, 0);
    sl_event_unref(ev);
}

static void set_rejects_unknown_attribute(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_COUNT_, "x"), SL_INVALID);
    assert_int_equal(sl_event_set(ev, (sl_attr)-1, "x"), SL_INVALID);
    assert_null(sl_event_get(ev, SL_ATTR_COUNT_));
    sl_event_unref(ev);
}

static void attr_names_map_both_ways(void **state)
{
    (void)state;
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        sl_attr attr;
        assert_int_equal(sl_attr_from_name(sl_attr_name((sl_attr)i), &attr),
                         SL_OK);
        assert_int_equal(attr, i);
    }
    assert_string_equal(sl_attr_name(SL_ATTR_DATACONTENTTYPE),
                        "datacontenttype");
    sl_attr attr = SL_ATTR_ID;
    assert_int_equal(sl_attr_from_name("DataContentType", &attr), SL_NOT_FOUND);
    assert_int_equal(sl_attr_from_name("time", &attr), SL_NOT_FOUND);
    assert_int_equal(attr, SL_ATTR_ID);
    assert_null(sl_attr_name(SL_ATTR_COUNT_));
}

static void repeated_sets_spill_out_of_the_arena(void **state)
{
    (void)state;
    /* Far more bytes than any arena: setters must fall back to separate
     * blocks and free each replaced one (ASan reports leaks). */
    sl_event *ev = typical_event();
    char big[300];
    for (int i = 0; i < 200; i++) {
        memset(big, 'a' + i % 26, sizeof big - 1);
        big[sizeof big - 1] = '\0';
        assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT, big), SL_OK);
        assert_int_equal(sl_event_set_ext(ev, "tenant", big + i), SL_OK);
        assert_int_equal(sl_event_set_data(ev, big, (size_t)i), SL_OK);
    }
    assert_int_equal(sl_event_get(ev, SL_ATTR_SUBJECT)[0], 'a' + 199 % 26);
    assert_int_equal(strlen(sl_event_get_ext(ev, "tenant")), 299 - 199);
    sl_event_unref(ev);
}

static void shared_event_refuses_set(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    assert_ptr_equal(sl_event_ref(ev), ev);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT, "x"), SL_INVALID);
    assert_int_equal(sl_event_setn(ev, SL_ATTR_SUBJECT, "x", 1), SL_INVALID);
    assert_int_equal(sl_event_set_time_ms(ev, 1), SL_INVALID);
    assert_int_equal(sl_event_set_deadline_ms(ev, 1), SL_INVALID);
    assert_int_equal(sl_event_set_data(ev, "x", 1), SL_INVALID);
    assert_int_equal(sl_event_set_ext(ev, "tenant", "x"), SL_INVALID);
    assert_null(sl_event_get(ev, SL_ATTR_SUBJECT));
    assert_int_equal(sl_event_time_ms(ev), 0);
    sl_event_unref(ev);
    /* Back to one owner: modifiable again. */
    assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT, "x"), SL_OK);
    sl_event_unref(ev);
}

static void derive_refuses_shared_child(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = typical_event();
    sl_event_ref(child);
    assert_int_equal(sl_event_derive(child, parent), SL_INVALID);
    assert_null(sl_event_get(child, SL_ATTR_CAUSATIONID));
    sl_event_unref(child);
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void unref_null_is_noop(void **state)
{
    (void)state;
    sl_event_unref(NULL);
    assert_null(sl_event_ref(NULL));
}

static void clone_is_independent(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    sl_event *cp = NULL;
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme"), SL_OK);
    assert_int_equal(sl_event_set_time_ms(ev, 1000), SL_OK);
    assert_int_equal(sl_event_set_deadline_ms(ev, 2000), SL_OK);
    assert_int_equal(sl_event_clone(ev, &cp), SL_OK);

    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        const char *a = sl_event_get(ev, (sl_attr)i);
        const char *b = sl_event_get(cp, (sl_attr)i);
        if (a == NULL) {
            assert_null(b);
        } else {
            assert_string_equal(a, b);
            assert_ptr_not_equal(a, b);
        }
    }
    assert_int_equal(sl_event_time_ms(cp), 1000);
    assert_int_equal(sl_event_deadline_ms(cp), 2000);
    assert_string_equal(sl_event_get_ext(cp, "tenant"), "acme");
    size_t len;
    const void *data = sl_event_data(cp, &len);
    assert_int_equal(len, sizeof payload);
    assert_memory_equal(data, payload, len);

    /* Changing either side leaves the other alone. */
    assert_int_equal(sl_event_set(cp, SL_ATTR_TYPE, "changed"), SL_OK);
    assert_int_equal(sl_event_set_ext(cp, "tenant", "other"), SL_OK);
    assert_int_equal(sl_event_set_data(cp, "z", 1), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SOURCE, "/elsewhere"), SL_OK);
    assert_string_equal(sl_event_type(ev), "orders.created");
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "acme");
    assert_int_equal(((const uint8_t *)sl_event_data(ev, &len))[0], 1);
    assert_string_equal(sl_event_get(cp, SL_ATTR_SOURCE), "/orders/api");

    /* The original going away does not affect the clone. */
    sl_event_unref(ev);
    assert_string_equal(sl_event_get_ext(cp, "tenant"), "other");
    sl_event_unref(cp);
}

static void clone_of_shared_event_is_modifiable(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    sl_event *cp = NULL;
    sl_event_ref(ev);
    assert_int_equal(sl_event_clone(ev, &cp), SL_OK);
    assert_int_equal(sl_event_set(cp, SL_ATTR_SUBJECT, "s"), SL_OK);
    sl_event_unref(cp);
    sl_event_unref(ev);
    sl_event_unref(ev);
}

/* ---- allocation counts (the engine's per-event cost) --------------------- */

static void typical_event_costs_at_most_two_allocations(void **state)
{
    (void)state;
    count_allocations();
    sl_event *ev = typical_event();
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme"), SL_OK);
    assert_true(alloc_calls <= 2);
    sl_event_unref(ev);
}

static void clone_is_one_allocation(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme"), SL_OK);
    sl_event *cp = NULL;
    count_allocations();
    assert_int_equal(sl_event_clone(ev, &cp), SL_OK);
    assert_int_equal(alloc_calls, 1);
    /* The slack takes a derive without allocating. */
    assert_int_equal(sl_event_derive(cp, ev), SL_OK);
    assert_int_equal(alloc_calls, 1);
    sl_event_unref(cp);
    sl_event_unref(ev);
}

static void decode_is_one_allocation(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sl_event_encode(ev, &buf, &len), SL_OK);
    sl_event *back = NULL;
    count_allocations();
    assert_int_equal(sl_event_decode(buf, len, &back, NULL), SL_OK);
    assert_int_equal(alloc_calls, 1);
    sl_event_unref(back);
    sl_free(buf);
    sl_event_unref(ev);
}

static void decoded_event_accepts_setters(void **state)
{
    (void)state;
    /* A packed event has no spare arena: setters must allocate, and
     * replacing packed values must not try to free them. */
    sl_event *ev = typical_event();
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme"), SL_OK);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(sl_event_encode(ev, &buf, &len), SL_OK);
    sl_event *back = NULL;
    assert_int_equal(sl_event_decode(buf, len, &back, NULL), SL_OK);
    sl_free(buf);

    assert_int_equal(sl_event_set(back, SL_ATTR_TYPE, "orders.changed"), SL_OK);
    assert_int_equal(sl_event_set(back, SL_ATTR_SOURCE, NULL), SL_OK);
    assert_int_equal(sl_event_set_ext(back, "tenant", "beta"), SL_OK);
    assert_int_equal(sl_event_set_ext(back, "region", "eu"), SL_OK);
    assert_int_equal(sl_event_set_data(back, "{}", 2), SL_OK);
    assert_string_equal(sl_event_type(back), "orders.changed");
    assert_null(sl_event_get(back, SL_ATTR_SOURCE));
    assert_string_equal(sl_event_get_ext(back, "tenant"), "beta");
    assert_string_equal(sl_event_get_ext(back, "region"), "eu");
    assert_string_equal(sl_event_get(back, SL_ATTR_TRACEPARENT),
                        sl_event_get(ev, SL_ATTR_TRACEPARENT));
    sl_event_unref(back);
    sl_event_unref(ev);
}

static void allocation_failures_are_reported_and_leak_nothing(void **state)
{
    (void)state;
    /* Fail each allocation of a representative sequence in turn; every
     * step must either succeed or report SL_NOMEM, and ASan checks that
     * nothing leaks on the failure paths. */
    for (size_t fail = 0; fail < 40; fail++) {
        count_allocations();
        alloc_fail_at = fail;
        sl_event *ev = NULL;
        sl_event *cp = NULL;
        sl_event *back = NULL;
        uint8_t *buf = NULL;
        size_t len = 0;
        char big[600];
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = '\0';

        sl_status st = sl_event_create_new("/s", "t", &ev);
        if (st != SL_OK) {
            assert_int_equal(st, SL_NOMEM);
            continue;
        }
        st = sl_event_set(ev, SL_ATTR_SUBJECT, big);
        assert_true(st == SL_OK || st == SL_NOMEM);
        st = sl_event_set_ext(ev, "big", big);
        assert_true(st == SL_OK || st == SL_NOMEM);
        st = sl_event_set_data(ev, big, sizeof big);
        assert_true(st == SL_OK || st == SL_NOMEM);
        st = sl_event_clone(ev, &cp);
        assert_true(st == SL_OK || st == SL_NOMEM);
        st = sl_event_encode(ev, &buf, &len);
        assert_true(st == SL_OK || st == SL_NOMEM);
        if (st == SL_OK) {
            st = sl_event_decode(buf, len, &back, NULL);
            assert_true(st == SL_OK || st == SL_NOMEM);
        }
        sl_event_unref(back);
        sl_free(buf);
        sl_event_unref(cp);
        sl_event_unref(ev);
    }
}

/* ---- extensions ---------------------------------------------------------- */

static void set_ext_routes_known_names(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "subject", "s1"), SL_OK);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "s1");
    assert_string_equal(sl_event_get_ext(ev, "subject"), "s1");
    assert_int_equal(sl_event_set_ext(ev, "partitionkey", "k"), SL_OK);
    assert_string_equal(sl_event_get(ev, SL_ATTR_PARTITIONKEY), "k");
    assert_int_equal(sl_event_set_ext(ev, "time", "1970-01-01T00:00:01Z"),
                     SL_OK);
    assert_int_equal(sl_event_time_ms(ev), 1000);
    assert_int_equal(sl_event_set_ext(ev, "deadline", "12345"), SL_OK);
    assert_int_equal(sl_event_deadline_ms(ev), 12345);
    assert_int_equal(sl_event_set_ext(ev, "deadline", "12x"), SL_INVALID);
    assert_int_equal(sl_event_deadline_ms(ev), 12345);
    assert_int_equal(sl_event_set_ext(ev, "data", "x"), SL_INVALID);
    assert_int_equal(sl_event_ext_count(ev), 0);
    sl_event_unref(ev);
}

static void set_ext_rejects_bad_names(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "", "v"), SL_INVALID);
    assert_int_equal(sl_event_set_ext(ev, "Tenant", "v"), SL_INVALID);
    assert_int_equal(sl_event_set_ext(ev, "ten-ant", "v"), SL_INVALID);
    assert_int_equal(sl_event_set_ext(ev, "ten_ant", "v"), SL_INVALID);
    assert_int_equal(sl_event_set_ext(ev, "abcdefghijklmnopqrstu", "v"),
                     SL_INVALID);
    assert_int_equal(sl_event_set_ext(ev, "abcdefghijklmnopqrst", "v"), SL_OK);
    assert_int_equal(sl_event_ext_count(ev), 1);
    sl_event_unref(ev);
}

static void set_ext_is_full_beyond_max(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    char name[8];
    assert_int_equal(sl_event_create(&ev), SL_OK);
    for (int i = 0; i < SL_EVENT_MAX_EXTENSIONS; i++) {
        snprintf(name, sizeof name, "x%d", i);
        assert_int_equal(sl_event_set_ext(ev, name, "v"), SL_OK);
    }
    assert_int_equal(sl_event_set_ext(ev, "onemore", "v"), SL_FULL);
    /* Replacing an existing one still works when full. */
    assert_int_equal(sl_event_set_ext(ev, "x3", "w"), SL_OK);
    assert_string_equal(sl_event_get_ext(ev, "x3"), "w");
    assert_int_equal(sl_event_ext_count(ev), SL_EVENT_MAX_EXTENSIONS);
    sl_event_unref(ev);
}

static void set_ext_null_removes_and_keeps_order(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    const char *name;
    const char *value;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "a", "1"), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "b", "2"), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "c", "3"), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "b", NULL), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "zz", NULL), SL_OK);
    assert_int_equal(sl_event_ext_count(ev), 2);
    sl_event_ext_at(ev, 0, &name, &value);
    assert_string_equal(name, "a");
    assert_string_equal(value, "1");
    sl_event_ext_at(ev, 1, &name, &value);
    assert_string_equal(name, "c");
    assert_string_equal(value, "3");
    sl_event_ext_at(ev, 2, &name, &value);
    assert_null(name);
    assert_null(value);
    assert_null(sl_event_get_ext(ev, "b"));
    sl_event_unref(ev);
}

/* ---- validate ------------------------------------------------------------ */

static sl_event *valid_event(void)
{
    sl_event *ev = typical_event();
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);
    return ev;
}

static void validate_accepts_complete_event(void **state)
{
    (void)state;
    sl_diag diag = {0};
    sl_event *ev = valid_event();
    assert_int_equal(sl_event_validate(ev, 0, &diag), SL_OK);
    sl_event_unref(ev);
}

static void expect_invalid_without(sl_attr attr, const char *value)
{
    sl_diag diag = {0};
    sl_event *ev = valid_event();
    assert_int_equal(sl_event_set(ev, attr, value), SL_OK);
    assert_int_equal(sl_event_validate(ev, 0, &diag), SL_INVALID);
    assert_int_equal(diag.status, SL_INVALID);
    assert_non_null(strstr(diag.msg, sl_attr_name(attr)));
    sl_event_unref(ev);
}

static void validate_rejects_missing_id(void **state)
{
    (void)state;
    expect_invalid_without(SL_ATTR_ID, NULL);
    expect_invalid_without(SL_ATTR_ID, "");
}

static void validate_rejects_missing_source(void **state)
{
    (void)state;
    expect_invalid_without(SL_ATTR_SOURCE, NULL);
    expect_invalid_without(SL_ATTR_SOURCE, "");
}

static void validate_rejects_missing_type(void **state)
{
    (void)state;
    expect_invalid_without(SL_ATTR_TYPE, NULL);
    expect_invalid_without(SL_ATTR_TYPE, "");
}

static void validate_rejects_missing_or_wrong_specversion(void **state)
{
    (void)state;
    expect_invalid_without(SL_ATTR_SPECVERSION, NULL);
    expect_invalid_without(SL_ATTR_SPECVERSION, "0.3");
}

static void validate_rejects_oversize_event(void **state)
{
    (void)state;
    sl_diag diag = {0};
    sl_event *ev = valid_event();
    size_t size = sl_event_encoded_size(ev);
    assert_int_equal(sl_event_validate(ev, size, NULL), SL_OK);
    assert_int_equal(sl_event_validate(ev, size - 1, &diag), SL_TOO_LARGE);
    assert_int_equal(diag.status, SL_TOO_LARGE);
    sl_event_unref(ev);
}

static void validate_enforces_default_and_hard_limit(void **state)
{
    (void)state;
    const size_t limit = SL_EVENT_MAX_SIZE_DEFAULT;
    sl_event *ev = valid_event();
    uint8_t *big = calloc(1, limit);
    assert_non_null(big);

    /* Payload that makes the event exactly the limit: the data field costs
     * a tag byte and a 3-byte length (lengths of 2^14..2^21-1). */
    assert_int_equal(sl_event_set_data(ev, NULL, 0), SL_OK);
    size_t n = limit - sl_event_encoded_size(ev) - 1 - 3;
    assert_int_equal(sl_event_set_data(ev, big, n), SL_OK);
    assert_int_equal(sl_event_encoded_size(ev), limit);
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);

    assert_int_equal(sl_event_set_data(ev, big, n + 1), SL_OK);
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_TOO_LARGE);
    /* A larger max_size cannot lift the hard limit. */
    assert_int_equal(sl_event_validate(ev, 2 * limit, NULL), SL_TOO_LARGE);
    free(big);
    sl_event_unref(ev);
}

/* ---- derive -------------------------------------------------------------- */

static void derive_inherits_trace_with_new_span(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = NULL;
    char trace[33];
    char span[17];
    assert_int_equal(sl_event_set(parent, SL_ATTR_TRACESTATE, "vendor=1"),
                     SL_OK);
    assert_int_equal(sl_event_create_new("/b", "t2", &child), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);

    const char *tp = sl_event_get(child, SL_ATTR_TRACEPARENT);
    assert_int_equal(sl_traceparent_parse(tp, trace, span), SL_OK);
    assert_string_equal(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_not_equal(span, "00f067aa0ba902b7");
    assert_string_equal(tp + 53, "01");
    assert_string_equal(sl_event_get(child, SL_ATTR_TRACESTATE), "vendor=1");
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void derive_sets_causation_and_correlation(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = NULL;
    sl_event *grandchild = NULL;
    assert_int_equal(sl_event_create_new("/b", "t2", &child), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);
    /* A parent without a correlationid starts the conversation. */
    assert_string_equal(sl_event_get(child, SL_ATTR_CAUSATIONID),
                        sl_event_id(parent));
    assert_string_equal(sl_event_get(child, SL_ATTR_CORRELATIONID),
                        sl_event_id(parent));

    assert_int_equal(sl_event_create_new("/c", "t3", &grandchild), SL_OK);
    assert_int_equal(sl_event_derive(grandchild, child), SL_OK);
    assert_string_equal(sl_event_get(grandchild, SL_ATTR_CAUSATIONID),
                        sl_event_id(child));
    assert_string_equal(sl_event_get(grandchild, SL_ATTR_CORRELATIONID),
                        sl_event_id(parent));
    sl_event_unref(grandchild);
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void derive_without_parent_trace_starts_new_root(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = NULL;
    char trace[33];
    assert_int_equal(sl_event_set(parent, SL_ATTR_TRACEPARENT, NULL), SL_OK);
    assert_int_equal(sl_event_set(parent, SL_ATTR_TRACESTATE, "orphan=1"),
                     SL_OK);
    assert_int_equal(sl_event_create_new("/b", "t2", &child), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);
    assert_int_equal(sl_traceparent_parse(
                         sl_event_get(child, SL_ATTR_TRACEPARENT), trace, NULL),
                     SL_OK);
    assert_string_not_equal(trace, "4bf92f3577b34da6a3ce929d0e0e4736");
    /* W3C: a tracestate without its traceparent is dropped. */
    assert_null(sl_event_get(child, SL_ATTR_TRACESTATE));
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void derive_with_malformed_parent_trace_starts_new_root(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = NULL;
    assert_int_equal(sl_event_set(parent, SL_ATTR_TRACEPARENT, "garbage"),
                     SL_OK);
    assert_int_equal(sl_event_create_new("/b", "t2", &child), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);
    assert_int_equal(sl_traceparent_parse(
                         sl_event_get(child, SL_ATTR_TRACEPARENT), NULL, NULL),
                     SL_OK);
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void derive_inherits_the_earlier_deadline(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = NULL;
    assert_int_equal(sl_event_create_new("/b", "t2", &child), SL_OK);

    assert_int_equal(sl_event_set_deadline_ms(parent, 5000), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);
    assert_int_equal(sl_event_deadline_ms(child), 5000);

    /* A child's own tighter deadline stays. */
    assert_int_equal(sl_event_set_deadline_ms(child, 3000), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);
    assert_int_equal(sl_event_deadline_ms(child), 3000);

    /* A parent without a deadline imposes none. */
    assert_int_equal(sl_event_set_deadline_ms(parent, 0), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_OK);
    assert_int_equal(sl_event_deadline_ms(child), 3000);
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void derive_requires_parent_id(void **state)
{
    (void)state;
    sl_event *parent = typical_event();
    sl_event *child = NULL;
    assert_int_equal(sl_event_set(parent, SL_ATTR_ID, NULL), SL_OK);
    assert_int_equal(sl_event_create_new("/b", "t2", &child), SL_OK);
    assert_int_equal(sl_event_derive(child, parent), SL_INVALID);
    sl_event_unref(child);
    sl_event_unref(parent);
}

static void derive_from_itself_is_safe(void **state)
{
    (void)state;
    sl_event *ev = typical_event();
    char id[64];
    snprintf(id, sizeof id, "%s", sl_event_id(ev));
    assert_int_equal(sl_event_set(ev, SL_ATTR_CORRELATIONID, "corr"), SL_OK);
    assert_int_equal(sl_event_derive(ev, ev), SL_OK);
    assert_string_equal(sl_event_get(ev, SL_ATTR_CAUSATIONID), id);
    assert_string_equal(sl_event_get(ev, SL_ATTR_CORRELATIONID), "corr");
    sl_event_unref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_sets_specversion_only),
        cmocka_unit_test(create_new_fills_id_source_type_time),
        cmocka_unit_test(set_get_round_trips_every_attribute),
        cmocka_unit_test(setn_copies_exactly_len_bytes),
        cmocka_unit_test(set_null_removes_attribute),
        cmocka_unit_test(set_rejects_unknown_attribute),
        cmocka_unit_test(attr_names_map_both_ways),
        cmocka_unit_test(repeated_sets_spill_out_of_the_arena),
        cmocka_unit_test(shared_event_refuses_set),
        cmocka_unit_test(derive_refuses_shared_child),
        cmocka_unit_test(unref_null_is_noop),
        cmocka_unit_test(clone_is_independent),
        cmocka_unit_test(clone_of_shared_event_is_modifiable),
        cmocka_unit_test_teardown(typical_event_costs_at_most_two_allocations,
                                  restore_allocator),
        cmocka_unit_test_teardown(clone_is_one_allocation, restore_allocator),
        cmocka_unit_test_teardown(decode_is_one_allocation, restore_allocator),
        cmocka_unit_test(decoded_event_accepts_setters),
        cmocka_unit_test_teardown(
            allocation_failures_are_reported_and_leak_nothing,
            restore_allocator),
        cmocka_unit_test(set_ext_routes_known_names),
        cmocka_unit_test(set_ext_rejects_bad_names),
        cmocka_unit_test(set_ext_is_full_beyond_max),
        cmocka_unit_test(set_ext_null_removes_and_keeps_order),
        cmocka_unit_test(validate_accepts_complete_event),
        cmocka_unit_test(validate_rejects_missing_id),
        cmocka_unit_test(validate_rejects_missing_source),
        cmocka_unit_test(validate_rejects_missing_type),
        cmocka_unit_test(validate_rejects_missing_or_wrong_specversion),
        cmocka_unit_test(validate_rejects_oversize_event),
        cmocka_unit_test(validate_enforces_default_and_hard_limit),
        cmocka_unit_test(derive_inherits_trace_with_new_span),
        cmocka_unit_test(derive_sets_causation_and_correlation),
        cmocka_unit_test(derive_without_parent_trace_starts_new_root),
        cmocka_unit_test(derive_with_malformed_parent_trace_starts_new_root),
        cmocka_unit_test(derive_inherits_the_earlier_deadline),
        cmocka_unit_test(derive_requires_parent_id),
        cmocka_unit_test(derive_from_itself_is_safe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
