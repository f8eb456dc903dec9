/* The transport conformance suite: the eight semantics of
 * docs/semantics.md, the same cases for every engine. The engine comes from
 * SLUICE_TEST_ENGINE (an engine URL). Each case gets a fresh engine: a
 * directory URL gets a fresh subdirectory per case, a broker URL a fresh
 * namespace (query parameter ns=case-PID-N, which the engine prepends to its
 * stream and subject names), so cases never see each other's events.
 */
#include "foreign_producer.h"
#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CH "conf.events"
#define GROUP "workers"
#define DLQ CH "." GROUP ".dlq"

typedef struct fx {
    char url[1024];
    sl_engine *eng;
    char inbox[1100];   /* the idempotency store of the case; see inbox_of() */
    bool inbox_is_temp; /* a file of its own, removed at teardown */
} fx;

static int case_no;

/* An embedded engine with a store directory. */
static bool has_store_dir(const char *url)
{
    return strncmp(url, "embedded:", 9) == 0 &&
           strncmp(url, "embedded::memory:", 17) != 0;
}

/* A broker engine: its state lives outside the process. */
static bool is_broker(const char *url)
{
    return strncmp(url, "nats://", 7) == 0 || strncmp(url, "amqp://", 7) == 0;
}

/* Events survive closing the engine (and the process). */
static bool is_persistent(const char *url)
{
    return has_store_dir(url) || is_broker(url);
}

/* A fresh URL per case: "embedded:DIR?q" becomes "embedded:DIR/case-P-N?q",
 * "nats://H:P?q" becomes "nats://H:P?q&ns=case-P-N". */
static void make_url(char *out, size_t size)
{
    const char *base = getenv("SLUICE_TEST_ENGINE");
    if (base == NULL) {
        base = "embedded::memory:";
    }
    if (is_broker(base)) {
        snprintf(out, size, "%s%sns=case-%d-%d", base,
                 strchr(base, '?') ? "&" : "?", (int)getpid(), ++case_no);
        return;
    }
    if (!has_store_dir(base)) {
        snprintf(out, size, "%s", base);
        return;
    }
    const char *q = strchr(base, '?');
    int dir_len = q ? (int)(q - base) : (int)strlen(base);
    snprintf(out, size, "%.*s/case-%d-%d%s", dir_len, base, (int)getpid(),
             ++case_no, q ? q : "");
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void open_engine(fx *f)
{
    sl_diag diag = {0};
    sl_status st = sl_engine_open(f->url, NULL, &f->eng, &diag);
    if (st != SL_OK) {
        fail_msg("open %s: %s", f->url, diag.msg);
    }
}

static void declare(fx *f, uint64_t max_length, uint32_t max_attempts)
{
    sl_diag diag = {0};
    sl_channel_opts co = {.name = CH, .max_length = max_length};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co, &diag), SL_OK);
    sl_group_opts go = {
        .channel = CH, .name = GROUP, .max_attempts = max_attempts};
    assert_int_equal(sl_engine_declare_group(f->eng, &go, &diag), SL_OK);
}

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    make_url(f->url, sizeof f->url);
    open_engine(f);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    if (f->inbox_is_temp) {
        char p[1200];
        static const char *const suffix[] = {"", "-wal", "-shm"};
        for (size_t i = 0; i < 3; i++) {
            snprintf(p, sizeof p, "%s%s", f->inbox, suffix[i]);
            unlink(p);
        }
    }
    sl_engine_close(f->eng);
    free(f);
    return 0;
}

static sl_event *new_event(const char *id)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/conformance", "test.event", &ev),
                     SL_OK);
    if (id != NULL) {
        assert_int_equal(sl_event_set(ev, SL_ATTR_ID, id), SL_OK);
    }
    assert_int_equal(sl_event_set_data(ev, "{\"n\":1}", 7), SL_OK);
    return ev;
}

static sl_status publish_id(fx *f, const char *id, unsigned flags)
{
    sl_event *ev = new_event(id);
    sl_diag diag = {0};
    sl_status st = sl_engine_publish(f->eng, CH, ev, flags, 5000, &diag);
    sl_event_unref(ev);
    return st;
}

static sl_depth depth_of(fx *f, const char *channel, const char *group)
{
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(f->eng, channel, group, &d), SL_OK);
    return d;
}

static sl_subscription *subscribe(fx *f, uint32_t prefetch)
{
    sl_subscription *sub = NULL;
    sl_subscribe_opts so = {.prefetch = prefetch};
    assert_int_equal(sl_engine_subscribe(f->eng, CH, GROUP, &so, &sub, NULL),
                     SL_OK);
    return sub;
}

static sl_delivery *fetch_one(sl_subscription *sub, uint64_t timeout_ms)
{
    sl_delivery *d = NULL;
    size_t n = 0;
    sl_status st = sl_subscription_fetch(sub, &d, 1, timeout_ms, &n);
    if (st != SL_OK) {
        fail_msg("fetch: %s", sl_status_str(st));
    }
    assert_int_equal(n, 1);
    return d;
}

/* The one dead letter expected in the group's dead-letter channel. */
typedef struct dead_letter {
    char id[64];
    char reason[32];
    char attempts[16];
    char error[256];
    char channel[128];
    char group[64];
    int count;
} dead_letter;

