/* The NATS engine's codec (src/engine/nats/codec.c) without a server:
 * messages are built in memory with nats.c (natsMsg_Create and
 * natsMsgHeader_Set, or from a header block as nats.c receives it off the
 * wire) and read as events, and events written as messages and read back.
 */
#include "engine/nats/nats_int.h"

#include "../../support/nats_wire.h"
#include "sluice/alloc.h"
#include "sluice/event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define SUBJECT "sluice.orders"
#define STREAM "orders"
#define CREATED_NS UINT64_C(1700000000123456789)

/* A message on SUBJECT with @p payload and the headers @p kv (name, value,
 * ..., NULL). */
static natsMsg *msg_with(const char *payload, const char *const *kv)
{
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, SUBJECT, NULL, payload,
                                    payload ? (int)strlen(payload) : 0),
                     NATS_OK);
    for (size_t i = 0; kv != NULL && kv[i] != NULL; i += 2) {
        assert_int_equal(natsMsgHeader_Set(m, kv[i], kv[i + 1]), NATS_OK);
    }
    return m;
}

/* The event of @p m (message 7 of STREAM), which must be readable. */
static sl_event *read_ok(natsMsg *m)
{
    sl_event *ev = NULL;
    sl_status st = sl__nats_msg_to_event(m, STREAM, CREATED_NS, 7, &ev);
    if (st != SL_OK) {
        print_error("msg_to_event: %s\n", sl_status_name(st));
    }
    assert_int_equal(st, SL_OK);
    assert_non_null(ev);
    return ev;
}

static void assert_data(const sl_event *ev, const char *want)
{
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    assert_int_equal(len, strlen(want));
    assert_memory_equal(data, want, len);
}

static void plain_message_takes_its_id_from_nats_msg_id(void **state)
{
    (void)state;
    const char *kv[] = {"Nats-Msg-Id", "order-42", NULL};
    natsMsg *m = msg_with("{\"n\":42}", kv);
    sl_event *ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "order-42");
    assert_string_equal(sl_event_type(ev), "nats.message");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), SUBJECT);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SPECVERSION), "1.0");
    assert_data(ev, "{\"n\":42}");
    /* Such an event is one a handler can be given and republish. */
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);
    sl_event_unref(ev);
    natsMsg_Destroy(m);
}

static void plain_message_without_headers_is_named_by_its_place(void **state)
{
    (void)state;
    natsMsg *m = msg_with("hello", NULL);
    sl_event *ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "orders-1700000000123456789-7");
    assert_string_equal(sl_event_type(ev), "nats.message");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), SUBJECT);
    assert_data(ev, "hello");
    sl_event_unref(ev);
    natsMsg_Destroy(m);

    /* An empty Nats-Msg-Id names nothing either, and other headers are
     * not attributes. */
    const char *kv[] = {"Nats-Msg-Id", "", "X-Trace", "abc", NULL};
    m = msg_with("", kv);
    ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "orders-1700000000123456789-7");
    assert_int_equal(sl_event_ext_count(ev), 0);
    assert_data(ev, "");
    sl_event_unref(ev);
    natsMsg_Destroy(m);
}

static void cloudevent_headers_become_attributes(void **state)
{
    (void)state;
    const char *kv[] = {
        "ce-id",
        "e-1",
        "Ce-Source",
        "/shop",
        "CE-TYPE",
        "order.created",
        "ce-specversion",
        "1.0",
        "ce-time",
        "2024-01-02T03:04:05.678Z",
        "ce-deadline",
        "1795780830000",
        "ce-traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "ce-partitionkey",
        "customer-9",
        "ce-tenant",
        "acme",
        "ce-subject",
        "line%0D%0Abreak 100%25",
        "Nats-Msg-Id",
        "not-the-id",
        NULL,
    };
    natsMsg *m = msg_with("payload", kv);
    sl_event *ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "e-1");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/shop");
    assert_string_equal(sl_event_type(ev), "order.created");
    assert_int_equal(sl_event_time_ms(ev), UINT64_C(1704164645678));
    assert_int_equal(sl_event_deadline_ms(ev), UINT64_C(1795780830000));
    assert_string_equal(
        sl_event_get(ev, SL_ATTR_TRACEPARENT),
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_string_equal(sl_event_get(ev, SL_ATTR_PARTITIONKEY), "customer-9");
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "acme");
    /* Percent-encoding is undone: CR, LF and '%' itself. */
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT),
                        "line\r\nbreak 100%");
    assert_data(ev, "payload");
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);
    sl_event_unref(ev);
    natsMsg_Destroy(m);
}

