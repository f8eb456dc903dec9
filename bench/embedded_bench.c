/* Embedded-engine benchmarks: end-to-end throughput and latency.
 *
 * Throughput. A producer thread publishes 512-byte events with
 * sl_producer_publish_async as fast as the producer admits them; a consumer
 * (the sl_consumer runtime) ACKs each one in a trivial handler. The figure
 * is events acknowledged / (last handler entry - first publish). Engines run
 * in rounds (memory, normal, full, memory, normal, full, ...) so that the
 * drift of a shared machine spreads over all of them; the medians are
 * compared with each other and with the targets.
 *
 * Latency. The producer publishes at a fixed rate on an absolute schedule
 * and each event carries its scheduled send time; latency is the handler's
 * entry time minus that scheduled time, so a producer that falls behind
 * counts against the figure instead of hiding it (no coordinated omission).
 *
 * Usage: embedded_bench [--quick] [--rounds N] [--seconds S]
 *                       [--latency-rate R] [--latency-seconds S]
 *                       [--summary FILE] [--engine NAME]
 *
 * --engine runs the throughput of one engine only (memory, sync=normal or
 * sync=full) and skips the latency section: for profiling.
 */
#include "bench_util.h"

#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <pthread.h>
#include <stdatomic.h>

#define CHANNEL "bench"
#define GROUP "bench"

/* Settings that suit throughput; printed with the results. */
#define PREFETCH 1000
#define CONCURRENCY 1
#define MAX_IN_FLIGHT 10000
/* Bounds the backlog (and the memory) when the producer outruns the
 * consumer; large enough that the consumer never starves while the
 * producer waits for room. */
#define CHANNEL_MAX_LENGTH 50000

/* A generous bound on draining a run, so that a stuck pipeline ends the
 * program with a message instead of hanging it. Not a timed assertion. */
#define DRAIN_LIMIT_MS 120000

typedef struct engine_spec {
    const char *name;    /* as printed */
    const char *query;   /* URL query of a store engine; NULL = memory */
    uint64_t max_events; /* a throughput run stops here at the latest */
    double target_per_s; /* throughput target; 0 = none */
    const char *target;  /* the same, printed */
} engine_spec;

static const engine_spec engines[] = {
    {"memory", NULL, 500000, 1e6, ">= 1,000,000"},
    {"sync=normal", "sync=normal", 200000, 1e5, ">= 100,000"},
    {"sync=full", "sync=full", 50000, 0, ""},
};
#define NENGINES (sizeof engines / sizeof engines[0])

typedef struct bench_opts {
    unsigned rounds;
    double seconds; /* per throughput run, at most */
    double latency_rate_per_s;
    double latency_seconds;
    double latency_warmup_seconds; /* offered but not counted */
    const char *summary_path;
    const char *only; /* one engine's throughput, for profiling; NULL = all */
} bench_opts;

/* ---- the pipeline under test --------------------------------------------- */

typedef struct rig {
    char dir[512]; /* store directory; empty for the memory engine */
    sl_engine *eng;
    sl_producer *prod;
    sl_consumer *cons;
} rig;

static void rig_open(rig *r, const engine_spec *spec, sl_handler_fn handler,
                     void *handler_ctx)
{
    char url[600];
    sl_diag diag = {0};

    memset(r, 0, sizeof *r);
    if (spec->query == NULL) {
        snprintf(url, sizeof url, "embedded::memory:");
    } else {
        bench_tmpdir_make(r->dir, sizeof r->dir);
        snprintf(url, sizeof url, "embedded:%s?%s", r->dir, spec->query);
    }
    bench_check(sl_engine_open(url, NULL, &r->eng, &diag), url, &diag);

    sl_channel_opts co = {.name = CHANNEL, .max_length = CHANNEL_MAX_LENGTH};
    bench_check(sl_engine_declare_channel(r->eng, &co, &diag),
                "declare channel", &diag);
    sl_consumer_opts cons = {
        .channel = CHANNEL,
        .group = GROUP,
        .prefetch = PREFETCH,
        .concurrency = CONCURRENCY,
        .handler = handler,
        .handler_ctx = handler_ctx,
        .service = "bench",
    };
    bench_check(sl_consumer_create(r->eng, &cons, &r->cons, &diag),
                "create consumer", &diag);
    sl_producer_opts po = {.max_in_flight = MAX_IN_FLIGHT};
    bench_check(sl_producer_create(r->eng, &po, &r->prod), "create producer",
                NULL);
    bench_check(sl_consumer_start(r->cons), "start consumer", NULL);
}

