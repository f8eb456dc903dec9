#include "sluice/metrics.h"

#include "sluice/alloc.h"

#include <math.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

static sl_metrics *make(void)
{
    sl_metrics *reg = NULL;
    assert_int_equal(sl_metrics_create(&reg), SL_OK);
    return reg;
}

static char *render(sl_metrics *reg)
{
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(sl_metrics_render_text(reg, &text, &len), SL_OK);
    assert_int_equal(strlen(text), len);
    return text;
}

static void assert_render(sl_metrics *reg, const char *want)
{
    char *text = render(reg);
    assert_string_equal(text, want);
    sl_free(text);
}

static sl_metric_family *family(sl_metrics *reg, sl_metric_type type,
                                const sl_metric_opts *opts)
{
    sl_metric_family *fam = NULL;
    sl_diag diag = {0};
    sl_status st = sl_metrics_family(reg, type, opts, &fam, &diag);
    if (st != SL_OK) {
        fail_msg("%s: %s", opts->name, diag.msg);
    }
    return fam;
}

static void metrics_small_registry_renders_exact_text(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *pub =
        family(reg, SL_METRIC_COUNTER,
               &(sl_metric_opts){.name = "sluice_events_published_total",
                                 .help = "Events published.",
                                 .labels = SL_LABELS("channel", "outcome"),
                                 .nlabels = 2});
    sl_metric_family *depth =
        family(reg, SL_METRIC_GAUGE,
               &(sl_metric_opts){.name = "a_depth", .help = "Depth."});
    sl_metric_family *lat =
        family(reg, SL_METRIC_HISTOGRAM,
               &(sl_metric_opts){.name = "h_seconds",
                                 .help = "Latency.",
                                 .labels = SL_LABELS("group"),
                                 .nlabels = 1,
                                 .buckets = (const double[]){0.005, 0.1, 1},
                                 .nbuckets = 3});
    sl_counter_inc(sl_metric_get(pub, SL_LABELS("orders", "ok")));
    sl_counter_add(sl_metric_get(pub, SL_LABELS("orders", "ok")), 2);
    sl_counter_inc(sl_metric_get(pub, SL_LABELS("audit", "full")));
    sl_gauge_set(sl_metric_get(depth, NULL), 12.5);
    sl_metric *g = sl_metric_get(lat, SL_LABELS("billing"));
    sl_histogram_observe(g, 0.005); /* on the bound: le is inclusive */
    sl_histogram_observe(g, 0.05);
    sl_histogram_observe(g, 3);
    assert_render(reg, "# HELP a_depth Depth.\n"
                       "# TYPE a_depth gauge\n"
                       "a_depth 12.5\n"
                       "# HELP h_seconds Latency.\n"
                       "# TYPE h_seconds histogram\n"
                       "h_seconds_bucket{group=\"billing\",le=\"0.005\"} 1\n"
                       "h_seconds_bucket{group=\"billing\",le=\"0.1\"} 2\n"
                       "h_seconds_bucket{group=\"billing\",le=\"1\"} 2\n"
                       "h_seconds_bucket{group=\"billing\",le=\"+Inf\"} 3\n"
                       "h_seconds_sum{group=\"billing\"} 3.055\n"
                       "h_seconds_count{group=\"billing\"} 3\n"
                       "# HELP sluice_events_published_total Events "
                       "published.\n"
                       "# TYPE sluice_events_published_total counter\n"
                       "sluice_events_published_total{channel=\"audit\","
                       "outcome=\"full\"} 1\n"
                       "sluice_events_published_total{channel=\"orders\","
                       "outcome=\"ok\"} 3\n");
    sl_metrics_destroy(reg);
}

static void metrics_empty_registry_renders_empty_text(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    assert_render(reg, "");
    sl_metrics_destroy(reg);
}

static void
metrics_unlabelled_family_is_exposed_before_first_update(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    family(reg, SL_METRIC_COUNTER,
           &(sl_metric_opts){.name = "x_total", .help = "X."});
    family(reg, SL_METRIC_HISTOGRAM,
           &(sl_metric_opts){.name = "y_seconds",
                             .buckets = (const double[]){1},
                             .nbuckets = 1});
    assert_render(reg, "# HELP x_total X.\n"
                       "# TYPE x_total counter\n"
                       "x_total 0\n"
                       "# TYPE y_seconds histogram\n"
                       "y_seconds_bucket{le=\"1\"} 0\n"
                       "y_seconds_bucket{le=\"+Inf\"} 0\n"
                       "y_seconds_sum 0\n"
                       "y_seconds_count 0\n");
    sl_metrics_destroy(reg);
}

