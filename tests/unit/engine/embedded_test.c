/* The embedded engine, beyond the conformance suite: retry delays under an
 * injected clock, inspection (browse, depth), release, channels without
 * groups, URL errors, the client mode a second open falls back to, and
 * recovery of delayed retries.
 */
#include "sluice/engine.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CH "orders.created"
#define GROUP "billing"
#define T0 1700000000000ull /* manual clock start, wall ms */

/* ---- fixture: a fresh directory and a manual clock per test -------------- */

typedef struct fx {
    char dir[256];
    char url[300];
    sl_manual_clock clock;
    sl_engine *eng;
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    if (!ts_tempdir(f->dir, sizeof f->dir, "embedded-test")) {
        free(f);
        return -1;
    }
    snprintf(f->url, sizeof f->url, "embedded:%s/store", f->dir);
    sl_manual_clock_init(&f->clock, T0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_engine_close(f->eng);
    ts_rm_rf(f->dir);
    free(f);
    return 0;
}

static sl_engine *open_url(fx *f, const char *url)
{
    sl_engine_opts eo = {.clock = &f->clock.clock};
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    sl_status st = sl_engine_open(url, &eo, &eng, &diag);
    if (st != SL_OK) {
        fail_msg("open %s: %s (%s)", url, sl_status_str(st), diag.msg);
    }
    return eng;
}

static void declare_on(sl_engine *eng, const char *channel, const char *group)
{
    sl_diag diag = {0};
    sl_channel_opts co = {.name = channel};
    assert_int_equal(sl_engine_declare_channel(eng, &co, &diag), SL_OK);
    if (group != NULL) {
        sl_group_opts go = {.channel = channel, .name = group};
        assert_int_equal(sl_engine_declare_group(eng, &go, &diag), SL_OK);
    }
}

static sl_status publish_on(sl_engine *eng, const char *channel, const char *id)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/test", "test.event", &ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_ID, id), SL_OK);
    sl_status st = sl_engine_publish(eng, channel, ev, 0, 5000, NULL);
    sl_event_unref(ev);
    return st;
}

static sl_depth depth_on(sl_engine *eng, const char *channel, const char *group)
{
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(eng, channel, group, &d), SL_OK);
    return d;
}

static sl_subscription *subscribe_on(sl_engine *eng, uint32_t prefetch)
{
    sl_subscription *sub = NULL;
    sl_subscribe_opts so = {.prefetch = prefetch};
    assert_int_equal(sl_engine_subscribe(eng, CH, GROUP, &so, &sub, NULL),
                     SL_OK);
    return sub;
}

/* Fetch one delivery without waiting: everything due is already there. */
static sl_delivery *fetch_now(sl_subscription *sub)
{
    sl_delivery *d = NULL;
    size_t n = 0;
    sl_status st = sl_subscription_fetch(sub, &d, 1, 0, &n);
    if (st != SL_OK) {
        fail_msg("fetch: %s", sl_status_str(st));
    }
    assert_int_equal(n, 1);
    return d;
}

static sl_status fetch_status(sl_subscription *sub)
{
    sl_delivery *d = NULL;
    size_t n = 0;
    sl_status st = sl_subscription_fetch(sub, &d, 1, 0, &n);
    if (st == SL_OK) {
        sl_delivery_release(&d);
    }
    return st;
}

static const char *id_of(const sl_delivery *d)
{
    return sl_event_id(sl_delivery_event(d));
}

