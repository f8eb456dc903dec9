/* The admin listener. Its state is the registry (borrowed) and the
 * callbacks through which it asks the service host about readiness and the
 * consumer groups; the drain rates it reports are the host's, sampled on a
 * fixed period whether or not anyone asks. */
#include "http/admin.h"

#include "http/server.h"
#include "obs/std_metrics.h"
#include "sluice/alloc.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_LISTEN "127.0.0.1:9090"
#define DEFAULT_TARGET 5000
#define DEFAULT_MIN_REPLICAS 2
#define DEFAULT_MAX_REPLICAS 20
#define DEFAULT_THREADS 2
/* Reals are printed with 15 significant digits: a rate rounded to one
 * decimal reads 2360.6, not 2360.5999999999999. */
#define JSON_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

struct sl_admin {
    sl_admin_opts src; /* the callbacks and their ctx */
    sl_metrics *reg;
    sl_std_metrics sm;
    sl_http_server *srv;
    uint64_t target;
    uint32_t min_replicas;
    uint32_t max_replicas;
};

/* Runs at each /metrics render: gauges from the service's callbacks. */
static void collect(sl_metrics *reg, void *ctx)
{
    sl_admin *adm = ctx;
    const sl_admin_opts *src = &adm->src;
    sl_gauge_set(sl_metric_get(adm->sm.ready, NULL),
                 src->not_ready_reason(src->ctx) == NULL ? 1 : 0);
    size_t n = src->group_count(src->ctx);
    for (size_t i = 0; i < n; i++) {
        const char *ch = NULL;
        const char *g = NULL;
        src->group_name(i, &ch, &g, src->ctx);
        sl_depth d;
        if (src->group_depth(i, &d, src->ctx) != SL_OK) {
            continue;
        }
        sl_metric_family *qd = adm->sm.queue_depth;
        sl_gauge_set(sl_metric_get(qd, SL_LABELS(ch, g, "ready")),
                     (double)d.ready);
        sl_gauge_set(sl_metric_get(qd, SL_LABELS(ch, g, "delayed")),
                     (double)d.delayed);
        sl_gauge_set(sl_metric_get(qd, SL_LABELS(ch, g, "in_flight")),
                     (double)d.in_flight);
    }
}

/* ---- endpoints --------------------------------------------------------- */

static void json_answer(sl_http_response *resp, int status, json_t *doc)
{
    char *text = doc != NULL ? json_dumps(doc, JSON_FLAGS) : NULL;
    json_decref(doc);
    if (text == NULL) {
        sl__http_problem(resp, 500, "Internal Server Error", "out of memory");
        return;
    }
    sl__http_set_body(resp, status, "application/json", text, strlen(text));
    free(text); /* jansson's allocator */
}

static void get_metrics(sl_admin *adm, sl_http_response *resp)
{
    char *text = NULL;
    size_t len = 0;
    if (sl_metrics_render_text(adm->reg, &text, &len) != SL_OK) {
        sl__http_problem(resp, 500, "Internal Server Error", "out of memory");
        return;
    }
    /* The rendered text is sl_malloc'd: hand it over without a copy. */
    resp->status = 200;
    resp->content_type = SL_METRICS_CONTENT_TYPE;
    resp->body = text;
    resp->body_len = len;
}

static void get_readyz(sl_admin *adm, sl_http_response *resp)
{
    const char *why = adm->src.not_ready_reason(adm->src.ctx);
    if (why != NULL) {
        sl__http_problem(resp, 503, "Service Unavailable", why);
        sl__http_set_header(resp, "Cache-Control", "no-store");
        return;
    }
    static const char ready[] = "{\"status\":\"ready\"}";
    sl__http_set_body(resp, 200, "application/json", ready, sizeof ready - 1);
    sl__http_set_header(resp, "Cache-Control", "no-store");
}

/* Find the consumer for group (and channel when given). Returns the index,
 * or -1 unknown, -2 ambiguous. */
