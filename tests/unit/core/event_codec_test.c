/* Tests of the compact binary encoding and the binary-mode header mapping. */
#include "sluice/event.h"

#include "core/event_internal.h"
#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

/* Every field set: all string attributes, time, deadline, extensions and
 * data with a NUL and high bytes in it. */
static sl_event *full_event(void)
{
    static const uint8_t data[] = {0x00, 0x01, 0x7F, 0x80, 0xFF, 'h', 'i'};
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    for (int i = 0; i < SL_ATTR_COUNT_; i++) {
        char v[64];
        if (i == SL_ATTR_SPECVERSION) {
            continue;
        }
        snprintf(v, sizeof v, "%s-value-\xc3\xa9", sl_attr_name((sl_attr)i));
        assert_int_equal(sl_event_set(ev, (sl_attr)i, v), SL_OK);
    }
    assert_int_equal(
        sl_event_set(ev, SL_ATTR_TRACEPARENT,
                     "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        SL_OK);
    assert_int_equal(sl_event_set_time_ms(ev, UINT64_C(1795780800123)), SL_OK);
    assert_int_equal(sl_event_set_deadline_ms(ev, UINT64_C(1795780830000)),
                     SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme"), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "priority", "7"), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "empty", ""), SL_OK);
    assert_int_equal(sl_event_set_data(ev, data, sizeof data), SL_OK);
    return ev;
}

static void assert_events_equal(const sl_event *a, const sl_event *b)
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
        const char *na, *va, *nb, *vb;
        sl_event_ext_at(a, i, &na, &va);
        sl_event_ext_at(b, i, &nb, &vb);
        assert_string_equal(na, nb);
        assert_string_equal(va, vb);
    }
}

static void encode(const sl_event *ev, uint8_t **buf, size_t *len)
{
    assert_int_equal(sl_event_encode(ev, buf, len), SL_OK);
}

/* ---- binary encoding ----------------------------------------------------- */

static void encode_decode_round_trips_every_field(void **state)
{
    (void)state;
    sl_event *ev = full_event();
    sl_event *back = NULL;
    uint8_t *buf;
    size_t len;
    encode(ev, &buf, &len);
    assert_int_equal(sl_event_decode(buf, len, &back, NULL), SL_OK);
    assert_events_equal(ev, back);

    /* And the decoded event encodes to the same bytes. */
    uint8_t *again;
    size_t again_len;
    encode(back, &again, &again_len);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, buf, len);
    sl_free(again);
    sl_free(buf);
    sl_event_unref(back);
    sl_event_unref(ev);
}

static void encode_decode_round_trips_empty_event(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    sl_event *back = NULL;
    uint8_t *buf;
    size_t len;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SPECVERSION, NULL), SL_OK);
    encode(ev, &buf, &len);
    assert_int_equal(len, 3);
    assert_int_equal(sl_event_decode(buf, len, &back, NULL), SL_OK);
    assert_events_equal(ev, back);
    sl_free(buf);
    sl_event_unref(back);
    sl_event_unref(ev);
}

static void encoded_size_matches_encode(void **state)
{
    (void)state;
    sl_event *ev = full_event();
    uint8_t *buf;
    size_t len;
    /* Sizes around the varint boundaries of the data length. */
    static const size_t sizes[] = {0, 1, 127, 128, 16383, 16384, 70000};
    uint8_t *big = calloc(1, 70000);
    assert_non_null(big);
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        assert_int_equal(sl_event_set_data(ev, big, sizes[i]), SL_OK);
        encode(ev, &buf, &len);
        assert_int_equal(len, sl_event_encoded_size(ev));
        sl_free(buf);
    }
    free(big);
    sl_event_unref(ev);
}

