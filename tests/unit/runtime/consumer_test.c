/* The consumer runtime, beyond the conformance suite: handler timeouts,
 * the error text of a REJECT, a handler's own retry delay, option checks,
 * the log lines of expected outcomes, and the transactional inbox.
 */
#include "sluice/alloc.h"
#include "sluice/consumer.h"
#include "sluice/log.h"
#include "sluice/metrics.h"

#include "core/waiter.h"
#include "support.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define CH "orders.placed"
#define GROUP "fulfilment"
#define DLQ CH "." GROUP ".dlq"
#define T0 1700000000000ull
#define WAIT_MS 10000 /* generous: sanitizer builds are slow */

/* A clock the test advances while engine threads read it. */
/* What handlers saw; handlers signal, the test waits with a deadline. */
typedef struct probe {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int calls;
    int done_attempts;  /* bit n set: attempt n finished */
    bool late_returned; /* the timed-out handler came back */
    bool retry_first;   /* handler: RETRY attempt 1 */
    bool reject;        /* handler: REJECT */
    const char *error;  /* handler: error text to set */
    uint64_t retry_after_ms;
    bool db_seen; /* sl_handler_db was not NULL */
    int db_failures;
} probe;

static void probe_init(probe *p)
{
    memset(p, 0, sizeof *p);
    pthread_mutex_init(&p->mu, NULL);
    sl__cond_init_mono(&p->cv);
}

static void probe_fini(probe *p)
{
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
}

/* Wait until attempt @p n has finished; false at the deadline. */
static bool probe_wait_attempt(probe *p, int n, uint64_t timeout_ms)
{
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    pthread_mutex_lock(&p->mu);
    int rc = 0;
    while (!(p->done_attempts & (1 << n)) && rc == 0) {
        rc = pthread_cond_timedwait(&p->cv, &p->mu, &until);
    }
    bool ok = (p->done_attempts & (1 << n)) != 0;
    pthread_mutex_unlock(&p->mu);
    return ok;
}

static void probe_finish(probe *p, int attempt)
{
    pthread_mutex_lock(&p->mu);
    p->done_attempts |= 1 << attempt;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
}

static int probe_calls(probe *p)
{
    pthread_mutex_lock(&p->mu);
    int n = p->calls;
    pthread_mutex_unlock(&p->mu);
    return n;
}

/* ---- fixture ------------------------------------------------------------- */

typedef struct fx {
    sl_manual_clock clock;
    sl_engine *eng;
    probe pr;
    sl_consumer *c;
    char dir[256];
} fx;

static int setup(void **state)
{
    fx *f = calloc(1, sizeof *f);
    if (f == NULL) {
        return -1;
    }
    if (!ts_tempdir(f->dir, sizeof f->dir, "consumer-test")) {
        free(f);
        return -1;
    }
    sl_manual_clock_init(&f->clock, T0);
    probe_init(&f->pr);
    sl_engine_opts eo = {.clock = &f->clock.clock};
    if (sl_engine_open("embedded::memory:", &eo, &f->eng, NULL) != SL_OK) {
        return -1;
    }
    /* The group exists before anything is published, as with a service
     * whose consumers were declared earlier. */
    sl_channel_opts co = {.name = CH};
    sl_group_opts go = {.channel = CH, .name = GROUP};
    if (sl_engine_declare_channel(f->eng, &co, NULL) != SL_OK ||
        sl_engine_declare_group(f->eng, &go, NULL) != SL_OK) {
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    sl_consumer_destroy(f->c);
    sl_engine_close(f->eng);
    probe_fini(&f->pr);
    ts_rm_rf(f->dir);
    free(f);
    return 0;
}

static void publish(fx *f, const char *id)
{
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/shop", "order.placed", &ev), SL_OK);
    assert_int_equal(sl_event_set(ev, SL_ATTR_ID, id), SL_OK);
    assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 5000, NULL), SL_OK);
    sl_event_unref(ev);
}

static void start(fx *f, sl_consumer_opts *co)
{
    co->channel = CH;
    co->group = GROUP;
    co->handler_ctx = &f->pr;
    sl_diag diag = {0};
    sl_status st = sl_consumer_create(f->eng, co, &f->c, &diag);
    if (st != SL_OK) {
        fail_msg("consumer: %s (%s)", sl_status_str(st), diag.msg);
    }
    assert_int_equal(sl_consumer_start(f->c), SL_OK);
}