static long find_group(sl_admin *adm, const char *group, const char *channel)
{
    long found = -1;
    const sl_admin_opts *src = &adm->src;
    size_t n = src->group_count(src->ctx);
    for (size_t i = 0; i < n; i++) {
        const char *ch = NULL;
        const char *g = NULL;
        src->group_name(i, &ch, &g, src->ctx);
        if (strcmp(g, group) != 0 ||
            (channel != NULL && strcmp(ch, channel) != 0)) {
            continue;
        }
        if (found >= 0) {
            return -2;
        }
        found = (long)i;
    }
    return found;
}

static uint64_t desired_replicas(const sl_admin *adm, uint64_t depth)
{
    uint64_t want = depth / adm->target + (depth % adm->target != 0);
    if (want < adm->min_replicas) {
        want = adm->min_replicas;
    }
    if (want > adm->max_replicas) {
        want = adm->max_replicas;
    }
    return want;
}

static void get_scale(sl_admin *adm, const sl_http_request *req,
                      sl_http_response *resp)
{
    const char *group = sl__http_query(req, "group");
    const char *channel = sl__http_query(req, "channel");
    if (group == NULL || group[0] == '\0') {
        sl__http_problem(resp, 400, "Bad Request",
                         "the query needs group=NAME (and channel=NAME when "
                         "the group is on several channels)");
        return;
    }
    long i = find_group(adm, group, channel);
    if (i == -2) {
        sl__http_problem(resp, 400, "Bad Request",
                         "the group is on several channels: add channel=");
        return;
    }
    if (i < 0) {
        char detail[300];
        snprintf(detail, sizeof detail, "no consumer group '%.120s'%s%.120s",
                 group, channel ? " on channel " : "", channel ? channel : "");
        sl__http_problem(resp, 404, "Not Found", detail);
        return;
    }
    const sl_admin_opts *src = &adm->src;
    const char *ch = NULL;
    const char *g = NULL;
    src->group_name((size_t)i, &ch, &g, src->ctx);
    sl_depth d = {0};
    sl_status st = src->group_depth((size_t)i, &d, src->ctx);
    if (st != SL_OK) {
        sl__http_problem(resp, 503, "Service Unavailable", sl_status_str(st));
        return;
    }
    /* One decimal of the rate is all a scaler can use; seconds are whole,
     * rounded up (docs/observability.md). */
    double measured = src->drain_rate_per_s != NULL
                          ? src->drain_rate_per_s((size_t)i, src->ctx)
                          : 0;
    double rate = round(measured * 10) / 10;
    uint64_t backlog = d.ready + d.delayed + d.in_flight;
    json_t *doc = json_object();
    json_t *drain = backlog == 0 ? json_integer(0)
                    : rate > 0
                        ? json_integer((json_int_t)ceil((double)backlog / rate))
                        : json_null();
    int bad = json_object_set_new(doc, "group", json_string(g));
    bad |= json_object_set_new(doc, "channel", json_string(ch));
    bad |= json_object_set_new(doc, "depth", json_integer((json_int_t)d.ready));
    bad |= json_object_set_new(doc, "in_flight",
                               json_integer((json_int_t)d.in_flight));
    bad |= json_object_set_new(doc, "delayed",
                               json_integer((json_int_t)d.delayed));
    bad |= json_object_set_new(doc, "drain_rate_per_s", json_real(rate));
    bad |= json_object_set_new(doc, "seconds_to_drain", drain);
    bad |= json_object_set_new(doc, "target_per_replica",
                               json_integer((json_int_t)adm->target));
    bad |= json_object_set_new(
        doc, "desired_replicas",
        json_integer((json_int_t)desired_replicas(adm, d.ready)));
    if (bad != 0) {
        json_decref(doc);
        doc = NULL;
    }
    json_answer(resp, 200, doc);
    sl__http_set_header(resp, "Cache-Control", "no-store");
}

/* A route label for the request metrics; unknown paths share one, so a
 * scanner cannot create series. */
static const char *route_of(const char *path)
{
    static const char *routes[] = {"/metrics", "/healthz", "/readyz", "/scale"};
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i]) == 0) {
            return routes[i];
        }
    }
    return "other";
}