static void decode_rejects_every_truncation(void **state)
{
    (void)state;
    sl_event *ev = full_event();
    uint8_t *buf;
    size_t len;
    encode(ev, &buf, &len);
    for (size_t n = 0; n < len; n++) {
        /* A copy of exactly n bytes, so ASan sees any read past it. */
        uint8_t *cut = malloc(n == 0 ? 1 : n);
        assert_non_null(cut);
        memcpy(cut, buf, n);
        sl_event *back = NULL;
        sl_diag diag = {0};
        assert_int_not_equal(sl_event_decode(cut, n, &back, &diag), SL_OK);
        assert_null(back);
        assert_true(diag.msg[0] != '\0');
        free(cut);
    }
    sl_free(buf);
    sl_event_unref(ev);
}

static uint64_t test_rng_state = 0x1234567887654321u;

static uint32_t test_rand(void)
{
    /* xorshift64*: deterministic, so a failure reproduces. */
    test_rng_state ^= test_rng_state >> 12;
    test_rng_state ^= test_rng_state << 25;
    test_rng_state ^= test_rng_state >> 27;
    return (uint32_t)((test_rng_state * 0x2545F4914F6CDD1Du) >> 32);
}

static void decode_rejects_random_garbage(void **state)
{
    (void)state;
    uint8_t buf[256];
    for (int round = 0; round < 20000; round++) {
        size_t n = test_rand() % sizeof buf;
        for (size_t i = 0; i < n; i++) {
            buf[i] = (uint8_t)test_rand();
        }
        /* Half the time, behind a valid header, to get past the magic. */
        if (round % 2 == 0 && n >= 2) {
            buf[0] = 0xCE;
            buf[1] = 0x01;
        }
        sl_event *back = NULL;
        assert_int_not_equal(sl_event_decode(buf, n, &back, NULL), SL_OK);
        assert_null(back);
    }
}

static void decode_survives_mutated_buffers(void **state)
{
    (void)state;
    /* Flipped bytes in a valid buffer may still decode (a changed letter);
     * what decodes must be a usable event. ASan/UBSan watch the rest. */
    sl_event *ev = full_event();
    uint8_t *buf;
    size_t len;
    encode(ev, &buf, &len);
    uint8_t *mut = malloc(len);
    assert_non_null(mut);
    for (int round = 0; round < 20000; round++) {
        memcpy(mut, buf, len);
        int flips = 1 + (int)(test_rand() % 4);
        for (int f = 0; f < flips; f++) {
            mut[test_rand() % len] = (uint8_t)test_rand();
        }
        sl_event *back = NULL;
        if (sl_event_decode(mut, len, &back, NULL) == SL_OK) {
            uint8_t *re;
            size_t re_len;
            encode(back, &re, &re_len);
            sl_event *again = NULL;
            assert_int_equal(sl_event_decode(re, re_len, &again, NULL), SL_OK);
            assert_events_equal(back, again);
            sl_event_unref(again);
            sl_free(re);
            sl_event_unref(back);
        }
    }
    free(mut);
    sl_free(buf);
    sl_event_unref(ev);
}

static void expect_decode_fails(const uint8_t *buf, size_t len, sl_status want)
{
    sl_event *back = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_event_decode(buf, len, &back, &diag), want);
    assert_int_equal(diag.status, want);
    assert_null(back);
}

static void decode_rejects_unknown_version(void **state)
{
    (void)state;
    const uint8_t v2[] = {0xCE, 0x02, 0x00};
    const uint8_t v0[] = {0xCE, 0x00, 0x00};
    expect_decode_fails(v2, sizeof v2, SL_UNSUPPORTED);
    expect_decode_fails(v0, sizeof v0, SL_UNSUPPORTED);
}

static void decode_rejects_bad_magic(void **state)
{
    (void)state;
    const uint8_t buf[] = {'{', 0x01, 0x00};
    expect_decode_fails(buf, sizeof buf, SL_INVALID);
}

static void decode_rejects_trailing_bytes(void **state)
{
    (void)state;
    const uint8_t buf[] = {0xCE, 0x01, 0x00, 0x00};
    expect_decode_fails(buf, sizeof buf, SL_INVALID);
}