static void rig_close(rig *r)
{
    sl_consumer_stop(r->cons, 5000);
    sl_consumer_destroy(r->cons);
    sl_producer_destroy(r->prod);
    sl_engine_close(r->eng);
    if (r->dir[0] != '\0') {
        bench_tmpdir_remove(r->dir);
    }
}

/* Wait until @p counter reaches @p want; false after DRAIN_LIMIT_MS. */
static bool wait_count(_Atomic uint64_t *counter, uint64_t want)
{
    uint64_t give_up = sl_time_mono_ns() + DRAIN_LIMIT_MS * 1000000ull;
    while (atomic_load_explicit(counter, memory_order_acquire) < want) {
        if (sl_time_mono_ns() >= give_up) {
            return false;
        }
        bench_sleep_ms(1);
    }
    return true;
}

/* ---- 1. throughput ------------------------------------------------------- */

typedef struct tp_run {
    rig r;
    uint64_t max_events;
    uint64_t stop_at_ns; /* the producer stops here at the latest */
    uint64_t first_ns;   /* first publish */
    uint64_t published;  /* accepted by publish_async */
    uint64_t refused;
    _Atomic uint64_t handled;
    _Atomic uint64_t last_ns; /* latest handler entry */
} tp_run;

static sl_outcome tp_handler(sl_handler_ctx *ctx, void *user)
{
    tp_run *run = user;
    uint64_t now = sl_time_mono_ns();
    uint64_t seen = atomic_load_explicit(&run->last_ns, memory_order_relaxed);
    (void)ctx;
    /* A maximum, so that it stays right with more than one worker. */
    while (seen < now && !atomic_compare_exchange_weak_explicit(
                             &run->last_ns, &seen, now, memory_order_relaxed,
                             memory_order_relaxed)) {
    }
    atomic_fetch_add_explicit(&run->handled, 1, memory_order_release);
    return SL_OUTCOME_ACK;
}

static void *tp_produce(void *arg)
{
    tp_run *run = arg;
    run->first_ns = sl_time_mono_ns();
    for (uint64_t i = 0; i < run->max_events; i++) {
        if ((i & 1023) == 0 && sl_time_mono_ns() >= run->stop_at_ns) {
            break;
        }
        sl_event *ev = bench_event(i, 0);
        sl_status st =
            sl_producer_publish_async(run->r.prod, CHANNEL, ev, NULL, NULL);
        sl_event_unref(ev);
        if (st == SL_OK) {
            run->published++;
        } else {
            run->refused++;
        }
    }
    return NULL;
}

/* One run on a fresh engine; returns events/s. */
static double tp_once(const engine_spec *spec, double seconds)
{
    tp_run run = {.max_events = spec->max_events};
    rig_open(&run.r, spec, tp_handler, &run);

    pthread_t producer;
    run.stop_at_ns = sl_time_mono_ns() + (uint64_t)(seconds * 1e9);
    if (pthread_create(&producer, NULL, tp_produce, &run) != 0) {
        bench_die("cannot start the producer thread");
    }
    pthread_join(producer, NULL);
    bench_check(sl_producer_flush(run.r.prod, DRAIN_LIMIT_MS), "producer flush",
                NULL);
    if (!wait_count(&run.handled, run.published)) {
        bench_die("%s: only %llu of %llu events handled after %d s", spec->name,
                  (unsigned long long)atomic_load(&run.handled),
                  (unsigned long long)run.published, DRAIN_LIMIT_MS / 1000);
    }
    if (run.refused > 0) {
        fprintf(stderr, "bench: %s: %llu publishes refused\n", spec->name,
                (unsigned long long)run.refused);
    }
    uint64_t handled = atomic_load(&run.handled);
    uint64_t span = atomic_load(&run.last_ns) - run.first_ns;
    rig_close(&run.r);
    return span > 0 ? (double)handled * 1e9 / (double)span : 0;
}

