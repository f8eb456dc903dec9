/* The producer: rate limit, circuit breaker, confirm window, flush, stats.
 *
 * Most cases run against a scripted engine (a driver table of our own):
 * the test decides when each publish is confirmed and with what status,
 * which no real engine lets it do. One case checks the breaker end to end
 * on the embedded engine, with a store whose writes are made to fail.
 */
#include "sluice/producer.h"

#include "engine/driver.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CH "payments.requested"
#define T0 1700000000000ull

/* ---- a scripted engine --------------------------------------------------- */

#define MAX_PENDING 64

typedef struct fake_engine {
    sl_engine base;
    pthread_mutex_t mu;
    sl_publish_cb cbs[MAX_PENDING];
    void *ctxs[MAX_PENDING];
    size_t npending;
    size_t published;    /* calls that were accepted */
    sl_status refuse;    /* SL_OK: accept; else refuse publishes at once */
    unsigned last_flags; /* what the last publish was given */
    unsigned last_hints;
} fake_engine;

static sl_status fake_publish(sl_engine *eng, const char *channel, sl_event *ev,
                              unsigned flags, unsigned hints, sl_publish_cb cb,
                              void *ctx)
{
    (void)channel;
    (void)ev;
    fake_engine *fe = (fake_engine *)eng;
    pthread_mutex_lock(&fe->mu);
    fe->last_flags = flags;
    fe->last_hints = hints;
    sl_status st = fe->refuse;
    if (st == SL_OK && fe->npending == MAX_PENDING) {
        st = SL_INTERNAL;
    }
    if (st == SL_OK) {
        fe->cbs[fe->npending] = cb;
        fe->ctxs[fe->npending] = ctx;
        fe->npending++;
        fe->published++;
    }
    pthread_mutex_unlock(&fe->mu);
    return st;
}

static bool fake_is_ready(const sl_engine *eng)
{
    (void)eng;
    return true;
}

static const sl_driver fake_driver = {
    .abi_version = SL_DRIVER_ABI_VERSION,
    .name = "fake",
    .scheme = "fake:",
    .is_ready = fake_is_ready,
    .publish = fake_publish,
};

static void fake_init(fake_engine *fe)
{
    memset(fe, 0, sizeof *fe);
    fe->base.drv = &fake_driver;
    pthread_mutex_init(&fe->mu, NULL);
}

/* Deliver the oldest pending confirm with @p st. */
static void fake_confirm(fake_engine *fe, sl_status st)
{
    pthread_mutex_lock(&fe->mu);
    assert_true(fe->npending > 0);
    sl_publish_cb cb = fe->cbs[0];
    void *ctx = fe->ctxs[0];
    fe->npending--;
    memmove(fe->cbs, fe->cbs + 1, fe->npending * sizeof fe->cbs[0]);
    memmove(fe->ctxs, fe->ctxs + 1, fe->npending * sizeof fe->ctxs[0]);
    pthread_mutex_unlock(&fe->mu);
    cb(st, ctx);
}

static size_t fake_pending(fake_engine *fe)
{
    pthread_mutex_lock(&fe->mu);
    size_t n = fe->npending;
    pthread_mutex_unlock(&fe->mu);
    return n;
}

static void fake_fini(fake_engine *fe)
{
    while (fake_pending(fe) > 0) {
        fake_confirm(fe, SL_OK);
    }
    pthread_mutex_destroy(&fe->mu);
}

/* ---- helpers ------------------------------------------------------------- */

static sl_event *new_event(void)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/test", "payment.requested", &ev),
                     SL_OK);
    return ev;
}

static sl_status try_publish(sl_producer *p)
{
    sl_event *ev = new_event();
    sl_status st = sl_producer_try_publish(p, CH, ev, NULL, NULL);
    sl_event_unref(ev);
    return st;
}

