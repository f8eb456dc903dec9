/* The HTTP gateway over real sockets (libcurl against a gateway on a free
 * loopback port), publishing to the embedded engine in memory. Each case
 * checks the answer a client sees and what reached the channel — and, for
 * every 4xx, that nothing did. */
#include "sluice/gateway.h"

#include "http/gateway_int.h"
#include "sluice/alloc.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ctype.h>
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CH "orders.created"
#define GROUP "g"
#define T0 1700000000000ull

typedef struct fixture {
    sl_engine *eng;
    sl_producer *producer;
    sl_gateway *gw;
    sl_manual_clock clock;
    bool draining;
    char base[64];
    CURL *curl;
} fixture;

typedef struct reply {
    long status;
    char body[16384];
    size_t len;
    char headers[4096];
    size_t hlen;
    json_t *json; /* the body parsed, or NULL */
} reply;

static const sl_gateway_field order_fields[] = {
    {.name = "qty",
     .type = SL_JSON_INTEGER,
     .required = true,
     .has_min = true,
     .min = 1},
    {.name = "sku", .type = SL_JSON_STRING, .required = true, .max_length = 16},
};

static const sl_gateway_route routes[] = {
    {.path = "/orders",
     .channel = CH,
     .type = "orders.created",
     .fields = order_fields,
     .nfields = 2},
    {.method = "PUT", .path = "/raw", .channel = CH, .type = "raw.put"},
};

static bool is_draining(void *ctx)
{
    return ((fixture *)ctx)->draining;
}

/* Start an engine (@p url, @p eo), a producer and a gateway; @p tweak
 * adjusts the gateway's options and @p max_length the channel's. */
static fixture *start_on(const char *url, const sl_engine_opts *eo,
                         uint64_t max_length, const sl_producer_opts *popts,
                         void (*tweak)(sl_gateway_opts *o))
{
    fixture *fx = sl_calloc(1, sizeof *fx);
    assert_non_null(fx);
    /* The gateway's clock is a wall clock: the deadlines it gives events
     * are read by the engine on the real one. */
    sl_manual_clock_init(&fx->clock, sl_time_wall_ms());
    assert_int_equal(sl_engine_open(url, eo, &fx->eng, NULL), SL_OK);
    sl_channel_opts co = {.name = CH, .max_length = max_length};
    assert_int_equal(sl_engine_declare_channel(fx->eng, &co, NULL), SL_OK);
    sl_group_opts go = {.channel = CH, .name = GROUP};
    assert_int_equal(sl_engine_declare_group(fx->eng, &go, NULL), SL_OK);
    assert_int_equal(sl_producer_create(fx->eng, popts, &fx->producer), SL_OK);
    sl_gateway_opts o = {
        .listen = "127.0.0.1:0",
        .routes = routes,
        .nroutes = 2,
        .producer = fx->producer,
        .eng = fx->eng,
        .is_draining = is_draining,
        .draining_ctx = fx,
        .clock = &fx->clock.clock,
    };
    if (tweak != NULL) {
        tweak(&o);
    }
    sl_diag diag = {0};
    sl_status st = sl_gateway_create(&o, &fx->gw, &diag);
    if (st != SL_OK) {
        fail_msg("gateway_create: %s", diag.msg);
    }
    snprintf(fx->base, sizeof fx->base, "http://127.0.0.1:%u",
             (unsigned)sl_gateway_port(fx->gw));
    fx->curl = curl_easy_init();
    assert_non_null(fx->curl);
    return fx;
}

/* On the embedded engine in memory, where confirms fire during the
 * publish call. */
static fixture *start(uint64_t max_length, const sl_producer_opts *popts,
                      void (*tweak)(sl_gateway_opts *o))
{
    return start_on("embedded::memory:", NULL, max_length, popts, tweak);
}

static void stop(fixture *fx)
{
    curl_easy_cleanup(fx->curl);
    sl_gateway_destroy(fx->gw);
    sl_producer_destroy(fx->producer);
    sl_engine_close(fx->eng);
    sl_free(fx);
}

static size_t on_body(char *data, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    size_t len = size * n;
    size_t room = sizeof r->body - 1 - r->len;
    memcpy(r->body + r->len, data, len < room ? len : room);
    r->len += len < room ? len : room;
    r->body[r->len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *ctx)
{
    reply *r = ctx;
    size_t len = size * n;
    size_t room = sizeof r->headers - 1 - r->hlen;
    memcpy(r->headers + r->hlen, data, len < room ? len : room);
    r->hlen += len < room ? len : room;
    r->headers[r->hlen] = '\0';
    return len;
}

/* One request; @p headers is NULL-terminated. The reply's json is freed by
 * the next request on the same reply or by done(). */
static void http(fixture *fx, const char *method, const char *path,
                 const char *const *headers, const char *body, size_t len,
                 reply *r)
{
    if (r->json != NULL) {
        json_decref(r->json);
    }
    memset(r, 0, sizeof *r);
    CURL *c = fx->curl;
    curl_easy_reset(c);
    char url[512];
    snprintf(url, sizeof url, "%s%s", fx->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    struct curl_slist *hs = curl_slist_append(NULL, "Expect:");
    for (size_t i = 0; headers && headers[i]; i++) {
        hs = curl_slist_append(hs, headers[i]);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hs);
    if (body != NULL) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 20L);
    CURLcode rc = curl_easy_perform(c);
    curl_slist_free_all(hs);
    if (rc != CURLE_OK) {
        fail_msg("%s %s: %s", method, path, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    r->json = json_loadb(r->body, r->len, JSON_DECODE_ANY, NULL);
}

static void post(fixture *fx, const char *path, const char *ctype,
                 const char *body, reply *r)
{
    char h[128];
    snprintf(h, sizeof h, "Content-Type: %s", ctype);
    const char *hs[] = {h, NULL};
    http(fx, "POST", path, hs, body, strlen(body), r);
}

static void done(reply *r)
{
    json_decref(r->json);
    r->json = NULL;
}

/* A response header's value (case-insensitive name), or NULL. */
static const char *header(const reply *r, const char *name, char *buf,
                          size_t size)
{
    size_t n = strlen(name);
    for (const char *line = r->headers; *line;) {
        const char *end = strstr(line, "\r\n");
        size_t llen = end ? (size_t)(end - line) : strlen(line);
        if (llen > n + 1 && strncasecmp(line, name, n) == 0 && line[n] == ':') {
            const char *v = line + n + 1;
            while (*v == ' ') {
                v++;
            }
            size_t vlen = llen - (size_t)(v - line);
            snprintf(buf, size, "%.*s", (int)vlen, v);
            return buf;
        }
        if (end == NULL) {
            break;
        }
        line = end + 2;
    }
    return NULL;
}

static const char *member(const reply *r, const char *name)
{
    return json_string_value(json_object_get(r->json, name));
}

static uint64_t ready(fixture *fx)
{
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(fx->eng, CH, GROUP, &d), SL_OK);
    return d.ready;
}

/* The first published event, cloned (caller unrefs). */
static bool first_event(const sl_event *ev, uint32_t attempts, void *ctx)
{
    (void)attempts;
    sl_event_clone(ev, (sl_event **)ctx);
    return false;
}

static sl_event *published(fixture *fx)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_engine_browse(fx->eng, CH, GROUP, 1, first_event, &ev),
                     SL_OK);
    assert_non_null(ev);
    return ev;
}

