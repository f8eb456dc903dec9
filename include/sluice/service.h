/* sluice — the service host: everything a configuration file declares.
 *
 * A service opens the engine, declares channels and groups, creates the
 * producer and one consumer per configured group with its handler, and
 * stops gracefully (semantics 8 of docs/semantics.md).
 *
 * Ownership: the service borrows its configuration (it must outlive the
 * service) and owns everything it builds: engine, producer, consumers,
 * gateway, admin listener, metrics registry. Pointers it hands out
 * (sl_service_engine, ...) are borrowed, valid until sl_service_destroy.
 *
 * Thread safety: create, start, stop, set_clock and destroy from one
 * controlling thread; the functions that only read (readiness, counts,
 * stats, rates, ports, the metrics registry) from any thread, as each says.
 */
#ifndef SLUICE_SERVICE_H
#define SLUICE_SERVICE_H

#include "sluice/clock.h"
#include "sluice/config.h"
#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/export.h"
#include "sluice/metrics.h"
#include "sluice/producer.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_service sl_service;

/**
 * Check @p cfg for every error sl_service_create and sl_service_start
 * would raise from the configuration, without opening, binding or
 * creating anything: the engine URL (scheme, parameters, files it names),
 * the gateway and admin listen addresses, each handler (plugin path and
 * functions, append file, http URL), the route field types.
 *
 * @return SL_OK, or SL_CONFIG with "FILE:LINE:COL: KEY: problem" in
 *         @p diag. What only running can tell (a port in use, a broker
 *         down, a plugin's init failing) is left to start-up. SL_INVALID
 *         for a NULL configuration.
 *
 * Thread safety: any thread; @p cfg is only read.
 */
SL_API sl_status sl_service_check(const sl_config *cfg, sl_diag *diag);

/**
 * Build the service from @p cfg (borrowed; must outlive the service).
 * Loads plugins and opens the engine; starts nothing.
 *
 * @param[out] out  the service, owned by the caller (sl_service_destroy);
 *                  written only on SL_OK.
 * @return SL_OK; SL_CONFIG for the configuration's errors, naming the file
 *         position and the key as sl_service_check does; the statuses of
 *         sl_engine_open, sl_producer_create and sl_consumer_create
 *         (SL_IO, SL_UNAVAILABLE, SL_EXISTS, ...); SL_NOMEM.
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_service_create(const sl_config *cfg, sl_service **out,
                                   sl_diag *diag);

/**
 * Start every consumer, the gateway and the admin listener.
 * @return SL_OK; SL_IO when a listen address cannot be bound; the
 *         statuses of sl_consumer_start and sl_gateway_create.
 *
 * Thread safety: the controlling thread.
 */
SL_API sl_status sl_service_start(sl_service *svc, sl_diag *diag);

/** True while started, the engine is ready and not draining. Any thread. */
SL_API bool sl_service_is_ready(const sl_service *svc);

/** Why the service is not ready ("not started", "draining", "engine not
 * connected"), or NULL when it is. Static text. Any thread. */
SL_API const char *sl_service_not_ready_reason(const sl_service *svc);

/**
 * Graceful stop: readiness false, consumers stop fetching, in-flight
 * handlers get the configured drain_timeout, unfinished deliveries are
 * released, the producer waits for outstanding confirms. The gateway keeps
 * serving meanwhile (503 with Retry-After for new work, GET /status/{id}
 * answered) and is stopped last.
 * @return SL_OK, or SL_TIMEOUT when some handler outlived the drain (the
 *         process should then exit without sl_service_destroy).
 *
 * Thread safety: the controlling thread (a signal handler only sets a flag
 * that this thread acts on).
 */
SL_API sl_status sl_service_stop(sl_service *svc);

/** The service's engine and producer; borrowed, owned by the service,
 * valid until sl_service_destroy. Any thread. */
SL_API sl_engine *sl_service_engine(sl_service *svc);
SL_API sl_producer *sl_service_producer(sl_service *svc);

/** The service's metrics registry: its producer and consumers report into
 * it; the admin listener renders it; the gateway and applications may add
 * their own families. Owned by the service. Any thread. */
SL_API sl_metrics *sl_service_metrics(sl_service *svc);

/** Number of consumers and the stats of consumer @p i (< count), for
 * metrics and the CLI; *channel and *group are borrowed from the service.
 * Any thread. */
SL_API size_t sl_service_consumer_count(const sl_service *svc);
SL_API void sl_service_consumer_stats(sl_service *svc, size_t i,
                                      const char **channel, const char **group,
                                      sl_consumer_stats *out);

/** The clock the drain rates are sampled on (once a second of it, from
 * sl_service_start on); NULL (the default) is the monotonic clock. Tests
 * pass a manual clock. Call before sl_service_start; borrowed, must outlive
 * the service. */
SL_API void sl_service_set_clock(sl_service *svc, const sl_clock *clock);

/** Drain rate of consumer @p i (index as for sl_service_consumer_stats):
 * events that left its group for good (acked, skipped as duplicates,
 * dead-lettered) per second over the last 60 s, from samples taken once a
 * second whether or not anyone asks; 0 before sl_service_start and until a
 * second of history exists. Any thread. */
SL_API double sl_service_drain_rate_per_s(sl_service *svc, size_t i);

/** Ports bound by the gateway and the admin listener (0 when not running);
 * useful with port 0 in the configuration. Any thread. */
SL_API uint16_t sl_service_gateway_port(const sl_service *svc);
SL_API uint16_t sl_service_admin_port(const sl_service *svc);

/** Stop first if needed, then free everything the service owns. NULL is a
 * no-op. The controlling thread, once no other call on @p svc runs. */
SL_API void sl_service_destroy(sl_service *svc);

#ifdef __cplusplus
}
#endif
#endif