static void decode_rejects_repeated_field(void **state)
{
    (void)state;
    const uint8_t attr[] = {0xCE, 0x01, 0x01, 1, 'a', 0x01, 1, 'b', 0x00};
    const uint8_t data[] = {0xCE, 0x01, 0x40, 1, 'a', 0x40, 1, 'b', 0x00};
    const uint8_t ext[] = {0xCE, 0x01, 0x30, 3,   1,   'x', 'a',
                           0x30, 3,    1,    'x', 'b', 0x00};
    expect_decode_fails(attr, sizeof attr, SL_INVALID);
    expect_decode_fails(data, sizeof data, SL_INVALID);
    expect_decode_fails(ext, sizeof ext, SL_INVALID);
}

static void decode_skips_unknown_optional_field(void **state)
{
    (void)state;
    const uint8_t buf[] = {0xCE, 0x01, 0x9A, 2, 'z', 'z', 0x03, 1, 't', 0x00};
    sl_event *back = NULL;
    assert_int_equal(sl_event_decode(buf, sizeof buf, &back, NULL), SL_OK);
    assert_string_equal(sl_event_type(back), "t");
    sl_event_unref(back);
}

static void decode_rejects_unknown_required_field(void **state)
{
    (void)state;
    const uint8_t buf[] = {0xCE, 0x01, 0x1A, 1, 'z', 0x00};
    expect_decode_fails(buf, sizeof buf, SL_INVALID);
}

static void decode_rejects_nul_in_string(void **state)
{
    (void)state;
    const uint8_t attr[] = {0xCE, 0x01, 0x01, 3, 'a', 0, 'b', 0x00};
    const uint8_t ext[] = {0xCE, 0x01, 0x30, 4, 1, 'x', 'a', 0, 0x00};
    expect_decode_fails(attr, sizeof attr, SL_INVALID);
    expect_decode_fails(ext, sizeof ext, SL_INVALID);
}

static void decode_rejects_invalid_extension_name(void **state)
{
    (void)state;
    const uint8_t upper[] = {0xCE, 0x01, 0x30, 3, 1, 'X', 'v', 0x00};
    const uint8_t empty[] = {0xCE, 0x01, 0x30, 2, 0, 'v', 0x00};
    const uint8_t known[] = {0xCE, 0x01, 0x30, 4, 2, 'i', 'd', 'v', 0x00};
    const uint8_t longer[] = {0xCE, 0x01, 0x30, 2, 5, 'v', 0x00};
    expect_decode_fails(upper, sizeof upper, SL_INVALID);
    expect_decode_fails(empty, sizeof empty, SL_INVALID);
    expect_decode_fails(known, sizeof known, SL_INVALID);
    expect_decode_fails(longer, sizeof longer, SL_INVALID);
}

static void decode_rejects_too_many_extensions(void **state)
{
    (void)state;
    uint8_t buf[2 + (SL_EVENT_MAX_EXTENSIONS + 1) * 6 + 1];
    size_t n = 0;
    buf[n++] = 0xCE;
    buf[n++] = 0x01;
    for (int i = 0; i <= SL_EVENT_MAX_EXTENSIONS; i++) {
        buf[n++] = 0x30;
        buf[n++] = 4;
        buf[n++] = 2;
        buf[n++] = 'x';
        buf[n++] = (uint8_t)('a' + i);
        buf[n++] = 'v';
    }
    buf[n++] = 0x00;
    expect_decode_fails(buf, n, SL_INVALID);
    /* One fewer is fine. */
    n -= 7;
    buf[n++] = 0x00;
    sl_event *back = NULL;
    assert_int_equal(sl_event_decode(buf, n, &back, NULL), SL_OK);
    assert_int_equal(sl_event_ext_count(back), SL_EVENT_MAX_EXTENSIONS);
    sl_event_unref(back);
}