static sl_consumer_stats stop(fx *f)
{
    assert_int_equal(sl_consumer_stop(f->c, WAIT_MS), SL_OK);
    sl_consumer_stats stats;
    sl_consumer_get_stats(f->c, &stats);
    return stats;
}

static sl_depth depth_of(fx *f)
{
    sl_depth d = {0};
    assert_int_equal(sl_engine_depth(f->eng, CH, GROUP, &d), SL_OK);
    return d;
}

typedef struct dead_letter {
    int count;
    char reason[32];
    char attempts[16];
    char error[600];
} dead_letter;

static bool collect_dead(const sl_event *ev, uint32_t attempts, void *ctx)
{
    (void)attempts;
    dead_letter *dl = ctx;
    const char *v;
    dl->count++;
    v = sl_event_get_ext(ev, "dlqreason");
    snprintf(dl->reason, sizeof dl->reason, "%s", v ? v : "");
    v = sl_event_get_ext(ev, "dlqattempts");
    snprintf(dl->attempts, sizeof dl->attempts, "%s", v ? v : "");
    v = sl_event_get_ext(ev, "dlqerror");
    snprintf(dl->error, sizeof dl->error, "%s", v ? v : "");
    return true;
}

static bool has_dead_letter(void *arg)
{
    fx *f = arg;
    dead_letter dl = {0};
    return sl_engine_browse(f->eng, DLQ, "dlq", 0, collect_dead, &dl) ==
               SL_OK &&
           dl.count > 0;
}

static dead_letter dead_letters(fx *f)
{
    dead_letter dl = {0};
    assert_int_equal(sl_engine_browse(f->eng, DLQ, "dlq", 0, collect_dead, &dl),
                     SL_OK);
    return dl;
}

/* ---- handlers ------------------------------------------------------------ */

/* Attempt 1 overruns its timeout: it returns only after attempt 2 ran. */
static sl_outcome stuck_once(sl_handler_ctx *ctx, void *user)
{
    probe *p = user;
    int attempt = (int)sl_handler_attempt(ctx);
    pthread_mutex_lock(&p->mu);
    p->calls++;
    pthread_mutex_unlock(&p->mu);
    if (attempt == 1) {
        probe_wait_attempt(p, 2, WAIT_MS);
        pthread_mutex_lock(&p->mu);
        p->late_returned = true;
        pthread_mutex_unlock(&p->mu);
    }
    probe_finish(p, attempt);
    return SL_OUTCOME_ACK;
}

/* The behaviour the probe's flags ask for. */
static sl_outcome scripted(sl_handler_ctx *ctx, void *user)
{
    probe *p = user;
    int attempt = (int)sl_handler_attempt(ctx);
    sl_outcome out = SL_OUTCOME_ACK;
    pthread_mutex_lock(&p->mu);
    p->calls++;
    if (p->error != NULL) {
        sl_handler_set_error(ctx, "%s (event %s)", p->error,
                             sl_event_id(sl_handler_event(ctx)));
    }
    if (p->reject) {
        out = SL_OUTCOME_REJECT;
    } else if (p->retry_first && attempt == 1) {
        if (p->retry_after_ms != 0) {
            sl_handler_retry_after(ctx, p->retry_after_ms);
        }
        out = SL_OUTCOME_RETRY;
    }
    pthread_mutex_unlock(&p->mu);
    probe_finish(p, attempt);
    return out;
}

/* Writes a row per attempt through the inbox's connection. */
static sl_outcome write_effect(sl_handler_ctx *ctx, void *user)
{
    probe *p = user;
    int attempt = (int)sl_handler_attempt(ctx);
    sqlite3 *db = sl_handler_db(ctx);
    pthread_mutex_lock(&p->mu);
    p->calls++;
    p->db_seen = db != NULL;
    if (db != NULL) {
        char sql[200];
        snprintf(sql, sizeof sql,
                 "INSERT INTO effects(id, attempt) VALUES('%s', %d)",
                 sl_event_id(sl_handler_event(ctx)), attempt);
        if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK) {
            p->db_failures++;
        }
    }
    sl_outcome out = SL_OUTCOME_ACK;
    if (p->reject) {
        out = SL_OUTCOME_REJECT;
    } else if (p->retry_first && attempt == 1) {
        out = SL_OUTCOME_RETRY;
    }
    pthread_mutex_unlock(&p->mu);
    probe_finish(p, attempt);
    return out;
}