static void malformed_percent_escape_is_kept_as_it_is(void **state)
{
    (void)state;
    const char *kv[] = {"ce-id", "e-2", "ce-subject", "50%zz off %4", NULL};
    natsMsg *m = msg_with("", kv);
    sl_event *ev = read_ok(m);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "50%zz off %4");
    sl_event_unref(ev);
    natsMsg_Destroy(m);
}

static void cloudevent_without_ce_id_is_named_by_its_place(void **state)
{
    (void)state;
    const char *kv[] = {"ce-source",   "/shop",          "ce-type",
                        "t",           "ce-specversion", "1.0",
                        "Nats-Msg-Id", "dedup-1",        NULL};
    natsMsg *m = msg_with("x", kv);
    sl_event *ev = read_ok(m);
    /* Binary mode: Nats-Msg-Id is the producer's deduplication key, not
     * the event's id. */
    assert_string_equal(sl_event_id(ev), "orders-1700000000123456789-7");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/shop");
    assert_string_equal(sl_event_type(ev), "t");
    sl_event_unref(ev);
    natsMsg_Destroy(m);
}

/* A message with @p n headers "ce-<prefix><i>" (and the required ones
 * first when @p core). */
static natsMsg *msg_with_many(size_t n, bool core)
{
    natsMsg *m = msg_with("", NULL);
    if (core) {
        assert_int_equal(natsMsgHeader_Set(m, "ce-id", "many"), NATS_OK);
        assert_int_equal(natsMsgHeader_Set(m, "ce-source", "/s"), NATS_OK);
        assert_int_equal(natsMsgHeader_Set(m, "ce-type", "t"), NATS_OK);
        assert_int_equal(natsMsgHeader_Set(m, "ce-specversion", "1.0"),
                         NATS_OK);
    }
    for (size_t i = 0; i < n; i++) {
        char name[32];
        snprintf(name, sizeof name, "ce-x%zu", i);
        assert_int_equal(natsMsgHeader_Set(m, name, "v"), NATS_OK);
    }
    return m;
}

static void too_many_headers_make_the_message_unreadable(void **state)
{
    (void)state;
    /* As many extensions as an event holds: readable. */
    natsMsg *m = msg_with_many(SL_EVENT_MAX_EXTENSIONS, true);
    sl_event *ev = read_ok(m);
    assert_int_equal(sl_event_ext_count(ev), SL_EVENT_MAX_EXTENSIONS);
    sl_event_unref(ev);
    natsMsg_Destroy(m);

    /* One more: SL_FULL, from the event. */
    m = msg_with_many(SL_EVENT_MAX_EXTENSIONS + 1, true);
    ev = NULL;
    assert_int_equal(sl__nats_msg_to_event(m, STREAM, CREATED_NS, 7, &ev),
                     SL_FULL);
    assert_null(ev);
    natsMsg_Destroy(m);

    /* More ce- headers than an event has places for at all: SL_FULL
     * before an event is even made for them. */
    m = msg_with_many(200, false);
    assert_int_equal(sl__nats_msg_to_event(m, STREAM, CREATED_NS, 7, &ev),
                     SL_FULL);
    assert_null(ev);
    natsMsg_Destroy(m);
}

static void non_ascii_values_pass_and_names_are_refused(void **state)
{
    (void)state;
    /* UTF-8 in values needs no encoding and arrives as it was sent. */
    const char *kv[] = {"ce-id", "caf\xc3\xa9-1", "ce-subject",
                        "\xe2\x98\x95 \xc3\xa9t\xc3\xa9", NULL};
    natsMsg *m = msg_with("\xff\xfe", kv);
    sl_event *ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "caf\xc3\xa9-1");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT),
                        "\xe2\x98\x95 \xc3\xa9t\xc3\xa9");
    assert_data(ev, "\xff\xfe");
    sl_event_unref(ev);
    natsMsg_Destroy(m);

    /* An extension name outside [a-z0-9] is no CloudEvents attribute: the
     * message is unreadable (the engine terminates it, logged) rather
     * than read with the attribute renamed or dropped. */
    const char *bad[] = {"ce-id", "e-3", "ce-t\xc3\xa9nant", "acme", NULL};
    m = msg_with("", bad);
    ev = NULL;
    assert_int_equal(sl__nats_msg_to_event(m, STREAM, CREATED_NS, 7, &ev),
                     SL_INVALID);
    assert_null(ev);
    natsMsg_Destroy(m);
}

/* The header @p name of @p m, or NULL. */
static const char *header(natsMsg *m, const char *name)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, name, &v) == NATS_OK ? v : NULL;
}

