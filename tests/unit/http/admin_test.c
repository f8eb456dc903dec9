/* The admin listener over real sockets: a service on the in-memory engine,
 * the listener on a free port, requests with libcurl. */
#include "http/admin.h"

#include "host/service_int.h"

#include "sluice/alloc.h"
#include "sluice/config.h"
#include "sluice/event.h"
#include "support.h"

#include <curl/curl.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#define T0 1700000000000ull /* manual clock start, ms */

typedef struct fx {
    char dir[64];
    sl_config *cfg;
    sl_service *svc;
    sl_admin *adm;
    sl_manual_clock mc;
    char base[64]; /* http://127.0.0.1:PORT */
} fx;

/* "orders" has the group "work"; "audit" has a "work" group too (so a
 * bare group=work is ambiguous) and "archive". */
/* The test starts its own admin listener on a free port: the service's
 * (on the default port) is off. */
static const char yaml_fmt[] = "service:\n"
                               "  name: admintest\n"
                               "admin:\n"
                               "  enabled: false\n"
                               "engine:\n"
                               "  url: \"embedded::memory:\"\n"
                               "channels:\n"
                               "  - name: orders\n"
                               "  - name: audit\n"
                               "consumers:\n"
                               "  - channel: orders\n"
                               "    group: work\n"
                               "    prefetch: 8\n"
                               "    handler:\n"
                               "      kind: append\n"
                               "      file: %s/orders.txt\n"
                               "  - channel: audit\n"
                               "    group: work\n"
                               "    handler:\n"
                               "      kind: append\n"
                               "      file: %s/audit-work.txt\n"
                               "  - channel: audit\n"
                               "    group: archive\n"
                               "    handler:\n"
                               "      kind: append\n"
                               "      file: %s/audit-archive.txt\n"
                               "drain_timeout: 5s\n";

static void start_admin(fx *f, const sl_admin_opts *extra)
{
    sl_admin_opts o = extra ? *extra : (sl_admin_opts){0};
    o.listen = "127.0.0.1:0";
    sl__service_admin_opts(f->svc, &o);
    sl_diag diag = {0};
    if (sl__admin_start(&o, &f->adm, &diag) != SL_OK) {
        fail_msg("admin: %s", diag.msg);
    }
    snprintf(f->base, sizeof f->base, "http://127.0.0.1:%u",
             (unsigned)sl__admin_port(f->adm));
}

/* A service, created but not started, and its admin listener. */
static int setup(void **state)
{
    fx *f = sl_calloc(1, sizeof *f);
    assert_non_null(f);
    assert_true(ts_tempdir(f->dir, sizeof f->dir, "admin"));
    char yaml[2048];
    int n = snprintf(yaml, sizeof yaml, yaml_fmt, f->dir, f->dir, f->dir);
    sl_diag diag = {0};
    if (sl_config_load_string(yaml, (size_t)n, "admin_test.yaml", &f->cfg,
                              &diag) != SL_OK ||
        sl_service_create(f->cfg, &f->svc, &diag) != SL_OK) {
        fail_msg("service: %s", diag.msg);
    }
    sl_manual_clock_init(&f->mc, T0);
    sl_service_set_clock(f->svc, &f->mc.clock);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl__admin_stop(f->adm);
    sl_service_destroy(f->svc);
    sl_config_destroy(f->cfg);
    ts_rm_rf(f->dir);
    sl_free(f);
    return 0;
}

/* ---- HTTP -------------------------------------------------------------- */

typedef struct reply {
    long status;
    char *body; /* sl_malloc'd */
    size_t len;
    char content_type[128];
} reply;

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud)
{
    reply *r = ud;
    size_t n = size * nmemb;
    char *grown = sl_realloc(r->body, r->len + n + 1);
    if (grown == NULL) {
        return 0;
    }
    r->body = grown;
    memcpy(r->body + r->len, data, n);
    r->len += n;
    r->body[r->len] = '\0';
    return n;
}

static reply http(const fx *f, const char *method, const char *path)
{
    reply r = {0};
    char url[256];
    snprintf(url, sizeof url, "%s%s", f->base, path);
    CURL *h = curl_easy_init();
    assert_non_null(h);
    curl_easy_setopt(h, CURLOPT_URL, url);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, 10000L);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &r);
    if (method != NULL) {
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
    }
    CURLcode rc = curl_easy_perform(h);
    if (rc != CURLE_OK) {
        fail_msg("%s: %s", url, curl_easy_strerror(rc));
    }
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(h, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r.content_type, sizeof r.content_type, "%s", ct ? ct : "");
    curl_easy_cleanup(h);
    if (r.body == NULL) {
        r.body = sl_strdup("");
    }
    return r;
}