static bool one_delayed(void *arg)
{
    fx *f = arg;
    sl_depth d = {0};
    return sl_engine_depth(f->eng, CH, GROUP, &d) == SL_OK && d.delayed == 1;
}

/* ---- timeouts ------------------------------------------------------------ */

static bool one_call(void *arg)
{
    return probe_calls(arg) == 1;
}

static void handler_timeout_retries_and_discards_the_late_result(void **state)
{
    fx *f = *state;
    publish(f, "slow-1");
    uint64_t backoff[] = {1};
    /* Two workers: the overrunning one stays busy, the other takes the
     * retry. */
    sl_consumer_opts co = {.prefetch = 2,
                           .concurrency = 2,
                           .handler_timeout_ms = 50,
                           .backoff_ms = backoff,
                           .backoff_len = 1,
                           .handler = stuck_once,
                           .clock = &f->clock.clock};
    start(f, &co);
    /* Attempt 1 runs; its timeout passes on the consumer's clock, one
     * millisecond short first. */
    assert_true(ts_wait_until(one_call, &f->pr, WAIT_MS));
    sl_manual_clock_advance(&f->clock, 49);
    assert_int_equal(depth_of(f).delayed, 0);
    sl_manual_clock_advance(&f->clock, 1);
    /* The watchdog settled it as a RETRY: its backoff passes. */
    assert_true(ts_wait_until(one_delayed, f, WAIT_MS));
    sl_manual_clock_advance(&f->clock, 1);
    assert_true(probe_wait_attempt(&f->pr, 2, WAIT_MS));
    assert_true(probe_wait_attempt(&f->pr, 1, WAIT_MS));
    sl_consumer_stats stats = stop(f);
    pthread_mutex_lock(&f->pr.mu);
    bool late_returned = f->pr.late_returned;
    pthread_mutex_unlock(&f->pr.mu);
    assert_true(late_returned);
    assert_int_equal(probe_calls(&f->pr), 2);
    assert_int_equal(stats.timed_out, 1);
    assert_int_equal(stats.retried, 1);
    assert_int_equal(stats.acked, 1); /* attempt 2's; the late ACK is not */
    sl_depth d = depth_of(f);
    assert_int_equal(d.ready + d.delayed + d.in_flight, 0);
    assert_int_equal(dead_letters(f).count, 0);
}

/* ---- rejects ------------------------------------------------------------- */

static void reject_error_text_reaches_the_dead_letter(void **state)
{
    fx *f = *state;
    f->pr.reject = true;
    f->pr.error = "order has no customer";
    publish(f, "order-7");
    sl_consumer_opts co = {.prefetch = 1, .handler = scripted};
    start(f, &co);
    assert_true(ts_wait_until(has_dead_letter, f, WAIT_MS));
    sl_consumer_stats stats = stop(f);
    dead_letter dl = dead_letters(f);
    assert_int_equal(dl.count, 1);
    assert_string_equal(dl.reason, "rejected");
    assert_string_equal(dl.attempts, "1");
    assert_string_equal(dl.error, "order has no customer (event order-7)");
    assert_int_equal(stats.rejected, 1);
    assert_int_equal(stats.acked, 0);
    assert_int_equal(probe_calls(&f->pr), 1);
}

/* What the consumer reported to the status projection. */
typedef struct reports {
    pthread_mutex_t mu;
    char lines[8][700];
    int n;
} reports;

static void collect_report(const char *key, const char *status,
                           const char *detail, void *ctx)
{
    reports *r = ctx;
    pthread_mutex_lock(&r->mu);
    if (r->n < 8) {
        snprintf(r->lines[r->n++], sizeof r->lines[0], "%s %s %s", key, status,
                 detail ? detail : "-");
    }
    pthread_mutex_unlock(&r->mu);
}

static bool two_reports(void *arg)
{
    reports *r = arg;
    pthread_mutex_lock(&r->mu);
    int n = r->n;
    pthread_mutex_unlock(&r->mu);
    return n >= 2;
}

