/* Overload benchmark: peak memory when producers offer 10x what consumers
 * can take, against the same pipeline at 1x.
 *
 * The consumer's handler is paced to a capacity of C events/s (a token
 * bucket with BURST_MS of credit, so that the time the runtime spends
 * between handler calls is not lost and the capacity is C, not a little
 * less). The producer offers L x C events/s on an absolute schedule with
 * sl_producer_try_publish, which never waits: once the channel reaches
 * max_length, an offer is refused with SL_FULL and counted. The engine is
 * the SQLite store with sync=normal, the realistic default.
 *
 * Each load runs in a child process (this program re-executed with
 * --child), so that each peak RSS is that scenario's alone: the child reports
 * its VmHWM at the end of the load phase, and the parent its ru_maxrss from
 * wait4 (the whole life, teardown included).
 *
 * Usage: overload_bench [--quick] [--seconds S] [--capacity C]
 *                       [--max-length N] [--summary FILE]
 */
#include "bench_util.h"

#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#define CHANNEL "overload"
#define GROUP "overload"
#define PREFETCH 100
#define CONCURRENCY 1
#define MAX_IN_FLIGHT 1000
/* Credit the paced handler may bank while the runtime is busy elsewhere
 * (fetching, waiting for a commit). */
#define BURST_MS 50
/* The load factors compared: 1x, then 10x. */
#define LOW_LOAD 1
#define HIGH_LOAD 10

typedef struct overload_opts {
    double seconds;        /* of load, per scenario */
    double capacity_per_s; /* the consumer's: C */
    uint64_t max_length;   /* of the channel */
    const char *summary_path;
} overload_opts;

/* What a child reports, one line on its stdout. */
typedef struct child_result {
    unsigned long long offered, accepted, refused_full, failed, acked;
    unsigned long long depth; /* ready + delayed + in flight at the end */
    unsigned long hwm_kb;     /* VmHWM at the end of the load */
    unsigned long rss_early_kb, rss_end_kb; /* VmRSS at 1/4 and at the end */
    double seconds;
} child_result;

#define RESULT_FORMAT                                                          \
    "result offered=%llu accepted=%llu refused_full=%llu failed=%llu "         \
    "acked=%llu depth=%llu hwm_kb=%lu rss_early_kb=%lu rss_end_kb=%lu "        \
    "seconds=%lf"

/* ---- the child: one scenario --------------------------------------------- */

/* The paced handler's state; one worker calls it (CONCURRENCY 1). */
typedef struct pace {
    uint64_t period_ns;
    uint64_t next_ns; /* when the next event may finish */
} pace;

static sl_outcome paced_handler(sl_handler_ctx *ctx, void *user)
{
    pace *pc = user;
    uint64_t now = sl_time_mono_ns();
    uint64_t earliest = now - BURST_MS * 1000000ull;
    (void)ctx;
    pc->next_ns =
        (pc->next_ns > earliest ? pc->next_ns : earliest) + pc->period_ns;
    if (pc->next_ns > now) {
        bench_sleep_until_ns(pc->next_ns);
    }
    return SL_OUTCOME_ACK;
}

static int run_child(const overload_opts *o, double load, const char *dir)
{
    char url[600];
    sl_diag diag = {0};
    sl_engine *eng = NULL;
    sl_consumer *cons = NULL;
    sl_producer *prod = NULL;
    pace pc = {.period_ns = (uint64_t)(1e9 / o->capacity_per_s)};

    snprintf(url, sizeof url, "embedded:%s?sync=normal", dir);
    bench_check(sl_engine_open(url, NULL, &eng, &diag), url, &diag);
    sl_channel_opts co = {.name = CHANNEL, .max_length = o->max_length};
    bench_check(sl_engine_declare_channel(eng, &co, &diag), "declare channel",
                &diag);
    sl_consumer_opts copts = {
        .channel = CHANNEL,
        .group = GROUP,
        .prefetch = PREFETCH,
        .concurrency = CONCURRENCY,
        .handler = paced_handler,
        .handler_ctx = &pc,
        .service = "bench",
    };
    bench_check(sl_consumer_create(eng, &copts, &cons, &diag),
                "create consumer", &diag);
    sl_producer_opts po = {.max_in_flight = MAX_IN_FLIGHT};
    bench_check(sl_producer_create(eng, &po, &prod), "create producer", NULL);
    bench_check(sl_consumer_start(cons), "start consumer", NULL);

    /* Offer load x C events/s on an absolute schedule; a late producer
     * catches up without sleeping, so the offered rate holds on average. */
    child_result res = {0};
    uint64_t period = (uint64_t)(1e9 / (load * o->capacity_per_s));
    uint64_t start = sl_time_mono_ns();
    uint64_t end = start + (uint64_t)(o->seconds * 1e9);
    uint64_t early_at = start + (end - start) / 4;
    for (uint64_t i = 0;; i++) {
        uint64_t sched = start + i * period;
        if (sched >= end) {
            break;
        }
        if (sl_time_mono_ns() < sched) {
            bench_sleep_until_ns(sched);
        }
        if (res.rss_early_kb == 0 && sched >= early_at) {
            res.rss_early_kb = bench_proc_status_kb("VmRSS");
        }
        sl_event *ev = bench_event(i, sched);
        sl_status st = sl_producer_try_publish(prod, CHANNEL, ev, NULL, NULL);
        sl_event_unref(ev);
        res.offered++;
        if (st == SL_OK) {
            res.accepted++;
        } else if (st == SL_FULL) {
            res.refused_full++;
        } else {
            res.failed++;
        }
    }
    res.seconds = (double)(sl_time_mono_ns() - start) / 1e9;
    res.hwm_kb = bench_proc_status_kb("VmHWM");
    res.rss_end_kb = bench_proc_status_kb("VmRSS");

    sl_consumer_stats cs;
    sl_consumer_get_stats(cons, &cs);
    res.acked = cs.acked;
    sl_depth depth = {0};
    if (sl_engine_depth(eng, CHANNEL, GROUP, &depth) == SL_OK) {
        res.depth = depth.ready + depth.delayed + depth.in_flight;
    }
    /* The backlog is left for the next run of a real service: stop without
     * draining it. */
    sl_consumer_stop(cons, 1000);
    sl_consumer_destroy(cons);
    sl_producer_destroy(prod);
    sl_engine_close(eng);

    printf(RESULT_FORMAT "\n", res.offered, res.accepted, res.refused_full,
           res.failed, res.acked, res.depth, res.hwm_kb, res.rss_early_kb,
           res.rss_end_kb, res.seconds);
    return 0;
}