static json_t *get_json(const fx *f, const char *path, long want_status)
{
    reply r = http(f, NULL, path);
    if (r.status != want_status) {
        fail_msg("%s: status %ld, want %ld: %s", path, r.status, want_status,
                 r.body);
    }
    json_t *doc = json_loads(r.body, 0, NULL);
    if (doc == NULL) {
        fail_msg("%s: not JSON: %s", path, r.body);
    }
    sl_free(r.body);
    return doc;
}

static json_int_t int_field(json_t *doc, const char *key)
{
    json_t *v = json_object_get(doc, key);
    if (!json_is_integer(v)) {
        fail_msg("%s is not an integer", key);
    }
    return json_integer_value(v);
}

static void publish_n(fx *f, const char *channel, int n)
{
    for (int i = 0; i < n; i++) {
        sl_event *ev = NULL;
        assert_int_equal(sl_event_create_new("/test", "order.placed", &ev),
                         SL_OK);
        sl_diag diag = {0};
        sl_status st = sl_producer_publish(sl_service_producer(f->svc), channel,
                                           ev, &diag);
        if (st != SL_OK) {
            fail_msg("publish: %s", diag.msg);
        }
        sl_event_unref(ev);
    }
}

/* Poll /scale until the group has nothing left, within 10 s. */
/* What wait_drained and wait_settled wait for. */
typedef struct drained {
    fx *f;
    const char *query;
} drained;

static bool is_drained(void *arg)
{
    drained *d = arg;
    json_t *doc = get_json(d->f, d->query, 200);
    json_int_t left = int_field(doc, "depth") + int_field(doc, "in_flight") +
                      int_field(doc, "delayed");
    json_decref(doc);
    return left == 0;
}

/* Wait (up to TS_WAIT_MS of real time) until @p query shows nothing left. */
static void wait_drained(fx *f, const char *query)
{
    drained d = {f, query};
    if (!ts_wait_until(is_drained, &d, TS_WAIT_MS)) {
        fail_msg("%s never drained", query);
    }
}

/* ---- tests ------------------------------------------------------------- */

static void admin_healthz_answers_ok_json(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    reply r = http(f, NULL, "/healthz");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ok\"}");
    assert_string_equal(r.content_type, "application/json");
    sl_free(r.body);
}

static void check_not_ready(const fx *f, const char *reason)
{
    reply r = http(f, NULL, "/readyz");
    assert_int_equal(r.status, 503);
    assert_string_equal(r.content_type, "application/problem+json");
    json_t *doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(int_field(doc, "status"), 503);
    assert_string_equal(json_string_value(json_object_get(doc, "detail")),
                        reason);
    json_decref(doc);
    sl_free(r.body);
}

static void admin_readyz_is_503_until_started_then_200(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    check_not_ready(f, "not started");
    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    reply r = http(f, NULL, "/readyz");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "{\"status\":\"ready\"}");
    sl_free(r.body);
}

static void admin_readyz_is_503_draining_while_healthz_stays_200(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    assert_int_equal(sl_service_stop(f->svc), SL_OK);
    check_not_ready(f, "draining");
    reply r = http(f, NULL, "/healthz");
    assert_int_equal(r.status, 200);
    sl_free(r.body);
}

static void admin_scale_reports_depth_and_desired_replicas(void **state)
{
    fx *f = *state;
    start_admin(f, &(sl_admin_opts){.target_per_replica = 10,
                                    .min_replicas = 1,
                                    .max_replicas = 20});
    publish_n(f, "orders", 35);
    json_t *doc = get_json(f, "/scale?group=work&channel=orders", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "group")),
                        "work");
    assert_string_equal(json_string_value(json_object_get(doc, "channel")),
                        "orders");
    assert_int_equal(int_field(doc, "depth"), 35);
    assert_int_equal(int_field(doc, "in_flight"), 0);
    assert_int_equal(int_field(doc, "delayed"), 0);
    assert_int_equal(int_field(doc, "target_per_replica"), 10);
    assert_int_equal(int_field(doc, "desired_replicas"), 4); /* ceil 3.5 */
    /* Nothing consumed yet: no rate, so no estimate. */
    assert_true(json_number_value(json_object_get(doc, "drain_rate_per_s")) ==
                0);
    assert_true(json_is_null(json_object_get(doc, "seconds_to_drain")));
    json_decref(doc);
}

