/* The HTTP gateway: routes, admission, body decoding, validation,
 * idempotency keys, confirmed publishing and the status endpoint.
 *
 * A request runs on a server worker thread up to its publishes:
 *
 *   route → draining / engine ready → client bucket (429) → predicted
 *   wait against the route's deadline (503) → content type (415) →
 *   Idempotency-Key claim (replay, 409, 422) → decode and validate (400,
 *   413, 422) → deadlines set, predicted wait against the earliest (503)
 *   → try_publish each event
 *
 * and then no thread waits for the confirms: the answer is deferred (the
 * connection is suspended, sl__http_defer), the last confirm resumes it
 * from the engine's thread, or the timer thread does at the confirm
 * timeout, and a server thread concludes: "pending" in the status
 * projection → 202 (or 503, 504) → the Idempotency-Key settled.
 *
 * Publishing uses sl_producer_try_publish, which never waits for room: a
 * full window or channel is answered 503 at once, so refusals stay cheap
 * under overload. Nothing is published before every check that can answer
 * 4xx has passed.
 */
#include "sluice/gateway.h"

#include "core/waiter.h"
#include "http/ce_http.h"
#include "http/gateway_int.h"
#include "http/gateway_state.h"
#include "http/server.h"
#include "http/validate.h"
#include "obs/std_metrics.h"
#include "sluice/alloc.h"
#include "sluice/log.h"
#include "sluice/token_bucket.h"

#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LISTEN "127.0.0.1:8080"
#define DEFAULT_MAX_BATCH 1000
#define DEFAULT_CONFIRM_TIMEOUT_MS 5000
#define DEFAULT_DRAINING_RETRY_AFTER_MS 1000
#define DEFAULT_MAX_RETRY_AFTER_MS 60000
#define DEFAULT_ROUTE_DEADLINE_MS 30000
#define STATUS_PREFIX "/status/"
#define STATUS_PREFIX_LEN 8
#define IDEMPOTENCY_KEY_MAX 255
/* Violations listed in a 422 answer. */
#define MAX_VIOLATIONS 16
/* A Retry-After for refusals whose cause passes quickly (an engine that is
 * not ready, a concurrent request holding an idempotency key). */
#define SHORT_RETRY_AFTER_MS 1000

/* A route as the gateway keeps it: copied strings and rules, and a
 * two-second window of accepted and refused-for-full counts that the
 * Retry-After estimate for a full channel reads. */
typedef struct route_rt {
    char *method;
    char *path;
    char *channel;
    char *type;
    char *source;
    sl_gateway_field *fields;
    size_t nfields;
    uint64_t deadline_ms;       /* given to every accepted event */
    uint64_t max_queue_wait_ms; /* 0 = none */
    bool no_wait_admission;
    /* Events handed to the producer by requests not yet answered: work
     * ahead that the engine's depth may not show yet. */
    _Atomic uint64_t in_transit;
    /* This route's duration histogram and its 202 counter, looked up at
     * the first request (sl_metric_get hashes the labels each time). */
    _Atomic(sl_metric *) m_seconds;
    _Atomic(sl_metric *) m_accepted;
    pthread_mutex_t mu;
    uint64_t sec;         /* second of the current slot */
    uint64_t accepted[2]; /* [0] current second, [1] the one before */
    uint64_t refused[2];
} route_rt;

typedef struct pending_req pending_req;

struct sl_gateway {
    sl_http_server *srv;
    /* Deferred requests by confirm deadline, for the timer thread (504);
     * guarded by pmu. */
    pthread_mutex_t pmu;
    pthread_cond_t pcv;
    pending_req *phead, *ptail;
    bool timer_stop;
    bool timer_started;
    pthread_t timer;
    route_rt *routes;
    size_t nroutes;
    sl_producer *producer;
    sl_engine *eng;
    sl_keyed_bucket *clients; /* NULL when off */
    char *client_header;
    sl_gateway_state *state;
    bool own_state;
    size_t max_batch;
    uint64_t confirm_timeout_ms;
    uint64_t idem_lease_ms;
    bool (*is_draining)(void *ctx);
    void *draining_ctx;
    uint64_t draining_retry_after_ms;
    uint64_t (*full_retry_after_ms)(const char *channel, void *ctx);
    void *full_retry_after_ctx;
    uint64_t max_retry_after_ms;
    bool (*predict_wait_ms)(const char *channel, uint64_t ahead,
                            uint64_t *wait_ms, void *ctx);
    void *predict_wait_ctx;
    sl_gateway_observe_fn observe;
    void *observe_ctx;
    bool has_metrics;
    sl_std_metrics sm;
    const sl_clock *clock;
};

/* One request in flight. */
typedef struct exchange {
    sl_gateway *gw;
    const sl_http_request *req;
    sl_http_response *resp;
    route_rt *route;
    sl_gateway_request_info info;
    const char *content_type; /* raw header, may be NULL */
    char idem_key[160];       /* scoped key; "" when none */
    bool claimed;
    char event_id[64]; /* for plain JSON bodies: the id to use */
} exchange;

/* ---- small helpers ------------------------------------------------------ */

static uint64_t mono_ms(const sl_gateway *gw)
{
    return sl__clock_or_mono_ms(gw->clock);
}

/* Deadlines are wall-clock times (ms since the epoch), like ce-deadline. */
static uint64_t wall_ms(const sl_gateway *gw)
{
    return sl__clock_or_wall_ms(gw->clock);
}

/* Request headers through libmicrohttpd: the server's handle in `impl` is
 * the connection. (server.h offers lookups by name only; binary mode needs
 * every ce- header, extensions included.) */
typedef struct mhd_visit_ctx {
    sl_gw_header_fn fn;
    void *ctx;
} mhd_visit_ctx;

static enum MHD_Result mhd_visit(void *cls, enum MHD_ValueKind kind,
                                 const char *key, const char *value)
{
    mhd_visit_ctx *v = cls;
    return v->fn(key, value ? value : "", v->ctx) ? MHD_YES : MHD_NO;
}

static void request_headers(const void *src, sl_gw_header_fn fn, void *ctx)
{
    const sl_http_request *req = src;
    mhd_visit_ctx v = {fn, ctx};
    if (req->impl != NULL) {
        MHD_get_connection_values((struct MHD_Connection *)req->impl,
                                  MHD_HEADER_KIND, mhd_visit, &v);
    }
}

static void fingerprint_hex(const char *s, char out[33])
{
    uint64_t fp[2] = {0, 0};
    sl__gw_fingerprint(fp, s, strlen(s));
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)fp[0],
             (unsigned long long)fp[1]);
}

/* Set the body from a jansson value (consumed). */
static void set_json(sl_http_response *resp, int status,
                     const char *content_type, json_t *obj)
{
    char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
    json_decref(obj);
    if (text == NULL || sl__http_set_body(resp, status, content_type, text,
                                          strlen(text)) != SL_OK) {
        /* Out of memory: an empty 500 is all that is left to say. */
        resp->status = 500;
    }
    free(text);
}

/* Invalid UTF-8 from a client must not make the answer invalid JSON. */
static json_t *json_text(const char *s)
{
    json_t *v = json_string(s ? s : "");
    return v ? v : json_string("(not valid UTF-8)");
}

/* An application/problem+json answer; @p extra (consumed, may be NULL)
 * adds members. */
