/* RabbitMQ benchmarks: sluice vs the raw rabbitmq-c client vs a Python
 * service (aio-pika, pika), side by side on the same broker and queue.
 *
 * Identical settings for every client: persistent 512-byte events carrying
 * the same CloudEvents headers and AMQP properties sluice writes, one quorum
 * queue (declared by sluice: channel "bench", group "bench", in a namespace
 * of its own), a window of WINDOW unconfirmed publishes, a prefetch of
 * PREFETCH. Each sample publishes N events (timed: first publish to last
 * confirm = the publish figure), then consumes the same N with the same
 * client (timed: basic.consume to the last delivery handled = the consume
 * figure), leaving the queue empty. Clients alternate within each round so
 * that the drift of a shared machine hits them alike; medians are compared.
 *
 *   raw      rabbitmq-c written the usual efficient way: confirm.select,
 *            publishes with up to WINDOW outstanding confirms (read without
 *            blocking every 32 publishes, blocking when the window is full);
 *            basic.qos + basic.consume + amqp_consume_message, basic.ack
 *            with multiple every ACK_EVERY deliveries or when the socket
 *            buffer is empty.
 *   sluice   sl_producer_publish_async (max_in_flight WINDOW) + flush; the
 *            sl_consumer runtime (prefetch PREFETCH, concurrency 1, the
 *            handler returns ACK).
 *   aio-pika bench/amqp_pika_bench.py: publisher confirms with asyncio
 *            gathers of WINDOW publishes; queue.iterator() with
 *            message.process() (one ack per message), prefetch PREFETCH.
 *   pika     the same script: BlockingConnection, confirm_delivery (each
 *            publish waits for its confirm), basic_consume with a basic_ack
 *            per message.
 *
 * Every sample runs in a child process of its own (fork before any thread),
 * so its peak RSS (VmHWM) is that client's alone.
 *
 * Latency: a producer publishes at a fixed rate on an absolute schedule
 * while a consumer runs; latency = delivery handled - scheduled send time.
 *
 * The broker is not started here: run under scripts/with-brokers.sh (as
 * `make bench` does) or point --url at one.
 *
 * Usage: amqp_bench [--quick] [--url URL] [--rounds N] [--events N]
 *                   [--python-events N] [--latency-rate R]
 *                   [--latency-seconds S] [--pika PATH] [--summary FILE]
 */
#include "bench_util.h"

#include "sluice/consumer.h"
#include "sluice/engine.h"
#include "sluice/producer.h"

#include <amqp.h>
#include <amqp_tcp_socket.h>

#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_URL "amqp://guest:guest@127.0.0.1:15673"
#define CHANNEL "bench"
#define GROUP "bench"
#define WINDOW 1000
#define PREFETCH 500
#define ACK_EVERY 64 /* as the sluice consumer's ack batch */
#define DRAIN_LIMIT_MS 60000
#define PY "/usr/bin/python3"

typedef struct bench_opts {
    const char *url;
    const char *pika; /* the Python script; NULL = skip the Python clients */
    unsigned rounds;
    uint64_t events;
    uint64_t py_events;
    uint64_t pika_events;
    double lat_rate;
    double lat_seconds;
    const char *summary_path;
} bench_opts;

/* What a child reports to the parent. */
typedef struct sample {
    int ok;
    double pub_per_s;
    double con_per_s;
    double pub_cpu_us; /* CPU (user + system, all threads) per event */
    double con_cpu_us;
    uint64_t p50_ns, p99_ns, counted;
    unsigned long rss_kb;
    char err[200];
} sample;

static char g_ns[64];
static char g_exchange[256];
static char g_queue[256];

/* ---- raw rabbitmq-c --------------------------------------------------------
 */

static void raw_die_reply(amqp_rpc_reply_t r, const char *what)
{
    if (r.reply_type == AMQP_RESPONSE_NORMAL) {
        return;
    }
    if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        bench_die("%s: %s", what, amqp_error_string2(r.library_error));
    }
    bench_die("%s: broker error (method 0x%08x)", what, r.reply.id);
}

static amqp_connection_state_t raw_connect(const char *url)
{
    char *copy = strdup(url);
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (copy == NULL || amqp_parse_url(copy, &ci) != AMQP_STATUS_OK) {
        bench_die("bad URL %s", url);
    }
    amqp_connection_state_t conn = amqp_new_connection();
    amqp_socket_t *sock = amqp_tcp_socket_new(conn);
    if (sock == NULL || amqp_socket_open(sock, ci.host, ci.port) != 0) {
        bench_die("cannot connect to RabbitMQ at %s:%d (is it running? "
                  "sh scripts/with-brokers.sh ...)",
                  ci.host, ci.port);
    }
    raw_die_reply(amqp_login(conn, ci.vhost, 0, 131072, 0,
                             AMQP_SASL_METHOD_PLAIN, ci.user, ci.password),
                  "login");
    amqp_channel_open(conn, 1);
    raw_die_reply(amqp_get_rpc_reply(conn), "channel.open");
    free(copy);
    return conn;
}