static void admin_scale_clamps_desired_replicas_to_min_and_max(void **state)
{
    fx *f = *state;
    start_admin(f, &(sl_admin_opts){.target_per_replica = 10,
                                    .min_replicas = 2,
                                    .max_replicas = 3});
    json_t *doc = get_json(f, "/scale?group=archive", 200);
    assert_int_equal(int_field(doc, "depth"), 0);
    assert_int_equal(int_field(doc, "desired_replicas"), 2);
    assert_int_equal(int_field(doc, "seconds_to_drain"), 0);
    json_decref(doc);
    publish_n(f, "audit", 100);
    doc = get_json(f, "/scale?group=archive", 200);
    assert_int_equal(int_field(doc, "depth"), 100);
    assert_int_equal(int_field(doc, "desired_replicas"), 3);
    json_decref(doc);
}

static void
admin_scale_defaults_are_5000_per_replica_within_2_to_20(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    publish_n(f, "orders", 3);
    json_t *doc = get_json(f, "/scale?group=work&channel=orders", 200);
    assert_int_equal(int_field(doc, "target_per_replica"), 5000);
    assert_int_equal(int_field(doc, "desired_replicas"), 2);
    json_decref(doc);
}

typedef struct settled {
    fx *f;
    size_t i;
    uint64_t n;
} settled;

static bool has_settled(void *arg)
{
    settled *st = arg;
    const char *ch = NULL;
    const char *g = NULL;
    sl_consumer_stats cs;
    sl_service_consumer_stats(st->f->svc, st->i, &ch, &g, &cs);
    return cs.acked >= st->n;
}

/* Wait (up to TS_WAIT_MS of real time) until group @p i settled @p n
 * events. */
static void wait_settled(fx *f, size_t i, uint64_t n)
{
    settled st = {f, i, n};
    if (!ts_wait_until(has_settled, &st, TS_WAIT_MS)) {
        fail_msg("group %zu never settled %llu events", i,
                 (unsigned long long)n);
    }
}

/* Move the manual clock one period (a second) at a time up to @p until,
 * letting the service's sampler take its sample at each. */
static void advance_sampled(fx *f, uint64_t until)
{
    sl_drain *d = sl__service_drain(f->svc);
    assert_non_null(d);
    while (f->mc.now_ms < until) {
        f->mc.now_ms += 1000;
        uint64_t want = sl__drain_rounds(d) + 1;
        sl__drain_kick(d);
        if (!sl__drain_wait_rounds(d, want, 10000)) {
            fail_msg("no sample at %llu", (unsigned long long)f->mc.now_ms);
        }
    }
}

/* The drain rate is sampled on the service's period, not when /scale is
 * asked: the first request after eight sampled seconds sees them all. */
static void
admin_scale_first_scrape_sees_the_rate_sampled_meanwhile(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    publish_n(f, "orders", 40);
    /* The sampler's first sample, at start (T0): nothing settled yet. */
    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    wait_settled(f, 0, 40);
    advance_sampled(f, T0 + 8000); /* no /scale request meanwhile */
    /* 40 events left the group between T0 and T0 + 8 s. */
    reply r = http(f, NULL, "/scale?group=work&channel=orders");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "\"drain_rate_per_s\":5.0,"));
    assert_non_null(strstr(r.body, "\"seconds_to_drain\":0,"));
    sl_free(r.body);
}

static void admin_scale_estimates_seconds_to_drain_from_the_rate(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    publish_n(f, "orders", 20);
    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    wait_settled(f, 0, 20);
    assert_int_equal(sl_service_stop(f->svc), SL_OK); /* nothing drains now */
    publish_n(f, "orders", 30);
    advance_sampled(f, T0 + 10000); /* 20 events in 10 s: 2/s */
    json_t *doc = get_json(f, "/scale?group=work&channel=orders", 200);
    assert_true(json_number_value(json_object_get(doc, "drain_rate_per_s")) ==
                2.0);
    /* Whole seconds, an integer: 30 / 2. */
    assert_int_equal(int_field(doc, "seconds_to_drain"), 15);
    json_decref(doc);
}

/* Numbers as docs/observability.md shows them: integers for counts and
 * replicas and seconds, the rate with one decimal at most. */
static void
admin_scale_prints_integers_and_a_rate_with_one_decimal(void **state)
{
    fx *f = *state;
    start_admin(f, &(sl_admin_opts){.target_per_replica = 10,
                                    .min_replicas = 1,
                                    .max_replicas = 20});
    publish_n(f, "orders", 7);
    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    wait_settled(f, 0, 7);
    assert_int_equal(sl_service_stop(f->svc), SL_OK);
    publish_n(f, "orders", 5);
    advance_sampled(f, T0 + 3000); /* 7 in 3 s: 2.333.../s */
    reply r = http(f, NULL, "/scale?group=work&channel=orders");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body,
                        "{\"group\":\"work\",\"channel\":\"orders\","
                        "\"depth\":5,\"in_flight\":0,\"delayed\":0,"
                        "\"drain_rate_per_s\":2.3,\"seconds_to_drain\":3,"
                        "\"target_per_replica\":10,\"desired_replicas\":1}");
    sl_free(r.body);
}