static bool engine_selected(const bench_opts *o, size_t e)
{
    return o->only == NULL || strcmp(o->only, engines[e].name) == 0;
}

static void run_throughput(const bench_opts *o, bench_summary *sum)
{
    double rates[NENGINES][16];
    double med[NENGINES] = {0};
    char a[32];

    printf("== 1. throughput: publish -> consume -> ack, %u-byte events ==\n",
           BENCH_DATA_BYTES);
    printf("producer: 1 thread, sl_producer_publish_async, max_in_flight "
           "%d\n",
           MAX_IN_FLIGHT);
    printf("consumer: sl_consumer, prefetch %d, concurrency %d, handler "
           "returns ACK\n",
           PREFETCH, CONCURRENCY);
    printf("channel max_length %d; %u rounds, each run <= %.1f s or its "
           "event cap (",
           CHANNEL_MAX_LENGTH, o->rounds, o->seconds);
    for (size_t e = 0; e < NENGINES; e++) {
        printf("%s%s %s", e ? ", " : "", engines[e].name,
               bench_fmt_count((double)engines[e].max_events, a));
    }
    printf(")\nevents/s from first publish to last ack:\n\n");
    printf("%-8s", "round");
    for (size_t e = 0; e < NENGINES; e++) {
        if (engine_selected(o, e)) {
            printf(" %14s", engines[e].name);
        }
    }
    printf("\n");
    fflush(stdout);

    /* Alternate the engines within each round: drift hits them alike. */
    for (unsigned r = 0; r < o->rounds; r++) {
        printf("%-8u", r + 1);
        fflush(stdout);
        for (size_t e = 0; e < NENGINES; e++) {
            if (engine_selected(o, e)) {
                rates[e][r] = tp_once(&engines[e], o->seconds);
                printf(" %14s", bench_fmt_count(rates[e][r], a));
                fflush(stdout);
            }
        }
        printf("\n");
    }

    for (size_t e = 0; e < NENGINES; e++) {
        if (engine_selected(o, e)) {
            med[e] = bench_median(rates[e], o->rounds);
        }
    }
    printf("%-8s", "median");
    for (size_t e = 0; e < NENGINES; e++) {
        if (engine_selected(o, e)) {
            printf(" %14s", bench_fmt_count(med[e], a));
        }
    }
    printf("\n%-8s", "target");
    for (size_t e = 0; e < NENGINES; e++) {
        if (engine_selected(o, e)) {
            printf(" %14s", engines[e].target[0] ? engines[e].target : "-");
        }
    }
    printf("\n%-8s", "/target");
    for (size_t e = 0; e < NENGINES; e++) {
        if (!engine_selected(o, e)) {
            continue;
        }
        if (engines[e].target_per_s > 0) {
            printf(" %14.2f", med[e] / engines[e].target_per_s);
        } else {
            printf(" %14s", "-");
        }
    }
    printf("\n\n");

    for (size_t e = 0; e < NENGINES; e++) {
        if (!engine_selected(o, e)) {
            continue;
        }
        char fig[64], ratio[16] = "";
        snprintf(fig, sizeof fig, "throughput %s (ev/s)", engines[e].name);
        if (engines[e].target_per_s > 0) {
            snprintf(ratio, sizeof ratio, "%.2f",
                     med[e] / engines[e].target_per_s);
        }
        bench_summary_add(sum, fig, bench_fmt_count(med[e], a),
                          engines[e].target, ratio);
    }
    if (o->only != NULL || med[1] <= 0 || med[2] <= 0) {
        return;
    }
    double mem_normal = med[0] / med[1];
    double normal_full = med[1] / med[2];
    printf("memory / sync=normal = %.1fx, sync=normal / sync=full = "
           "%.1fx\n\n",
           mem_normal, normal_full);
    char v[32];
    snprintf(v, sizeof v, "%.1fx", mem_normal);
    bench_summary_add(sum, "throughput memory / sync=normal", v, "", "");
    snprintf(v, sizeof v, "%.1fx", normal_full);
    bench_summary_add(sum, "throughput sync=normal / sync=full", v, "", "");
}

