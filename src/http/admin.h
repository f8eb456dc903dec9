/* The admin listener: metrics, health, readiness and the scaling signal,
 * on its own port (default 127.0.0.1:9090), apart from the gateway.
 *
 *   GET /metrics  Prometheus text format 0.0.4 of the service's registry
 *   GET /healthz  200 {"status":"ok"} while the process serves HTTP
 *   GET /readyz   200 {"status":"ready"}; 503 problem+json with the reason
 *                 (not started, draining, engine not connected)
 *   GET /scale?group=G[&channel=C]
 *                 JSON for KEDA's metrics-api scaler (docs/observability.md)
 *
 * Thread safety: start and stop from the controlling thread; requests are
 * served on the listener's own threads.
 */
#ifndef SLUICE_HTTP_ADMIN_H
#define SLUICE_HTTP_ADMIN_H

#include "sluice/engine.h"
#include "sluice/metrics.h"

#include <stddef.h>
#include <stdint.h>

typedef struct sl_admin sl_admin;

/**
 * Options; zero is default. Copied.
 *
 * The listener knows nothing of the service it reports on: it learns
 * readiness, the consumer groups, their depth and drain rate through the
 * callbacks below, which the service host fills (as the gateway learns
 * is_draining and predict_wait_ms). Each callback gets `ctx`, is called on
 * the listener's threads, concurrently, and at each /metrics render; it
 * must not block for long. Strings it returns stay valid while the admin
 * runs.
 */
typedef struct sl_admin_opts {
    const char *listen; /* NULL = "127.0.0.1:9090"; port 0 = any free */
    sl_metrics *reg;    /* required; borrowed, must outlive the admin */
    uint64_t target_per_replica; /* ready events per replica; 0 = 5000 */
    uint32_t min_replicas;       /* 0 = 2 */
    uint32_t max_replicas;       /* 0 = 20; raised to min_replicas if less */
    unsigned threads;            /* HTTP worker threads; 0 = 2 */
    void *ctx;                   /* handed to every callback; borrowed */
    /* Why the service is not ready ("not started", "draining", ...), or
     * NULL when it is: /readyz and the ready gauge. Required. */
    const char *(*not_ready_reason)(void *ctx);
    /* Number of consumer groups (fixed for the admin's life). Required. */
    size_t (*group_count)(void *ctx);
    /* Channel and group of group @p i < group_count. Required. */
    void (*group_name)(size_t i, const char **channel, const char **group,
                       void *ctx);
    /* Ready, delayed and in-flight events of group @p i. Required.
     * SL_OK, or why the engine cannot tell (/scale answers 503). */
    sl_status (*group_depth)(size_t i, sl_depth *out, void *ctx);
    /* Events that left group @p i for good, per second (docs/
     * observability.md); 0 while unknown. NULL reads as 0. */
    double (*drain_rate_per_s)(size_t i, void *ctx);
} sl_admin_opts;

/**
 * Start serving.
 * @return SL_OK; SL_INVALID without a registry or a required callback, or
 *         with a bad listen address; SL_IO when the address cannot be
 *         bound; SL_NOMEM; SL_EXISTS when the registry holds a sluice
 *         metric name declared differently.
 */
sl_status sl__admin_start(const sl_admin_opts *opts, sl_admin **out,
                          sl_diag *diag);

/** The port bound (useful with port 0). */
uint16_t sl__admin_port(const sl_admin *adm);

/** Stop serving, wait for running requests, free. NULL is a no-op. */
void sl__admin_stop(sl_admin *adm);

#endif