static void handle(const sl_http_request *req, sl_http_response *resp,
                   void *ctx)
{
    sl_admin *adm = ctx;
    double start = sl__obs_now_s();
    const char *route = route_of(req->path);
    if (strcmp(route, "other") == 0) {
        sl__http_problem(resp, 404, "Not Found",
                         "admin endpoints: /metrics /healthz /readyz /scale");
    } else if (strcmp(req->method, "GET") != 0 &&
               strcmp(req->method, "HEAD") != 0) {
        sl__http_problem(resp, 405, "Method Not Allowed",
                         "admin endpoints answer GET only");
        sl__http_set_header(resp, "Allow", "GET, HEAD");
    } else if (strcmp(route, "/metrics") == 0) {
        get_metrics(adm, resp);
    } else if (strcmp(route, "/healthz") == 0) {
        static const char ok[] = "{\"status\":\"ok\"}";
        sl__http_set_body(resp, 200, "application/json", ok, sizeof ok - 1);
    } else if (strcmp(route, "/readyz") == 0) {
        get_readyz(adm, resp);
    } else {
        get_scale(adm, req, resp);
    }
    char code[8];
    snprintf(code, sizeof code, "%d", resp->status ? resp->status : 500);
    sl_counter_inc(
        sl_metric_get(adm->sm.http_requests, SL_LABELS("admin", route, code)));
    sl_histogram_observe(
        sl_metric_get(adm->sm.http_seconds, SL_LABELS("admin", route)),
        sl__obs_now_s() - start);
}

/* ---- lifecycle --------------------------------------------------------- */

sl_status sl__admin_start(const sl_admin_opts *opts, sl_admin **out,
                          sl_diag *diag)
{
    if (opts == NULL || out == NULL || opts->not_ready_reason == NULL ||
        opts->group_count == NULL || opts->group_name == NULL ||
        opts->group_depth == NULL) {
        return sl_diag_set(diag, SL_INVALID,
                           "admin listener needs the service's callbacks");
    }
    sl_admin *adm = sl_calloc(1, sizeof *adm);
    if (adm == NULL) {
        return SL_NOMEM;
    }
    adm->src = *opts;
    adm->reg = opts->reg;
    adm->target =
        opts->target_per_replica ? opts->target_per_replica : DEFAULT_TARGET;
    adm->min_replicas =
        opts->min_replicas ? opts->min_replicas : DEFAULT_MIN_REPLICAS;
    adm->max_replicas =
        opts->max_replicas ? opts->max_replicas : DEFAULT_MAX_REPLICAS;
    if (adm->max_replicas < adm->min_replicas) {
        adm->max_replicas = adm->min_replicas;
    }
    sl_status st = SL_OK;
    if (adm->reg == NULL) {
        st = sl_diag_set(diag, SL_INVALID, "admin: no metrics registry");
        goto free_admin;
    }
    if ((st = sl__std_metrics_declare(adm->reg, &adm->sm, diag)) != SL_OK) {
        goto free_admin;
    }
    if ((st = sl_metrics_add_collector(adm->reg, collect, adm)) != SL_OK) {
        goto free_admin;
    }
    sl_http_server_opts so = {
        .listen = opts->listen ? opts->listen : DEFAULT_LISTEN,
        .max_body = 4096,
        .threads = opts->threads ? opts->threads : DEFAULT_THREADS,
        .max_conns = 64,
        .handler = handle,
        .ctx = adm,
    };
    if ((st = sl__http_server_start(&so, &adm->srv, diag)) != SL_OK) {
        goto remove_collector;
    }
    *out = adm;
    return SL_OK;
remove_collector:
    sl_metrics_remove_collector(adm->reg, collect, adm);
free_admin:
    sl_free(adm);
    return st;
}

uint16_t sl__admin_port(const sl_admin *adm)
{
    return adm != NULL ? sl__http_server_port(adm->srv) : 0;
}

void sl__admin_stop(sl_admin *adm)
{
    if (adm == NULL) {
        return;
    }
    sl__http_server_stop(adm->srv);
    sl_metrics_remove_collector(adm->reg, collect, adm);
    sl_free(adm);
}
