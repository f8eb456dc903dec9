/* The service host: builds engine, producer and consumers from a config,
 * and feeds the gateway and the admin listener through their callbacks.
 * The composition root: the only place that knows every layer. */
#include "sluice/service.h"

#include "host/handlers.h"
#include "host/service_int.h"
#include "http/admin.h"
#include "http/gateway_state.h"
#include "http/server.h"
#include "runtime/drain_rate.h"
#include "sluice/alloc.h"
#include "sluice/gateway.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

/* A group's backlog is read from the engine at most this often for the
 * gateway's admission (a broker's depth is a round trip); the events the
 * gateway is still publishing are counted on top by the gateway. */
#define BACKLOG_MAX_AGE_MS 5
/* The wait is predicted at 90% of the measured rate, so that an event
 * admitted at the edge of its deadline still makes it when the rate
 * wobbles by a few percent (a slower host, a longer commit). */
#define RATE_HEADROOM 0.9

typedef struct bound_consumer {
    const sl_config_consumer *cc;
    sl_bound_handler handler;
    sl_consumer *consumer;
} bound_consumer;

struct sl_service {
    const sl_config *cfg;
    sl_engine *eng;
    sl_producer *producer;
    sl_metrics *metrics;
    /* HTTP: the gateway (when routes are configured), its state (also the
     * status projection consumers report to), the admin listener. */
    sl_gateway_state *gstate;
    sl_gateway_route *routes;
    sl_gateway_field *fields;
    sl_gateway *gw;
    sl_admin *admin;
    /* Drain rates of the groups, sampled once a second from start to
     * destroy: `/scale` reports them, the gateway admits by them. */
    sl_drain *drain;
    const sl_clock *clock; /* of the sampler; NULL = monotonic */
    bound_consumer *consumers;
    size_t nconsumers;
    atomic_bool started;
    atomic_bool draining;
    bool stuck; /* a handler outlived the drain */
};

static bool is_draining(void *ctx)
{
    return atomic_load(&((sl_service *)ctx)->draining);
}

/* Consumers report statuses here; the gateway serves them. Queued and
 * group committed with the gateway's "pending" rows (a transaction per
 * status cost a consumer more than handling an order); the gateway's
 * GET /status/{id} sees a status at once. */
static void report_status(const char *key, const char *status,
                          const char *detail, void *ctx)
{
    sl_service *svc = ctx;
    sl_status st = sl__gw_status_queue(svc->gstate, key, status, detail);
    if (st != SL_OK) {
        sl_logf(SL_LOG_WARN, "service", "status of %s not recorded: %s", key,
                sl_status_str(st));
    }
}

static bool wants_status(const sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        const sl_config_consumer *cc = &cfg->consumers[i];
        if (cc->status_start || cc->status_ack || cc->status_dead) {
            return true;
        }
    }
    return cfg->nroutes > 0;
}

static sl_status field_type(const sl_config *cfg, size_t route, size_t field,
                            sl_json_type *out, sl_diag *diag)
{
    const sl_config_field *cf = &cfg->routes[route].fields[field];
    if (sl_json_type_from_name(cf->type, out) == SL_OK) {
        return SL_OK;
    }
    char key[80];
    snprintf(key, sizeof key, "gateway.routes[%zu].fields[%zu].type", route,
             field);
    return sl_config_fail(cfg, &cf->type, cf->pos, key, SL_CONFIG, diag,
                          "unknown type '%s'", cf->type);
}

/* A listen address of the configuration, checked as the server reads it. */
static sl_status check_listen(const sl_config *cfg, char *const *field,
                              const char *key, sl_diag *diag)
{
    sl_diag d = {0};
    if (sl__http_listen_check(*field, &d) != SL_OK) {
        return sl_config_fail(cfg, field, (sl_config_pos){0, 0}, key, SL_CONFIG,
                              diag, "%s", d.msg);
    }
    return SL_OK;
}

/* The configuration's addresses (engine URL, listen addresses) and route
 * field types: what sl_service_create and sl_service_start would refuse,
 * checked before anything is opened. */