/* Wait for a condition that another thread makes true, up to a deadline. */
static bool wait_until(bool (*pred)(void *), void *arg, uint64_t timeout_ms)
{
    uint64_t until = sl_time_mono_ms() + timeout_ms;
    while (!pred(arg)) {
        if (sl_time_mono_ms() >= until) {
            return false;
        }
        struct timespec ts = {0, 2 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return true;
}

/* What a browse saw. */
typedef struct seen {
    char ids[16][32];
    uint32_t attempts[16];
    size_t n;
    size_t stop_after; /* 0 = never stop */
} seen;

static bool collect(const sl_event *ev, uint32_t attempts, void *ctx)
{
    seen *s = ctx;
    if (s->n < 16) {
        snprintf(s->ids[s->n], sizeof s->ids[0], "%s", sl_event_id(ev));
        s->attempts[s->n] = attempts;
    }
    s->n++;
    return s->stop_after == 0 || s->n < s->stop_after;
}

/* ---- retries under the manual clock -------------------------------------- */

static void retry_delay_is_measured_on_the_engine_clock(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "evt-1"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_int_equal(sl_delivery_retry(&d, 1000, "later"), SL_OK);

    assert_int_equal(fetch_status(sub), SL_EMPTY);
    f->clock.now_ms += 999;
    assert_int_equal(fetch_status(sub), SL_EMPTY);
    assert_int_equal(depth_on(f->eng, CH, GROUP).delayed, 1);
    f->clock.now_ms += 1;
    d = fetch_now(sub);
    assert_string_equal(id_of(d), "evt-1");
    assert_int_equal(sl_delivery_attempt(d), 2);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

static void retries_come_due_in_order_of_their_delay(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "slow"), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "fast"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 2);
    sl_delivery *a = fetch_now(sub);
    sl_delivery *b = fetch_now(sub);
    assert_string_equal(id_of(a), "slow");
    assert_int_equal(sl_delivery_retry(&a, 5000, NULL), SL_OK);
    assert_int_equal(sl_delivery_retry(&b, 2000, NULL), SL_OK);

    f->clock.now_ms += 2000;
    sl_delivery *d = fetch_now(sub);
    assert_string_equal(id_of(d), "fast");
    assert_int_equal(fetch_status(sub), SL_EMPTY);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    f->clock.now_ms += 3000;
    d = fetch_now(sub);
    assert_string_equal(id_of(d), "slow");
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

static void retry_without_delay_goes_behind_waiting_events(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "first"), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "second"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_string_equal(id_of(d), "first");
    assert_int_equal(sl_delivery_retry(&d, 0, NULL), SL_OK);
    d = fetch_now(sub);
    assert_string_equal(id_of(d), "second");
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    d = fetch_now(sub);
    assert_string_equal(id_of(d), "first");
    assert_int_equal(sl_delivery_attempt(d), 2);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

/* ---- inspection ---------------------------------------------------------- */

static void browse_visits_pending_events_in_publish_order(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    const char *ids[] = {"e1", "e2", "e3", "e4"};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(publish_on(f->eng, CH, ids[i]), SL_OK);
    }
    seen s = {0};
    assert_int_equal(sl_engine_browse(f->eng, CH, GROUP, 0, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 4);
    for (size_t i = 0; i < 4; i++) {
        assert_string_equal(s.ids[i], ids[i]);
        assert_int_equal(s.attempts[i], 0);
    }
    /* Browsing delivers nothing. */
    sl_depth d = depth_on(f->eng, CH, GROUP);
    assert_int_equal(d.ready, 4);
    assert_int_equal(d.in_flight, 0);
}

static void browse_stops_at_the_limit(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i + 1);
        assert_int_equal(publish_on(f->eng, CH, id), SL_OK);
    }
    seen s = {0};
    assert_int_equal(sl_engine_browse(f->eng, CH, GROUP, 2, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "e1");
    assert_string_equal(s.ids[1], "e2");
}

static void browse_stops_when_the_visitor_says_so(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i + 1);
        assert_int_equal(publish_on(f->eng, CH, id), SL_OK);
    }
    seen s = {.stop_after = 3};
    assert_int_equal(sl_engine_browse(f->eng, CH, GROUP, 0, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 3);
    assert_string_equal(s.ids[2], "e3");
}

