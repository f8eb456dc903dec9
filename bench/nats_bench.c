/* NATS JetStream: sluice against raw nats.c, side by side in one run.
 *
 * Every side drives the same nats-server (started beforehand, by
 * scripts/with-brokers.sh or `sh scripts/brokers.sh start nats`; the
 * benchmark starts nothing) with the same settings: 512-byte events, one
 * file-storage stream (interest retention, discard new, a duplicate window,
 * Nats-Msg-Id on every publish), one durable pull consumer (explicit ack,
 * AckWait 30 s, MaxAckPending 10 000), a PubAck window of WINDOW publishes
 * and fetch batches of BATCH.
 *
 *   raw     the message sluice sends, byte for byte in size: the CloudEvents
 *           binary-mode headers ce-id (a UUIDv7), ce-source, ce-type,
 *           ce-specversion and ce-time, Nats-Msg-Id = ce-id, then the data.
 *           Built with natsMsg_Create and natsMsgHeader_Set and published
 *           with js_PublishMsgAsync (MaxPending WINDOW) and a PubAck handler
 *           that counts every outcome (the run fails unless all N were
 *           acknowledged), then js_PublishAsyncComplete. Consumed with
 *           js_PullSubscribe, natsSubscription_Fetch of BATCH and
 *           natsMsg_Ack on each (no wait), as nats.c's examples do, reading
 *           the five ce- headers of each (natsMsgHeader_Get: what any
 *           consumer of these events must learn, and what sluice's consumer
 *           reads into the event) and the data. The ratios are against this
 *           side.
 *   bare    a reference, not a target (the baseline until 2026-11-27): the
 *           data with Nats-Msg-Id only, js_PublishAsync without a PubAck
 *           handler, so failed publishes go unnoticed. Bare against raw is
 *           what the CloudEvents headers and learning each outcome cost
 *           nats.c and the server themselves. Its consumer reads the data
 *           only.
 *   sluice  sl_producer_publish_async (max_in_flight WINDOW) then
 *           sl_producer_flush; the sl_consumer runtime (prefetch BATCH,
 *           concurrency 1, a handler that returns ACK) — what a user writes.
 *
 * Each run is a child process of its own (so that its peak RSS, VmHWM, is
 * its own and nats.c's threads never meet fork): it declares a fresh
 * stream, publishes N events (publish figure: first publish to last PubAck;
 * also the CPU time of the whole process, every thread, per event) and
 * then consumes them (consume figure: first fetch to last event handled).
 * The sides alternate within each round, the order reversing every round,
 * so that the drift of a shared machine hits all alike; the medians are
 * compared (the target), and so are the two sides of each round (the
 * "paired" line: the median of the per-round ratios and their range).
 *
 * Latency: the producer publishes at a fixed rate on an absolute schedule
 * while the consumer runs; latency = consumer receipt - scheduled send time
 * (no coordinated omission). Raw and sluice only.
 *
 * Usage: nats_bench [--quick] [--rounds N] [--events N] [--latency-rate R]
 *                   [--latency-seconds S] [--url nats://HOST:PORT]
 *                   [--only bare|raw|sluice] [--publish-only]
 *                   [--server-pid PID] [--summary FILE]
 *
 * --server-pid adds the server's CPU time per consumed event (from /proc):
 * on a machine where the server takes most of the CPU, each side's own
 * CPU per event is taken from the server's, and shows in the throughput.
 *
 * --publish-only skips consuming and the latency runs: for profiling the
 * publish path (valgrind --tool=callgrind, perf record) without the rest.
 */
#include "bench_util.h"

#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <nats/nats.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_URL "nats://127.0.0.1:14222"
#define CHANNEL "bench"
#define GROUP "bench"
#define WINDOW 4096 /* PubAck window: publishes awaiting their PubAck */
#define BATCH 256   /* fetch batch = sluice prefetch */
#define ACK_WAIT_NS (30LL * 1000000000LL)
#define MAX_ACK_PENDING 10000
#define DUP_WINDOW_NS (120LL * 1000000000LL)
/* A generous bound on one phase, so that a stuck run ends the program
 * with a message instead of hanging it. Not a timed assertion. */
#define PHASE_LIMIT_MS 120000

enum { BARE, RAW, SLUICE, NIMPL };
static const char *const impl_name[NIMPL] = {"bare nats.c", "raw nats.c",
                                             "sluice"};
static const char *const impl_tag = "brs"; /* stream names, by impl */

typedef struct bench_opts {
    unsigned rounds;
    uint64_t events;
    double latency_rate_per_s;
    double latency_seconds;
    double latency_warmup_seconds;
    const char *url;
    const char *summary_path;
    int only; /* -1 = all */
    bool publish_only;
    long server_pid; /* 0 = the server's CPU is not read */
} bench_opts;

/* What a child reports through its pipe. */
typedef struct child_result {
    double publish_per_s;
    double publish_cpu_us; /* process CPU time per published event */
    double consume_per_s;
    double consume_cpu_us; /* process CPU time per consumed event */
    double server_cpu_us;  /* the server's, over the same phase */
    uint64_t p50_ns, p99_ns, max_ns, counted;
    unsigned long hwm_kb;
    char error[200];
} child_result;

static char prefix[32]; /* "nb<pid>": every stream this run creates */