static void metrics_label_values_and_help_are_escaped(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam =
        family(reg, SL_METRIC_GAUGE,
               &(sl_metric_opts){.name = "esc",
                                 .help = "back\\slash and\nnewline \"q\"",
                                 .labels = SL_LABELS("v"),
                                 .nlabels = 1});
    sl_gauge_set(sl_metric_get(fam, SL_LABELS("a\"b\\c\nd")), 1);
    assert_render(reg, "# HELP esc back\\\\slash and\\nnewline \"q\"\n"
                       "# TYPE esc gauge\n"
                       "esc{v=\"a\\\"b\\\\c\\nd\"} 1\n");
    sl_metrics_destroy(reg);
}

static void metrics_invalid_utf8_label_value_is_replaced(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam =
        family(reg, SL_METRIC_COUNTER,
               &(sl_metric_opts){
                   .name = "u_total", .labels = SL_LABELS("v"), .nlabels = 1});
    sl_metric *a = sl_metric_get(fam, SL_LABELS("ok\xff\xfe"));
    sl_metric *b = sl_metric_get(fam, SL_LABELS("ok\xff\xfe"));
    assert_ptr_equal(a, b); /* the same series, not a new one per call */
    sl_counter_inc(a);
    sl_counter_inc(sl_metric_get(fam, SL_LABELS("caf\xc3\xa9")));
    assert_render(reg, "# TYPE u_total counter\n"
                       "u_total{v=\"caf\xc3\xa9\"} 1\n"
                       "u_total{v=\"ok??\"} 1\n");
    sl_metrics_destroy(reg);
}

static void metrics_series_beyond_max_go_to_other(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam =
        family(reg, SL_METRIC_COUNTER,
               &(sl_metric_opts){.name = "route_total",
                                 .labels = SL_LABELS("route", "code"),
                                 .nlabels = 2,
                                 .max_series = 2});
    sl_counter_inc(sl_metric_get(fam, SL_LABELS("/a", "200")));
    sl_counter_inc(sl_metric_get(fam, SL_LABELS("/b", "200")));
    sl_metric *c = sl_metric_get(fam, SL_LABELS("/c", "404"));
    sl_metric *d = sl_metric_get(fam, SL_LABELS("/d", "500"));
    assert_ptr_equal(c, d);
    sl_counter_inc(c);
    sl_counter_inc(d);
    /* Existing series still resolve to themselves. */
    sl_counter_inc(sl_metric_get(fam, SL_LABELS("/a", "200")));
    assert_int_equal(sl_metric_family_size(fam), 3);
    assert_render(reg, "# TYPE route_total counter\n"
                       "route_total{route=\"/a\",code=\"200\"} 2\n"
                       "route_total{route=\"/b\",code=\"200\"} 1\n"
                       "route_total{route=\"other\",code=\"other\"} 2\n");
    sl_metrics_destroy(reg);
}

static void metrics_same_definition_returns_same_family(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_opts o = {
        .name = "same_total", .labels = SL_LABELS("a"), .nlabels = 1};
    sl_metric_family *f1 = family(reg, SL_METRIC_COUNTER, &o);
    sl_metric_family *f2 = family(reg, SL_METRIC_COUNTER, &o);
    assert_ptr_equal(f1, f2);
    assert_ptr_equal(sl_metric_get(f1, SL_LABELS("x")),
                     sl_metric_get(f2, SL_LABELS("x")));
    sl_metrics_destroy(reg);
}

static void metrics_conflicting_definition_is_refused(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_opts o = {
        .name = "c_total", .labels = SL_LABELS("a"), .nlabels = 1};
    family(reg, SL_METRIC_COUNTER, &o);
    sl_metric_family *fam = NULL;
    assert_int_equal(sl_metrics_gauge(reg, &o, &fam, NULL), SL_EXISTS);
    sl_metric_opts other = {
        .name = "c_total", .labels = SL_LABELS("b"), .nlabels = 1};
    assert_int_equal(sl_metrics_counter(reg, &other, &fam, NULL), SL_EXISTS);
    assert_null(fam);
    sl_metrics_destroy(reg);
}