static bool collect_dead(const sl_event *ev, uint32_t attempts, void *ctx)
{
    (void)attempts;
    dead_letter *dl = ctx;
#define COPY(field, ext)                                                       \
    snprintf(dl->field, sizeof dl->field, "%s",                                \
             sl_event_get_ext(ev, ext) ? sl_event_get_ext(ev, ext) : "")
    snprintf(dl->id, sizeof dl->id, "%s", sl_event_id(ev));
    COPY(reason, "dlqreason");
    COPY(attempts, "dlqattempts");
    COPY(error, "dlqerror");
    COPY(channel, "dlqchannel");
    COPY(group, "dlqgroup");
#undef COPY
    dl->count++;
    return true;
}

static dead_letter dead_letters(fx *f)
{
    dead_letter dl = {0};
    assert_int_equal(
        sl_engine_browse(f->eng, DLQ, "dlq", 100, collect_dead, &dl), SL_OK);
    return dl;
}

static void reopen(fx *f)
{
    sl_engine_close(f->eng);
    f->eng = NULL;
    open_engine(f);
}

/* ---- 1. publish is confirmed --------------------------------------------- */

static void publish_is_confirmed_and_durable(void **state)
{
    fx *f = *state;
    declare(f, 0, 0);
    assert_int_equal(publish_id(f, "evt-1", 0), SL_OK);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 1);
    if (is_persistent(f->url)) {
        reopen(f);
        assert_int_equal(depth_of(f, CH, GROUP).ready, 1);
        sl_subscription *sub = subscribe(f, 1);
        sl_delivery *d = fetch_one(sub, 1000);
        assert_string_equal(sl_event_id(sl_delivery_event(d)), "evt-1");
        size_t len = 0;
        const void *data = sl_event_data(sl_delivery_event(d), &len);
        assert_int_equal(len, 7);
        assert_memory_equal(data, "{\"n\":1}", 7);
        assert_int_equal(sl_delivery_ack(&d), SL_OK);
        sl_subscription_close(sub);
    }
}

static void republished_id_is_deduplicated(void **state)
{
    fx *f = *state;
    declare(f, 0, 0);
    assert_int_equal(publish_id(f, "same-id", 0), SL_OK);
    assert_int_equal(publish_id(f, "same-id", 0), SL_OK);
    assert_int_equal(publish_id(f, "other-id", 0), SL_OK);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 2);
}

static void publish_to_undeclared_channel_fails(void **state)
{
    fx *f = *state;
    sl_event *ev = new_event(NULL);
    sl_status st =
        sl_engine_publish(f->eng, "no.such.channel", ev, 0, 1000, NULL);
    assert_int_equal(st, SL_NOT_FOUND);
    sl_event_unref(ev);
}

static void invalid_event_is_refused(void **state)
{
    fx *f = *state;
    declare(f, 0, 0);
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create(&ev), SL_OK); /* no id, source, type */
    assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 1000, NULL),
                     SL_INVALID);
    sl_event_unref(ev);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 0);
}

/* ---- 2. producers feel backpressure -------------------------------------- */

static void channel_at_max_length_reports_full(void **state)
{
    fx *f = *state;
    declare(f, 3, 0);
    sl_producer *p = NULL;
    sl_producer_opts po = {.publish_timeout_ms = 100};
    assert_int_equal(sl_producer_create(f->eng, &po, &p), SL_OK);
    for (int i = 0; i < 3; i++) {
        sl_event *ev = new_event(NULL);
        assert_int_equal(sl_producer_publish(p, CH, ev, NULL), SL_OK);
        sl_event_unref(ev);
    }
    sl_event *ev = new_event(NULL);
    /* try_publish never waits; publish waits its timeout, then FULL. */
    assert_int_equal(sl_producer_try_publish(p, CH, ev, NULL, NULL), SL_FULL);
    assert_int_equal(sl_producer_publish(p, CH, ev, NULL), SL_FULL);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 3);

    /* Room made by a consumer is felt at once. */
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *d = fetch_one(sub, 1000);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    assert_int_equal(sl_producer_publish(p, CH, ev, NULL), SL_OK);
    sl_event_unref(ev);
    sl_producer_stats ps;
    sl_producer_get_stats(p, &ps);
    assert_true(ps.full >= 2);
    assert_int_equal(ps.published, 4);
    sl_subscription_close(sub);
    sl_producer_destroy(p);
}

/* max_bytes: each engine measures an event its own way (the embedded
 * engine its encoded size, JetStream the stored message with its headers,
 * RabbitMQ the body alone, and a quorum queue refuses one event late), so
 * events of 1 000 data bytes under a bound of 4 000 are refused after two
 * to five of them; never before the bound, and room made by a consumer is
 * felt at once. */
static sl_status publish_kb(fx *f)
{
    static char data[1000];
    memset(data, 'b', sizeof data);
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/conformance", "test.event", &ev),
                     SL_OK);
    assert_int_equal(sl_event_set_data(ev, data, sizeof data), SL_OK);
    sl_diag diag = {0};
    sl_status st = sl_engine_publish(f->eng, CH, ev, 0, 5000, &diag);
    sl_event_unref(ev);
    return st;
}

