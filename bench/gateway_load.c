/* Gateway benchmark helpers, driven by bench/gateway_bench.sh.
 *
 *   gateway_load paced --url URL --rate R --seconds S [--warmup S]
 *                      [--connections N]
 *   gateway_load raw [--seconds S]
 *
 * paced: an open-loop HTTP load generator (libcurl's multi interface, not
 * the gateway's code). It POSTs a valid order (the body of
 * bench/wrk_orders.lua, a different customer each time) at R requests/s on
 * an absolute schedule: request i is due at start + i / R, and a request
 * that cannot go out on time (every connection busy) goes out as soon as
 * one frees, still timed from its due time. Latency = answer received −
 * due time, so a stalled server counts against the figure instead of
 * slowing the offered load down (no coordinated omission; wrk cannot do
 * this, wrk2 is not in Debian). Answers in the first --warmup seconds are
 * not counted. Prints one line of key=value pairs: offered and answered
 * counts, and p50/p99/max in microseconds for accepted (2xx) answers and
 * for refusals (429 and 503) separately.
 *
 * raw: the engine alone, for the gateway's overhead ratio. The same engine
 * as the gateway under test (embedded, SQLite sync=normal, in a temporary
 * directory), the same channel settings and consumer (prefetch 1000,
 * concurrency 1, ACK), and events shaped like the gateway's (the route's
 * source and type, datacontenttype, a traceparent, the same order JSON as
 * data), published with sl_producer_publish_async for S seconds. Prints
 * confirmed publishes per second (confirmed / (last confirm − first
 * publish)), which is what a 202 stands for.
 */
#include "bench_util.h"

#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define ORDER_FMT                                                              \
    "{\"sku\":\"A-1\",\"qty\":1,\"amount\":9.5,\"customer\":\"c%llu\"}"
#define MAX_CONNECTIONS 1024
/* Shortest sleep of the paced loop; see run_paced. */
#define WAKE_GRAIN_NS 200000ull

static void usage(void)
{
    fprintf(stderr, "usage: gateway_load paced --url URL --rate R --seconds S "
                    "[--warmup S] [--connections N]\n"
                    "       gateway_load raw [--seconds S]\n");
    exit(2);
}

/* ---- paced ----------------------------------------------------------------
 */

/* Latencies of one class of answers, in ns. */
typedef struct lat_set {
    uint64_t *v;
    size_t n;
    size_t cap;
} lat_set;

static void lat_add(lat_set *s, uint64_t ns)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 65536;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL) {
            bench_die("out of memory");
        }
    }
    s->v[s->n++] = ns;
}

static void lat_print(const char *name, lat_set *s)
{
    qsort(s->v, s->n, sizeof *s->v, bench_cmp_u64);
    printf(" %s_n=%zu %s_p50_us=%.0f %s_p99_us=%.0f %s_max_us=%.0f", name, s->n,
           name, bench_percentile(s->v, s->n, 50) / 1e3, name,
           bench_percentile(s->v, s->n, 99) / 1e3, name,
           s->n ? s->v[s->n - 1] / 1e3 : 0.0);
}

typedef struct conn {
    CURL *easy;
    char body[160];
    uint64_t due_ns;
} conn;

static size_t discard(char *ptr, size_t size, size_t nmemb, void *user)
{
    (void)ptr;
    (void)user;
    return size * nmemb;
}