static void check_problem(const fx *f, const char *method, const char *path,
                          long status)
{
    reply r = http(f, method, path);
    assert_int_equal(r.status, status);
    assert_string_equal(r.content_type, "application/problem+json");
    json_t *doc = json_loads(r.body, 0, NULL);
    assert_non_null(doc);
    assert_int_equal(int_field(doc, "status"), status);
    json_decref(doc);
    sl_free(r.body);
}

static void admin_scale_without_group_is_400(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    check_problem(f, NULL, "/scale", 400);
    check_problem(f, NULL, "/scale?group=", 400);
}

static void admin_scale_group_on_two_channels_needs_channel(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    check_problem(f, NULL, "/scale?group=work", 400);
    json_t *doc = get_json(f, "/scale?group=work&channel=audit", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "channel")),
                        "audit");
    json_decref(doc);
}

static void admin_scale_unknown_group_is_404(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    check_problem(f, NULL, "/scale?group=nobody", 404);
    check_problem(f, NULL, "/scale?group=archive&channel=orders", 404);
}

static void admin_unknown_path_is_404_and_post_is_405(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    check_problem(f, NULL, "/admin", 404);
    check_problem(f, "POST", "/metrics", 405);
}

static char *get_metrics(const fx *f)
{
    reply r = http(f, NULL, "/metrics");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type,
                        "text/plain; version=0.0.4; charset=utf-8");
    return r.body;
}

static void assert_has_line(const char *text, const char *line)
{
    char want[512];
    snprintf(want, sizeof want, "\n%s\n", line);
    if (strstr(text, want) == NULL) {
        fail_msg("missing line: %s\n--- metrics ---\n%s", line, text);
    }
}

static void admin_metrics_count_published_and_consumed_events(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    publish_n(f, "orders", 12);
    publish_n(f, "audit", 3);
    char *text = get_metrics(f);
    assert_has_line(text, "sluice_ready 0");
    assert_has_line(text, "sluice_events_published_total"
                          "{channel=\"orders\",outcome=\"ok\"} 12");
    assert_has_line(text, "sluice_publish_confirm_seconds_count"
                          "{channel=\"orders\"} 12");
    assert_has_line(text, "sluice_queue_depth"
                          "{channel=\"orders\",group=\"work\","
                          "state=\"ready\"} 12");
    assert_has_line(text, "sluice_queue_depth"
                          "{channel=\"audit\",group=\"archive\","
                          "state=\"ready\"} 3");
    sl_free(text);

    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    wait_drained(f, "/scale?group=work&channel=orders");
    wait_drained(f, "/scale?group=archive");
    text = get_metrics(f);
    assert_has_line(text, "sluice_ready 1");
    assert_has_line(text, "sluice_events_consumed_total"
                          "{channel=\"orders\",group=\"work\","
                          "outcome=\"ack\"} 12");
    assert_has_line(text, "sluice_handler_duration_seconds_count"
                          "{channel=\"orders\",group=\"work\"} 12");
    assert_has_line(text, "sluice_queue_depth"
                          "{channel=\"orders\",group=\"work\","
                          "state=\"ready\"} 0");
    assert_has_line(text, "sluice_handlers_in_flight"
                          "{channel=\"orders\",group=\"work\"} 0");
    assert_has_line(text, "sluice_http_requests_total"
                          "{server=\"admin\",route=\"/metrics\","
                          "code=\"200\"} 1");
    sl_free(text);
}

static void admin_metrics_pass_promtool_check(void **state)
{
    fx *f = *state;
    start_admin(f, NULL);
    publish_n(f, "orders", 5);
    assert_int_equal(sl_service_start(f->svc, NULL), SL_OK);
    wait_drained(f, "/scale?group=work&channel=orders");
    reply nope = http(f, NULL, "/nope"); /* a request metric, code 404 */
    sl_free(nope.body);
    char *text = get_metrics(f);
    /* promtool comes with Debian's prometheus package (scripts/deps.sh);
     * without it the shell answers 127 and the test fails. */
    FILE *p = popen("promtool check metrics", "w");
    assert_non_null(p);
    fwrite(text, 1, strlen(text), p);
    int rc = pclose(p);
    if (!WIFEXITED(rc) || WEXITSTATUS(rc) != 0) {
        fail_msg("promtool check metrics failed (exit %d) on:\n%s",
                 WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, text);
    }
    sl_free(text);
}