/* ---- the parent: both scenarios, side by side ---------------------------- */

/* Run one scenario in a child; fills @p res and @p maxrss_kb. */
static void run_scenario(const overload_opts *o, const char *self, int load,
                         child_result *res, long *maxrss_kb)
{
    char dir[512], load_s[16], secs[32], cap[32], maxlen[32];
    int fds[2];

    bench_tmpdir_make(dir, sizeof dir);
    snprintf(load_s, sizeof load_s, "%d", load);
    snprintf(secs, sizeof secs, "%.3f", o->seconds);
    snprintf(cap, sizeof cap, "%.3f", o->capacity_per_s);
    snprintf(maxlen, sizeof maxlen, "%llu", (unsigned long long)o->max_length);
    if (pipe(fds) != 0) {
        bench_die("pipe: %s", strerror(errno));
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        bench_die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(fds[1], STDOUT_FILENO);
        close(fds[0]);
        close(fds[1]);
        execl(self, self, "--child", load_s, "--store", dir, "--seconds", secs,
              "--capacity", cap, "--max-length", maxlen, (char *)NULL);
        fprintf(stderr, "bench: exec %s: %s\n", self, strerror(errno));
        _exit(127);
    }
    close(fds[1]);
    char out[1024];
    size_t len = 0;
    ssize_t got;
    while ((got = read(fds[0], out + len, sizeof out - 1 - len)) > 0 ||
           (got < 0 && errno == EINTR)) {
        len += got > 0 ? (size_t)got : 0;
        if (len == sizeof out - 1) {
            break;
        }
    }
    out[len] = '\0';
    close(fds[0]);

    int status = 0;
    struct rusage ru;
    while (wait4(pid, &status, 0, &ru) < 0) {
        if (errno != EINTR) {
            bench_die("wait4: %s", strerror(errno));
        }
    }
    bench_tmpdir_remove(dir);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        bench_die("the %dx scenario failed (status %d)", load, status);
    }
    memset(res, 0, sizeof *res);
    if (sscanf(out, RESULT_FORMAT, &res->offered, &res->accepted,
               &res->refused_full, &res->failed, &res->acked, &res->depth,
               &res->hwm_kb, &res->rss_early_kb, &res->rss_end_kb,
               &res->seconds) != 10) {
        bench_die("the %dx scenario printed no result: %s", load, out);
    }
    *maxrss_kb = ru.ru_maxrss; /* KiB on Linux */
}

static void print_row(int load, const child_result *r, long maxrss_kb)
{
    char a[32], b[32], c[32], d[32];
    double s = r->seconds > 0 ? r->seconds : 1;
    printf("%3dx %11s %11s %11s %9s %9.1f %9.1f %9.1f -> %.1f\n", load,
           bench_fmt_count((double)r->offered / s, a),
           bench_fmt_count((double)r->accepted / s, b),
           bench_fmt_count((double)r->acked / s, c),
           bench_fmt_count((double)r->depth, d), r->hwm_kb / 1024.0,
           maxrss_kb / 1024.0, r->rss_early_kb / 1024.0,
           r->rss_end_kb / 1024.0);
}

