/* A small client for the NATS integration tests (nats_*_test.sh).
 *
 *   nats_tool publish URL CHANNEL PREFIX N COPIES [nodedup]
 *       publish events PREFIX-1 .. PREFIX-N (N = 0: the one id PREFIX),
 *       each COPIES times in a row: the first copy normally (or with
 *       SL_PUBLISH_NO_DEDUP too, given "nodedup"), the others with
 *       SL_PUBLISH_NO_DEDUP, so that the stream holds COPIES messages
 *       with the same event id (as after the duplicate window). Waits for
 *       every confirm; exits 1 on a failed publish.
 *   nats_tool roundtrip URL
 *       open the engine, declare channel "rt.events" and group "rt",
 *       publish one event, fetch it and ack it: the whole path through
 *       whatever TLS and credentials the URL names. Prints "roundtrip ok";
 *       on failure the engine's message on stderr, exit 1.
 *   nats_tool stream-msgs URL CHANNEL
 *       print the number of messages in the channel's stream (the
 *       engine's naming: docs/engines/nats.md; the URL's ns and domain),
 *       so that a test can check that an event left it.
 */
#include "sluice/engine.h"

#include <nats/nats.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int publish(const char *url, const char *channel, const char *prefix,
                   long n, long copies, bool nodedup)
{
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    if (sl_engine_open(url, NULL, &eng, &diag) != SL_OK) {
        fprintf(stderr, "nats_tool: open: %s\n", diag.msg);
        return 1;
    }
    int rc = 0;
    for (long i = n == 0 ? 0 : 1; i <= n && rc == 0; i++) {
        char id[256];
        if (n == 0) {
            snprintf(id, sizeof id, "%s", prefix);
        } else {
            snprintf(id, sizeof id, "%s-%ld", prefix, i);
        }
        for (long c = 0; c < copies && rc == 0; c++) {
            sl_event *ev = NULL;
            if (sl_event_create_new("/nats-tool", "test.event", &ev) != SL_OK ||
                sl_event_set(ev, SL_ATTR_ID, id) != SL_OK ||
                sl_event_set_data(ev, "{\"k\":1}", 7) != SL_OK) {
                rc = 1;
            } else if (sl_engine_publish(
                           eng, channel, ev,
                           c == 0 && !nodedup ? 0 : SL_PUBLISH_NO_DEDUP, 10000,
                           &diag) != SL_OK) {
                fprintf(stderr, "nats_tool: publish %s: %s\n", id, diag.msg);
                rc = 1;
            }
            sl_event_unref(ev);
        }
    }
    sl_engine_close(eng);
    return rc;
}

static int roundtrip(const char *url)
{
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    if (sl_engine_open(url, NULL, &eng, &diag) != SL_OK) {
        fprintf(stderr, "nats_tool: %s\n", diag.msg);
        return 1;
    }
    int rc = 1;
    sl_channel_opts co = {.name = "rt.events"};
    sl_group_opts go = {.channel = "rt.events", .name = "rt"};
    sl_subscribe_opts so = {.prefetch = 1};
    sl_subscription *sub = NULL;
    sl_event *ev = NULL;
    sl_delivery *d = NULL;
    size_t n = 0;
    if (sl_engine_declare_channel(eng, &co, &diag) != SL_OK ||
        sl_engine_declare_group(eng, &go, &diag) != SL_OK ||
        sl_engine_subscribe(eng, "rt.events", "rt", &so, &sub, &diag) !=
            SL_OK) {
        fprintf(stderr, "nats_tool: %s\n", diag.msg);
        goto done;
    }
    if (sl_event_create_new("/nats-tool", "test.event", &ev) != SL_OK ||
        sl_engine_publish(eng, "rt.events", ev, 0, 10000, &diag) != SL_OK) {
        fprintf(stderr, "nats_tool: publish: %s\n", diag.msg);
        goto done;
    }
    if (sl_subscription_fetch(sub, &d, 1, 5000, &n) != SL_OK ||
        strcmp(sl_event_id(sl_delivery_event(d)), sl_event_id(ev)) != 0 ||
        sl_delivery_ack(&d) != SL_OK) {
        fprintf(stderr, "nats_tool: the event did not come back\n");
        goto done;
    }
    printf("roundtrip ok\n");
    rc = 0;
done:
    sl_event_unref(ev);
    sl_subscription_close(sub);
    sl_engine_close(eng);
    return rc;
}

/* The stream of @p channel: "[NS_]<channel>" with '.' -> '_', '-' ->
 * "--", '_' -> "-u" (sl__nats_escape_name, src/engine/nats/topology.c). */
static void stream_name(const char *ns, const char *channel, char *out,
                        size_t size)
{
    size_t o = 0;
    for (int part = 0; part < 2; part++) {
        const char *s = part == 0 ? ns : channel;
        if (s == NULL) {
            continue;
        }
        for (const char *p = s; *p && o + 3 < size; p++) {
            if (*p == '-') {
                out[o++] = '-';
                out[o++] = '-';
            } else if (*p == '_') {
                out[o++] = '-';
                out[o++] = 'u';
            } else {
                out[o++] = *p == '.' ? '_' : *p;
            }
        }
        if (part == 0 && o + 1 < size) {
            out[o++] = '_';
        }
    }
    out[o] = '\0';
}

static int stream_msgs(const char *url, const char *channel)
{
    char server[512], ns[128] = "", domain[128] = "";
    snprintf(server, sizeof server, "%s", url);
    char *q = strchr(server, '?');
    if (q != NULL) {
        *q++ = '\0';
        for (char *kv = strtok(q, "&"); kv; kv = strtok(NULL, "&")) {
            if (strncmp(kv, "ns=", 3) == 0) {
                snprintf(ns, sizeof ns, "%s", kv + 3);
            } else if (strncmp(kv, "domain=", 7) == 0) {
                snprintf(domain, sizeof domain, "%s", kv + 7);
            }
        }
    }
    char stream[512];
    stream_name(ns[0] ? ns : NULL, channel, stream, sizeof stream);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = natsConnection_ConnectTo(&nc, server);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Domain = domain[0] ? domain : NULL;
    if (s == NATS_OK) {
        s = natsConnection_JetStream(&js, nc, &jo);
    }
    if (s == NATS_OK) {
        s = js_GetStreamInfo(&si, js, stream, NULL, &jerr);
    }
    if (s != NATS_OK) {
        fprintf(stderr, "nats_tool: stream %s: %s\n", stream,
                natsStatus_GetText(s));
    } else {
        printf("%llu\n", (unsigned long long)si->State.Msgs);
    }
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    nats_Close();
    return s == NATS_OK ? 0 : 1;
}

int main(int argc, char **argv)
{
    if ((argc == 7 || argc == 8) && strcmp(argv[1], "publish") == 0) {
        return publish(argv[2], argv[3], argv[4], atol(argv[5]), atol(argv[6]),
                       argc == 8 && strcmp(argv[7], "nodedup") == 0);
    }
    if (argc == 3 && strcmp(argv[1], "roundtrip") == 0) {
        return roundtrip(argv[2]);
    }
    if (argc == 4 && strcmp(argv[1], "stream-msgs") == 0) {
        return stream_msgs(argv[2], argv[3]);
    }
    fprintf(stderr, "usage: nats_tool publish URL CHANNEL PREFIX N COPIES "
                    "[nodedup]\n"
                    "       nats_tool roundtrip URL\n"
                    "       nats_tool stream-msgs URL CHANNEL\n");
    return 2;
}
