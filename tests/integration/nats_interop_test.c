/* Messages from producers that know nothing of sluice.
 *
 * A plain nats.c client publishes to a channel's subject through
 * JetStream: a message with Nats-Msg-Id, one without any header, one
 * in the CloudEvents NATS binding's binary mode (ce- headers) with an
 * extension and a percent-encoded value, and one with ce- headers but no
 * ce-id. The engine must deliver all of them as events: the plain ones
 * with the id from Nats-Msg-Id (or "<stream>-<created ns>-<sequence>"),
 * type nats.message, source the subject, data the payload; the
 * CloudEvents ones with their own attributes, decoded, and the place in
 * the stream as the id when they have none.
 *
 * Then the stream is deleted, as an operator would, and the channel
 * declared again: its sequence starts over at 1, and the id a message
 * without one gets must not be one the old stream already gave (an inbox
 * would skip it as a duplicate).
 *
 * Needs the nats-server that `make test` starts (scripts/with-brokers.sh);
 * the URL comes from SLUICE_TEST_ENGINE. Without the server the case
 * fails; it never skips.
 */
#include "sluice/engine.h"
#include "sluice/event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <nats/nats.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CH "foreign"
#define GROUP "readers"

static const char *base_url(void)
{
    const char *url = getenv("SLUICE_TEST_ENGINE");
    return url != NULL ? url : "nats://127.0.0.1:14222";
}

/* A raw JetStream publish of @p data with the headers @p hdr (name,
 * value pairs, NULL-terminated) to @p subject; waits for its PubAck. */
static void publish_raw(jsCtx *js, const char *subject, const char *data,
                        const char *const *hdr)
{
    natsMsg *m = NULL;
    assert_int_equal(natsMsg_Create(&m, subject, NULL, data, (int)strlen(data)),
                     NATS_OK);
    for (size_t i = 0; hdr != NULL && hdr[i] != NULL; i += 2) {
        assert_int_equal(natsMsgHeader_Set(m, hdr[i], hdr[i + 1]), NATS_OK);
    }
    jsPubAck *pa = NULL;
    assert_int_equal(js_PublishMsg(&pa, js, m, NULL, NULL), NATS_OK);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
}

static sl_delivery *fetch_one(sl_subscription *sub)
{
    sl_delivery *d = NULL;
    size_t n = 0;
    sl_status st = sl_subscription_fetch(sub, &d, 1, 5000, &n);
    if (st != SL_OK) {
        fail_msg("fetch: %s", sl_status_str(st));
    }
    assert_int_equal(n, 1);
    return d;
}