static void browse_includes_delayed_retries_with_their_attempts(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "retried"), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "waiting"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_int_equal(sl_delivery_retry(&d, 60000, NULL), SL_OK);
    seen s = {0};
    assert_int_equal(sl_engine_browse(f->eng, CH, GROUP, 0, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "waiting");
    assert_int_equal(s.attempts[0], 0);
    assert_string_equal(s.ids[1], "retried");
    assert_int_equal(s.attempts[1], 1);
    sl_subscription_close(sub);
}

static void browse_and_depth_of_an_unknown_group_are_not_found(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    seen s = {0};
    sl_depth d;
    assert_int_equal(sl_engine_browse(f->eng, CH, "nobody", 0, collect, &s),
                     SL_NOT_FOUND);
    assert_int_equal(sl_engine_depth(f->eng, "no.channel", GROUP, &d),
                     SL_NOT_FOUND);
    assert_int_equal(s.n, 0);
}

static void depth_counts_ready_delayed_and_in_flight(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof id, "e%d", i + 1);
        assert_int_equal(publish_on(f->eng, CH, id), SL_OK);
    }
    sl_subscription *sub = subscribe_on(f->eng, 10);
    sl_delivery *ds[3];
    size_t n = 0;
    assert_int_equal(sl_subscription_fetch(sub, ds, 3, 0, &n), SL_OK);
    assert_int_equal(n, 3);
    assert_int_equal(sl_delivery_retry(&ds[0], 60000, NULL), SL_OK);
    assert_int_equal(sl_delivery_ack(&ds[1]), SL_OK);

    sl_depth d = depth_on(f->eng, CH, GROUP);
    assert_int_equal(d.ready, 2);
    assert_int_equal(d.delayed, 1);
    assert_int_equal(d.in_flight, 1);

    /* Once due, the delayed one counts as ready. */
    f->clock.now_ms += 60000;
    d = depth_on(f->eng, CH, GROUP);
    assert_int_equal(d.ready, 3);
    assert_int_equal(d.delayed, 0);
    assert_int_equal(d.in_flight, 1);
    assert_int_equal(sl_delivery_ack(&ds[2]), SL_OK);
    sl_subscription_close(sub);
}

static void release_gives_back_first_without_counting_the_attempt(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "embedded::memory:");
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "first"), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "second"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_int_equal(sl_delivery_attempt(d), 1);
    assert_int_equal(sl_delivery_release(&d), SL_OK);
    assert_null(d);
    assert_int_equal(sl_subscription_in_flight(sub), 0);
    d = fetch_now(sub);
    assert_string_equal(id_of(d), "first");
    assert_int_equal(sl_delivery_attempt(d), 1);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

/* ---- channels without groups --------------------------------------------- */

static void check_publish_without_groups_is_dropped(fx *f, const char *url)
{
    f->eng = open_url(f, url);
    declare_on(f->eng, CH, NULL);
    assert_int_equal(publish_on(f->eng, CH, "nobody-listens"), SL_OK);
    /* A group declared later starts from what is published after it. */
    declare_on(f->eng, CH, GROUP);
    sl_depth d = depth_on(f->eng, CH, GROUP);
    assert_int_equal(d.ready + d.delayed + d.in_flight, 0);
    assert_int_equal(publish_on(f->eng, CH, "heard"), SL_OK);
    assert_int_equal(depth_on(f->eng, CH, GROUP).ready, 1);
}

static void publish_without_groups_is_confirmed_and_dropped(void **state)
{
    check_publish_without_groups_is_dropped(*state, "embedded::memory:");
}

static void
publish_without_groups_is_confirmed_and_dropped_by_a_store(void **state)
{
    fx *f = *state;
    check_publish_without_groups_is_dropped(f, f->url);
    /* Nothing of the dropped event survives a restart either. */
    sl_engine_close(f->eng);
    f->eng = open_url(f, f->url);
    seen s = {0};
    assert_int_equal(sl_engine_browse(f->eng, CH, GROUP, 0, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 1);
    assert_string_equal(s.ids[0], "heard");
}

/* ---- URL errors ---------------------------------------------------------- */

static void check_url_refused(const char *url, const char *also)
{
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_engine_open(url, NULL, &eng, &diag), SL_INVALID);
    assert_null(eng);
    char quoted[256];
    snprintf(quoted, sizeof quoted, "'%s'", url);
    if (strstr(diag.msg, quoted) == NULL) {
        fail_msg("message does not name the URL %s: %s", quoted, diag.msg);
    }
    if (also != NULL && strstr(diag.msg, also) == NULL) {
        fail_msg("message does not mention %s: %s", also, diag.msg);
    }
}

