#include "obs/std_metrics.h"

/* Publish confirms are fast (a commit, a broker round trip): finer buckets
 * than the defaults, 100 us to 5 s. */
static const double confirm_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                         0.005,  0.01,    0.025,  0.05,  0.1,
                                         0.25,   0.5,     1,      2.5,   5};
/* HTTP handling: 250 us to 10 s. */
static const double http_buckets[] = {0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                      0.01,    0.025,  0.05,  0.1,    0.25,
                                      0.5,     1,      2.5,   5,      10};

#define NB(a) (sizeof(a) / sizeof((a)[0]))

sl_status sl__std_metrics_declare(sl_metrics *reg, sl_std_metrics *out,
                                  sl_diag *diag)
{
    sl_std_metrics sm = {0};
    struct {
        sl_metric_family **fam;
        sl_metric_type type;
        sl_metric_opts opts;
    } defs[] = {
        {&sm.published,
         SL_METRIC_COUNTER,
         {.name = "sluice_events_published_total",
          .help = "Events published, by channel and outcome (ok, failed, "
                  "full, rate_limited, breaker_open).",
          .labels = SL_LABELS("channel", "outcome"),
          .nlabels = 2}},
        {&sm.confirm_seconds,
         SL_METRIC_HISTOGRAM,
         {.name = "sluice_publish_confirm_seconds",
          .help = "Time from publish to the engine's confirm.",
          .labels = SL_LABELS("channel"),
          .nlabels = 1,
          .buckets = confirm_buckets,
          .nbuckets = NB(confirm_buckets)}},
        {&sm.consumed,
         SL_METRIC_COUNTER,
         {.name = "sluice_events_consumed_total",
          .help = "Deliveries settled, by channel, group and outcome (ack, "
                  "retry, rejected, max_attempts, expired, duplicate, "
                  "released).",
          .labels = SL_LABELS("channel", "group", "outcome"),
          .nlabels = 3}},
        {&sm.handler_timeouts,
         SL_METRIC_COUNTER,
         {.name = "sluice_handler_timeouts_total",
          .help = "Handlers that overran their timeout (settled as retry).",
          .labels = SL_LABELS("channel", "group"),
          .nlabels = 2}},
        {&sm.handler_seconds,
         SL_METRIC_HISTOGRAM,
         {.name = "sluice_handler_duration_seconds",
          .help = "Handler run time.",
          .labels = SL_LABELS("channel", "group"),
          .nlabels = 2}},
        {&sm.handlers_in_flight,
         SL_METRIC_GAUGE,
         {.name = "sluice_handlers_in_flight",
          .help = "Handlers running now.",
          .labels = SL_LABELS("channel", "group"),
          .nlabels = 2}},
        {&sm.queue_depth,
         SL_METRIC_GAUGE,
         {.name = "sluice_queue_depth",
          .help = "Events of a group by state (ready, delayed, in_flight).",
          .labels = SL_LABELS("channel", "group", "state"),
          .nlabels = 3}},
        {&sm.producer_in_flight,
         SL_METRIC_GAUGE,
         {.name = "sluice_producer_in_flight",
          .help = "Unconfirmed publishes in the producer window."}},
        {&sm.breaker_state,
         SL_METRIC_GAUGE,
         {.name = "sluice_breaker_state",
          .help = "1 for the breaker's current state (closed, open, "
                  "half_open), 0 for the others.",
          .labels = SL_LABELS("breaker", "state"),
          .nlabels = 2}},
        {&sm.breaker_transitions,
         SL_METRIC_COUNTER,
         {.name = "sluice_breaker_transitions_total",
          .help = "Breaker state changes, by the state entered.",
          .labels = SL_LABELS("breaker", "to"),
          .nlabels = 2}},
        {&sm.rate_limited,
         SL_METRIC_COUNTER,
         {.name = "sluice_rate_limited_total",
          .help = "Requests or publishes refused by a rate limit.",
          .labels = SL_LABELS("limiter"),
          .nlabels = 1}},
        {&sm.ready,
         SL_METRIC_GAUGE,
         {.name = "sluice_ready",
          .help = "1 while the service is ready (engine connected, not "
                  "draining)."}},
        {&sm.http_requests,
         SL_METRIC_COUNTER,
         {.name = "sluice_http_requests_total",
          .help = "HTTP requests answered, by server, route and status "
                  "code.",
          .labels = SL_LABELS("server", "route", "code"),
          .nlabels = 3}},
        {&sm.http_seconds,
         SL_METRIC_HISTOGRAM,
         {.name = "sluice_http_request_duration_seconds",
          .help = "HTTP request handling time.",
          .labels = SL_LABELS("server", "route"),
          .nlabels = 2,
          .buckets = http_buckets,
          .nbuckets = NB(http_buckets)}},
    };
    for (size_t i = 0; i < NB(defs); i++) {
        sl_status st = sl_metrics_family(reg, defs[i].type, &defs[i].opts,
                                         defs[i].fam, diag);
        if (st != SL_OK) {
            return st;
        }
    }
    *out = sm;
    return SL_OK;
}

const char *sl__breaker_state_label(sl_breaker_state state)
{
    switch (state) {
    case SL_BREAKER_STATE_CLOSED:
        return "closed";
    case SL_BREAKER_STATE_OPEN:
        return "open";
    case SL_BREAKER_STATE_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

void sl__std_metrics_breaker(const sl_std_metrics *sm, const char *breaker,
                             sl_breaker_state state, bool transition)
{
    static const sl_breaker_state all[] = {SL_BREAKER_STATE_CLOSED,
                                           SL_BREAKER_STATE_OPEN,
                                           SL_BREAKER_STATE_HALF_OPEN};
    for (size_t i = 0; i < NB(all); i++) {
        const char *label = sl__breaker_state_label(all[i]);
        sl_gauge_set(
            sl_metric_get(sm->breaker_state, SL_LABELS(breaker, label)),
            all[i] == state ? 1 : 0);
    }
    if (transition) {
        sl_counter_inc(
            sl_metric_get(sm->breaker_transitions,
                          SL_LABELS(breaker, sl__breaker_state_label(state))));
    }
}
