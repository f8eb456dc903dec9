/* The RabbitMQ engine's codec, without a broker: AMQP messages (as
 * rabbitmq-c hands them over) to events, events to the messages the engine
 * publishes, and back. */
#include "engine/amqp/amqp_int.h"
#include "sluice/alloc.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#define MAX_ENTRIES 8

/* A message under construction: its properties, a header table and a
 * body, all pointing at string literals or the test's buffers. */
typedef struct msg {
    amqp_message_t m;
    amqp_table_entry_t entries[MAX_ENTRIES];
} msg;

static void msg_init(msg *t, const char *body)
{
    memset(t, 0, sizeof *t);
    t->m.body = amqp_cstring_bytes(body);
}

static amqp_table_entry_t *msg_header(msg *t, const char *name)
{
    assert_true(t->m.properties.headers.num_entries < MAX_ENTRIES);
    t->m.properties._flags |= AMQP_BASIC_HEADERS_FLAG;
    t->m.properties.headers.entries = t->entries;
    amqp_table_entry_t *en = &t->entries[t->m.properties.headers.num_entries];
    t->m.properties.headers.num_entries++;
    en->key = amqp_cstring_bytes(name);
    return en;
}

static void msg_str(msg *t, const char *name, const char *value)
{
    amqp_table_entry_t *en = msg_header(t, name);
    en->value.kind = AMQP_FIELD_KIND_UTF8;
    en->value.value.bytes = amqp_cstring_bytes(value);
}

static void msg_i64(msg *t, const char *name, int64_t value)
{
    amqp_table_entry_t *en = msg_header(t, name);
    en->value.kind = AMQP_FIELD_KIND_I64;
    en->value.value.i64 = value;
}

static sl_event *decode(const msg *t)
{
    sl_event *ev = NULL;
    assert_int_equal(sl__amqp_message_to_event(&t->m, "fallback/queue", &ev),
                     SL_OK);
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

/* A UUIDv7 in its text form: 8-4-4-4-12 hex digits, version 7. */
static void assert_uuid7(const char *id)
{
    assert_non_null(id);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[8], '-');
    assert_int_equal(id[13], '-');
    assert_int_equal(id[14], '7');
    assert_int_equal(id[18], '-');
    assert_int_equal(id[23], '-');
}

static void cloudevents_headers_make_the_event(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "{\"n\":1}");
    msg_str(&t, "cloudEvents:specversion", "1.0");
    msg_str(&t, "cloudEvents:id", "evt-1");
    msg_str(&t, "cloudEvents:source", "orders-api");
    msg_str(&t, "cloudEvents:type", "orders.created");
    msg_str(&t, "cloudEvents:subject", "order/42");
    msg_str(&t, "CLOUDEVENTS:tenant", "acme"); /* the prefix, any case */
    msg_str(&t, "x-other", "not an attribute");
    /* Plain properties lose to the headers: they are another client's
     * view of the same message. */
    t.m.properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
                             AMQP_BASIC_CONTENT_TYPE_FLAG;
    t.m.properties.message_id = amqp_cstring_bytes("plain-id");
    t.m.properties.type = amqp_cstring_bytes("plain.type");
    t.m.properties.content_type = amqp_cstring_bytes("application/json");

    sl_event *ev = decode(&t);
    assert_string_equal(sl_event_id(ev), "evt-1");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "orders-api");
    assert_string_equal(sl_event_type(ev), "orders.created");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "order/42");
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "acme");
    assert_null(sl_event_get_ext(ev, "x-other"));
    /* No cloudEvents:datacontenttype: content_type fills it in. */
    assert_string_equal(sl_event_get(ev, SL_ATTR_DATACONTENTTYPE),
                        "application/json");
    assert_data(ev, "{\"n\":1}");
    sl_event_unref(ev);
}

static void plain_properties_make_the_event(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "hello");
    amqp_basic_properties_t *pr = &t.m.properties;
    pr->_flags = AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
                 AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
                 AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    pr->message_id = amqp_cstring_bytes("m-7");
    pr->type = amqp_cstring_bytes("billing.charged");
    pr->app_id = amqp_cstring_bytes("billing");
    pr->timestamp = 1700000000;
    pr->correlation_id = amqp_cstring_bytes("corr-9");
    pr->content_type = amqp_cstring_bytes("text/plain");

    sl_event *ev = decode(&t);
    assert_string_equal(sl_event_id(ev), "m-7");
    assert_string_equal(sl_event_type(ev), "billing.charged");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "billing");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SPECVERSION), "1.0");
    assert_int_equal(sl_event_time_ms(ev), 1700000000ULL * 1000);
    assert_string_equal(sl_event_get(ev, SL_ATTR_CORRELATIONID), "corr-9");
    assert_string_equal(sl_event_get(ev, SL_ATTR_DATACONTENTTYPE),
                        "text/plain");
    assert_data(ev, "hello");
    sl_event_unref(ev);
}