/* A problem+json answer with @p status whose detail contains @p text. */
static void assert_problem(const reply *r, long status, const char *text)
{
    char ct[128];
    if (r->status != status) {
        fail_msg("want %ld, got %ld: %s", status, r->status, r->body);
    }
    assert_non_null(header(r, "Content-Type", ct, sizeof ct));
    assert_string_equal(ct, "application/problem+json");
    assert_non_null(r->json);
    assert_int_equal(json_integer_value(json_object_get(r->json, "status")),
                     status);
    const char *detail = member(r, "detail");
    assert_non_null(detail);
    if (text != NULL && strstr(detail, text) == NULL) {
        fail_msg("detail '%s' lacks '%s'", detail, text);
    }
}

static long retry_after(const reply *r)
{
    char v[32];
    assert_non_null(header(r, "Retry-After", v, sizeof v));
    return strtol(v, NULL, 10);
}

/* ---- JSON bodies ------------------------------------------------------- */

static void gateway_json_body_is_published_then_answered_202(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    const char *body = "{\"qty\": 2, \"sku\": \"A-1\"}";
    post(fx, "/orders", "application/json; charset=utf-8", body, &r);
    assert_int_equal(r.status, 202);
    const char *id = member(&r, "id");
    assert_non_null(id);
    assert_string_equal(member(&r, "status"), "queued");
    char url[128], loc[128];
    snprintf(url, sizeof url, "/status/%s", id);
    assert_string_equal(member(&r, "status_url"), url);
    assert_string_equal(header(&r, "Location", loc, sizeof loc), url);

    assert_int_equal(ready(fx), 1);
    sl_event *ev = published(fx);
    assert_string_equal(sl_event_id(ev), id);
    assert_int_equal(strlen(id), 36);
    assert_int_equal(id[14], '7'); /* UUIDv7 */
    assert_string_equal(sl_event_type(ev), "orders.created");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/gateway/orders");
    assert_string_equal(sl_event_get(ev, SL_ATTR_DATACONTENTTYPE),
                        "application/json");
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    assert_int_equal(len, strlen(body));
    assert_memory_equal(data, body, len);
    assert_non_null(sl_event_get(ev, SL_ATTR_TRACEPARENT));
    sl_event_unref(ev);

    /* The gateway wrote "pending" when it accepted. */
    reply s = {0};
    http(fx, "GET", url, NULL, NULL, 0, &s);
    assert_int_equal(s.status, 200);
    assert_string_equal(member(&s, "id"), id);
    assert_string_equal(member(&s, "status"), "pending");
    assert_true(json_is_null(json_object_get(s.json, "detail")));
    assert_non_null(member(&s, "updated_at"));
    done(&s);
    done(&r);
    stop(fx);
}

static void gateway_traceparent_is_taken_from_the_request(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    char th[96];
    snprintf(th, sizeof th, "traceparent: %s", tp);
    const char *hs[] = {"Content-Type: application/json", th, "tracestate: k=v",
                        NULL};
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    sl_event *ev = published(fx);
    assert_string_equal(sl_event_get(ev, SL_ATTR_TRACEPARENT), tp);
    assert_string_equal(sl_event_get(ev, SL_ATTR_TRACESTATE), "k=v");
    sl_event_unref(ev);
    done(&r);
    stop(fx);
}

static void gateway_bad_json_is_400_naming_the_position(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    post(fx, "/orders", "application/json", "{\"qty\": 1,\n \"sku\": }", &r);
    assert_problem(&r, 400, "line 2, column");
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

static void
gateway_validation_failure_is_422_naming_field_and_rule(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    post(fx, "/orders", "application/json", "{\"qty\": 0, \"sku\": \"A\"}", &r);
    assert_problem(&r, 422, "`qty` must be an integer >= 1");
    json_t *errors = json_object_get(r.json, "errors");
    assert_int_equal(json_array_size(errors), 1);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(errors, 0), "field")),
        "qty");
    post(fx, "/orders", "application/json", "{\"qty\": \"two\"}", &r);
    assert_problem(&r, 422, "`qty` must be an integer");
    assert_int_equal(json_array_size(json_object_get(r.json, "errors")), 2);
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

static void gateway_route_without_rules_takes_any_json(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *hs[] = {"Content-Type: application/vnd.acme+json", NULL};
    reply r = {0};
    http(fx, "PUT", "/raw", hs, "[1,2,3]", 7, &r);
    assert_int_equal(r.status, 202);
    sl_event *ev = published(fx);
    assert_string_equal(sl_event_type(ev), "raw.put");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/gateway/raw");
    sl_event_unref(ev);
    done(&r);
    stop(fx);
}

/* ---- routing and content types ------------------------------------------ */

