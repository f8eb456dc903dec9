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

#include "sluice/metrics.h"
#include "sluice/service.h"

#include <stdint.h>

typedef struct sl_admin sl_admin;

/** Options; zero is default. Copied. */
typedef struct sl_admin_opts {
    const char *listen; /* NULL = "127.0.0.1:9090"; port 0 = any free */
    sl_service *svc;    /* required; borrowed, must outlive the admin */
    sl_metrics *reg;    /* NULL = sl_service_metrics(svc); borrowed */
    uint64_t target_per_replica; /* ready events per replica; 0 = 5000 */
    uint32_t min_replicas;       /* 0 = 2 */
    uint32_t max_replicas;       /* 0 = 20; raised to min_replicas if less */
    unsigned threads;            /* HTTP worker threads; 0 = 2 */
} sl_admin_opts;

/**
 * Start serving.
 * @return SL_OK; SL_INVALID without a service or with a bad listen
 *         address; SL_IO when the address cannot be bound; SL_NOMEM;
 *         SL_EXISTS when the registry holds a sluice metric name declared
 *         differently.
 */
sl_status sl__admin_start(const sl_admin_opts *opts, sl_admin **out,
                          sl_diag *diag);

/** The port bound (useful with port 0). */
uint16_t sl__admin_port(const sl_admin *adm);

/** Stop serving, wait for running requests, free. NULL is a no-op. */
void sl__admin_stop(sl_admin *adm);

#endif