static void decode_rejects_overlong_or_huge_length(void **state)
{
    (void)state;
    const uint8_t overlong[] = {0xCE, 0x01, 0x01, 0x81, 0x00, 'a', 0x00};
    const uint8_t huge[] = {0xCE, 0x01, 0x40, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    const uint8_t endless[] = {0xCE, 0x01, 0x40, 0x80, 0x80, 0x80,
                               0x80, 0x80, 0x80, 0x01, 0x00};
    const uint8_t bad_time[] = {0xCE, 0x01, 0x20, 4, 1, 2, 3, 4, 0x00};
    expect_decode_fails(overlong, sizeof overlong, SL_INVALID);
    expect_decode_fails(huge, sizeof huge, SL_INVALID);
    expect_decode_fails(endless, sizeof endless, SL_INVALID);
    expect_decode_fails(bad_time, sizeof bad_time, SL_INVALID);
}

static void decode_reads_the_documented_example(void **state)
{
    (void)state;
    /* The example in docs/events.md, byte for byte. */
    const uint8_t doc[] = {0xCE, 0x01, 0x01, 0x01, '1',  0x03, 0x01, 't',
                           0x20, 0x08, 0xE8, 0x03, 0x00, 0x00, 0x00, 0x00,
                           0x00, 0x00, 0x40, 0x02, '{',  '}',  0x00};
    sl_event *ev = NULL;
    assert_int_equal(sl_event_decode(doc, sizeof doc, &ev, NULL), SL_OK);
    assert_string_equal(sl_event_id(ev), "1");
    assert_string_equal(sl_event_type(ev), "t");
    assert_null(sl_event_get(ev, SL_ATTR_SPECVERSION));
    assert_int_equal(sl_event_time_ms(ev), 1000);
    size_t len;
    assert_memory_equal(sl_event_data(ev, &len), "{}", 2);
    assert_int_equal(len, 2);

    uint8_t *buf;
    encode(ev, &buf, &len);
    assert_int_equal(len, sizeof doc);
    assert_memory_equal(buf, doc, len);
    sl_free(buf);
    sl_event_unref(ev);
}

/* ---- binary-mode headers ------------------------------------------------- */

typedef struct header_list {
    char name[40][64];
    char value[40][128];
    size_t n;
} header_list;

static sl_status collect(const char *name, const char *value, void *ctx)
{
    header_list *hl = ctx;
    assert_true(hl->n < 40);
    snprintf(hl->name[hl->n], sizeof hl->name[0], "%s", name);
    snprintf(hl->value[hl->n], sizeof hl->value[0], "%s", value);
    hl->n++;
    return SL_OK;
}

static const char *find_header(const header_list *hl, const char *name)
{
    for (size_t i = 0; i < hl->n; i++) {
        if (strcmp(hl->name[i], name) == 0) {
            return hl->value[i];
        }
    }
    return NULL;
}

static void headers_round_trip(const char *prefix)
{
    sl_event *ev = full_event();
    sl_event *back = NULL;
    header_list hl = {.n = 0};
    char name[64];

    assert_int_equal(sl_event_set_data(ev, NULL, 0), SL_OK);
    assert_int_equal(sl_ce_to_headers(ev, prefix, collect, &hl), SL_OK);
    /* 12 attributes, time, deadline and three extensions. */
    assert_int_equal(hl.n, SL_ATTR_COUNT_ + 2 + 3);
    snprintf(name, sizeof name, "%stime", prefix);
    assert_string_equal(find_header(&hl, name), "2026-11-27T12:00:00.123Z");
    snprintf(name, sizeof name, "%sdeadline", prefix);
    assert_string_equal(find_header(&hl, name), "1795780830000");
    snprintf(name, sizeof name, "%sspecversion", prefix);
    assert_string_equal(find_header(&hl, name), "1.0");
    snprintf(name, sizeof name, "%stenant", prefix);
    assert_string_equal(find_header(&hl, name), "acme");

    assert_int_equal(sl_event_create(&back), SL_OK);
    for (size_t i = 0; i < hl.n; i++) {
        sl_diag diag = {0};
        assert_int_equal(
            sl_ce_from_header(back, prefix, hl.name[i], hl.value[i], &diag),
            SL_OK);
    }
    assert_events_equal(ev, back);
    sl_event_unref(back);
    sl_event_unref(ev);
}

static void headers_round_trip_with_http_nats_prefix(void **state)
{
    (void)state;
    headers_round_trip("ce-");
}

static void headers_round_trip_with_kafka_prefix(void **state)
{
    (void)state;
    headers_round_trip("ce_");
}

static void headers_round_trip_with_amqp_prefix(void **state)
{
    (void)state;
    headers_round_trip("cloudEvents:");
}

/* The decode path of a binding that checked the prefix and measured the
 * values (core/event_internal.h), into an event sized for them, gives the
 * event the public calls give, and the same refusals. */
static void from_header_with_lengths_into_sized_event(void **state)
{
    (void)state;
    sl_event *ev = full_event();
    header_list hl = {.n = 0};
    size_t bytes = 0;
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);

    assert_int_equal(sl_ce_to_headers(ev, "ce-", collect, &hl), SL_OK);
    for (size_t i = 0; i < hl.n; i++) {
        bytes += strlen(hl.name[i]) + strlen(hl.value[i]) + 2;
    }
    sl_event *back = NULL;
    assert_int_equal(sl__event_create_sized(bytes + len, &back), SL_OK);
    for (size_t i = 0; i < hl.n; i++) {
        char upper[64];
        /* Header names come in any case. */
        snprintf(upper, sizeof upper, "CE-%s", hl.name[i] + 3);
        assert_int_equal(sl__ce_from_header_n(back, 3, upper, hl.value[i],
                                              strlen(hl.value[i])),
                         SL_OK);
    }
    assert_int_equal(sl_event_set_data(back, data, len), SL_OK);
    assert_events_equal(ev, back);

    assert_int_equal(sl__ce_from_header_n(back, 3, "ce-specversion", "0.3", 3),
                     SL_INVALID);
    assert_int_equal(sl__ce_from_header_n(back, 3, "ce-time", "yesterday", 9),
                     SL_INVALID);
    assert_int_equal(sl__ce_from_header_n(back, 3, "ce-", "x", 1), SL_INVALID);
    assert_int_equal(sl__ce_from_header_n(back, 3, "ce-bad_name", "x", 1),
                     SL_INVALID);
    assert_events_equal(ev, back); /* refusals change nothing */
    sl_event_unref(back);
    sl_event_unref(ev);
}

