/* The metric families sluice itself exposes, declared in one place so that
 * every module that updates one (producer, consumer, gateway, admin, HTTP
 * push handlers) declares it identically. docs/observability.md lists them.
 *
 * Declaring is get-or-create: each module calls sl__std_metrics_declare on
 * the shared registry and gets the same families.
 */
#ifndef SLUICE_OBS_STD_METRICS_H
#define SLUICE_OBS_STD_METRICS_H

#include "sluice/breaker.h"
#include "sluice/clock.h"
#include "sluice/metrics.h"

typedef struct sl_std_metrics {
    /* counter {channel, outcome}: ok, failed, full, rate_limited,
     * breaker_open */
    sl_metric_family *published;
    /* histogram {channel}: publish to engine confirm, seconds */
    sl_metric_family *confirm_seconds;
    /* counter {channel, group, outcome}: ack, retry, rejected,
     * max_attempts, expired, duplicate, released */
    sl_metric_family *consumed;
    /* counter {channel, group}: handlers that overran their timeout */
    sl_metric_family *handler_timeouts;
    /* histogram {channel, group}: handler run time, seconds */
    sl_metric_family *handler_seconds;
    /* gauge {channel, group}: handlers running now */
    sl_metric_family *handlers_in_flight;
    /* gauge {channel, group, state}: ready, delayed, in_flight */
    sl_metric_family *queue_depth;
    /* gauge: unconfirmed publishes in the producer window */
    sl_metric_family *producer_in_flight;
    /* gauge {breaker, state}: 1 for the current state, 0 for the others */
    sl_metric_family *breaker_state;
    /* counter {breaker, to}: transitions into state `to` */
    sl_metric_family *breaker_transitions;
    /* counter {limiter}: refusals by a token bucket */
    sl_metric_family *rate_limited;
    /* gauge: 1 while the service is ready (see /readyz) */
    sl_metric_family *ready;
    /* counter {server, route, code}: HTTP requests answered */
    sl_metric_family *http_requests;
    /* histogram {server, route}: HTTP request handling time, seconds */
    sl_metric_family *http_seconds;
} sl_std_metrics;

/** Declare (get or create) every family in @p reg.
 * @return SL_OK, SL_NOMEM, or SL_EXISTS when an application declared one
 *         of these names differently. */
sl_status sl__std_metrics_declare(sl_metrics *reg, sl_std_metrics *out,
                                  sl_diag *diag);

/** "closed", "open", "half_open". */
const char *sl__breaker_state_label(sl_breaker_state state);

/** Set the breaker_state gauges of @p breaker to @p state and, when
 * @p transition, count a transition into it. */
void sl__std_metrics_breaker(const sl_std_metrics *sm, const char *breaker,
                             sl_breaker_state state, bool transition);

/** Monotonic time in seconds, for durations. */
static inline double sl__obs_now_s(void)
{
    return (double)sl_time_mono_ns() / 1e9;
}

#endif