static void raw_close(amqp_connection_state_t conn)
{
    amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
    amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
    amqp_destroy_connection(conn);
}

/* The message sluice would write for an event: the same CloudEvents
 * headers and plain properties, built the way a C user would. */
typedef struct raw_msg {
    char id[40];
    char time[40];
    amqp_table_entry_t hdr[5];
    amqp_basic_properties_t props;
    unsigned char body[BENCH_DATA_BYTES];
} raw_msg;

static void raw_msg_init(raw_msg *m)
{
    memset(m, 0, sizeof *m);
    memset(m->body, 'x', sizeof m->body);
    snprintf(m->time, sizeof m->time, "2024-01-01T00:00:00.000Z");
    const char *keys[5] = {"cloudEvents:specversion", "cloudEvents:id",
                           "cloudEvents:source", "cloudEvents:type",
                           "cloudEvents:time"};
    const char *vals[5] = {"1.0", m->id, BENCH_SOURCE, BENCH_TYPE, m->time};
    for (int i = 0; i < 5; i++) {
        m->hdr[i].key = amqp_cstring_bytes(keys[i]);
        m->hdr[i].value.kind = AMQP_FIELD_KIND_UTF8;
        m->hdr[i].value.value.bytes = amqp_cstring_bytes(vals[i]);
    }
    m->props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG |
                      AMQP_BASIC_MESSAGE_ID_FLAG | AMQP_BASIC_TYPE_FLAG |
                      AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
    m->props.delivery_mode = 2;
    m->props.headers.num_entries = 5;
    m->props.headers.entries = m->hdr;
    m->props.type = amqp_cstring_bytes(BENCH_TYPE);
    m->props.app_id = amqp_cstring_bytes(BENCH_SOURCE);
}

static void raw_msg_set(raw_msg *m, uint64_t seq, uint64_t mono_ns)
{
    sl_uuid7(m->id, sl_time_wall_ms());
    m->hdr[1].value.value.bytes = amqp_cstring_bytes(m->id);
    m->props.message_id = amqp_cstring_bytes(m->id);
    m->props.timestamp = sl_time_wall_ms() / 1000;
    bench_stamp st = {seq, mono_ns};
    memcpy(m->body, &st, sizeof st);
}

/* Publisher confirms: the highest confirmed tag (RabbitMQ confirms in
 * order; multiple covers everything up to the tag). */
typedef struct raw_pub {
    amqp_connection_state_t conn;
    uint64_t sent;  /* last tag used */
    uint64_t acked; /* confirmed up to here */
    uint64_t nacked;
} raw_pub;

/* Read one frame (waiting at most @p tv; NULL = forever); false on
 * timeout. */
static bool raw_pub_read(raw_pub *p, struct timeval *tv)
{
    amqp_frame_t f;
    int rc = amqp_simple_wait_frame_noblock(p->conn, &f, tv);
    if (rc == AMQP_STATUS_TIMEOUT) {
        return false;
    }
    if (rc != AMQP_STATUS_OK) {
        bench_die("raw publisher: %s", amqp_error_string2(rc));
    }
    if (f.frame_type != AMQP_FRAME_METHOD) {
        return true;
    }
    if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
        amqp_basic_ack_t *a = f.payload.method.decoded;
        p->acked = a->multiple ? a->delivery_tag
                               : (a->delivery_tag > p->acked ? a->delivery_tag
                                                             : p->acked);
    } else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
        amqp_basic_nack_t *a = f.payload.method.decoded;
        p->nacked++;
        p->acked = a->delivery_tag > p->acked ? a->delivery_tag : p->acked;
    } else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD ||
               f.payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
        bench_die("raw publisher: the broker closed the channel");
    }
    return true;
}

static void raw_pub_init(raw_pub *p, amqp_connection_state_t conn)
{
    memset(p, 0, sizeof *p);
    p->conn = conn;
    amqp_confirm_select(conn, 1);
    raw_die_reply(amqp_get_rpc_reply(conn), "confirm.select");
}

static void raw_pub_send(raw_pub *p, raw_msg *m)
{
    while (p->sent - p->acked >= WINDOW) {
        raw_pub_read(p, NULL);
    }
    amqp_bytes_t body = {.len = sizeof m->body, .bytes = m->body};
    int rc =
        amqp_basic_publish(p->conn, 1, amqp_cstring_bytes(g_exchange),
                           amqp_cstring_bytes(CHANNEL), 0, 0, &m->props, body);
    if (rc != AMQP_STATUS_OK) {
        bench_die("basic.publish: %s", amqp_error_string2(rc));
    }
    p->sent++;
    if ((p->sent & 31) == 0) {
        struct timeval zero = {0, 0};
        while (raw_pub_read(p, &zero)) {
        }
    }
}