static void channel_at_max_bytes_reports_full(void **state)
{
    fx *f = *state;
    sl_diag diag = {0};
    sl_channel_opts co = {.name = CH, .max_bytes = 4000};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co, &diag), SL_OK);
    sl_group_opts go = {.channel = CH, .name = GROUP};
    assert_int_equal(sl_engine_declare_group(f->eng, &go, &diag), SL_OK);
    int accepted = 0;
    sl_status st = SL_OK;
    while (accepted < 20 && (st = publish_kb(f)) == SL_OK) {
        accepted++;
    }
    print_message("max_bytes 4000: %d events of 1000 data bytes taken\n",
                  accepted);
    assert_int_equal(st, SL_FULL);
    assert_in_range(accepted, 2, 5);
    assert_int_equal(publish_kb(f), SL_FULL); /* still full */
    assert_int_equal(depth_of(f, CH, GROUP).ready, (uint64_t)accepted);

    /* Room made by a consumer is felt: at once on the embedded engine and
     * JetStream; a quorum queue applies acks (on another AMQP channel than
     * the publish) on its own time, so a broker gets a moment. */
    sl_subscription *sub = subscribe(f, 1);
    for (int i = 0; i < accepted; i++) {
        sl_delivery *d = fetch_one(sub, 1000);
        assert_int_equal(sl_delivery_ack(&d), SL_OK);
    }
    sl_subscription_close(sub);
    int tries = is_broker(f->url) ? 100 : 1;
    while ((st = publish_kb(f)) == SL_FULL && --tries > 0) {
        sleep_ms(20);
    }
    assert_int_equal(st, SL_OK);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 1);
}

typedef struct window_probe {
    sl_producer *p;
    _Atomic uint32_t max_seen;
    _Atomic uint32_t confirmed;
} window_probe;

static void window_confirm(sl_status st, void *ctx)
{
    window_probe *wp = ctx;
    assert_int_equal(st, SL_OK);
    sl_producer_stats ps;
    sl_producer_get_stats(wp->p, &ps);
    uint32_t seen = atomic_load(&wp->max_seen);
    while (ps.in_flight > seen &&
           !atomic_compare_exchange_weak(&wp->max_seen, &seen, ps.in_flight)) {
    }
    atomic_fetch_add(&wp->confirmed, 1);
}

static void producer_window_bounds_unconfirmed_publishes(void **state)
{
    fx *f = *state;
    declare(f, 0, 0);
    window_probe wp = {0};
    sl_producer_opts po = {.max_in_flight = 4, .publish_timeout_ms = 5000};
    assert_int_equal(sl_producer_create(f->eng, &po, &wp.p), SL_OK);
    for (int i = 0; i < 200; i++) {
        sl_event *ev = new_event(NULL);
        assert_int_equal(
            sl_producer_publish_async(wp.p, CH, ev, window_confirm, &wp),
            SL_OK);
        sl_event_unref(ev);
        sl_producer_stats ps;
        sl_producer_get_stats(wp.p, &ps);
        assert_true(ps.in_flight <= 4);
    }
    assert_int_equal(sl_producer_flush(wp.p, 5000), SL_OK);
    assert_int_equal(atomic_load(&wp.confirmed), 200);
    assert_true(atomic_load(&wp.max_seen) <= 4);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 200);
    sl_producer_destroy(wp.p);
}

/* ---- 3. consumers hold bounded work ----------------------------------------
 */

static void fetch_never_exceeds_prefetch(void **state)
{
    fx *f = *state;
    declare(f, 0, 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(publish_id(f, NULL, 0), SL_OK);
    }
    sl_subscription *sub = subscribe(f, 3);
    sl_delivery *ds[10];
    size_t n = 0;
    /* A broker's deliveries may come in more than one burst (a fetch
     * returns what arrived): fetch until the prefetch is in hand, never
     * past it. */
    for (int calls = 0; n < 3 && calls < 10; calls++) {
        size_t got = 0;
        assert_int_equal(sl_subscription_fetch(sub, ds + n, 10 - n, 1000, &got),
                         SL_OK);
        n += got;
        assert_true(n <= 3);
    }
    assert_int_equal(n, 3);
    size_t more = 0;
    assert_int_equal(sl_subscription_fetch(sub, ds + 3, 10, 0, &more), SL_FULL);
    assert_int_equal(depth_of(f, CH, GROUP).in_flight, 3);
    assert_int_equal(sl_delivery_ack(&ds[0]), SL_OK);
    assert_int_equal(sl_subscription_fetch(sub, ds + 3, 10, 1000, &more),
                     SL_OK);
    assert_int_equal(more, 1);
    for (size_t i = 1; i < 4; i++) {
        assert_int_equal(sl_delivery_ack(&ds[i]), SL_OK);
    }
    sl_depth d = depth_of(f, CH, GROUP);
    assert_int_equal(d.ready, 6);
    assert_int_equal(d.in_flight, 0);
    sl_subscription_close(sub);
}

typedef struct busy {
    _Atomic int running;
    _Atomic int max_running;
    _Atomic int handled;
} busy;

static sl_outcome busy_handler(sl_handler_ctx *ctx, void *user)
{
    (void)ctx;
    busy *b = user;
    int now = atomic_fetch_add(&b->running, 1) + 1;
    int seen = atomic_load(&b->max_running);
    while (now > seen &&
           !atomic_compare_exchange_weak(&b->max_running, &seen, now)) {
    }
    sleep_ms(2);
    atomic_fetch_sub(&b->running, 1);
    atomic_fetch_add(&b->handled, 1);
    return SL_OUTCOME_ACK;
}

static bool wait_for_int(_Atomic int *v, int want, unsigned timeout_ms)
{
    for (unsigned waited = 0; waited < timeout_ms; waited += 5) {
        if (atomic_load(v) >= want) {
            return true;
        }
        sleep_ms(5);
    }
    return atomic_load(v) >= want;
}