static void gateway_unknown_path_is_404(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    post(fx, "/nowhere", "application/json", "{}", &r);
    assert_problem(&r, 404, "/nowhere");
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

static void gateway_wrong_method_is_405_with_allow(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    char allow[64];
    http(fx, "GET", "/orders", NULL, NULL, 0, &r);
    assert_problem(&r, 405, "GET");
    assert_string_equal(header(&r, "Allow", allow, sizeof allow), "POST");
    post(fx, "/status/x", "application/json", "{}", &r);
    assert_problem(&r, 405, NULL);
    assert_string_equal(header(&r, "Allow", allow, sizeof allow), "GET");
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

static void gateway_unsupported_content_type_is_415(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    post(fx, "/orders", "text/plain", "qty=1", &r);
    assert_problem(&r, 415, "text/plain");
    /* No Content-Type at all. */
    const char *hs[] = {"Content-Type:", NULL};
    http(fx, "POST", "/orders", hs, "{}", 2, &r);
    assert_problem(&r, 415, "(none)");
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

static void set_small_body(sl_gateway_opts *o)
{
    o->max_body = 64;
}

static void gateway_oversized_body_is_413(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, set_small_body);
    char body[200];
    snprintf(body, sizeof body, "{\"qty\": 1, \"sku\": \"%0120d\"}", 0);
    reply r = {0};
    post(fx, "/orders", "application/json", body, &r);
    assert_problem(&r, 413, NULL);
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

/* ---- CloudEvents ------------------------------------------------------- */

/* The 202 body, byte for byte: compact JSON; an id of unreserved characters
 * as it is, any other escaped in the JSON and percent-encoded in the URL. */
static void gateway_202_body_is_compact_and_escapes_unusual_ids(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *body = "{\"qty\": 3, \"sku\": \"B\"}";
    const char *plain[] = {"Content-Type: application/json",
                           "ce-specversion: 1.0",
                           "ce-id: order-42.a_b~c",
                           "ce-source: /shop",
                           "ce-type: t",
                           NULL};
    reply r = {0};
    http(fx, "POST", "/orders", plain, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "{\"id\":\"order-42.a_b~c\",\"status\":"
                                "\"queued\",\"status_url\":\"/status/"
                                "order-42.a_b~c\"}");
    char loc[128];
    assert_string_equal(header(&r, "Location", loc, sizeof loc),
                        "/status/order-42.a_b~c");
    done(&r);
    const char *odd[] = {"Content-Type: application/json",
                         "ce-specversion: 1.0",
                         "ce-id: a/b%22c%22%C3%A9",
                         "ce-source: /shop",
                         "ce-type: t",
                         NULL};
    http(fx, "POST", "/orders", odd, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(r.body, "{\"id\":\"a/b\\\"c\\\"\xc3\xa9\",\"status\":"
                                "\"queued\",\"status_url\":\"/status/"
                                "a%2Fb%22c%22%C3%A9\"}");
    assert_string_equal(header(&r, "Location", loc, sizeof loc),
                        "/status/a%2Fb%22c%22%C3%A9");
    done(&r);
    stop(fx);
}

static void gateway_binary_mode_keeps_the_client_envelope(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *hs[] = {"Content-Type: application/json",
                        "ce-specversion: 1.0",
                        "ce-id: order-42",
                        "ce-source: /shop",
                        "CE-Type: shop.order.placed",
                        "ce-time: 2026-11-27T12:00:00.123Z",
                        "ce-subject: caf%C3%A9",
                        "ce-tenant: acme",
                        NULL};
    const char *body = "{\"qty\": 3, \"sku\": \"B\"}";
    reply r = {0};
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(member(&r, "id"), "order-42");
    sl_event *ev = published(fx);
    assert_string_equal(sl_event_id(ev), "order-42");
    assert_string_equal(sl_event_type(ev), "shop.order.placed");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SOURCE), "/shop");
    assert_string_equal(sl_event_get(ev, SL_ATTR_SUBJECT), "caf\xc3\xa9");
    assert_string_equal(sl_event_get(ev, SL_ATTR_DATACONTENTTYPE),
                        "application/json");
    assert_string_equal(sl_event_get_ext(ev, "tenant"), "acme");
    char t[32];
    sl_time_format_rfc3339(sl_event_time_ms(ev), t);
    assert_string_equal(t, "2026-11-27T12:00:00.123Z");
    sl_event_unref(ev);
    done(&r);
    stop(fx);
}

static void gateway_bad_cloudevents_headers_are_400(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    static const struct {
        const char *h[6];
        const char *want;
    } cases[] = {
        {{"ce-specversion: 1.0", "ce-source: /s", "ce-type: t", NULL}, "ce-id"},
        {{"ce-specversion: 0.3", "ce-id: 1", "ce-source: /s", "ce-type: t",
          NULL},
         "specversion"},
        {{"ce-specversion: 1.0", "ce-id: 1", "ce-source: /s", "ce-type: t",
          "ce-time: yesterday", NULL},
         "RFC 3339"},
        {{"ce-specversion: 1.0", "ce-id: 1", "ce-source: /s", "ce-type: t",
          "ce-Bad_Name: x", NULL},
         "ce-bad_name"},
        {{"ce-specversion: 1.0", "ce-id: 1", "ce-source: /s", "ce-type: t",
          "ce-subject: %FF", NULL},
         "UTF-8"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *hs[8] = {"Content-Type: application/json"};
        for (size_t k = 0; cases[i].h[k]; k++) {
            hs[k + 1] = cases[i].h[k];
        }
        const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
        reply r = {0};
        http(fx, "POST", "/orders", hs, body, strlen(body), &r);
        assert_problem(&r, 400, cases[i].want);
        done(&r);
    }
    assert_int_equal(ready(fx), 0);
    stop(fx);
}

static void gateway_binary_mode_data_is_validated_too(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *hs[] = {"Content-Type: application/json",
                        "ce-specversion: 1.0",
                        "ce-id: 1",
                        "ce-source: /s",
                        "ce-type: t",
                        NULL};
    reply r = {0};
    http(fx, "POST", "/orders", hs, "{\"qty\": 0, \"sku\": \"A\"}", 22, &r);
    assert_problem(&r, 422, "`qty`");
    const char *xml[] = {
        "Content-Type: text/xml", "ce-specversion: 1.0", "ce-id: 1",
        "ce-source: /s",          "ce-type: t",          NULL};
    http(fx, "POST", "/orders", xml, "<a/>", 4, &r);
    assert_problem(&r, 415, "text/xml");
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

static void gateway_structured_mode_is_published(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *ce =
        "{\"specversion\":\"1.0\",\"id\":\"s-1\",\"source\":\"/shop\","
        "\"type\":\"shop.order\",\"datacontenttype\":\"application/json\","
        "\"data\":{\"qty\":5,\"sku\":\"C\"}}";
    reply r = {0};
    post(fx, "/orders", "application/cloudevents+json", ce, &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(member(&r, "id"), "s-1");
    sl_event *ev = published(fx);
    assert_string_equal(sl_event_type(ev), "shop.order");
    size_t len = 0;
    const char *data = sl_event_data(ev, &len);
    assert_non_null(strstr(data, "\"qty\":5"));
    sl_event_unref(ev);

    post(fx, "/orders", "application/cloudevents+json",
         "{\"specversion\":\"1.0\",\"id\":\"s-2\",\"source\":\"/s\"}", &r);
    assert_problem(&r, 400, "type");
    post(fx, "/orders", "application/cloudevents+json",
         "{\"specversion\":\"1.0\",\"id\":\"s-3\",\"source\":\"/s\","
         "\"type\":\"t\",\"data\":{\"qty\":-1,\"sku\":\"C\"}}",
         &r);
    assert_problem(&r, 422, "`qty` must be an integer >= 1");
    assert_int_equal(ready(fx), 1);
    done(&r);
    stop(fx);
}

static void gateway_batch_publishes_every_event(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *batch =
        "[{\"specversion\":\"1.0\",\"id\":\"b-1\",\"source\":\"/s\","
        "\"type\":\"t\",\"data\":{\"qty\":1,\"sku\":\"A\"}},"
        "{\"specversion\":\"1.0\",\"id\":\"b-2\",\"source\":\"/s\","
        "\"type\":\"t\",\"data\":{\"qty\":2,\"sku\":\"B\"}},"
        "{\"specversion\":\"1.0\",\"id\":\"b-3\",\"source\":\"/s\","
        "\"type\":\"t\",\"data\":{\"qty\":3,\"sku\":\"C\"}}]";
    reply r = {0};
    post(fx, "/orders", "application/cloudevents-batch+json", batch, &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(member(&r, "status"), "queued");
    json_t *events = json_object_get(r.json, "events");
    assert_int_equal(json_array_size(events), 3);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(events, 2), "id")),
        "b-3");
    assert_string_equal(json_string_value(json_object_get(
                            json_array_get(events, 2), "status_url")),
                        "/status/b-3");
    assert_int_equal(ready(fx), 3);
    done(&r);
    stop(fx);
}

static void gateway_batch_with_one_bad_event_publishes_nothing(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *batch =
        "[{\"specversion\":\"1.0\",\"id\":\"b-1\",\"source\":\"/s\","
        "\"type\":\"t\",\"data\":{\"qty\":1,\"sku\":\"A\"}},"
        "{\"specversion\":\"1.0\",\"id\":\"b-2\",\"source\":\"/s\","
        "\"type\":\"t\",\"data\":{\"qty\":0,\"sku\":\"B\"}}]";
    reply r = {0};
    post(fx, "/orders", "application/cloudevents-batch+json", batch, &r);
    assert_problem(&r, 422, "event [1]: `qty` must be an integer >= 1");
    post(fx, "/orders", "application/cloudevents-batch+json", "[]", &r);
    assert_problem(&r, 400, "empty");
    post(fx, "/orders", "application/cloudevents-batch+json", "{}", &r);
    assert_problem(&r, 400, "array");
    post(fx, "/orders", "application/cloudevents-batch+json",
         "[{\"specversion\":\"1.0\",\"id\":\"x\",\"source\":\"/s\","
         "\"type\":\"t\",\"data\":{\"qty\":1,\"sku\":\"A\"}}, 7]",
         &r);
    assert_problem(&r, 400, "event [1]");
    assert_int_equal(ready(fx), 0);
    done(&r);
    stop(fx);
}

/* ---- admission --------------------------------------------------------- */

static void set_client_limit(sl_gateway_opts *o)
{
    o->client_rate_per_s = 0.5; /* one token every 2 s */
    o->client_burst = 1;
    o->client_header = "X-API-Key";
}

static void gateway_client_bucket_answers_429_with_retry_after(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, set_client_limit);
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    const char *alice[] = {"Content-Type: application/json", "X-API-Key: alice",
                           NULL};
    const char *bob[] = {"Content-Type: application/json", "X-API-Key: bob",
                         NULL};
    reply r = {0};
    http(fx, "POST", "/orders", alice, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    http(fx, "POST", "/orders", alice, body, strlen(body), &r);
    assert_problem(&r, 429, NULL);
    assert_int_equal(retry_after(&r), 2);
    /* Another client has its own bucket. */
    http(fx, "POST", "/orders", bob, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    /* 1.5 s later alice still waits 0.5 s, rounded up to 1. */
    atomic_fetch_add(&fx->clock.now_ms, 1500);
    http(fx, "POST", "/orders", alice, body, strlen(body), &r);
    assert_problem(&r, 429, NULL);
    assert_int_equal(retry_after(&r), 1);
    atomic_fetch_add(&fx->clock.now_ms, 500);
    http(fx, "POST", "/orders", alice, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(ready(fx), 3);
    done(&r);
    stop(fx);
}

static void gateway_full_channel_is_503_with_retry_after(void **state)
{
    (void)state;
    fixture *fx = start(1, NULL, NULL);
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    post(fx, "/orders", "application/json", body, &r);
    assert_int_equal(r.status, 202);
    post(fx, "/orders", "application/json", body, &r);
    assert_problem(&r, 503, "capacity");
    assert_true(retry_after(&r) >= 1);
    assert_int_equal(ready(fx), 1);
    done(&r);
    stop(fx);
}

static void gateway_producer_rate_limit_is_503_with_its_wait(void **state)
{
    (void)state;
    fixture *fx = sl_calloc(1, sizeof *fx); /* only for the clock */
    sl_manual_clock_init(&fx->clock, T0);
    sl_producer_opts po = {
        .rate_per_s = 0.25, .burst = 1, .clock = &fx->clock.clock};
    fixture *g = start(0, &po, NULL);
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    post(g, "/orders", "application/json", body, &r);
    assert_int_equal(r.status, 202);
    post(g, "/orders", "application/json", body, &r);
    assert_problem(&r, 503, "rate limit");
    assert_int_equal(retry_after(&r), 4);
    assert_int_equal(ready(g), 1);
    done(&r);
    stop(g);
    sl_free(fx);
}

static void gateway_draining_is_503_with_retry_after(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    fx->draining = true;
    reply r = {0};
    post(fx, "/orders", "application/json", "{\"qty\": 1, \"sku\": \"A\"}", &r);
    assert_problem(&r, 503, "shutting down");
    assert_int_equal(retry_after(&r), 1);
    assert_int_equal(ready(fx), 0);
    /* Status reads still work while draining. */
    http(fx, "GET", "/status/none", NULL, NULL, 0, &r);
    assert_problem(&r, 404, NULL);
    done(&r);
    stop(fx);
}

/* ---- idempotency keys -------------------------------------------------- */

static void gateway_idempotency_key_replays_the_first_answer(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *hs[] = {"Content-Type: application/json",
                        "Idempotency-Key: order-7", NULL};
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    char first[64];
    snprintf(first, sizeof first, "%s", member(&r, "id"));
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(member(&r, "id"), first);
    char v[16];
    assert_string_equal(header(&r, "Idempotent-Replayed", v, sizeof v), "true");
    assert_int_equal(ready(fx), 1);
    done(&r);
    stop(fx);
}

static void gateway_idempotency_key_with_another_body_is_422(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *hs[] = {"Content-Type: application/json",
                        "Idempotency-Key: order-8", NULL};
    const char *a = "{\"qty\": 1, \"sku\": \"A\"}";
    const char *b = "{\"qty\": 2, \"sku\": \"A\"}";
    reply r = {0};
    http(fx, "POST", "/orders", hs, a, strlen(a), &r);
    assert_int_equal(r.status, 202);
    http(fx, "POST", "/orders", hs, b, strlen(b), &r);
    assert_problem(&r, 422, "Idempotency-Key");
    assert_int_equal(ready(fx), 1);
    done(&r);
    stop(fx);
}

static void gateway_refused_request_frees_its_idempotency_key(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    const char *hs[] = {"Content-Type: application/json",
                        "Idempotency-Key: order-9", NULL};
    const char *bad = "{\"qty\": 0, \"sku\": \"A\"}";
    const char *good = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    http(fx, "POST", "/orders", hs, bad, strlen(bad), &r);
    assert_problem(&r, 422, "`qty`");
    http(fx, "POST", "/orders", hs, good, strlen(good), &r);
    assert_int_equal(r.status, 202);
    const char *badkey[] = {"Content-Type: application/json",
                            "Idempotency-Key: has space", NULL};
    http(fx, "POST", "/orders", badkey, good, strlen(good), &r);
    assert_problem(&r, 400, "Idempotency-Key");
    assert_int_equal(ready(fx), 1);
    done(&r);
    stop(fx);
}

static void gateway_retry_after_503_reuses_the_event_id(void **state)
{
    (void)state;
    fixture *fx = start(1, NULL, NULL);
    const char *plain = "{\"qty\": 1, \"sku\": \"Z\"}";
    const char *hs[] = {"Content-Type: application/json",
                        "Idempotency-Key: order-10", NULL};
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    post(fx, "/orders", "application/json", plain, &r); /* fills it */
    assert_int_equal(r.status, 202);
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_problem(&r, 503, NULL);
    /* Make room, retry: accepted now. */
    sl_subscription *sub = NULL;
    assert_int_equal(sl_engine_subscribe(fx->eng, CH, GROUP, NULL, &sub, NULL),
                     SL_OK);
    sl_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(sl_subscription_fetch(sub, &d, 1, 1000, &n), SL_OK);
    sl_delivery_ack(&d);
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    char id[64];
    snprintf(id, sizeof id, "%s", member(&r, "id"));
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_string_equal(member(&r, "id"), id);
    assert_int_equal(ready(fx), 1);
    sl_subscription_close(sub);
    done(&r);
    stop(fx);
}

/* ---- status projection ------------------------------------------------- */

static void gateway_status_reads_what_consumers_write(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    sl_gateway_state *gs = sl_gateway_get_state(fx->gw);
    assert_int_equal(sl_gateway_status_set(gs, "ord/1", "completed", "shipped"),
                     SL_OK);
    reply r = {0};
    http(fx, "GET", "/status/ord%2F1", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(member(&r, "id"), "ord/1");
    assert_string_equal(member(&r, "status"), "completed");
    assert_string_equal(member(&r, "detail"), "shipped");
    http(fx, "GET", "/status/unknown", NULL, NULL, 0, &r);
    assert_problem(&r, 404, "unknown");
    http(fx, "GET", "/status/", NULL, NULL, 0, &r);
    assert_problem(&r, 404, NULL);
    done(&r);
    stop(fx);
}

/* ---- malformed input ------------------------------------------------- */

static void gateway_malformed_input_gets_4xx_and_publishes_nothing(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, set_small_body);
    static const struct {
        const char *method;
        const char *path;
        const char *h[8];
        const char *body;
        long want;
    } cases[] = {
        {"POST", "/orders", {"Content-Type: application/json"}, "{", 400},
        {"POST", "/orders", {"Content-Type: application/json"}, "", 400},
        {"POST",
         "/orders",
         {"Content-Type: application/json"},
         "{\"qty\":1,\"qty\":2,\"sku\":\"A\"}",
         400},
        {"POST",
         "/orders",
         {"Content-Type: application/json"},
         "{\"qty\":1.5,\"sku\":\"A\"}",
         422},
        {"POST",
         "/orders",
         {"Content-Type: application/json"},
         "{\"qty\":1,\"sku\":\"0123456789abcdefX\"}",
         422},
        {"POST",
         "/orders",
         {"Content-Type: application/json"},
         "{\"qty\":1,\"sku\":\"0123456789abcdef0123456789abcdef01234567890"
         "123456789\"}",
         413},
        {"POST", "/orders", {"Content-Type: application/xml"}, "<a/>", 415},
        {"POST",
         "/orders",
         {"Content-Type: application/cloudevents+json"},
         "[]",
         400},
        {"POST",
         "/orders",
         {"Content-Type: application/json", "ce-specversion: 1.0", "ce-id: 1",
          "ce-type: t"},
         "{\"qty\":1,\"sku\":\"A\"}",
         400},
        {"POST",
         "/orders",
         {"Content-Type: application/json", "ce-specversion: 1.0", "ce-id: 1",
          "ce-id: 2", "ce-source: /s", "ce-type: t"},
         "{\"qty\":1,\"sku\":\"A\"}",
         400},
        {"POST", "/nope", {"Content-Type: application/json"}, "{}", 404},
        {"DELETE", "/orders", {"Content-Type: application/json"}, "{}", 405},
        {"POST",
         "/orders",
         {"Content-Type: application/json", "Idempotency-Key: "},
         "{\"qty\":1,\"sku\":\"A\"}",
         202 /* an empty header is absent */},
    };
    size_t accepted = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        reply r = {0};
        http(fx, cases[i].method, cases[i].path, cases[i].h, cases[i].body,
             strlen(cases[i].body), &r);
        if (r.status != cases[i].want) {
            fail_msg("case %zu: want %ld, got %ld: %s", i, cases[i].want,
                     r.status, r.body);
        }
        if (r.status >= 400) {
            assert_problem(&r, cases[i].want, NULL);
        } else {
            accepted++;
        }
        done(&r);
    }
    assert_int_equal(ready(fx), accepted);
    stop(fx);
}

/* ---- options and metrics --------------------------------------------- */

static void gateway_opts_check_names_the_bad_route(void **state)
{
    (void)state;
    sl_gateway_route dup[] = {{.path = "/a", .channel = "c"},
                              {.method = "POST", .path = "/a", .channel = "c"}};
    sl_gateway_route reserved[] = {{.path = "/status/x", .channel = "c"}};
    sl_gateway_route nochan[] = {{.path = "/a"}};
    sl_gateway_route badpath[] = {{.path = "a", .channel = "c"}};
    sl_gateway_field f = {.name = "q", .type = SL_JSON_STRING, .has_min = true};
    sl_gateway_route badfield[] = {
        {.path = "/f", .channel = "c", .fields = &f, .nfields = 1}};
    struct {
        sl_gateway_route *r;
        const char *want;
    } cases[] = {{dup, "twice"},
                 {reserved, "reserved"},
                 {nochan, "channel"},
                 {badpath, "path"},
                 {badfield, "field 'q'"}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        sl_gateway_opts o = {.routes = cases[i].r,
                             .nroutes = cases[i].r == dup ? 2 : 1};
        sl_diag diag = {0};
        assert_int_equal(sl_gateway_opts_check(&o, &diag), SL_CONFIG);
        if (strstr(diag.msg, cases[i].want) == NULL) {
            fail_msg("'%s' lacks '%s'", diag.msg, cases[i].want);
        }
    }
    sl_gateway_opts none = {0};
    assert_int_equal(sl_gateway_opts_check(&none, NULL), SL_CONFIG);
}

static sl_metrics *test_metrics;

static void set_metrics(sl_gateway_opts *o)
{
    o->metrics = test_metrics;
}

static void gateway_counts_requests_by_route_and_code(void **state)
{
    (void)state;
    assert_int_equal(sl_metrics_create(&test_metrics), SL_OK);
    fixture *fx = start(0, NULL, set_metrics);
    reply r = {0};
    post(fx, "/orders", "application/json", "{\"qty\":1,\"sku\":\"A\"}", &r);
    post(fx, "/orders", "application/json", "{\"qty\":0,\"sku\":\"A\"}", &r);
    post(fx, "/zzz", "application/json", "{}", &r);
    done(&r);
    stop(fx);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sl_metrics_render_text(test_metrics, &text, &len), SL_OK);
    assert_non_null(strstr(text, "sluice_http_requests_total{server=\"gateway"
                                 "\",route=\"/orders\",code=\"202\"} 1"));
    assert_non_null(strstr(text, "route=\"/orders\",code=\"422\"} 1"));
    assert_non_null(strstr(text, "route=\"unmatched\",code=\"404\"} 1"));
    sl_free(text);
    sl_metrics_destroy(test_metrics);
}

/* ---- confirms: deferred answers ------------------------------------------
 *
 * The memory engine confirms inside the publish call, before the handler
 * returns (the answer is decided before the connection would be
 * suspended); an engine with a store confirms from its writer thread after
 * commit_interval, so the connection is suspended and resumed. */

typedef struct poster {
    fixture *fx;
    char path[32];
    const char *ctype;
    const char *body;
    const char *key; /* Idempotency-Key or NULL */
    int n;
    int accepted;
    long last_status;
    char last_body[16384];
} poster;

static void *post_n(void *arg)
{
    poster *p = arg;
    fixture own = *p->fx;
    own.curl = curl_easy_init();
    char kh[128];
    snprintf(kh, sizeof kh, "Idempotency-Key: %s", p->key ? p->key : "");
    char ch[128];
    snprintf(ch, sizeof ch, "Content-Type: %s", p->ctype);
    const char *hs[] = {ch, p->key ? kh : NULL, NULL};
    reply r = {0};
    for (int i = 0; i < p->n; i++) {
        http(&own, "POST", p->path, hs, p->body, strlen(p->body), &r);
        p->accepted += r.status == 202;
        p->last_status = r.status;
        snprintf(p->last_body, sizeof p->last_body, "%s", r.body);
    }
    done(&r);
    curl_easy_cleanup(own.curl);
    return NULL;
}

static void gateway_confirm_before_suspension_is_answered_at_once(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    enum { THREADS = 4, EACH = 50 };
    poster ps[THREADS];
    pthread_t t[THREADS];
    for (int i = 0; i < THREADS; i++) {
        ps[i] = (poster){.fx = fx,
                         .path = "/orders",
                         .ctype = "application/json",
                         .body = "{\"qty\": 1, \"sku\": \"A\"}",
                         .n = EACH};
        assert_int_equal(pthread_create(&t[i], NULL, post_n, &ps[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(ps[i].accepted, EACH);
    }
    assert_int_equal(ready(fx), THREADS * EACH);
    /* The key is settled before the answer is sent: a replay right after
     * finds it. */
    const char *hs[] = {"Content-Type: application/json",
                        "Idempotency-Key: race-1", NULL};
    const char *body = "{\"qty\": 3, \"sku\": \"A\"}";
    reply r = {0};
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    char id[64];
    snprintf(id, sizeof id, "%s", member(&r, "id"));
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    assert_string_equal(member(&r, "id"), id);
    done(&r);
    stop(fx);
}

typedef struct store_dir {
    char path[64];
} store_dir;

static void store_open(store_dir *d, char *url, size_t size)
{
    assert_true(ts_tempdir(d->path, sizeof d->path, "gwtest"));
    snprintf(url, size, "embedded:%s", d->path);
}

static void store_remove(store_dir *d)
{
    ts_rm_rf(d->path);
}

static bool a_confirm_awaited(void *arg)
{
    return sl__gateway_confirms_awaited(((fixture *)arg)->gw) > 0;
}

/* Moves the gateway's clock by `ms` once a request awaits its confirm. */
typedef struct advancer {
    fixture *fx;
    uint64_t ms;
    pthread_t thread;
} advancer;

static void *advance_when_awaited(void *arg)
{
    advancer *a = arg;
    if (ts_wait_until(a_confirm_awaited, a->fx, TS_WAIT_MS)) {
        sl_manual_clock_advance(&a->fx->clock, a->ms);
    }
    return NULL;
}

static void advance_start(advancer *a, fixture *fx, uint64_t ms)
{
    *a = (advancer){.fx = fx, .ms = ms};
    assert_int_equal(pthread_create(&a->thread, NULL, advance_when_awaited, a),
                     0);
}

static bool one_ready(void *arg)
{
    return ready(arg) == 1;
}

static uint64_t g_confirm_timeout_ms;

static void set_confirm_timeout(sl_gateway_opts *o)
{
    o->confirm_timeout_ms = g_confirm_timeout_ms;
}

static void gateway_confirm_after_suspension_resumes_the_request(void **state)
{
    (void)state;
    store_dir d;
    char url[96];
    store_open(&d, url, sizeof url);
    sl_engine_opts eo = {.commit_interval_ms = 100};
    fixture *fx = start_on(url, &eo, 0, NULL, NULL);
    /* More concurrent requests than server threads (4): none holds one
     * while its confirm is pending. */
    enum { THREADS = 8 };
    poster ps[THREADS];
    pthread_t t[THREADS];
    uint64_t t0 = sl_time_mono_ms();
    for (int i = 0; i < THREADS; i++) {
        ps[i] = (poster){.fx = fx,
                         .path = "/orders",
                         .ctype = "application/json",
                         .body = "{\"qty\": 1, \"sku\": \"A\"}",
                         .n = 2};
        assert_int_equal(pthread_create(&t[i], NULL, post_n, &ps[i]), 0);
    }
    for (int i = 0; i < THREADS; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(ps[i].accepted, 2);
    }
    uint64_t took = sl_time_mono_ms() - t0;
    /* Two rounds of commit_interval, not 16 / 4 of them. */
    assert_true(took >= 200 && took < 1000);

    /* A batch: answered after its last confirm. */
    const char *batch =
        "[{\"specversion\":\"1.0\",\"id\":\"b1\",\"source\":\"/t\",\"type\":"
        "\"t\",\"data\":{\"qty\":1,\"sku\":\"A\"}},"
        "{\"specversion\":\"1.0\",\"id\":\"b2\",\"source\":\"/t\",\"type\":"
        "\"t\",\"data\":{\"qty\":2,\"sku\":\"B\"}}]";
    reply r = {0};
    post(fx, "/orders", "application/cloudevents-batch+json", batch, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(json_array_size(json_object_get(r.json, "events")), 2);
    /* "pending" is written before the answer. */
    http(fx, "GET", "/status/b2", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(member(&r, "status"), "pending");
    assert_int_equal(ready(fx), 2 * THREADS + 2);
    done(&r);
    stop(fx);
    store_remove(&d);
}

static void
gateway_confirm_timeout_is_504_and_late_confirm_ignored(void **state)
{
    (void)state;
    store_dir d;
    char url[96];
    store_open(&d, url, sizeof url);
    sl_engine_opts eo = {.commit_interval_ms = 1200};
    g_confirm_timeout_ms = 200;
    fixture *fx = start_on(url, &eo, 0, NULL, set_confirm_timeout);
    const char *hs[] = {"Content-Type: application/json",
                        "Idempotency-Key: slow-1", NULL};
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    /* The engine confirms after its commit interval (1.2 s of real time);
     * the gateway's clock passes the confirm timeout first. */
    uint64_t t0 = atomic_load(&fx->clock.now_ms);
    advancer a;
    advance_start(&a, fx, 200);
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    pthread_join(a.thread, NULL);
    assert_problem(&r, 504, "did not confirm within 200 ms");
    assert_int_equal(retry_after(&r), 1);
    assert_int_equal(atomic_load(&fx->clock.now_ms), t0 + 200);
    /* The late confirm comes while the gateway runs; it changes nothing. */
    assert_true(ts_wait_until(one_ready, fx, TS_WAIT_MS));
    assert_int_equal(sl__gateway_confirms_awaited(fx->gw), 0);
    /* The key was left open (5xx): the retry claims it again and
     * publishes the same event id, which the engine drops as a duplicate
     * (its confirm waits for commit_interval again: 202 or 504). */
    http(fx, "POST", "/orders", hs, body, strlen(body), &r);
    assert_true(r.status == 202 || r.status == 504);
    assert_int_equal(ready(fx), 1);
    /* A request whose confirm comes after the gateway stopped. */
    const char *plain = "{\"qty\": 2, \"sku\": \"B\"}";
    advance_start(&a, fx, 200);
    post(fx, "/orders", "application/json", plain, &r);
    pthread_join(a.thread, NULL);
    assert_problem(&r, 504, NULL);
    done(&r);
    sl_gateway_destroy(fx->gw); /* the confirms come in the producer's flush */
    fx->gw = NULL;
    curl_easy_cleanup(fx->curl);
    sl_producer_destroy(fx->producer);
    sl_engine_close(fx->eng);
    sl_free(fx);
    store_remove(&d);
}

/* Stops the gateway on its own thread, noting the clock when it returned. */
typedef struct stopper {
    fixture *fx;
    uint64_t stopped_at;
} stopper;

static void *stop_gateway(void *arg)
{
    stopper *s = arg;
    sl_gateway_destroy(s->fx->gw);
    s->stopped_at = atomic_load(&s->fx->clock.now_ms);
    return NULL;
}

static void gateway_stop_answers_suspended_requests_503(void **state)
{
    (void)state;
    store_dir d;
    char url[96];
    store_open(&d, url, sizeof url);
    /* No confirm comes during the test (the engine's commit interval is
     * 6.5 s of real time); the server's stop grace (5 s) passes on the
     * gateway's clock. */
    sl_engine_opts eo = {.commit_interval_ms = 6500};
    g_confirm_timeout_ms = 30000;
    fixture *fx = start_on(url, &eo, 0, NULL, set_confirm_timeout);
    poster p = {.fx = fx,
                .path = "/orders",
                .ctype = "application/json",
                .body = "{\"qty\": 1, \"sku\": \"A\"}",
                .key = "stop-1",
                .n = 1};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, post_n, &p), 0);
    assert_true(ts_wait_until(a_confirm_awaited, fx, TS_WAIT_MS));
    uint64_t t0 = atomic_load(&fx->clock.now_ms);
    stopper s = {.fx = fx};
    pthread_t ts;
    assert_int_equal(pthread_create(&ts, NULL, stop_gateway, &s), 0);
    /* Two waits sleep on the clock: the confirm timer's and the stop's. */
    assert_true(ts_clock_advance_when_waiting(&fx->clock, 2, 4999));
    sl_manual_clock_advance(&fx->clock, 1);
    pthread_join(ts, NULL);
    fx->gw = NULL;
    pthread_join(t, NULL);
    if (p.last_status != 503) {
        fail_msg("%ld %s", p.last_status, p.last_body);
    }
    assert_non_null(strstr(p.last_body, "stopped before the engine confirmed"));
    /* The grace was waited out in full: stop returned at 5 s, not before. */
    assert_true(s.stopped_at >= t0 + 5000);
    curl_easy_cleanup(fx->curl);
    /* The engine first: closing it confirms the publish now, which the
     * producer would otherwise wait for until the commit interval. */
    sl_engine_close(fx->eng);
    sl_producer_destroy(fx->producer);
    sl_free(fx);
    store_remove(&d);
}

/* ---- deadlines and admission by predicted wait --------------------------- */

static uint64_t predicted_ms; /* what predict_fixed answers; 0 = unknown */
static uint64_t predicted_ahead;

static bool predict_fixed(const char *channel, uint64_t ahead,
                          uint64_t *wait_ms, void *ctx)
{
    (void)ctx;
    assert_string_equal(channel, CH);
    predicted_ahead = ahead;
    *wait_ms = predicted_ms;
    return predicted_ms != 0;
}

static void with_prediction(sl_gateway_opts *o)
{
    o->predict_wait_ms = predict_fixed;
}

/* POST /orders: a 2 s deadline; PUT /raw: 60 s, but at most 1.5 s of
 * queue; PUT /any: admitted whatever the wait. */
static const sl_gateway_route wait_routes[] = {
    {.path = "/orders", .channel = CH, .type = "o", .deadline_ms = 2000},
    {.method = "PUT",
     .path = "/raw",
     .channel = CH,
     .type = "r",
     .deadline_ms = 60000,
     .max_queue_wait_ms = 1500},
    {.method = "PUT",
     .path = "/any",
     .channel = CH,
     .type = "a",
     .no_wait_admission = true},
};

static void with_wait_routes(sl_gateway_opts *o)
{
    o->predict_wait_ms = predict_fixed;
    o->routes = wait_routes;
    o->nroutes = 3;
}

static uint64_t now_of(fixture *fx)
{
    return atomic_load(&fx->clock.now_ms);
}

static void
gateway_every_accepted_event_carries_the_route_deadline(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    reply r = {0};
    post(fx, "/orders", "application/json", "{\"qty\": 1, \"sku\": \"A\"}", &r);
    assert_int_equal(r.status, 202);
    sl_event *ev = published(fx);
    assert_int_equal(sl_event_deadline_ms(ev), now_of(fx) + 30000);
    sl_event_unref(ev);
    done(&r);
    stop(fx);
}

/* A client's ce-deadline is kept when earlier than the route's, and
 * brought forward to the route's when later. */
static void gateway_client_deadline_is_kept_only_when_earlier(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, NULL);
    uint64_t offsets[] = {5000, 90000};
    uint64_t want[] = {5000, 30000};
    for (int i = 0; i < 2; i++) {
        char id[32], dl[64];
        snprintf(id, sizeof id, "ce-id: dl-%d", i);
        snprintf(dl, sizeof dl, "ce-deadline: %llu",
                 (unsigned long long)(now_of(fx) + offsets[i]));
        const char *hs[] = {"Content-Type: application/json",
                            "ce-specversion: 1.0",
                            id,
                            "ce-source: /s",
                            "ce-type: t",
                            dl,
                            NULL};
        const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
        reply r = {0};
        http(fx, "POST", "/orders", hs, body, strlen(body), &r);
        assert_int_equal(r.status, 202);
        done(&r);
        sl_subscription *sub = NULL;
        assert_int_equal(
            sl_engine_subscribe(fx->eng, CH, GROUP, NULL, &sub, NULL), SL_OK);
        sl_delivery *d = NULL;
        size_t n = 0;
        assert_int_equal(sl_subscription_fetch(sub, &d, 1, 1000, &n), SL_OK);
        assert_int_equal(sl_event_deadline_ms(sl_delivery_event(d)),
                         now_of(fx) + want[i]);
        sl_delivery_ack(&d);
        sl_subscription_close(sub);
    }
    stop(fx);
}

static void
gateway_refuses_503_when_the_predicted_wait_exceeds_the_deadline(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, with_prediction);
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    predicted_ms = 45000; /* the default deadline is 30 s */
    post(fx, "/orders", "application/json", body, &r);
    assert_problem(&r, 503, "predicted wait");
    assert_int_equal(retry_after(&r), 15); /* when 45 s of work is 30 s */
    assert_int_equal(ready(fx), 0);
    predicted_ms = 29000;
    post(fx, "/orders", "application/json", body, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(predicted_ahead, 1); /* its own event */
    predicted_ms = 0;                     /* no rate measured yet: admitted */
    post(fx, "/orders", "application/json", body, &r);
    assert_int_equal(r.status, 202);
    assert_int_equal(ready(fx), 2);
    done(&r);
    stop(fx);
}

/* The wait allowed is the shortest of the request's deadline (a client's
 * ce-deadline too) and the route's max_queue_wait; a route may opt out. */
static void
gateway_wait_admission_follows_deadline_and_max_queue_wait(void **state)
{
    (void)state;
    fixture *fx = start(0, NULL, with_wait_routes);
    const char *body = "{\"qty\": 1, \"sku\": \"A\"}";
    reply r = {0};
    predicted_ms = 2500;
    post(fx, "/orders", "application/json", body, &r); /* 2 s deadline */
    assert_problem(&r, 503, "predicted wait");
    assert_int_equal(retry_after(&r), 1);
    const char *hs[] = {"Content-Type: application/json", NULL};
    http(fx, "PUT", "/raw", hs, body, strlen(body), &r); /* 1.5 s of queue */
    assert_problem(&r, 503, "max_queue_wait");
    predicted_ms = 1000000;
    http(fx, "PUT", "/any", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    /* A client deadline 1 s away is shorter than a 1.4 s wait. */
    predicted_ms = 1400;
    http(fx, "PUT", "/raw", hs, body, strlen(body), &r);
    assert_int_equal(r.status, 202);
    char dl[64];
    snprintf(dl, sizeof dl, "ce-deadline: %llu",
             (unsigned long long)(now_of(fx) + 1000));
    const char *ce[] = {"Content-Type: application/json",
                        "ce-specversion: 1.0",
                        "ce-id: short",
                        "ce-source: /s",
                        "ce-type: t",
                        dl,
                        NULL};
    http(fx, "PUT", "/raw", ce, body, strlen(body), &r);
    assert_problem(&r, 503, "predicted wait");
    assert_int_equal(ready(fx), 2);
    done(&r);
    stop(fx);
}
int main(void)
{
    curl_global_init(CURL_GLOBAL_ALL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(gateway_json_body_is_published_then_answered_202),
        cmocka_unit_test(gateway_traceparent_is_taken_from_the_request),
        cmocka_unit_test(gateway_bad_json_is_400_naming_the_position),
        cmocka_unit_test(
            gateway_validation_failure_is_422_naming_field_and_rule),
        cmocka_unit_test(gateway_route_without_rules_takes_any_json),
        cmocka_unit_test(gateway_unknown_path_is_404),
        cmocka_unit_test(gateway_wrong_method_is_405_with_allow),
        cmocka_unit_test(gateway_unsupported_content_type_is_415),
        cmocka_unit_test(gateway_oversized_body_is_413),
        cmocka_unit_test(gateway_202_body_is_compact_and_escapes_unusual_ids),
        cmocka_unit_test(gateway_binary_mode_keeps_the_client_envelope),
        cmocka_unit_test(gateway_bad_cloudevents_headers_are_400),
        cmocka_unit_test(gateway_binary_mode_data_is_validated_too),
        cmocka_unit_test(gateway_structured_mode_is_published),
        cmocka_unit_test(gateway_batch_publishes_every_event),
        cmocka_unit_test(gateway_batch_with_one_bad_event_publishes_nothing),
        cmocka_unit_test(gateway_client_bucket_answers_429_with_retry_after),
        cmocka_unit_test(gateway_full_channel_is_503_with_retry_after),
        cmocka_unit_test(gateway_producer_rate_limit_is_503_with_its_wait),
        cmocka_unit_test(gateway_draining_is_503_with_retry_after),
        cmocka_unit_test(gateway_idempotency_key_replays_the_first_answer),
        cmocka_unit_test(gateway_idempotency_key_with_another_body_is_422),
        cmocka_unit_test(gateway_refused_request_frees_its_idempotency_key),
        cmocka_unit_test(gateway_retry_after_503_reuses_the_event_id),
        cmocka_unit_test(
            gateway_every_accepted_event_carries_the_route_deadline),
        cmocka_unit_test(gateway_client_deadline_is_kept_only_when_earlier),
        cmocka_unit_test(
            gateway_refuses_503_when_the_predicted_wait_exceeds_the_deadline),
        cmocka_unit_test(
            gateway_wait_admission_follows_deadline_and_max_queue_wait),
        cmocka_unit_test(gateway_status_reads_what_consumers_write),
        cmocka_unit_test(
            gateway_malformed_input_gets_4xx_and_publishes_nothing),
        cmocka_unit_test(gateway_opts_check_names_the_bad_route),
        cmocka_unit_test(gateway_counts_requests_by_route_and_code),
        cmocka_unit_test(gateway_confirm_before_suspension_is_answered_at_once),
        cmocka_unit_test(gateway_confirm_after_suspension_resumes_the_request),
        cmocka_unit_test(
            gateway_confirm_timeout_is_504_and_late_confirm_ignored),
        cmocka_unit_test(gateway_stop_answers_suspended_requests_503),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