static sl_status check_addresses(const sl_config *cfg, sl_diag *diag)
{
    sl_diag d = {0};
    if (sl_engine_check_url(cfg->engine_url, &d) != SL_OK) {
        return sl_config_fail(cfg, &cfg->engine_url, (sl_config_pos){0, 0},
                              "engine.url", SL_CONFIG, diag, "%s", d.msg);
    }
    sl_status st = SL_OK;
    if (cfg->nroutes > 0) {
        st = check_listen(cfg, &cfg->gateway_listen, "gateway.listen", diag);
    }
    if (st == SL_OK && cfg->admin_enabled) {
        st = check_listen(cfg, &cfg->admin_listen, "admin.listen", diag);
    }
    for (size_t i = 0; i < cfg->nroutes && st == SL_OK; i++) {
        for (size_t k = 0; k < cfg->routes[i].nfields && st == SL_OK; k++) {
            sl_json_type type;
            st = field_type(cfg, i, k, &type, diag);
        }
    }
    return st;
}

sl_status sl_service_check(const sl_config *cfg, sl_diag *diag)
{
    if (cfg == NULL) {
        return sl_diag_set(diag, SL_INVALID, "no configuration");
    }
    sl_status st = check_addresses(cfg, diag);
    for (size_t i = 0; i < cfg->nconsumers && st == SL_OK; i++) {
        st = sl__handler_check(cfg, &cfg->consumers[i], diag);
    }
    return st;
}

/* The gateway's routes, from the configuration (strings stay borrowed). */
static sl_status build_routes(sl_service *svc, sl_diag *diag)
{
    const sl_config *cfg = svc->cfg;
    size_t nfields = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        nfields += cfg->routes[i].nfields;
    }
    svc->routes = sl_calloc(cfg->nroutes, sizeof *svc->routes);
    svc->fields = sl_calloc(nfields ? nfields : 1, sizeof *svc->fields);
    if (svc->routes == NULL || svc->fields == NULL) {
        return SL_NOMEM;
    }
    sl_gateway_field *f = svc->fields;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const sl_config_route *cr = &cfg->routes[i];
        svc->routes[i] = (sl_gateway_route){
            .method = cr->method,
            .path = cr->path,
            .channel = cr->channel,
            .type = cr->type,
            .source = cr->source,
            .fields = f,
            .nfields = cr->nfields,
            .deadline_ms = cr->deadline_ms,
            .max_queue_wait_ms = cr->max_queue_wait_ms,
            .no_wait_admission = !cr->admit_by_wait,
        };
        for (size_t k = 0; k < cr->nfields; k++, f++) {
            const sl_config_field *cf = &cr->fields[k];
            sl_json_type type = SL_JSON_ANY;
            sl_status st = field_type(cfg, i, k, &type, diag);
            if (st != SL_OK) {
                return st;
            }
            *f = (sl_gateway_field){
                .name = cf->name,
                .type = type,
                .required = cf->required,
                .has_min = cf->has_minimum,
                .has_max = cf->has_maximum,
                .min = cf->minimum,
                .max = cf->maximum,
                .min_length = cf->min_length,
                .max_length = cf->max_length,
                .enum_values = (const char *const *)cf->enum_values,
                .nenum = cf->nenum,
            };
        }
    }
    return SL_OK;
}