static void engine_url_with_unknown_parameter_is_invalid(void **state)
{
    fx *f = *state;
    char url[400];
    snprintf(url, sizeof url, "%s?sync=full&color=red", f->url);
    check_url_refused(url, "color=red");
    check_url_refused("embedded::memory:?sync=fast", "sync=fast");
    /* The shared parameter table's answers: the accepted values, the
     * closest name, a parameter given twice. */
    check_url_refused("memory://?sync=fast", "expected full, normal or off");
    check_url_refused("embedded::memory:?snyc=full", "did you mean 'sync'?");
    check_url_refused("memory://?sync=off&sync=full", "'sync' given twice");
}

static void engine_url_without_path_is_invalid(void **state)
{
    (void)state;
    check_url_refused("embedded:", "no path");
    check_url_refused("embedded:?sync=full", "no path");
}

static void engine_url_with_unknown_scheme_is_invalid(void **state)
{
    (void)state;
    check_url_refused("carrier-pigeon://loft", NULL);
}

static void store_directory_that_cannot_be_created_is_an_io_error(void **state)
{
    fx *f = *state;
    /* A regular file where a directory should be. */
    char file[300];
    snprintf(file, sizeof file, "%s/not-a-dir", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    char url[400];
    snprintf(url, sizeof url, "embedded:%s/store", file);
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_engine_open(url, NULL, &eng, &diag), SL_IO);
    assert_null(eng);
    if (strstr(diag.msg, file) == NULL) {
        fail_msg("message does not name the path: %s", diag.msg);
    }
}

/* ---- parse-only check -----------------------------------------------------
 */

static void check_url_status(const char *url, sl_status want, const char *also)
{
    sl_diag diag = {0};
    sl_status st = sl_engine_check_url(url, &diag);
    if (st != want) {
        fail_msg("check %s: got %s (%s), want %s", url, sl_status_name(st),
                 diag.msg, sl_status_name(want));
    }
    if (also != NULL && strstr(diag.msg, also) == NULL) {
        fail_msg("check %s: message does not mention %s: %s", url, also,
                 diag.msg);
    }
}

static bool exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void check_url_refuses_what_open_refuses(void **state)
{
    fx *f = *state;
    char url[400];
    snprintf(url, sizeof url, "%s?sync=full&color=red", f->url);
    check_url_status(url, SL_INVALID, "color=red");
    check_url_status("embedded:", SL_INVALID, "no path");
    check_url_status("carrier-pigeon://loft", SL_INVALID, "unknown engine");
    check_url_status("memory://somewhere", SL_INVALID, "takes no path");
    /* A regular file where the store directory should be. */
    char file[300];
    snprintf(file, sizeof file, "%s/not-a-dir", f->dir);
    FILE *fp = fopen(file, "w");
    assert_non_null(fp);
    fclose(fp);
    snprintf(url, sizeof url, "embedded:%s", file);
    check_url_status(url, SL_CONFIG, "not a directory");
}

static void check_url_creates_nothing(void **state)
{
    fx *f = *state;
    char store[300];
    snprintf(store, sizeof store, "%s/store", f->dir);
    check_url_status(f->url, SL_OK, NULL);
    char url[400];
    snprintf(url, sizeof url, "embedded:%s/a/b/c?sync=off", f->dir);
    check_url_status(url, SL_OK, NULL);
    check_url_status("memory://", SL_OK, NULL);
    check_url_status("embedded::memory:", SL_OK, NULL);
    assert_false(exists(store));
    snprintf(store, sizeof store, "%s/a", f->dir);
    assert_false(exists(store));
}