static void problem(exchange *ex, int status, const char *reason,
                    const char *title, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

static void problem(exchange *ex, int status, const char *reason,
                    const char *title, json_t *extra, const char *fmt, ...)
{
    char detail[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    json_t *obj = json_object();
    if (obj != NULL) {
        json_object_set_new(obj, "type", json_string("about:blank"));
        json_object_set_new(obj, "title", json_string(title));
        json_object_set_new(obj, "status", json_integer(status));
        json_object_set_new(obj, "detail", json_text(detail));
        if (extra != NULL) {
            json_object_update(obj, extra);
        }
    }
    json_decref(extra);
    set_json(ex->resp, status, "application/problem+json", obj);
    ex->info.reason = reason;
}

static void set_retry_after(exchange *ex, uint64_t ms)
{
    uint64_t cap = ex->gw->max_retry_after_ms;
    if (ms > cap) {
        ms = cap;
    }
    uint64_t s = (ms + 999) / 1000;
    char v[24];
    snprintf(v, sizeof v, "%llu", (unsigned long long)(s ? s : 1));
    sl__http_set_header(ex->resp, "Retry-After", v);
}

/* ---- the full-channel Retry-After estimate ----------------------------- */

static void window_roll(route_rt *r, uint64_t sec)
{
    if (sec == r->sec) {
        return;
    }
    bool next = sec == r->sec + 1;
    r->accepted[1] = next ? r->accepted[0] : 0;
    r->refused[1] = next ? r->refused[0] : 0;
    r->accepted[0] = r->refused[0] = 0;
    r->sec = sec;
}

static void window_count(sl_gateway *gw, route_rt *r, uint64_t accepted,
                         uint64_t refused)
{
    pthread_mutex_lock(&r->mu);
    window_roll(r, mono_ms(gw) / 1000);
    r->accepted[0] += accepted;
    r->refused[0] += refused;
    pthread_mutex_unlock(&r->mu);
}

/* While the channel is full, the rate at which requests get in is the rate
 * at which consumers drain it. Refused clients that all come back after T
 * seconds are absorbed if T >= refused / accepted per second: the time the
 * channel needs, at its drain rate, to take the demand it refused. The
 * last complete second is used when there is one. */
static uint64_t full_estimate_ms(sl_gateway *gw, route_rt *r)
{
    if (gw->full_retry_after_ms != NULL) {
        uint64_t ms =
            gw->full_retry_after_ms(r->channel, gw->full_retry_after_ctx);
        if (ms > 0) {
            return ms;
        }
    }
    pthread_mutex_lock(&r->mu);
    window_roll(r, mono_ms(gw) / 1000);
    int i = r->accepted[1] + r->refused[1] > 0 ? 1 : 0;
    uint64_t acc = r->accepted[i];
    uint64_t ref = r->refused[i];
    pthread_mutex_unlock(&r->mu);
    uint64_t s = (ref + 1 + (acc ? acc : 1) - 1) / (acc ? acc : 1);
    return s * 1000;
}

/* ---- admission by predicted wait ------------------------------------------
 *
 * Work ahead of a request, divided by the measured drain rate of the
 * slowest group of its channel, predicts when its events would be handled
 * (the service computes it; the gateway adds the events it is still
 * publishing). When that is later than the request can wait, the request
 * is refused now, before anything is published, rather than left to expire
 * in the queue. */

/* False after answering 503 when this request's @p n events would wait
 * longer than @p budget_ms (or the route's max_queue_wait). */
static bool admit_by_wait(exchange *ex, uint64_t budget_ms, size_t n)
{
    sl_gateway *gw = ex->gw;
    route_rt *r = ex->route;
    if (gw->predict_wait_ms == NULL || r->no_wait_admission) {
        return true;
    }
    if (r->max_queue_wait_ms != 0 && r->max_queue_wait_ms < budget_ms) {
        budget_ms = r->max_queue_wait_ms;
    }
    uint64_t ahead = atomic_load(&r->in_transit) + n;
    uint64_t wait_ms = 0;
    if (!gw->predict_wait_ms(r->channel, ahead, &wait_ms,
                             gw->predict_wait_ctx) ||
        wait_ms <= budget_ms) {
        return true;
    }
    /* The work ahead shrinks at the drain rate: after wait - budget, a
     * request like this one fits again. */
    set_retry_after(ex, wait_ms - budget_ms);
    problem(ex, 503, "queue_wait", "Service Unavailable", NULL,
            "the predicted wait on channel '%s' is %llu ms, longer than the "
            "%llu ms this request may wait (its deadline or the route's "
            "max_queue_wait); nothing was published",
            r->channel, (unsigned long long)wait_ms,
            (unsigned long long)budget_ms);
    return false;
}

/* Every event gets the route's deadline unless it carries an earlier one
 * (a client's ce-deadline). Returns the earliest deadline. */
static uint64_t apply_deadline(exchange *ex, sl_event **evs, size_t n,
                               uint64_t now)
{
    uint64_t route_deadline = now + ex->route->deadline_ms;
    uint64_t earliest = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t d = sl_event_deadline_ms(evs[i]);
        if (d == 0 || d > route_deadline) {
            d = route_deadline;
            (void)sl_event_set_deadline_ms(evs[i], d);
        }
        earliest = d < earliest ? d : earliest;
    }
    return earliest;
}

/* ---- publishing -----------------------------------------------------------
 */

static void refuse_publish(exchange *ex, sl_status st, const char *what)
{
    sl_gateway *gw = ex->gw;
    switch (st) {
    case SL_FULL:
        set_retry_after(ex, full_estimate_ms(gw, ex->route));
        problem(ex, 503, "full", "Service Unavailable", NULL,
                "channel '%s' is at capacity (producer window or channel "
                "max_length); %s",
                ex->route->channel, what);
        break;
    case SL_BREAKER_OPEN:
        set_retry_after(ex, sl_producer_retry_after_ms(gw->producer));
        problem(ex, 503, "breaker_open", "Service Unavailable", NULL,
                "the engine's circuit breaker is open; %s", what);
        break;
    case SL_RATE_LIMITED:
        set_retry_after(ex, sl_producer_retry_after_ms(gw->producer));
        problem(ex, 503, "producer_rate_limited", "Service Unavailable", NULL,
                "the service's publish rate limit is reached; %s", what);
        break;
    case SL_TIMEOUT:
        set_retry_after(ex, SHORT_RETRY_AFTER_MS);
        problem(ex, 504, "timeout", "Gateway Timeout", NULL,
                "the engine did not confirm within %llu ms; the outcome is "
                "unknown: retry with the same Idempotency-Key (or the same "
                "event id), duplicates are dropped; %s",
                (unsigned long long)gw->confirm_timeout_ms, what);
        break;
    case SL_CLOSED:
        set_retry_after(ex, SHORT_RETRY_AFTER_MS);
        problem(ex, 503, "stopping", "Service Unavailable", NULL,
                "the service stopped before the engine confirmed; the "
                "outcome is unknown: retry with the same Idempotency-Key (or "
                "the same event id), duplicates are dropped; %s",
                what);
        break;
    case SL_TOO_LARGE:
        problem(ex, 413, "too_large", "Payload Too Large", NULL,
                "an event exceeds the engine's event size limit; %s", what);
        break;
    case SL_INVALID:
        problem(ex, 400, "invalid", "Bad Request", NULL,
                "the engine refused the event as invalid; %s", what);
        break;
    case SL_NOT_FOUND:
        problem(ex, 500, "not_declared", "Internal Server Error", NULL,
                "channel '%s' is not declared", ex->route->channel);
        break;
    default: {
        uint64_t ms = sl_producer_retry_after_ms(gw->producer);
        set_retry_after(ex, ms ? ms : SHORT_RETRY_AFTER_MS);
        problem(ex, 503, "unavailable", "Service Unavailable", NULL,
                "publish failed: %s; %s", sl_status_str(st), what);
        break;
    }
    }
}

/* ---- decoding -------------------------------------------------------------
 */

static void fill_trace(exchange *ex, sl_event *ev)
{
    char trace[33], span[17];
    if (sl_traceparent_parse(sl_event_get(ev, SL_ATTR_TRACEPARENT), trace,
                             span) == SL_OK) {
        return;
    }
    const char *tp = sl__http_header(ex->req, "traceparent");
    if (sl_traceparent_parse(tp, trace, span) == SL_OK) {
        sl_event_set(ev, SL_ATTR_TRACEPARENT, tp);
        sl_event_set(ev, SL_ATTR_TRACESTATE,
                     sl__http_header(ex->req, "tracestate"));
        return;
    }
    char fresh[56];
    sl_traceparent_new(fresh);
    sl_event_set(ev, SL_ATTR_TRACEPARENT, fresh);
    sl_event_set(ev, SL_ATTR_TRACESTATE, NULL);
}

/* Answer 422 for the violations of one body; @p index >= 0 names a batch
 * element. */
static void answer_violations(exchange *ex, const sl_gw_violation *v, size_t nv,
                              long index)
{
    json_t *errors = json_array();
    size_t shown = nv < MAX_VIOLATIONS ? nv : MAX_VIOLATIONS;
    for (size_t i = 0; errors && i < shown; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "field", json_text(v[i].field));
        json_object_set_new(e, "detail", json_text(v[i].detail));
        if (index >= 0) {
            json_object_set_new(e, "index", json_integer(index));
        }
        json_array_append_new(errors, e);
    }
    json_t *extra = json_object();
    json_object_set_new(extra, "errors", errors);
    char more[48] = "";
    if (nv > 1) {
        snprintf(more, sizeof more, " (and %zu more)", nv - 1);
    }
    if (index >= 0) {
        problem(ex, 422, "invalid", "Unprocessable Content", extra,
                "event [%ld]: %s%s", index, v[0].detail, more);
    } else {
        problem(ex, 422, "invalid", "Unprocessable Content", extra, "%s%s",
                v[0].detail, more);
    }
}