static void from_header_is_case_insensitive(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "CE-ID", "1", NULL), SL_OK);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "Ce-TraceParent",
                                       "00-4bf92f3577b34da6a3ce929d0e0e4736-"
                                       "00f067aa0ba902b7-01",
                                       NULL),
                     SL_OK);
    assert_int_equal(
        sl_ce_from_header(ev, "cloudEvents:", "CLOUDEVENTS:Tenant", "a", NULL),
        SL_OK);
    assert_int_equal(
        sl_ce_from_header(ev, "ce_", "ce_TIME", "1970-01-01T00:00:02Z", NULL),
        SL_OK);
    assert_string_equal(sl_event_id(ev), "1");
    assert_non_null(sl_event_get(ev, SL_ATTR_TRACEPARENT));
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "a");
    assert_int_equal(sl_event_time_ms(ev), 2000);
    sl_event_unref(ev);
}

static void from_header_leaves_other_headers_alone(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(
        sl_ce_from_header(ev, "ce-", "content-type", "text/plain", NULL),
        SL_NOT_FOUND);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "ce", "x", NULL),
                     SL_NOT_FOUND);
    assert_int_equal(sl_ce_from_header(ev, "ce_", "ce-id", "x", NULL),
                     SL_NOT_FOUND);
    assert_null(sl_event_id(ev));
    assert_int_equal(sl_event_ext_count(ev), 0);
    sl_event_unref(ev);
}