static void handler_concurrency_never_exceeds_prefetch(void **state)
{
    fx *f = *state;
    declare(f, 0, 0);
    for (int i = 0; i < 60; i++) {
        assert_int_equal(publish_id(f, NULL, 0), SL_OK);
    }
    busy b = {0};
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 4,
                           .concurrency = 4,
                           .handler = busy_handler,
                           .handler_ctx = &b};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(c), SL_OK);
    assert_true(wait_for_int(&b.handled, 60, 10000));
    assert_int_equal(sl_consumer_stop(c, 5000), SL_OK);
    sl_consumer_destroy(c);
    assert_true(atomic_load(&b.max_running) <= 4);
    assert_true(atomic_load(&b.max_running) >= 2); /* it did run in parallel */
    sl_depth d = depth_of(f, CH, GROUP);
    assert_int_equal(d.ready + d.in_flight + d.delayed, 0);
}

/* ---- 4. at-least-once, retries that do not block, dead letters
 * --------------- */

static void retry_does_not_hold_prefetch(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "first", 0), SL_OK);
    assert_int_equal(publish_id(f, "second", 0), SL_OK);
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *d = fetch_one(sub, 1000);
    assert_string_equal(sl_event_id(sl_delivery_event(d)), "first");
    assert_int_equal(sl_delivery_attempt(d), 1);
    assert_int_equal(sl_delivery_retry(&d, 300, "try later"), SL_OK);
    assert_null(d);
    /* With prefetch 1, the next event comes while "first" waits. */
    d = fetch_one(sub, 100);
    assert_string_equal(sl_event_id(sl_delivery_event(d)), "second");
    assert_int_equal(depth_of(f, CH, GROUP).delayed, 1);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    /* Then "first" again, after its delay, as attempt 2. */
    uint64_t t0 = sl_time_mono_ms();
    d = fetch_one(sub, 5000);
    uint64_t waited = sl_time_mono_ms() - t0;
    assert_string_equal(sl_event_id(sl_delivery_event(d)), "first");
    assert_int_equal(sl_delivery_attempt(d), 2);
    assert_true(waited >= 150); /* it was not handed out before its time */
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

static void reject_dead_letters_at_once_with_reason(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "poison", 0), SL_OK);
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *d = fetch_one(sub, 1000);
    assert_int_equal(
        sl_delivery_dead_letter(&d, SL_DEAD_REJECTED, "bad payload"), SL_OK);
    dead_letter dl = dead_letters(f);
    assert_int_equal(dl.count, 1);
    assert_string_equal(dl.id, "poison");
    assert_string_equal(dl.reason, "rejected");
    assert_string_equal(dl.attempts, "1");
    assert_string_equal(dl.error, "bad payload");
    assert_string_equal(dl.channel, CH);
    assert_string_equal(dl.group, GROUP);
    sl_depth dep = depth_of(f, CH, GROUP);
    assert_int_equal(dep.ready + dep.delayed + dep.in_flight, 0);
    sl_subscription_close(sub);
}

static sl_outcome always_retry(sl_handler_ctx *ctx, void *user)
{
    atomic_fetch_add((_Atomic int *)user, 1);
    sl_handler_set_error(ctx, "downstream unavailable (attempt %u)",
                         (unsigned)sl_handler_attempt(ctx));
    return SL_OUTCOME_RETRY;
}

static void exhausted_retries_dead_letter_with_max_attempts(void **state)
{
    fx *f = *state;
    declare(f, 0, 3);
    assert_int_equal(publish_id(f, "flaky", 0), SL_OK);
    _Atomic int calls = 0;
    uint64_t backoff[] = {10, 20};
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 2,
                           .max_attempts = 3,
                           .backoff_ms = backoff,
                           .backoff_len = 2,
                           .handler = always_retry,
                           .handler_ctx = (void *)&calls};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(c), SL_OK);
    dead_letter dl = {0};
    for (int i = 0; i < 1000 && dl.count == 0; i++) {
        sleep_ms(5);
        dl = dead_letters(f);
    }
    assert_int_equal(sl_consumer_stop(c, 5000), SL_OK);
    sl_consumer_destroy(c);
    assert_int_equal(atomic_load(&calls), 3);
    assert_int_equal(dl.count, 1);
    assert_string_equal(dl.reason, "max_attempts");
    assert_string_equal(dl.attempts, "3");
    assert_string_equal(dl.error, "downstream unavailable (attempt 3)");
}

/* ---- 5. crashes redeliver
 * ---------------------------------------------------- */

static void
closed_consumer_redelivers_to_another_counting_the_attempt(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "in-flight", 0), SL_OK);
    sl_subscription *dying = subscribe(f, 1);
    sl_delivery *d = fetch_one(dying, 1000);
    assert_int_equal(sl_delivery_attempt(d), 1);
    sl_subscription_close(dying); /* dies without settling */
    sl_subscription *other = subscribe(f, 1);
    d = fetch_one(other, 1000);
    assert_string_equal(sl_event_id(sl_delivery_event(d)), "in-flight");
    assert_int_equal(sl_delivery_attempt(d), 2);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(other);
}

static void crash_loop_ends_in_dead_letter(void **state)
{
    fx *f = *state;
    declare(f, 0, 2);
    assert_int_equal(publish_id(f, "killer", 0), SL_OK);
    for (int i = 0; i < 2; i++) {
        sl_subscription *sub = subscribe(f, 1);
        sl_delivery *d = fetch_one(sub, 1000);
        assert_int_equal(sl_delivery_attempt(d), (uint32_t)i + 1);
        sl_subscription_close(sub); /* the worker "crashed" */
    }
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(sl_subscription_fetch(sub, &d, 1, 50, &n), SL_EMPTY);
    sl_subscription_close(sub);
    dead_letter dl = dead_letters(f);
    assert_int_equal(dl.count, 1);
    assert_string_equal(dl.reason, "max_attempts");
    assert_string_equal(dl.attempts, "2");
}

