/* Messages from producers that know nothing of sluice.
 *
 * A plain nats.c client publishes to a channel's subject through
 * JetStream: a message with Nats-Msg-Id, one without any header, and one
 * in the CloudEvents NATS binding's binary mode (ce- headers) with an
 * extension and a percent-encoded value. The engine must deliver all
 * three as events: the plain ones with the id from Nats-Msg-Id (or
 * "<stream>-<sequence>"), type nats.message, source the subject, data
 * the payload; the CloudEvents one with its own attributes, decoded.
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
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);

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
    snprintf(want_id, sizeof want_id, "%s-2", stream); /* 2nd in the stream */
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