static void status_is_reported_for_the_request_behind_the_event(void **state)
{
    fx *f = *state;
    /* A child of request "req-9": statuses are keyed by correlationid. */
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/shop", "order.placed", &ev), SL_OK);
    sl_event_set(ev, SL_ATTR_CORRELATIONID, "req-9");
    assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 5000, NULL), SL_OK);
    sl_event_unref(ev);
    reports r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sl_consumer_opts co = {.prefetch = 1,
                           .handler = scripted,
                           .report = collect_report,
                           .report_ctx = &r,
                           .status_start = "processing",
                           .status_ack = "completed",
                           .status_dead = "failed"};
    start(f, &co);
    assert_true(ts_wait_until(two_reports, &r, WAIT_MS));
    stop(f);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.lines[0], "req-9 processing -");
    assert_string_equal(r.lines[1], "req-9 completed -");
}

static void dead_letter_reports_failed_with_the_reason(void **state)
{
    fx *f = *state;
    f->pr.reject = true;
    f->pr.error = "no such sku";
    publish(f, "order-8");
    reports r = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sl_consumer_opts co = {.prefetch = 1,
                           .handler = scripted,
                           .report = collect_report,
                           .report_ctx = &r,
                           .status_dead = "failed"};
    start(f, &co);
    assert_true(ts_wait_until(has_dead_letter, f, WAIT_MS));
    stop(f);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.lines[0], "order-8 failed rejected in " GROUP
                                    ": no such sku (event order-8)");
}

/* The log record of a handled delivery, as a JSON-lines sink would get it. */
typedef struct log_probe {
    pthread_mutex_t mu;
    bool seen;
    char trace_id[64], event_id[64], type[64], service[64], duration[64];
} log_probe;

static void capture_log(const sl_log_record *rec, void *ctx)
{
    log_probe *lp = ctx;
    if (strcmp(rec->msg, "handled") != 0) {
        return;
    }
    pthread_mutex_lock(&lp->mu);
    for (size_t i = 0; i < rec->nfields; i++) {
        const sl_log_field *f = &rec->fields[i];
        char *dst = strcmp(f->key, "trace_id") == 0      ? lp->trace_id
                    : strcmp(f->key, "event_id") == 0    ? lp->event_id
                    : strcmp(f->key, "type") == 0        ? lp->type
                    : strcmp(f->key, "service") == 0     ? lp->service
                    : strcmp(f->key, "duration_ms") == 0 ? lp->duration
                                                         : NULL;
        if (dst != NULL && f->value != NULL) {
            snprintf(dst, 64, "%s", f->value);
        }
    }
    lp->seen = true;
    pthread_mutex_unlock(&lp->mu);
}

static bool log_seen(void *arg)
{
    log_probe *lp = arg;
    pthread_mutex_lock(&lp->mu);
    bool seen = lp->seen;
    pthread_mutex_unlock(&lp->mu);
    return seen;
}