static void admin_start_without_callbacks_is_invalid(void **state)
{
    (void)state;
    sl_admin *adm = NULL;
    sl_admin_opts o = {.listen = "127.0.0.1:0"};
    assert_int_equal(sl__admin_start(&o, &adm, NULL), SL_INVALID);
    assert_null(adm);
    sl__admin_stop(NULL);
}

/* A stand-in for the service: the admin listener knows only callbacks. */
typedef struct fake_source {
    const char *not_ready; /* NULL = ready */
    sl_depth depth;
    double rate;
} fake_source;

static const char *fake_not_ready(void *ctx)
{
    return ((fake_source *)ctx)->not_ready;
}

static size_t fake_count(void *ctx)
{
    (void)ctx;
    return 1;
}

static void fake_name(size_t i, const char **channel, const char **group,
                      void *ctx)
{
    (void)i;
    (void)ctx;
    *channel = "orders";
    *group = "work";
}

static sl_status fake_depth(size_t i, sl_depth *out, void *ctx)
{
    (void)i;
    *out = ((fake_source *)ctx)->depth;
    return SL_OK;
}

static double fake_rate(size_t i, void *ctx)
{
    (void)i;
    return ((fake_source *)ctx)->rate;
}

static void admin_reports_what_its_callbacks_say(void **state)
{
    (void)state;
    fake_source src = {.not_ready = "warming up",
                       .depth = {.ready = 12000, .delayed = 0, .in_flight = 0},
                       .rate = 240.04};
    sl_metrics *reg = NULL;
    assert_int_equal(sl_metrics_create(&reg), SL_OK);
    fx f = {0};
    sl_admin_opts o = {.listen = "127.0.0.1:0",
                       .reg = reg,
                       .ctx = &src,
                       .not_ready_reason = fake_not_ready,
                       .group_count = fake_count,
                       .group_name = fake_name,
                       .group_depth = fake_depth,
                       .drain_rate_per_s = fake_rate};
    sl_diag diag = {0};
    if (sl__admin_start(&o, &f.adm, &diag) != SL_OK) {
        fail_msg("admin: %s", diag.msg);
    }
    snprintf(f.base, sizeof f.base, "http://127.0.0.1:%u",
             (unsigned)sl__admin_port(f.adm));

    json_t *doc = get_json(&f, "/readyz", 503);
    assert_string_equal(json_string_value(json_object_get(doc, "detail")),
                        "warming up");
    json_decref(doc);
    src.not_ready = NULL;
    json_decref(get_json(&f, "/readyz", 200));

    doc = get_json(&f, "/scale?group=work", 200);
    assert_string_equal(json_string_value(json_object_get(doc, "channel")),
                        "orders");
    assert_int_equal(int_field(doc, "depth"), 12000);
    assert_int_equal(int_field(doc, "desired_replicas"), 3);
    assert_int_equal(int_field(doc, "seconds_to_drain"), 50);
    assert_true(json_real_value(json_object_get(doc, "drain_rate_per_s")) ==
                240.0);
    json_decref(doc);

    reply r = http(&f, NULL, "/metrics");
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body, "sluice_ready 1"));
    assert_non_null(
        strstr(r.body, "sluice_queue_depth{channel=\"orders\",group=\"work\","
                       "state=\"ready\"} 12000"));
    sl_free(r.body);
    sl__admin_stop(f.adm);
    sl_metrics_destroy(reg);
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        T(admin_healthz_answers_ok_json),
        T(admin_readyz_is_503_until_started_then_200),
        T(admin_readyz_is_503_draining_while_healthz_stays_200),
        T(admin_scale_reports_depth_and_desired_replicas),
        T(admin_scale_clamps_desired_replicas_to_min_and_max),
        T(admin_scale_defaults_are_5000_per_replica_within_2_to_20),
        T(admin_scale_first_scrape_sees_the_rate_sampled_meanwhile),
        T(admin_scale_prints_integers_and_a_rate_with_one_decimal),
        T(admin_scale_estimates_seconds_to_drain_from_the_rate),
        T(admin_scale_without_group_is_400),
        T(admin_scale_group_on_two_channels_needs_channel),
        T(admin_scale_unknown_group_is_404),
        T(admin_unknown_path_is_404_and_post_is_405),
        T(admin_metrics_count_published_and_consumed_events),
        T(admin_metrics_pass_promtool_check),
        cmocka_unit_test(admin_start_without_callbacks_is_invalid),
        cmocka_unit_test(admin_reports_what_its_callbacks_say),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