static void event_to_msg_to_event_round_trips(void **state)
{
    (void)state;
    static const char data[] = {'a', '\0', 'b', '\r', '\n', (char)0xff};
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/shop", "order.created", &ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT,
                                  "a\r\nb%c\x7f \xc3\xa9 12345678901234567"),
                     SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_CORRELATIONID, "corr-1"), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme\tinc"), SL_OK);
    assert_int_equal(sl_event_set_time_ms(ev, UINT64_C(1795780800123)), SL_OK);
    assert_int_equal(sl_event_set_deadline_ms(ev, UINT64_C(1795780830000)),
                     SL_OK);
    assert_int_equal(sl_event_set_data(ev, data, sizeof data), SL_OK);

    natsMsg *m = NULL;
    assert_int_equal(sl__nats_event_to_msg(ev, SUBJECT, true, &m), SL_OK);
    assert_string_equal(natsMsg_GetSubject(m), SUBJECT);
    /* The id twice: as the attribute, and for the server's duplicate
     * window. Values that a header line cannot hold are encoded. */
    assert_string_equal(header(m, "ce-id"), sl_event_id(ev));
    assert_string_equal(header(m, "Nats-Msg-Id"), sl_event_id(ev));
    assert_string_equal(header(m, "ce-subject"),
                        "a%0D%0Ab%25c%7F \xc3\xa9 12345678901234567");
    assert_string_equal(header(m, "ce-tenant"), "acme%09inc");

    sl_event *back = read_ok(m);
    char *want = NULL, *got = NULL;
    assert_int_equal(sl_event_to_json(ev, &want), SL_OK);
    assert_int_equal(sl_event_to_json(back, &got), SL_OK);
    assert_string_equal(got, want);
    size_t len = 0;
    const void *bytes = sl_event_data(back, &len);
    assert_int_equal(len, sizeof data);
    assert_memory_equal(bytes, data, sizeof data);
    sl_free(want);
    sl_free(got);
    sl_event_unref(back);
    natsMsg_Destroy(m);

    /* Without deduplication (dead letters, SL_PUBLISH_NO_DEDUP): no
     * Nats-Msg-Id. */
    assert_int_equal(sl__nats_event_to_msg(ev, SUBJECT, false, &m), SL_OK);
    assert_null(header(m, "Nats-Msg-Id"));
    assert_string_equal(header(m, "ce-id"), sl_event_id(ev));
    natsMsg_Destroy(m);
    sl_event_unref(ev);
}

static void headers_off_the_wire_read_like_set_ones(void **state)
{
    (void)state;
    /* As nats.c receives an HMSG: the header block is parsed by nats.c
     * when first read (names keep their case, values are trimmed). */
    static const char hdr[] = "NATS/1.0\r\n"
                              "ce-id: w-1\r\n"
                              "Ce-Source:/wire\r\n"
                              "ce-type:   t   \r\n"
                              "ce-specversion: 1.0\r\n"
                              "ce-subject: a%0Ab\r\n"
                              "Nats-Msg-Id: other\r\n"
                              "\r\n";
    natsMsg *m = NULL;
    assert_int_equal(nats_wire_msg(&m, SUBJECT, hdr, strlen(hdr), "body", 4),
                     NATS_OK);
    sl_event *ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "w-1");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/wire");
    assert_string_equal(sl_event_type(ev), "t");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "a\nb");
    assert_data(ev, "body");
    sl_event_unref(ev);
    natsMsg_Destroy(m);

    /* A header block nats.c cannot parse reads as a plain message. */
    static const char broken[] = "NATS/1.0\r\nce-id w-2\r\n\r\n";
    assert_int_equal(nats_wire_msg(&m, SUBJECT, broken, strlen(broken), "b", 1),
                     NATS_OK);
    ev = read_ok(m);
    assert_string_equal(sl_event_id(ev), "orders-1700000000123456789-7");
    assert_string_equal(sl_event_type(ev), "nats.message");
    sl_event_unref(ev);
    natsMsg_Destroy(m);
}

/* nats.c's library state: messages are garbage-collected by its threads. */
static int nats_up(void **state)
{
    (void)state;
    return nats_Open(-1) == NATS_OK ? 0 : -1;
}

static int nats_down(void **state)
{
    (void)state;
    nats_Close();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_message_takes_its_id_from_nats_msg_id),
        cmocka_unit_test(plain_message_without_headers_is_named_by_its_place),
        cmocka_unit_test(cloudevent_headers_become_attributes),
        cmocka_unit_test(malformed_percent_escape_is_kept_as_it_is),
        cmocka_unit_test(cloudevent_without_ce_id_is_named_by_its_place),
        cmocka_unit_test(too_many_headers_make_the_message_unreadable),
        cmocka_unit_test(non_ascii_values_pass_and_names_are_refused),
        cmocka_unit_test(event_to_msg_to_event_round_trips),
        cmocka_unit_test(headers_off_the_wire_read_like_set_ones),
    };
    return cmocka_run_group_tests(tests, nats_up, nats_down);
}
