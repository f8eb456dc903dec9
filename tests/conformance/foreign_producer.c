/* Publishing as a producer that knows nothing of sluice (see the header).
 * The brokers' names follow the engines' documented naming:
 * docs/engines/rabbitmq.md (exchange "sluice/<ns>/<channel>", routing key
 * <channel>) and docs/engines/nats.md (subject "sluice.<ns>.<channel>"). */
#include "foreign_producer.h"

#ifdef SLUICE_TEST_HAVE_AMQP
#include <amqp.h>
#include <amqp_tcp_socket.h>
#endif
#ifdef SLUICE_TEST_HAVE_NATS
#include <nats/nats.h>
#endif

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static sl_status failed(char *err, size_t err_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static sl_status failed(char *err, size_t err_size, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_size, fmt, ap);
    va_end(ap);
    return SL_UNAVAILABLE;
}

/* The URL without its query, and the value of its ns= parameter. */
static void split_url(const char *url, char *base, size_t base_size, char *ns,
                      size_t ns_size)
{
    const char *q = strchr(url, '?');
    size_t n = q ? (size_t)(q - url) : strlen(url);
    snprintf(base, base_size, "%.*s", (int)n, url);
    ns[0] = '\0';
    for (const char *p = q; p != NULL; p = strchr(p + 1, '&')) {
        if (strncmp(p + 1, "ns=", 3) == 0) {
            size_t len = strcspn(p + 4, "&");
            snprintf(ns, ns_size, "%.*s", (int)len, p + 4);
        }
    }
}

static sl_status publish_embedded(sl_engine *eng, const char *channel,
                                  const char *const *bodies, size_t n,
                                  char *err, size_t err_size)
{
    for (size_t i = 0; i < n; i++) {
        sl_event *ev = NULL;
        sl_diag diag = {0};
        sl_status st = sl_event_create_new("/foreign", "foreign.message", &ev);
        if (st == SL_OK) {
            st = sl_event_set_data(ev, bodies[i], strlen(bodies[i]));
        }
        if (st == SL_OK) {
            st = sl_engine_publish(eng, channel, ev, 0, 5000, &diag);
        }
        sl_event_unref(ev);
        if (st != SL_OK) {
            return failed(err, err_size, "publish %zu: %s %s", i,
                          sl_status_str(st), diag.msg);
        }
    }
    return SL_OK;
}

#ifdef SLUICE_TEST_HAVE_AMQP
static sl_status publish_amqp(const char *url, const char *channel,
                              const char *const *bodies, size_t n, char *err,
                              size_t err_size)
{
    char base[512], ns[128], exchange[384];
    split_url(url, base, sizeof base, ns, sizeof ns);
    snprintf(exchange, sizeof exchange, "sluice/%s%s%s", ns, ns[0] ? "/" : "",
             channel);
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(base, &ci) != AMQP_STATUS_OK) {
        return failed(err, err_size, "bad AMQP URL %s", base);
    }
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    sl_status st = SL_OK;
    if (sock == NULL || amqp_socket_open(sock, ci.host, ci.port) != 0) {
        st = failed(err, err_size, "cannot connect to %s:%d", ci.host, ci.port);
        goto destroy;
    }
    amqp_rpc_reply_t r =
        amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                   ci.user, ci.password);
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        amqp_channel_open(conn, 1);
        r = amqp_get_rpc_reply(conn);
    }
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        st = failed(err, err_size, "AMQP login or channel.open failed");
        goto destroy;
    }
    /* No message_id, type, timestamp or headers: pika's
     * basic_publish(exchange, key, body,
     *               BasicProperties(delivery_mode=2,
     *                               content_type="application/json")). */
    amqp_basic_properties_t props = {0};
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_CONTENT_TYPE_FLAG;
    props.delivery_mode = 2;
    props.content_type = amqp_cstring_bytes("application/json");
    for (size_t i = 0; i < n && st == SL_OK; i++) {
        if (amqp_basic_publish(conn, 1, amqp_cstring_bytes(exchange),
                               amqp_cstring_bytes(channel), 0, 0, &props,
                               amqp_cstring_bytes(bodies[i])) !=
            AMQP_STATUS_OK) {
            st = failed(err, err_size, "basic.publish %zu to %s failed", i,
                        exchange);
        }
    }
    /* The broker handles a channel's methods in order: once channel.close
     * is answered, every publish before it has been routed. */
    r = amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    if (st == SL_OK && r.reply_type != AMQP_RESPONSE_NORMAL) {
        st = failed(err, err_size,
                    "publishing to %s: the channel closed "
                    "with an error (no such exchange?)",
                    exchange);
    }
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
destroy:
    amqp_destroy_connection(conn);
    return st;
}
#endif

#ifdef SLUICE_TEST_HAVE_NATS
static sl_status publish_nats(const char *url, const char *channel,
                              const char *const *bodies, size_t n, char *err,
                              size_t err_size)
{
    char base[512], ns[128], subject[384];
    split_url(url, base, sizeof base, ns, sizeof ns);
    snprintf(subject, sizeof subject, "sluice.%s%s%s", ns, ns[0] ? "." : "",
             channel);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, base);
    if (s == NATS_OK) {
        s = natsConnection_JetStream(&js, nc, NULL);
    }
    for (size_t i = 0; i < n && s == NATS_OK; i++) {
        jsPubAck *pa = NULL;
        jsErrCode jerr = 0;
        s = js_Publish(&pa, js, subject, bodies[i], (int)strlen(bodies[i]),
                       NULL, &jerr);
        jsPubAck_Destroy(pa);
    }
    sl_status st = SL_OK;
    if (s != NATS_OK) {
        st = failed(err, err_size, "JetStream publish to %s at %s: %s", subject,
                    base, natsStatus_GetText(s));
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
    return st;
}
#endif

sl_status foreign_publish(sl_engine *eng, const char *url, const char *channel,
                          const char *const *bodies, size_t n, char *err,
                          size_t err_size)
{
    if (strncmp(url, "embedded:", 9) == 0) {
        return publish_embedded(eng, channel, bodies, n, err, err_size);
    }
#ifdef SLUICE_TEST_HAVE_AMQP
    if (strncmp(url, "amqp://", 7) == 0) {
        return publish_amqp(url, channel, bodies, n, err, err_size);
    }
#endif
#ifdef SLUICE_TEST_HAVE_NATS
    if (strncmp(url, "nats://", 7) == 0) {
        return publish_nats(url, channel, bodies, n, err, err_size);
    }
#endif
    return failed(err, err_size, "no foreign producer for %s", url);
}