static void process_crash_redelivers_counting_the_attempt(void **state)
{
    fx *f = *state;
    if (!is_persistent(f->url)) {
        skip(); /* an in-memory engine has nothing to recover */
    }
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "survivor", 0), SL_OK);
    sl_engine_close(f->eng);
    f->eng = NULL;
    /* A child process takes the delivery and dies without settling it. */
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        sl_engine *eng = NULL;
        sl_subscription *sub = NULL;
        sl_delivery *d = NULL;
        size_t n = 0;
        sl_subscribe_opts so = {.prefetch = 1};
        if (sl_engine_open(f->url, NULL, &eng, NULL) != SL_OK ||
            sl_engine_subscribe(eng, CH, GROUP, &so, &sub, NULL) != SL_OK ||
            sl_subscription_fetch(sub, &d, 1, 2000, &n) != SL_OK) {
            _exit(2);
        }
        _exit(0); /* no ack, no close: a crash */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    open_engine(f);
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *d = fetch_one(sub, 1000);
    assert_string_equal(sl_event_id(sl_delivery_event(d)), "survivor");
    assert_int_equal(sl_delivery_attempt(d), 2);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);
}

/* A live holder keeps its delivery however long it holds it: on a broker
 * with an ack timeout (JetStream's AckWait, 500 ms in the suite's URL) the
 * engine's in-progress heartbeats (+WPI) keep the server from giving it
 * to another subscriber of the group. Held 1.6 s here. */
static void held_delivery_stays_with_its_live_holder(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "long", 0), SL_OK);
    sl_subscription *a = subscribe(f, 1);
    sl_subscription *b = subscribe(f, 1);
    sl_delivery *d = fetch_one(a, 1000);
    sleep_ms(1600);
    sl_delivery *other = NULL;
    size_t n = 0;
    sl_status st = sl_subscription_fetch(b, &other, 1, 300, &n);
    if (st == SL_OK) {
        fail_msg("the held delivery went to another subscriber (attempt %u)",
                 sl_delivery_attempt(other));
    }
    assert_int_equal(st, SL_EMPTY);
    assert_string_equal(sl_event_id(sl_delivery_event(d)), "long");
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_depth dp = depth_of(f, CH, GROUP);
    assert_int_equal(dp.ready + dp.in_flight, 0);
    sl_subscription_close(b);
    sl_subscription_close(a);
}

/* ---- 6. deadlines
 * ------------------------------------------------------------- */

static void expired_event_is_dead_lettered_not_delivered(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    sl_event *ev = new_event("late");
    sl_event_set_deadline_ms(ev, sl_time_wall_ms() - 1);
    assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 5000, NULL), SL_OK);
    sl_event_unref(ev);
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *d = NULL;
    size_t n = 0;
    assert_int_equal(sl_subscription_fetch(sub, &d, 1, 50, &n), SL_EMPTY);
    sl_subscription_close(sub);
    dead_letter dl = dead_letters(f);
    assert_int_equal(dl.count, 1);
    assert_string_equal(dl.id, "late");
    assert_string_equal(dl.reason, "expired");
}

typedef struct deadline_probe {
    sl_producer *p;
    uint64_t remaining_ms;
    uint64_t child_deadline;
    _Atomic int done;
} deadline_probe;

static sl_outcome deadline_handler(sl_handler_ctx *ctx, void *user)
{
    deadline_probe *dp = user;
    if (strcmp(sl_handler_channel(ctx), CH) != 0) {
        return SL_OUTCOME_ACK;
    }
    dp->remaining_ms = sl_handler_remaining_ms(ctx);
    sl_event *child = new_event(NULL);
    sl_status st = sl_handler_publish(ctx, "conf.children", child, NULL);
    dp->child_deadline = sl_event_deadline_ms(child);
    sl_event_unref(child);
    atomic_store(&dp->done, st == SL_OK ? 1 : -1);
    return SL_OUTCOME_ACK;
}

static void
handler_sees_remaining_time_and_children_inherit_deadline(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    sl_channel_opts co2 = {.name = "conf.children"};
    assert_int_equal(sl_engine_declare_channel(f->eng, &co2, NULL), SL_OK);
    sl_group_opts go2 = {.channel = "conf.children", .name = "sink"};
    assert_int_equal(sl_engine_declare_group(f->eng, &go2, NULL), SL_OK);
    uint64_t deadline = sl_time_wall_ms() + 3000;
    sl_event *ev = new_event("timed");
    sl_event_set_deadline_ms(ev, deadline);
    assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 5000, NULL), SL_OK);
    sl_event_unref(ev);

    deadline_probe dp = {0};
    assert_int_equal(sl_producer_create(f->eng, NULL, &dp.p), SL_OK);
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 1,
                           .handler_timeout_ms = 60000,
                           .handler = deadline_handler,
                           .handler_ctx = &dp,
                           .producer = dp.p};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(c), SL_OK);
    assert_true(wait_for_int(&dp.done, 1, 5000));
    assert_int_equal(sl_consumer_stop(c, 5000), SL_OK);
    sl_consumer_destroy(c);
    sl_producer_destroy(dp.p);
    /* The deadline, not the 60 s handler timeout, bounds the time left. */
    assert_true(dp.remaining_ms <= 3000);
    assert_true(dp.remaining_ms > 0);
    assert_int_equal(dp.child_deadline, deadline);
    assert_int_equal(depth_of(f, "conf.children", "sink").ready, 1);
}