/* "memory://" is the in-memory engine, like "embedded::memory:". */
static void memory_scheme_opens_the_in_memory_engine(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, "memory://?sync=off");
    assert_string_equal(sl_engine_name(f->eng), "embedded");
    declare_on(f->eng, CH, GROUP);
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(f->eng, CH, GROUP, &d), SL_OK);
}

/* A reader (dlq list) asks for an existing store and must not make one. */
static void open_existing_never_creates_a_store(void **state)
{
    fx *f = *state;
    char store[300];
    snprintf(store, sizeof store, "%s/store", f->dir);
    sl_engine_opts eo = {.open_existing = true};
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_engine_open(f->url, &eo, &eng, &diag), SL_NOT_FOUND);
    assert_null(eng);
    assert_non_null(strstr(diag.msg, store));
    assert_false(exists(store));
    /* Once a service has made it, a reader opens it. */
    sl_engine_close(open_url(f, f->url));
    assert_int_equal(sl_engine_open(f->url, &eo, &eng, &diag), SL_OK);
    sl_engine_close(eng);
}

/* ---- a second open of an owned store: client mode ------------------------ */

typedef struct owner_probe {
    sl_engine *eng;
    uint64_t want;
} owner_probe;

static bool ready_reaches(void *arg)
{
    owner_probe *p = arg;
    sl_depth d = {0};
    return sl_engine_depth(p->eng, CH, GROUP, &d) == SL_OK &&
           d.ready >= p->want;
}

static sl_engine *open_client(fx *f)
{
    f->eng = open_url(f, f->url);
    declare_on(f->eng, CH, GROUP);
    sl_engine *client = open_url(f, f->url);
    assert_string_equal(sl_engine_name(f->eng), "embedded");
    return client;
}

static void second_open_of_an_owned_store_is_a_client(void **state)
{
    fx *f = *state;
    sl_engine *client = open_client(f);
    assert_string_equal(sl_engine_name(client), "embedded-client");
    assert_true(sl_engine_is_ready(client));
    /* It can confirm what the owner declared, not declare anything new. */
    sl_channel_opts known = {.name = CH};
    assert_int_equal(sl_engine_declare_channel(client, &known, NULL), SL_OK);
    sl_channel_opts unknown = {.name = "brand.new"};
    sl_diag diag = {0};
    assert_int_equal(sl_engine_declare_channel(client, &unknown, &diag),
                     SL_UNAVAILABLE);
    assert_non_null(strstr(diag.msg, "brand.new"));
    sl_engine_close(client);
}

static void client_publish_lands_in_the_owners_channel(void **state)
{
    fx *f = *state;
    sl_engine *client = open_client(f);
    assert_int_equal(publish_on(client, CH, "from-client"), SL_OK);
    owner_probe p = {f->eng, 1};
    assert_true(wait_until(ready_reaches, &p, 5000));
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_string_equal(id_of(d), "from-client");
    assert_int_equal(sl_delivery_attempt(d), 1);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
    sl_engine_close(client);
}

static void client_publish_to_an_undeclared_channel_is_not_found(void **state)
{
    fx *f = *state;
    sl_engine *client = open_client(f);
    assert_int_equal(publish_on(client, "no.such.channel", "lost"),
                     SL_NOT_FOUND);
    sl_engine_close(client);
}

static void client_cannot_subscribe(void **state)
{
    fx *f = *state;
    sl_engine *client = open_client(f);
    sl_subscription *sub = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_engine_subscribe(client, CH, GROUP, NULL, &sub, &diag),
                     SL_UNSUPPORTED);
    assert_null(sub);
    assert_non_null(strstr(diag.msg, CH));
    sl_engine_close(client);
}

typedef struct client_probe {
    sl_engine *client;
    uint64_t want;
} client_probe;