static void answer_bad_json(exchange *ex, const sl_diag *diag, const char *what)
{
    problem(ex, 400, "bad_json", "Bad Request", NULL,
            "%s is not valid JSON: %s", what, diag->msg);
}

/* Parse and validate JSON data; false after answering. */
static bool validate_data(exchange *ex, const void *data, size_t len,
                          long index)
{
    route_rt *r = ex->route;
    sl_gw_violation v[MAX_VIOLATIONS];
    size_t nv = 0;
    sl_diag diag = {0};
    if (sl__gw_validate_text(r->fields, r->nfields, data, len, v,
                             MAX_VIOLATIONS, &nv, &diag) != SL_OK) {
        answer_bad_json(ex, &diag, index >= 0 ? "the event data" : "the body");
        return false;
    }
    if (nv > 0) {
        answer_violations(ex, v, nv, index);
        return false;
    }
    return true;
}

/* Check the data of @p ev against the route's rules. Returns false after
 * answering. */
static bool check_data(exchange *ex, const sl_event *ev, long index)
{
    route_rt *r = ex->route;
    if (r->nfields == 0) {
        return true;
    }
    char mt[128];
    const char *dct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
    sl__gw_media_type(dct, mt, sizeof mt);
    if (dct != NULL && !sl__gw_media_is_json(mt)) {
        char at[32] = "";
        if (index >= 0) {
            snprintf(at, sizeof at, "event [%ld]: ", index);
        }
        problem(ex, 415, "unsupported_media_type", "Unsupported Media Type",
                NULL,
                "%sroute %s validates JSON data, but the datacontenttype "
                "is '%.128s'",
                at, r->path, dct);
        return false;
    }
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    return validate_data(ex, data, len, index);
}

/* Envelope checks shared by every kind; false after answering. */
static bool check_event(exchange *ex, sl_event *ev, long index)
{
    sl_diag diag = {0};
    sl_status st = sl_event_validate(ev, 0, &diag);
    if (st == SL_TOO_LARGE) {
        problem(ex, 413, "too_large", "Payload Too Large", NULL,
                "the event exceeds %u bytes", SL_EVENT_MAX_SIZE_DEFAULT);
        return false;
    }
    if (st != SL_OK) {
        if (index >= 0) {
            problem(ex, 400, "bad_event", "Bad Request", NULL,
                    "event [%ld]: %s", index, diag.msg);
        } else {
            problem(ex, 400, "bad_event", "Bad Request", NULL, "%s", diag.msg);
        }
        return false;
    }
    return true;
}

/* A plain JSON body: a new event of the route's type. */
static sl_event *decode_json(exchange *ex)
{
    const sl_http_request *req = ex->req;
    route_rt *r = ex->route;
    if (!validate_data(ex, req->body, req->body_len, -1)) {
        return NULL;
    }
    sl_event *ev = NULL;
    sl_status st = sl_event_create_new(r->source, r->type, &ev);
    if (st == SL_OK && ex->event_id[0] != '\0') {
        st = sl_event_set(ev, SL_ATTR_ID, ex->event_id);
    }
    if (st == SL_OK) {
        st = sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "application/json");
    }
    if (st == SL_OK && req->body_len > 0) {
        st = sl_event_set_data(ev, req->body, req->body_len);
    }
    if (st != SL_OK) {
        sl_event_unref(ev);
        problem(ex, 500, "nomem", "Internal Server Error", NULL, "%s",
                sl_status_str(st));
        return NULL;
    }
    if (!check_event(ex, ev, -1)) {
        sl_event_unref(ev);
        return NULL;
    }
    return ev;
}

static sl_event *decode_binary(exchange *ex)
{
    const sl_http_request *req = ex->req;
    sl_event *ev = NULL;
    sl_diag diag = {0};
    sl_status st =
        sl__gw_event_from_binary(request_headers, req, ex->content_type,
                                 req->body, req->body_len, &ev, &diag);
    if (st != SL_OK) {
        problem(ex, st == SL_NOMEM ? 500 : 400, "bad_event",
                st == SL_NOMEM ? "Internal Server Error" : "Bad Request", NULL,
                "%s", diag.msg);
        return NULL;
    }
    if (!check_event(ex, ev, -1) || !check_data(ex, ev, -1)) {
        sl_event_unref(ev);
        return NULL;
    }
    return ev;
}

static sl_event *decode_structured(exchange *ex)
{
    const sl_http_request *req = ex->req;
    sl_event *ev = NULL;
    sl_diag diag = {0};
    sl_status st = sl_event_from_json(req->body ? (const char *)req->body : "",
                                      req->body_len, &ev, &diag);
    if (st != SL_OK) {
        problem(ex, st == SL_NOMEM ? 500 : 400, "bad_event",
                st == SL_NOMEM ? "Internal Server Error" : "Bad Request", NULL,
                "not a valid CloudEvent: %s", diag.msg);
        return NULL;
    }
    if (!check_event(ex, ev, -1) || !check_data(ex, ev, -1)) {
        sl_event_unref(ev);
        return NULL;
    }
    return ev;
}

/* A batch: every element must be a valid event that passes the route's
 * rules before any is published. */
static sl_event **decode_batch(exchange *ex, size_t *n)
{
    const sl_http_request *req = ex->req;
    json_error_t err;
    json_t *root = json_loadb(req->body ? (const char *)req->body : "",
                              req->body_len, JSON_REJECT_DUPLICATES, &err);
    if (root == NULL) {
        sl_diag diag = {0};
        sl_diag_set(&diag, SL_INVALID, "%s at line %d, column %d (byte %d)",
                    err.text, err.line, err.column, err.position);
        answer_bad_json(ex, &diag, "the batch");
        return NULL;
    }
    sl_event **evs = NULL;
    size_t count = json_is_array(root) ? json_array_size(root) : 0;
    if (!json_is_array(root)) {
        problem(ex, 400, "bad_batch", "Bad Request", NULL,
                "a batch is a JSON array of CloudEvents");
        goto done;
    }
    if (count == 0) {
        problem(ex, 400, "bad_batch", "Bad Request", NULL,
                "the batch is empty");
        goto done;
    }
    if (count > ex->gw->max_batch) {
        problem(ex, 413, "too_large", "Payload Too Large", NULL,
                "the batch has %zu events; at most %zu are allowed", count,
                ex->gw->max_batch);
        goto done;
    }
    evs = sl_calloc(count, sizeof *evs);
    if (evs == NULL) {
        problem(ex, 500, "nomem", "Internal Server Error", NULL,
                "out of memory");
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *el = json_array_get(root, i);
        if (!json_is_object(el)) {
            problem(ex, 400, "bad_event", "Bad Request", NULL,
                    "event [%zu]: not a JSON object", i);
            goto fail;
        }
        char *text = json_dumps(el, JSON_COMPACT | JSON_PRESERVE_ORDER);
        sl_diag diag = {0};
        sl_status st =
            text ? sl_event_from_json(text, strlen(text), &evs[i], &diag)
                 : SL_NOMEM;
        free(text);
        if (st != SL_OK) {
            problem(ex, st == SL_NOMEM ? 500 : 400, "bad_event",
                    st == SL_NOMEM ? "Internal Server Error" : "Bad Request",
                    NULL, "event [%zu]: %s", i,
                    st == SL_NOMEM ? "out of memory" : diag.msg);
            goto fail;
        }
        if (!check_event(ex, evs[i], (long)i) ||
            !check_data(ex, evs[i], (long)i)) {
            goto fail;
        }
        for (size_t j = 0; j < i; j++) {
            if (strcmp(sl_event_id(evs[j]), sl_event_id(evs[i])) == 0 &&
                strcmp(sl_event_get(evs[j], SL_ATTR_SOURCE),
                       sl_event_get(evs[i], SL_ATTR_SOURCE)) == 0) {
                problem(ex, 400, "bad_batch", "Bad Request", NULL,
                        "events [%zu] and [%zu] have the same id and "
                        "source",
                        j, i);
                goto fail;
            }
        }
    }
    *n = count;
    goto done;
fail:
    for (size_t i = 0; i < count; i++) {
        sl_event_unref(evs[i]);
    }
    sl_free(evs);
    evs = NULL;
done:
    json_decref(root);
    return evs;
}

/* ---- answers --------------------------------------------------------- */