/* CPU time of the whole process (user + system, every thread) in ns. */
static uint64_t process_cpu_ns(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0) {
        return 0;
    }
    return (uint64_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) *
               BENCH_NS_PER_S +
           (uint64_t)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * 1000u;
}

/* CPU time of process @p pid (user + system) in ns, from /proc; 0 when it
 * cannot be read. Clock-tick resolution: meant for phases of a second. */
static uint64_t other_cpu_ns(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        return 0;
    }
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields after the command name (which may hold spaces): state is
     * field 3; utime and stime are fields 14 and 15. */
    const char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2,
                            "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u "
                            "%llu %llu",
                            &ut, &st) != 2) {
        return 0;
    }
    return (ut + st) * (BENCH_NS_PER_S / (uint64_t)sysconf(_SC_CLK_TCK));
}

/* CPU times at the start of a consume phase: this process's and, with
 * --server-pid, the server's. */
typedef struct cpu_mark {
    uint64_t self_ns, server_ns;
} cpu_mark;

static cpu_mark cpu_mark_now(const bench_opts *o)
{
    return (cpu_mark){process_cpu_ns(),
                      o->server_pid ? other_cpu_ns(o->server_pid) : 0};
}

/* The CPU per event of @p n consumed since @p m, into @p res. */
static void consume_cpu(const bench_opts *o, const cpu_mark *m, uint64_t n,
                        child_result *res)
{
    res->consume_cpu_us =
        (double)(process_cpu_ns() - m->self_ns) / 1e3 / (double)n;
    if (o->server_pid) {
        res->server_cpu_us =
            (double)(other_cpu_ns(o->server_pid) - m->server_ns) / 1e3 /
            (double)n;
    }
}

static void child_fail(child_result *res, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void child_fail(child_result *res, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->error, sizeof res->error, fmt, ap);
    va_end(ap);
}

static void fill_data(unsigned char *data, uint64_t seq, uint64_t mono_ns)
{
    bench_stamp stamp = {seq, mono_ns};
    memset(data, 'x', BENCH_DATA_BYTES);
    memcpy(data, &stamp, sizeof stamp);
}

static uint64_t lat_slot(const void *data, int len, uint64_t n, uint64_t now,
                         uint64_t *lat)
{
    bench_stamp stamp;
    if (data == NULL || len < (int)sizeof stamp) {
        return 0;
    }
    memcpy(&stamp, data, sizeof stamp);
    if (stamp.seq < n) {
        lat[stamp.seq] = now - stamp.mono_ns;
    }
    return 1;
}

/* ---- raw nats.c ------------------------------------------------------------
 */

typedef struct raw_rig {
    bool bare; /* the reference side: no headers but the id, no handler */
    natsConnection *nc;
    jsCtx *js;
    natsSubscription *sub;
    char stream[64];
    char subject[64];
    _Atomic uint64_t acked, failed; /* PubAcks, by outcome */
} raw_rig;

/* nats.c's thread: the outcome of one publish. The handler owns @p msg. */
static void raw_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa,
                           jsPubAckErr *pae, void *closure)
{
    (void)js;
    (void)pae;
    raw_rig *r = closure;
    atomic_fetch_add_explicit(pa != NULL ? &r->acked : &r->failed, 1,
                              memory_order_relaxed);
    natsMsg_Destroy(msg);
}

/* @p r must stay where it is until raw_close (the handler's closure). */
static natsStatus raw_open(raw_rig *r, const char *url, const char *tag)
{
    snprintf(r->stream, sizeof r->stream, "%s_%s", prefix, tag);
    snprintf(r->subject, sizeof r->subject, "%s.%s", prefix, tag);
    natsOptions *no = NULL;
    natsStatus s = natsOptions_Create(&no);
    if (s == NATS_OK) {
        s = natsOptions_SetURL(no, url);
    }
    if (s == NATS_OK) {
        s = natsConnection_Connect(&r->nc, no);
    }
    natsOptions_Destroy(no);
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = WINDOW;
    jo.PublishAsync.StallWait = PHASE_LIMIT_MS;
    if (!r->bare) {
        jo.PublishAsync.AckHandler = raw_on_pub_ack;
        jo.PublishAsync.AckHandlerClosure = r;
    }
    if (s == NATS_OK) {
        s = natsConnection_JetStream(&r->js, r->nc, &jo);
    }
    /* The same stream and consumer as the sluice engine declares. */
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[1] = {r->subject};
    sc.Name = r->stream;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Retention = js_InterestPolicy;
    sc.Discard = js_DiscardNew;
    sc.MaxMsgs = -1;
    sc.Storage = js_FileStorage;
    sc.Replicas = 1;
    sc.Duplicates = DUP_WINDOW_NS;
    if (s == NATS_OK) {
        s = js_AddStream(NULL, r->js, &sc, NULL, NULL);
    }
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = GROUP;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = ACK_WAIT_NS;
    cc.MaxDeliver = -1;
    cc.MaxAckPending = MAX_ACK_PENDING;
    cc.DeliverPolicy = js_DeliverNew;
    cc.MaxWaiting = 512;
    if (s == NATS_OK) {
        s = js_AddConsumer(NULL, r->js, r->stream, &cc, NULL, NULL);
    }
    if (s == NATS_OK) {
        jsSubOptions so;
        jsSubOptions_Init(&so);
        so.Stream = r->stream;
        so.Consumer = GROUP;
        s = js_PullSubscribe(&r->sub, r->js, r->subject, GROUP, NULL, &so,
                             NULL);
    }
    return s;
}