static int run_parent(const overload_opts *o)
{
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        bench_die("cannot find this program: %s", strerror(errno));
    }
    self[n] = '\0';

    char a[32], b[32];
    printf("== 3. memory under overload: %dx vs %dx ==\n", HIGH_LOAD, LOW_LOAD);
    printf("engine embedded:DIR?sync=normal; channel max_length %s; "
           "consumer prefetch %d, concurrency %d,\n",
           bench_fmt_count((double)o->max_length, a), PREFETCH, CONCURRENCY);
    printf("handler paced to C = %s events/s; producer "
           "sl_producer_try_publish (max_in_flight %d)\n",
           bench_fmt_count(o->capacity_per_s, b), MAX_IN_FLIGHT);
    printf("offering L x C events/s for %.0f s, each load in its own "
           "process\n\n",
           o->seconds);
    printf("%4s %11s %11s %11s %9s %9s %9s %s\n", "load", "offered/s",
           "accepted/s", "acked/s", "depth", "VmHWM MiB", "maxrss",
           "VmRSS "
           "MiB 1/4 -> end");
    fflush(stdout);

    child_result low, high;
    long low_rss = 0, high_rss = 0;
    run_scenario(o, self, LOW_LOAD, &low, &low_rss);
    print_row(LOW_LOAD, &low, low_rss);
    fflush(stdout);
    run_scenario(o, self, HIGH_LOAD, &high, &high_rss);
    print_row(HIGH_LOAD, &high, high_rss);

    double s = high.seconds > 0 ? high.seconds : 1;
    double ratio = low.hwm_kb ? (double)high.hwm_kb / (double)low.hwm_kb : 0;
    double ratio_ru = low_rss ? (double)high_rss / (double)low_rss : 0;
    double per_event = high.depth > low.depth
                           ? ((double)high.hwm_kb - (double)low.hwm_kb) *
                                 1024.0 / (double)(high.depth - low.depth)
                           : 0;
    printf("\n%dx refused %s offers/s with SL_FULL (%.0f%% of offers)\n",
           HIGH_LOAD, bench_fmt_count((double)high.refused_full / s, a),
           high.offered
               ? 100.0 * (double)high.refused_full / (double)high.offered
               : 0);
    printf("peak RSS %dx / %dx: VmHWM %.2f, ru_maxrss %.2f (target <= "
           "1.10)\n",
           HIGH_LOAD, LOW_LOAD, ratio, ratio_ru);
    printf("extra peak RSS per queued event: %.0f bytes\n\n", per_event);

    bench_summary sum = {0};
    char v[32], t[32], r[16], name[96];
    unsigned long long ml = (unsigned long long)o->max_length;
    snprintf(v, sizeof v, "%.1f", low.hwm_kb / 1024.0);
    snprintf(name, sizeof name, "peak RSS 1x, max_length %llu (MiB)", ml);
    bench_summary_add(&sum, name, v, "", "");
    snprintf(v, sizeof v, "%.1f", high.hwm_kb / 1024.0);
    snprintf(t, sizeof t, "<= %.1f", low.hwm_kb / 1024.0 * 1.10);
    snprintf(r, sizeof r, "%.2f", ratio / 1.10);
    snprintf(name, sizeof name, "peak RSS 10x, max_length %llu (MiB)", ml);
    bench_summary_add(&sum, name, v, t, r);
    snprintf(v, sizeof v, "%.2f", ratio);
    snprintf(name, sizeof name, "peak RSS 10x / 1x, max_length %llu", ml);
    bench_summary_add(&sum, name, v, "<= 1.10", r);
    snprintf(v, sizeof v, "%.0f", per_event);
    snprintf(name, sizeof name, "bytes per queued event, max_length %llu", ml);
    bench_summary_add(&sum, name, v, "", "");
    bench_summary_finish(&sum, o->summary_path);
    return 0;
}

/* ---- main ---------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: overload_bench [--quick] [--seconds S] [--capacity C]\n"
            "                      [--max-length N] [--summary FILE]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    overload_opts o = {
        .seconds = 30,
        .capacity_per_s = 2000,
        .max_length = 10000,
    };
    double child_load = 0;
    const char *store = NULL;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--quick") == 0) {
            o.seconds = 3;
            continue;
        }
        if (val == NULL) {
            usage();
        }
        i++;
        if (strcmp(arg, "--seconds") == 0) {
            o.seconds = atof(val);
        } else if (strcmp(arg, "--capacity") == 0) {
            o.capacity_per_s = atof(val);
        } else if (strcmp(arg, "--max-length") == 0) {
            o.max_length = strtoull(val, NULL, 10);
        } else if (strcmp(arg, "--summary") == 0) {
            o.summary_path = val;
        } else if (strcmp(arg, "--child") == 0) {
            child_load = atof(val);
        } else if (strcmp(arg, "--store") == 0) {
            store = val;
        } else {
            usage();
        }
    }
    if (o.seconds <= 0 || o.capacity_per_s <= 0 || o.max_length == 0) {
        usage();
    }
    if (child_load > 0) {
        if (store == NULL) {
            usage();
        }
        return run_child(&o, child_load, store);
    }
    return run_parent(&o);
}