/* ---- 2. latency at a fixed rate ------------------------------------------ */

typedef struct lat_run {
    rig r;
    uint64_t n;         /* events offered, warm-up included */
    uint64_t period_ns; /* between scheduled sends */
    uint64_t *lat_ns;   /* by sequence number */
    uint64_t published;
    _Atomic uint64_t handled;
} lat_run;

static sl_outcome lat_handler(sl_handler_ctx *ctx, void *user)
{
    lat_run *run = user;
    uint64_t now = sl_time_mono_ns();
    bench_stamp stamp;
    if (bench_event_stamp(sl_handler_event(ctx), &stamp) &&
        stamp.seq < run->n) {
        run->lat_ns[stamp.seq] = now - stamp.mono_ns;
    }
    atomic_fetch_add_explicit(&run->handled, 1, memory_order_release);
    return SL_OUTCOME_ACK;
}

static void *lat_produce(void *arg)
{
    lat_run *run = arg;
    uint64_t start = sl_time_mono_ns() + 1000000; /* 1 ms to get going */
    for (uint64_t i = 0; i < run->n; i++) {
        uint64_t sched = start + i * run->period_ns;
        if (sl_time_mono_ns() < sched) {
            bench_sleep_until_ns(sched);
        }
        sl_event *ev = bench_event(i, sched);
        if (sl_producer_publish_async(run->r.prod, CHANNEL, ev, NULL, NULL) ==
            SL_OK) {
            run->published++;
        }
        sl_event_unref(ev);
    }
    return NULL;
}

typedef struct lat_result {
    uint64_t counted;
    uint64_t p50, p99, p999, max; /* ns */
} lat_result;

static void lat_once(const engine_spec *spec, const bench_opts *o,
                     lat_result *out)
{
    lat_run run = {0};
    uint64_t warmup =
        (uint64_t)(o->latency_rate_per_s * o->latency_warmup_seconds);
    run.n = warmup + (uint64_t)(o->latency_rate_per_s * o->latency_seconds);
    run.period_ns = (uint64_t)(1e9 / o->latency_rate_per_s);
    run.lat_ns = calloc(run.n, sizeof *run.lat_ns);
    if (run.lat_ns == NULL) {
        bench_die("out of memory");
    }
    /* UINT64_MAX marks an event that never reached the handler. */
    memset(run.lat_ns, 0xff, run.n * sizeof *run.lat_ns);
    rig_open(&run.r, spec, lat_handler, &run);

    pthread_t producer;
    if (pthread_create(&producer, NULL, lat_produce, &run) != 0) {
        bench_die("cannot start the producer thread");
    }
    pthread_join(producer, NULL);
    bench_check(sl_producer_flush(run.r.prod, DRAIN_LIMIT_MS), "producer flush",
                NULL);
    if (!wait_count(&run.handled, run.published)) {
        bench_die("%s: latency run did not drain", spec->name);
    }
    rig_close(&run.r);

    uint64_t *v = run.lat_ns + warmup;
    size_t n = 0;
    for (uint64_t i = warmup; i < run.n; i++) {
        if (run.lat_ns[i] != UINT64_MAX) {
            v[n++] = run.lat_ns[i];
        }
    }
    qsort(v, n, sizeof *v, bench_cmp_u64);
    *out = (lat_result){
        .counted = n,
        .p50 = bench_percentile(v, n, 50),
        .p99 = bench_percentile(v, n, 99),
        .p999 = bench_percentile(v, n, 99.9),
        .max = n ? v[n - 1] : 0,
    };
    free(run.lat_ns);
}