static void raw_pub_drain(raw_pub *p)
{
    while (p->acked < p->sent) {
        raw_pub_read(p, NULL);
    }
}

static double raw_publish(const bench_opts *o)
{
    amqp_connection_state_t conn = raw_connect(o->url);
    raw_pub p;
    raw_pub_init(&p, conn);
    raw_msg m;
    raw_msg_init(&m);
    uint64_t t0 = sl_time_mono_ns();
    for (uint64_t i = 0; i < o->events; i++) {
        raw_msg_set(&m, i, 0);
        raw_pub_send(&p, &m);
    }
    raw_pub_drain(&p);
    uint64_t span = sl_time_mono_ns() - t0;
    if (p.nacked) {
        fprintf(stderr, "bench: raw: %" PRIu64 " publishes nacked\n", p.nacked);
    }
    raw_close(conn);
    return (double)o->events * 1e9 / (double)span;
}

/* Nothing buffered and nothing to read on the socket right now. */
static bool raw_idle(amqp_connection_state_t conn)
{
    if (amqp_data_in_buffer(conn) || amqp_frames_enqueued(conn)) {
        return false;
    }
    struct pollfd pfd = {.fd = amqp_get_sockfd(conn), .events = POLLIN};
    return poll(&pfd, 1, 0) == 0;
}

/* Consume @p n deliveries; @p lat (may be NULL) gets now - stamp per
 * sequence number below @p nlat. Returns the span in ns from basic.consume
 * to the last delivery. */
static uint64_t raw_consume_n(amqp_connection_state_t conn, uint64_t n,
                              uint64_t *lat, uint64_t nlat, _Atomic bool *stop)
{
    amqp_basic_qos(conn, 1, 0, PREFETCH, 0);
    raw_die_reply(amqp_get_rpc_reply(conn), "basic.qos");
    uint64_t t0 = sl_time_mono_ns();
    amqp_basic_consume(conn, 1, amqp_cstring_bytes(g_queue), amqp_empty_bytes,
                       0, 0, 0, amqp_empty_table);
    raw_die_reply(amqp_get_rpc_reply(conn), "basic.consume");
    uint64_t got = 0, unacked = 0, last_tag = 0, t_last = t0;
    uint64_t give_up = t0 + DRAIN_LIMIT_MS * 1000000ull;
    while (got < n && !(stop && atomic_load(stop))) {
        amqp_maybe_release_buffers(conn);
        amqp_envelope_t env;
        struct timeval tv = {0, 100000};
        amqp_rpc_reply_t r = amqp_consume_message(conn, &env, &tv, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                r.library_error == AMQP_STATUS_TIMEOUT) {
                if (sl_time_mono_ns() > give_up) {
                    bench_die("raw consumer: %" PRIu64 " of %" PRIu64
                              " after %d s",
                              got, n, DRAIN_LIMIT_MS / 1000);
                }
                continue;
            }
            if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                r.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
                amqp_frame_t f; /* a method that is not a delivery */
                if (amqp_simple_wait_frame(conn, &f) != AMQP_STATUS_OK) {
                    bench_die("raw consumer: connection lost");
                }
                continue;
            }
            bench_die("raw consumer: consume_message failed");
        }
        uint64_t now = sl_time_mono_ns();
        if (lat != NULL && env.message.body.len >= sizeof(bench_stamp)) {
            bench_stamp st;
            memcpy(&st, env.message.body.bytes, sizeof st);
            if (st.seq < nlat) {
                lat[st.seq] = now - st.mono_ns;
            }
        }
        last_tag = env.delivery_tag;
        got++;
        unacked++;
        t_last = now;
        amqp_destroy_envelope(&env);
        /* Ack with multiple, as a careful user does: every ACK_EVERY, or
         * when no more deliveries are waiting (nothing buffered, nothing
         * readable on the socket). */
        if (unacked >= ACK_EVERY || raw_idle(conn)) {
            amqp_basic_ack(conn, 1, last_tag, 1);
            unacked = 0;
        }
    }
    if (unacked) {
        amqp_basic_ack(conn, 1, last_tag, 1);
    }
    return t_last - t0;
}

static double raw_consume(const bench_opts *o)
{
    amqp_connection_state_t conn = raw_connect(o->url);
    uint64_t span = raw_consume_n(conn, o->events, NULL, 0, NULL);
    raw_close(conn);
    return (double)o->events * 1e9 / (double)span;
}

/* ---- sluice ----------------------------------------------------------------
 */