static void logs_carry_trace_event_type_service_and_duration(void **state)
{
    fx *f = *state;
    log_probe lp = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sl_log_set_sink(capture_log, &lp, SL_LOG_DEBUG);
    sl_event *ev = NULL;
    assert_int_equal(sl_event_create_new("/shop", "order.placed", &ev), SL_OK);
    sl_event_set(ev, SL_ATTR_ID, "order-log");
    sl_event_set(ev, SL_ATTR_TRACEPARENT,
                 "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
    assert_int_equal(sl_engine_publish(f->eng, CH, ev, 0, 5000, NULL), SL_OK);
    sl_event_unref(ev);
    sl_consumer_opts co = {
        .prefetch = 1, .handler = scripted, .service = "shop"};
    start(f, &co);
    bool seen = ts_wait_until(log_seen, &lp, WAIT_MS);
    stop(f);
    sl_log_set_sink(NULL, NULL, SL_LOG_WARN);
    assert_true(seen);
    assert_string_equal(lp.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_string_equal(lp.event_id, "order-log");
    assert_string_equal(lp.type, "order.placed");
    assert_string_equal(lp.service, "shop");
    assert_true(lp.duration[0] >= '0' && lp.duration[0] <= '9');
}

static void reject_without_error_text_says_the_handler_rejected(void **state)
{
    fx *f = *state;
    f->pr.reject = true;
    publish(f, "order-8");
    sl_consumer_opts co = {.prefetch = 1, .handler = scripted};
    start(f, &co);
    assert_true(ts_wait_until(has_dead_letter, f, WAIT_MS));
    stop(f);
    dead_letter dl = dead_letters(f);
    assert_string_equal(dl.reason, "rejected");
    assert_string_equal(dl.error, "handler returned REJECT");
}

/* ---- the handler's retry delay ------------------------------------------- */

/* ---- expected outcomes in the log ---------------------------------------- */

#define BURST 400
/* Lines per second and group an expected outcome may log (documented in
 * docs/observability.md). */
#define SAMPLE_LINES_PER_S 5

/* What a burst of rejects wrote to the log. */
typedef struct reject_log {
    pthread_mutex_t mu;
    int warn_or_worse;   /* records at WARN or above, of any kind */
    int lines;           /* "handler rejected" lines naming an event */
    int summaries;       /* "handler rejected" lines without one (stop) */
    uint64_t suppressed; /* sum of their "suppressed" fields */
} reject_log;

static void count_reject_log(const sl_log_record *rec, void *ctx)
{
    reject_log *rl = ctx;
    pthread_mutex_lock(&rl->mu);
    if (rec->level >= SL_LOG_WARN) {
        rl->warn_or_worse++;
    }
    if (strcmp(rec->msg, "handler rejected") == 0) {
        bool has_event = false;
        for (size_t i = 0; i < rec->nfields; i++) {
            const sl_log_field *lf = &rec->fields[i];
            if (strcmp(lf->key, "event_id") == 0 && lf->value != NULL) {
                has_event = true;
            } else if (strcmp(lf->key, "suppressed") == 0 &&
                       lf->value != NULL) {
                rl->suppressed += strtoull(lf->value, NULL, 10);
            }
        }
        if (has_event) {
            rl->lines++;
        } else {
            rl->summaries++;
        }
    }
    pthread_mutex_unlock(&rl->mu);
}

static bool burst_rejected(void *arg)
{
    fx *f = arg;
    sl_consumer_stats stats;
    sl_consumer_get_stats(f->c, &stats);
    return stats.rejected == BURST;
}

static void reject_burst_is_logged_sampled_and_counted_in_full(void **state)
{
    fx *f = *state;
    f->pr.reject = true;
    f->pr.error = "card declined";
    for (int i = 0; i < BURST; i++) {
        char id[32];
        snprintf(id, sizeof id, "declined-%d", i);
        publish(f, id);
    }
    sl_metrics *reg = NULL;
    assert_int_equal(sl_metrics_create(&reg), SL_OK);
    reject_log rl = {.mu = PTHREAD_MUTEX_INITIALIZER};
    sl_log_set_sink(count_reject_log, &rl, SL_LOG_INFO);
    uint64_t t0 = sl_time_mono_ms();
    sl_consumer_opts co = {
        .prefetch = 8, .concurrency = 4, .handler = scripted, .metrics = reg};
    start(f, &co);
    bool all = ts_wait_until(burst_rejected, f, WAIT_MS);
    sl_consumer_stats stats = stop(f);
    uint64_t elapsed_ms = sl_time_mono_ms() - t0;
    sl_log_set_sink(NULL, NULL, SL_LOG_WARN);
    assert_true(all);

    /* Not one warning; at info a few lines per second of the burst (a
     * window more for a second boundary), plus one summary at the stop. */
    assert_int_equal(rl.warn_or_worse, 0);
    assert_true(rl.lines >= 1);
    assert_true((uint64_t)rl.lines <=
                SAMPLE_LINES_PER_S * (elapsed_ms / 1000 + 2));
    assert_true(rl.lines < BURST / 10);
    assert_true(rl.summaries <= 1);
    /* The lines written and the ones they say were left out add up. */
    assert_int_equal((uint64_t)rl.lines + rl.suppressed, BURST);

    /* Every reject is counted, per group. */
    assert_int_equal(stats.rejected, BURST);
    char *text = NULL;
    assert_int_equal(sl_metrics_render_text(reg, &text, NULL), SL_OK);
    char want[256];
    snprintf(want, sizeof want,
             "\nsluice_events_consumed_total{channel=\"" CH "\",group=\"" GROUP
             "\",outcome=\"rejected\"} %d\n",
             BURST);
    if (strstr(text, want) == NULL) {
        fail_msg("missing %s in\n%s", want, text);
    }
    sl_free(text);
    sl_consumer_destroy(f->c); /* before the registry it updates */
    f->c = NULL;
    sl_metrics_destroy(reg);
}

static void retry_after_overrides_the_backoff(void **state)
{
    fx *f = *state;
    f->pr.retry_first = true;
    f->pr.retry_after_ms = 5000;
    publish(f, "rate-limited-upstream");
    uint64_t backoff[] = {100};
    sl_consumer_opts co = {.prefetch = 1,
                           .backoff_ms = backoff,
                           .backoff_len = 1,
                           .handler = scripted};
    start(f, &co);
    assert_true(probe_wait_attempt(&f->pr, 1, WAIT_MS));
    assert_true(ts_wait_until(one_delayed, f, WAIT_MS));

    /* The backoff's 100 ms pass: still waiting for the handler's 5 s. */
    atomic_fetch_add(&f->clock.now_ms, 100);
    sl_depth d = depth_of(f);
    assert_int_equal(d.delayed, 1);
    assert_int_equal(d.ready + d.in_flight, 0);
    atomic_fetch_add(&f->clock.now_ms, 4899);
    assert_int_equal(depth_of(f).delayed, 1);

    atomic_fetch_add(&f->clock.now_ms, 1);
    assert_true(probe_wait_attempt(&f->pr, 2, WAIT_MS));
    sl_consumer_stats stats = stop(f);
    assert_int_equal(stats.retried, 1);
    assert_int_equal(stats.acked, 1);
    assert_int_equal(probe_calls(&f->pr), 2);
}

static void retry_uses_the_backoff_without_a_retry_after(void **state)
{
    fx *f = *state;
    f->pr.retry_first = true;
    publish(f, "flaky");
    uint64_t backoff[] = {3000};
    sl_consumer_opts co = {.prefetch = 1,
                           .backoff_ms = backoff,
                           .backoff_len = 1,
                           .handler = scripted};
    start(f, &co);
    assert_true(probe_wait_attempt(&f->pr, 1, WAIT_MS));
    assert_true(ts_wait_until(one_delayed, f, WAIT_MS));
    atomic_fetch_add(&f->clock.now_ms, 2999);
    assert_int_equal(depth_of(f).delayed, 1);
    atomic_fetch_add(&f->clock.now_ms, 1);
    assert_true(probe_wait_attempt(&f->pr, 2, WAIT_MS));
    assert_int_equal(stop(f).acked, 1);
}

/* ---- options ------------------------------------------------------------- */

static void concurrency_above_prefetch_is_refused(void **state)
{
    fx *f = *state;
    sl_consumer_opts co = {.channel = CH,
                           .group = GROUP,
                           .prefetch = 2,
                           .concurrency = 3,
                           .handler = scripted};
    sl_consumer *c = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, &diag), SL_INVALID);
    assert_null(c);
    assert_non_null(strstr(diag.msg, "concurrency 3 exceeds prefetch 2"));
}