static sl_status declare_topology(sl_service *svc, sl_diag *diag)
{
    const sl_config *cfg = svc->cfg;
    for (size_t i = 0; i < cfg->nchannels; i++) {
        sl_channel_opts co = {.name = cfg->channels[i].name,
                              .max_length = cfg->channels[i].max_length,
                              .max_bytes = cfg->channels[i].max_bytes};
        sl_status st = sl_engine_declare_channel(svc->eng, &co, diag);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

sl_status sl_service_create(const sl_config *cfg, sl_service **out,
                            sl_diag *diag)
{
    sl_service *svc = sl_calloc(1, sizeof *svc);
    if (svc == NULL) {
        return SL_NOMEM;
    }
    svc->cfg = cfg;
    sl_status st = check_addresses(cfg, diag);
    if (st != SL_OK) {
        goto fail;
    }
    /* Handlers first: a plugin that does not load is a configuration error
     * that should leave nothing behind, not even an empty store. */
    svc->consumers = sl_calloc(cfg->nconsumers ? cfg->nconsumers : 1,
                               sizeof *svc->consumers);
    if (svc->consumers == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        svc->consumers[i].cc = &cfg->consumers[i];
        svc->nconsumers = i + 1;
        if ((st = sl__handler_bind(cfg, &cfg->consumers[i],
                                   &svc->consumers[i].handler, diag)) !=
            SL_OK) {
            goto fail;
        }
    }
    sl_engine_opts eo = {
        .sync = cfg->sync,
        .commit_interval_ms = (uint32_t)cfg->commit_interval_ms,
        .max_event_size = cfg->max_event_size,
        .dedup_window_ms = cfg->dedup_window_ms,
        .memory_budget = cfg->memory_budget,
    };
    sl_diag d = {0};
    if ((st = sl_engine_open(cfg->engine_url, &eo, &svc->eng, &d)) != SL_OK) {
        /* Name the key: a broker that refuses or a store that cannot be
         * opened is found through engine.url. */
        sl_config_fail(cfg, &cfg->engine_url, (sl_config_pos){0, 0},
                       "engine.url", st, diag, "%s", d.msg);
        goto fail;
    }
    if ((st = declare_topology(svc, diag)) != SL_OK) {
        goto fail;
    }
    if ((st = sl_metrics_create(&svc->metrics)) != SL_OK) {
        goto fail;
    }
    sl_breaker_opts bo = {.failure_threshold = cfg->breaker_failures,
                          .open_ms = cfg->breaker_open_ms};
    sl_producer_opts po = {.max_in_flight = cfg->max_in_flight,
                           .publish_timeout_ms = cfg->publish_timeout_ms,
                           .rate_per_s = cfg->rate_per_s,
                           .burst = cfg->burst,
                           .breaker = cfg->breaker_failures ? &bo : NULL,
                           .metrics = svc->metrics};
    if ((st = sl_producer_create(svc->eng, &po, &svc->producer)) != SL_OK) {
        sl_diag_set(diag, st, "producer: %s", sl_status_str(st));
        goto fail;
    }
    if (wants_status(cfg)) {
        sl_gateway_state_opts so = {.idempotency_ttl_ms =
                                        cfg->gateway_idempotency_ttl_ms};
        d = (sl_diag){0};
        if ((st = sl_gateway_state_open(cfg->gateway_state, &so, &svc->gstate,
                                        &d)) != SL_OK) {
            sl_config_fail(cfg, &cfg->gateway_state, (sl_config_pos){0, 0},
                           "gateway.state", st, diag, "%s", d.msg);
            goto fail;
        }
    }
    if (cfg->nroutes > 0 && (st = build_routes(svc, diag)) != SL_OK) {
        goto fail;
    }
    for (size_t i = 0; i < cfg->nconsumers; i++) {
        const sl_config_consumer *cc = &cfg->consumers[i];
        bound_consumer *bc = &svc->consumers[i];
        sl_consumer_opts co = {
            .channel = cc->channel,
            .group = cc->group,
            .prefetch = cc->prefetch,
            .concurrency = cc->concurrency,
            .handler_timeout_ms = cc->handler_timeout_ms,
            .max_attempts = cc->max_attempts,
            .backoff_ms = cc->backoff_ms,
            .backoff_len = cc->backoff_len,
            .handler = bc->handler.fn,
            .handler_ctx = bc->handler.user,
            .inbox_path = cc->idempotency ? cfg->inbox_path : NULL,
            .idempotency_ttl_ms = cc->idempotency_ttl_ms,
            .transactional = bc->handler.transactional,
            .producer = svc->producer,
            .service = cfg->service_name,
            .metrics = svc->metrics,
            .report = svc->gstate ? report_status : NULL,
            .report_ctx = svc,
            .status_start = cc->status_start,
            .status_ack = cc->status_ack,
            .status_dead = cc->status_dead,
        };
        d = (sl_diag){0};
        if ((st = sl_consumer_create(svc->eng, &co, &bc->consumer, &d)) !=
            SL_OK) {
            /* Its group, its inbox: name the consumer it came from. */
            char key[48];
            snprintf(key, sizeof key, "consumers[%zu]", i);
            sl_config_fail(cfg, NULL, cc->pos, key, st, diag, "%s", d.msg);
            goto fail;
        }
    }
    *out = svc;
    return SL_OK;
fail:
    sl_service_destroy(svc);
    return st;
}

/* The sampler's reading of group @p i: its settled count from the
 * consumer, its depth from the engine. */
static bool read_group(size_t i, sl_drain_reading *out, void *ctx)
{
    sl_service *svc = ctx;
    const bound_consumer *bc = &svc->consumers[i];
    sl_consumer_stats cs;
    sl_consumer_get_stats(bc->consumer, &cs);
    sl_depth d = {0};
    if (sl_engine_depth(svc->eng, bc->cc->channel, bc->cc->group, &d) !=
        SL_OK) {
        return false;
    }
    /* Events that left the group for good: acked (duplicates included)
     * or dead-lettered. Retries and releases come back, so they do not
     * count. */
    out->settled =
        cs.acked + cs.duplicates + cs.rejected + cs.exhausted + cs.expired;
    out->ready = d.ready;
    out->backlog = d.ready + d.delayed + d.in_flight;
    return true;
}

static sl_status start_sampler(sl_service *svc, sl_diag *diag)
{
    sl_drain_opts o = {.ngroups = svc->nconsumers,
                       .read = read_group,
                       .read_ctx = svc,
                       .clock = svc->clock};
    sl_status st = sl__drain_create(&o, &svc->drain);
    if (st == SL_OK && (st = sl__drain_start(svc->drain)) != SL_OK) {
        sl__drain_destroy(svc->drain);
        svc->drain = NULL;
    }
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "drain-rate sampler: %s",
                           sl_status_str(st));
    }
    return SL_OK;
}