static void sluice_url(const bench_opts *o, char *buf, size_t size)
{
    snprintf(buf, size, "%s?ns=%s", o->url, g_ns);
}

static sl_engine *sluice_open(const bench_opts *o)
{
    char url[512];
    sl_diag diag = {0};
    sl_engine *eng = NULL;
    sluice_url(o, url, sizeof url);
    bench_check(sl_engine_open(url, NULL, &eng, &diag), "sl_engine_open",
                &diag);
    return eng;
}

static double sluice_publish(const bench_opts *o)
{
    sl_engine *eng = sluice_open(o);
    sl_producer *prod = NULL;
    sl_producer_opts po = {.max_in_flight = WINDOW};
    bench_check(sl_producer_create(eng, &po, &prod), "producer", NULL);
    /* The exchange lookup is cached after the first publish: warm it. */
    uint64_t refused = 0;
    uint64_t t0 = sl_time_mono_ns();
    for (uint64_t i = 0; i < o->events; i++) {
        sl_event *ev = bench_event(i, 0);
        sl_status st = sl_producer_publish_async(prod, CHANNEL, ev, NULL, NULL);
        sl_event_unref(ev);
        if (st != SL_OK) {
            refused++;
        }
    }
    bench_check(sl_producer_flush(prod, DRAIN_LIMIT_MS), "flush", NULL);
    uint64_t span = sl_time_mono_ns() - t0;
    sl_producer_stats ps;
    sl_producer_get_stats(prod, &ps);
    if (refused || ps.failed) {
        bench_die("sluice publish: %" PRIu64 " refused, %" PRIu64 " failed",
                  refused, ps.failed);
    }
    sl_producer_destroy(prod);
    sl_engine_close(eng);
    return (double)o->events * 1e9 / (double)span;
}

typedef struct sl_count {
    _Atomic uint64_t handled;
    _Atomic uint64_t last_ns;
    uint64_t *lat;
    uint64_t nlat;
} sl_count;

static sl_outcome count_handler(sl_handler_ctx *ctx, void *user)
{
    sl_count *c = user;
    uint64_t now = sl_time_mono_ns();
    if (c->lat != NULL) {
        bench_stamp st;
        if (bench_event_stamp(sl_handler_event(ctx), &st) && st.seq < c->nlat) {
            c->lat[st.seq] = now - st.mono_ns;
        }
    }
    atomic_store_explicit(&c->last_ns, now, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->handled, 1, memory_order_release);
    return SL_OUTCOME_ACK;
}

static sl_consumer *sluice_consumer(sl_engine *eng, sl_count *c)
{
    sl_diag diag = {0};
    sl_consumer *cons = NULL;
    sl_consumer_opts co = {
        .channel = CHANNEL,
        .group = GROUP,
        .prefetch = PREFETCH,
        .concurrency = 1,
        .handler = count_handler,
        .handler_ctx = c,
        .service = "bench",
    };
    bench_check(sl_consumer_create(eng, &co, &cons, &diag), "consumer", &diag);
    return cons;
}

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

static double sluice_consume(const bench_opts *o)
{
    sl_engine *eng = sluice_open(o);
    sl_count c = {0};
    sl_consumer *cons = sluice_consumer(eng, &c);
    uint64_t t0 = sl_time_mono_ns();
    bench_check(sl_consumer_start(cons), "consumer start", NULL);
    if (!wait_count(&c.handled, o->events)) {
        bench_die("sluice consumer: %" PRIu64 " of %" PRIu64 " handled",
                  (uint64_t)atomic_load(&c.handled), o->events);
    }
    uint64_t span = atomic_load(&c.last_ns) - t0;
    sl_consumer_stop(cons, 5000);
    sl_consumer_destroy(cons);
    sl_engine_close(eng);
    return (double)o->events * 1e9 / (double)span;
}

/* ---- latency at a fixed rate
 * ------------------------------------------------- */

typedef struct lat_run {
    const bench_opts *o;
    uint64_t n;
    uint64_t period_ns;
    uint64_t *lat;
    _Atomic bool stop;
    sl_producer *prod; /* sluice */
} lat_run;

static void *raw_lat_consume(void *arg)
{
    lat_run *r = arg;
    amqp_connection_state_t conn = raw_connect(r->o->url);
    raw_consume_n(conn, r->n, r->lat, r->n, &r->stop);
    raw_close(conn);
    return NULL;
}

static void lat_result(lat_run *r, sample *s)
{
    uint64_t warm = r->n / 5; /* the first fifth is warm-up */
    uint64_t *v = r->lat + warm;
    size_t k = 0;
    for (uint64_t i = warm; i < r->n; i++) {
        if (r->lat[i] != UINT64_MAX) {
            v[k++] = r->lat[i];
        }
    }
    qsort(v, k, sizeof *v, bench_cmp_u64);
    s->counted = k;
    s->p50_ns = bench_percentile(v, k, 50);
    s->p99_ns = bench_percentile(v, k, 99);
}