static json_t *accepted_entry(const char *id, bool with_status)
{
    char enc[3 * 256 + 1];
    char url[sizeof enc + STATUS_PREFIX_LEN];
    json_t *o = json_object();
    json_object_set_new(o, "id", json_text(id));
    if (with_status) {
        json_object_set_new(o, "status", json_string("queued"));
    }
    if (sl__gw_url_encode(id, enc, sizeof enc)) {
        snprintf(url, sizeof url, STATUS_PREFIX "%s", enc);
        json_object_set_new(o, "status_url", json_string(url));
    }
    return o;
}

static void set_location(exchange *ex, const char *id)
{
    char enc[3 * 64 + 1];
    char url[sizeof enc + STATUS_PREFIX_LEN];
    /* Response headers hold 256 bytes: long ids get no Location. */
    if (sl__gw_url_encode(id, enc, sizeof enc)) {
        snprintf(url, sizeof url, STATUS_PREFIX "%s", enc);
        sl__http_set_header(ex->resp, "Location", url);
    }
}

/* Whether @p id is 1 to 64 unreserved URL characters (a UUID, say): then
 * it is its own URL encoding and JSON string body. */
static bool id_is_plain(const char *id)
{
    size_t n = 0;
    for (const char *p = id; *p; p++, n++) {
        char c = *p;
        if (n == 64 || !((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                         (c >= '0' && c <= '9') || c == '-' || c == '.' ||
                         c == '_' || c == '~')) {
            return false;
        }
    }
    return n > 0;
}

static void answer_accepted(exchange *ex, sl_event **evs, size_t n, bool batch)
{
    json_t *obj;
    const char *id = sl_event_id(evs[0]);
    if (!batch && id_is_plain(id)) {
        /* The usual answer, written directly: the same bytes as the
         * jansson path below (members in insertion order, compact), at a
         * tenth of its cost. */
        char body[160];
        int len = snprintf(body, sizeof body,
                           "{\"id\":\"%s\",\"status\":\"queued\","
                           "\"status_url\":\"" STATUS_PREFIX "%s\"}",
                           id, id);
        char url[STATUS_PREFIX_LEN + 65];
        snprintf(url, sizeof url, STATUS_PREFIX "%s", id);
        sl__http_set_header(ex->resp, "Location", url);
        if (sl__http_set_body(ex->resp, 202, "application/json", body,
                              (size_t)len) != SL_OK) {
            ex->resp->status = 500;
        }
        return;
    }
    if (!batch) {
        obj = accepted_entry(sl_event_id(evs[0]), true);
        set_location(ex, sl_event_id(evs[0]));
    } else {
        obj = json_object();
        json_t *list = json_array();
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(list,
                                  accepted_entry(sl_event_id(evs[i]), false));
        }
        json_object_set_new(obj, "status", json_string("queued"));
        json_object_set_new(obj, "events", list);
    }
    set_json(ex->resp, 202, "application/json", obj);
}

/* ---- status endpoint ------------------------------------------------------
 */

static void serve_status(exchange *ex)
{
    const sl_http_request *req = ex->req;
    ex->info.route = "/status";
    if (strcmp(req->method, "GET") != 0) {
        sl__http_set_header(ex->resp, "Allow", "GET");
        problem(ex, 405, "method_not_allowed", "Method Not Allowed", NULL,
                "%s is not allowed on /status/{id}; use GET", req->method);
        return;
    }
    const char *id = req->path + STATUS_PREFIX_LEN;
    sl_gateway_status_row row;
    sl_status st = sl_gateway_status_get(ex->gw->state, id, &row);
    if (st == SL_NOT_FOUND) {
        problem(ex, 404, "not_found", "Not Found", NULL,
                "no status for event '%.256s'", id);
        return;
    }
    if (st != SL_OK) {
        set_retry_after(ex, SHORT_RETRY_AFTER_MS);
        problem(ex, 503, "unavailable", "Service Unavailable", NULL,
                "the status projection cannot be read: %s", sl_status_str(st));
        return;
    }
    char at[32];
    sl_time_format_rfc3339(row.updated_ms, at);
    json_t *obj = json_object();
    json_object_set_new(obj, "id", json_text(id));
    json_object_set_new(obj, "status", json_string(row.status));
    json_object_set_new(obj, "detail",
                        row.detail[0] ? json_text(row.detail) : json_null());
    json_object_set_new(obj, "updated_at", json_string(at));
    set_json(ex->resp, 200, "application/json", obj);
}

/* ---- the event routes ------------------------------------------------- */

/* Find the route; answers 404/405 itself and returns NULL then. */
static route_rt *match_route(exchange *ex)
{
    sl_gateway *gw = ex->gw;
    const sl_http_request *req = ex->req;
    char allow[128] = "";
    size_t used = 0;
    for (size_t i = 0; i < gw->nroutes; i++) {
        route_rt *r = &gw->routes[i];
        if (strcmp(r->path, req->path) != 0) {
            continue;
        }
        if (strcmp(r->method, req->method) == 0) {
            return r;
        }
        int w = snprintf(allow + used, sizeof allow - used, "%s%s",
                         used ? ", " : "", r->method);
        if (w > 0 && (size_t)w < sizeof allow - used) {
            used += (size_t)w;
        }
    }
    if (used > 0) {
        sl__http_set_header(ex->resp, "Allow", allow);
        problem(ex, 405, "method_not_allowed", "Method Not Allowed", NULL,
                "%s is not allowed on %s; allowed: %s", req->method, req->path,
                allow);
    } else {
        problem(ex, 404, "not_found", "Not Found", NULL, "no route for %s",
                req->path);
    }
    return NULL;
}

/* Admission before any work: draining, engine, client bucket. Answers and
 * returns false on refusal. */
static bool admit(exchange *ex)
{
    sl_gateway *gw = ex->gw;
    if (gw->is_draining != NULL && gw->is_draining(gw->draining_ctx)) {
        set_retry_after(ex, gw->draining_retry_after_ms);
        problem(ex, 503, "draining", "Service Unavailable", NULL,
                "the service is shutting down");
        return false;
    }
    if (gw->eng != NULL && !sl_engine_is_ready(gw->eng)) {
        set_retry_after(ex, SHORT_RETRY_AFTER_MS);
        problem(ex, 503, "not_ready", "Service Unavailable", NULL,
                "the engine is not ready");
        return false;
    }
    if (gw->clients == NULL) {
        return true;
    }
    char key[80];
    const char *hv =
        gw->client_header ? sl__http_header(ex->req, gw->client_header) : NULL;
    if (hv != NULL) {
        char hex[33];
        fingerprint_hex(hv, hex);
        snprintf(key, sizeof key, "h:%s", hex);
    } else {
        snprintf(key, sizeof key, "a:%s", ex->req->remote_addr);
    }
    uint64_t wait_ms = 0;
    if (!sl_keyed_bucket_try_take(gw->clients, key, 1, mono_ms(gw), &wait_ms)) {
        set_retry_after(ex, wait_ms == 0 ? SHORT_RETRY_AFTER_MS : wait_ms);
        problem(ex, 429, "rate_limited", "Too Many Requests", NULL,
                "the client's request rate limit is reached");
        return false;
    }
    return true;
}

static bool idem_key_is_valid(const char *k)
{
    size_t n = strlen(k);
    if (n == 0 || n > IDEMPOTENCY_KEY_MAX) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)k[i] < 0x21 || (unsigned char)k[i] > 0x7E) {
            return false;
        }
    }
    return true;
}

/* Claim the Idempotency-Key if there is one. Returns false after
 * answering (replay, 409, 422, 400). */