/* The predicted wait of group @p i for @p ahead more events, if the group
 * bounds it (see predict_wait). */
static bool group_wait(sl_service *svc, size_t i, uint64_t ahead,
                       uint64_t *wait_ms)
{
    double rate = sl__drain_capacity_per_s(svc->drain, i);
    uint64_t backlog = 0, ready = 0;
    if (rate <= 0 || sl__drain_backlog(svc->drain, i, BACKLOG_MAX_AGE_MS,
                                       &backlog, &ready) != SL_OK) {
        return false;
    }
    if (ready == 0 && sl__drain_busy_rate_per_s(svc->drain, i) <= 0) {
        return false;
    }
    double ms =
        ceil((double)(backlog + ahead) * 1000.0 / (rate * RATE_HEADROOM));
    *wait_ms = ms < 1e15 ? (uint64_t)ms : UINT64_MAX / 2;
    return true;
}

/* The gateway's admission by predicted wait: the work ahead of a new
 * request on @p channel (each group's backlog, plus the @p ahead events the
 * gateway is publishing) divided by what the group drains when busy; the
 * slowest group on the request's path decides. The path is every group of
 * the channel and, downstream, every group of a channel their handlers
 * have published to (sl_consumer_emits: learned as the service runs), so
 * that a fast first stage in front of a slow one does not admit work the
 * slow one cannot finish in time.
 *
 * Groups without a measured rate do not bound the wait; with none, the
 * prediction is unknown and the request admitted. Nor does a group with
 * nothing waiting and no busy rate: it keeps up with what it is offered,
 * and its throughput then measures the demand, not what it can drain (one
 * order in a quiet minute is no capacity of one a minute; dividing by it
 * refused the next order on an idle service). */
static bool predict_wait(const char *channel, uint64_t ahead, uint64_t *wait_ms,
                         void *ctx)
{
    sl_service *svc = ctx;
    bool known = false;
    uint64_t worst = 0;
    if (svc->drain == NULL || svc->nconsumers == 0) {
        *wait_ms = 0;
        return false;
    }
    /* Breadth first over channels; each group is visited once. */
    const char *todo[64];
    size_t ntodo = 0, next = 0;
    bool *seen = sl_calloc(svc->nconsumers, sizeof *seen);
    if (seen == NULL) {
        *wait_ms = 0;
        return false;
    }
    todo[ntodo++] = channel;
    while (next < ntodo) {
        const char *ch = todo[next++];
        for (size_t i = 0; i < svc->nconsumers; i++) {
            if (seen[i] || strcmp(svc->consumers[i].cc->channel, ch) != 0) {
                continue;
            }
            seen[i] = true;
            uint64_t w = 0;
            if (group_wait(svc, i, ahead, &w)) {
                worst = w > worst ? w : worst;
                known = true;
            }
            const char *out[SL_CONSUMER_MAX_EMITS];
            size_t n = sl_consumer_emits(svc->consumers[i].consumer, out,
                                         SL_CONSUMER_MAX_EMITS);
            for (size_t k = 0; k < n && ntodo < sizeof todo / sizeof *todo;
                 k++) {
                todo[ntodo++] = out[k];
            }
        }
    }
    sl_free(seen);
    *wait_ms = worst;
    return known;
}

/* ---- what the admin listener asks -------------------------------------- */

static const char *admin_not_ready(void *ctx)
{
    return sl_service_not_ready_reason(ctx);
}