static void lat_init(lat_run *r, const bench_opts *o)
{
    memset(r, 0, sizeof *r);
    r->o = o;
    r->n = (uint64_t)(o->lat_rate * o->lat_seconds);
    r->period_ns = (uint64_t)(1e9 / o->lat_rate);
    r->lat = malloc(r->n * sizeof *r->lat);
    if (r->lat == NULL) {
        bench_die("out of memory");
    }
    memset(r->lat, 0xff, r->n * sizeof *r->lat);
}

static void raw_latency(const bench_opts *o, sample *s)
{
    lat_run r;
    lat_init(&r, o);
    pthread_t th;
    if (pthread_create(&th, NULL, raw_lat_consume, &r) != 0) {
        bench_die("thread");
    }
    bench_sleep_ms(200); /* the consumer is subscribed */
    amqp_connection_state_t conn = raw_connect(o->url);
    raw_pub p;
    raw_pub_init(&p, conn);
    raw_msg m;
    raw_msg_init(&m);
    uint64_t start = sl_time_mono_ns() + 1000000;
    for (uint64_t i = 0; i < r.n; i++) {
        uint64_t sched = start + i * r.period_ns;
        /* Read confirms while waiting for the next slot. */
        for (;;) {
            uint64_t now = sl_time_mono_ns();
            if (now >= sched) {
                break;
            }
            uint64_t us = (sched - now) / 1000;
            struct timeval tv = {(time_t)(us / 1000000),
                                 (suseconds_t)(us % 1000000)};
            if (p.acked < p.sent) {
                raw_pub_read(&p, &tv);
            } else {
                bench_sleep_until_ns(sched);
            }
        }
        raw_msg_set(&m, i, sched);
        raw_pub_send(&p, &m);
    }
    raw_pub_drain(&p);
    raw_close(conn);
    pthread_join(th, NULL);
    lat_result(&r, s);
    free(r.lat);
}

static void sluice_latency(const bench_opts *o, sample *s)
{
    lat_run r;
    lat_init(&r, o);
    sl_engine *eng = sluice_open(o);
    sl_count c = {.lat = r.lat, .nlat = r.n};
    sl_consumer *cons = sluice_consumer(eng, &c);
    bench_check(sl_consumer_start(cons), "consumer start", NULL);
    sl_producer *prod = NULL;
    sl_producer_opts po = {.max_in_flight = WINDOW};
    bench_check(sl_producer_create(eng, &po, &prod), "producer", NULL);
    bench_sleep_ms(200);
    uint64_t start = sl_time_mono_ns() + 1000000;
    for (uint64_t i = 0; i < r.n; i++) {
        uint64_t sched = start + i * r.period_ns;
        if (sl_time_mono_ns() < sched) {
            bench_sleep_until_ns(sched);
        }
        sl_event *ev = bench_event(i, sched);
        bench_check(sl_producer_publish_async(prod, CHANNEL, ev, NULL, NULL),
                    "publish", NULL);
        sl_event_unref(ev);
    }
    bench_check(sl_producer_flush(prod, DRAIN_LIMIT_MS), "flush", NULL);
    if (!wait_count(&c.handled, r.n)) {
        bench_die("sluice latency run did not drain");
    }
    sl_consumer_stop(cons, 5000);
    sl_consumer_destroy(cons);
    sl_producer_destroy(prod);
    sl_engine_close(eng);
    lat_result(&r, s);
    free(r.lat);
}

/* ---- children
 * ----------------------------------------------------------------- */

enum client { RAW, SLUICE, AIO, PIKA, NCLIENTS };
static const char *client_name[NCLIENTS] = {"raw rabbitmq-c", "sluice",
                                            "aio-pika", "pika"};

typedef enum job { JOB_SETUP, JOB_CLEANUP, JOB_THROUGHPUT, JOB_LATENCY } job;

static void setup_topology(const bench_opts *o)
{
    sl_engine *eng = sluice_open(o);
    sl_diag diag = {0};
    sl_channel_opts co = {.name = CHANNEL};
    bench_check(sl_engine_declare_channel(eng, &co, &diag), "declare channel",
                &diag);
    sl_group_opts go = {.channel = CHANNEL, .name = GROUP};
    bench_check(sl_engine_declare_group(eng, &go, &diag), "declare group",
                &diag);
    sl_engine_close(eng);
}