/* ---- 7. idempotent consumers
 * ---------------------------------------------------- */

typedef struct counter {
    _Atomic int calls;
    int retry_first;
} counter;

static sl_outcome counting_handler(sl_handler_ctx *ctx, void *user)
{
    counter *k = user;
    int n = atomic_fetch_add(&k->calls, 1) + 1;
    if (k->retry_first && sl_handler_attempt(ctx) == 1) {
        (void)n;
        return SL_OUTCOME_RETRY;
    }
    return SL_OUTCOME_ACK;
}

/* The case's idempotency store, shared by every consumer of the case and
 * kept across an engine's reopening: SLUICE_TEST_INBOX (e.g. nats-kv), the
 * store directory's inbox.db, or else a temporary SQLite file. */
static const char *inbox_of(fx *f)
{
    if (f->inbox[0] != '\0') {
        return f->inbox;
    }
    const char *store = getenv("SLUICE_TEST_INBOX");
    if (store != NULL) {
        snprintf(f->inbox, sizeof f->inbox, "%s", store);
    } else if (has_store_dir(f->url)) {
        const char *p = f->url + strlen("embedded:");
        const char *q = strchr(p, '?');
        snprintf(f->inbox, sizeof f->inbox, "%.*s/inbox.db",
                 (int)(q ? q - p : (long)strlen(p)), p);
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(f->inbox, sizeof f->inbox,
                 "%s/sluice-conformance-inbox-%d-%d.db", tmp ? tmp : "/tmp",
                 (int)getpid(), case_no);
        f->inbox_is_temp = true;
    }
    return f->inbox;
}

static void run_idempotent_consumer(fx *f, counter *k, int want_calls,
                                    sl_consumer_stats *stats)
{
    const char *inbox = inbox_of(f);
    uint64_t backoff[] = {10};
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 1,
                           .backoff_ms = backoff,
                           .backoff_len = 1,
                           .handler = counting_handler,
                           .handler_ctx = k,
                           .inbox_path = inbox};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(c), SL_OK);
    for (int i = 0; i < 1000; i++) {
        sl_depth d = depth_of(f, CH, GROUP);
        if (atomic_load(&k->calls) >= want_calls &&
            d.ready + d.delayed + d.in_flight == 0) {
            break;
        }
        sleep_ms(5);
    }
    assert_int_equal(sl_consumer_stop(c, 5000), SL_OK);
    sl_consumer_get_stats(c, stats);
    sl_consumer_destroy(c);
}

static void inbox_skips_an_id_already_processed(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    /* The same id twice past the engine's dedup, as after a dedup window. */
    assert_int_equal(publish_id(f, "charge-42", 0), SL_OK);
    assert_int_equal(publish_id(f, "charge-42", SL_PUBLISH_NO_DEDUP), SL_OK);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 2);
    counter k = {0};
    sl_consumer_stats stats;
    run_idempotent_consumer(f, &k, 1, &stats);
    assert_int_equal(atomic_load(&k.calls), 1);
    assert_int_equal(stats.duplicates, 1);
    assert_int_equal(stats.acked, 1);
}

static void inbox_records_only_after_ack(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "retry-me", 0), SL_OK);
    counter k = {.retry_first = 1};
    sl_consumer_stats stats;
    run_idempotent_consumer(f, &k, 2, &stats);
    /* The RETRY was not recorded, so the redelivery ran the handler. */
    assert_int_equal(atomic_load(&k.calls), 2);
    assert_int_equal(stats.duplicates, 0);
    assert_int_equal(stats.acked, 1);
}

/* ---- 7. events from producers that know nothing of sluice -------------------
 */

/* A message with no id (no CloudEvents attributes, no message id: what
 * most producers send) gets one from the engine. Distinct messages must
 * never share it, whichever worker, subscription, process or engine
 * instance receives them: an inbox would skip all but the first. */
#define FOREIGN_N 24
#define FOREIGN_WORKERS 3

typedef struct id_log {
    pthread_mutex_t mu;
    char ids[2 * FOREIGN_N][192];
    int n;
    _Atomic int calls;
} id_log;