static size_t admin_group_count(void *ctx)
{
    return sl_service_consumer_count(ctx);
}

static void admin_group_name(size_t i, const char **channel, const char **group,
                             void *ctx)
{
    const sl_service *svc = ctx;
    *channel = svc->consumers[i].cc->channel;
    *group = svc->consumers[i].cc->group;
}

static sl_status admin_group_depth(size_t i, sl_depth *out, void *ctx)
{
    const sl_service *svc = ctx;
    const sl_config_consumer *cc = svc->consumers[i].cc;
    return sl_engine_depth(svc->eng, cc->channel, cc->group, out);
}

static double admin_drain_rate(size_t i, void *ctx)
{
    return sl_service_drain_rate_per_s(ctx, i);
}

void sl__service_admin_opts(sl_service *svc, sl_admin_opts *out)
{
    out->reg = svc->metrics;
    out->ctx = svc;
    out->not_ready_reason = admin_not_ready;
    out->group_count = admin_group_count;
    out->group_name = admin_group_name;
    out->group_depth = admin_group_depth;
    out->drain_rate_per_s = admin_drain_rate;
}

sl_status sl_service_start(sl_service *svc, sl_diag *diag)
{
    if (svc->drain == NULL) {
        sl_status st = start_sampler(svc, diag);
        if (st != SL_OK) {
            return st;
        }
    }
    for (size_t i = 0; i < svc->nconsumers; i++) {
        sl_status st = sl_consumer_start(svc->consumers[i].consumer);
        if (st != SL_OK) {
            return sl_diag_set(diag, st, "starting consumer %s: %s",
                               svc->consumers[i].cc->group, sl_status_str(st));
        }
    }
    const sl_config *cfg = svc->cfg;
    sl_status st = SL_OK;
    if (cfg->nroutes > 0) {
        sl_gateway_opts go = {
            .listen = cfg->gateway_listen,
            .max_body = cfg->gateway_max_body,
            .threads = cfg->gateway_threads,
            .routes = svc->routes,
            .nroutes = cfg->nroutes,
            .producer = svc->producer,
            .eng = svc->eng,
            .client_rate_per_s = cfg->gateway_client_rate,
            .client_burst = cfg->gateway_client_burst,
            .client_header = cfg->gateway_client_header,
            .max_clients = cfg->gateway_max_clients,
            .state = svc->gstate,
            .confirm_timeout_ms = cfg->publish_timeout_ms,
            .is_draining = is_draining,
            .draining_ctx = svc,
            .predict_wait_ms = predict_wait,
            .predict_wait_ctx = svc,
            .metrics = svc->metrics,
        };
        sl_diag d = {0};
        if ((st = sl_gateway_create(&go, &svc->gw, &d)) != SL_OK) {
            return sl_config_fail(cfg, &cfg->gateway_listen,
                                  (sl_config_pos){0, 0}, "gateway.listen", st,
                                  diag, "%s", d.msg);
        }
    }
    if (cfg->admin_enabled) {
        sl_admin_opts ao = {.listen = cfg->admin_listen,
                            .target_per_replica = cfg->scale_target,
                            .min_replicas = cfg->scale_min,
                            .max_replicas = cfg->scale_max};
        sl__service_admin_opts(svc, &ao);
        sl_diag d = {0};
        if ((st = sl__admin_start(&ao, &svc->admin, &d)) != SL_OK) {
            return sl_config_fail(cfg, &cfg->admin_listen,
                                  (sl_config_pos){0, 0}, "admin.listen", st,
                                  diag, "%s", d.msg);
        }
    }
    atomic_store(&svc->started, true);
    sl_logf(SL_LOG_INFO, "service",
            "%s started on %s: %zu channel(s), %zu consumer group(s)",
            cfg->service_name, sl_engine_name(svc->eng), cfg->nchannels,
            svc->nconsumers);
    return SL_OK;
}

uint16_t sl_service_gateway_port(const sl_service *svc)
{
    return svc->gw ? sl_gateway_port(svc->gw) : 0;
}

uint16_t sl_service_admin_port(const sl_service *svc)
{
    return svc->admin ? sl__admin_port(svc->admin) : 0;
}

bool sl_service_is_ready(const sl_service *svc)
{
    return sl_service_not_ready_reason(svc) == NULL;
}