static bool claim_key(exchange *ex, sl_gw_body_kind kind)
{
    sl_gateway *gw = ex->gw;
    const sl_http_request *req = ex->req;
    const char *key = sl__http_header(req, "Idempotency-Key");
    if (kind == SL_GW_BODY_JSON) {
        sl_uuid7(ex->event_id, sl_time_wall_ms());
    }
    if (key == NULL) {
        return true;
    }
    if (!idem_key_is_valid(key)) {
        problem(ex, 400, "bad_idempotency_key", "Bad Request", NULL,
                "Idempotency-Key must be 1 to %d visible ASCII characters",
                IDEMPOTENCY_KEY_MAX);
        return false;
    }
    /* Keys are scoped by client (when clients are told apart by a header)
     * and by route, so that clients cannot see each other's answers. */
    char client[33] = "";
    const char *hv =
        gw->client_header ? sl__http_header(req, gw->client_header) : NULL;
    if (hv != NULL) {
        fingerprint_hex(hv, client);
    }
    char scope[33];
    char route[300];
    snprintf(route, sizeof route, "%s %s", ex->route->method, ex->route->path);
    fingerprint_hex(route, scope);
    snprintf(ex->idem_key, sizeof ex->idem_key, "%s/%s/%s", client, scope, key);

    uint64_t fp[2] = {0, 0};
    const char *ct = ex->content_type ? ex->content_type : "";
    sl__gw_fingerprint(fp, ct, strlen(ct) + 1);
    sl__gw_fingerprint(fp, req->body ? req->body : (const uint8_t *)"",
                       req->body_len);
    if (kind == SL_GW_BODY_BINARY) {
        sl__gw_fingerprint_headers(request_headers, req, fp);
    }
    sl_gw_idem rec;
    sl_status st = sl__gw_idem_claim(gw->state, ex->idem_key, fp,
                                     ex->event_id[0] ? ex->event_id : "-",
                                     gw->idem_lease_ms, &rec);
    if (st != SL_OK) {
        ex->idem_key[0] = '\0';
        set_retry_after(ex, SHORT_RETRY_AFTER_MS);
        problem(ex, 503, "unavailable", "Service Unavailable", NULL,
                "idempotency records cannot be read: %s", sl_status_str(st));
        return false;
    }
    switch (rec.outcome) {
    case SL_GW_IDEM_CLAIMED:
        ex->claimed = true;
        if (kind == SL_GW_BODY_JSON) {
            snprintf(ex->event_id, sizeof ex->event_id, "%s", rec.event_id);
        }
        return true;
    case SL_GW_IDEM_REPLAY:
        ex->resp->status = rec.http_status;
        ex->resp->content_type = "application/json";
        ex->resp->body = rec.body;
        ex->resp->body_len = rec.body_len;
        sl__http_set_header(ex->resp, "Idempotent-Replayed", "true");
        if (strcmp(rec.event_id, "-") != 0) {
            set_location(ex, rec.event_id);
        }
        ex->info.reason = "replayed";
        return false;
    case SL_GW_IDEM_IN_PROGRESS:
        set_retry_after(ex, SHORT_RETRY_AFTER_MS);
        problem(ex, 409, "idempotency_conflict", "Conflict", NULL,
                "a request with this Idempotency-Key is being processed");
        return false;
    case SL_GW_IDEM_MISMATCH:
        problem(ex, 422, "idempotency_mismatch", "Unprocessable Content", NULL,
                "this Idempotency-Key was already used with a different "
                "request (method, path, Content-Type, ce- headers or "
                "body)");
        return false;
    }
    return false;
}

/* Settle the claim with the answer: stored on 2xx, forgotten on 4xx (the
 * request was refused as it stands, and nothing was published, so the
 * client may fix it and reuse the key), left open otherwise (a retry
 * republishes with the same event id). */
static void settle_key(exchange *ex)
{
    if (!ex->claimed) {
        return;
    }
    int status = ex->resp->status;
    sl_gateway_state *gs = ex->gw->state;
    if (status >= 200 && status < 300) {
        sl__gw_idem_finish(gs, ex->idem_key, status, ex->resp->body,
                           ex->resp->body_len);
    } else if (status >= 400 && status < 500) {
        sl__gw_idem_forget(gs, ex->idem_key);
    } else {
        sl__gw_idem_release(gs, ex->idem_key);
    }
}

/* A series cached in @p slot, looked up the first time. */
static sl_metric *cached_series(_Atomic(sl_metric *) *slot,
                                sl_metric_family *fam,
                                const char *const *values)
{
    sl_metric *m = atomic_load_explicit(slot, memory_order_acquire);
    if (m == NULL) {
        m = sl_metric_get(fam, values);
        atomic_store_explicit(slot, m, memory_order_release);
    }
    return m;
}

static void record_metrics(sl_gateway *gw, route_rt *r,
                           const sl_gateway_request_info *i)
{
    char code[8];
    snprintf(code, sizeof code, "%d", i->status);
    /* Route labels come from the configuration, never from the request, so
     * the series stay bounded. */
    const char *route = i->route[0] ? i->route : "unmatched";
    sl_metric *count, *seconds;
    if (r != NULL) {
        seconds = cached_series(&r->m_seconds, gw->sm.http_seconds,
                                SL_LABELS("gateway", route));
        count = i->status == 202
                    ? cached_series(&r->m_accepted, gw->sm.http_requests,
                                    SL_LABELS("gateway", route, code))
                    : sl_metric_get(gw->sm.http_requests,
                                    SL_LABELS("gateway", route, code));
    } else {
        seconds =
            sl_metric_get(gw->sm.http_seconds, SL_LABELS("gateway", route));
        count = sl_metric_get(gw->sm.http_requests,
                              SL_LABELS("gateway", route, code));
    }
    sl_counter_inc(count);
    sl_histogram_observe(seconds, (double)i->duration_ns / 1e9);
    if (i->status == 429) {
        sl_counter_inc(
            sl_metric_get(gw->sm.rate_limited, SL_LABELS("gateway_client")));
    }
}

/* Metrics and the observer, once the answer is written. */
static void record_request(exchange *ex, uint64_t t0_ns)
{
    ex->info.status = ex->resp->status ? ex->resp->status : 500;
    ex->info.duration_ns = sl_time_mono_ns() - t0_ns;
    if (ex->gw->has_metrics) {
        /* The route's own series only when the label is its path. */
        route_rt *r = ex->route != NULL && ex->info.route == ex->route->path
                          ? ex->route
                          : NULL;
        record_metrics(ex->gw, r, &ex->info);
    }
    if (ex->gw->observe != NULL) {
        ex->gw->observe(&ex->info, ex->gw->observe_ctx);
    }
}

/* ---- confirms without a waiting thread ------------------------------------
 *
 * After its events are handed to sl_producer_try_publish, a request waits
 * for nothing: its answer is deferred and its connection suspended. Three
 * things can end the wait — the last confirm (an engine thread), the
 * confirm timeout (the timer thread), the server stopping (a server thread,
 * `cancelled`) — and whichever comes first resumes the connection
 * (`resumed` makes it once); then a server thread concludes, in fill: the
 * "pending" rows, the answer, the Idempotency-Key. Confirms that arrive
 * after the answer was decided (`decided`) are ignored.
 *
 * References to a pending_req: the request's (given up by conclude), one
 * per publish the producer accepted (given up by its confirm, which may
 * come long after the answer, even after the gateway stopped: a confirm
 * touches only the pending_req and the server's token). */

#define UNCONFIRMED (-1)

typedef struct confirm_slot {
    pending_req *pr;
    size_t i;
} confirm_slot;

struct pending_req {
    atomic_int refs;
    pthread_mutex_t mu;
    exchange ex; /* req is NULL; resp is set during conclude */
    uint64_t t0_ns;
    bool batch;
    sl_event *one;
    sl_event **evs; /* &one, or an array of n */
    size_t n;
    size_t started;    /* publishes the producer accepted */
    sl_status refused; /* why publishing stopped before n; SL_OK */
    /* Under mu: */
    int *res;           /* per event: sl_status, or UNCONFIRMED */
    size_t outstanding; /* confirms still to come */
    bool published;     /* publishing is over and tok is set */
    bool resumed;       /* sl__http_resume was called, or is being */
    bool decided;       /* conclude read res; later confirms are ignored */
    sl_http_pending *tok;
    /* Under the gateway's pmu: */
    uint64_t deadline_ms;
    bool listed;
    pending_req *prev, *next;
};

static void pending_unref(pending_req *pr)
{
    if (atomic_fetch_sub(&pr->refs, 1) != 1) {
        return;
    }
    for (size_t i = 0; i < pr->n; i++) {
        sl_event_unref(pr->evs[i]);
    }
    if (pr->evs != &pr->one) {
        sl_free(pr->evs);
    }
    pthread_mutex_destroy(&pr->mu);
    sl_free(pr);
}

/* An engine thread; never blocks beyond a mutex held for a few stores. */
static void on_confirm(sl_status st, void *ctx)
{
    confirm_slot *slot = ctx;
    pending_req *pr = slot->pr;
    sl_http_pending *resume = NULL;
    pthread_mutex_lock(&pr->mu);
    if (!pr->decided) {
        pr->res[slot->i] = (int)st;
    }
    pr->outstanding--;
    if (pr->outstanding == 0 && pr->published && !pr->resumed) {
        pr->resumed = true;
        resume = pr->tok;
    }
    pthread_mutex_unlock(&pr->mu);
    if (resume != NULL) {
        sl__http_resume(resume);
    }
    pending_unref(pr);
}