static sl_outcome logging_handler(sl_handler_ctx *ctx, void *user)
{
    id_log *l = user;
    pthread_mutex_lock(&l->mu);
    if (l->n < (int)(sizeof l->ids / sizeof l->ids[0])) {
        snprintf(l->ids[l->n++], sizeof l->ids[0], "%s",
                 sl_event_id(sl_handler_event(ctx)));
    }
    pthread_mutex_unlock(&l->mu);
    atomic_fetch_add(&l->calls, 1);
    return SL_OUTCOME_ACK;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

static int distinct_ids(id_log *l)
{
    qsort(l->ids, (size_t)l->n, sizeof l->ids[0], cmp_id);
    int d = 0;
    for (int i = 0; i < l->n; i++) {
        d += i == 0 || strcmp(l->ids[i - 1], l->ids[i]) != 0;
    }
    return d;
}

/* Identical bodies on purpose: an id made from the content would collide. */
static void publish_foreign(fx *f, size_t n)
{
    const char *bodies[FOREIGN_N];
    for (size_t i = 0; i < n; i++) {
        bodies[i] = i % 2 ? "{\"sku\":\"A-1\",\"qty\":1}" : "plain text";
    }
    char err[512] = "";
    if (foreign_publish(f->eng, f->url, CH, bodies, n, err, sizeof err) !=
        SL_OK) {
        fail_msg("foreign publish: %s", err);
    }
}

/* FOREIGN_WORKERS idempotent consumers of the group (each its own
 * subscription: an AMQP channel, a pull subscription) sharing one inbox,
 * until @p want handler calls and an empty group; returns the inbox's
 * skips. */
static uint64_t run_workers(fx *f, id_log *l, int want)
{
    sl_consumer *c[FOREIGN_WORKERS] = {0};
    uint64_t backoff[] = {10};
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 4,
                           .backoff_ms = backoff,
                           .backoff_len = 1,
                           .handler = logging_handler,
                           .handler_ctx = l,
                           .inbox_path = inbox_of(f)};
    for (int i = 0; i < FOREIGN_WORKERS; i++) {
        sl_diag diag = {0};
        if (sl_consumer_create(f->eng, &co, &c[i], &diag) != SL_OK) {
            fail_msg("consumer %d: %s", i, diag.msg);
        }
    }
    for (int i = 0; i < FOREIGN_WORKERS; i++) {
        assert_int_equal(sl_consumer_start(c[i]), SL_OK);
    }
    /* Up to 30 s: a shared broker may be slow, the case is not timed. */
    sl_depth d = {0};
    for (int i = 0; i < 6000; i++) {
        d = depth_of(f, CH, GROUP);
        if (atomic_load(&l->calls) >= want &&
            d.ready + d.delayed + d.in_flight == 0) {
            break;
        }
        sleep_ms(5);
    }
    if (atomic_load(&l->calls) < want) {
        print_message(
            "handled %d of %d; group depth ready %" PRIu64 " delayed %" PRIu64
            " in flight %" PRIu64 "; dead letters %d\n",
            atomic_load(&l->calls), want, (uint64_t)d.ready,
            (uint64_t)d.delayed, (uint64_t)d.in_flight, dead_letters(f).count);
    }
    uint64_t skipped = 0;
    for (int i = 0; i < FOREIGN_WORKERS; i++) {
        sl_consumer_signal_stop(c[i]);
    }
    for (int i = 0; i < FOREIGN_WORKERS; i++) {
        assert_int_equal(sl_consumer_stop(c[i], 5000), SL_OK);
        sl_consumer_stats st;
        sl_consumer_get_stats(c[i], &st);
        skipped += st.duplicates;
        sl_consumer_destroy(c[i]);
    }
    return skipped;
}

static void foreign_messages_without_id_are_all_handled(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    id_log l = {.mu = PTHREAD_MUTEX_INITIALIZER};
    publish_foreign(f, FOREIGN_N);
    assert_int_equal(run_workers(f, &l, FOREIGN_N), 0);
    assert_int_equal(atomic_load(&l.calls), FOREIGN_N);
    assert_int_equal(distinct_ids(&l), FOREIGN_N);
    /* A restart: new engine connections and subscriptions, the same
     * inbox. New messages are new events, not duplicates of the first. */
    reopen(f);
    if (!is_persistent(f->url)) {
        declare(f, 0, 5);
    }
    publish_foreign(f, FOREIGN_N);
    assert_int_equal(run_workers(f, &l, 2 * FOREIGN_N), 0);
    assert_int_equal(atomic_load(&l.calls), 2 * FOREIGN_N);
    assert_int_equal(distinct_ids(&l), 2 * FOREIGN_N);
}

/* Engines whose messages have an identity of their own that survives a
 * redelivery: the embedded store's event, JetStream's stream sequence.
 * A RabbitMQ quorum queue has none (docs/engines/rabbitmq.md). */
static bool redelivery_keeps_foreign_id(const char *url)
{
    return strncmp(url, "amqp", 4) != 0;
}

/* The redelivery of a message with no id carries the id its first
 * delivery had where the engine can tell it is the same message, so an
 * inbox that recorded it (the handler ACKed, then the worker died before
 * the engine heard the ack) skips it; a retry keeps the id on every
 * engine. */
static void foreign_message_keeps_its_id_on_redelivery(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    publish_foreign(f, 1);
    sl_subscription *dying = subscribe(f, 1);
    sl_delivery *d = fetch_one(dying, 2000);
    char first[192];
    snprintf(first, sizeof first, "%s", sl_event_id(sl_delivery_event(d)));
    sl_subscription_close(dying); /* dies without settling */

    sl_subscription *sub = subscribe(f, 1);
    d = fetch_one(sub, 2000);
    assert_int_equal(sl_delivery_attempt(d), 2);
    char second[192];
    snprintf(second, sizeof second, "%s", sl_event_id(sl_delivery_event(d)));
    if (redelivery_keeps_foreign_id(f->url)) {
        assert_string_equal(second, first);
    }
    assert_int_equal(sl_delivery_retry(&d, 0, "again"), SL_OK);
    d = fetch_one(sub, 2000);
    assert_int_equal(sl_delivery_attempt(d), 3);
    assert_string_equal(sl_event_id(sl_delivery_event(d)), second);
    assert_int_equal(sl_delivery_ack(&d), SL_OK);
    sl_subscription_close(sub);

    /* A worker takes a message with no id and dies; another event with
     * the id the engine gave it is handled first (as if the dead worker's
     * handler had ACKed and the inbox had recorded it before the engine
     * heard the ack). The redelivery is then skipped: one handler call,
     * one duplicate. */
    if (redelivery_keeps_foreign_id(f->url)) {
        publish_foreign(f, 1);
        sl_subscription *a = subscribe(f, 1);
        d = fetch_one(a, 2000);
        char id[192];
        snprintf(id, sizeof id, "%s", sl_event_id(sl_delivery_event(d)));
        sl_subscription_close(a);
        sl_event *ev = new_event(id);
        assert_int_equal(
            sl_engine_publish(f->eng, CH, ev, SL_PUBLISH_NO_DEDUP, 5000, NULL),
            SL_OK);
        sl_event_unref(ev);
        counter k = {0};
        sl_consumer_stats stats;
        run_idempotent_consumer(f, &k, 1, &stats);
        assert_int_equal(atomic_load(&k.calls), 1);
        assert_int_equal(stats.duplicates, 1);
    }
}