static void raw_close(raw_rig *r)
{
    natsSubscription_Destroy(r->sub);
    jsCtx_Destroy(r->js);
    natsConnection_Destroy(r->nc);
}

/* One raw event as sluice would send it: the CloudEvents headers (the
 * attributes sl_event_create_new sets) and Nats-Msg-Id = ce-id. */
static natsStatus raw_publish_event(raw_rig *r, const unsigned char *data,
                                    size_t len, jsPubOptions *po)
{
    uint64_t now = sl_time_wall_ms();
    char id[37], time[32];
    sl_uuid7(id, now);
    sl_time_format_rfc3339(now, time);
    natsMsg *m = NULL;
    natsStatus s =
        natsMsg_Create(&m, r->subject, NULL, (const char *)data, (int)len);
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-id", id);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-source", BENCH_SOURCE);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-type", BENCH_TYPE);
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-specversion", "1.0");
    }
    if (s == NATS_OK) {
        s = natsMsgHeader_Set(m, "ce-time", time);
    }
    po->MsgId = id;
    if (s == NATS_OK) {
        s = js_PublishMsgAsync(r->js, &m, po);
    }
    natsMsg_Destroy(m); /* NULL once nats.c took it */
    return s;
}

/* Publish @p n events; with @p period_ns on an absolute schedule. */
static natsStatus raw_publish(raw_rig *r, uint64_t n, uint64_t period_ns,
                              uint64_t start_ns)
{
    unsigned char data[BENCH_DATA_BYTES];
    char id[96];
    jsPubOptions po;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t sched = 0;
        if (period_ns != 0) {
            sched = start_ns + i * period_ns;
            if (sl_time_mono_ns() < sched) {
                bench_sleep_until_ns(sched);
            }
        }
        fill_data(data, i, sched);
        jsPubOptions_Init(&po);
        natsStatus s;
        if (r->bare) {
            snprintf(id, sizeof id, "%s-%" PRIu64, r->stream, i);
            po.MsgId = id;
            s = js_PublishAsync(r->js, r->subject, data, sizeof data, &po);
        } else {
            s = raw_publish_event(r, data, sizeof data, &po);
        }
        if (s != NATS_OK) {
            return s;
        }
    }
    jsPubOptions_Init(&po);
    po.MaxWait = PHASE_LIMIT_MS;
    natsStatus s = js_PublishAsyncComplete(r->js, &po);
    if (s == NATS_OK && !r->bare &&
        (atomic_load(&r->failed) > 0 || atomic_load(&r->acked) != n)) {
        s = NATS_ERR; /* a publish failed, or its PubAck never came */
    }
    return s;
}

/* Fetch and ack until @p n events arrived; *last_ns = last one handled. */
static natsStatus raw_consume(raw_rig *r, uint64_t n, uint64_t *lat,
                              uint64_t nlat, _Atomic bool *stop,
                              uint64_t *last_ns)
{
    uint64_t got = 0;
    uint64_t give_up = sl_time_mono_ns() + PHASE_LIMIT_MS * 1000000ull;
    while (got < n) {
        if (sl_time_mono_ns() > give_up ||
            (stop != NULL && atomic_load(stop))) {
            return NATS_TIMEOUT;
        }
        natsMsgList list = {0};
        natsStatus s = natsSubscription_Fetch(&list, r->sub, BATCH, 500, NULL);
        if (s == NATS_TIMEOUT) {
            continue;
        }
        if (s != NATS_OK) {
            return s;
        }
        uint64_t now = sl_time_mono_ns();
        for (int i = 0; i < list.Count; i++) {
            natsMsg *m = list.Msgs[i];
            if (lat != NULL) {
                lat_slot(natsMsg_GetData(m), natsMsg_GetDataLength(m), nlat,
                         now, lat);
            }
            if (!r->bare) {
                /* What a consumer of these events learns of each: its
                 * attributes, from the ce- headers (nats.c parses the header
                 * block on the first get), as sluice's consumer must. */
                static const char *const attrs[] = {"ce-id", "ce-source",
                                                    "ce-type", "ce-specversion",
                                                    "ce-time"};
                for (size_t a = 0; a < sizeof attrs / sizeof *attrs; a++) {
                    const char *v = NULL;
                    if (natsMsgHeader_Get(m, attrs[a], &v) != NATS_OK ||
                        v == NULL || *v == '\0') {
                        natsMsgList_Destroy(&list);
                        return NATS_ERR;
                    }
                }
            }
            natsMsg_Ack(m, NULL);
        }
        got += (uint64_t)list.Count;
        natsMsgList_Destroy(&list);
        *last_ns = sl_time_mono_ns();
    }
    return NATS_OK;
}

/* ---- sluice
 * ------------------------------------------------------------------ */

typedef struct sluice_rig {
    sl_engine *eng;
    sl_producer *prod;
    sl_consumer *cons;
    _Atomic uint64_t handled;
    _Atomic uint64_t last_ns;
    _Atomic uint64_t want; /* the waiter is woken when handled reaches it */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uint64_t *lat; /* latency run: by sequence number */
    uint64_t nlat;
} sluice_rig;