static void timer_unlink(sl_gateway *gw, pending_req *pr)
{
    if (!pr->listed) {
        return;
    }
    if (pr->prev != NULL) {
        pr->prev->next = pr->next;
    } else {
        gw->phead = pr->next;
    }
    if (pr->next != NULL) {
        pr->next->prev = pr->prev;
    } else {
        gw->ptail = pr->prev;
    }
    pr->prev = pr->next = NULL;
    pr->listed = false;
}

/* The timer thread: resumes the requests whose confirm deadline passed, so
 * that they are answered 504. Deadlines are set at insertion under pmu, so
 * the list is in deadline order and only its head is waited for. With the
 * list empty it sleeps one confirm timeout: a request deferred meanwhile
 * has its deadline at least that far away, so a deferral never has to wake
 * this thread (waking it at each empty-to-busy transition cost a context
 * switch for every other request at moderate rates). */
static void *timer_main(void *arg)
{
    sl_gateway *gw = arg;
    sl_clock_wait cw;
    sl__clock_wait_begin(&cw, &gw->pcv, &gw->pmu, gw->clock);
    pthread_mutex_lock(&gw->pmu);
    while (!gw->timer_stop) {
        uint64_t now = mono_ms(gw);
        while (gw->phead != NULL && gw->phead->deadline_ms <= now) {
            pending_req *pr = gw->phead;
            timer_unlink(gw, pr);
            sl_http_pending *resume = NULL;
            pthread_mutex_lock(&pr->mu);
            if (!pr->resumed) {
                pr->resumed = true;
                resume = pr->tok;
            }
            pthread_mutex_unlock(&pr->mu);
            /* pr may be freed from here on (its conclude may run); the
             * token is ours until resumed. */
            if (resume != NULL) {
                sl__http_resume(resume);
            }
        }
        sl__clock_wait(&cw, gw->phead != NULL ? gw->phead->deadline_ms
                                              : now + gw->confirm_timeout_ms);
    }
    pthread_mutex_unlock(&gw->pmu);
    sl__clock_wait_end(&cw);
    return NULL;
}

/* Decide and write the answer from what was confirmed; then the pending
 * rows, the key, the metrics. On a server thread (or the handler's). */
static void conclude(pending_req *pr, sl_http_response *resp, bool cancelled)
{
    exchange *ex = &pr->ex;
    sl_gateway *gw = ex->gw;
    ex->resp = resp;
    pthread_mutex_lock(&pr->mu);
    pr->decided = true;
    pthread_mutex_unlock(&pr->mu);

    size_t n = pr->n;
    sl_event **evs = pr->evs;
    bool ok_one;
    bool *ok = n == 1 ? &ok_one : sl_calloc(n, sizeof *ok);
    if (ok == NULL) {
        problem(ex, 500, "nomem", "Internal Server Error", NULL,
                "out of memory");
        goto settle;
    }
    /* The first failure: a refusal (publishing stopped there), otherwise
     * the first event, in order, not confirmed. */
    sl_status st = pr->refused;
    size_t confirmed = 0;
    for (size_t i = 0; i < n; i++) {
        sl_status r = SL_CLOSED;
        if (i < pr->started) {
            r = pr->res[i] != UNCONFIRMED ? (sl_status)pr->res[i]
                : cancelled               ? SL_CLOSED
                                          : SL_TIMEOUT;
        }
        ok[i] = i < pr->started && r == SL_OK;
        confirmed += ok[i];
        if (i < pr->started && r != SL_OK && st == SL_OK) {
            st = r;
        }
    }
    atomic_fetch_sub(&ex->route->in_transit, (uint64_t)pr->started);
    window_count(gw, ex->route, confirmed, st == SL_FULL ? 1 : 0);
    ex->info.events = confirmed;
    if (confirmed > 0) {
        const char *stack_ids[1];
        const char **ids = n == 1 ? stack_ids : sl_calloc(n, sizeof *ids);
        size_t k = 0;
        for (size_t i = 0; ids && i < n; i++) {
            if (ok[i]) {
                ids[k++] = sl_event_id(evs[i]);
            }
        }
        /* The events are out: a failed status write costs only the
         * projection's first row, not the answer. */
        if (ids != NULL) {
            sl__gw_status_pending(gw->state, ids, k);
        }
        if (ids != stack_ids) {
            sl_free(ids);
        }
    }
    if (st == SL_OK) {
        answer_accepted(ex, evs, n, pr->batch);
    } else if (n > 1) {
        char what[160];
        snprintf(what, sizeof what,
                 "%zu of %zu events were accepted (listed); resend the "
                 "batch, accepted ids are dropped as duplicates",
                 confirmed, n);
        refuse_publish(ex, st, what);
        /* Rebuild the body with the accepted list. */
        json_error_t err;
        json_t *obj = json_loadb(ex->resp->body, ex->resp->body_len, 0, &err);
        if (obj != NULL) {
            json_t *list = json_array();
            for (size_t i = 0; i < n; i++) {
                if (ok[i]) {
                    json_array_append_new(
                        list, accepted_entry(sl_event_id(evs[i]), false));
                }
            }
            json_object_set_new(obj, "accepted", list);
            set_json(ex->resp, ex->resp->status, "application/problem+json",
                     obj);
        }
    } else {
        refuse_publish(ex, st,
                       pr->started > 0 ? "the event was handed to the engine"
                                       : "nothing was published");
    }
    if (ok != &ok_one) {
        sl_free(ok);
    }
settle:
    settle_key(ex);
    record_request(ex, pr->t0_ns);
}

/* The server's call for a deferred answer (sl_http_fill_fn). */
static void fill_deferred(void *ctx, sl_http_response *resp, bool cancelled)
{
    pending_req *pr = ctx;
    sl_gateway *gw = pr->ex.gw;
    pthread_mutex_lock(&gw->pmu);
    timer_unlink(gw, pr);
    pthread_mutex_unlock(&gw->pmu);
    /* Cancelled before anyone resumed it: the token still has to be
     * given back, exactly once. */
    sl_http_pending *resume = NULL;
    pthread_mutex_lock(&pr->mu);
    if (!pr->resumed) {
        pr->resumed = true;
        resume = pr->tok;
    }
    pthread_mutex_unlock(&pr->mu);
    if (resume != NULL) {
        sl__http_resume(resume);
    }
    conclude(pr, resp, cancelled);
    pending_unref(pr);
}

/* Publish the events (taken; @p evs is an array of its own when n > 1)
 * and defer the answer until they are
 * confirmed. Returns true: the answer is concluded here or later. */
static bool publish_deferred(exchange *ex, sl_event **evs, size_t n, bool batch,
                             uint64_t t0_ns)
{
    sl_gateway *gw = ex->gw;
    size_t size =
        sizeof(pending_req) + n * (sizeof(confirm_slot) + sizeof(int));
    pending_req *pr = sl_calloc(1, size);
    if (pr == NULL) {
        for (size_t i = 0; i < n; i++) {
            sl_event_unref(evs[i]);
        }
        if (n > 1) {
            sl_free(evs);
        }
        problem(ex, 500, "nomem", "Internal Server Error", NULL,
                "out of memory");
        return false;
    }
    atomic_init(&pr->refs, 1);
    pthread_mutex_init(&pr->mu, NULL);
    pr->ex = *ex;
    pr->ex.req = NULL;
    pr->ex.content_type = NULL;
    pr->t0_ns = t0_ns;
    pr->batch = batch;
    pr->n = n;
    if (n == 1) {
        pr->one = evs[0];
        pr->evs = &pr->one;
    } else {
        pr->evs = evs;
    }
    confirm_slot *slots = (confirm_slot *)(pr + 1);
    pr->res = (int *)(slots + n);

    for (size_t i = 0; i < n; i++) {
        slots[i] = (confirm_slot){pr, i};
        pthread_mutex_lock(&pr->mu);
        pr->res[i] = UNCONFIRMED;
        pr->outstanding++;
        pthread_mutex_unlock(&pr->mu);
        atomic_fetch_add(&pr->refs, 1);
        sl_status st =
            sl_producer_try_publish(gw->producer, ex->route->channel,
                                    pr->evs[i], on_confirm, &slots[i]);
        if (st != SL_OK) {
            pthread_mutex_lock(&pr->mu);
            pr->outstanding--;
            pthread_mutex_unlock(&pr->mu);
            atomic_fetch_sub(&pr->refs, 1);
            pr->refused = st;
            break;
        }
        atomic_fetch_add(&ex->route->in_transit, 1);
        pr->started = i + 1;
    }
    sl_http_pending *tok =
        pr->started > 0 ? sl__http_defer(ex->req, fill_deferred, pr) : NULL;
    if (tok == NULL) {
        /* Nothing published (a refusal, answered at once), or no memory
         * for the token: what is not confirmed now counts as timed out. */
        conclude(pr, ex->resp, false);
        pending_unref(pr);
        return true;
    }
    pthread_mutex_lock(&gw->pmu);
    pr->deadline_ms = mono_ms(gw) + gw->confirm_timeout_ms;
    pr->listed = true;
    pr->prev = gw->ptail;
    if (gw->ptail != NULL) {
        gw->ptail->next = pr;
    } else {
        gw->phead = pr; /* the timer wakes by then anyway (timer_main) */
    }
    gw->ptail = pr;
    pthread_mutex_unlock(&gw->pmu);
    /* Confirmed already (the race with the suspension): resume now, and
     * the server answers before it would suspend. */
    sl_http_pending *resume = NULL;
    pthread_mutex_lock(&pr->mu);
    pr->tok = tok;
    pr->published = true;
    if (pr->outstanding == 0 && !pr->resumed) {
        pr->resumed = true;
        resume = tok;
    }
    pthread_mutex_unlock(&pr->mu);
    if (resume != NULL) {
        sl__http_resume(resume);
    }
    return true;
}

