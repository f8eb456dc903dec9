/* The NATS engine's asynchronous publishes when PubAcks never come.
 *
 * A stream declared with NoAck stores what it receives and answers
 * nothing: every publish to it is one whose PubAck is lost. The engine
 * must report each such publish exactly once, as SL_TIMEOUT, after its
 * PubAck wait (5 s), and must not keep the window it took: once every
 * outstanding publish has timed out, it takes the messages back from
 * nats.c and admits publishes again.
 *
 * Needs the nats-server that `make test` starts (scripts/with-brokers.sh);
 * the URL comes from SLUICE_TEST_ENGINE. Without the server the case
 * fails; it never skips.
 */
#include "sluice/engine.h"
#include "sluice/event.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <nats/nats.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CH "acks"
#define WINDOW 4096      /* publishes the engine allows outstanding */
#define ACK_WAIT_MS 5000 /* the engine's PubAck wait */
#define GIVE_UP_MS 15000 /* a bound on each wait below, not a timing */

typedef struct outcomes {
    _Atomic uint32_t calls, timeouts;
} outcomes;

static void count(sl_status st, void *ctx)
{
    outcomes *o = ctx;
    if (st == SL_TIMEOUT) {
        atomic_fetch_add(&o->timeouts, 1);
    }
    atomic_fetch_add(&o->calls, 1);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static const char *base_url(void)
{
    const char *url = getenv("SLUICE_TEST_ENGINE");
    return url != NULL ? url : "nats://127.0.0.1:14222";
}

/* The server part of base_url() (nats.c takes no query). */
static void server_of(char *out, size_t size)
{
    snprintf(out, size, "%s", base_url());
    char *q = strchr(out, '?');
    if (q != NULL) {
        *q = '\0';
    }
}

/* Declare, or delete (@p add false), the NoAck stream that the engine with
 * namespace @p ns maps channel CH to ("NS_acks", "sluice.NS.acks"). */
static void noack_stream(const char *ns, bool add)
{
    char server[256], name[64], subject[96];
    server_of(server, sizeof server);
    snprintf(name, sizeof name, "%s_" CH, ns);
    snprintf(subject, sizeof subject, "sluice.%s." CH, ns);
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    assert_int_equal(natsConnection_ConnectTo(&nc, server), NATS_OK);
    assert_int_equal(natsConnection_JetStream(&js, nc, NULL), NATS_OK);
    if (add) {
        jsStreamConfig cfg;
        jsStreamConfig_Init(&cfg);
        const char *subjects[1] = {subject};
        cfg.Name = name;
        cfg.Subjects = subjects;
        cfg.SubjectsLen = 1;
        cfg.Storage = js_MemoryStorage;
        cfg.NoAck = true;
        assert_int_equal(js_AddStream(NULL, js, &cfg, NULL, NULL), NATS_OK);
    } else {
        js_DeleteStream(js, name, NULL, NULL);
    }
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

static sl_status publish_one(sl_engine *eng, outcomes *o)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/test", "test.noack", &ev), SL_OK);
    assert_int_equal(sl_event_set_data(ev, "x", 1), SL_OK);
    sl_status st = sl_engine_publish_async(eng, CH, ev, 0, count, o);
    sl_event_unref(ev);
    return st;
}

/* Wait until @p o has seen @p n callbacks; false past GIVE_UP_MS. */
static bool wait_calls(outcomes *o, uint32_t n)
{
    uint64_t give_up = mono_ms() + GIVE_UP_MS;
    while (atomic_load(&o->calls) < n) {
        if (mono_ms() > give_up) {
            return false;
        }
        sleep_ms(20);
    }
    return true;
}

static void lost_pubacks_time_out_once_and_give_the_window_back(void **state)
{
    (void)state;
    char ns[32], url[512];
    snprintf(ns, sizeof ns, "pubtest%ld", (long)getpid());
    snprintf(url, sizeof url, "%s%sns=%s", base_url(),
             strchr(base_url(), '?') ? "&" : "?", ns);
    sl_engine *eng = NULL;
    sl_diag diag = {0};
    /* The engine first: it holds nats.c's library state, which the raw
     * connections below then share. */
    assert_int_equal(sl_engine_open(url, NULL, &eng, &diag), SL_OK);
    noack_stream(ns, true);

    outcomes o = {0};
    uint64_t t0 = mono_ms();
    uint32_t admitted = 0;
    sl_status st;
    while ((st = publish_one(eng, &o)) == SL_OK) {
        admitted++;
        assert_true(admitted <= WINDOW);
    }
    assert_int_equal(st, SL_FULL);
    assert_int_equal(admitted, WINDOW);

    /* Each is reported once, as a timeout, and not before its wait. */
    assert_true(wait_calls(&o, admitted));
    assert_true(mono_ms() - t0 >= ACK_WAIT_MS - 100);
    assert_int_equal(atomic_load(&o.timeouts), admitted);

    /* The window comes back: publishes are admitted again. */
    uint64_t give_up = mono_ms() + GIVE_UP_MS;
    while ((st = publish_one(eng, &o)) == SL_FULL && mono_ms() < give_up) {
        sleep_ms(20);
    }
    assert_int_equal(st, SL_OK);

    /* Closing reports the last one, never acknowledged either. (The
     * stream goes after: deleted first, it would have the server answer
     * a publish still on its way with "no responders".) */
    sl_engine_close(eng);
    assert_int_equal(atomic_load(&o.calls), admitted + 1);
    assert_int_equal(atomic_load(&o.timeouts), admitted + 1);
    noack_stream(ns, false);
    nats_Close(); /* the library state the raw connection opened again */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(lost_pubacks_time_out_once_and_give_the_window_back),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