static sl_status publish_async(sl_producer *p)
{
    sl_event *ev = new_event();
    sl_status st = sl_producer_publish_async(p, CH, ev, NULL, NULL);
    sl_event_unref(ev);
    return st;
}

/* A blocking producer call on its own thread, so that the test can move
 * the producer's clock while it waits. */
typedef enum call_kind { CALL_ASYNC, CALL_PUBLISH, CALL_FLUSH } call_kind;

typedef struct call {
    sl_producer *p;
    call_kind kind;
    sl_status st;
    atomic_bool done; /* st is set */
    pthread_t thread;
} call;

static void *call_main(void *arg)
{
    call *c = arg;
    if (c->kind == CALL_ASYNC) {
        c->st = publish_async(c->p);
    } else if (c->kind == CALL_PUBLISH) {
        sl_event *ev = new_event();
        c->st = sl_producer_publish(c->p, CH, ev, NULL);
        sl_event_unref(ev);
    } else {
        c->st = sl_producer_flush(c->p, 50);
    }
    atomic_store(&c->done, true);
    return NULL;
}

static void call_start(call *c, sl_producer *p, call_kind kind)
{
    *c = (call){.p = p, .kind = kind};
    assert_int_equal(pthread_create(&c->thread, NULL, call_main, c), 0);
}

/* Move @p mc to @p ms after the start once the call sleeps on it, and
 * return the call's status. */
static sl_status call_finish_at(call *c, sl_manual_clock *mc, uint64_t ms)
{
    assert_true(ts_clock_advance_when_waiting(mc, 1, ms - 1));
    sl_manual_clock_advance(mc, 1);
    pthread_join(c->thread, NULL);
    return c->st;
}

static sl_producer *make(sl_engine *eng, const sl_producer_opts *po)
{
    sl_producer *p = NULL;
    assert_int_equal(sl_producer_create(eng, po, &p), SL_OK);
    return p;
}

static sl_producer_stats stats_of(sl_producer *p)
{
    sl_producer_stats ps;
    sl_producer_get_stats(p, &ps);
    return ps;
}

/* ---- rate limit ---------------------------------------------------------- */