static void bare_message_gets_defaults(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "");
    sl_event *ev = decode(&t);
    assert_string_equal(sl_event_type(ev), "amqp.message");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "fallback/queue");
    assert_int_equal(sl_event_time_ms(ev), 0);
    assert_null(sl_event_get(ev, SL_ATTR_DATACONTENTTYPE));
    assert_null(sl_event_get(ev, SL_ATTR_CORRELATIONID));
    assert_uuid7(sl_event_id(ev));
    assert_data(ev, "");
    sl_event_unref(ev);
}

/* Distinct messages without an id must never share one: an inbox would
 * skip all but the first. The same message decoded twice (a redelivery)
 * gets two ids too. */
static void message_without_id_gets_a_fresh_uuid7_each_time(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "same body");
    t.m.properties._flags = AMQP_BASIC_MESSAGE_ID_FLAG; /* flag, empty id */
    t.m.properties.message_id = amqp_cstring_bytes("");
    char seen[32][37];
    for (int i = 0; i < 32; i++) {
        sl_event *ev = decode(&t);
        assert_uuid7(sl_event_id(ev));
        snprintf(seen[i], sizeof seen[i], "%s", sl_event_id(ev));
        for (int j = 0; j < i; j++) {
            assert_string_not_equal(seen[i], seen[j]);
        }
        sl_event_unref(ev);
    }
}

static void cloudevents_headers_without_id_get_a_fresh_id(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "x");
    msg_str(&t, "cloudEvents:source", "s");
    msg_str(&t, "cloudEvents:type", "t");
    /* A message_id property does not stand in for the missing header. */
    t.m.properties._flags |= AMQP_BASIC_MESSAGE_ID_FLAG;
    t.m.properties.message_id = amqp_cstring_bytes("plain-id");
    sl_event *a = decode(&t);
    sl_event *b = decode(&t);
    assert_uuid7(sl_event_id(a));
    assert_uuid7(sl_event_id(b));
    assert_string_not_equal(sl_event_id(a), sl_event_id(b));
    assert_string_equal(sl_event_type(a), "t");
    sl_event_unref(a);
    sl_event_unref(b);
}

/* A producer that sends some cloudEvents: headers but not type or source
 * still gives a valid event: the plain message's defaults fill the gaps. */
static void
cloudevents_headers_missing_required_attributes_get_defaults(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "x");
    msg_str(&t, "cloudEvents:id", "e-1");
    sl_event *ev = decode(&t);
    assert_string_equal(sl_event_id(ev), "e-1");
    assert_string_equal(sl_event_type(ev), "amqp.message");
    assert_non_null(sl_event_get(ev, SL_ATTR_SOURCE));
    assert_string_equal(sl_event_get(ev, SL_ATTR_SPECVERSION), "1.0");
    assert_int_equal(sl_event_validate(ev, 0, NULL), SL_OK);
    sl_event_unref(ev);
}

static void integer_headers_become_decimal_attributes(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "x");
    msg_str(&t, "cloudEvents:id", "i");
    msg_i64(&t, "cloudEvents:deadline", 1800000000123LL);
    msg_i64(&t, "cloudEvents:priority", -3);
    amqp_table_entry_t *en = msg_header(&t, "cloudEvents:shard");
    en->value.kind = AMQP_FIELD_KIND_U8;
    en->value.value.u8 = 200;
    /* Neither a string nor an integer: skipped. */
    en = msg_header(&t, "cloudEvents:flag");
    en->value.kind = AMQP_FIELD_KIND_BOOLEAN;
    en->value.value.boolean = 1;

    sl_event *ev = decode(&t);
    assert_int_equal(sl_event_deadline_ms(ev), 1800000000123ULL);
    assert_string_equal(sl_event_get_ext(ev, "priority"), "-3");
    assert_string_equal(sl_event_get_ext(ev, "shard"), "200");
    assert_null(sl_event_get_ext(ev, "flag"));
    sl_event_unref(ev);
}