/* ---- 8. graceful shutdown
 * -------------------------------------------------------- */

typedef struct slow {
    unsigned ms;
    _Atomic int started;
    _Atomic int finished;
} slow;

static sl_outcome slow_handler(sl_handler_ctx *ctx, void *user)
{
    (void)ctx;
    slow *s = user;
    atomic_fetch_add(&s->started, 1);
    sleep_ms(s->ms);
    atomic_fetch_add(&s->finished, 1);
    return SL_OUTCOME_ACK;
}

static void shutdown_drains_in_flight_and_releases_the_rest(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    for (int i = 0; i < 20; i++) {
        assert_int_equal(publish_id(f, NULL, 0), SL_OK);
    }
    slow s = {.ms = 150};
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 8,
                           .concurrency = 2,
                           .handler = slow_handler,
                           .handler_ctx = &s};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(c), SL_OK);
    assert_true(wait_for_int(&s.started, 2, 5000));
    assert_int_equal(sl_consumer_stop(c, 5000), SL_OK);
    sl_consumer_stats stats;
    sl_consumer_get_stats(c, &stats);
    sl_consumer_destroy(c);
    /* Every started handler finished and was acked; nothing else ran. */
    assert_int_equal(atomic_load(&s.finished), atomic_load(&s.started));
    assert_int_equal(stats.acked, (uint64_t)atomic_load(&s.finished));
    sl_depth d = depth_of(f, CH, GROUP);
    assert_int_equal(d.in_flight, 0);
    assert_int_equal(d.ready, 20 - stats.acked);
    /* Released deliveries were not counted as attempts. */
    sl_subscription *sub = subscribe(f, 1);
    sl_delivery *dv = fetch_one(sub, 1000);
    assert_int_equal(sl_delivery_attempt(dv), 1);
    assert_int_equal(sl_delivery_ack(&dv), SL_OK);
    sl_subscription_close(sub);
}

static void shutdown_past_drain_timeout_releases_unfinished(void **state)
{
    fx *f = *state;
    declare(f, 0, 5);
    assert_int_equal(publish_id(f, "stuck", 0), SL_OK);
    slow s = {.ms = 1500};
    sl_consumer *c = NULL;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 1,
                           .handler = slow_handler,
                           .handler_ctx = &s};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_OK);
    assert_int_equal(sl_consumer_start(c), SL_OK);
    assert_true(wait_for_int(&s.started, 1, 5000));
    assert_int_equal(sl_consumer_stop(c, 100), SL_TIMEOUT);
    /* Released at once, not acked, although the handler still runs. */
    sl_depth d = depth_of(f, CH, GROUP);
    assert_int_equal(d.ready, 1);
    assert_int_equal(d.in_flight, 0);
    sl_consumer_stats stats;
    sl_consumer_get_stats(c, &stats);
    assert_int_equal(stats.acked, 0);
    sl_consumer_destroy(c); /* waits for the handler to return */
    assert_int_equal(atomic_load(&s.finished), 1);
    assert_int_equal(depth_of(f, CH, GROUP).ready, 1); /* late ACK dropped */
}

int main(void)
{
    const char *url = getenv("SLUICE_TEST_ENGINE");
    printf("# conformance suite on %s\n", url ? url : "embedded::memory:");
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(publish_is_confirmed_and_durable),
        T(republished_id_is_deduplicated),
        T(publish_to_undeclared_channel_fails),
        T(invalid_event_is_refused),
        T(channel_at_max_length_reports_full),
        T(channel_at_max_bytes_reports_full),
        T(producer_window_bounds_unconfirmed_publishes),
        T(fetch_never_exceeds_prefetch),
        T(handler_concurrency_never_exceeds_prefetch),
        T(retry_does_not_hold_prefetch),
        T(reject_dead_letters_at_once_with_reason),
        T(exhausted_retries_dead_letter_with_max_attempts),
        T(closed_consumer_redelivers_to_another_counting_the_attempt),
        T(crash_loop_ends_in_dead_letter),
        T(process_crash_redelivers_counting_the_attempt),
        T(held_delivery_stays_with_its_live_holder),
        T(expired_event_is_dead_lettered_not_delivered),
        T(handler_sees_remaining_time_and_children_inherit_deadline),
        T(inbox_skips_an_id_already_processed),
        T(inbox_records_only_after_ack),
        T(foreign_messages_without_id_are_all_handled),
        T(foreign_message_keeps_its_id_on_redelivery),
        T(shutdown_drains_in_flight_and_releases_the_rest),
        T(shutdown_past_drain_timeout_releases_unfinished),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
