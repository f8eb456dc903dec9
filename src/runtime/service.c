/* The service host: builds engine, producer and consumers from a config. */
#include "sluice/service.h"

#include "runtime/handlers.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <inttypes.h>
#include <stdatomic.h>
#include <string.h>

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
    bound_consumer *consumers;
    size_t nconsumers;
    atomic_bool started;
    atomic_bool draining;
    bool stuck; /* a handler outlived the drain */
};

static sl_status declare_topology(sl_service *svc, sl_diag *diag)
{
    const sl_config *cfg = svc->cfg;
    for (size_t i = 0; i < cfg->nchannels; i++) {
        sl_channel_opts co = {.name = cfg->channels[i].name,
                              .max_length = cfg->channels[i].max_length};
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
    sl_status st = SL_OK;
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
    if ((st = sl_engine_open(cfg->engine_url, &eo, &svc->eng, diag)) !=
        SL_OK) {
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
        };
        if ((st = sl_consumer_create(svc->eng, &co, &bc->consumer, diag)) !=
            SL_OK) {
            goto fail;
        }
    }
    *out = svc;
    return SL_OK;
fail:
    sl_service_destroy(svc);
    return st;
}

sl_status sl_service_start(sl_service *svc, sl_diag *diag)
{
    for (size_t i = 0; i < svc->nconsumers; i++) {
        sl_status st = sl_consumer_start(svc->consumers[i].consumer);
        if (st != SL_OK) {
            return sl_diag_set(diag, st, "starting consumer %s: %s",
                               svc->consumers[i].cc->group,
                               sl_status_str(st));
        }
    }
    atomic_store(&svc->started, true);
    sl_logf(SL_LOG_INFO, "service",
            "%s started on %s: %zu channel(s), %zu consumer group(s)",
            svc->cfg->service_name, sl_engine_name(svc->eng),
            svc->cfg->nchannels, svc->nconsumers);
    return SL_OK;
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

void sl_service_consumer_stats(sl_service *svc, size_t i,
                               const char **channel, const char **group,
                               sl_consumer_stats *out)
{
    bound_consumer *bc = &svc->consumers[i];
    *channel = bc->cc->channel;
    *group = bc->cc->group;
    sl_consumer_get_stats(bc->consumer, out);
}

void sl_service_destroy(sl_service *svc)
{
    if (svc == NULL) {
        return;
    }
    if (atomic_load(&svc->started)) {
        sl_service_stop(svc);
    }
    for (size_t i = 0; i < svc->nconsumers; i++) {
        sl_consumer_destroy(svc->consumers[i].consumer);
        sl__handler_unbind(&svc->consumers[i].handler);
    }
    sl_free(svc->consumers);
    sl_producer_destroy(svc->producer);
    sl_metrics_destroy(svc->metrics);
    sl_engine_close(svc->eng);
    sl_free(svc);
}
