/* What the producer and the consumer report into a metrics registry
 * (opts.metrics): outcomes by channel and group, durations, refusals,
 * breaker state. */
#include "sluice/consumer.h"
#include "sluice/metrics.h"
#include "sluice/producer.h"

#include "sluice/alloc.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#define T0 1700000000000ull

typedef struct fx {
    sl_engine *eng;
    sl_metrics *reg;
} fx;

static int setup(void **state)
{
    fx *f = sl_calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(sl_engine_open("embedded::memory:", NULL, &f->eng, NULL),
                     SL_OK);
    assert_int_equal(sl_metrics_create(&f->reg), SL_OK);
    sl_channel_opts co = {.name = "orders"};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co, NULL), SL_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_engine_close(f->eng);
    sl_metrics_destroy(f->reg);
    sl_free(f);
    return 0;
}

static void assert_has_line(sl_metrics *reg, const char *line)
{
    char *text = NULL;
    assert_int_equal(sl_metrics_render_text(reg, &text, NULL), SL_OK);
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (strstr(text, want) == NULL) {
        fail_msg("missing line: %s\n--- metrics ---\n%s", line, text);
    }
    sl_free(text);
}

static sl_event *event(void)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/test", "order.placed", &ev), SL_OK);
    return ev;
}

static void
producer_metrics_count_confirms_and_refusals_by_channel(void **state)
{
    fx *f = *state;
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer *p = NULL;
    sl_producer_opts po = {
        .rate_per_s = 1, .burst = 2, .clock = &mc.clock, .metrics = f->reg};
    assert_int_equal(sl_producer_create(f->eng, &po, &p), SL_OK);
    for (int i = 0; i < 3; i++) {
        sl_event *ev = event();
        sl_status st = sl_producer_try_publish(p, "orders", ev, NULL, NULL);
        assert_int_equal(st, i < 2 ? SL_OK : SL_RATE_LIMITED);
        sl_event_unref(ev);
    }
    mc.now_ms = T0 + 1000; /* one token back */
    sl_event *ev = event();
    assert_int_equal(sl_producer_try_publish(p, "nowhere", ev, NULL, NULL),
                     SL_NOT_FOUND);
    sl_event_unref(ev);
    assert_int_equal(sl_producer_flush(p, 10000), SL_OK);
    assert_has_line(f->reg, "sluice_events_published_total"
                            "{channel=\"orders\",outcome=\"ok\"} 2");
    assert_has_line(f->reg, "sluice_events_published_total"
                            "{channel=\"orders\",outcome=\"rate_limited\"} 1");
    assert_has_line(f->reg, "sluice_events_published_total"
                            "{channel=\"nowhere\",outcome=\"failed\"} 1");
    assert_has_line(f->reg,
                    "sluice_rate_limited_total{limiter=\"producer\"} 1");
    assert_has_line(f->reg, "sluice_publish_confirm_seconds_count"
                            "{channel=\"orders\"} 2");
    assert_has_line(f->reg, "sluice_producer_in_flight 0");
    sl_producer_destroy(p);
}

static void producer_metrics_show_breaker_state(void **state)
{
    fx *f = *state;
    sl_producer *p = NULL;
    sl_breaker_opts bo = {.failure_threshold = 3};
    sl_producer_opts po = {.breaker = &bo, .metrics = f->reg};
    assert_int_equal(sl_producer_create(f->eng, &po, &p), SL_OK);
    assert_has_line(f->reg, "sluice_breaker_state"
                            "{breaker=\"producer\",state=\"closed\"} 1");
    assert_has_line(f->reg, "sluice_breaker_state"
                            "{breaker=\"producer\",state=\"open\"} 0");
    sl_producer_destroy(p);
    /* The collector went with the producer: rendering is still safe. */
    assert_has_line(f->reg, "sluice_producer_in_flight 0");
}

/* Handler: REJECT events whose type is "bad", ACK the others. */
static sl_outcome handler(sl_handler_ctx *ctx, void *user)
{
    (void)user;
    const char *type = sl_event_get(sl_handler_event(ctx), SL_ATTR_TYPE);
    return strcmp(type, "bad") == 0 ? SL_OUTCOME_REJECT : SL_OUTCOME_ACK;
}

static bool five_settled(void *arg)
{
    sl_consumer_stats cs = {0};
    sl_consumer_get_stats(arg, &cs);
    return cs.acked + cs.rejected >= 5;
}

static void consumer_metrics_count_outcomes_and_durations(void **state)
{
    fx *f = *state;
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = "orders",
                           .group = "work",
                           .prefetch = 4,
                           .handler = handler,
                           .metrics = f->reg};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    /* Created (so the group exists) before the events arrive. */
    for (int i = 0; i < 5; i++) {
        sl_event *ev = NULL;
        assert_int_equal(
            sl_event_create_new("/test", i < 3 ? "ok" : "bad", &ev), SL_OK);
        assert_int_equal(
            sl_engine_publish(f->eng, "orders", ev, 0, 10000, NULL), SL_OK);
        sl_event_unref(ev);
    }
    assert_int_equal(sl_consumer_start(c), SL_OK);
    assert_true(ts_wait_until(five_settled, c, TS_WAIT_MS));
    assert_int_equal(sl_consumer_stop(c, 10000), SL_OK);
    assert_has_line(f->reg, "sluice_events_consumed_total"
                            "{channel=\"orders\",group=\"work\","
                            "outcome=\"ack\"} 3");
    assert_has_line(f->reg, "sluice_events_consumed_total"
                            "{channel=\"orders\",group=\"work\","
                            "outcome=\"rejected\"} 2");
    assert_has_line(f->reg, "sluice_events_consumed_total"
                            "{channel=\"orders\",group=\"work\","
                            "outcome=\"retry\"} 0");
    assert_has_line(f->reg, "sluice_handler_duration_seconds_count"
                            "{channel=\"orders\",group=\"work\"} 5");
    assert_has_line(f->reg, "sluice_handlers_in_flight"
                            "{channel=\"orders\",group=\"work\"} 0");
    sl_consumer_destroy(c);
}

static void
metrics_declared_differently_by_the_application_are_refused(void **state)
{
    fx *f = *state;
    sl_metric_family *fam = NULL;
    sl_metric_opts o = {.name = "sluice_events_published_total"};
    assert_int_equal(sl_metrics_gauge(f->reg, &o, &fam, NULL), SL_OK);
    sl_producer *p = NULL;
    sl_producer_opts po = {.metrics = f->reg};
    assert_int_equal(sl_producer_create(f->eng, &po, &p), SL_EXISTS);
    assert_null(p);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(producer_metrics_count_confirms_and_refusals_by_channel),
        T(producer_metrics_show_breaker_state),
        T(consumer_metrics_count_outcomes_and_durations),
        T(metrics_declared_differently_by_the_application_are_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