/* Bytes that are not UTF-8 pass through as they are: the codec neither
 * rejects the message nor rewrites them. */
static void non_utf8_bytes_pass_through(void **state)
{
    (void)state;
    static const char bad[] = "\xff\xfe\xc3(";
    static const unsigned char body[] = {0x00, 0xff, 0x80, 0x00, 0x7f};
    msg t;
    msg_init(&t, "");
    t.m.body.bytes = (void *)body;
    t.m.body.len = sizeof body;
    t.m.properties._flags = AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG;
    t.m.properties.message_id = amqp_cstring_bytes(bad);
    t.m.properties.type = amqp_cstring_bytes("t");

    sl_event *ev = decode(&t);
    assert_string_equal(sl_event_id(ev), bad);
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    assert_int_equal(len, sizeof body);
    assert_memory_equal(data, body, sizeof body);
    sl_event_unref(ev);

    msg_init(&t, "y");
    msg_str(&t, "cloudEvents:id", "ok");
    amqp_table_entry_t *en = msg_header(&t, "cloudEvents:subject");
    en->value.kind = AMQP_FIELD_KIND_BYTES;
    en->value.value.bytes = amqp_cstring_bytes(bad);
    ev = decode(&t);
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), bad);
    sl_event_unref(ev);
}

/* Names and values past the stack buffers (128 and 512 bytes) take the
 * heap; a name CloudEvents does not allow (over 20 characters) is
 * dropped, and the rest of the event stays. */
static void oversized_names_and_values(void **state)
{
    (void)state;
    char long_name[300];
    snprintf(long_name, sizeof long_name, "cloudEvents:%0*d",
             (int)sizeof long_name - 13, 0);
    char long_int_name[100];
    snprintf(long_int_name, sizeof long_int_name, "cloudEvents:%0*d",
             (int)sizeof long_int_name - 13, 0);
    char long_value[2000];
    memset(long_value, 'v', sizeof long_value - 1);
    long_value[sizeof long_value - 1] = '\0';

    msg t;
    msg_init(&t, "z");
    msg_str(&t, "cloudEvents:id", "big");
    msg_str(&t, long_name, "value");
    msg_i64(&t, long_int_name, 5);
    msg_str(&t, "cloudEvents:subject", long_value);
    msg_str(&t, "cloudEvents:", "no name");

    sl_event *ev = decode(&t);
    assert_string_equal(sl_event_id(ev), "big");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), long_value);
    assert_int_equal(sl_event_ext_count(ev), 0);
    assert_data(ev, "z");
    sl_event_unref(ev);
}

static void counts_come_from_the_engine_headers(void **state)
{
    (void)state;
    msg t;
    msg_init(&t, "");
    uint64_t uid = 1;
    uint32_t count = 1, base = 1;
    sl__amqp_read_counts(&t.m, &uid, &count, &base);
    assert_int_equal(uid, 0);
    assert_int_equal(count, 0);
    assert_int_equal(base, 0);

    msg_i64(&t, H_UID, -2); /* a uid is 64 bits, sent signed */
    msg_i64(&t, H_DELIVERY_COUNT, 4);
    msg_i64(&t, H_ATTEMPTS, -1); /* nonsense: no attempts */
    sl__amqp_read_counts(&t.m, &uid, &count, &base);
    assert_int_equal(uid, UINT64_MAX - 1);
    assert_int_equal(count, 4);
    assert_int_equal(base, 0);
}

/* What the engine publishes reads back as the same event, whether it is
 * read by sluice (the headers) or the engine's own counts. */