static int run_paced(const char *url, double rate, double seconds,
                     double warmup, unsigned nconn)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        bench_die("curl_global_init");
    }
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)nconn);
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long)nconn);
    struct curl_slist *hdrs =
        curl_slist_append(NULL, "Content-Type: application/json");
    hdrs = curl_slist_append(hdrs, "Expect:");

    conn *conns = calloc(nconn, sizeof *conns);
    conn **idle = calloc(nconn, sizeof *idle);
    if (conns == NULL || idle == NULL) {
        bench_die("out of memory");
    }
    size_t nidle = 0;
    for (unsigned i = 0; i < nconn; i++) {
        conn *c = &conns[i];
        c->easy = curl_easy_init();
        curl_easy_setopt(c->easy, CURLOPT_URL, url);
        curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, hdrs);
        curl_easy_setopt(c->easy, CURLOPT_WRITEFUNCTION, discard);
        curl_easy_setopt(c->easy, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->easy, CURLOPT_TCP_NODELAY, 1L);
        curl_easy_setopt(c->easy, CURLOPT_TIMEOUT_MS, 30000L);
        idle[nidle++] = c;
    }

    int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (tfd < 0) {
        bench_die("timerfd_create: %s", strerror(errno));
    }
    double interval_ns = 1e9 / rate;
    uint64_t total = (uint64_t)((seconds + warmup) * rate);
    uint64_t start = sl_time_mono_ns() + 10000000ull;
    uint64_t count_from = start + (uint64_t)(warmup * 1e9);
    uint64_t next = 0; /* index of the next request due */
    uint64_t sent = 0, answered = 0, failed = 0, late = 0;
    lat_set ok = {0}, rej = {0}, other = {0};
    int running = 0;

    while (next < total || running > 0) {
        uint64_t now = sl_time_mono_ns();
        /* Start every request that is due, while connections are free. */
        while (next < total && nidle > 0) {
            uint64_t due = start + (uint64_t)((double)next * interval_ns);
            if (due > now) {
                break;
            }
            if (now - due > 1000000ull) {
                late++; /* went out more than 1 ms after its due time */
            }
            conn *c = idle[--nidle];
            c->due_ns = due;
            snprintf(c->body, sizeof c->body, ORDER_FMT,
                     (unsigned long long)next);
            curl_easy_setopt(c->easy, CURLOPT_POSTFIELDS, c->body);
            curl_multi_add_handle(multi, c->easy);
            next++;
            sent++;
        }
        curl_multi_perform(multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(multi, &left)) != NULL) {
            if (m->msg != CURLMSG_DONE) {
                continue;
            }
            uint64_t t = sl_time_mono_ns();
            conn *c = NULL;
            curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&c);
            long code = 0;
            curl_easy_getinfo(m->easy_handle, CURLINFO_RESPONSE_CODE, &code);
            CURLcode res = m->data.result;
            curl_multi_remove_handle(multi, m->easy_handle);
            idle[nidle++] = c;
            answered++;
            if (res != CURLE_OK) {
                failed++;
                continue;
            }
            if (c->due_ns < count_from) {
                continue;
            }
            uint64_t lat = t - c->due_ns;
            if (code >= 200 && code < 300) {
                lat_add(&ok, lat);
            } else if (code == 429 || code == 503) {
                lat_add(&rej, lat);
            } else {
                lat_add(&other, lat);
            }
        }
        /* Sleep until the next due time (a timerfd: microsecond precision,
         * curl's own timeouts are in milliseconds) or socket activity, but
         * at least WAKE_GRAIN_NS: at high rates one wake-up sends the few
         * requests that fell due meanwhile instead of costing a timer and
         * a poll per request. The wait counts against the latency (which
         * is measured from the due time), so it can only make the figures
         * worse, by at most the grain. */
        struct curl_waitfd wfd = {.fd = tfd, .events = CURL_WAIT_POLLIN};
        unsigned nwfd = 0;
        int timeout_ms = 100;
        if (next < total && nidle > 0) {
            uint64_t due = start + (uint64_t)((double)next * interval_ns);
            uint64_t now2 = sl_time_mono_ns();
            if (due <= now2) {
                continue;
            }
            if (due < now2 + WAKE_GRAIN_NS) {
                due = now2 + WAKE_GRAIN_NS;
            }
            struct itimerspec its = {
                .it_value = {.tv_sec = (time_t)(due / BENCH_NS_PER_S),
                             .tv_nsec = (long)(due % BENCH_NS_PER_S)}};
            timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL);
            nwfd = 1;
        }
        curl_multi_poll(multi, nwfd ? &wfd : NULL, nwfd, timeout_ms, NULL);
        if (nwfd) {
            uint64_t expirations;
            ssize_t rd = read(tfd, &expirations, sizeof expirations);
            (void)rd;
        }
    }
    /* Rates over the scheduled window: answers that arrived during the
     * drain belong to requests due within it. */
    double counted_s = seconds;

    printf("offered_per_s=%.0f sent=%llu answered=%llu errors=%llu "
           "late_1ms=%llu ok_per_s=%.0f rej_per_s=%.0f other=%zu",
           rate, (unsigned long long)sent, (unsigned long long)answered,
           (unsigned long long)failed, (unsigned long long)late,
           (double)ok.n / counted_s, (double)rej.n / counted_s, other.n);
    lat_print("ok", &ok);
    lat_print("rej", &rej);
    printf("\n");

    for (unsigned i = 0; i < nconn; i++) {
        curl_easy_cleanup(conns[i].easy);
    }
    curl_multi_cleanup(multi);
    curl_slist_free_all(hdrs);
    curl_global_cleanup();
    close(tfd);
    free(conns);
    free(idle);
    free(ok.v);
    free(rej.v);
    free(other.v);
    return 0;
}

/* ---- raw --------------------------------------------------------------------
 */