/* Returns true when the answer is (or will be) concluded by the publish
 * path, which also settles the key and records the request. */
static bool serve_route(exchange *ex, uint64_t t0_ns)
{
    const sl_http_request *req = ex->req;
    /* The route's deadline bounds every request's: a wait longer than it
     * is refused before the body is looked at. */
    if (!admit(ex) || !admit_by_wait(ex, ex->route->deadline_ms, 1)) {
        return false;
    }
    ex->content_type = sl__http_header(req, "Content-Type");
    char mt[128];
    sl__gw_media_type(ex->content_type, mt, sizeof mt);
    bool binary = sl__http_header(req, "ce-specversion") != NULL;
    sl_gw_body_kind kind = sl__gw_body_kind(mt, binary);
    if (kind == SL_GW_BODY_MISSING || kind == SL_GW_BODY_UNSUPPORTED) {
        problem(ex, 415, "unsupported_media_type", "Unsupported Media Type",
                NULL,
                "Content-Type %s%s%s is not accepted: send application/json, "
                "a CloudEvent in binary mode (ce- headers), "
                "application/cloudevents+json or "
                "application/cloudevents-batch+json",
                kind == SL_GW_BODY_MISSING ? "(none)" : "'",
                kind == SL_GW_BODY_MISSING ? "" : mt,
                kind == SL_GW_BODY_MISSING ? "" : "'");
        return false;
    }
    if (!claim_key(ex, kind)) {
        return false;
    }
    sl_event *one = NULL;
    sl_event **evs = &one;
    size_t n = 1;
    switch (kind) {
    case SL_GW_BODY_JSON:
        one = decode_json(ex);
        break;
    case SL_GW_BODY_BINARY:
        one = decode_binary(ex);
        break;
    case SL_GW_BODY_STRUCTURED:
        one = decode_structured(ex);
        break;
    default:
        evs = decode_batch(ex, &n);
        break;
    }
    if (evs == NULL || evs[0] == NULL) {
        return false;
    }
    if (n == 1 && evs != &one) { /* a batch of one */
        one = evs[0];
        sl_free(evs);
        evs = &one;
    }
    for (size_t i = 0; i < n; i++) {
        fill_trace(ex, evs[i]);
    }
    uint64_t now = wall_ms(ex->gw);
    uint64_t earliest = apply_deadline(ex, evs, n, now);
    uint64_t budget = earliest > now ? earliest - now : 0;
    if ((budget < ex->route->deadline_ms || n > 1) &&
        !admit_by_wait(ex, budget, n)) {
        for (size_t i = 0; i < n; i++) {
            sl_event_unref(evs[i]);
        }
        if (evs != &one) {
            sl_free(evs);
        }
        return false;
    }
    return publish_deferred(ex, evs, n, kind == SL_GW_BODY_BATCH, t0_ns);
}

static void handle(const sl_http_request *req, sl_http_response *resp,
                   void *ctx)
{
    uint64_t t0 = sl_time_mono_ns();
    exchange ex = {
        .gw = ctx,
        .req = req,
        .resp = resp,
        .info = {.route = "", .method = req->method},
    };
    if (strncmp(req->path, STATUS_PREFIX, STATUS_PREFIX_LEN) == 0) {
        serve_status(&ex);
    } else if ((ex.route = match_route(&ex)) != NULL) {
        ex.info.route = ex.route->path;
        if (serve_route(&ex, t0)) {
            return;
        }
        settle_key(&ex);
    }
    record_request(&ex, t0);
}

/* ---- options and lifetime ------------------------------------------- */

static bool method_is_valid(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 16) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (m[i] < 'A' || m[i] > 'Z') {
            return false;
        }
    }
    return true;
}

static bool path_is_valid(const char *p)
{
    size_t n = p ? strlen(p) : 0;
    if (n == 0 || n > 200 || p[0] != '/') {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7F ||
            p[i] == '?' || p[i] == '#') {
            return false;
        }
    }
    return true;
}

static bool channel_is_valid(const char *c)
{
    size_t n = c ? strlen(c) : 0;
    if (n == 0) {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        char ch = c[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
              (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' ||
              ch == '-')) {
            return false;
        }
    }
    return true;
}

sl_status sl_gateway_opts_check(const sl_gateway_opts *opts, sl_diag *diag)
{
    if (opts == NULL) {
        return sl_diag_set(diag, SL_CONFIG, "gateway: no options");
    }
    if (opts->nroutes == 0 || opts->routes == NULL) {
        return sl_diag_set(diag, SL_CONFIG, "gateway: no routes");
    }
    if (opts->client_rate_per_s < 0 || opts->client_burst < 0 ||
        opts->client_rate_per_s != opts->client_rate_per_s) {
        return sl_diag_set(diag, SL_CONFIG,
                           "gateway: client rate and burst must be >= 0");
    }
    if (opts->client_header != NULL && opts->client_header[0] == '\0') {
        return sl_diag_set(diag, SL_CONFIG, "gateway: client_header is empty");
    }
    for (size_t i = 0; i < opts->nroutes; i++) {
        const sl_gateway_route *r = &opts->routes[i];
        const char *method = r->method ? r->method : "POST";
        const char *path = r->path ? r->path : "";
        if (!path_is_valid(r->path)) {
            return sl_diag_set(diag, SL_CONFIG,
                               "gateway route '%s': a path starts with '/' "
                               "and has no spaces, '?' or '#'",
                               path);
        }
        if (strcmp(path, "/status") == 0 ||
            strncmp(path, STATUS_PREFIX, STATUS_PREFIX_LEN) == 0) {
            return sl_diag_set(diag, SL_CONFIG,
                               "gateway route '%s': /status is reserved for "
                               "the status endpoint",
                               path);
        }
        if (!method_is_valid(method)) {
            return sl_diag_set(diag, SL_CONFIG,
                               "gateway route '%s': method '%s' is not an "
                               "upper-case HTTP method",
                               path, method);
        }
        if (!channel_is_valid(r->channel)) {
            return sl_diag_set(diag, SL_CONFIG,
                               "gateway route '%s': channel '%s' is not a "
                               "valid channel name",
                               path, r->channel ? r->channel : "");
        }
        if ((r->type != NULL && r->type[0] == '\0') ||
            (r->source != NULL && r->source[0] == '\0')) {
            return sl_diag_set(diag, SL_CONFIG,
                               "gateway route '%s': type and source must not "
                               "be empty",
                               path);
        }
        for (size_t j = 0; j < i; j++) {
            const sl_gateway_route *o = &opts->routes[j];
            if (strcmp(o->path, path) == 0 &&
                strcmp(o->method ? o->method : "POST", method) == 0) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "gateway route %s %s is declared twice",
                                   method, path);
            }
        }
        sl_diag fd = {0};
        if (sl__gw_fields_check(r->fields, r->nfields, &fd) != SL_OK) {
            return sl_diag_set(diag, SL_CONFIG, "gateway route '%s': %s", path,
                               fd.msg);
        }
    }
    return SL_OK;
}

static void free_routes(route_rt *routes, size_t n)
{
    for (size_t i = 0; routes && i < n; i++) {
        route_rt *r = &routes[i];
        sl_free(r->method);
        sl_free(r->path);
        sl_free(r->channel);
        sl_free(r->type);
        sl_free(r->source);
        for (size_t j = 0; r->fields && j < r->nfields; j++) {
            sl_gateway_field *f = &r->fields[j];
            sl_free((char *)f->name);
            for (size_t k = 0; f->enum_values && k < f->nenum; k++) {
                sl_free((char *)f->enum_values[k]);
            }
            sl_free((void *)f->enum_values);
        }
        sl_free(r->fields);
        pthread_mutex_destroy(&r->mu);
    }
    sl_free(routes);
}