static sl_outcome sluice_handler(sl_handler_ctx *ctx, void *user)
{
    sluice_rig *r = user;
    uint64_t now = sl_time_mono_ns();
    if (r->lat != NULL) {
        size_t len = 0;
        const void *data = sl_event_data(sl_handler_event(ctx), &len);
        lat_slot(data, (int)len, r->nlat, now, r->lat);
    }
    atomic_store_explicit(&r->last_ns, now, memory_order_relaxed);
    uint64_t h =
        atomic_fetch_add_explicit(&r->handled, 1, memory_order_release) + 1;
    if (h == atomic_load_explicit(&r->want, memory_order_relaxed)) {
        pthread_mutex_lock(&r->mu);
        pthread_cond_signal(&r->cv);
        pthread_mutex_unlock(&r->mu);
    }
    return SL_OUTCOME_ACK;
}

static sl_status sluice_open(sluice_rig *r, const char *url, const char *tag,
                             sl_diag *diag)
{
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    char full[512];
    snprintf(full, sizeof full, "%s%cns=%s_%s", url,
             strchr(url, '?') ? '&' : '?', prefix, tag);
    sl_status st = sl_engine_open(full, NULL, &r->eng, diag);
    sl_channel_opts co = {.name = CHANNEL};
    if (st == SL_OK) {
        st = sl_engine_declare_channel(r->eng, &co, diag);
    }
    sl_group_opts go = {.channel = CHANNEL, .name = GROUP};
    if (st == SL_OK) {
        st = sl_engine_declare_group(r->eng, &go, diag);
    }
    sl_producer_opts po = {.max_in_flight = WINDOW,
                           .publish_timeout_ms = PHASE_LIMIT_MS};
    if (st == SL_OK) {
        st = sl_producer_create(r->eng, &po, &r->prod);
    }
    sl_consumer_opts cons = {
        .channel = CHANNEL,
        .group = GROUP,
        .prefetch = BATCH,
        .concurrency = 1,
        .handler = sluice_handler,
        .handler_ctx = r,
        .service = "bench",
    };
    if (st == SL_OK) {
        st = sl_consumer_create(r->eng, &cons, &r->cons, diag);
    }
    return st;
}