static void run_latency(const bench_opts *o, bench_summary *sum)
{
    char a[32];
    printf("== 2. latency at a fixed offered rate ==\n");
    printf("%s events/s for %.1f s (after %.1f s of warm-up, not counted), "
           "absolute schedule;\n",
           bench_fmt_count(o->latency_rate_per_s, a), o->latency_seconds,
           o->latency_warmup_seconds);
    printf("latency = handler entry - scheduled send time; same producer "
           "and consumer settings\n\n");
    printf("%-12s %10s %10s %10s %10s %10s\n", "engine", "events", "p50 us",
           "p99 us", "p99.9 us", "max us");

    /* The memory engine and the realistic default store. */
    for (size_t e = 0; e < 2; e++) {
        lat_result lr;
        lat_once(&engines[e], o, &lr);
        printf("%-12s %10s %10.0f %10.0f %10.0f %10.0f\n", engines[e].name,
               bench_fmt_count((double)lr.counted, a), (double)lr.p50 / 1e3,
               (double)lr.p99 / 1e3, (double)lr.p999 / 1e3,
               (double)lr.max / 1e3);
        fflush(stdout);

        char fig[64], v[32];
        snprintf(fig, sizeof fig, "latency %s p50 / p99 (us)", engines[e].name);
        snprintf(v, sizeof v, "%.0f / %.0f", (double)lr.p50 / 1e3,
                 (double)lr.p99 / 1e3);
        bench_summary_add(sum, fig, v, "", "");
    }
    printf("\n");
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: embedded_bench [--quick] [--rounds N] [--seconds S]\n"
            "                      [--latency-rate R] [--latency-seconds S]\n"
            "                      [--summary FILE] [--engine NAME]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bench_opts o = {
        .rounds = 5,
        .seconds = 1.5,
        .latency_rate_per_s = 10000,
        .latency_seconds = 3,
        .latency_warmup_seconds = 0.5,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--quick") == 0) {
            o.rounds = 2;
            o.seconds = 0.4;
            o.latency_seconds = 1;
            o.latency_warmup_seconds = 0.2;
            continue;
        }
        if (val == NULL) {
            usage();
        }
        i++;
        if (strcmp(arg, "--rounds") == 0) {
            o.rounds = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(arg, "--seconds") == 0) {
            o.seconds = atof(val);
        } else if (strcmp(arg, "--latency-rate") == 0) {
            o.latency_rate_per_s = atof(val);
        } else if (strcmp(arg, "--latency-seconds") == 0) {
            o.latency_seconds = atof(val);
        } else if (strcmp(arg, "--summary") == 0) {
            o.summary_path = val;
        } else if (strcmp(arg, "--engine") == 0) {
            o.only = val;
        } else {
            usage();
        }
    }
    bool known = o.only == NULL;
    for (size_t e = 0; e < NENGINES && !known; e++) {
        known = strcmp(o.only, engines[e].name) == 0;
    }
    if (!known || o.rounds < 1 || o.rounds > 16 || o.seconds <= 0 ||
        o.latency_rate_per_s <= 0 || o.latency_seconds <= 0) {
        usage();
    }

    bench_summary sum = {0};
    run_throughput(&o, &sum);
    if (o.only == NULL) {
        run_latency(&o, &sum);
    }
    bench_summary_finish(&sum, o.summary_path);
    return 0;
}