static void consumer_without_handler_is_refused(void **state)
{
    fx *f = *state;
    sl_consumer_opts co = {.channel = CH, .group = GROUP};
    sl_consumer *c = NULL;
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, NULL), SL_INVALID);
    assert_null(c);
}

static void consumer_on_an_undeclared_channel_is_not_found(void **state)
{
    fx *f = *state;
    sl_consumer_opts co = {
        .channel = "no.such.channel", .group = GROUP, .handler = scripted};
    sl_consumer *c = NULL;
    sl_diag diag = {0};
    assert_int_equal(sl_consumer_create(f->eng, &co, &c, &diag), SL_NOT_FOUND);
    assert_null(c);
    assert_non_null(strstr(diag.msg, "no.such.channel"));
}

/* ---- the transactional inbox --------------------------------------------- */

static void inbox_path(fx *f, char *out, size_t size)
{
    snprintf(out, size, "%s/inbox.db", f->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(out, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db,
                                  "CREATE TABLE effects(id TEXT NOT NULL, "
                                  "attempt INTEGER NOT NULL)",
                                  NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(db);
}

/* "SELECT count(*) ..." on the inbox file, after the consumer closed it. */
static int count_rows(const char *path, const char *sql)
{
    sqlite3 *db = NULL;
    sqlite3_stmt *s = NULL;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(s), SQLITE_ROW);
    int n = sqlite3_column_int(s, 0);
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
}

static void run_transactional(fx *f, const char *path, int want_attempt)
{
    bool retries = want_attempt > 1;
    uint64_t backoff[] = {1};
    sl_consumer_opts co = {.prefetch = 1,
                           .backoff_ms = backoff,
                           .backoff_len = 1,
                           .handler = write_effect,
                           .inbox_path = path,
                           .transactional = true};
    start(f, &co);
    if (retries) {
        assert_true(ts_wait_until(one_delayed, f, WAIT_MS));
        atomic_fetch_add(&f->clock.now_ms, 1);
    }
    assert_true(probe_wait_attempt(&f->pr, want_attempt, WAIT_MS));
}

static void transactional_write_commits_with_the_ack(void **state)
{
    fx *f = *state;
    char path[300];
    inbox_path(f, path, sizeof path);
    publish(f, "pay-1");
    run_transactional(f, path, 1);
    sl_consumer_stats stats = stop(f);
    sl_consumer_destroy(f->c);
    f->c = NULL;
    assert_true(f->pr.db_seen);
    assert_int_equal(f->pr.db_failures, 0);
    assert_int_equal(stats.acked, 1);
    assert_int_equal(
        count_rows(path, "SELECT count(*) FROM effects WHERE id = 'pay-1'"), 1);
    assert_int_equal(count_rows(path, "SELECT count(*) FROM inbox WHERE grp = "
                                      "'" GROUP "' AND id = 'pay-1'"),
                     1);
}

static void transactional_write_rolls_back_on_retry(void **state)
{
    fx *f = *state;
    char path[300];
    inbox_path(f, path, sizeof path);
    f->pr.retry_first = true;
    publish(f, "pay-2");
    run_transactional(f, path, 2);
    sl_consumer_stats stats = stop(f);
    sl_consumer_destroy(f->c);
    f->c = NULL;
    assert_int_equal(f->pr.db_failures, 0);
    assert_int_equal(stats.retried, 1);
    assert_int_equal(stats.acked, 1);
    /* Only the acked attempt's write is there. */
    assert_int_equal(count_rows(path, "SELECT count(*) FROM effects"), 1);
    assert_int_equal(
        count_rows(path, "SELECT count(*) FROM effects WHERE attempt = 2"), 1);
}

static void transactional_write_rolls_back_on_reject(void **state)
{
    fx *f = *state;
    char path[300];
    inbox_path(f, path, sizeof path);
    f->pr.reject = true;
    publish(f, "pay-3");
    run_transactional(f, path, 1);
    assert_true(ts_wait_until(has_dead_letter, f, WAIT_MS));
    stop(f);
    sl_consumer_destroy(f->c);
    f->c = NULL;
    assert_int_equal(count_rows(path, "SELECT count(*) FROM effects"), 0);
    assert_int_equal(count_rows(path, "SELECT count(*) FROM inbox"), 0);
}

static void handler_db_is_null_unless_transactional(void **state)
{
    fx *f = *state;
    publish(f, "plain");
    sl_consumer_opts co = {
        .prefetch = 1, .handler = write_effect, .inbox_path = ":memory:"};
    start(f, &co);
    assert_true(probe_wait_attempt(&f->pr, 1, WAIT_MS));
    stop(f);
    pthread_mutex_lock(&f->pr.mu);
    bool seen = f->pr.db_seen;
    pthread_mutex_unlock(&f->pr.mu);
    assert_false(seen);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(handler_timeout_retries_and_discards_the_late_result),
        T(reject_error_text_reaches_the_dead_letter),
        T(reject_without_error_text_says_the_handler_rejected),
        T(reject_burst_is_logged_sampled_and_counted_in_full),
        T(status_is_reported_for_the_request_behind_the_event),
        T(logs_carry_trace_event_type_service_and_duration),
        T(dead_letter_reports_failed_with_the_reason),
        T(retry_after_overrides_the_backoff),
        T(retry_uses_the_backoff_without_a_retry_after),
        T(concurrency_above_prefetch_is_refused),
        T(consumer_without_handler_is_refused),
        T(consumer_on_an_undeclared_channel_is_not_found),
        T(transactional_write_commits_with_the_ack),
        T(transactional_write_rolls_back_on_retry),
        T(transactional_write_rolls_back_on_reject),
        T(handler_db_is_null_unless_transactional),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