static void cleanup_topology(const bench_opts *o)
{
    amqp_connection_state_t conn = raw_connect(o->url);
    char dlx[300], dlq[320];
    snprintf(dlx, sizeof dlx, "sluice/%s/%s.%s.dlq", g_ns, CHANNEL, GROUP);
    snprintf(dlq, sizeof dlq, "%s/dlq", dlx);
    const char *queues[2] = {g_queue, dlq};
    const char *xs[2] = {g_exchange, dlx};
    for (int i = 0; i < 2; i++) {
        amqp_queue_delete(conn, 1, amqp_cstring_bytes(queues[i]), 0, 0);
        raw_die_reply(amqp_get_rpc_reply(conn), "queue.delete");
        amqp_exchange_delete(conn, 1, amqp_cstring_bytes(xs[i]), 0);
        raw_die_reply(amqp_get_rpc_reply(conn), "exchange.delete");
    }
    raw_close(conn);
}

/* CPU time of this process (every thread), user + system, in us. A
 * shared machine's load moves throughput a lot more than the work each
 * event costs the client: the CPU per event compares clients steadily. */
static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static void child_run(const bench_opts *o, job j, enum client c, sample *s)
{
    switch (j) {
    case JOB_SETUP:
        setup_topology(o);
        break;
    case JOB_CLEANUP:
        cleanup_topology(o);
        break;
    case JOB_THROUGHPUT: {
        double t0 = cpu_us();
        s->pub_per_s = c == RAW ? raw_publish(o) : sluice_publish(o);
        double t1 = cpu_us();
        s->con_per_s = c == RAW ? raw_consume(o) : sluice_consume(o);
        double t2 = cpu_us();
        s->pub_cpu_us = (t1 - t0) / (double)o->events;
        s->con_cpu_us = (t2 - t1) / (double)o->events;
        break;
    }
    case JOB_LATENCY:
        if (c == RAW) {
            raw_latency(o, s);
        } else {
            sluice_latency(o, s);
        }
        break;
    }
    s->rss_kb = bench_proc_status_kb("VmHWM");
    s->ok = 1;
}

/* Run a job in a child process; its report, or ok = 0 on failure. */
static sample run_child(const bench_opts *o, job j, enum client c)
{
    sample s = {0};
    int fd[2];
    if (pipe(fd) != 0) {
        bench_die("pipe");
    }
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        bench_die("fork");
    }
    if (pid == 0) {
        close(fd[0]);
        child_run(o, j, c, &s);
        ssize_t w = write(fd[1], &s, sizeof s);
        _exit(w == (ssize_t)sizeof s ? 0 : 3);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], &s, sizeof s);
    close(fd[0]);
    int wst = 0;
    waitpid(pid, &wst, 0);
    if (got != (ssize_t)sizeof s || !WIFEXITED(wst) || WEXITSTATUS(wst) != 0) {
        memset(&s, 0, sizeof s);
    }
    return s;
}

/* The Python service: one line "pub_per_s con_per_s rss_kb" or, for
 * latency, "lat p50_ns p99_ns counted rss_kb". */
static sample run_python(const bench_opts *o, enum client c, bool latency)
{
    sample s = {0};
    char cmd[2048];
    snprintf(cmd, sizeof cmd,
             PY " %s --client %s --mode %s --url '%s' --exchange '%s' "
                "--routing-key %s --queue '%s' --events %" PRIu64
                " --window %d --prefetch %d --rate %.0f --seconds %.1f",
             o->pika, c == AIO ? "aio-pika" : "pika",
             latency ? "latency" : "throughput", o->url, g_exchange, CHANNEL,
             g_queue, c == AIO ? o->py_events : o->pika_events, WINDOW,
             PREFETCH, o->lat_rate, o->lat_seconds);
    fflush(stdout);
    FILE *p = popen(cmd, "r");
    if (p == NULL) {
        return s;
    }
    char line[256] = "";
    while (fgets(line, sizeof line, p) != NULL) {
        if (latency) {
            unsigned long long p50, p99, n;
            unsigned long rss;
            if (sscanf(line, "lat %llu %llu %llu %lu", &p50, &p99, &n, &rss) ==
                4) {
                s.p50_ns = p50;
                s.p99_ns = p99;
                s.counted = n;
                s.rss_kb = rss;
                s.ok = 1;
            }
        } else if (sscanf(line, "tp %lf %lf %lu", &s.pub_per_s, &s.con_per_s,
                          &s.rss_kb) == 3) {
            s.ok = 1;
        }
    }
    if (pclose(p) != 0) {
        s.ok = 0;
    }
    return s;
}