static bool client_depth_reaches(void *arg)
{
    client_probe *p = arg;
    sl_depth d = {0};
    return sl_engine_depth(p->client, CH, GROUP, &d) == SL_OK &&
           d.ready == p->want;
}

static void client_depth_and_browse_read_committed_state(void **state)
{
    fx *f = *state;
    sl_engine *client = open_client(f);
    assert_int_equal(publish_on(f->eng, CH, "a"), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "b"), SL_OK);
    /* The owner confirmed both, so both are committed. */
    sl_depth d = depth_on(client, CH, GROUP);
    assert_int_equal(d.ready, 2);
    seen s = {0};
    assert_int_equal(sl_engine_browse(client, CH, GROUP, 0, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.ids[0], "a");
    assert_string_equal(s.ids[1], "b");
    seen limited = {0};
    assert_int_equal(sl_engine_browse(client, CH, GROUP, 1, collect, &limited),
                     SL_OK);
    assert_int_equal(limited.n, 1);

    /* An ack leaves the store once the owner wrote it behind. */
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *dv = fetch_now(sub);
    assert_int_equal(sl_delivery_ack(&dv), SL_OK);
    client_probe p = {client, 1};
    assert_true(wait_until(client_depth_reaches, &p, 5000));
    sl_subscription_close(sub);

    sl_depth none;
    assert_int_equal(sl_engine_depth(client, CH, "nobody", &none),
                     SL_NOT_FOUND);
    sl_engine_close(client);
}

/* ---- recovery ------------------------------------------------------------ */

static void recovery_keeps_a_delayed_retry_delayed(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, f->url);
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "later"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_int_equal(sl_delivery_retry(&d, 10000, "busy"), SL_OK);
    sl_subscription_close(sub);
    sl_engine_close(f->eng);

    f->clock.now_ms += 4000;
    f->eng = open_url(f, f->url);
    sl_depth dep = depth_on(f->eng, CH, GROUP);
    assert_int_equal(dep.delayed, 1);
    assert_int_equal(dep.ready, 0);
    sub = subscribe_on(f->eng, 1);
    assert_int_equal(fetch_status(sub), SL_EMPTY);
    f->clock.now_ms += 6000; /* 10 s after the retry */
    d = fetch_now(sub);
    assert_string_equal(id_of(d), "later");
    assert_int_equal(sl_delivery_attempt(d), 2);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

static void recovery_keeps_attempts(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, f->url);
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "twice"), SL_OK);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    for (uint32_t i = 1; i <= 2; i++) {
        sl_delivery *d = fetch_now(sub);
        assert_int_equal(sl_delivery_attempt(d), i);
        assert_int_equal(sl_delivery_retry(&d, 0, "again"), SL_OK);
    }
    sl_subscription_close(sub);
    sl_engine_close(f->eng);

    f->eng = open_url(f, f->url);
    seen s = {0};
    assert_int_equal(sl_engine_browse(f->eng, CH, GROUP, 0, collect, &s),
                     SL_OK);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.attempts[0], 2);
    sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_int_equal(sl_delivery_attempt(d), 3);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

static void recovered_ids_are_still_deduplicated(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, f->url);
    declare_on(f->eng, CH, GROUP);
    assert_int_equal(publish_on(f->eng, CH, "pending"), SL_OK);
    sl_engine_close(f->eng);
    f->eng = open_url(f, f->url);
    /* A producer that never saw the confirm publishes again. */
    assert_int_equal(publish_on(f->eng, CH, "pending"), SL_OK);
    assert_int_equal(depth_on(f->eng, CH, GROUP).ready, 1);
}

/* What a group holds counts against max_bytes after a restart too: the
 * bound comes back from the store, and so do the bytes of the events
 * still held. */