typedef struct raw_run {
    _Atomic uint64_t confirmed;
    _Atomic uint64_t last_confirm_ns;
    _Atomic uint64_t handled;
} raw_run;

static sl_outcome raw_handler(sl_handler_ctx *ctx, void *user)
{
    raw_run *run = user;
    (void)ctx;
    atomic_fetch_add_explicit(&run->handled, 1, memory_order_relaxed);
    return SL_OUTCOME_ACK;
}

static void raw_confirm(sl_status st, void *ctx)
{
    raw_run *run = ctx;
    if (st == SL_OK) {
        atomic_fetch_add_explicit(&run->confirmed, 1, memory_order_relaxed);
        atomic_store_explicit(&run->last_confirm_ns, sl_time_mono_ns(),
                              memory_order_relaxed);
    }
}

static int run_raw(double seconds)
{
    char dir[512], url[600];
    sl_diag diag = {0};
    bench_tmpdir_make(dir, sizeof dir);
    snprintf(url, sizeof url, "embedded:%s?sync=normal", dir);
    sl_engine *eng = NULL;
    bench_check(sl_engine_open(url, NULL, &eng, &diag), url, &diag);
    sl_channel_opts co = {.name = "orders.created", .max_length = 1000000};
    bench_check(sl_engine_declare_channel(eng, &co, &diag), "declare", &diag);
    raw_run run = {0};
    sl_consumer_opts cons = {
        .channel = "orders.created",
        .group = "sink",
        .prefetch = 1000,
        .concurrency = 1,
        .handler = raw_handler,
        .handler_ctx = &run,
        .service = "bench",
    };
    sl_consumer *c = NULL;
    bench_check(sl_consumer_create(eng, &cons, &c, &diag), "consumer", &diag);
    sl_producer_opts po = {.max_in_flight = 10000};
    sl_producer *prod = NULL;
    bench_check(sl_producer_create(eng, &po, &prod), "producer", NULL);
    bench_check(sl_consumer_start(c), "start consumer", NULL);

    uint64_t first = sl_time_mono_ns();
    uint64_t stop = first + (uint64_t)(seconds * 1e9);
    uint64_t refused = 0;
    for (uint64_t i = 0;; i++) {
        if ((i & 255) == 0 && sl_time_mono_ns() >= stop) {
            break;
        }
        char body[160], tp[56];
        int len = snprintf(body, sizeof body, ORDER_FMT, (unsigned long long)i);
        sl_event *ev = NULL;
        bench_check(sl_event_create_new("/orders", "order.created", &ev),
                    "event", NULL);
        sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, "application/json");
        sl_traceparent_new(tp);
        sl_event_set(ev, SL_ATTR_TRACEPARENT, tp);
        sl_event_set_data(ev, body, (size_t)len);
        if (sl_producer_publish_async(prod, "orders.created", ev, raw_confirm,
                                      &run) != SL_OK) {
            refused++;
        }
        sl_event_unref(ev);
    }
    sl_producer_flush(prod, 30000);
    uint64_t n = atomic_load(&run.confirmed);
    uint64_t last = atomic_load(&run.last_confirm_ns);
    printf("raw_confirmed_per_s=%.0f raw_confirmed=%llu raw_refused=%llu\n",
           last > first ? (double)n / ((double)(last - first) / 1e9) : 0.0,
           (unsigned long long)n, (unsigned long long)refused);
    sl_consumer_stop(c, 5000);
    sl_consumer_destroy(c);
    sl_producer_destroy(prod);
    sl_engine_close(eng);
    bench_tmpdir_remove(dir);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage();
    }
    const char *url = NULL;
    double rate = 0, seconds = 2, warmup = 0;
    unsigned nconn = 64;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (v == NULL) {
            usage();
        }
        if (strcmp(a, "--url") == 0) {
            url = v;
        } else if (strcmp(a, "--rate") == 0) {
            rate = atof(v);
        } else if (strcmp(a, "--seconds") == 0) {
            seconds = atof(v);
        } else if (strcmp(a, "--warmup") == 0) {
            warmup = atof(v);
        } else if (strcmp(a, "--connections") == 0) {
            nconn = (unsigned)atoi(v);
        } else {
            usage();
        }
        i++;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (strcmp(argv[1], "paced") == 0) {
        if (url == NULL || rate <= 0 || seconds <= 0 || nconn == 0 ||
            nconn > MAX_CONNECTIONS) {
            usage();
        }
        return run_paced(url, rate, seconds, warmup, nconn);
    }
    if (strcmp(argv[1], "raw") == 0 && seconds > 0) {
        return run_raw(seconds);
    }
    usage();
}