static void from_header_rejects_bad_specversion(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(
        sl_ce_from_header(ev, "ce-", "ce-specversion", "0.3", &diag),
        SL_INVALID);
    assert_non_null(strstr(diag.msg, "specversion"));
    assert_string_equal(sl_event_get(ev, SL_ATTR_SPECVERSION), "1.0");
    assert_int_equal(
        sl_ce_from_header(ev, "ce-", "ce-specversion", "1.0", NULL), SL_OK);
    sl_event_unref(ev);
}

static void from_header_rejects_bad_time(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "yesterday",  "2026-13-01T00:00:00Z", "2026-02-29T00:00:00Z",
        "2026-01-01", "2026-01-01T00:00:00",  "2026-01-01T24:00:00Z",
    };
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_diag diag = {0};
        assert_int_equal(sl_ce_from_header(ev, "ce-", "ce-time", bad[i], &diag),
                         SL_INVALID);
        assert_non_null(strstr(diag.msg, "RFC 3339"));
    }
    assert_int_equal(sl_event_time_ms(ev), 0);
    sl_event_unref(ev);
}

static void from_header_rejects_bad_deadline_and_name(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "ce-deadline", "-5", &diag),
                     SL_INVALID);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "ce-deadline",
                                       "99999999999999999999999", NULL),
                     SL_INVALID);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "ce-bad_name", "v", &diag),
                     SL_INVALID);
    assert_int_equal(sl_ce_from_header(ev, "ce-", "ce-", "v", &diag),
                     SL_INVALID);
    assert_int_equal(sl_event_deadline_ms(ev), 0);
    sl_event_unref(ev);
}

static sl_status fail_third(const char *name, const char *value, void *ctx)
{
    (void)name;
    (void)value;
    int *calls = ctx;
    return ++*calls == 3 ? SL_FULL : SL_OK;
}

static void to_headers_stops_at_callback_error(void **state)
{
    (void)state;
    sl_event *ev = full_event();
    int calls = 0;
    assert_int_equal(sl_ce_to_headers(ev, "ce-", fail_third, &calls), SL_FULL);
    assert_int_equal(calls, 3);
    sl_event_unref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(encode_decode_round_trips_every_field),
        cmocka_unit_test(encode_decode_round_trips_empty_event),
        cmocka_unit_test(encoded_size_matches_encode),
        cmocka_unit_test(decode_rejects_every_truncation),
        cmocka_unit_test(decode_rejects_random_garbage),
        cmocka_unit_test(decode_survives_mutated_buffers),
        cmocka_unit_test(decode_rejects_unknown_version),
        cmocka_unit_test(decode_rejects_bad_magic),
        cmocka_unit_test(decode_rejects_trailing_bytes),
        cmocka_unit_test(decode_rejects_repeated_field),
        cmocka_unit_test(decode_skips_unknown_optional_field),
        cmocka_unit_test(decode_rejects_unknown_required_field),
        cmocka_unit_test(decode_rejects_nul_in_string),
        cmocka_unit_test(decode_rejects_invalid_extension_name),
        cmocka_unit_test(decode_rejects_too_many_extensions),
        cmocka_unit_test(decode_rejects_overlong_or_huge_length),
        cmocka_unit_test(decode_reads_the_documented_example),
        cmocka_unit_test(headers_round_trip_with_http_nats_prefix),
        cmocka_unit_test(headers_round_trip_with_kafka_prefix),
        cmocka_unit_test(headers_round_trip_with_amqp_prefix),
        cmocka_unit_test(from_header_is_case_insensitive),
        cmocka_unit_test(from_header_leaves_other_headers_alone),
        cmocka_unit_test(from_header_with_lengths_into_sized_event),
        cmocka_unit_test(from_header_rejects_bad_specversion),
        cmocka_unit_test(from_header_rejects_bad_time),
        cmocka_unit_test(from_header_rejects_bad_deadline_and_name),
        cmocka_unit_test(to_headers_stops_at_callback_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