static void recovery_keeps_max_bytes_and_what_counts_against_it(void **state)
{
    fx *f = *state;
    f->eng = open_url(f, f->url);
    sl_diag diag = {0};
    sl_channel_opts co = {.name = CH, .max_bytes = 600};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co, &diag), SL_OK);
    sl_group_opts go = {.channel = CH, .name = GROUP};
    assert_int_equal(sl_engine_declare_group(f->eng, &go, &diag), SL_OK);
    int taken = 0;
    char id[16];
    sl_status st = SL_OK;
    while (taken < 100) {
        snprintf(id, sizeof id, "e%d", taken);
        if ((st = publish_on(f->eng, CH, id)) != SL_OK) {
            break;
        }
        taken++;
    }
    assert_int_equal(st, SL_FULL);
    assert_true(taken >= 2);
    sl_engine_close(f->eng);

    f->eng = open_url(f, f->url); /* not declared again */
    assert_int_equal(publish_on(f->eng, CH, "after"), SL_FULL);
    sl_subscription *sub = subscribe_on(f->eng, 1);
    sl_delivery *d = fetch_now(sub);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
    assert_int_equal(publish_on(f->eng, CH, "after"), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "again"), SL_FULL);
}

/* A store written before channels had max_bytes opens, its channels
 * unbounded, and takes a bound when one is declared. */
static void store_without_max_bytes_column_opens(void **state)
{
    fx *f = *state;
    char path[1200];
    snprintf(path, sizeof path, "%s/store", f->dir);
    assert_int_equal(mkdir(path, 0755), 0);
    snprintf(path, sizeof path, "%s/store/sluice.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE channels(name TEXT PRIMARY KEY,"
                                  "  max_length INTEGER NOT NULL);"
                                  "INSERT INTO channels VALUES('" CH "', 0);",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    f->eng = open_url(f, f->url);
    sl_diag diag = {0};
    sl_group_opts go = {.channel = CH, .name = GROUP};
    assert_int_equal(sl_engine_declare_group(f->eng, &go, &diag), SL_OK);
    for (int i = 0; i < 10; i++) {
        char id[16];
        snprintf(id, sizeof id, "old%d", i);
        assert_int_equal(publish_on(f->eng, CH, id), SL_OK);
    }
    sl_channel_opts co = {.name = CH, .max_bytes = 1};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co, &diag), SL_OK);
    assert_int_equal(publish_on(f->eng, CH, "bounded"), SL_FULL);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(retry_delay_is_measured_on_the_engine_clock),
        T(retries_come_due_in_order_of_their_delay),
        T(retry_without_delay_goes_behind_waiting_events),
        T(browse_visits_pending_events_in_publish_order),
        T(browse_stops_at_the_limit),
        T(browse_stops_when_the_visitor_says_so),
        T(browse_includes_delayed_retries_with_their_attempts),
        T(browse_and_depth_of_an_unknown_group_are_not_found),
        T(depth_counts_ready_delayed_and_in_flight),
        T(release_gives_back_first_without_counting_the_attempt),
        T(publish_without_groups_is_confirmed_and_dropped),
        T(publish_without_groups_is_confirmed_and_dropped_by_a_store),
        T(engine_url_with_unknown_parameter_is_invalid),
        T(engine_url_without_path_is_invalid),
        T(engine_url_with_unknown_scheme_is_invalid),
        T(store_directory_that_cannot_be_created_is_an_io_error),
        T(check_url_refuses_what_open_refuses),
        T(check_url_creates_nothing),
        T(memory_scheme_opens_the_in_memory_engine),
        T(open_existing_never_creates_a_store),
        T(second_open_of_an_owned_store_is_a_client),
        T(client_publish_lands_in_the_owners_channel),
        T(client_publish_to_an_undeclared_channel_is_not_found),
        T(client_cannot_subscribe),
        T(client_depth_and_browse_read_committed_state),
        T(recovery_keeps_a_delayed_retry_delayed),
        T(recovery_keeps_attempts),
        T(recovered_ids_are_still_deduplicated),
        T(recovery_keeps_max_bytes_and_what_counts_against_it),
        T(store_without_max_bytes_column_opens),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