static void plain_and_foreign_cloudevents_are_delivered(void **state)
{
    (void)state;
    char ns[64], url[512], server[256], subject[128], stream[128];
    snprintf(ns, sizeof ns, "interop%d", (int)getpid());
    snprintf(url, sizeof url, "%s%sns=%s", base_url(),
             strchr(base_url(), '?') ? "&" : "?", ns);
    snprintf(server, sizeof server, "%s", base_url());
    char *q = strchr(server, '?');
    if (q != NULL) {
        *q = '\0';
    }
    /* The engine's naming (docs/engines/nats.md). */
    snprintf(subject, sizeof subject, "sluice.%s." CH, ns);
    snprintf(stream, sizeof stream, "%s_" CH, ns);

    sl_engine *eng = NULL;
    sl_diag diag = {0};
    if (sl_engine_open(url, NULL, &eng, &diag) != SL_OK) {
        fail_msg("open %s: %s", url, diag.msg);
    }
    sl_channel_opts co = {.name = CH};
    assert_int_equal(sl_engine_declare_channel(eng, &co, &diag), SL_OK);
    sl_group_opts go = {.channel = CH, .name = GROUP};
    assert_int_equal(sl_engine_declare_group(eng, &go, &diag), SL_OK);

    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, server), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    static const char *const with_id[] = {"Nats-Msg-Id", "order-17", NULL};
    static const char *const cloudevent[] = {"ce-specversion",
                                             "1.0",
                                             "ce-id",
                                             "ce-42",
                                             "ce-source",
                                             "/billing",
                                             "ce-type",
                                             "invoice.paid",
                                             "ce-subject",
                                             "inv%2F9",
                                             "ce-tenant",
                                             "acme",
                                             NULL};
    publish_raw(js, subject, "{\"order\":17}", with_id);
    publish_raw(js, subject, "no headers at all", NULL);
    publish_raw(js, subject, "{\"paid\":true}", cloudevent);
    static const char *const no_ce_id[] = {
        "ce-specversion", "1.0",          "ce-source", "/legacy",
        "ce-type",        "legacy.event", NULL};
    publish_raw(js, subject, "{\"legacy\":1}", no_ce_id);
    jsStreamInfo *si = NULL;
    assert_int_equal(js_GetStreamInfo(&si, js, stream, NULL, NULL), NATS_OK);
    uint64_t created_ns = (uint64_t)si->Created;
    jsStreamInfo_Destroy(si);

    sl_subscribe_opts so = {.prefetch = 1};
    sl_subscription *sub = NULL;
    assert_int_equal(sl_engine_subscribe(eng, CH, GROUP, &so, &sub, &diag),
                     SL_OK);
    size_t len = 0;

    sl_delivery *d = fetch_one(sub);
    const sl_event *ev = sl_delivery_event(d);
    assert_string_equal(sl_event_id(ev), "order-17");
    assert_string_equal(sl_event_type(ev), "nats.message");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), subject);
    const char *data = sl_event_data(ev, &len);
    assert_int_equal(len, strlen("{\"order\":17}"));
    assert_memory_equal(data, "{\"order\":17}", len);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);

    d = fetch_one(sub);
    ev = sl_delivery_event(d);
    char want_id[160];
    /* 2nd in the stream */
    snprintf(want_id, sizeof want_id, "%s-%" PRIu64 "-2", stream, created_ns);
    assert_string_equal(sl_event_id(ev), want_id);
    assert_string_equal(sl_event_type(ev), "nats.message");
    data = sl_event_data(ev, &len);
    assert_int_equal(len, strlen("no headers at all"));
    assert_memory_equal(data, "no headers at all", len);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);

    d = fetch_one(sub);
    ev = sl_delivery_event(d);
    assert_string_equal(sl_event_id(ev), "ce-42");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/billing");
    assert_string_equal(sl_event_type(ev), "invoice.paid");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "inv/9");
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "acme");
    data = sl_event_data(ev, &len);
    assert_memory_equal(data, "{\"paid\":true}", len);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);

    d = fetch_one(sub);
    ev = sl_delivery_event(d);
    snprintf(want_id, sizeof want_id, "%s-%" PRIu64 "-4", stream, created_ns);
    assert_string_equal(sl_event_id(ev), want_id);
    assert_string_equal(sl_event_type(ev), "legacy.event");
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);

    /* The stream deleted and the channel declared again: sequence 1
     * anew, and an id the old stream never gave. */
    assert_int_equal(js_DeleteStream(js, stream, NULL, NULL), NATS_OK);
    assert_int_equal(sl_engine_declare_channel(eng, &co, &diag), SL_OK);
    assert_int_equal(sl_engine_declare_group(eng, &go, &diag), SL_OK);
    publish_raw(js, subject, "no headers at all", NULL);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    assert_int_equal(sl_engine_subscribe(eng, CH, GROUP, &so, &sub, &diag),
                     SL_OK);
    d = fetch_one(sub);
    ev = sl_delivery_event(d);
    const char *again = sl_event_id(ev);
    assert_true(strncmp(again, stream, strlen(stream)) == 0);
    assert_true(strcmp(again + strlen(again) - 2, "-1") == 0);
    snprintf(want_id, sizeof want_id, "%s-%" PRIu64 "-1", stream, created_ns);
    assert_string_not_equal(again, want_id);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);

    sl_subscription_close(sub);
    sl_engine_close(eng);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(plain_and_foreign_cloudevents_are_delivered),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    nats_Close();
    return rc;
}