static void published_message_reads_back_as_the_same_event(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_ID, "round-1"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SOURCE, "src"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_TYPE, "a.b"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_SUBJECT, "s/1"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_CORRELATIONID, "c-1"), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "text/plain"),
                     SL_OK);
    assert_int_equal(sl_event_set_time_ms(ev, 1700000000123ULL), SL_OK);
    assert_int_equal(sl_event_set_deadline_ms(ev, 1700000009000ULL), SL_OK);
    assert_int_equal(sl_event_set_ext(ev, "tenant", "acme"), SL_OK);
    assert_int_equal(sl_event_set_data(ev, "payload", 7), SL_OK);

    apub *p = NULL;
    assert_int_equal(sl__amqp_pub_build(ev, "sluice/ch", "ch", 42, 3, NULL, &p),
                     SL_OK);
    assert_string_equal(p->exchange, "sluice/ch");
    assert_string_equal(p->rkey, "ch");
    amqp_table_entry_t entries[PUB_MAX_HEADERS];
    amqp_message_t m;
    memset(&m, 0, sizeof m);
    sl__amqp_pub_properties(p, &m.properties, entries);
    m.body.bytes = p->body;
    m.body.len = p->body_len;
    /* What a plain AMQP consumer sees. */
    amqp_basic_properties_t *pr = &m.properties;
    assert_int_equal(pr->delivery_mode, 2);
    assert_true(pr->_flags & AMQP_BASIC_MESSAGE_ID_FLAG);
    assert_int_equal(pr->message_id.len, 7);
    assert_memory_equal(pr->message_id.bytes, "round-1", 7);
    assert_int_equal(pr->timestamp, 1700000000);

    sl_event *back = NULL;
    assert_int_equal(sl__amqp_message_to_event(&m, "unused", &back), SL_OK);
    for (sl_attr a = 0; a < SL_ATTR_COUNT_; a++) {
        const char *want = sl_event_get(ev, a);
        const char *got = sl_event_get(back, a);
        if (want == NULL) {
            assert_null(got);
        } else {
            assert_non_null(got);
            assert_string_equal(got, want);
        }
    }
    assert_int_equal(sl_event_time_ms(back), sl_event_time_ms(ev));
    assert_int_equal(sl_event_deadline_ms(back), sl_event_deadline_ms(ev));
    assert_string_equal(sl_event_get_ext(back, "tenant"), "acme");
    assert_data(back, "payload");
    uint64_t uid = 0;
    uint32_t count = 9, base = 0;
    sl__amqp_read_counts(&m, &uid, &count, &base);
    assert_int_equal(uid, 42);
    assert_int_equal(count, 0);
    assert_int_equal(base, 3);

    sl_event_unref(back);
    sl__amqp_pub_free(p);
    sl_event_unref(ev);
}

/* An event with every extension it may carry publishes all of them, and
 * the engine's own headers after them. */
static void every_extension_survives_the_trip(void **state)
{
    (void)state;
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("s", "t", &ev), SL_OK);
    for (int i = 0; i < SL_EVENT_MAX_EXTENSIONS; i++) {
        char name[16];
        snprintf(name, sizeof name, "ext%d", i);
        assert_int_equal(sl_event_set_ext(ev, name, name), SL_OK);
    }
    apub *p = NULL;
    assert_int_equal(sl__amqp_pub_build(ev, "x", "r", 7, 1, "dedup", &p),
                     SL_OK);
    assert_string_equal(p->dedup_id, "dedup");
    amqp_table_entry_t entries[PUB_MAX_HEADERS];
    amqp_message_t m;
    memset(&m, 0, sizeof m);
    sl__amqp_pub_properties(p, &m.properties, entries);
    sl_event *back = NULL;
    assert_int_equal(sl__amqp_message_to_event(&m, "unused", &back), SL_OK);
    assert_int_equal(sl_event_ext_count(back), SL_EVENT_MAX_EXTENSIONS);
    for (int i = 0; i < SL_EVENT_MAX_EXTENSIONS; i++) {
        char name[16];
        snprintf(name, sizeof name, "ext%d", i);
        assert_non_null(sl_event_get_ext(back, name));
        assert_string_equal(sl_event_get_ext(back, name), name);
    }
    uint64_t uid = 0;
    uint32_t count = 0, base = 0;
    sl__amqp_read_counts(&m, &uid, &count, &base);
    assert_int_equal(uid, 7);
    assert_int_equal(base, 1);
    sl_event_unref(back);
    sl__amqp_pub_free(p);
    sl_event_unref(ev);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cloudevents_headers_make_the_event),
        cmocka_unit_test(plain_properties_make_the_event),
        cmocka_unit_test(bare_message_gets_defaults),
        cmocka_unit_test(message_without_id_gets_a_fresh_uuid7_each_time),
        cmocka_unit_test(cloudevents_headers_without_id_get_a_fresh_id),
        cmocka_unit_test(
            cloudevents_headers_missing_required_attributes_get_defaults),
        cmocka_unit_test(integer_headers_become_decimal_attributes),
        cmocka_unit_test(non_utf8_bytes_pass_through),
        cmocka_unit_test(oversized_names_and_values),
        cmocka_unit_test(counts_come_from_the_engine_headers),
        cmocka_unit_test(published_message_reads_back_as_the_same_event),
        cmocka_unit_test(every_extension_survives_the_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