static sl_status copy_route(route_rt *dst, const sl_gateway_route *src)
{
    pthread_mutex_init(&dst->mu, NULL);
    char source[256];
    snprintf(source, sizeof source, "/gateway%s", src->path);
    dst->method = sl_strdup(src->method ? src->method : "POST");
    dst->path = sl_strdup(src->path);
    dst->channel = sl_strdup(src->channel);
    dst->type = sl_strdup(src->type ? src->type : src->channel);
    dst->source = sl_strdup(src->source ? src->source : source);
    dst->deadline_ms =
        src->deadline_ms ? src->deadline_ms : DEFAULT_ROUTE_DEADLINE_MS;
    dst->max_queue_wait_ms = src->max_queue_wait_ms;
    dst->no_wait_admission = src->no_wait_admission;
    atomic_init(&dst->in_transit, 0);
    if (!dst->method || !dst->path || !dst->channel || !dst->type ||
        !dst->source) {
        return SL_NOMEM;
    }
    if (src->nfields == 0) {
        return SL_OK;
    }
    dst->fields = sl_calloc(src->nfields, sizeof *dst->fields);
    if (dst->fields == NULL) {
        return SL_NOMEM;
    }
    dst->nfields = src->nfields;
    for (size_t j = 0; j < src->nfields; j++) {
        const sl_gateway_field *sf = &src->fields[j];
        sl_gateway_field *df = &dst->fields[j];
        *df = *sf;
        df->enum_values = NULL;
        df->nenum = 0;
        if ((df->name = sl_strdup(sf->name)) == NULL) {
            return SL_NOMEM;
        }
        if (sf->nenum == 0) {
            continue;
        }
        char **vals = sl_calloc(sf->nenum, sizeof *vals);
        if (vals == NULL) {
            return SL_NOMEM;
        }
        df->enum_values = (const char *const *)vals;
        df->nenum = sf->nenum;
        for (size_t k = 0; k < sf->nenum; k++) {
            if ((vals[k] = sl_strdup(sf->enum_values[k])) == NULL) {
                return SL_NOMEM;
            }
        }
    }
    return SL_OK;
}

sl_status sl_gateway_create(const sl_gateway_opts *opts, sl_gateway **out,
                            sl_diag *diag)
{
    if (opts == NULL || out == NULL || opts->producer == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "gateway: options, a producer and out are "
                           "required");
    }
    sl_status st = sl_gateway_opts_check(opts, diag);
    if (st != SL_OK) {
        return st;
    }
    sl_gateway *gw = sl_calloc(1, sizeof *gw);
    if (gw == NULL) {
        return sl_diag_set(diag, SL_NOMEM, "out of memory");
    }
    pthread_mutex_init(&gw->pmu, NULL);
    sl__cond_init_mono(&gw->pcv);
    gw->producer = opts->producer;
    gw->eng = opts->eng;
    gw->clock = opts->clock;
    gw->max_batch = opts->max_batch ? opts->max_batch : DEFAULT_MAX_BATCH;
    gw->confirm_timeout_ms = opts->confirm_timeout_ms
                                 ? opts->confirm_timeout_ms
                                 : DEFAULT_CONFIRM_TIMEOUT_MS;
    /* A claim outlives its request by far only when the process died with
     * it: then a retry may take the key over. */
    gw->idem_lease_ms = 2 * gw->confirm_timeout_ms + 1000;
    gw->is_draining = opts->is_draining;
    gw->draining_ctx = opts->draining_ctx;
    gw->draining_retry_after_ms = opts->draining_retry_after_ms
                                      ? opts->draining_retry_after_ms
                                      : DEFAULT_DRAINING_RETRY_AFTER_MS;
    gw->full_retry_after_ms = opts->full_retry_after_ms;
    gw->full_retry_after_ctx = opts->full_retry_after_ctx;
    gw->max_retry_after_ms = opts->max_retry_after_ms
                                 ? opts->max_retry_after_ms
                                 : DEFAULT_MAX_RETRY_AFTER_MS;
    gw->predict_wait_ms = opts->predict_wait_ms;
    gw->predict_wait_ctx = opts->predict_wait_ctx;
    gw->observe = opts->observe;
    gw->observe_ctx = opts->observe_ctx;
    if (opts->metrics != NULL) {
        if ((st = sl__std_metrics_declare(opts->metrics, &gw->sm, diag)) !=
            SL_OK) {
            goto fail;
        }
        gw->has_metrics = true;
    }

    gw->routes = sl_calloc(opts->nroutes, sizeof *gw->routes);
    if (gw->routes == NULL) {
        st = sl_diag_set(diag, SL_NOMEM, "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < opts->nroutes; i++) {
        gw->nroutes = i + 1;
        if ((st = copy_route(&gw->routes[i], &opts->routes[i])) != SL_OK) {
            sl_diag_set(diag, st, "out of memory");
            goto fail;
        }
    }
    if (opts->client_header != NULL &&
        (gw->client_header = sl_strdup(opts->client_header)) == NULL) {
        st = sl_diag_set(diag, SL_NOMEM, "out of memory");
        goto fail;
    }
    if (opts->client_rate_per_s > 0) {
        sl_keyed_bucket_opts ko = {
            .rate_per_s = opts->client_rate_per_s,
            .burst = opts->client_burst > 0 ? opts->client_burst
                                            : 2 * opts->client_rate_per_s,
            .max_keys = opts->max_clients,
        };
        if ((st = sl_keyed_bucket_create(&ko, &gw->clients)) != SL_OK) {
            sl_diag_set(diag, st, "gateway: client rate limit: %s",
                        sl_status_str(st));
            goto fail;
        }
    }
    if (opts->state != NULL) {
        gw->state = opts->state;
    } else {
        sl_gateway_state_opts so = {
            .idempotency_ttl_ms = opts->idempotency_ttl_ms,
            .clock = opts->clock,
        };
        st = sl_gateway_state_open(
            opts->state_path ? opts->state_path : ":memory:", &so, &gw->state,
            diag);
        if (st != SL_OK) {
            goto fail;
        }
        gw->own_state = true;
    }
    if (pthread_create(&gw->timer, NULL, timer_main, gw) != 0) {
        st = sl_diag_set(diag, SL_NOMEM, "gateway: cannot start a thread");
        goto fail;
    }
    gw->timer_started = true;
    sl_http_server_opts so = {
        .listen = opts->listen ? opts->listen : DEFAULT_LISTEN,
        .max_body = opts->max_body,
        .threads = opts->threads,
        .max_conns = opts->max_conns,
        .handler = handle,
        .ctx = gw,
        .clock = gw->clock,
    };
    if ((st = sl__http_server_start(&so, &gw->srv, diag)) != SL_OK) {
        goto fail;
    }
    *out = gw;
    return SL_OK;
fail:
    sl_gateway_destroy(gw);
    return st;
}

size_t sl__gateway_confirms_awaited(sl_gateway *gw)
{
    size_t n = 0;
    pthread_mutex_lock(&gw->pmu);
    for (const pending_req *pr = gw->phead; pr != NULL; pr = pr->next) {
        n++;
    }
    pthread_mutex_unlock(&gw->pmu);
    return n;
}

uint16_t sl_gateway_port(const sl_gateway *gw)
{
    return gw ? sl__http_server_port(gw->srv) : 0;
}

sl_gateway_state *sl_gateway_get_state(sl_gateway *gw)
{
    return gw ? gw->state : NULL;
}

void sl_gateway_destroy(sl_gateway *gw)
{
    if (gw == NULL) {
        return;
    }
    /* Every deferred request is concluded when the server has stopped (its
     * fill runs, cancelled if need be); confirms still to come touch only
     * their own pending_req. */
    sl__http_server_stop(gw->srv);
    if (gw->timer_started) {
        pthread_mutex_lock(&gw->pmu);
        gw->timer_stop = true;
        pthread_cond_signal(&gw->pcv);
        pthread_mutex_unlock(&gw->pmu);
        pthread_join(gw->timer, NULL);
    }
    pthread_cond_destroy(&gw->pcv);
    pthread_mutex_destroy(&gw->pmu);
    if (gw->own_state) {
        sl_gateway_state_close(gw->state);
    }
    sl_keyed_bucket_destroy(gw->clients);
    free_routes(gw->routes, gw->nroutes);
    sl_free(gw->client_header);
    sl_free(gw);
}