static void metrics_invalid_names_labels_and_buckets_are_refused(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam = NULL;
    const sl_metric_opts bad[] = {
        {.name = "9lives"},
        {.name = "has-dash"},
        {.name = ""},
        {.name = "ok", .labels = SL_LABELS("__reserved"), .nlabels = 1},
        {.name = "ok", .labels = SL_LABELS("a:b"), .nlabels = 1},
        {.name = "ok", .labels = SL_LABELS("a", "a"), .nlabels = 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        sl_diag diag = {0};
        assert_int_equal(sl_metrics_counter(reg, &bad[i], &fam, &diag),
                         SL_INVALID);
        assert_true(diag.msg[0] != '\0');
    }
    sl_metric_opts le = {.name = "h", .labels = SL_LABELS("le"), .nlabels = 1};
    assert_int_equal(sl_metrics_histogram(reg, &le, &fam, NULL), SL_INVALID);
    sl_metric_opts unsorted = {
        .name = "h", .buckets = (const double[]){1, 0.5}, .nbuckets = 2};
    assert_int_equal(sl_metrics_histogram(reg, &unsorted, &fam, NULL),
                     SL_INVALID);
    sl_metric_opts inf = {
        .name = "h", .buckets = (const double[]){1, INFINITY}, .nbuckets = 2};
    assert_int_equal(sl_metrics_histogram(reg, &inf, &fam, NULL), SL_INVALID);
    assert_null(fam);
    assert_render(reg, "");
    sl_metrics_destroy(reg);
}

static void metrics_default_buckets_are_prometheus_defaults(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam = family(reg, SL_METRIC_HISTOGRAM,
                                   &(sl_metric_opts){.name = "d_seconds"});
    sl_histogram_observe(sl_metric_get(fam, NULL), 0.3);
    assert_render(reg, "# TYPE d_seconds histogram\n"
                       "d_seconds_bucket{le=\"0.005\"} 0\n"
                       "d_seconds_bucket{le=\"0.01\"} 0\n"
                       "d_seconds_bucket{le=\"0.025\"} 0\n"
                       "d_seconds_bucket{le=\"0.05\"} 0\n"
                       "d_seconds_bucket{le=\"0.1\"} 0\n"
                       "d_seconds_bucket{le=\"0.25\"} 0\n"
                       "d_seconds_bucket{le=\"0.5\"} 1\n"
                       "d_seconds_bucket{le=\"1\"} 1\n"
                       "d_seconds_bucket{le=\"2.5\"} 1\n"
                       "d_seconds_bucket{le=\"5\"} 1\n"
                       "d_seconds_bucket{le=\"10\"} 1\n"
                       "d_seconds_bucket{le=\"+Inf\"} 1\n"
                       "d_seconds_sum 0.3\n"
                       "d_seconds_count 1\n");
    sl_metrics_destroy(reg);
}

static void metrics_gauge_add_and_special_values_render(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam = family(
        reg, SL_METRIC_GAUGE,
        &(sl_metric_opts){.name = "g", .labels = SL_LABELS("k"), .nlabels = 1});
    sl_metric *a = sl_metric_get(fam, SL_LABELS("a"));
    sl_gauge_add(a, 5);
    sl_gauge_add(a, -7.25);
    sl_gauge_set(sl_metric_get(fam, SL_LABELS("b")), INFINITY);
    sl_gauge_set(sl_metric_get(fam, SL_LABELS("c")), NAN);
    sl_gauge_set(sl_metric_get(fam, SL_LABELS("d")), 0.1);
    sl_gauge_set(sl_metric_get(fam, SL_LABELS("e")), 1e20);
    assert_render(reg, "# TYPE g gauge\n"
                       "g{k=\"a\"} -2.25\n"
                       "g{k=\"b\"} +Inf\n"
                       "g{k=\"c\"} NaN\n"
                       "g{k=\"d\"} 0.1\n"
                       "g{k=\"e\"} 1e+20\n");
    sl_metrics_destroy(reg);
}

static void metrics_counter_ignores_negative_and_nan(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    sl_metric_family *fam =
        family(reg, SL_METRIC_COUNTER, &(sl_metric_opts){.name = "n_total"});
    sl_metric *m = sl_metric_get(fam, NULL);
    sl_counter_add(m, 2);
    sl_counter_add(m, -1);
    sl_counter_add(m, NAN);
    assert_true(sl_metric_value(m) == 2);
    sl_counter_set(m, 10);
    assert_true(sl_metric_value(m) == 10);
    sl_metrics_destroy(reg);
}

static void metrics_updates_on_null_series_are_ignored(void **state)
{
    (void)state;
    sl_counter_inc(NULL);
    sl_counter_add(NULL, 1);
    sl_gauge_set(NULL, 1);
    sl_gauge_add(NULL, 1);
    sl_histogram_observe(NULL, 1);
    assert_null(sl_metric_get(NULL, NULL));
    assert_true(sl_metric_value(NULL) == 0);
    sl_metrics_destroy(NULL);
}

typedef struct collect_ctx {
    sl_metric_family *fam;
    int calls;
} collect_ctx;

static void collect_depth(sl_metrics *reg, void *arg)
{
    (void)reg;
    collect_ctx *cc = arg;
    cc->calls++;
    sl_gauge_set(sl_metric_get(cc->fam, SL_LABELS("orders")),
                 (double)(cc->calls * 10));
}

static void metrics_collectors_run_at_each_render(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    collect_ctx cc = {
        .fam = family(reg, SL_METRIC_GAUGE,
                      &(sl_metric_opts){.name = "depth",
                                        .labels = SL_LABELS("channel"),
                                        .nlabels = 1})};
    assert_int_equal(sl_metrics_add_collector(reg, collect_depth, &cc), SL_OK);
    assert_render(reg, "# TYPE depth gauge\n"
                       "depth{channel=\"orders\"} 10\n");
    assert_render(reg, "# TYPE depth gauge\n"
                       "depth{channel=\"orders\"} 20\n");
    sl_metrics_remove_collector(reg, collect_depth, &cc);
    assert_render(reg, "# TYPE depth gauge\n"
                       "depth{channel=\"orders\"} 20\n");
    assert_int_equal(cc.calls, 2);
    sl_metrics_destroy(reg);
}

/* Many threads updating shared series lose no update. */
typedef struct hammer {
    sl_metric_family *ctr;
    sl_metric_family *hist;
} hammer;

#define HAMMER_THREADS 4
#define HAMMER_ITERS 20000

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    for (int i = 0; i < HAMMER_ITERS; i++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", i % 16);
        sl_counter_inc(sl_metric_get(h->ctr, SL_LABELS(key)));
        sl_histogram_observe(sl_metric_get(h->hist, NULL), 0.5);
    }
    return NULL;
}