/* ---- main
 * ---------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr, "usage: amqp_bench [--quick] [--url URL] [--rounds N] "
                    "[--events N]\n"
                    "                  [--python-events N] [--latency-rate R]\n"
                    "                  [--latency-seconds S] [--pika PATH] "
                    "[--summary FILE]\n");
    exit(2);
}

static double ratio(double a, double b)
{
    return b > 0 ? a / b : 0;
}

int main(int argc, char **argv)
{
    bench_opts o = {
        .url =
            getenv("SLUICE_AMQP_URL") ? getenv("SLUICE_AMQP_URL") : DEFAULT_URL,
        .rounds = 3,
        .events = 30000,
        .py_events = 6000,
        .pika_events = 1500,
        .lat_rate = 2000,
        .lat_seconds = 3,
    };
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(arg, "--quick") == 0) {
            o.rounds = 2;
            o.events = 10000;
            o.py_events = 2000;
            o.pika_events = 500;
            o.lat_seconds = 1.5;
            continue;
        }
        if (val == NULL) {
            usage();
        }
        i++;
        if (strcmp(arg, "--url") == 0) {
            o.url = val;
        } else if (strcmp(arg, "--rounds") == 0) {
            o.rounds = (unsigned)strtoul(val, NULL, 10);
        } else if (strcmp(arg, "--events") == 0) {
            o.events = strtoull(val, NULL, 10);
        } else if (strcmp(arg, "--python-events") == 0) {
            o.py_events = strtoull(val, NULL, 10);
            o.pika_events = o.py_events / 4 ? o.py_events / 4 : 1;
        } else if (strcmp(arg, "--latency-rate") == 0) {
            o.lat_rate = atof(val);
        } else if (strcmp(arg, "--latency-seconds") == 0) {
            o.lat_seconds = atof(val);
        } else if (strcmp(arg, "--pika") == 0) {
            o.pika = val;
        } else if (strcmp(arg, "--summary") == 0) {
            o.summary_path = val;
        } else {
            usage();
        }
    }
    if (o.rounds < 1 || o.rounds > 16 || o.events < 1 || o.lat_rate <= 0 ||
        o.lat_seconds <= 0) {
        usage();
    }
    if (o.pika != NULL && access(o.pika, R_OK) != 0) {
        bench_die("%s not found", o.pika);
    }
    snprintf(g_ns, sizeof g_ns, "bench%ld", (long)getpid());
    snprintf(g_exchange, sizeof g_exchange, "sluice/%s/%s", g_ns, CHANNEL);
    snprintf(g_queue, sizeof g_queue, "sluice/%s/%s/%s", g_ns, CHANNEL, GROUP);
    signal(SIGPIPE, SIG_IGN);

    if (!run_child(&o, JOB_SETUP, RAW).ok) {
        bench_die("cannot declare the topology on %s", o.url);
    }
    int nclients = o.pika != NULL ? NCLIENTS : 2;
    printf("== RabbitMQ: sluice vs raw rabbitmq-c vs Python (%s) ==\n",
           o.pika ? "aio-pika, pika" : "skipped: no --pika");
    printf("persistent %u-byte events with CloudEvents headers, one quorum "
           "queue, confirm window %d, prefetch %d\n",
           BENCH_DATA_BYTES, WINDOW, PREFETCH);
    printf("events per sample: raw and sluice %" PRIu64 ", aio-pika %" PRIu64
           ", pika %" PRIu64 "; %u rounds, clients alternating\n",
           o.events, o.py_events, o.pika_events, o.rounds);
    printf("publish = first publish to last confirm; consume = basic.consume "
           "to last delivery handled (acked)\n\n");
    printf("%-6s %-16s %14s %14s %10s %8s %8s\n", "round", "client",
           "publish ev/s", "consume ev/s", "peak RSS", "pub us", "con us");

    double pub[NCLIENTS][16], con[NCLIENTS][16];
    double pcpu[NCLIENTS][16] = {{0}}, ccpu[NCLIENTS][16] = {{0}};
    unsigned long rss[NCLIENTS] = {0};
    char a[32], b[32];
    for (unsigned r = 0; r < o.rounds; r++) {
        for (int c = 0; c < nclients; c++) {
            sample s = c <= SLUICE ? run_child(&o, JOB_THROUGHPUT, c)
                                   : run_python(&o, c, false);
            if (!s.ok) {
                bench_die("%s: the sample failed", client_name[c]);
            }
            pub[c][r] = s.pub_per_s;
            con[c][r] = s.con_per_s;
            pcpu[c][r] = s.pub_cpu_us;
            ccpu[c][r] = s.con_cpu_us;
            rss[c] = s.rss_kb > rss[c] ? s.rss_kb : rss[c];
            printf("%-6u %-16s %14s %14s %7lu MB %8.1f %8.1f\n", r + 1,
                   client_name[c], bench_fmt_count(s.pub_per_s, a),
                   bench_fmt_count(s.con_per_s, b), s.rss_kb / 1024,
                   s.pub_cpu_us, s.con_cpu_us);
            fflush(stdout);
        }
    }
    double mpub[NCLIENTS], mcon[NCLIENTS];
    printf("\nmedians:\n");
    for (int c = 0; c < nclients; c++) {
        mpub[c] = bench_median(pub[c], o.rounds);
        mcon[c] = bench_median(con[c], o.rounds);
        printf("%-6s %-16s %14s %14s %7lu MB\n", "", client_name[c],
               bench_fmt_count(mpub[c], a), bench_fmt_count(mcon[c], b),
               rss[c] / 1024);
    }
    double pub_ratio = ratio(mpub[SLUICE], mpub[RAW]);
    double con_ratio = ratio(mcon[SLUICE], mcon[RAW]);
    printf("\nsluice / raw: publish %.2f, consume %.2f (target >= 0.90 each)\n",
           pub_ratio, con_ratio);
    double mpc[2], mcc[2];
    for (int c = 0; c < 2; c++) {
        mpc[c] = bench_median(pcpu[c], o.rounds);
        mcc[c] = bench_median(ccpu[c], o.rounds);
    }
    printf("client CPU per event (median, us): publish raw %.1f sluice %.1f "
           "(raw / sluice %.2f), consume raw %.1f sluice %.1f (raw / sluice "
           "%.2f)\n",
           mpc[RAW], mpc[SLUICE], ratio(mpc[RAW], mpc[SLUICE]), mcc[RAW],
           mcc[SLUICE], ratio(mcc[RAW], mcc[SLUICE]));
    double aio_ratio = 0;
    if (nclients > AIO) {
        aio_ratio = ratio(mcon[SLUICE], mcon[AIO]);
        printf("sluice / aio-pika: publish %.1fx, consume %.1fx (consume "
               "target >= 10x); sluice / pika: publish %.0fx, consume "
               "%.1fx\n",
               ratio(mpub[SLUICE], mpub[AIO]), aio_ratio,
               ratio(mpub[SLUICE], mpub[PIKA]),
               ratio(mcon[SLUICE], mcon[PIKA]));
    }

    printf("\n== latency at %.0f events/s for %.1f s (first fifth not "
           "counted); delivery handled - scheduled send ==\n",
           o.lat_rate, o.lat_seconds);
    printf("%-16s %10s %10s %10s %10s\n", "client", "events", "p50 us",
           "p99 us", "peak RSS");
    sample lat[NCLIENTS] = {{0}};
    for (int c = 0; c < nclients && c <= AIO; c++) {
        lat[c] = c <= SLUICE ? run_child(&o, JOB_LATENCY, c)
                             : run_python(&o, c, true);
        if (!lat[c].ok) {
            bench_die("%s: the latency run failed", client_name[c]);
        }
        printf("%-16s %10" PRIu64 " %10.0f %10.0f %7lu MB\n", client_name[c],
               lat[c].counted, (double)lat[c].p50_ns / 1e3,
               (double)lat[c].p99_ns / 1e3, lat[c].rss_kb / 1024);
        fflush(stdout);
    }
    printf("\n");
    if (!run_child(&o, JOB_CLEANUP, RAW).ok) {
        fprintf(stderr, "bench: could not delete the benchmark queues\n");
    }

    bench_summary sum = {0};
    char v[32], rt[16];
    snprintf(v, sizeof v, "%.2f", pub_ratio);
    snprintf(rt, sizeof rt, "%.2f", pub_ratio / 0.9);
    bench_summary_add(&sum, "amqp publish sluice / raw", v, ">= 0.90", rt);
    snprintf(v, sizeof v, "%.2f", con_ratio);
    snprintf(rt, sizeof rt, "%.2f", con_ratio / 0.9);
    bench_summary_add(&sum, "amqp consume sluice / raw", v, ">= 0.90", rt);
    bench_summary_add(&sum, "amqp publish sluice (ev/s)",
                      bench_fmt_count(mpub[SLUICE], a), "", "");
    bench_summary_add(&sum, "amqp consume sluice (ev/s)",
                      bench_fmt_count(mcon[SLUICE], a), "", "");
    if (nclients > AIO) {
        snprintf(v, sizeof v, "%.1fx", aio_ratio);
        snprintf(rt, sizeof rt, "%.2f", aio_ratio / 10);
        bench_summary_add(&sum, "amqp consume sluice / aio-pika", v, ">= 10x",
                          rt);
    }
    snprintf(v, sizeof v, "%.0f / %.0f", (double)lat[SLUICE].p50_ns / 1e3,
             (double)lat[SLUICE].p99_ns / 1e3);
    char fig[64];
    snprintf(fig, sizeof fig, "amqp latency sluice p50 / p99 (us)");
    bench_summary_add(&sum, fig, v, "", "");
    snprintf(v, sizeof v, "%lu MB", rss[SLUICE] / 1024);
    bench_summary_add(&sum, "amqp peak RSS sluice", v, "", "");
    bench_summary_finish(&sum, o.summary_path);
    return 0;
}
