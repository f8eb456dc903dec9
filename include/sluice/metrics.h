/* sluice — metrics: counters, gauges and histograms for Prometheus.
 *
 * A registry holds metric families. A family has a name, a help text, a
 * type and fixed label names; its series are created on first use from
 * label values ("get or create") and live as long as the registry, so a
 * caller may keep a series pointer and update it on a hot path without any
 * lookup. Updates are lock-free (atomics). The number of series per family
 * is bounded (max_series, default 1000): beyond it, new label values share
 * one overflow series whose every label is "other", so a label fed from
 * user input cannot grow memory without bound.
 *
 * sl_metrics_render_text writes the Prometheus text exposition format
 * 0.0.4: families sorted by name, series sorted by label values, histogram
 * buckets cumulative with le="+Inf", _sum and _count. Collectors registered
 * with sl_metrics_add_collector run first, on the rendering thread, to set
 * gauges from stats (queue depth, in-flight work, breaker state).
 *
 * Ownership: the registry owns its families and series; pointers to them
 * are borrowed and stay valid until sl_metrics_destroy. Options are copied.
 *
 * Thread safety: every function may be called from any thread,
 * concurrently, except sl_metrics_destroy. Families and series are never
 * freed before sl_metrics_destroy.
 */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include "sluice/export.h"
#include "sluice/status.h"

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct sl_metrics sl_metrics;
typedef struct sl_metric_family sl_metric_family;
typedef struct sl_metric sl_metric; /* one series: a family + label values */

/** The Content-Type of the text exposition format. */
#define SL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/** Default series per family before the "other" overflow series. */
#define SL_METRICS_MAX_SERIES_DEFAULT 1000

/** Label values as a compound literal: SL_LABELS("orders", "ack"). */
#define SL_LABELS(...) ((const char *const[]){__VA_ARGS__})

typedef enum sl_metric_type {
    SL_METRIC_COUNTER,
    SL_METRIC_GAUGE,
    SL_METRIC_HISTOGRAM,
} sl_metric_type;

/** A family's definition; zero is default. Copied (strings and arrays). */
typedef struct sl_metric_opts {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*; counters end in _total */
    const char *help; /* one line of text; may be NULL */
    const char *const *labels; /* label names, [a-zA-Z_][a-zA-Z0-9_]*, not
                                  starting with "__"; "le" is reserved */
    size_t nlabels;            /* at most 8 */
    /* Histograms: upper bounds, strictly increasing and finite (+Inf is
     * implied); NULL = Prometheus' defaults, 0.005 s to 10 s. */
    const double *buckets;
    size_t nbuckets;   /* at most 64 */
    size_t max_series; /* 0 = SL_METRICS_MAX_SERIES_DEFAULT */
} sl_metric_opts;

/** Create an empty registry, owned by the caller (sl_metrics_destroy).
 * @return SL_OK; SL_INVALID for a NULL @p out; SL_NOMEM. */
SL_API sl_status sl_metrics_create(sl_metrics **out);

/** Free the registry, its families and series. Collectors are not called.
 * NULL is a no-op. No other call on @p reg may be running. */
SL_API void sl_metrics_destroy(sl_metrics *reg);

/**
 * Get or create a family. Asking again for a name with the same type,
 * labels and buckets returns the same family (so independent modules may
 * each declare what they use); max_series and help of the first
 * declaration stay.
 * @param[out] out the family, owned by @p reg.
 * @return SL_OK; SL_INVALID for a bad name, label or bucket list;
 *         SL_EXISTS when the name is taken with another definition;
 *         SL_NOMEM.
 */
SL_API sl_status sl_metrics_family(sl_metrics *reg, sl_metric_type type,
                                   const sl_metric_opts *opts,
                                   sl_metric_family **out, sl_diag *diag);

/** Shorthands for sl_metrics_family with the type in the name; same
 * statuses and ownership. */
SL_API sl_status sl_metrics_counter(sl_metrics *reg, const sl_metric_opts *opts,
                                    sl_metric_family **out, sl_diag *diag);
SL_API sl_status sl_metrics_gauge(sl_metrics *reg, const sl_metric_opts *opts,
                                  sl_metric_family **out, sl_diag *diag);
SL_API sl_status sl_metrics_histogram(sl_metrics *reg,
                                      const sl_metric_opts *opts,
                                      sl_metric_family **out, sl_diag *diag);

/**
 * Get or create the series of @p fam for @p values (one per label name, in
 * order; NULL values read as ""). Lock-free when the series exists. Beyond
 * max_series, returns the family's overflow series (every label "other").
 * @return the series, owned by the registry; NULL only when @p fam is NULL
 *         or memory ran out. Every update function accepts NULL and does
 *         nothing, so a missing series never crashes a hot path.
 */
SL_API sl_metric *sl_metric_get(sl_metric_family *fam,
                                const char *const *values);

/* Updates: lock-free, any thread; a NULL series is ignored. */

/** Counter: add @p v (>= 0; negative and NaN are ignored). */
SL_API void sl_counter_add(sl_metric *m, double v);
/** Counter: add 1. */
SL_API void sl_counter_inc(sl_metric *m);
/** Counter: set the total from a monotonic source (stats copied by a
 * collector). */
SL_API void sl_counter_set(sl_metric *m, double v);

/** Gauge: set / add (negative to subtract). */
SL_API void sl_gauge_set(sl_metric *m, double v);
SL_API void sl_gauge_add(sl_metric *m, double v);

/** Histogram: record one observation (seconds for durations). */
SL_API void sl_histogram_observe(sl_metric *m, double v);

/** Current value of a counter or gauge; for a histogram, its sum. 0 for
 * NULL. */
SL_API double sl_metric_value(const sl_metric *m);
/** Observations of a histogram (0 for other types). */
SL_API uint64_t sl_metric_count(const sl_metric *m);

/** Series in @p fam, the overflow series included; 0 for NULL. */
SL_API size_t sl_metric_family_size(const sl_metric_family *fam);

/**
 * Called at the start of every render, on the rendering thread, to bring
 * gauges (or counters, with sl_counter_set) up to date. Collectors run one
 * render at a time, in the order they were added.
 */
typedef void (*sl_metrics_collect_fn)(sl_metrics *reg, void *ctx);

/** Add a collector; @p ctx is borrowed until it is removed.
 * @return SL_OK; SL_INVALID for a NULL registry or function; SL_NOMEM. */
SL_API sl_status sl_metrics_add_collector(sl_metrics *reg,
                                          sl_metrics_collect_fn fn, void *ctx);

/** Remove the collector added with the same @p fn and @p ctx; once this
 * returns it is not running and will not run again. Unknown pairs are
 * ignored. */
SL_API void sl_metrics_remove_collector(sl_metrics *reg,
                                        sl_metrics_collect_fn fn, void *ctx);

/**
 * Run the collectors and render every family in the text exposition format
 * 0.0.4.
 * @param[out] out NUL-terminated text, sl_malloc'd: the caller frees it
 *                 with sl_free.
 * @param[out] len its length without the NUL.
 * @return SL_OK or SL_NOMEM.
 */
SL_API sl_status sl_metrics_render_text(sl_metrics *reg, char **out,
                                        size_t *len);

#ifdef __cplusplus
}
#endif
#endif