static void sluice_close(sluice_rig *r)
{
    if (r->cons != NULL) {
        sl_consumer_stop(r->cons, 5000);
        sl_consumer_destroy(r->cons);
    }
    sl_producer_destroy(r->prod);
    sl_engine_close(r->eng);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

static sl_status sluice_publish_n(sluice_rig *r, uint64_t n, uint64_t period_ns,
                                  uint64_t start_ns)
{
    for (uint64_t i = 0; i < n; i++) {
        uint64_t sched = 0;
        if (period_ns != 0) {
            sched = start_ns + i * period_ns;
            if (sl_time_mono_ns() < sched) {
                bench_sleep_until_ns(sched);
            }
        }
        sl_event *ev = bench_event(i, sched);
        sl_status st =
            sl_producer_publish_async(r->prod, CHANNEL, ev, NULL, NULL);
        sl_event_unref(ev);
        if (st != SL_OK) {
            return st;
        }
    }
    return sl_producer_flush(r->prod, PHASE_LIMIT_MS);
}

static bool sluice_wait_handled(sluice_rig *r, uint64_t n)
{
    /* Woken by the handler that reaches n, as a user's program would be,
     * rather than polling: the raw side's consumer is its main thread, so
     * a polling waiter would be CPU that only sluice's side pays. */
    uint64_t give_up = sl_time_mono_ns() + PHASE_LIMIT_MS * 1000000ull;
    atomic_store(&r->want, n);
    pthread_mutex_lock(&r->mu);
    while (atomic_load_explicit(&r->handled, memory_order_acquire) < n) {
        if (sl_time_mono_ns() >= give_up) {
            pthread_mutex_unlock(&r->mu);
            return false;
        }
        /* A slice: the handler may have passed n before want was set. */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    }
    pthread_mutex_unlock(&r->mu);
    return true;
}

/* ---- the children
 * -------------------------------------------------------------- */

/* Throughput: publish N, then consume N (unless publish-only). */
static void child_throughput(int impl, const bench_opts *o, unsigned round,
                             child_result *res)
{
    char tag[32];
    snprintf(tag, sizeof tag, "t%u%c", round, impl_tag[impl]);
    uint64_t n = o->events;
    if (impl != SLUICE) {
        raw_rig r = {.bare = impl == BARE};
        natsStatus s = raw_open(&r, o->url, tag);
        if (s != NATS_OK) {
            child_fail(res, "raw setup: %s", natsStatus_GetText(s));
            return;
        }
        uint64_t c0 = process_cpu_ns();
        uint64_t t0 = sl_time_mono_ns();
        s = raw_publish(&r, n, 0, 0);
        uint64_t t1 = sl_time_mono_ns();
        uint64_t c1 = process_cpu_ns();
        if (s != NATS_OK) {
            child_fail(
                res, "raw publish: %s (%" PRIu64 " acked, %" PRIu64 " failed)",
                natsStatus_GetText(s), atomic_load(&r.acked),
                atomic_load(&r.failed));
            raw_close(&r);
            return;
        }
        res->publish_per_s = (double)n * 1e9 / (double)(t1 - t0);
        res->publish_cpu_us = (double)(c1 - c0) / 1e3 / (double)n;
        if (!o->publish_only) {
            uint64_t last = t1;
            cpu_mark mark = cpu_mark_now(o);
            uint64_t t2 = sl_time_mono_ns();
            s = raw_consume(&r, n, NULL, 0, NULL, &last);
            consume_cpu(o, &mark, n, res);
            if (s != NATS_OK) {
                child_fail(res, "raw consume: %s", natsStatus_GetText(s));
            }
            natsConnection_FlushTimeout(r.nc, 5000); /* the last acks out */
            res->consume_per_s = (double)n * 1e9 / (double)(last - t2);
        }
        raw_close(&r);
        return;
    }
    sluice_rig r = {0};
    sl_diag diag = {0};
    sl_status st = sluice_open(&r, o->url, tag, &diag);
    if (st != SL_OK) {
        child_fail(res, "sluice setup: %s: %s", sl_status_str(st), diag.msg);
        sluice_close(&r);
        return;
    }
    uint64_t c0 = process_cpu_ns();
    uint64_t t0 = sl_time_mono_ns();
    st = sluice_publish_n(&r, n, 0, 0);
    uint64_t t1 = sl_time_mono_ns();
    uint64_t c1 = process_cpu_ns();
    if (st != SL_OK) {
        child_fail(res, "sluice publish: %s", sl_status_str(st));
        sluice_close(&r);
        return;
    }
    res->publish_per_s = (double)n * 1e9 / (double)(t1 - t0);
    res->publish_cpu_us = (double)(c1 - c0) / 1e3 / (double)n;
    if (!o->publish_only) {
        cpu_mark mark = cpu_mark_now(o);
        uint64_t t2 = sl_time_mono_ns();
        st = sl_consumer_start(r.cons);
        if (st != SL_OK || !sluice_wait_handled(&r, n)) {
            child_fail(res, "sluice consume: %s, %llu of %llu handled",
                       sl_status_str(st), (unsigned long long)r.handled,
                       (unsigned long long)n);
        }
        consume_cpu(o, &mark, n, res);
        res->consume_per_s =
            (double)n * 1e9 / (double)(atomic_load(&r.last_ns) - t2);
    }
    sluice_close(&r);
}

typedef struct raw_lat_consumer {
    raw_rig *r;
    uint64_t n;
    uint64_t *lat;
    _Atomic bool stop;
    natsStatus s;
} raw_lat_consumer;

static void *raw_lat_consume(void *arg)
{
    raw_lat_consumer *c = arg;
    uint64_t last = 0;
    c->s = raw_consume(c->r, c->n, c->lat, c->n, &c->stop, &last);
    return NULL;
}

/* Latency: publish at a fixed rate while consuming. */
static void child_latency(int impl, const bench_opts *o, child_result *res)
{
    char tag[32];
    snprintf(tag, sizeof tag, "lat%c", impl_tag[impl]);
    uint64_t warmup =
        (uint64_t)(o->latency_rate_per_s * o->latency_warmup_seconds);
    uint64_t n =
        warmup + (uint64_t)(o->latency_rate_per_s * o->latency_seconds);
    uint64_t period = (uint64_t)(1e9 / o->latency_rate_per_s);
    uint64_t *lat = malloc(n * sizeof *lat);
    if (lat == NULL) {
        child_fail(res, "out of memory");
        return;
    }
    memset(lat, 0xff, n * sizeof *lat); /* UINT64_MAX: never arrived */
    if (impl != SLUICE) {
        raw_rig r = {.bare = impl == BARE};
        natsStatus s = raw_open(&r, o->url, tag);
        if (s != NATS_OK) {
            child_fail(res, "raw setup: %s", natsStatus_GetText(s));
            free(lat);
            return;
        }
        raw_lat_consumer c = {.r = &r, .n = n, .lat = lat};
        pthread_t th;
        if (pthread_create(&th, NULL, raw_lat_consume, &c) != 0) {
            bench_die("cannot start the consumer thread");
        }
        s = raw_publish(&r, n, period, sl_time_mono_ns() + 1000000);
        if (s != NATS_OK) {
            atomic_store(&c.stop, true);
            child_fail(res, "raw publish: %s", natsStatus_GetText(s));
        }
        pthread_join(th, NULL);
        if (s == NATS_OK && c.s != NATS_OK) {
            child_fail(res, "raw consume: %s", natsStatus_GetText(c.s));
        }
        raw_close(&r);
    } else {
        sluice_rig r = {.lat = lat, .nlat = n};
        sl_diag diag = {0};
        sl_status st = sluice_open(&r, o->url, tag, &diag);
        if (st == SL_OK) {
            st = sl_consumer_start(r.cons);
        }
        if (st == SL_OK) {
            st = sluice_publish_n(&r, n, period, sl_time_mono_ns() + 1000000);
        }
        if (st != SL_OK) {
            child_fail(res, "sluice: %s: %s", sl_status_str(st), diag.msg);
        } else if (!sluice_wait_handled(&r, n)) {
            child_fail(res, "sluice latency run did not drain");
        }
        sluice_close(&r);
    }
    uint64_t *v = lat + warmup;
    size_t k = 0;
    for (uint64_t i = warmup; i < n; i++) {
        if (lat[i] != UINT64_MAX) {
            v[k++] = lat[i];
        }
    }
    qsort(v, k, sizeof *v, bench_cmp_u64);
    res->counted = k;
    res->p50_ns = bench_percentile(v, k, 50);
    res->p99_ns = bench_percentile(v, k, 99);
    res->max_ns = k ? v[k - 1] : 0;
    free(lat);
}

/* Delete every stream of this run (a child of its own, like the runs). */
static void child_cleanup(const bench_opts *o, child_result *res)
{
    natsConnection *nc = NULL;
    jsCtx *js = NULL;
    jsStreamNamesList *names = NULL;
    natsStatus s = natsConnection_ConnectTo(&nc, o->url);
    if (s == NATS_OK) {
        s = natsConnection_JetStream(&js, nc, NULL);
    }
    if (s == NATS_OK) {
        s = js_StreamNames(&names, js, NULL, NULL);
    }
    for (int i = 0; s == NATS_OK && i < names->Count; i++) {
        if (strncmp(names->List[i], prefix, strlen(prefix)) == 0) {
            js_DeleteStream(js, names->List[i], NULL, NULL);
        }
    }
    if (s != NATS_OK && s != NATS_NOT_FOUND) {
        child_fail(res, "cleanup: %s", natsStatus_GetText(s));
    }
    jsStreamNamesList_Destroy(names);
    jsCtx_Destroy(js);
    natsConnection_Destroy(nc);
}

enum { RUN_THROUGHPUT, RUN_LATENCY, RUN_CLEANUP };

/* Run one child; its result, or the end of the program on failure. */
static child_result run_child(int kind, int impl, const bench_opts *o,
                              unsigned round)
{
    int fds[2];
    if (pipe(fds) != 0) {
        bench_die("pipe: %s", strerror(errno));
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        bench_die("fork: %s", strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        child_result res = {0};
        if (kind == RUN_THROUGHPUT) {
            child_throughput(impl, o, round, &res);
        } else if (kind == RUN_LATENCY) {
            child_latency(impl, o, &res);
        } else {
            child_cleanup(o, &res);
        }
        res.hwm_kb = bench_proc_status_kb("VmHWM");
        if (write(fds[1], &res, sizeof res) != (ssize_t)sizeof res) {
            _exit(3);
        }
        close(fds[1]);
        nats_CloseAndWait(2000);
        _exit(0);
    }
    close(fds[1]);
    child_result res = {0};
    ssize_t got = read(fds[0], &res, sizeof res);
    close(fds[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (got != (ssize_t)sizeof res) {
        bench_die("%s run ended without a result (status %d)", impl_name[impl],
                  status);
    }
    if (res.error[0] != '\0') {
        bench_die("%s: %s (is nats-server with JetStream running at %s?)",
                  impl_name[impl], res.error, o->url);
    }
    return res;
}

/* ---- main
 * ------------------------------------------------------------------------ */

static void usage(void)
{
    fprintf(stderr,
            "usage: nats_bench [--quick] [--rounds N] [--events N]\n"
            "                  [--latency-rate R] [--latency-seconds S]\n"
            "                  [--url nats://HOST:PORT]\n"
            "                  [--only bare|raw|sluice] [--publish-only]\n"
            "                  [--server-pid PID] [--summary FILE]\n");
    exit(2);
}

/* "paired sluice / raw, NAME: median M (min-max) over R rounds". */
static void print_paired(const char *name, const double *a, const double *b,
                         unsigned rounds)
{
    double r[16];
    unsigned n = 0;
    double lo = 0, hi = 0;
    for (unsigned i = 0; i < rounds && i < 16; i++) {
        if (b[i] > 0) {
            r[n] = a[i] / b[i];
            lo = n == 0 || r[n] < lo ? r[n] : lo;
            hi = n == 0 || r[n] > hi ? r[n] : hi;
            n++;
        }
    }
    if (n > 0) {
        printf("paired sluice / raw, %s: median %.2f (%.2f-%.2f) over %u "
               "rounds\n",
               name, bench_median(r, n), lo, hi, n);
    }
}

static void add_ratio_row(bench_summary *sum, const char *figure, double sluice,
                          double raw)
{
    char v[32], r[16];
    bench_fmt_count(sluice, v);
    snprintf(r, sizeof r, "%.2f", raw > 0 ? sluice / raw / 0.90 : 0);
    char t[32], rawc[32];
    snprintf(t, sizeof t, ">= %s", bench_fmt_count(raw * 0.90, rawc));
    bench_summary_add(sum, figure, v, t, r);
}

static bool runs(const bench_opts *o, int impl)
{
    return o->only < 0 || o->only == impl;
}

/* One row of the round table: a figure for each side that runs. */
static void print_cells(const bench_opts *o, const double *v, bool consume,
                        bool count)
{
    char a[32];
    for (int k = 0; k < NIMPL; k++) {
        if (!runs(o, k) || (consume && o->publish_only)) {
            printf(count ? " %10s" : " %6s", "-");
        } else if (count) {
            printf(" %10s", bench_fmt_count(v[k], a));
        } else {
            printf(" %6.2f", v[k]);
        }
    }
}

static void print_row(const bench_opts *o, const char *label, const double *pub,
                      const double *con, const double *pcpu, const double *ccpu,
                      const double *scpu)
{
    printf("%-7s", label);
    print_cells(o, pub, false, true);
    print_cells(o, con, true, true);
    print_cells(o, pcpu, false, false);
    print_cells(o, ccpu, true, false);
    if (o->server_pid) {
        print_cells(o, scpu, true, false);
    }
    printf("\n");
}

int main(int argc, char **argv)
{
    bench_opts o = {
        .rounds = 5,
        .events = 50000,
        .latency_rate_per_s = 5000,
        .latency_seconds = 3,
        .latency_warmup_seconds = 0.5,
        .url = DEFAULT_URL,
        .only = -1,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--quick") == 0) {
            o.rounds = 2;
            o.events = 10000;
            o.latency_seconds = 1;
            o.latency_warmup_seconds = 0.2;
            continue;
        }
        if (strcmp(arg, "--publish-only") == 0) {
            o.publish_only = true;
            continue;
        }
        if (val == NULL) {
            usage();
        }
        i++;
        if (strcmp(arg, "--rounds") == 0) {
            o.rounds = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(arg, "--events") == 0) {
            o.events = strtoull(val, NULL, 10);
        } else if (strcmp(arg, "--latency-rate") == 0) {
            o.latency_rate_per_s = atof(val);
        } else if (strcmp(arg, "--latency-seconds") == 0) {
            o.latency_seconds = atof(val);
        } else if (strcmp(arg, "--url") == 0) {
            o.url = val;
        } else if (strcmp(arg, "--only") == 0) {
            o.only = strcmp(val, "bare") == 0     ? BARE
                     : strcmp(val, "raw") == 0    ? RAW
                     : strcmp(val, "sluice") == 0 ? SLUICE
                                                  : -2;
        } else if (strcmp(arg, "--server-pid") == 0) {
            o.server_pid = strtol(val, NULL, 10);
        } else if (strcmp(arg, "--summary") == 0) {
            o.summary_path = val;
        } else {
            usage();
        }
    }
    if (o.rounds < 1 || o.rounds > 16 || o.events < 1 || o.only == -2 ||
        o.latency_rate_per_s <= 0 || o.latency_seconds <= 0) {
        usage();
    }
    snprintf(prefix, sizeof prefix, "nb%ld", (long)getpid());

    char a[32], b[32];
    printf("== NATS JetStream: sluice vs raw nats.c (%s) ==\n", o.url);
    printf("%u-byte events, file stream (interest, discard new, dedup "
           "window, Nats-Msg-Id),\ndurable pull consumer (explicit ack); "
           "PubAck window %d, fetch batch / prefetch %d\n",
           BENCH_DATA_BYTES, WINDOW, BATCH);
    printf("raw:    the same message as sluice (5 ce- headers + "
           "Nats-Msg-Id), js_PublishMsgAsync\n        + PubAck handler, "
           "js_PublishAsyncComplete; natsSubscription_Fetch, the 5 ce- "
           "headers read, natsMsg_Ack\n");
    printf("bare:   reference only: data + Nats-Msg-Id, js_PublishAsync "
           "without a PubAck handler\n");
    printf("sluice: sl_producer_publish_async + sl_producer_flush; "
           "sl_consumer (concurrency 1, handler returns ACK)\n");
    printf("%u rounds of %s events, the sides alternating, each run a "
           "child process\n\n",
           o.rounds, bench_fmt_count((double)o.events, a));
    printf("%-7s %32s %32s %20s %20s%s\n", "", "publish, events/s",
           "consume, events/s", "CPU us / published", "CPU us / consumed",
           o.server_pid ? "  server CPU us / cons." : "");
    printf("%-7s", "round");
    for (int pass = 0; pass < 2; pass++) {
        for (int k = 0; k < NIMPL; k++) {
            printf(" %10s", k == BARE ? "bare" : k == RAW ? "raw" : "sluice");
        }
    }
    for (int pass = 0; pass < (o.server_pid ? 3 : 2); pass++) {
        printf(" %6s %6s %6s", "bare", "raw", "sluice");
    }
    printf("\n");

    double pub[NIMPL][16] = {{0}}, con[NIMPL][16] = {{0}},
           cpu[NIMPL][16] = {{0}}, ccpu[NIMPL][16] = {{0}},
           scpu[NIMPL][16] = {{0}};
    unsigned long hwm[NIMPL] = {0};
    for (unsigned r = 0; r < o.rounds; r++) {
        for (int k = 0; k < NIMPL; k++) {
            int impl = (r % 2 == 0) ? k : NIMPL - 1 - k;
            if (!runs(&o, impl)) {
                continue;
            }
            child_result res = run_child(RUN_THROUGHPUT, impl, &o, r + 1);
            pub[impl][r] = res.publish_per_s;
            con[impl][r] = res.consume_per_s;
            cpu[impl][r] = res.publish_cpu_us;
            ccpu[impl][r] = res.consume_cpu_us;
            scpu[impl][r] = res.server_cpu_us;
            hwm[impl] = res.hwm_kb > hwm[impl] ? res.hwm_kb : hwm[impl];
            run_child(RUN_CLEANUP, impl, &o, 0);
        }
        char label[16];
        snprintf(label, sizeof label, "%u", r + 1);
        double rp[NIMPL], rc[NIMPL], ru[NIMPL], rcu[NIMPL], rsu[NIMPL];
        for (int k = 0; k < NIMPL; k++) {
            rp[k] = pub[k][r];
            rc[k] = con[k][r];
            ru[k] = cpu[k][r];
            rcu[k] = ccpu[k][r];
            rsu[k] = scpu[k][r];
        }
        print_row(&o, label, rp, rc, ru, rcu, rsu);
        fflush(stdout);
    }
    double mpub[NIMPL], mcon[NIMPL], mcpu[NIMPL], mccpu[NIMPL], mscpu[NIMPL];
    for (int k = 0; k < NIMPL; k++) {
        mpub[k] = bench_median(pub[k], o.rounds);
        mcon[k] = bench_median(con[k], o.rounds);
        mcpu[k] = bench_median(cpu[k], o.rounds);
        mccpu[k] = bench_median(ccpu[k], o.rounds);
        mscpu[k] = bench_median(scpu[k], o.rounds);
    }
    print_row(&o, "median", mpub, mcon, mcpu, mccpu, mscpu);
    bool all = o.only < 0;
    bool both_consumed = all && !o.publish_only;
    if (all) {
        printf("sluice / raw: publish %.2f", mpub[SLUICE] / mpub[RAW]);
        if (both_consumed) {
            printf(", consume %.2f", mcon[SLUICE] / mcon[RAW]);
        }
        printf(" (target >= 0.90); sluice / bare: publish %.2f",
               mpub[SLUICE] / mpub[BARE]);
        if (both_consumed) {
            printf(", consume %.2f", mcon[SLUICE] / mcon[BARE]);
        }
        printf("\n");
        /* The same comparison round by round: the two sides of a round
         * ran back to back, so a shared machine's drift between rounds
         * falls out of each ratio. */
        print_paired("publish", pub[SLUICE], pub[RAW], o.rounds);
        if (both_consumed) {
            print_paired("consume", con[SLUICE], con[RAW], o.rounds);
        }
    }
    printf("peak RSS (VmHWM of the run's process): bare %lu KiB, raw %lu "
           "KiB, sluice %lu KiB\n\n",
           hwm[BARE], hwm[RAW], hwm[SLUICE]);

    child_result lat[NIMPL] = {{0}};
    if (!o.publish_only) {
        printf("== latency at %s events/s for %.1f s (after %.1f s "
               "warm-up), publisher and consumer running ==\n",
               bench_fmt_count(o.latency_rate_per_s, a), o.latency_seconds,
               o.latency_warmup_seconds);
        printf("latency = consumer receipt - scheduled send time\n");
        printf("%-12s %10s %10s %10s %10s %12s\n", "", "events", "p50 us",
               "p99 us", "max us", "VmHWM KiB");
        for (int impl = RAW; impl < NIMPL; impl++) {
            if (!runs(&o, impl)) {
                continue;
            }
            lat[impl] = run_child(RUN_LATENCY, impl, &o, 0);
            run_child(RUN_CLEANUP, impl, &o, 0);
            printf("%-12s %10s %10.0f %10.0f %10.0f %12lu\n", impl_name[impl],
                   bench_fmt_count((double)lat[impl].counted, a),
                   (double)lat[impl].p50_ns / 1e3,
                   (double)lat[impl].p99_ns / 1e3,
                   (double)lat[impl].max_ns / 1e3, lat[impl].hwm_kb);
            fflush(stdout);
        }
        printf("\n");
    }

    bench_summary sum = {0};
    char v[32];
    if (all) {
        add_ratio_row(&sum, "nats publish sluice (ev/s)", mpub[SLUICE],
                      mpub[RAW]);
        if (both_consumed) {
            add_ratio_row(&sum, "nats consume sluice (ev/s)", mcon[SLUICE],
                          mcon[RAW]);
        }
        snprintf(v, sizeof v, "%.2f", mpub[SLUICE] / mpub[RAW]);
        bench_summary_add(&sum, "nats publish sluice / raw", v, ">= 0.90", "");
        if (both_consumed) {
            snprintf(v, sizeof v, "%.2f", mcon[SLUICE] / mcon[RAW]);
            bench_summary_add(&sum, "nats consume sluice / raw", v, ">= 0.90",
                              "");
        }
        snprintf(v, sizeof v, "%s / %s", bench_fmt_count(mpub[BARE], a),
                 bench_fmt_count(mcon[BARE], b));
        bench_summary_add(&sum, "nats bare pub / cons (ev/s, ref.)",
                          o.publish_only ? bench_fmt_count(mpub[BARE], a) : v,
                          "", "");
    }
    for (int impl = RAW; impl < NIMPL; impl++) {
        if (!runs(&o, impl)) {
            continue;
        }
        const char *who = impl == RAW ? "raw" : "sluice";
        char fig[64];
        snprintf(fig, sizeof fig, "nats publish CPU %s (us/ev)", who);
        snprintf(v, sizeof v, "%.2f", mcpu[impl]);
        bench_summary_add(&sum, fig, v, "", "");
        if (!o.publish_only) {
            snprintf(fig, sizeof fig, "nats consume CPU %s (us/ev)", who);
            snprintf(v, sizeof v, "%.2f", mccpu[impl]);
            bench_summary_add(&sum, fig, v, "", "");
            snprintf(fig, sizeof fig, "nats latency %s p50 / p99 (us)", who);
            snprintf(v, sizeof v, "%.0f / %.0f", (double)lat[impl].p50_ns / 1e3,
                     (double)lat[impl].p99_ns / 1e3);
            bench_summary_add(&sum, fig, v, "", "");
        }
        snprintf(fig, sizeof fig, "nats peak RSS %s (KiB)", who);
        bench_summary_add(&sum, fig, bench_fmt_count((double)hwm[impl], a), "",
                          "");
    }
    bench_summary_finish(&sum, o.summary_path);
    return 0;
}
