/* sluice — the service host: everything a configuration file declares.
 *
 * A service opens the engine, declares channels and groups, creates the
 * producer and one consumer per configured group with its handler, and
 * stops gracefully (DESIGN.md semantics 8).
 *
 * Thread safety: call from one controlling thread.
 */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include "sluice/config.h"
#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/metrics.h"
#include "sluice/producer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_service sl_service;

/** Build the service from @p cfg (borrowed; must outlive the service).
 * Loads plugins and opens the engine; starts nothing. Errors name the
 * config file position of the offending group. */
sl_status sl_service_create(const sl_config *cfg, sl_service **out,
                            sl_diag *diag);

/** Start every consumer. */
sl_status sl_service_start(sl_service *svc, sl_diag *diag);

/** True while started, the engine is ready and not draining. */
bool sl_service_is_ready(const sl_service *svc);

/** Why the service is not ready ("not started", "draining", "engine not
 * connected"), or NULL when it is. Static text. Any thread. */
const char *sl_service_not_ready_reason(const sl_service *svc);

/**
 * Graceful stop: readiness false, consumers stop fetching, in-flight
 * handlers get the configured drain_timeout, unfinished deliveries are
 * released, the producer waits for outstanding confirms. The gateway keeps
 * serving meanwhile (503 with Retry-After for new work, GET /status/{id}
 * answered) and is stopped last.
 * @return SL_OK, or SL_TIMEOUT when some handler outlived the drain (the
 *         process should then exit without sl_service_destroy).
 */
sl_status sl_service_stop(sl_service *svc);

sl_engine *sl_service_engine(sl_service *svc);
sl_producer *sl_service_producer(sl_service *svc);

/** The service's metrics registry: its producer and consumers report into
 * it; the admin listener renders it; the gateway and applications may add
 * their own families. Owned by the service. Any thread. */
sl_metrics *sl_service_metrics(sl_service *svc);

/** Number of consumers and their stats, for metrics and the CLI. */
size_t sl_service_consumer_count(const sl_service *svc);
void sl_service_consumer_stats(sl_service *svc, size_t i,
                               const char **channel, const char **group,
                               sl_consumer_stats *out);

/** Ports bound by the gateway and the admin listener (0 when not running);
 * useful with port 0 in the configuration. */
uint16_t sl_service_gateway_port(const sl_service *svc);
uint16_t sl_service_admin_port(const sl_service *svc);

/** NULL is a no-op. Stops first if needed. */
void sl_service_destroy(sl_service *svc);

#ifdef __cplusplus
}
#endif
#endif