static void rate_limit_refuses_when_the_bucket_is_empty(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {.rate_per_s = 10, .burst = 2, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);

    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_RATE_LIMITED);
    assert_int_equal(fe.published, 2); /* the engine never saw the third */
    assert_int_equal(stats_of(p).rate_limited, 1);

    /* One token every 100 ms. */
    mc.now_ms += 99;
    assert_int_equal(try_publish(p), SL_RATE_LIMITED);
    mc.now_ms += 1;
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_RATE_LIMITED);
    assert_int_equal(stats_of(p).rate_limited, 3);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void publish_waits_for_the_next_token_on_its_clock(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {.rate_per_s = 10, .burst = 1, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(publish_async(p), SL_OK);
    /* The next token is 100 ms away on the producer's clock. */
    call c;
    call_start(&c, p, CALL_ASYNC);
    assert_int_equal(call_finish_at(&c, &mc, 100), SL_OK);
    assert_int_equal(fe.published, 2);
    assert_int_equal(stats_of(p).rate_limited, 0);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static bool call_done(void *arg)
{
    return atomic_load(&((call *)arg)->done);
}

static void publish_waits_for_the_next_token_without_a_clock(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    /* The bucket reads the wall clock, the wait the monotonic one: the
     * wait is still the 20 ms to the next token. */
    sl_producer_opts po = {.rate_per_s = 50, .burst = 1};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(publish_async(p), SL_OK);
    call c;
    call_start(&c, p, CALL_ASYNC);
    assert_true(ts_wait_until(call_done, &c, TS_WAIT_MS));
    pthread_join(c.thread, NULL);
    assert_int_equal(c.st, SL_OK);
    assert_int_equal(fe.published, 2);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void retry_after_reports_the_bucket_refill_time(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {.rate_per_s = 4, .burst = 1, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);

    assert_int_equal(sl_producer_retry_after_ms(p), 0);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(sl_producer_retry_after_ms(p), 250);
    mc.now_ms += 100;
    assert_int_equal(sl_producer_retry_after_ms(p), 150);
    mc.now_ms += 150;
    assert_int_equal(sl_producer_retry_after_ms(p), 0);
    assert_int_equal(try_publish(p), SL_OK);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void publish_does_not_wait_for_a_token_beyond_its_timeout(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    /* The next token is 1 s away, the timeout 500 ms: refuse at once
     * rather than sleep through the timeout. */
    sl_producer_opts po = {.rate_per_s = 1,
                           .burst = 1,
                           .publish_timeout_ms = 500,
                           .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(publish_async(p), SL_OK);
    uint64_t t0 = sl_time_mono_ms();
    sl_diag diag = {0};
    sl_event *ev = new_event();
    assert_int_equal(sl_producer_publish(p, CH, ev, &diag), SL_RATE_LIMITED);
    sl_event_unref(ev);
    assert_true(sl_time_mono_ms() - t0 < 400);
    assert_non_null(strstr(diag.msg, CH));
    fake_fini(&fe);
    sl_producer_destroy(p);
}

/* ---- circuit breaker ----------------------------------------------------- */

static void breaker_opens_after_failed_confirms(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 3, .open_ms = 10000};
    sl_producer_opts po = {.breaker = &bo, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);

    for (int i = 0; i < 3; i++) {
        assert_int_equal(try_publish(p), SL_OK);
        fake_confirm(&fe, SL_IO);
    }
    assert_int_equal(try_publish(p), SL_BREAKER_OPEN);
    assert_int_equal(publish_async(p), SL_BREAKER_OPEN);
    assert_int_equal(fe.published, 3);
    sl_producer_stats ps = stats_of(p);
    assert_int_equal(ps.failed, 3);
    assert_int_equal(ps.breaker_open, 2);
    assert_int_equal(sl_producer_retry_after_ms(p), 10000);
    mc.now_ms += 4000;
    assert_int_equal(sl_producer_retry_after_ms(p), 6000);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void breaker_ignores_full_confirms(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 1};
    sl_producer_opts po = {.breaker = &bo, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(try_publish(p), SL_OK);
        fake_confirm(&fe, SL_FULL); /* backpressure, not a failure */
    }
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(sl_producer_retry_after_ms(p), 0);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void breaker_closes_after_a_successful_probe(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 1, .open_ms = 1000};
    sl_producer_opts po = {.breaker = &bo, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(try_publish(p), SL_OK);
    fake_confirm(&fe, SL_IO);
    assert_int_equal(try_publish(p), SL_BREAKER_OPEN);

    mc.now_ms += 1000;
    assert_int_equal(try_publish(p), SL_OK);           /* the probe */
    assert_int_equal(try_publish(p), SL_BREAKER_OPEN); /* one at a time */
    fake_confirm(&fe, SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(stats_of(p).breaker_open, 2);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void breaker_probe_refused_by_the_engine_is_given_back(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 1, .open_ms = 1000};
    sl_producer_opts po = {.breaker = &bo, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(try_publish(p), SL_OK);
    fake_confirm(&fe, SL_IO);
    mc.now_ms += 1000;
    /* The probe goes to a channel the engine does not know: that says
     * nothing about the engine's health, and the probe slot comes back. */
    fe.refuse = SL_NOT_FOUND;
    assert_int_equal(try_publish(p), SL_NOT_FOUND);
    fe.refuse = SL_OK;
    assert_int_equal(try_publish(p), SL_OK);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void breaker_probe_is_not_spent_on_a_rate_limited_publish(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 1, .open_ms = 1000};
    sl_producer_opts po = {
        .breaker = &bo, .rate_per_s = 0.5, .burst = 1, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(try_publish(p), SL_OK);
    fake_confirm(&fe, SL_IO);
    mc.now_ms += 1000; /* half open; half a token */
    assert_int_equal(try_publish(p), SL_RATE_LIMITED);
    mc.now_ms += 1000; /* a whole token */
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(stats_of(p).breaker_open, 0);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void breaker_opens_on_an_engine_that_refuses_as_unavailable(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 3, .open_ms = 1000};
    sl_producer_opts po = {.breaker = &bo, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    fe.refuse = SL_UNAVAILABLE;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(try_publish(p), SL_UNAVAILABLE);
    }
    assert_int_equal(try_publish(p), SL_BREAKER_OPEN);
    assert_int_equal(stats_of(p).in_flight, 0);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

/* End to end on the embedded engine: the store's tables vanish under it,
 * so its next commit fails and every confirm in it reports SL_IO. */
static void breaker_opens_when_the_embedded_store_fails(void **state)
{
    (void)state;
    char dir[256];
    assert_true(ts_tempdir(dir, sizeof dir, "producer-test"));
    char url[300];
    snprintf(url, sizeof url, "embedded:%s", dir);
    sl_engine *eng = NULL;
    assert_int_equal(sl_engine_open(url, NULL, &eng, NULL), SL_OK);
    sl_channel_opts co = {.name = CH};
    assert_int_equal(sl_engine_declare_channel(eng, &co, NULL), SL_OK);
    sl_group_opts go = {.channel = CH, .name = "ledger"};
    assert_int_equal(sl_engine_declare_group(eng, &go, NULL), SL_OK);

    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_breaker_opts bo = {.failure_threshold = 1, .open_ms = 30000};
    sl_producer_opts po = {.breaker = &bo, .clock = &mc.clock};
    sl_producer *p = make(eng, &po);
    sl_event *ev = new_event();
    assert_int_equal(sl_producer_publish(p, CH, ev, NULL), SL_OK);
    sl_event_unref(ev);

    char db_path[300];
    snprintf(db_path, sizeof db_path, "%s/sluice.db", dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    assert_int_equal(sqlite3_exec(db,
                                  "DROP TABLE entries; DROP TABLE messages;",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);

    ev = new_event();
    assert_int_equal(sl_producer_publish(p, CH, ev, NULL), SL_IO);
    assert_int_equal(sl_producer_publish(p, CH, ev, NULL), SL_BREAKER_OPEN);
    sl_event_unref(ev);
    sl_producer_stats ps = stats_of(p);
    assert_int_equal(ps.published, 1);
    assert_int_equal(ps.failed, 1);
    assert_int_equal(ps.breaker_open, 1);
    assert_int_equal(sl_producer_retry_after_ms(p), 30000);
    assert_false(sl_engine_is_ready(eng));
    sl_producer_destroy(p);
    sl_engine_close(eng);
    ts_rm_rf(dir);
}

/* ---- window, flush, timeouts --------------------------------------------- */

static void try_publish_refuses_at_once_when_the_window_is_full(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_producer_opts po = {.max_in_flight = 2};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_FULL);
    assert_int_equal(stats_of(p).in_flight, 2);
    fake_confirm(&fe, SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(stats_of(p).full, 1);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void publish_async_gives_up_with_full_after_its_timeout(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {
        .max_in_flight = 1, .publish_timeout_ms = 80, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(publish_async(p), SL_OK);
    /* It waits for room until its timeout on the producer's clock. */
    call c;
    call_start(&c, p, CALL_ASYNC);
    assert_int_equal(call_finish_at(&c, &mc, 80), SL_FULL);
    assert_int_equal(atomic_load(&mc.now_ms), T0 + 80);
    assert_int_equal(stats_of(p).full, 1);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void publish_times_out_when_no_confirm_comes(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {.publish_timeout_ms = 50, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    call c;
    call_start(&c, p, CALL_PUBLISH);
    assert_int_equal(call_finish_at(&c, &mc, 50), SL_TIMEOUT);
    assert_int_equal(stats_of(p).in_flight, 1);
    /* The late confirm is still counted and frees the slot. */
    fake_confirm(&fe, SL_OK);
    sl_producer_stats ps = stats_of(p);
    assert_int_equal(ps.in_flight, 0);
    assert_int_equal(ps.published, 1);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void flush_times_out_while_a_confirm_is_outstanding(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {.clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(publish_async(p), SL_OK);
    call c;
    call_start(&c, p, CALL_FLUSH);
    assert_int_equal(call_finish_at(&c, &mc, 50), SL_TIMEOUT);
    fake_confirm(&fe, SL_OK);
    assert_int_equal(sl_producer_flush(p, 0), SL_OK);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

typedef struct confirmer {
    fake_engine *fe;
    size_t n;
} confirmer;

static void *confirm_all(void *arg)
{
    confirmer *cf = arg;
    for (size_t i = 0; i < cf->n; i++) {
        fake_confirm(cf->fe, SL_OK);
    }
    return NULL;
}

static void flush_returns_once_the_last_confirm_arrives(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_producer *p = make(&fe.base, NULL);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(publish_async(p), SL_OK);
    }
    confirmer cf = {&fe, 5};
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, confirm_all, &cf), 0);
    assert_int_equal(sl_producer_flush(p, 10000), SL_OK);
    assert_int_equal(stats_of(p).published, 5);
    pthread_join(t, NULL);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

/* ---- stats and callbacks ------------------------------------------------- */

typedef struct outcome {
    int calls;
    sl_status st;
} outcome;

static void record_outcome(sl_status st, void *ctx)
{
    outcome *o = ctx;
    o->calls++;
    o->st = st;
}

static void stats_count_every_outcome(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {
        .max_in_flight = 3, .rate_per_s = 1, .burst = 3, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(stats_of(p).in_flight, 3);
    /* The window is checked first: a refusal for it costs no token. */
    assert_int_equal(try_publish(p), SL_FULL);
    fake_confirm(&fe, SL_OK);
    assert_int_equal(try_publish(p), SL_RATE_LIMITED); /* 3 tokens used */
    fake_confirm(&fe, SL_OK);
    fake_confirm(&fe, SL_IO);
    mc.now_ms += 2000;
    fe.refuse = SL_FULL; /* the channel is at max_length */
    assert_int_equal(try_publish(p), SL_FULL);
    sl_producer_stats ps = stats_of(p);
    assert_int_equal(ps.published, 2);
    assert_int_equal(ps.failed, 1);
    assert_int_equal(ps.full, 2);
    assert_int_equal(ps.rate_limited, 1);
    assert_int_equal(ps.breaker_open, 0);
    assert_int_equal(ps.in_flight, 0);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void window_refusal_costs_no_token(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_manual_clock mc;
    sl_manual_clock_init(&mc, T0);
    sl_producer_opts po = {
        .max_in_flight = 1, .rate_per_s = 1, .burst = 2, .clock = &mc.clock};
    sl_producer *p = make(&fe.base, &po);
    assert_int_equal(try_publish(p), SL_OK);
    assert_int_equal(try_publish(p), SL_FULL); /* the window, not a token */
    fake_confirm(&fe, SL_OK);
    assert_int_equal(try_publish(p), SL_OK); /* the second token is there */
    fake_confirm(&fe, SL_OK);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void callback_runs_once_with_the_confirm_status(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_producer *p = make(&fe.base, NULL);
    outcome ok = {0}, failed = {0};
    sl_event *ev = new_event();
    assert_int_equal(sl_producer_publish_async(p, CH, ev, record_outcome, &ok),
                     SL_OK);
    assert_int_equal(
        sl_producer_publish_async(p, CH, ev, record_outcome, &failed), SL_OK);
    assert_int_equal(ok.calls, 0);
    fake_confirm(&fe, SL_OK);
    fake_confirm(&fe, SL_IO);
    assert_int_equal(ok.calls, 1);
    assert_int_equal(ok.st, SL_OK);
    assert_int_equal(failed.calls, 1);
    assert_int_equal(failed.st, SL_IO);
    /* A refused publish never calls back. */
    outcome refused = {0};
    fe.refuse = SL_NOT_FOUND;
    assert_int_equal(
        sl_producer_try_publish(p, CH, ev, record_outcome, &refused),
        SL_NOT_FOUND);
    assert_int_equal(refused.calls, 0);
    assert_int_equal(stats_of(p).in_flight, 0);
    sl_event_unref(ev);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

/* Whether the engine may call the confirm on any thread is an internal
 * hint, given apart from the public flags, which stay the caller's. */
static void any_thread_hint_travels_apart_from_public_flags(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_producer *p = make(&fe.base, NULL);
    sl_event *ev = new_event();
    /* No callback of the caller's: the confirm is all sluice's own. */
    assert_int_equal(sl_producer_try_publish(p, CH, ev, NULL, NULL), SL_OK);
    assert_int_equal(fe.last_hints, SL__PUBLISH_HINT_CB_ANY_THREAD);
    assert_int_equal(fe.last_flags, 0);
    fake_confirm(&fe, SL_OK);
    /* The caller's callback may block or need its own thread: no hint. */
    outcome ok = {0};
    assert_int_equal(sl_producer_try_publish(p, CH, ev, record_outcome, &ok),
                     SL_OK);
    assert_int_equal(fe.last_hints, 0);
    assert_int_equal(fe.last_flags, 0);
    fake_confirm(&fe, SL_OK);
    assert_int_equal(ok.calls, 1);
    sl_event_unref(ev);
    fake_fini(&fe);
    sl_producer_destroy(p);
}

static void create_refuses_a_negative_rate(void **state)
{
    (void)state;
    fake_engine fe;
    fake_init(&fe);
    sl_producer *p = NULL;
    sl_producer_opts po = {.rate_per_s = -1};
    assert_int_equal(sl_producer_create(&fe.base, &po, &p), SL_INVALID);
    assert_null(p);
    fake_fini(&fe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rate_limit_refuses_when_the_bucket_is_empty),
        cmocka_unit_test(publish_waits_for_the_next_token_on_its_clock),
        cmocka_unit_test(publish_waits_for_the_next_token_without_a_clock),
        cmocka_unit_test(retry_after_reports_the_bucket_refill_time),
        cmocka_unit_test(publish_does_not_wait_for_a_token_beyond_its_timeout),
        cmocka_unit_test(breaker_opens_after_failed_confirms),
        cmocka_unit_test(breaker_ignores_full_confirms),
        cmocka_unit_test(breaker_closes_after_a_successful_probe),
        cmocka_unit_test(breaker_probe_refused_by_the_engine_is_given_back),
        cmocka_unit_test(breaker_probe_is_not_spent_on_a_rate_limited_publish),
        cmocka_unit_test(
            breaker_opens_on_an_engine_that_refuses_as_unavailable),
        cmocka_unit_test(breaker_opens_when_the_embedded_store_fails),
        cmocka_unit_test(try_publish_refuses_at_once_when_the_window_is_full),
        cmocka_unit_test(publish_async_gives_up_with_full_after_its_timeout),
        cmocka_unit_test(publish_times_out_when_no_confirm_comes),
        cmocka_unit_test(flush_times_out_while_a_confirm_is_outstanding),
        cmocka_unit_test(flush_returns_once_the_last_confirm_arrives),
        cmocka_unit_test(stats_count_every_outcome),
        cmocka_unit_test(window_refusal_costs_no_token),
        cmocka_unit_test(callback_runs_once_with_the_confirm_status),
        cmocka_unit_test(create_refuses_a_negative_rate),
        cmocka_unit_test(any_thread_hint_travels_apart_from_public_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