static void metrics_concurrent_updates_are_not_lost(void **state)
{
    (void)state;
    sl_metrics *reg = make();
    hammer h = {
        .ctr = family(reg, SL_METRIC_COUNTER,
                      &(sl_metric_opts){.name = "hits_total",
                                        .labels = SL_LABELS("k"),
                                        .nlabels = 1}),
        .hist = family(reg, SL_METRIC_HISTOGRAM,
                       &(sl_metric_opts){.name = "t_seconds"}),
    };
    pthread_t th[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &h), 0);
    }
    /* Render concurrently with the updates: must not crash or tear. */
    for (int i = 0; i < 5; i++) {
        sl_free(render(reg));
    }
    for (int i = 0; i < HAMMER_THREADS; i++) {
        pthread_join(th[i], NULL);
    }
    double total = 0;
    for (int k = 0; k < 16; k++) {
        char key[8];
        snprintf(key, sizeof key, "k%d", k);
        total += sl_metric_value(sl_metric_get(h.ctr, SL_LABELS(key)));
    }
    assert_true(total == HAMMER_THREADS * HAMMER_ITERS);
    assert_int_equal(sl_metric_family_size(h.ctr), 16);
    sl_metric *t = sl_metric_get(h.hist, NULL);
    assert_int_equal(sl_metric_count(t), HAMMER_THREADS * HAMMER_ITERS);
    assert_true(sl_metric_value(t) == 0.5 * HAMMER_THREADS * HAMMER_ITERS);
    sl_metrics_destroy(reg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(metrics_small_registry_renders_exact_text),
        cmocka_unit_test(metrics_empty_registry_renders_empty_text),
        cmocka_unit_test(
            metrics_unlabelled_family_is_exposed_before_first_update),
        cmocka_unit_test(metrics_label_values_and_help_are_escaped),
        cmocka_unit_test(metrics_invalid_utf8_label_value_is_replaced),
        cmocka_unit_test(metrics_series_beyond_max_go_to_other),
        cmocka_unit_test(metrics_same_definition_returns_same_family),
        cmocka_unit_test(metrics_conflicting_definition_is_refused),
        cmocka_unit_test(metrics_invalid_names_labels_and_buckets_are_refused),
        cmocka_unit_test(metrics_default_buckets_are_prometheus_defaults),
        cmocka_unit_test(metrics_gauge_add_and_special_values_render),
        cmocka_unit_test(metrics_counter_ignores_negative_and_nan),
        cmocka_unit_test(metrics_updates_on_null_series_are_ignored),
        cmocka_unit_test(metrics_collectors_run_at_each_render),
        cmocka_unit_test(metrics_concurrent_updates_are_not_lost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