const char *sl_service_not_ready_reason(const sl_service *svc)
{
    if (atomic_load(&svc->draining)) {
        return "draining";
    }
    if (!atomic_load(&svc->started)) {
        return "not started";
    }
    if (!sl_engine_is_ready(svc->eng)) {
        return "engine not connected";
    }
    return NULL;
}

sl_status sl_service_stop(sl_service *svc)
{
    if (atomic_exchange(&svc->draining, true)) {
        return svc->stuck ? SL_TIMEOUT : SL_OK;
    }
    uint64_t start = sl_time_mono_ms();
    uint64_t budget = svc->cfg->drain_timeout_ms;
    sl_status result = SL_OK;
    /* Every consumer stops fetching at once, then each drains within
     * what is left of the one budget. */
    for (size_t i = 0; i < svc->nconsumers; i++) {
        if (svc->consumers[i].consumer != NULL) {
            sl_consumer_signal_stop(svc->consumers[i].consumer);
        }
    }
    /* The gateway keeps listening through the drain: new work is answered
     * 503 with Retry-After (is_draining), which load balancers and clients
     * retry elsewhere, while GET /status/{id} follows the orders the
     * consumers are still finishing. A closed port would be a "connection
     * refused" in the middle of a rollout. */
    for (size_t i = 0; i < svc->nconsumers; i++) {
        if (svc->consumers[i].consumer == NULL) {
            continue;
        }
        uint64_t used = sl_time_mono_ms() - start;
        uint64_t left = used < budget ? budget - used : 0;
        if (sl_consumer_stop(svc->consumers[i].consumer, left) != SL_OK) {
            result = SL_TIMEOUT;
        }
    }
    if (svc->producer != NULL) {
        uint64_t used = sl_time_mono_ms() - start;
        uint64_t left = used < budget ? budget - used : 0;
        if (sl_producer_flush(svc->producer, left) != SL_OK) {
            result = SL_TIMEOUT;
        }
    }
    /* The gateway goes last, before the engine closes: stopping it waits
     * (bounded by its stop grace) for the requests already publishing to
     * be confirmed and answered. */
    sl_gateway_destroy(svc->gw);
    svc->gw = NULL;
    svc->stuck = result != SL_OK;
    sl_logf(result == SL_OK ? SL_LOG_INFO : SL_LOG_WARN, "service",
            "%s drained in %" PRIu64 " ms%s", svc->cfg->service_name,
            sl_time_mono_ms() - start,
            result == SL_OK ? "" : " (some handlers outlived drain_timeout)");
    return result;
}

sl_engine *sl_service_engine(sl_service *svc)
{
    return svc->eng;
}

sl_producer *sl_service_producer(sl_service *svc)
{
    return svc->producer;
}

sl_metrics *sl_service_metrics(sl_service *svc)
{
    return svc->metrics;
}

size_t sl_service_consumer_count(const sl_service *svc)
{
    return svc->nconsumers;
}

void sl_service_consumer_stats(sl_service *svc, size_t i, const char **channel,
                               const char **group, sl_consumer_stats *out)
{
    bound_consumer *bc = &svc->consumers[i];
    *channel = bc->cc->channel;
    *group = bc->cc->group;
    sl_consumer_get_stats(bc->consumer, out);
}

void sl_service_set_clock(sl_service *svc, const sl_clock *clock)
{
    svc->clock = clock;
}

double sl_service_drain_rate_per_s(sl_service *svc, size_t i)
{
    return svc->drain != NULL ? sl__drain_rate_per_s(svc->drain, i) : 0;
}

sl_drain *sl__service_drain(sl_service *svc)
{
    return svc->drain;
}

void sl_service_destroy(sl_service *svc)
{
    if (svc == NULL) {
        return;
    }
    if (atomic_load(&svc->started)) {
        sl_service_stop(svc);
    }
    sl__admin_stop(svc->admin); /* borrows the service: first to go */
    sl_gateway_destroy(svc->gw);
    sl__drain_destroy(svc->drain); /* reads the consumers and the engine */
    for (size_t i = 0; i < svc->nconsumers; i++) {
        sl_consumer_destroy(svc->consumers[i].consumer);
        sl__handler_unbind(&svc->consumers[i].handler);
    }
    sl_free(svc->consumers);
    sl_gateway_state_close(svc->gstate);
    sl_free(svc->routes);
    sl_free(svc->fields);
    sl_producer_destroy(svc->producer);
    sl_metrics_destroy(svc->metrics);
    sl_engine_close(svc->eng);
    sl_free(svc);
}
