/* The RabbitMQ engine ("amqp://user:pass@host:port/vhost"), on rabbitmq-c.
 *
 * Mapping (docs/engines/rabbitmq.md):
 *
 *   channel  -> a durable topic exchange "sluice/[NS/]<channel>"; events
 *               are published with routing key <channel>, persistent,
 *               mandatory, in confirm mode.
 *   group    -> a durable quorum queue "sluice/[NS/]<channel>/<group>"
 *               bound with "#": x-delivery-limit (crash-loop backstop),
 *               x-dead-letter-exchange = the dead-letter channel's
 *               exchange, x-max-length / x-max-length-bytes + x-overflow
 *               reject-publish when the channel has max_length /
 *               max_bytes (a nack is SL_FULL).
 *   retry    -> per delay a durable queue ".../<group>/retry/<ms>" with
 *               x-message-ttl = the delay that dead-letters back to the
 *               group's queue (default exchange, routing key = its name).
 *   event    -> CloudEvents binary mode: "cloudEvents:" headers, data as
 *               the body, content_type = datacontenttype; plain AMQP
 *               properties (message_id, type, timestamp, app_id,
 *               correlation_id, content_type) are read when there are no
 *               cloudEvents: headers.
 *
 * Threads. rabbitmq-c is blocking and not thread-safe: one I/O thread owns
 * the connection. Callers hand it requests through a bounded queue
 * (publishes, acks and nacks, and synchronous calls that run a function on
 * the I/O thread while the caller waits) and wake it through a pipe. The
 * I/O thread polls the socket and the pipe; deliveries are buffered per
 * subscription (at most its prefetch, which basic.qos enforces) and
 * handed out by fetch on the caller's thread. Publish confirms are called
 * on the I/O thread, which is the engine's own. A lost connection is
 * re-established by the I/O thread with jittered exponential backoff; it
 * declares the topology again and resubscribes (docs: "Reconnect").
 *
 * AMQP channels: 1 publishes (confirm mode), 2 runs declarations, passive
 * declares and browsing; each subscription has its own channel with
 * basic.qos = its prefetch.
 *
 * Attempts. A quorum queue counts every return of a delivery
 * (x-delivery-count): crashes and closed subscriptions, but also releases,
 * which sluice does not count. The engine remembers, per queue and message
 * uid (header x-sluice-uid), how many deliveries it released and subtracts
 * them; a retry republishes the event with its attempts so far in
 * x-sluice-attempts. attempt = x-sluice-attempts + x-delivery-count + 1 -
 * released.
 */
#include "core/secret.h"
#include "core/waiter.h"
#include "engine/amqp_topology.h"
#include "engine/dedup.h"
#include "engine/driver.h"
#include "engine/track.h"
#include "sluice/alloc.h"
#include "sluice/log.h"
#include "sluice/queue.h"

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PREFETCH 10
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_DEDUP_WINDOW_MS 120000
#define DEDUP_MAX_IDS 200000
#define API_WAIT_MS 5000
#define PUB_MAX_PENDING 4096 /* publishes queued or awaiting a confirm */
#define REQ_CAPACITY 8192
#define RETURN_SETTLE_MS 100 /* see await_returns() */
#define FETCH_LINGER_MS 2    /* see amqp_fetch() */
#define DEPTH_TRIES 5        /* see do_depth() */
#define RECONNECT_MIN_MS 100 /* first reconnect delay, doubled per failure */
#define RECONNECT_MAX_MS 10000
#define CONNECT_TIMEOUT_S 5 /* TCP connect, and the login handshake */
#define DEFAULT_HEARTBEAT_S 10
#define WATCHDOG_TICK_MS 200
#define PUB_CH 1
#define ADMIN_CH 2
#define FIRST_SUB_CH 3
#define FRAME_MAX 131072
#define CE_PREFIX "cloudEvents:"
#define H_UID "x-sluice-uid"
#define H_ATTEMPTS "x-sluice-attempts"
#define H_DELIVERY_COUNT "x-delivery-count"
#define ROOT "sluice"
#define LOG "engine.amqp"

typedef struct amqp_engine amqp_engine;
typedef struct asub asub;

/* A channel this engine knows. */
typedef struct achan {
    char *name;
    char *exchange;
    uint64_t max_length;
    uint64_t max_bytes;
    bool declared_here; /* max_length and max_bytes are known */
    struct achan *next;
} achan;

/* A group this engine declared: its max_attempts and the retry delays it
 * used (for depth's "delayed"). */
typedef struct agroup {
    char *queue;
    char *channel;
    uint32_t max_attempts;
    uint64_t delays[16];
    size_t ndelays;
    struct agroup *next;
} agroup;

typedef struct hdr {
    char *name;
    char *value;
} hdr;

typedef struct apub apub;

enum req_kind {
    REQ_PUBLISH,
    REQ_ACK,
    REQ_ACK_MULTIPLE, /* every unacked delivery up to tag, on ch */
    REQ_NACK,
    REQ_CANCEL,
    REQ_CALL
};

typedef struct acall {
    sl_status (*fn)(amqp_engine *e, void *arg);
    void *arg;
    sl_status st;
    bool done;
    bool always; /* runs while disconnected too (fn copes) */
} acall;

/* A request to the I/O thread. A publish's is part of its apub. */
typedef struct areq {
    enum req_kind kind;
    uint16_t ch;
    uint64_t tag;
    uint32_t gen; /* acks and nacks: the deliveries' generation */
    apub *pub;
    acall *call;
} areq;

/* A publish on its way: built on the caller's thread, sent by the I/O
 * thread, kept until its confirm. One allocation: the record, its request
 * to the I/O thread, the header table and every string and the body
 * after it (pub_build); one free. */
struct apub {
    areq req;
    char *exchange;
    char *rkey;
    void *body;
    size_t body_len;
    hdr *hdrs;
    size_t nhdrs;
    char *content_type, *message_id, *type, *app_id, *correlation_id;
    uint64_t timestamp_s;
    uint64_t uid;
    uint32_t attempts;
    bool mandatory;
    bool returned;
    uint64_t tag;
    achan *chan; /* for dedup; NULL when not deduplicated */
    char *dedup_id;
    sl_publish_cb cb;
    void *ctx;
    struct apub *next;
};

typedef struct adelivery {
    sl_delivery base;
    asub *sub;
    uint16_t ch;
    uint64_t tag;
    uint64_t uid;
    uint32_t delivery_count;
    uint32_t base_attempts;
    uint32_t gen; /* connection it came on (asub.gen) */
    struct adelivery *prev, *next;
} adelivery;

struct asub {
    sl_subscription base;
    amqp_engine *eng;
    char *channel;
    char *group;
    char *queue;
    uint64_t qkey;
    uint16_t ch;
    char *ctag; /* consumer tag */
    uint32_t prefetch;
    uint32_t max_attempts;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    adelivery *buf_head, *buf_tail; /* received, not fetched */
    uint32_t nbuf;
    adelivery *flight; /* fetched, not settled */
    uint32_t nflight;
    /* Deliveries out of the buffer and the flight list whose ack or nack
     * is not sent yet (a fetch dead-lettering them, a retry republishing
     * them): while any exists, ack_many sends no multiple ack. */
    uint32_t nlimbo;
    bool dead;      /* the AMQP channel closed */
    bool cancelled; /* basic.cancel sent (I/O thread, under eng->mu) */
    bool arrived;   /* deliveries buffered since the last wake-up */
    bool down;      /* no channel on the current connection (yet) */
    uint32_t gen;   /* generation of its channel (connection, rebind) */
    _Atomic bool cancel_asked; /* the interrupt queued REQ_CANCEL */
    _Atomic bool interrupted;
    /* Consumer cancelled by the broker (basic.cancel: its queue was
     * deleted, or the queue could not keep it): subscribe again, at
     * rebind_at_ms, then with backoff (I/O thread only). */
    bool rebind;
    bool rebind_warned; /* the first failure is logged, not every one */
    bool ch_closed;     /* no open AMQP channel on this connection */
    uint64_t rebind_at_ms;
    uint32_t rebind_delay_ms;
    asub *next;
};

/* key: the queue; id: the message's uid. */
typedef sl_track track;

/* A queue this engine declared, to declare again after a reconnect. */
typedef struct aqueue {
    char *queue;
    char *exchange;
    char *dlx; /* or NULL */
    uint32_t delivery_limit;
    uint64_t max_length;
    uint64_t max_bytes;
    struct aqueue *next;
} aqueue;

struct amqp_engine {
    sl_engine base;
    sl_engine_opts opts;
    const sl_clock *clock;
    char *ns;
    char *host;
    char *server; /* the URL without its query: credentials, never logged */
    amqp_connection_state_t conn; /* NULL while disconnected */
    int wake[2];

    pthread_mutex_t mu;
    pthread_cond_t cv; /* calls done, pending confirms drained */
    achan *chans;
    agroup *groups;
    asub *subs;
    sl_dedup *dedup;
    sl_track_table tracks;   /* remembered released deliveries */
    uint32_t npending;       /* publishes queued or unconfirmed */
    bool blocked;            /* connection.blocked */
    bool dead;               /* disconnected: lost, or not yet reconnected */
    bool io_exited;          /* the I/O thread is gone */
    uint32_t gen;     /* +1 per connect and per resubscription */
    uint32_t nrebind; /* subscriptions with rebind set (I/O thread) */
    aqueue *queues;          /* declared here, for re-declaration */
    uint64_t last_return_ms; /* mono: last nack with requeue sent */
    bool stopping;
    uint64_t stop_by_ms; /* mono: close waits for confirms until then */
    uint16_t next_ch;
    uint64_t uid_state;

    /* I/O thread only. */
    apub *unconf_head, *unconf_tail;
    uint64_t next_tag;
    uint64_t rng; /* reconnect jitter */

    sl_queue *reqs;
    pthread_t io_thread;
    bool io_started;
    _Atomic bool io_sleeping; /* in poll, or about to be: see push_req */

    /* Heartbeats (docs: "Heartbeats"). The I/O thread notes when it starts
     * writing to a socket and when it is done; the watchdog thread shuts
     * the socket down when a write has made no progress for a heartbeat
     * interval (a broker that stopped reading), which wakes the I/O
     * thread from a write rabbitmq-c would wait on forever. */
    uint16_t heartbeat_s;        /* asked for (URL); 0 = off */
    uint16_t hb_now_s;           /* negotiated on this connection (mu) */
    int io_fd;                   /* the connection's socket or -1 (mu) */
    _Atomic uint64_t send_since; /* mono ms a write began; 0 = none */
    pthread_t wd_thread;
    pthread_cond_t wd_cv; /* with mu: the watchdog stops */
    bool wd_started;
    bool wd_stop;
    uint64_t wd_progress_ms; /* watchdog: last progress seen (mu) */

    /* TLS and credentials (URL parameters). */
    bool tls;
    char *cacert, *cert, *key; /* file paths */
    enum { VERIFY_FULL, VERIFY_PEER, VERIFY_NONE } verify;
    bool verify_set;
    char *user_ref;     /* user=: a name, env:NAME or file:PATH */
    char *password_ref; /* password=: env:NAME or file:PATH */
};

/* ---- small helpers ----------------------------------------------------------
 */

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = s; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    return h ? h : 1;
}

/* a + b + c + d, freshly allocated. */
static char *cat4(const char *a, const char *b, const char *c, const char *d)
{
    size_t la = strlen(a), lb = strlen(b), lc = strlen(c), ld = strlen(d);
    char *s = sl_malloc(la + lb + lc + ld + 1);
    if (s != NULL) {
        memcpy(s, a, la);
        memcpy(s + la, b, lb);
        memcpy(s + la + lb, c, lc);
        memcpy(s + la + lb + lc, d, ld);
        s[la + lb + lc + ld] = '\0';
    }
    return s;
}

static char *exchange_name(amqp_engine *e, const char *channel)
{
    return cat4(ROOT "/", e->ns ? e->ns : "", e->ns ? "/" : "", channel);
}

static char *queue_name(amqp_engine *e, const char *channel, const char *group)
{
    char *x = exchange_name(e, channel);
    if (x == NULL) {
        return NULL;
    }
    char *q = cat4(x, "/", group, "");
    sl_free(x);
    return q;
}

static amqp_bytes_t bytes_of(const char *s)
{
    return amqp_cstring_bytes(s);
}

static char *dup_bytes(amqp_bytes_t b)
{
    return sl_strndup(b.bytes ? (const char *)b.bytes : "", b.len);
}

/* @p b as a C string: in @p buf when it fits, else allocated (NULL when
 * out of memory). Free with cstr_free(). */
static char *bytes_cstr(amqp_bytes_t b, char *buf, size_t size)
{
    if (b.len >= size) {
        return dup_bytes(b);
    }
    if (b.len > 0) {
        memcpy(buf, b.bytes, b.len);
    }
    buf[b.len] = '\0';
    return buf;
}

static void cstr_free(char *s, const char *buf)
{
    if (s != buf) {
        sl_free(s);
    }
}

static uint64_t next_uid(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    /* xorshift64*: unique enough to tell a queue's messages apart. */
    uint64_t x = e->uid_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    e->uid_state = x;
    pthread_mutex_unlock(&e->mu);
    return x * 2685821657736338717ULL;
}

static void wake_io(amqp_engine *e)
{
    char c = 1;
    ssize_t r = write(e->wake[1], &c, 1);
    (void)r; /* a full pipe already wakes the thread */
}

static sl_status from_reply(amqp_rpc_reply_t r, uint16_t *code)
{
    *code = 0;
    switch (r.reply_type) {
    case AMQP_RESPONSE_NORMAL:
        return SL_OK;
    case AMQP_RESPONSE_SERVER_EXCEPTION:
        if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
            *code = ((amqp_channel_close_t *)r.reply.decoded)->reply_code;
            if (*code == AMQP_NOT_FOUND) {
                return SL_NOT_FOUND;
            }
            if (*code == AMQP_PRECONDITION_FAILED) {
                return SL_CONFIG;
            }
            return SL_IO;
        }
        return SL_UNAVAILABLE;
    case AMQP_RESPONSE_LIBRARY_EXCEPTION:
        return r.library_error == AMQP_STATUS_TIMEOUT ? SL_TIMEOUT
                                                      : SL_UNAVAILABLE;
    default:
        return SL_IO;
    }
}

/* ---- the memory of released deliveries -------------------------------------
 */

static track *track_find(amqp_engine *e, uint64_t key, uint64_t uid,
                         bool create)
{
    return sl__track_find(&e->tracks, key, uid, create);
}

static void track_release(amqp_engine *e, uint64_t key, uint64_t uid)
{
    if (uid == 0) {
        return;
    }
    pthread_mutex_lock(&e->mu);
    track_find(e, key, uid, true)->released++;
    pthread_mutex_unlock(&e->mu);
}

static void track_forget(amqp_engine *e, uint64_t key, uint64_t uid)
{
    pthread_mutex_lock(&e->mu);
    track *t = track_find(e, key, uid, false);
    if (t != NULL) {
        sl__track_drop(&e->tracks, t);
    }
    pthread_mutex_unlock(&e->mu);
}

static uint32_t track_released(amqp_engine *e, uint64_t key, uint64_t uid)
{
    pthread_mutex_lock(&e->mu);
    track *t = uid ? track_find(e, key, uid, false) : NULL;
    uint32_t n = t ? t->released : 0;
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- publish records
 * ------------------------------------------------------------ */

static void pub_free(apub *p)
{
    sl_free(p); /* everything is in one allocation: see pub_build */
}

/* The CloudEvents headers of an event, collected before the record is
 * allocated: "name\0value\0" pairs in a buffer that starts on the stack. */
typedef struct hdr_scratch {
    char *buf;
    size_t len, cap;
    size_t n;
    bool heap;
    char stack[2048];
} hdr_scratch;

static sl_status add_hdr(const char *name, const char *value, void *ctx)
{
    hdr_scratch *hs = ctx;
    size_t ln = strlen(name) + 1, lv = strlen(value) + 1;
    if (hs->len + ln + lv > hs->cap) {
        size_t cap = (hs->cap + ln + lv) * 2;
        char *b = hs->heap ? sl_realloc(hs->buf, cap) : sl_malloc(cap);
        if (b == NULL) {
            return SL_NOMEM;
        }
        if (!hs->heap) {
            memcpy(b, hs->buf, hs->len);
        }
        hs->buf = b;
        hs->cap = cap;
        hs->heap = true;
    }
    memcpy(hs->buf + hs->len, name, ln);
    memcpy(hs->buf + hs->len + ln, value, lv);
    hs->len += ln + lv;
    hs->n++;
    return SL_OK;
}

/* Bytes a string takes in the record (0 for NULL). */
static size_t str_size(const char *s)
{
    return s ? strlen(s) + 1 : 0;
}

/* Copy @p s to *@p at and advance it; NULL stays NULL. */
static char *put_str(char **at, const char *s)
{
    if (s == NULL) {
        return NULL;
    }
    size_t n = strlen(s) + 1;
    char *d = memcpy(*at, s, n);
    *at += n;
    return d;
}

/* Build the message of @p ev for @p exchange / @p rkey; @p dedup_id (may
 * be NULL) is recorded on confirm. One allocation holds the record, its
 * I/O request, the headers, the strings and the body: at tens of
 * thousands of publishes a second the thirty-odd small allocations this
 * used to make showed in the profile. */
static sl_status pub_build(const sl_event *ev, const char *exchange,
                           const char *rkey, uint64_t uid, uint32_t attempts,
                           const char *dedup_id, apub **out)
{
    hdr_scratch hs = {.len = 0, .n = 0, .heap = false};
    hs.buf = hs.stack;
    hs.cap = sizeof hs.stack;
    sl_status st = sl_ce_to_headers(ev, CE_PREFIX, add_hdr, &hs);
    if (st != SL_OK) {
        goto done;
    }
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    const char *ct = sl_event_get(ev, SL_ATTR_DATACONTENTTYPE);
    const char *id = sl_event_id(ev);
    const char *type = sl_event_type(ev);
    const char *src = sl_event_get(ev, SL_ATTR_SOURCE);
    const char *corr = sl_event_get(ev, SL_ATTR_CORRELATIONID);
    size_t size = sizeof(apub) + hs.n * sizeof(hdr) + hs.len +
                  str_size(exchange) + str_size(rkey) + str_size(ct) +
                  str_size(id) + str_size(type) + str_size(src) +
                  str_size(corr) + str_size(dedup_id) + len;
    apub *p = sl_malloc(size);
    if (p == NULL) {
        st = SL_NOMEM;
        goto done;
    }
    memset(p, 0, sizeof *p);
    p->hdrs = (hdr *)(void *)(p + 1);
    p->nhdrs = hs.n;
    char *at = (char *)(p->hdrs + hs.n);
    memcpy(at, hs.buf, hs.len);
    for (size_t i = 0; i < hs.n; i++) {
        p->hdrs[i].name = at;
        at += strlen(at) + 1;
        p->hdrs[i].value = at;
        at += strlen(at) + 1;
    }
    p->exchange = put_str(&at, exchange);
    p->rkey = put_str(&at, rkey);
    p->content_type = put_str(&at, ct);
    p->message_id = put_str(&at, id);
    p->type = put_str(&at, type);
    p->app_id = put_str(&at, src);
    p->correlation_id = put_str(&at, corr);
    p->dedup_id = put_str(&at, dedup_id);
    p->body = at;
    if (len) {
        memcpy(p->body, data, len);
    }
    p->body_len = len;
    p->uid = uid;
    p->attempts = attempts;
    p->mandatory = true;
    p->timestamp_s = sl_event_time_ms(ev) / 1000;
    p->req.kind = REQ_PUBLISH;
    p->req.pub = p;
    *out = p;
done:
    if (hs.heap) {
        sl_free(hs.buf);
    }
    return st;
}

/* ---- channels and groups (engine-local knowledge)
 * ------------------------------ */

static achan *chan_find_locked(amqp_engine *e, const char *name)
{
    for (achan *c = e->chans; c; c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

static achan *chan_remember(amqp_engine *e, const char *name,
                            uint64_t max_length, uint64_t max_bytes,
                            bool declared)
{
    pthread_mutex_lock(&e->mu);
    achan *c = chan_find_locked(e, name);
    if (c == NULL) {
        c = sl_calloc(1, sizeof *c);
        if (c == NULL || (c->name = sl_strdup(name)) == NULL ||
            (c->exchange = exchange_name(e, name)) == NULL) {
            if (c) {
                sl_free(c->name);
                sl_free(c);
            }
            pthread_mutex_unlock(&e->mu);
            return NULL;
        }
        c->next = e->chans;
        e->chans = c;
    }
    if (declared) {
        c->max_length = max_length;
        c->max_bytes = max_bytes;
        c->declared_here = true;
    }
    pthread_mutex_unlock(&e->mu);
    return c;
}

static agroup *group_find_locked(amqp_engine *e, const char *queue)
{
    for (agroup *g = e->groups; g; g = g->next) {
        if (strcmp(g->queue, queue) == 0) {
            return g;
        }
    }
    return NULL;
}

static void group_remember(amqp_engine *e, const char *channel,
                           const char *queue, uint32_t max_attempts)
{
    pthread_mutex_lock(&e->mu);
    agroup *g = group_find_locked(e, queue);
    if (g == NULL && (g = sl_calloc(1, sizeof *g)) != NULL) {
        if ((g->queue = sl_strdup(queue)) == NULL ||
            (g->channel = sl_strdup(channel)) == NULL) {
            sl_free(g->queue);
            sl_free(g);
            g = NULL;
        } else {
            g->next = e->groups;
            e->groups = g;
        }
    }
    if (g != NULL) {
        g->max_attempts = max_attempts;
    }
    pthread_mutex_unlock(&e->mu);
}

/* ---- talking to the I/O thread
 * --------------------------------------------------- */

/* Queue @p r for the I/O thread. The pipe is written only when the
 * thread sleeps (or is about to): a write per publish cost a system call
 * and, worse, woke the thread for each one. io_sleeping is set before the
 * thread's last look at the queue and read after the push, both ordered
 * by the queue's mutex: either the thread sees the request or we see it
 * asleep. */
static sl_status push_req(amqp_engine *e, areq *r)
{
    sl_status st = sl_queue_push(e->reqs, r, API_WAIT_MS);
    if (st == SL_OK && atomic_load(&e->io_sleeping)) {
        wake_io(e);
    }
    return st;
}

/* Run @p fn on the I/O thread and wait for it. Unless @p always, fails
 * with SL_UNAVAILABLE while disconnected. */
static sl_status io_call_ex(amqp_engine *e,
                            sl_status (*fn)(amqp_engine *, void *), void *arg,
                            bool always)
{
    acall c = {.fn = fn, .arg = arg, .st = SL_OK, .always = always};
    areq *r = sl_calloc(1, sizeof *r);
    if (r == NULL) {
        return SL_NOMEM;
    }
    r->kind = REQ_CALL;
    r->call = &c;
    pthread_mutex_lock(&e->mu);
    bool dead = e->io_exited || (e->dead && !always);
    pthread_mutex_unlock(&e->mu);
    if (dead) {
        sl_free(r);
        return SL_UNAVAILABLE;
    }
    sl_status st = push_req(e, r);
    if (st != SL_OK) {
        sl_free(r);
        return st == SL_FULL ? SL_TIMEOUT : SL_UNAVAILABLE;
    }
    pthread_mutex_lock(&e->mu);
    while (!c.done) {
        pthread_cond_wait(&e->cv, &e->mu);
    }
    pthread_mutex_unlock(&e->mu);
    return c.st;
}

static sl_status io_call(amqp_engine *e, sl_status (*fn)(amqp_engine *, void *),
                         void *arg)
{
    return io_call_ex(e, fn, arg, false);
}

/* ---- I/O thread: AMQP operations
 * ---------------------------------------------------- */

static void handle_frame(amqp_engine *e, amqp_frame_t *f);
static void destroy_conn(amqp_engine *e, amqp_connection_state_t conn);
static void await_returns(amqp_engine *e);
static void mark_sub_dead(amqp_engine *e, uint16_t ch);

/* Deal with frames rabbitmq-c queued while it waited for an RPC reply. */
static void drain_enqueued(amqp_engine *e)
{
    while (amqp_frames_enqueued(e->conn)) {
        amqp_frame_t f;
        struct timeval tv = {0, 0};
        if (amqp_simple_wait_frame_noblock(e->conn, &f, &tv) !=
            AMQP_STATUS_OK) {
            break;
        }
        handle_frame(e, &f);
    }
}

static sl_status open_channel(amqp_engine *e, uint16_t ch)
{
    amqp_channel_open(e->conn, ch);
    uint16_t code;
    return from_reply(amqp_get_rpc_reply(e->conn), &code);
}

/* Check an RPC's reply; a channel the broker closed is acknowledged and,
 * for the admin channel, reopened. */
static sl_status check_rpc(amqp_engine *e, uint16_t ch)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(e->conn);
    uint16_t code = 0;
    sl_status st = from_reply(r, &code);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(e->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (ch == ADMIN_CH) {
            open_channel(e, ADMIN_CH);
        } else if (ch >= FIRST_SUB_CH) {
            mark_sub_dead(e, ch);
        }
    } else if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION ||
               r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION) {
        if (st == SL_UNAVAILABLE) {
            pthread_mutex_lock(&e->mu);
            e->dead = true;
            pthread_mutex_unlock(&e->mu);
        }
    }
    drain_enqueued(e);
    return st;
}

static void confirm_one(amqp_engine *e, apub *p, sl_status st)
{
    if (st == SL_OK && p->returned) {
        st = SL_NOT_FOUND; /* unroutable: no group bound */
    }
    if (st == SL_OK && p->chan != NULL && p->dedup_id != NULL) {
        pthread_mutex_lock(&e->mu);
        sl__dedup_add(e->dedup, p->chan, p->dedup_id,
                      sl_clock_now_ms(e->clock));
        pthread_mutex_unlock(&e->mu);
    }
    if (p->cb != NULL) {
        p->cb(st, p->ctx);
    }
    pub_free(p);
    pthread_mutex_lock(&e->mu);
    e->npending--;
    pthread_cond_broadcast(&e->cv);
    pthread_mutex_unlock(&e->mu);
}

static void confirm_tags(amqp_engine *e, uint64_t tag, bool multiple,
                         sl_status st)
{
    apub **pp = &e->unconf_head;
    apub *prev = NULL;
    while (*pp != NULL) {
        apub *p = *pp;
        if (p->tag > tag) {
            break;
        }
        if (multiple || p->tag == tag) {
            *pp = p->next;
            if (e->unconf_tail == p) {
                e->unconf_tail = prev;
            }
            confirm_one(e, p, st);
            if (!multiple) {
                break;
            }
            continue;
        }
        prev = p;
        pp = &p->next;
    }
}

static void fail_unconfirmed(amqp_engine *e, sl_status st)
{
    apub *p = e->unconf_head;
    e->unconf_head = e->unconf_tail = NULL;
    while (p != NULL) {
        apub *next = p->next;
        confirm_one(e, p, st);
        p = next;
    }
}

static sl_status open_publish_channel(amqp_engine *e)
{
    sl_status st = open_channel(e, PUB_CH);
    if (st != SL_OK) {
        return st;
    }
    amqp_confirm_select(e->conn, PUB_CH);
    uint16_t code;
    st = from_reply(amqp_get_rpc_reply(e->conn), &code);
    e->next_tag = 1;
    return st;
}

static void send_publish(amqp_engine *e, apub *p)
{
    amqp_table_entry_t entries[64];
    int n = 0;
    for (size_t i = 0; i < p->nhdrs && n < 60; i++) {
        entries[n].key = bytes_of(p->hdrs[i].name);
        entries[n].value.kind = AMQP_FIELD_KIND_UTF8;
        entries[n].value.value.bytes = bytes_of(p->hdrs[i].value);
        n++;
    }
    entries[n].key = bytes_of(H_UID);
    entries[n].value.kind = AMQP_FIELD_KIND_I64;
    entries[n].value.value.i64 = (int64_t)p->uid;
    n++;
    if (p->attempts > 0) {
        entries[n].key = bytes_of(H_ATTEMPTS);
        entries[n].value.kind = AMQP_FIELD_KIND_I32;
        entries[n].value.value.i32 = (int32_t)p->attempts;
        n++;
    }
    amqp_basic_properties_t props;
    memset(&props, 0, sizeof props);
    props._flags = AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_HEADERS_FLAG;
    props.delivery_mode = 2;
    props.headers.num_entries = n;
    props.headers.entries = entries;
#define PROP(field, flag)                                                      \
    if (p->field != NULL) {                                                    \
        props._flags |= flag;                                                  \
        props.field = bytes_of(p->field);                                      \
    }
    PROP(content_type, AMQP_BASIC_CONTENT_TYPE_FLAG)
    PROP(message_id, AMQP_BASIC_MESSAGE_ID_FLAG)
    PROP(type, AMQP_BASIC_TYPE_FLAG)
    PROP(app_id, AMQP_BASIC_APP_ID_FLAG)
    PROP(correlation_id, AMQP_BASIC_CORRELATION_ID_FLAG)
#undef PROP
    if (p->timestamp_s) {
        props._flags |= AMQP_BASIC_TIMESTAMP_FLAG;
        props.timestamp = p->timestamp_s;
    }
    amqp_bytes_t body = {.len = p->body_len, .bytes = p->body};
    int rc =
        amqp_basic_publish(e->conn, PUB_CH, bytes_of(p->exchange),
                           bytes_of(p->rkey), p->mandatory, 0, &props, body);
    if (rc != AMQP_STATUS_OK) {
        confirm_one(e, p, SL_UNAVAILABLE);
        return;
    }
    p->tag = e->next_tag++;
    p->next = NULL;
    if (e->unconf_tail) {
        e->unconf_tail->next = p;
    } else {
        e->unconf_head = p;
    }
    e->unconf_tail = p;
}

static asub *sub_by_channel_locked(amqp_engine *e, uint16_t ch)
{
    for (asub *s = e->subs; s; s = s->next) {
        if (s->ch == ch) {
            return s;
        }
    }
    return NULL;
}

static int64_t table_int(const amqp_table_t *t, const char *key, bool *found)
{
    *found = false;
    for (int i = 0; i < t->num_entries; i++) {
        const amqp_table_entry_t *en = &t->entries[i];
        if (en->key.len != strlen(key) ||
            memcmp(en->key.bytes, key, en->key.len) != 0) {
            continue;
        }
        *found = true;
        switch (en->value.kind) {
        case AMQP_FIELD_KIND_I8:
            return en->value.value.i8;
        case AMQP_FIELD_KIND_U8:
            return en->value.value.u8;
        case AMQP_FIELD_KIND_I16:
            return en->value.value.i16;
        case AMQP_FIELD_KIND_U16:
            return en->value.value.u16;
        case AMQP_FIELD_KIND_I32:
            return en->value.value.i32;
        case AMQP_FIELD_KIND_U32:
            return en->value.value.u32;
        case AMQP_FIELD_KIND_I64:
            return en->value.value.i64;
        case AMQP_FIELD_KIND_U64:
            return (int64_t)en->value.value.u64;
        default:
            *found = false;
            return 0;
        }
    }
    return 0;
}

/* An event from a message: CloudEvents binary mode, or a plain AMQP
 * message mapped from its properties.
 *
 * A message with no id (no cloudEvents:id, no message_id: what most AMQP
 * producers send) gets a new UUIDv7. A quorum queue gives a message no
 * identity of its own that survives a redelivery (delivery tags restart at
 * 1 on every AMQP channel and connection, and nothing else is stable), so
 * whatever an id were derived from, distinct messages could share it and
 * an inbox would skip all but one of them. A fresh id per delivery never
 * collides; the price is that an inbox cannot recognise a broker
 * redelivery (a crash, a closed subscription) of such a message. A retry
 * republishes the event, id included, so retries keep it. */
static sl_status message_to_event(const amqp_message_t *m,
                                  const char *fallback_source, sl_event **out)
{
    sl_event *ev = NULL;
    sl_status st = sl_event_create(&ev);
    if (st != SL_OK) {
        return st;
    }
    const amqp_basic_properties_t *pr = &m->properties;
    bool has_ce = false;
    if (pr->_flags & AMQP_BASIC_HEADERS_FLAG) {
        for (int i = 0; i < pr->headers.num_entries && st == SL_OK; i++) {
            const amqp_table_entry_t *en = &pr->headers.entries[i];
            if (en->key.len <= strlen(CE_PREFIX) ||
                strncasecmp(en->key.bytes, CE_PREFIX, strlen(CE_PREFIX)) != 0) {
                continue;
            }
            /* Most names and values fit on the stack: no allocation per
             * header (a delivery carries a dozen). */
            char kbuf[128], vbuf[512];
            char *k = bytes_cstr(en->key, kbuf, sizeof kbuf);
            char *v = NULL;
            char num[32];
            if (en->value.kind == AMQP_FIELD_KIND_UTF8 ||
                en->value.kind == AMQP_FIELD_KIND_BYTES) {
                v = bytes_cstr(en->value.value.bytes, vbuf, sizeof vbuf);
            } else {
                bool f = false;
                amqp_table_t one = {.num_entries = 1,
                                    .entries = (amqp_table_entry_t *)en};
                char kz[64];
                snprintf(kz, sizeof kz, "%.*s", (int)en->key.len,
                         (const char *)en->key.bytes);
                int64_t x = table_int(&one, kz, &f);
                if (!f) {
                    cstr_free(k, kbuf);
                    continue;
                }
                snprintf(num, sizeof num, "%" PRId64, x);
                v = num;
            }
            if (k == NULL || v == NULL) {
                st = SL_NOMEM;
            } else {
                sl_status hs = sl_ce_from_header(ev, CE_PREFIX, k, v, NULL);
                if (hs == SL_NOMEM) {
                    st = hs;
                }
                has_ce = true;
            }
            cstr_free(k, kbuf);
            if (v != num) {
                cstr_free(v, vbuf);
            }
        }
    }
    char fresh_id[37];
    if (st == SL_OK && !has_ce) {
        char *id = NULL;
        if (pr->_flags & AMQP_BASIC_MESSAGE_ID_FLAG && pr->message_id.len > 0) {
            id = dup_bytes(pr->message_id);
        } else {
            sl_uuid7(fresh_id, sl_time_wall_ms());
            id = sl_strdup(fresh_id);
        }
        char *type = (pr->_flags & AMQP_BASIC_TYPE_FLAG && pr->type.len)
                         ? dup_bytes(pr->type)
                         : sl_strdup("amqp.message");
        char *src = (pr->_flags & AMQP_BASIC_APP_ID_FLAG && pr->app_id.len)
                        ? dup_bytes(pr->app_id)
                        : sl_strdup(fallback_source);
        if (id == NULL || type == NULL || src == NULL) {
            st = SL_NOMEM;
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_ID, id);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_TYPE, type);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_SOURCE, src);
        }
        if (st == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_SPECVERSION, "1.0");
        }
        if (st == SL_OK && pr->_flags & AMQP_BASIC_TIMESTAMP_FLAG) {
            st = sl_event_set_time_ms(ev, pr->timestamp * 1000);
        }
        if (st == SL_OK && pr->_flags & AMQP_BASIC_CORRELATION_ID_FLAG &&
            pr->correlation_id.len) {
            char *c = dup_bytes(pr->correlation_id);
            st = c ? sl_event_set(ev, SL_ATTR_CORRELATIONID, c) : SL_NOMEM;
            sl_free(c);
        }
        sl_free(id);
        sl_free(type);
        sl_free(src);
    } else if (st == SL_OK && sl_event_id(ev) == NULL) {
        /* cloudEvents: headers without an id. */
        sl_uuid7(fresh_id, sl_time_wall_ms());
        st = sl_event_set(ev, SL_ATTR_ID, fresh_id);
    }
    if (st == SL_OK && pr->_flags & AMQP_BASIC_CONTENT_TYPE_FLAG &&
        pr->content_type.len &&
        sl_event_get(ev, SL_ATTR_DATACONTENTTYPE) == NULL) {
        char *c = dup_bytes(pr->content_type);
        st = c ? sl_event_set(ev, SL_ATTR_DATACONTENTTYPE, c) : SL_NOMEM;
        sl_free(c);
    }
    if (st == SL_OK) {
        st = sl_event_set_data(ev, m->body.bytes, m->body.len);
    }
    if (st != SL_OK) {
        sl_event_unref(ev);
        return st;
    }
    *out = ev;
    return SL_OK;
}

static void read_counts(const amqp_message_t *m, uint64_t *uid,
                        uint32_t *delivery_count, uint32_t *base)
{
    *uid = 0;
    *delivery_count = 0;
    *base = 0;
    if (!(m->properties._flags & AMQP_BASIC_HEADERS_FLAG)) {
        return;
    }
    bool f = false;
    int64_t v = table_int(&m->properties.headers, H_UID, &f);
    *uid = f ? (uint64_t)v : 0;
    v = table_int(&m->properties.headers, H_DELIVERY_COUNT, &f);
    *delivery_count = f && v > 0 ? (uint32_t)v : 0;
    v = table_int(&m->properties.headers, H_ATTEMPTS, &f);
    *base = f && v > 0 ? (uint32_t)v : 0;
}

static void on_deliver(amqp_engine *e, uint16_t ch,
                       const amqp_basic_deliver_t *dv)
{
    uint64_t tag = dv->delivery_tag;
    amqp_message_t m;
    amqp_rpc_reply_t r = amqp_read_message(e->conn, ch, &m, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        pthread_mutex_lock(&e->mu);
        e->dead = true;
        pthread_mutex_unlock(&e->mu);
        return;
    }
    pthread_mutex_lock(&e->mu);
    asub *s = sub_by_channel_locked(e, ch);
    pthread_mutex_unlock(&e->mu);
    if (s == NULL) {
        amqp_destroy_message(&m);
        return; /* the channel is closing: the broker requeues it */
    }
    adelivery *d = sl_calloc(1, sizeof *d);
    sl_event *ev = NULL;
    sl_status st = d ? message_to_event(&m, s->queue, &ev) : SL_NOMEM;
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "message %" PRIu64 " on %s is not a readable event (%s): "
                "dropped",
                tag, s->queue, sl_status_str(st));
        sl_free(d);
        amqp_basic_reject(e->conn, ch, tag, 0);
        amqp_destroy_message(&m);
        return;
    }
    read_counts(&m, &d->uid, &d->delivery_count, &d->base_attempts);
    amqp_destroy_message(&m);
    d->base.drv = NULL; /* set at fetch */
    d->base.ev = ev;
    d->sub = s;
    d->ch = ch;
    d->tag = tag;
    pthread_mutex_lock(&s->mu);
    d->gen = s->gen;
    d->next = NULL;
    d->prev = s->buf_tail;
    if (s->buf_tail) {
        s->buf_tail->next = d;
    } else {
        s->buf_head = d;
    }
    s->buf_tail = d;
    s->nbuf++;
    s->arrived = true; /* fetch is woken by wake_fetchers() */
    pthread_mutex_unlock(&s->mu);
}

/* Wake the fetches of subscriptions that received deliveries. Called once
 * the I/O thread has read what the socket had, so that a fetch woken by a
 * burst finds all of it buffered rather than its first delivery. */
static void wake_fetchers(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        if (s->arrived) {
            s->arrived = false;
            pthread_cond_broadcast(&s->cv);
        }
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&e->mu);
}

static void on_return(amqp_engine *e)
{
    amqp_message_t m;
    amqp_rpc_reply_t r = amqp_read_message(e->conn, PUB_CH, &m, 0);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        return;
    }
    uint64_t uid;
    uint32_t dc, base;
    read_counts(&m, &uid, &dc, &base);
    amqp_destroy_message(&m);
    for (apub *p = e->unconf_head; p; p = p->next) {
        if (p->uid == uid && !p->returned) {
            p->returned = true;
            break;
        }
    }
}

static void mark_sub_dead(amqp_engine *e, uint16_t ch)
{
    pthread_mutex_lock(&e->mu);
    asub *s = sub_by_channel_locked(e, ch);
    pthread_mutex_unlock(&e->mu);
    if (s != NULL) {
        pthread_mutex_lock(&s->mu);
        s->dead = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
}

static void set_rebind(amqp_engine *e, asub *s, uint32_t delay_ms)
{
    if (!s->rebind) {
        s->rebind = true;
        s->rebind_warned = false;
        e->nrebind++;
    }
    s->rebind_delay_ms = delay_ms;
    s->rebind_at_ms = sl_time_mono_ms() + delay_ms;
}

static void clear_rebind(amqp_engine *e, asub *s)
{
    if (s->rebind) {
        s->rebind = false;
        e->nrebind--;
    }
}

/* The broker cancelled the consumer on @p ch (basic.cancel, announced by
 * consumer_cancel_notify): its queue was deleted, or the queue could not
 * keep it. The subscription is down (fetch waits, settling its deliveries
 * is refused) until rebind_due() subscribes again. Only flags here: this
 * may run inside another call's RPC. */
static void on_broker_cancel(amqp_engine *e, uint16_t ch)
{
    pthread_mutex_lock(&e->mu);
    asub *s = sub_by_channel_locked(e, ch);
    bool stopping = s != NULL && (atomic_load(&s->interrupted) ||
                                  atomic_load(&s->cancel_asked));
    if (s != NULL && stopping) {
        s->cancelled = true; /* no consumer left to cancel */
    }
    pthread_mutex_unlock(&e->mu);
    if (s == NULL || stopping) {
        return;
    }
    sl_logf(SL_LOG_WARN, LOG,
            "RabbitMQ cancelled the consumer of group '%s' on channel '%s' "
            "(queue %s deleted or unavailable); subscribing again",
            s->group, s->channel, s->queue);
    pthread_mutex_lock(&s->mu);
    s->down = true;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    set_rebind(e, s, 0);
}

static void handle_frame(amqp_engine *e, amqp_frame_t *f)
{
    if (f->frame_type != AMQP_FRAME_METHOD) {
        return; /* stray content of a message we skipped */
    }
    uint16_t ch = f->channel;
    void *dec = f->payload.method.decoded;
    switch (f->payload.method.id) {
    case AMQP_BASIC_ACK_METHOD: {
        amqp_basic_ack_t *a = dec;
        confirm_tags(e, a->delivery_tag, a->multiple, SL_OK);
        break;
    }
    case AMQP_BASIC_NACK_METHOD: {
        amqp_basic_nack_t *a = dec;
        confirm_tags(e, a->delivery_tag, a->multiple, SL_FULL);
        break;
    }
    case AMQP_BASIC_RETURN_METHOD:
        on_return(e);
        break;
    case AMQP_BASIC_DELIVER_METHOD:
        on_deliver(e, ch, dec);
        break;
    case AMQP_BASIC_CANCEL_METHOD:
        on_broker_cancel(e, ch);
        break;
    case AMQP_CONNECTION_BLOCKED_METHOD:
    case AMQP_CONNECTION_UNBLOCKED_METHOD:
        pthread_mutex_lock(&e->mu);
        e->blocked = f->payload.method.id == AMQP_CONNECTION_BLOCKED_METHOD;
        pthread_mutex_unlock(&e->mu);
        break;
    case AMQP_CHANNEL_CLOSE_METHOD: {
        amqp_channel_close_t *c = dec;
        sl_logf(SL_LOG_WARN, LOG, "broker closed channel %u: %u %.*s",
                (unsigned)ch, (unsigned)c->reply_code, (int)c->reply_text.len,
                (const char *)c->reply_text.bytes);
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(e->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        if (ch == PUB_CH) {
            fail_unconfirmed(e, c->reply_code == AMQP_NOT_FOUND ? SL_NOT_FOUND
                                                                : SL_TIMEOUT);
            open_publish_channel(e);
        } else if (ch == ADMIN_CH) {
            open_channel(e, ADMIN_CH);
        } else {
            mark_sub_dead(e, ch);
        }
        break;
    }
    case AMQP_CONNECTION_CLOSE_METHOD: {
        amqp_connection_close_ok_t ok = {0};
        amqp_send_method(e->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
        pthread_mutex_lock(&e->mu);
        e->dead = true;
        pthread_mutex_unlock(&e->mu);
        break;
    }
    default:
        break;
    }
}

static void note_return(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    e->last_return_ms = sl_time_mono_ms();
    pthread_mutex_unlock(&e->mu);
}

/* Stop the consumer of the subscription on @p ch (basic.cancel), once.
 *
 * Called when the subscription is interrupted, before its deliveries are
 * settled: while the consumer lives, every ack or release frees prefetch
 * credit and the queue checks out more messages to it; a quorum queue
 * returns those still travelling to a cancelled consumer itself (their
 * x-delivery-count rises) without the engine ever seeing them, so they
 * would count as an attempt. Cancelled first, nothing more is checked out.
 * Deliveries that arrive before cancel-ok are buffered (released at
 * unsubscribe). */
static void cancel_consumer(amqp_engine *e, uint16_t ch)
{
    char ctag[256];
    bool go = false;
    pthread_mutex_lock(&e->mu);
    asub *s = e->dead ? NULL : sub_by_channel_locked(e, ch);
    /* s->dead and s->cancelled are written only by this thread. */
    if (s != NULL && !s->dead && !s->down && !s->cancelled && s->ctag != NULL &&
        strlen(s->ctag) < sizeof ctag) {
        memcpy(ctag, s->ctag, strlen(s->ctag) + 1);
        s->cancelled = true;
        go = true;
    }
    pthread_mutex_unlock(&e->mu);
    if (go) {
        amqp_basic_cancel(e->conn, ch, bytes_of(ctag));
        check_rpc(e, ch);
    }
}

/* A write that may wait for the socket (the watchdog watches it). RPCs
 * are not marked: rabbitmq-c waits for their replies with the heartbeat
 * deadline itself. */
static void send_begin(amqp_engine *e)
{
    atomic_store_explicit(&e->send_since, sl_time_mono_ms(),
                          memory_order_relaxed);
}

static void send_end(amqp_engine *e)
{
    atomic_store_explicit(&e->send_since, 0, memory_order_relaxed);
}

/* True when the deliveries an ack or nack names are of the channel's
 * current generation: one queued before the broker cancelled the consumer
 * would name tags the reopened channel never gave (a channel error). */
static bool settle_current(amqp_engine *e, const areq *r)
{
    pthread_mutex_lock(&e->mu);
    asub *s = sub_by_channel_locked(e, r->ch);
    pthread_mutex_unlock(&e->mu);
    if (s == NULL) {
        return true; /* browse and unsubscribe channels */
    }
    pthread_mutex_lock(&s->mu);
    bool ok = s->gen == r->gen && !s->down && !s->dead;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

static void handle_req(amqp_engine *e, areq *r)
{
    if ((r->kind == REQ_ACK || r->kind == REQ_ACK_MULTIPLE ||
         r->kind == REQ_NACK) &&
        !settle_current(e, r)) {
        sl_free(r); /* the broker returned those with the old channel */
        return;
    }
    /* The I/O loop marks its batches of requests as writes; an RPC is not
     * one (rabbitmq-c waits for its reply with the heartbeat deadline). */
    bool rpc = r->kind == REQ_CALL || r->kind == REQ_CANCEL;
    bool marked = rpc && atomic_load_explicit(&e->send_since,
                                              memory_order_relaxed) != 0;
    if (marked) {
        send_end(e);
    }
    switch (r->kind) {
    case REQ_PUBLISH:
        /* r is part of the publish: it belongs to confirm_one now. */
        send_publish(e, r->pub);
        return;
    case REQ_ACK:
        amqp_basic_ack(e->conn, r->ch, r->tag, 0);
        break;
    case REQ_ACK_MULTIPLE:
        amqp_basic_ack(e->conn, r->ch, r->tag, 1);
        break;
    case REQ_NACK:
        amqp_basic_nack(e->conn, r->ch, r->tag, 0, 1);
        note_return(e);
        break;
    case REQ_CANCEL:
        cancel_consumer(e, r->ch);
        break;
    case REQ_CALL:
        r->call->st = r->call->fn(e, r->call->arg);
        pthread_mutex_lock(&e->mu);
        r->call->done = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        break;
    }
    if (marked) {
        send_begin(e);
    }
    sl_free(r);
}

/* Requests after the connection died: publishes and calls fail. */
static void fail_req(amqp_engine *e, areq *r)
{
    switch (r->kind) {
    case REQ_PUBLISH:
        confirm_one(e, r->pub, SL_UNAVAILABLE); /* frees r: part of it */
        return;
    case REQ_CALL:
        pthread_mutex_lock(&e->mu);
        r->call->st = SL_UNAVAILABLE;
        r->call->done = true;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        break;
    default:
        break;
    }
    sl_free(r);
}

/* ---- declarations (I/O thread calls)
 * ---------------------------------------------- */

typedef struct declare_args {
    const char *exchange;
    const char *queue;
    const char *dlx; /* dead-letter exchange of the queue, or NULL */
    const char *dl_rkey;
    uint64_t max_length;
    uint64_t max_bytes;
    uint32_t delivery_limit; /* 0 = none */
    uint64_t ttl_ms;         /* retry queue: 0 = not one */
    bool passive;
    uint32_t message_count;
    sl_diag *diag;
} declare_args;

/* Why the broker refused to declare @p kind @p name, into @p diag: an
 * existing entity with other arguments in sluice's terms (which argument,
 * both values: amqp_topology.h), else the broker's text. */
static void declare_refusal(amqp_rpc_reply_t r, const char *kind,
                            const char *name, sl_diag *diag)
{
    if (diag == NULL || r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION ||
        r.reply.id != AMQP_CHANNEL_CLOSE_METHOD) {
        return;
    }
    amqp_channel_close_t *c = r.reply.decoded;
    const char *text = c->reply_text.bytes ? c->reply_text.bytes : "";
    char msg[sizeof diag->msg];
    uint16_t code = 0;
    sl_status st = from_reply(r, &code);
    if (c->reply_code == AMQP_PRECONDITION_FAILED &&
        sl__amqp_describe_difference(text, c->reply_text.len, msg,
                                     sizeof msg)) {
        sl_diag_set(diag, st, "%s", msg);
    } else {
        sl_diag_set(diag, st, "%s '%s': %.*s", kind, name,
                    (int)c->reply_text.len, text);
    }
}

static sl_status do_declare_exchange(amqp_engine *e, void *arg)
{
    declare_args *a = arg;
    amqp_exchange_declare(e->conn, ADMIN_CH, bytes_of(a->exchange),
                          bytes_of("topic"), a->passive, 1, 0, 0,
                          amqp_empty_table);
    declare_refusal(amqp_get_rpc_reply(e->conn), "exchange", a->exchange,
                    a->diag);
    return check_rpc(e, ADMIN_CH);
}

static sl_status do_declare_queue(amqp_engine *e, void *arg)
{
    declare_args *a = arg;
    amqp_table_entry_t en[9];
    int n = 0;
    if (a->ttl_ms == 0) {
        en[n].key = bytes_of("x-queue-type");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = bytes_of("quorum");
        n++;
    }
    if (a->delivery_limit) {
        en[n].key = bytes_of("x-delivery-limit");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = a->delivery_limit;
        n++;
    }
    if (a->max_length) {
        en[n].key = bytes_of("x-max-length");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = (int64_t)a->max_length;
        n++;
    }
    if (a->max_bytes) {
        /* RabbitMQ counts the bodies: the event's data. */
        en[n].key = bytes_of("x-max-length-bytes");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = (int64_t)a->max_bytes;
        n++;
    }
    if (a->max_length || a->max_bytes) {
        en[n].key = bytes_of("x-overflow");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = bytes_of("reject-publish");
        n++;
    }
    if (a->dlx) {
        en[n].key = bytes_of("x-dead-letter-exchange");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = bytes_of(a->dlx);
        n++;
    }
    if (a->dl_rkey) {
        en[n].key = bytes_of("x-dead-letter-routing-key");
        en[n].value.kind = AMQP_FIELD_KIND_UTF8;
        en[n].value.value.bytes = bytes_of(a->dl_rkey);
        n++;
    }
    if (a->ttl_ms) {
        en[n].key = bytes_of("x-message-ttl");
        en[n].value.kind = AMQP_FIELD_KIND_I64;
        en[n].value.value.i64 = (int64_t)a->ttl_ms;
        n++;
    }
    amqp_table_t args = {.num_entries = a->passive ? 0 : n, .entries = en};
    amqp_queue_declare_ok_t *ok = amqp_queue_declare(
        e->conn, ADMIN_CH, bytes_of(a->queue), a->passive, 1, 0, 0, args);
    if (ok != NULL) {
        a->message_count = ok->message_count;
    }
    declare_refusal(amqp_get_rpc_reply(e->conn), "queue", a->queue, a->diag);
    sl_status st = check_rpc(e, ADMIN_CH);
    if (st != SL_OK || a->passive || a->exchange == NULL) {
        return st;
    }
    amqp_queue_bind(e->conn, ADMIN_CH, bytes_of(a->queue),
                    bytes_of(a->exchange), bytes_of("#"), amqp_empty_table);
    return check_rpc(e, ADMIN_CH);
}

static sl_status amqp_declare_channel(sl_engine *base,
                                      const sl_channel_opts *opts,
                                      sl_diag *diag)
{
    amqp_engine *e = (amqp_engine *)base;
    achan *c =
        chan_remember(e, opts->name, opts->max_length, opts->max_bytes, true);
    if (c == NULL) {
        return SL_NOMEM;
    }
    if (strlen(c->exchange) > 255) {
        return sl_diag_set(diag, SL_TOO_LARGE, "exchange name too long");
    }
    declare_args a = {.exchange = c->exchange, .diag = diag};
    sl_status st = io_call(e, do_declare_exchange, &a);
    if (st != SL_OK && diag != NULL && diag->msg[0] != '\0') {
        return st;
    }
    if (st != SL_OK) {
        return sl_diag_set(diag, st,
                           "declaring exchange %s for channel "
                           "'%s': %s",
                           c->exchange, opts->name, sl_status_str(st));
    }
    return SL_OK;
}

static bool is_dlq_channel(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".dlq") == 0;
}

/* Remember a declared queue so that a reconnect declares it again. Nodes
 * are only prepended (under e->mu) and never change, so the I/O thread
 * may walk the list from a head read under the lock. */
static sl_status queue_remember(amqp_engine *e, const declare_args *a)
{
    pthread_mutex_lock(&e->mu);
    for (aqueue *q = e->queues; q; q = q->next) {
        if (strcmp(q->queue, a->queue) == 0) {
            pthread_mutex_unlock(&e->mu);
            return SL_OK;
        }
    }
    pthread_mutex_unlock(&e->mu);
    aqueue *q = sl_calloc(1, sizeof *q);
    if (q == NULL || (q->queue = sl_strdup(a->queue)) == NULL ||
        (q->exchange = sl_strdup(a->exchange)) == NULL ||
        (a->dlx != NULL && (q->dlx = sl_strdup(a->dlx)) == NULL)) {
        if (q != NULL) {
            sl_free(q->queue);
            sl_free(q->exchange);
            sl_free(q);
        }
        return SL_NOMEM;
    }
    q->delivery_limit = a->delivery_limit;
    q->max_length = a->max_length;
    q->max_bytes = a->max_bytes;
    pthread_mutex_lock(&e->mu);
    q->next = e->queues;
    e->queues = q;
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

/* Declare @p group's queue on @p channel, bound to the channel's exchange;
 * @p dlq_exchange receives what x-delivery-limit drops. */
static sl_status put_queue(amqp_engine *e, const char *channel,
                           const char *group, uint32_t delivery_limit,
                           const char *dlq_exchange, sl_diag *diag)
{
    pthread_mutex_lock(&e->mu);
    achan *c = chan_find_locked(e, channel);
    uint64_t max_length = c && c->declared_here ? c->max_length : 0;
    uint64_t max_bytes = c && c->declared_here ? c->max_bytes : 0;
    pthread_mutex_unlock(&e->mu);
    char *x = exchange_name(e, channel);
    char *q = queue_name(e, channel, group);
    sl_status st = SL_NOMEM;
    if (x == NULL || q == NULL) {
        goto done;
    }
    if (strlen(q) > 255) {
        st = sl_diag_set(diag, SL_TOO_LARGE, "queue name too long");
        goto done;
    }
    declare_args a = {.exchange = x, .passive = true};
    if ((st = io_call(e, do_declare_exchange, &a)) != SL_OK) {
        st = st == SL_NOT_FOUND
                 ? sl_diag_set(diag, SL_NOT_FOUND,
                               "channel '%s' is not declared", channel)
                 : sl_diag_set(diag, st, "exchange %s: %s", x,
                               sl_status_str(st));
        goto done;
    }
    declare_args qa = {.exchange = x,
                       .queue = q,
                       .dlx = dlq_exchange,
                       .max_length = max_length,
                       .max_bytes = max_bytes,
                       .delivery_limit = delivery_limit,
                       .diag = diag};
    st = io_call(e, do_declare_queue, &qa);
    if (st != SL_OK && (diag == NULL || diag->msg[0] == '\0')) {
        sl_diag_set(diag, st, "declaring queue %s: %s", q, sl_status_str(st));
    }
    if (st == SL_OK) {
        st = queue_remember(e, &qa);
    }
done:
    sl_free(x);
    sl_free(q);
    return st;
}

static sl_status amqp_declare_group(sl_engine *base, const sl_group_opts *opts,
                                    sl_diag *diag)
{
    amqp_engine *e = (amqp_engine *)base;
    if (is_dlq_channel(opts->channel)) {
        return put_queue(e, opts->channel, opts->name, 0, NULL, diag);
    }
    uint32_t max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    char dlq[512];
    if (sl__dlq_channel_name(opts->channel, opts->name, dlq, sizeof dlq) !=
        SL_OK) {
        return sl_diag_set(diag, SL_TOO_LARGE, "dead-letter name too long");
    }
    sl_channel_opts dco = {.name = dlq};
    sl_status st = amqp_declare_channel(base, &dco, diag);
    if (st == SL_OK) {
        st = put_queue(e, dlq, SL_DLQ_GROUP, 0, NULL, diag);
    }
    char *dlx = exchange_name(e, dlq);
    char *q = queue_name(e, opts->channel, opts->name);
    if (dlx == NULL || q == NULL) {
        st = SL_NOMEM;
    }
    /* The broker's backstop sits above max_attempts: releases count there
     * too (docs/engines/rabbitmq.md). */
    uint32_t limit =
        max_attempts > UINT32_MAX / 2 ? UINT32_MAX : max_attempts * 2 + 20;
    if (st == SL_OK) {
        st = put_queue(e, opts->channel, opts->name, limit, dlx, diag);
    }
    if (st == SL_OK) {
        group_remember(e, opts->channel, q, max_attempts);
    }
    sl_free(dlx);
    sl_free(q);
    return st;
}

/* ---- publishing
 * ------------------------------------------------------------------------ */

static sl_status check_exchange(amqp_engine *e, const char *channel,
                                achan **out)
{
    pthread_mutex_lock(&e->mu);
    achan *c = chan_find_locked(e, channel);
    pthread_mutex_unlock(&e->mu);
    if (c != NULL) {
        *out = c;
        return SL_OK;
    }
    char *x = exchange_name(e, channel);
    if (x == NULL) {
        return SL_NOMEM;
    }
    declare_args a = {.exchange = x, .passive = true};
    sl_status st = io_call(e, do_declare_exchange, &a);
    sl_free(x);
    if (st != SL_OK) {
        return st;
    }
    c = chan_remember(e, channel, 0, 0, false);
    if (c == NULL) {
        return SL_NOMEM;
    }
    *out = c;
    return SL_OK;
}

typedef struct room_args {
    const char *channel;
    uint64_t max_length;
} room_args;

/* SL_FULL when a group of the channel (known to this engine) holds
 * max_length events: ready at the broker plus what this engine holds. */
static sl_status do_check_room(amqp_engine *e, void *arg)
{
    room_args *a = arg;
    await_returns(e);
    char *queues[64];
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (agroup *g = e->groups; g && n < 64; g = g->next) {
        if (strcmp(g->channel, a->channel) == 0) {
            queues[n++] = sl_strdup(g->queue);
        }
    }
    pthread_mutex_unlock(&e->mu);
    sl_status st = SL_OK;
    for (size_t i = 0; i < n; i++) {
        if (queues[i] == NULL) {
            continue;
        }
        declare_args qa = {.queue = queues[i], .passive = true};
        if (st == SL_OK && do_declare_queue(e, &qa) == SL_OK) {
            uint64_t held = qa.message_count;
            uint64_t key = fnv1a(queues[i]);
            pthread_mutex_lock(&e->mu);
            for (asub *s = e->subs; s; s = s->next) {
                if (s->qkey == key) {
                    pthread_mutex_lock(&s->mu);
                    held += s->nbuf + s->nflight;
                    pthread_mutex_unlock(&s->mu);
                }
            }
            pthread_mutex_unlock(&e->mu);
            if (held >= a->max_length) {
                st = SL_FULL;
            }
        }
        sl_free(queues[i]);
    }
    return st;
}

/* Hand @p p to the I/O thread. On failure @p p is freed and cb not
 * called. */
static sl_status submit(amqp_engine *e, apub *p)
{
    pthread_mutex_lock(&e->mu);
    if (e->dead || e->stopping) {
        sl_status why = e->dead ? SL_UNAVAILABLE : SL_CLOSED;
        pthread_mutex_unlock(&e->mu);
        pub_free(p);
        return why;
    }
    if (e->blocked || e->npending >= PUB_MAX_PENDING) {
        pthread_mutex_unlock(&e->mu);
        pub_free(p);
        return SL_FULL;
    }
    e->npending++;
    pthread_mutex_unlock(&e->mu);
    sl_status st = push_req(e, &p->req);
    if (st != SL_OK) {
        pub_free(p);
        pthread_mutex_lock(&e->mu);
        e->npending--;
        pthread_cond_broadcast(&e->cv);
        pthread_mutex_unlock(&e->mu);
        return st == SL_FULL ? SL_FULL : SL_CLOSED;
    }
    return SL_OK;
}

/* Publish and wait for the confirm on the calling thread. */
static sl_status submit_sync(amqp_engine *e, apub *p)
{
    sl_waiter *w = NULL;
    if (sl__waiter_create(&w) != SL_OK) {
        pub_free(p);
        return SL_NOMEM;
    }
    p->cb = sl__waiter_signal;
    p->ctx = w;
    sl_status st = submit(e, p);
    if (st != SL_OK) {
        sl__waiter_destroy(w);
        return st;
    }
    return sl__waiter_wait(w, API_WAIT_MS);
}

static sl_status amqp_publish(sl_engine *base, const char *channel,
                              sl_event *ev, unsigned flags, sl_publish_cb cb,
                              void *ctx)
{
    amqp_engine *e = (amqp_engine *)base;
    sl_status st = sl_event_validate(ev, e->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    achan *c = NULL;
    if ((st = check_exchange(e, channel, &c)) != SL_OK) {
        return st;
    }
    bool dedup = !(flags & SL_PUBLISH_NO_DEDUP);
    if (dedup) {
        pthread_mutex_lock(&e->mu);
        bool dup = sl__dedup_contains(e->dedup, c, sl_event_id(ev),
                                      sl_clock_now_ms(e->clock));
        pthread_mutex_unlock(&e->mu);
        if (dup) {
            if (cb != NULL) {
                cb(SL_OK, ctx);
            }
            return SL_OK;
        }
    }
    apub *p = NULL;
    if ((st = pub_build(ev, c->exchange, channel, next_uid(e), 0,
                        dedup ? sl_event_id(ev) : NULL, &p)) != SL_OK) {
        return st;
    }
    if (dedup) {
        p->chan = c;
    }
    if (c->max_length == 0 && c->max_bytes == 0) {
        p->cb = cb;
        p->ctx = ctx;
        return submit(e, p);
    }
    /* A bounded channel publishes synchronously, so that a reject-publish
     * nack is this call's SL_FULL, as the API promises. A quorum queue
     * applies reject-publish one event late and asynchronously, so the
     * engine checks the room of the groups it knows first; AMQP 0-9-1
     * tells a queue's message count but not its bytes, so max_bytes has
     * only the broker's check (one event late). */
    if (c->max_length != 0) {
        room_args ra = {.channel = channel, .max_length = c->max_length};
        if ((st = io_call(e, do_check_room, &ra)) != SL_OK) {
            pub_free(p);
            return st;
        }
    }
    st = submit_sync(e, p);
    if (st == SL_TIMEOUT || st == SL_OK) {
        if (cb != NULL) {
            cb(st, ctx);
        }
        return SL_OK;
    }
    return st;
}

/* ---- consuming
 * ---------------------------------------------------------------------- */

typedef struct sub_args {
    asub *s;
    sl_diag *diag;
} sub_args;

static sl_status do_subscribe(amqp_engine *e, void *arg)
{
    sub_args *a = arg;
    asub *s = a->s;
    sl_status st = open_channel(e, s->ch);
    if (st != SL_OK) {
        return sl_diag_set(a->diag, st, "cannot open an AMQP channel");
    }
    amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
    if ((st = check_rpc(e, s->ch)) != SL_OK) {
        return st;
    }
    pthread_mutex_lock(&e->mu);
    s->gen = e->gen;
    s->next = e->subs;
    e->subs = s;
    pthread_mutex_unlock(&e->mu);
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(e->conn, s->ch, bytes_of(s->queue), amqp_empty_bytes,
                           0, 0, 0, amqp_empty_table);
    if (ok != NULL && (s->ctag = dup_bytes(ok->consumer_tag)) == NULL) {
        return SL_NOMEM;
    }
    st = check_rpc(e, s->ch);
    if (st != SL_OK) {
        pthread_mutex_lock(&e->mu);
        for (asub **pp = &e->subs; *pp; pp = &(*pp)->next) {
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        }
        pthread_mutex_unlock(&e->mu);
        if (st == SL_NOT_FOUND) {
            return sl_diag_set(a->diag, SL_NOT_FOUND,
                               "group '%s' on channel '%s' is not declared",
                               s->group, s->channel);
        }
        amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
        drain_enqueued(e);
        return sl_diag_set(a->diag, st, "basic.consume on %s: %s", s->queue,
                           sl_status_str(st));
    }
    return SL_OK;
}

static void sub_free(asub *s)
{
    sl_free(s->channel);
    sl_free(s->group);
    sl_free(s->queue);
    sl_free(s->ctag);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    sl_free(s);
}

static sl_status amqp_subscribe(sl_engine *base, const char *channel,
                                const char *group,
                                const sl_subscribe_opts *opts,
                                sl_subscription **out, sl_diag *diag)
{
    amqp_engine *e = (amqp_engine *)base;
    asub *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    s->base.drv = &sl__amqp_driver;
    s->eng = e;
    s->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    if (s->prefetch > 65535) {
        s->prefetch = 65535;
    }
    pthread_mutex_init(&s->mu, NULL);
    sl__cond_init_mono(&s->cv);
    if ((s->channel = sl_strdup(channel)) == NULL ||
        (s->group = sl_strdup(group)) == NULL ||
        (s->queue = queue_name(e, channel, group)) == NULL) {
        sub_free(s);
        return SL_NOMEM;
    }
    s->qkey = fnv1a(s->queue);
    pthread_mutex_lock(&e->mu);
    agroup *g = group_find_locked(e, s->queue);
    s->max_attempts =
        g ? g->max_attempts
          : (is_dlq_channel(channel) ? UINT32_MAX : DEFAULT_MAX_ATTEMPTS);
    if (e->next_ch == 0) {
        e->next_ch = FIRST_SUB_CH; /* wrapped: channel numbers are reused */
    }
    s->ch = e->next_ch++;
    pthread_mutex_unlock(&e->mu);
    sub_args a = {.s = s, .diag = diag};
    sl_status st = io_call(e, do_subscribe, &a);
    if (st != SL_OK) {
        sub_free(s);
        return st;
    }
    *out = &s->base;
    return SL_OK;
}

static void flight_add(asub *s, adelivery *d)
{
    d->prev = NULL;
    d->next = s->flight;
    if (s->flight) {
        s->flight->prev = d;
    }
    s->flight = d;
    s->nflight++;
}

static void flight_remove(asub *s, adelivery *d)
{
    if (d->prev) {
        d->prev->next = d->next;
    } else {
        s->flight = d->next;
    }
    if (d->next) {
        d->next->prev = d->prev;
    }
    d->prev = d->next = NULL;
    s->nflight--;
}

/* A delivery that left the buffer or the flight list had its ack or nack
 * sent (or queued): multiple acks are possible again once none is left. */
static void limbo_done(asub *s)
{
    pthread_mutex_lock(&s->mu);
    s->nlimbo--;
    pthread_mutex_unlock(&s->mu);
}

static adelivery *buf_pop(asub *s)
{
    adelivery *d = s->buf_head;
    if (d != NULL) {
        s->buf_head = d->next;
        if (s->buf_head) {
            s->buf_head->prev = NULL;
        } else {
            s->buf_tail = NULL;
        }
        d->next = d->prev = NULL;
        s->nbuf--;
    }
    return d;
}

static void delivery_free(adelivery *d)
{
    sl_event_unref(d->base.ev);
    sl_free(d);
}

static sl_status send_settle(amqp_engine *e, adelivery *d, bool ack)
{
    pthread_mutex_lock(&d->sub->mu);
    /* A delivery of a lost connection is never settled on the new one. */
    bool dead = d->sub->dead || d->sub->down || d->gen != d->sub->gen;
    pthread_mutex_unlock(&d->sub->mu);
    if (dead) {
        return SL_CLOSED; /* the broker requeued it with the channel */
    }
    areq *r = sl_calloc(1, sizeof *r);
    if (r == NULL) {
        return SL_NOMEM;
    }
    r->kind = ack ? REQ_ACK : REQ_NACK;
    r->ch = d->ch;
    r->tag = d->tag;
    r->gen = d->gen;
    sl_status st = push_req(e, r);
    if (st != SL_OK) {
        sl_free(r);
        return SL_CLOSED;
    }
    return SL_OK;
}

/* Publish the dead letter of @p d to the group's dead-letter channel and
 * wait for its confirm, then ack @p d. */
static sl_status dead_letter(amqp_engine *e, adelivery *d,
                             sl_dead_reason reason, uint32_t attempts,
                             const char *error)
{
    asub *s = d->sub;
    char dlq[512];
    sl_status st = sl__dlq_channel_name(s->channel, s->group, dlq, sizeof dlq);
    sl_event *dead = NULL;
    apub *p = NULL;
    char *x = exchange_name(e, dlq);
    if (st == SL_OK && x == NULL) {
        st = SL_NOMEM;
    }
    if (st == SL_OK) {
        st = sl__dead_letter_event(d->base.ev, reason, attempts, error,
                                   s->channel, s->group,
                                   sl_clock_now_ms(e->clock), &dead);
    }
    if (st == SL_OK) {
        st = pub_build(dead, x, dlq, next_uid(e), 0, NULL, &p);
    }
    if (st == SL_OK) {
        st = submit_sync(e, p);
    }
    sl_event_unref(dead);
    sl_free(x);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "dead-lettering %s from %s/%s failed: %s; requeued",
                sl_event_id(d->base.ev), s->channel, s->group,
                sl_status_str(st));
        send_settle(e, d, false);
        return st;
    }
    track_forget(e, s->qkey, d->uid);
    return send_settle(e, d, true);
}

static sl_status amqp_fetch(sl_subscription *base, sl_delivery **out,
                            size_t max, uint64_t timeout_ms, size_t *n)
{
    asub *s = (asub *)base;
    amqp_engine *e = s->eng;
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    size_t got = 0;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        if (atomic_load(&s->interrupted) || s->dead) {
            pthread_mutex_unlock(&s->mu);
            return SL_CLOSED;
        }
        if (s->down) {
            /* Reconnecting: the subscription comes back by itself. */
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0 &&
                s->down) {
                pthread_mutex_unlock(&s->mu);
                return SL_UNAVAILABLE;
            }
            continue;
        }
        size_t credit = s->prefetch > s->nflight ? s->prefetch - s->nflight : 0;
        if (credit == 0) {
            pthread_mutex_unlock(&s->mu);
            return SL_FULL;
        }
        size_t want = max < credit ? max : credit;
        if (s->nbuf == 0) {
            if (pthread_cond_timedwait(&s->cv, &s->mu, &until) != 0) {
                if (s->nbuf == 0) {
                    pthread_mutex_unlock(&s->mu);
                    return SL_EMPTY;
                }
            }
            /* The broker sends a burst of deliveries back to back: when
             * the first woke us, give the rest a moment to arrive. */
            if (s->nbuf < want) {
                struct timespec linger;
                sl__deadline_after(&linger, FETCH_LINGER_MS);
                while (s->nbuf < want && !s->dead &&
                       pthread_cond_timedwait(&s->cv, &s->mu, &linger) == 0) {
                }
            }
            continue;
        }
        adelivery *taken[64];
        size_t k = 0;
        while (k < want && k < 64 && s->nbuf > 0) {
            taken[k++] = buf_pop(s);
        }
        s->nlimbo += (uint32_t)k; /* until in flight or dead-lettered */
        pthread_mutex_unlock(&s->mu);
        uint64_t now = sl_clock_now_ms(e->clock);
        for (size_t i = 0; i < k; i++) {
            adelivery *d = taken[i];
            uint32_t released = track_released(e, s->qkey, d->uid);
            uint32_t raw = d->base_attempts + d->delivery_count;
            uint32_t attempt = raw >= released ? raw - released + 1 : 1;
            d->base.drv = &sl__amqp_driver;
            d->base.attempt = attempt;
            d->base.channel = s->channel;
            d->base.group = s->group;
            uint64_t deadline = sl_event_deadline_ms(d->base.ev);
            if (deadline != 0 && deadline <= now) {
                dead_letter(e, d, SL_DEAD_EXPIRED, attempt - 1,
                            "deadline passed before delivery");
                delivery_free(d);
                limbo_done(s);
                continue;
            }
            if (attempt > s->max_attempts) {
                dead_letter(e, d, SL_DEAD_MAX_ATTEMPTS, s->max_attempts,
                            "delivery limit reached: the handler crashed or "
                            "timed out on every attempt");
                delivery_free(d);
                limbo_done(s);
                continue;
            }
            pthread_mutex_lock(&s->mu);
            s->nlimbo--;
            flight_add(s, d);
            pthread_mutex_unlock(&s->mu);
            out[got++] = &d->base;
        }
        if (got > 0) {
            *n = got;
            return SL_OK;
        }
        pthread_mutex_lock(&s->mu);
    }
}

static void amqp_interrupt(sl_subscription *base)
{
    asub *s = (asub *)base;
    amqp_engine *e = s->eng;
    /* Cancel the consumer before anything is settled (cancel_consumer).
     * Never waits: if the request queue is full, unsubscribe cancels. The
     * request goes first, so releases that follow the interrupt reach the
     * broker after the cancel. */
    if (!atomic_exchange(&s->cancel_asked, true)) {
        areq *r = sl_calloc(1, sizeof *r);
        if (r != NULL) {
            r->kind = REQ_CANCEL;
            r->ch = s->ch;
            if (sl_queue_push(e->reqs, r, 0) == SL_OK) {
                wake_io(e);
            } else {
                sl_free(r);
            }
        }
    }
    pthread_mutex_lock(&s->mu);
    atomic_store(&s->interrupted, true);
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static uint32_t amqp_in_flight(const sl_subscription *base)
{
    asub *s = (asub *)base;
    pthread_mutex_lock(&s->mu);
    uint32_t n = s->nflight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

/* A round trip on @p ch: the broker has handled every ack and nack sent
 * on it before (basic.qos is answered in order). */
static void barrier(amqp_engine *e, asub *s)
{
    pthread_mutex_lock(&s->mu);
    bool dead = s->dead || s->down;
    pthread_mutex_unlock(&s->mu);
    if (!dead) {
        amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
        check_rpc(e, s->ch);
    }
}

/* Take the buffered deliveries of @p s: they were never handed out, so
 * their return is a release, not an attempt. */
static void release_buffered(amqp_engine *e, asub *s)
{
    pthread_mutex_lock(&s->mu);
    adelivery *b = s->buf_head;
    s->buf_head = s->buf_tail = NULL;
    s->nbuf = 0;
    pthread_mutex_unlock(&s->mu);
    for (adelivery *d = b, *next; d; d = next) {
        next = d->next;
        track_release(e, s->qkey, d->uid);
        delivery_free(d);
    }
}

static sl_status do_unsubscribe(amqp_engine *e, void *arg)
{
    asub *s = arg;
    if (s->rebind) {
        /* Cancelled by the broker, not subscribed again yet: its channel
         * may still be open. */
        if (e->conn != NULL && !e->dead && !s->ch_closed) {
            amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
            drain_enqueued(e);
        }
        s->ch_closed = true;
        clear_rebind(e, s);
    }
    pthread_mutex_lock(&s->mu);
    bool dead = s->dead || s->down; /* down: runs while disconnected */
    adelivery *fl = s->flight;
    s->flight = NULL;
    s->nflight = 0;
    pthread_mutex_unlock(&s->mu);
    /* Unsettled deliveries count, as after a crash. */
    for (adelivery *d = fl, *next; d; d = next) {
        next = d->next;
        delivery_free(d);
    }
    if (!dead) {
        /* Stop deliveries, unless the interrupt did; those sent before
         * cancel-ok are read into the buffer. */
        cancel_consumer(e, s->ch);
        pthread_mutex_lock(&s->mu);
        dead = s->dead || s->down;
        pthread_mutex_unlock(&s->mu);
    }
    if (!dead) {
        release_buffered(e, s);
        /* Everything unacked goes back now, and the round trip makes sure
         * the channel handled it before we report done. A quorum queue may
         * still hand over a delivery or two after cancel-ok: the sub stays
         * registered until the channel is closed so they are seen. */
        amqp_basic_nack(e->conn, s->ch, 0, 1, 1);
        note_return(e);
        amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
        check_rpc(e, s->ch);
        amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
        drain_enqueued(e);
    }
    pthread_mutex_lock(&e->mu);
    for (asub **pp = &e->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    release_buffered(e, s);
    return SL_OK;
}

static void amqp_unsubscribe(sl_subscription *base)
{
    asub *s = (asub *)base;
    amqp_engine *e = s->eng;
    /* Unlinking runs on the I/O thread (also while it reconnects), which
     * walks the list unlocked; only once it is gone may this thread. */
    sl_status st;
    while ((st = io_call_ex(e, do_unsubscribe, s, true)) != SL_OK) {
        pthread_mutex_lock(&e->mu);
        bool gone = e->io_exited;
        pthread_mutex_unlock(&e->mu);
        if (gone) {
            break;
        }
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (st != SL_OK) {
        /* The I/O thread is gone: the broker requeued everything. */
        pthread_mutex_lock(&e->mu);
        for (asub **pp = &e->subs; *pp; pp = &(*pp)->next) {
            if (*pp == s) {
                *pp = s->next;
                break;
            }
        }
        pthread_mutex_unlock(&e->mu);
        for (adelivery *d = s->buf_head, *next; d; d = next) {
            next = d->next;
            delivery_free(d);
        }
        for (adelivery *d = s->flight, *next; d; d = next) {
            next = d->next;
            delivery_free(d);
        }
    }
    sub_free(s);
}

typedef struct retry_args {
    const char *queue;
    uint64_t delay_ms;
    char *name; /* out */
} retry_args;

static sl_status do_declare_retry(amqp_engine *e, void *arg)
{
    retry_args *a = arg;
    char ms[32];
    snprintf(ms, sizeof ms, "%" PRIu64, a->delay_ms);
    a->name = cat4(a->queue, "/retry/", ms, "");
    if (a->name == NULL) {
        return SL_NOMEM;
    }
    declare_args qa = {.queue = a->name,
                       .dlx = "",
                       .dl_rkey = a->queue,
                       .ttl_ms = a->delay_ms};
    return do_declare_queue(e, &qa);
}

/* Republish @p d's event to wait @p delay_ms (or at once to the tail of
 * the group's queue), carrying its attempts; then ack the original. */
static sl_status retry_later(amqp_engine *e, adelivery *d, uint64_t delay_ms)
{
    asub *s = d->sub;
    const char *rkey = s->queue;
    retry_args ra = {.queue = s->queue, .delay_ms = delay_ms};
    sl_status st = SL_OK;
    if (delay_ms > 0) {
        st = io_call(e, do_declare_retry, &ra);
        if (st == SL_OK) {
            rkey = ra.name;
            pthread_mutex_lock(&e->mu);
            agroup *g = group_find_locked(e, s->queue);
            if (g != NULL) {
                bool known = false;
                for (size_t i = 0; i < g->ndelays; i++) {
                    known = known || g->delays[i] == delay_ms;
                }
                if (!known && g->ndelays < 16) {
                    g->delays[g->ndelays++] = delay_ms;
                }
            }
            pthread_mutex_unlock(&e->mu);
        }
    }
    apub *p = NULL;
    if (st == SL_OK) {
        st = pub_build(d->base.ev, "", rkey, d->uid ? d->uid : next_uid(e),
                       d->base.attempt, NULL, &p);
    }
    if (st == SL_OK) {
        st = submit_sync(e, p);
    }
    sl_free(ra.name);
    if (st != SL_OK) {
        /* Not republished: give it back now rather than lose it. */
        send_settle(e, d, false);
        return st;
    }
    track_forget(e, s->qkey, d->uid);
    return send_settle(e, d, true);
}

static sl_status amqp_settle(sl_delivery *base, sl_settle_op op,
                             uint64_t delay_ms, sl_dead_reason reason,
                             const char *error)
{
    adelivery *d = (adelivery *)base;
    asub *s = d->sub;
    amqp_engine *e = s->eng;
    pthread_mutex_lock(&s->mu);
    flight_remove(s, d);
    s->nlimbo++;
    pthread_mutex_unlock(&s->mu);
    sl_status st = SL_OK;
    switch (op) {
    case SL_SETTLE_ACK:
        track_forget(e, s->qkey, d->uid);
        st = send_settle(e, d, true);
        break;
    case SL_SETTLE_RELEASE:
        track_release(e, s->qkey, d->uid);
        st = send_settle(e, d, false);
        break;
    case SL_SETTLE_RETRY:
        st = retry_later(e, d, delay_ms);
        break;
    case SL_SETTLE_DEAD:
        st = dead_letter(e, d, reason, d->base.attempt, error);
        break;
    }
    delivery_free(d);
    limbo_done(s);
    return st == SL_UNAVAILABLE || st == SL_TIMEOUT ? SL_CLOSED : st;
}

/* Ack several deliveries: one basic.ack with multiple per subscription
 * when no other delivery of its channel with a lower tag is still
 * unsettled (the deliveries of one channel carry increasing tags, and a
 * multiple ack settles every unacked one up to its tag); otherwise one
 * basic.ack each. Deliveries of a lost connection are refused (SL_CLOSED)
 * as in settle. */
static sl_status amqp_ack_many(sl_delivery **ds, size_t n)
{
    sl_status first = SL_OK;
    size_t i = 0;
    while (i < n) {
        adelivery *d0 = (adelivery *)ds[i];
        asub *s = d0->sub;
        amqp_engine *e = s->eng;
        /* The run of deliveries of the same subscription and connection. */
        size_t j = i + 1;
        while (j < n && ((adelivery *)ds[j])->sub == s &&
               ((adelivery *)ds[j])->gen == d0->gen) {
            j++;
        }
        uint64_t top = 0;
        pthread_mutex_lock(&s->mu);
        for (size_t k = i; k < j; k++) {
            adelivery *d = (adelivery *)ds[k];
            flight_remove(s, d);
            top = d->tag > top ? d->tag : top;
        }
        bool dead = s->dead || s->down || d0->gen != s->gen;
        bool contiguous = s->nlimbo == 0;
        for (adelivery *o = s->flight; o && contiguous; o = o->next) {
            contiguous = !(o->gen == d0->gen && o->tag < top);
        }
        pthread_mutex_unlock(&s->mu);
        for (size_t k = i; k < j; k++) {
            track_forget(e, s->qkey, ((adelivery *)ds[k])->uid);
        }
        sl_status st = SL_OK;
        if (dead) {
            st = SL_CLOSED; /* the broker requeued them with the channel */
        } else if (contiguous && j - i > 1) {
            areq *r = sl_calloc(1, sizeof *r);
            if (r == NULL) {
                st = SL_NOMEM;
            } else {
                r->kind = REQ_ACK_MULTIPLE;
                r->ch = d0->ch;
                r->tag = top;
                r->gen = d0->gen;
                if (push_req(e, r) != SL_OK) {
                    sl_free(r);
                    st = SL_CLOSED;
                }
            }
        } else {
            for (size_t k = i; k < j; k++) {
                sl_status one = send_settle(e, (adelivery *)ds[k], true);
                st = st == SL_OK ? one : st;
            }
        }
        for (size_t k = i; k < j; k++) {
            delivery_free((adelivery *)ds[k]);
        }
        if (first == SL_OK) {
            first = st;
        }
        i = j;
    }
    return first;
}

/* ---- the I/O thread ---------------------------------------------------- */

/* Serve the connection until it is lost (false) or the engine stops
 * (true). */
static void rebind_due(amqp_engine *e);

static bool run_connected(amqp_engine *e)
{
    void *items[64];
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool stop = e->stopping &&
                    (e->npending == 0 || sl_time_mono_ms() >= e->stop_by_ms);
        bool dead = e->dead;
        pthread_mutex_unlock(&e->mu);
        if (dead) {
            return false;
        }
        size_t n = sl_queue_pop_many(e->reqs, items, 64, 0);
        if (n > 0) {
            send_begin(e);
            for (size_t i = 0; i < n; i++) {
                handle_req(e, items[i]);
            }
            send_end(e);
            wake_fetchers(e); /* RPCs may have buffered deliveries */
        }
        drain_enqueued(e);
        /* Read whatever the socket already has, without waiting. Not a
         * zero timeout: rabbitmq-c then never compares its deadline with
         * the broker's heartbeat (a zero deadline always comes first), so
         * a silent broker would go unnoticed; with 1 us it does, and
         * sends our heartbeats when due. */
        bool got = false;
        /* Reading never waits here, but rabbitmq-c may send a heartbeat,
         * which waits like any write. */
        send_begin(e);
        for (int k = 0; k < 256; k++) {
            amqp_frame_t f;
            struct timeval tv = {0, 1};
            int rc = amqp_simple_wait_frame_noblock(e->conn, &f, &tv);
            if (rc == AMQP_STATUS_TIMEOUT) {
                break;
            }
            if (rc == AMQP_STATUS_HEARTBEAT_TIMEOUT) {
                sl_logf(SL_LOG_WARN, LOG,
                        "RabbitMQ at %s sent nothing for two heartbeat "
                        "intervals (%u s each)",
                        e->host, (unsigned)amqp_get_heartbeat(e->conn));
            }
            if (rc != AMQP_STATUS_OK) {
                pthread_mutex_lock(&e->mu);
                e->dead = true;
                pthread_mutex_unlock(&e->mu);
                break;
            }
            handle_frame(e, &f);
            got = true;
        }
        send_end(e);
        wake_fetchers(e);
        if (e->nrebind > 0 && !e->dead) {
            rebind_due(e);
        }
        if (!amqp_frames_enqueued(e->conn) && !amqp_data_in_buffer(e->conn)) {
            amqp_maybe_release_buffers(e->conn);
        }
        if (stop) {
            return true;
        }
        if (n > 0 || got) {
            continue;
        }
        struct pollfd pfd[2] = {
            {.fd = amqp_get_sockfd(e->conn), .events = POLLIN},
            {.fd = e->wake[0], .events = POLLIN},
        };
        atomic_store(&e->io_sleeping, true);
        if (sl_queue_len(e->reqs) == 0) {
            poll(pfd, 2, 100);
        }
        atomic_store(&e->io_sleeping, false);
        if (pfd[1].revents & POLLIN) {
            char buf[256];
            while (read(e->wake[0], buf, sizeof buf) > 0) {
            }
        }
    }
}

/* Every subscription loses its channel: buffered deliveries (never handed
 * out; the broker requeues them, so their return is a release) are
 * dropped; handed-out ones stay with their holders, whose settle is
 * refused (their generation is gone). */
static void subs_down(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    asub *list = e->subs;
    for (asub *s = list; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        s->down = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
        s->ch_closed = true; /* I/O thread only */
    }
    pthread_mutex_unlock(&e->mu);
    /* Only this thread adds or removes subscriptions while it runs. */
    for (asub *s = list; s; s = s->next) {
        release_buffered(e, s);
    }
}

/* The connection is lost: what is unconfirmed has an unknown outcome. */
static void go_down(amqp_engine *e)
{
    sl_logf(SL_LOG_WARN, LOG,
            "connection to RabbitMQ at %s lost; "
            "reconnecting",
            e->host);
    pthread_mutex_lock(&e->mu);
    e->dead = true;
    e->blocked = false;
    pthread_mutex_unlock(&e->mu);
    fail_unconfirmed(e, SL_TIMEOUT);
    subs_down(e);
    if (e->conn != NULL) {
        destroy_conn(e, e->conn);
        e->conn = NULL;
    }
}

/* Requests while disconnected: calls marked "always" run (they cope with
 * down subscriptions), the rest fail. Returns false once the engine
 * stops, true after @p ms. */
static bool down_wait(amqp_engine *e, uint64_t ms)
{
    uint64_t until = sl_time_mono_ms() + ms;
    void *items[64];
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool stop = e->stopping;
        pthread_mutex_unlock(&e->mu);
        if (stop) {
            return false;
        }
        size_t n = sl_queue_pop_many(e->reqs, items, 64, 0);
        for (size_t i = 0; i < n; i++) {
            areq *r = items[i];
            if (r->kind == REQ_CALL && r->call->always) {
                handle_req(e, r);
            } else {
                fail_req(e, r);
            }
        }
        uint64_t now = sl_time_mono_ms();
        if (now >= until) {
            return true;
        }
        if (n == 0) {
            struct pollfd pfd = {.fd = e->wake[0], .events = POLLIN};
            uint64_t left = until - now;
            atomic_store(&e->io_sleeping, true);
            if (sl_queue_len(e->reqs) == 0) {
                poll(&pfd, 1, left > 100 ? 100 : (int)left);
            }
            atomic_store(&e->io_sleeping, false);
            if (pfd.revents & POLLIN) {
                char buf[256];
                while (read(e->wake[0], buf, sizeof buf) > 0) {
                }
            }
        }
    }
}

/* Declare again what this engine declared: exchanges, group and
 * dead-letter queues with their bindings, retry queues. */
static sl_status redeclare(amqp_engine *e, sl_diag *diag)
{
    pthread_mutex_lock(&e->mu);
    achan *chans = e->chans;
    aqueue *queues = e->queues;
    pthread_mutex_unlock(&e->mu);
    sl_status st = SL_OK;
    for (achan *c = chans; c && st == SL_OK; c = c->next) {
        pthread_mutex_lock(&e->mu);
        bool mine = c->declared_here;
        pthread_mutex_unlock(&e->mu);
        if (mine) {
            declare_args a = {.exchange = c->exchange, .diag = diag};
            st = do_declare_exchange(e, &a);
        }
    }
    for (aqueue *q = queues; q && st == SL_OK; q = q->next) {
        declare_args a = {.exchange = q->exchange,
                          .queue = q->queue,
                          .dlx = q->dlx,
                          .max_length = q->max_length,
                          .max_bytes = q->max_bytes,
                          .delivery_limit = q->delivery_limit,
                          .diag = diag};
        st = do_declare_queue(e, &a);
    }
    pthread_mutex_lock(&e->mu);
    agroup *groups = e->groups;
    pthread_mutex_unlock(&e->mu);
    for (agroup *g = groups; g && st == SL_OK; g = g->next) {
        uint64_t delays[16];
        pthread_mutex_lock(&e->mu);
        size_t n = g->ndelays;
        memcpy(delays, g->delays, sizeof delays);
        pthread_mutex_unlock(&e->mu);
        for (size_t i = 0; i < n && st == SL_OK; i++) {
            retry_args ra = {.queue = g->queue, .delay_ms = delays[i]};
            st = do_declare_retry(e, &ra);
            sl_free(ra.name);
        }
    }
    return st;
}

/* The reply of an RPC on @p s's channel. Unlike check_rpc, a channel the
 * broker closes (a missing queue: SL_NOT_FOUND) leaves the subscription
 * alive, without a channel, for the caller to try again. */
static sl_status check_sub_rpc(amqp_engine *e, asub *s)
{
    amqp_rpc_reply_t r = amqp_get_rpc_reply(e->conn);
    uint16_t code = 0;
    sl_status st = from_reply(r, &code);
    if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
        r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        amqp_channel_close_ok_t ok = {0};
        amqp_send_method(e->conn, s->ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
        s->ch_closed = true;
    } else if (st != SL_OK) {
        pthread_mutex_lock(&e->mu);
        e->dead = true; /* the connection is gone */
        pthread_mutex_unlock(&e->mu);
        st = SL_UNAVAILABLE;
    }
    drain_enqueued(e);
    return st;
}

/* Open @p s's channel, set its prefetch and consume from its queue; its
 * deliveries belong to generation @p gen. On failure the subscription
 * stays down. */
static sl_status bind_sub(amqp_engine *e, asub *s, uint32_t gen)
{
    sl_status st = SL_OK;
    if (s->ch_closed) {
        if ((st = open_channel(e, s->ch)) != SL_OK) {
            return st;
        }
        s->ch_closed = false;
    }
    amqp_basic_qos(e->conn, s->ch, 0, (uint16_t)s->prefetch, 0);
    if ((st = check_sub_rpc(e, s)) != SL_OK) {
        return st;
    }
    /* Deliveries may follow consume-ok at once: they belong to the new
     * generation. */
    pthread_mutex_lock(&s->mu);
    s->gen = gen;
    s->down = false;
    s->cancelled = false;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    amqp_basic_consume_ok_t *ok =
        amqp_basic_consume(e->conn, s->ch, bytes_of(s->queue),
                           amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
    if (ok != NULL) {
        char *tag = dup_bytes(ok->consumer_tag);
        if (tag == NULL) {
            return SL_NOMEM;
        }
        pthread_mutex_lock(&e->mu);
        sl_free(s->ctag);
        s->ctag = tag;
        pthread_mutex_unlock(&e->mu);
    }
    if ((st = check_sub_rpc(e, s)) != SL_OK) {
        pthread_mutex_lock(&s->mu);
        s->down = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    return st;
}

/* Consume again on every live subscription (not interrupted, not closed
 * by the broker). A subscription whose queue is missing (deleted, and not
 * declared by this engine, so not declared again) does not fail the
 * reconnect: it waits for its queue (rebind). */
static sl_status resubscribe(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    asub *list = e->subs;
    uint32_t gen = e->gen;
    pthread_mutex_unlock(&e->mu);
    for (asub *s = list; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        bool skip = s->dead || atomic_load(&s->interrupted) ||
                    atomic_load(&s->cancel_asked);
        pthread_mutex_unlock(&s->mu);
        if (skip) {
            continue;
        }
        sl_status st = bind_sub(e, s, gen);
        if (st == SL_OK) {
            clear_rebind(e, s);
        } else if (st == SL_NOT_FOUND && !e->dead) {
            set_rebind(e, s, RECONNECT_MIN_MS);
        } else {
            return st;
        }
    }
    return SL_OK;
}

/* Declare @p s's queue again if this engine declared it (with its
 * exchange and binding): after basic.cancel it may have been deleted. */
static sl_status redeclare_queue_of(amqp_engine *e, asub *s)
{
    declare_args a = {0};
    bool known = false;
    pthread_mutex_lock(&e->mu);
    for (aqueue *q = e->queues; q && !known; q = q->next) {
        if (strcmp(q->queue, s->queue) == 0) {
            a = (declare_args){.exchange = q->exchange,
                               .queue = q->queue,
                               .dlx = q->dlx,
                               .max_length = q->max_length,
                               .max_bytes = q->max_bytes,
                               .delivery_limit = q->delivery_limit};
            known = true;
        }
    }
    achan *c = chan_find_locked(e, s->channel);
    bool mine = c != NULL && c->declared_here;
    pthread_mutex_unlock(&e->mu);
    if (!known) {
        return SL_OK; /* not ours to create: consume says if it exists */
    }
    sl_status st = SL_OK;
    if (mine) {
        declare_args x = {.exchange = c->exchange};
        st = do_declare_exchange(e, &x);
    }
    return st == SL_OK ? do_declare_queue(e, &a) : st;
}

/* Subscribe again, on a fresh channel, where the broker cancelled the
 * consumer (on_broker_cancel): close the old channel (the broker returns
 * what it held, buffered deliveries count as releases, handed-out ones
 * can no longer be settled: their generation is gone), declare the queue
 * again if this engine declared it, consume. On failure try again with
 * backoff (100 ms doubling to 10 s), logging the first failure. */
static void rebind_one(amqp_engine *e, asub *s)
{
    if (!s->ch_closed) {
        amqp_channel_close(e->conn, s->ch, AMQP_REPLY_SUCCESS);
        s->ch_closed = true;
        drain_enqueued(e);
        pthread_mutex_lock(&e->mu);
        bool dead = e->dead;
        pthread_mutex_unlock(&e->mu);
        if (dead) {
            return;
        }
    }
    release_buffered(e, s);
    sl_status st = redeclare_queue_of(e, s);
    if (st == SL_OK) {
        pthread_mutex_lock(&e->mu);
        uint32_t gen = ++e->gen;
        pthread_mutex_unlock(&e->mu);
        st = bind_sub(e, s, gen);
    }
    if (st == SL_OK) {
        clear_rebind(e, s);
        sl_logf(SL_LOG_INFO, LOG, "subscribed again to queue %s (group '%s')",
                s->queue, s->group);
        return;
    }
    if (e->dead || st == SL_UNAVAILABLE) {
        return; /* the reconnect subscribes again */
    }
    uint32_t delay = s->rebind_delay_ms ? s->rebind_delay_ms * 2
                                        : RECONNECT_MIN_MS;
    delay = delay > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay;
    if (!s->rebind_warned) {
        sl_logf(SL_LOG_WARN, LOG,
                "cannot subscribe again to queue %s (group '%s'): %s; "
                "trying again with backoff",
                s->queue, s->group,
                st == SL_NOT_FOUND ? "it does not exist and this process "
                                     "did not declare it"
                                   : sl_status_str(st));
    }
    set_rebind(e, s, delay);
    s->rebind_warned = true;
}

/* Subscriptions whose consumer the broker cancelled, when due. */
static void rebind_due(amqp_engine *e)
{
    asub *due[64];
    size_t n = 0;
    uint64_t now = sl_time_mono_ms();
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s && n < 64; s = s->next) {
        if (s->rebind && now >= s->rebind_at_ms) {
            due[n++] = s;
        }
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n && !e->dead; i++) {
        pthread_mutex_lock(&due[i]->mu);
        bool gone = due[i]->dead || atomic_load(&due[i]->interrupted) ||
                    atomic_load(&due[i]->cancel_asked);
        pthread_mutex_unlock(&due[i]->mu);
        if (gone) {
            clear_rebind(e, due[i]); /* unsubscribe closes its channel */
        } else {
            rebind_one(e, due[i]);
        }
    }
}

static sl_status connect_once(amqp_engine *e, sl_diag *diag);

/* Reconnect with jittered exponential backoff until connected (true) or
 * the engine stops (false). */
static bool reconnect(amqp_engine *e)
{
    uint64_t delay = RECONNECT_MIN_MS;
    for (uint32_t attempt = 1;; attempt++) {
        e->rng ^= e->rng << 13;
        e->rng ^= e->rng >> 7;
        e->rng ^= e->rng << 17;
        /* Half the delay plus a random part of the other half, so that
         * many clients do not come back in step. */
        uint64_t wait = delay / 2 + e->rng % (delay / 2 + 1);
        if (!down_wait(e, wait)) {
            return false;
        }
        sl_diag diag = {0};
        sl_status st = connect_once(e, &diag);
        if (st == SL_OK && (st = redeclare(e, &diag)) != SL_OK) {
            char why[sizeof diag.msg];
            snprintf(why, sizeof why, "%s",
                     diag.msg[0] ? diag.msg : sl_status_str(st));
            sl_diag_set(&diag, st, "declaring the topology again: %s", why);
        }
        if (st == SL_OK && (st = resubscribe(e)) != SL_OK) {
            sl_diag_set(&diag, st, "subscribing again: %s", sl_status_str(st));
        }
        if (st == SL_OK) {
            pthread_mutex_lock(&e->mu);
            e->dead = false;
            pthread_mutex_unlock(&e->mu);
            sl_logf(SL_LOG_INFO, LOG,
                    "reconnected to RabbitMQ at %s (attempt %" PRIu32 ")",
                    e->host, attempt);
            return true;
        }
        sl_logf(attempt == 1 ? SL_LOG_WARN : SL_LOG_DEBUG, LOG,
                "reconnect attempt %" PRIu32 " to %s failed: %s; next in "
                "about %" PRIu64 " ms",
                attempt, e->host, diag.msg[0] ? diag.msg : sl_status_str(st),
                delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2);
        subs_down(e);
        if (e->conn != NULL) {
            destroy_conn(e, e->conn);
            e->conn = NULL;
        }
        delay = delay * 2 > RECONNECT_MAX_MS ? RECONNECT_MAX_MS : delay * 2;
    }
}

static void *io_main(void *arg)
{
    amqp_engine *e = arg;
    while (!run_connected(e)) {
        go_down(e);
        if (!reconnect(e)) {
            break;
        }
    }
    /* The engine closes: nothing more will be confirmed; what is
     * unconfirmed has an unknown outcome. */
    pthread_mutex_lock(&e->mu);
    e->dead = true;
    pthread_mutex_unlock(&e->mu);
    fail_unconfirmed(e, SL_TIMEOUT);
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s; s = s->next) {
        pthread_mutex_lock(&s->mu);
        s->dead = true;
        pthread_cond_broadcast(&s->cv);
        pthread_mutex_unlock(&s->mu);
    }
    pthread_mutex_unlock(&e->mu);
    void *item;
    while (sl_queue_pop(e->reqs, &item, 0) == SL_OK) {
        fail_req(e, item);
    }
    pthread_mutex_lock(&e->mu);
    e->io_exited = true;
    pthread_mutex_unlock(&e->mu);
    /* A call pushed just before io_exited was set is failed by close. */
    return NULL;
}

/* ---- inspection
 * ---------------------------------------------------------------------- */

typedef struct depth_args {
    const char *queue;
    uint64_t qkey;
    uint64_t delays[16];
    size_t ndelays;
    sl_depth out;
} depth_args;

static void barrier_queue(amqp_engine *e, uint64_t qkey)
{
    asub *list[256];
    size_t n = 0;
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s && n < 256; s = s->next) {
        if (s->qkey == qkey) {
            list[n++] = s;
        }
    }
    pthread_mutex_unlock(&e->mu);
    for (size_t i = 0; i < n; i++) {
        barrier(e, list[i]);
    }
}

/* A quorum queue applies a return (nack with requeue) once its Raft log
 * entry is written, after the channel answered: counts read right after a
 * return may not show it yet. Let the last return settle first. */
static void await_returns(amqp_engine *e)
{
    pthread_mutex_lock(&e->mu);
    uint64_t last = e->last_return_ms;
    pthread_mutex_unlock(&e->mu);
    uint64_t now = sl_time_mono_ms();
    if (last != 0 && now < last + RETURN_SETTLE_MS) {
        uint64_t ms = last + RETURN_SETTLE_MS - now;
        struct timespec ts = {(time_t)(ms / 1000),
                              (long)(ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

/* The broker's ready count of @p a's queue plus what this engine's
 * subscriptions buffer, and what they have handed out. */
static sl_status sample_depth(amqp_engine *e, depth_args *a, uint64_t *ready,
                              uint64_t *in_flight)
{
    /* The channels have handled the acks and nacks sent before; then the
     * broker's count; then a second round trip, so that deliveries the
     * queue handed our subscriptions before it counted are in their
     * buffers. */
    barrier_queue(e, a->qkey);
    declare_args qa = {.queue = a->queue, .passive = true};
    sl_status st = do_declare_queue(e, &qa);
    if (st != SL_OK) {
        return st;
    }
    barrier_queue(e, a->qkey);
    *ready = qa.message_count;
    *in_flight = 0;
    pthread_mutex_lock(&e->mu);
    for (asub *s = e->subs; s; s = s->next) {
        if (s->qkey == a->qkey) {
            pthread_mutex_lock(&s->mu);
            *ready += s->nbuf;
            *in_flight += s->nflight;
            pthread_mutex_unlock(&s->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

static sl_status do_depth(amqp_engine *e, void *arg)
{
    depth_args *a = arg;
    await_returns(e);
    /* A quorum queue applies acks through its Raft log, after the channel
     * answered: a count taken before an ack is applied, plus deliveries
     * the queue checked out to us once it was, counts those twice. Two
     * samples that agree are consistent; a few tries, then the last. */
    uint64_t ready = 0, in_flight = 0, delayed = 0;
    sl_status st = sample_depth(e, a, &ready, &in_flight);
    for (int i = 0; i < DEPTH_TRIES && st == SL_OK; i++) {
        uint64_t r2 = 0, f2 = 0;
        st = sample_depth(e, a, &r2, &f2);
        bool same = r2 == ready && f2 == in_flight;
        ready = r2;
        in_flight = f2;
        if (same) {
            break;
        }
        struct timespec ts = {0, 5 * 1000000L};
        nanosleep(&ts, NULL);
    }
    if (st != SL_OK) {
        return st;
    }
    for (size_t i = 0; i < a->ndelays; i++) {
        char ms[32];
        snprintf(ms, sizeof ms, "%" PRIu64, a->delays[i]);
        char *rq = cat4(a->queue, "/retry/", ms, "");
        if (rq == NULL) {
            return SL_NOMEM;
        }
        declare_args ra = {.queue = rq, .passive = true};
        if (do_declare_queue(e, &ra) == SL_OK) {
            delayed += ra.message_count;
        }
        sl_free(rq);
    }
    a->out =
        (sl_depth){.ready = ready, .delayed = delayed, .in_flight = in_flight};
    return SL_OK;
}

static sl_status amqp_depth(sl_engine *base, const char *channel,
                            const char *group, sl_depth *out)
{
    amqp_engine *e = (amqp_engine *)base;
    char *q = queue_name(e, channel, group);
    if (q == NULL) {
        return SL_NOMEM;
    }
    depth_args a = {.queue = q, .qkey = fnv1a(q)};
    pthread_mutex_lock(&e->mu);
    agroup *g = group_find_locked(e, q);
    if (g != NULL) {
        a.ndelays = g->ndelays;
        memcpy(a.delays, g->delays, sizeof a.delays);
    }
    pthread_mutex_unlock(&e->mu);
    sl_status st = io_call(e, do_depth, &a);
    sl_free(q);
    if (st == SL_OK) {
        *out = a.out;
    }
    return st;
}

typedef struct browse_args {
    const char *queue;
    size_t max;
    sl_event **evs;
    size_t n;
} browse_args;

static sl_status do_browse(amqp_engine *e, void *arg)
{
    browse_args *a = arg;
    pthread_mutex_lock(&e->mu);
    if (e->next_ch == 0) {
        e->next_ch = FIRST_SUB_CH;
    }
    uint16_t ch = e->next_ch++;
    pthread_mutex_unlock(&e->mu);
    sl_status st = open_channel(e, ch);
    if (st != SL_OK) {
        return st;
    }
    while (a->max == 0 || a->n < a->max) {
        amqp_rpc_reply_t r = amqp_basic_get(e->conn, ch, bytes_of(a->queue), 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            uint16_t code;
            st = from_reply(r, &code);
            if (r.reply_type == AMQP_RESPONSE_SERVER_EXCEPTION &&
                r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
                amqp_channel_close_ok_t ok = {0};
                amqp_send_method(e->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD,
                                 &ok);
                drain_enqueued(e);
                return st;
            }
            break;
        }
        if (r.reply.id != AMQP_BASIC_GET_OK_METHOD) {
            break; /* get-empty */
        }
        amqp_message_t m;
        r = amqp_read_message(e->conn, ch, &m, 0);
        if (r.reply_type != AMQP_RESPONSE_NORMAL) {
            st = SL_UNAVAILABLE;
            break;
        }
        sl_event *ev = NULL;
        if (message_to_event(&m, a->queue, &ev) == SL_OK) {
            sl_event **grown = sl_realloc(a->evs, (a->n + 1) * sizeof *grown);
            if (grown == NULL) {
                sl_event_unref(ev);
                amqp_destroy_message(&m);
                st = SL_NOMEM;
                break;
            }
            a->evs = grown;
            a->evs[a->n++] = ev;
        }
        amqp_destroy_message(&m);
    }
    /* Give everything back, and wait until the broker has it. */
    amqp_basic_nack(e->conn, ch, 0, 1, 1);
    note_return(e);
    amqp_basic_qos(e->conn, ch, 0, 1, 0);
    check_rpc(e, ch);
    amqp_channel_close(e->conn, ch, AMQP_REPLY_SUCCESS);
    drain_enqueued(e);
    return st;
}

static sl_status amqp_browse(sl_engine *base, const char *channel,
                             const char *group, size_t max, sl_browse_fn fn,
                             void *ctx)
{
    amqp_engine *e = (amqp_engine *)base;
    char *q = queue_name(e, channel, group);
    if (q == NULL) {
        return SL_NOMEM;
    }
    browse_args a = {.queue = q, .max = max};
    sl_status st = io_call(e, do_browse, &a);
    for (size_t i = 0; i < a.n; i++) {
        if (st == SL_OK && !fn(a.evs[i], 0, ctx)) {
            st = SL_EMPTY; /* stopped by the callback */
        }
        sl_event_unref(a.evs[i]);
    }
    sl_free(a.evs);
    sl_free(q);
    return st == SL_EMPTY ? SL_OK : st;
}

static bool amqp_is_ready(const sl_engine *base)
{
    amqp_engine *e = (amqp_engine *)base;
    pthread_mutex_lock(&e->mu);
    bool ok = !e->dead && !e->stopping;
    pthread_mutex_unlock(&e->mu);
    return ok;
}

/* ---- open / close
 * ---------------------------------------------------------------------- */

static void amqp_close(sl_engine *base);

/* A URL parameter's numeric value in [0, max]. */
static sl_status param_uint(const char *key, const char *val, uint64_t max,
                            uint64_t *out, sl_diag *diag)
{
    char *endp = NULL;
    errno = 0;
    unsigned long long v = strtoull(val, &endp, 10);
    if (val[0] == '\0' || val[0] == '-' || *endp != '\0' || errno != 0 ||
        v > max) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: %s must be a whole number from 0 to "
                           "%" PRIu64,
                           key, max);
    }
    *out = v;
    return SL_OK;
}

/* A file the engine reads (a certificate or a key) must be readable at
 * open, so that a wrong path fails start-up with its name. */
static sl_status param_file(const char *key, const char *val, char **out,
                            sl_diag *diag)
{
    if (val[0] == '\0') {
        return sl_diag_set(diag, SL_INVALID, "engine URL: %s names no file",
                           key);
    }
    if (access(val, R_OK) != 0) {
        return sl_diag_set(diag, SL_CONFIG, "engine URL: %s file %s: %s", key,
                           val, strerror(errno));
    }
    sl_free(*out);
    return (*out = sl_strdup(val)) ? SL_OK : SL_NOMEM;
}

/* "amqp[s]://user:pass@host:port/vhost?ns=x&heartbeat=S&...":
 * docs/engines/rabbitmq.md lists the parameters. */
static sl_status parse_query(amqp_engine *e, const char *q, sl_diag *diag)
{
    const char *p = q;
    while (p != NULL && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        char kv[1024];
        if (len >= sizeof kv) {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL parameter too long");
        }
        memcpy(kv, p, len);
        kv[len] = '\0';
        char *eq = strchr(kv, '=');
        const char *val = eq ? eq + 1 : "";
        if (eq) {
            *eq = '\0';
        }
        sl_status st = SL_OK;
        uint64_t n = 0;
        if (strcmp(kv, "ns") == 0 && val[0] != '\0') {
            for (const char *c = val; *c; c++) {
                if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
                    return sl_diag_set(diag, SL_INVALID,
                                       "engine URL: ns must be "
                                       "[A-Za-z0-9_-]");
                }
            }
            sl_free(e->ns);
            if ((e->ns = sl_strdup(val)) == NULL) {
                return SL_NOMEM;
            }
        } else if (strcmp(kv, "heartbeat") == 0) {
            st = param_uint(kv, val, 65535, &n, diag);
            e->heartbeat_s = (uint16_t)n;
        } else if (strcmp(kv, "user") == 0 && val[0] != '\0') {
            sl_free(e->user_ref);
            st = (e->user_ref = sl_strdup(val)) ? SL_OK : SL_NOMEM;
        } else if (strcmp(kv, "password") == 0) {
            /* Never a literal here: a query string is easily logged. */
            if (!sl__secret_is_ref(val)) {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: password takes env:NAME or "
                                   "file:PATH (a literal password goes in "
                                   "the URL's user info)");
            }
            sl_free(e->password_ref);
            st = (e->password_ref = sl_strdup(val)) ? SL_OK : SL_NOMEM;
        } else if (strcmp(kv, "cacert") == 0) {
            st = param_file(kv, val, &e->cacert, diag);
        } else if (strcmp(kv, "cert") == 0) {
            st = param_file(kv, val, &e->cert, diag);
        } else if (strcmp(kv, "key") == 0) {
            st = param_file(kv, val, &e->key, diag);
        } else if (strcmp(kv, "verify") == 0) {
            if (strcmp(val, "full") == 0) {
                e->verify = VERIFY_FULL;
            } else if (strcmp(val, "peer") == 0) {
                e->verify = VERIFY_PEER;
            } else if (strcmp(val, "none") == 0) {
                e->verify = VERIFY_NONE;
            } else {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: verify must be full, peer "
                                   "or none");
            }
            e->verify_set = true;
        } else {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL: unknown parameter '%s' "
                               "(expected ns, heartbeat, user, password, "
                               "cacert, cert, key or verify)",
                               kv);
        }
        if (st != SL_OK) {
            return st;
        }
        p += len + (amp ? 1 : 0);
    }
    return SL_OK;
}

/* Where amqps:// looks for trusted CAs without cacert=: the system bundle
 * (Debian and Ubuntu, then Fedora and RHEL). */
static const char *const system_ca_bundles[] = {
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
};

/* TLS parameters fit the scheme; a client certificate has its key. */
static sl_status check_tls_params(amqp_engine *e, sl_diag *diag)
{
    if (!e->tls) {
        if (e->cacert || e->cert || e->key || e->verify_set) {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL: cacert, cert, key and verify "
                               "need amqps://");
        }
        return SL_OK;
    }
    if ((e->cert == NULL) != (e->key == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: a client certificate needs both "
                           "cert= and key=");
    }
    if (e->cacert == NULL && e->verify != VERIFY_NONE) {
        for (size_t i = 0;
             i < sizeof system_ca_bundles / sizeof system_ca_bundles[0]; i++) {
            if (access(system_ca_bundles[i], R_OK) == 0) {
                e->cacert = sl_strdup(system_ca_bundles[i]);
                return e->cacert ? SL_OK : SL_NOMEM;
            }
        }
        return sl_diag_set(diag, SL_CONFIG,
                           "amqps://: no system CA bundle found; name the "
                           "CA with cacert=PATH");
    }
    return SL_OK;
}

/* The user and password of the next login: the URL's, or the user= and
 * password= references read now (a rotated secret file is picked up at
 * the next reconnect). Free both with sl__secret_free(). */
static sl_status credentials(amqp_engine *e,
                             const struct amqp_connection_info *ci, char **user,
                             char **password, sl_diag *diag)
{
    *user = *password = NULL;
    sl_status st = SL_OK;
    if (e->user_ref != NULL && sl__secret_is_ref(e->user_ref)) {
        st = sl__secret_read(e->user_ref, user, diag);
    } else {
        *user = sl_strdup(e->user_ref ? e->user_ref : ci->user);
        st = *user ? SL_OK : SL_NOMEM;
    }
    if (st == SL_OK && e->password_ref != NULL) {
        st = sl__secret_read(e->password_ref, password, diag);
        if (st != SL_OK) {
            char why[sizeof diag->msg];
            snprintf(why, sizeof why, "%s", diag ? diag->msg : "");
            sl_diag_set(diag, st, "RabbitMQ password (%s): %s", e->password_ref,
                        why);
        }
    } else if (st == SL_OK) {
        *password = sl_strdup(ci->password);
        st = *password ? SL_OK : SL_NOMEM;
    }
    if (st != SL_OK) {
        sl__secret_free(*user);
        sl__secret_free(*password);
        *user = *password = NULL;
    }
    return st;
}

/* A TLS socket set up as the URL says; NULL with @p diag on failure. */
static amqp_socket_t *tls_socket(amqp_engine *e, amqp_connection_state_t conn,
                                 sl_diag *diag)
{
    amqp_socket_t *sock = amqp_ssl_socket_new(conn);
    if (sock == NULL) {
        sl_diag_set(diag, SL_NOMEM, "cannot create a TLS socket");
        return NULL;
    }
    amqp_ssl_socket_set_verify_peer(sock, e->verify != VERIFY_NONE);
    amqp_ssl_socket_set_verify_hostname(sock, e->verify == VERIFY_FULL);
    int rc;
    if (e->cacert != NULL &&
        (rc = amqp_ssl_socket_set_cacert(sock, e->cacert)) != AMQP_STATUS_OK) {
        sl_diag_set(diag, SL_CONFIG, "cacert %s: %s", e->cacert,
                    amqp_error_string2(rc));
        return NULL;
    }
    if (e->cert != NULL && (rc = amqp_ssl_socket_set_key(
                                sock, e->cert, e->key)) != AMQP_STATUS_OK) {
        sl_diag_set(diag, SL_CONFIG, "client certificate %s / key %s: %s",
                    e->cert, e->key, amqp_error_string2(rc));
        return NULL;
    }
    return sock;
}

static void set_io_fd(amqp_engine *e, int fd)
{
    pthread_mutex_lock(&e->mu);
    e->io_fd = fd;
    pthread_mutex_unlock(&e->mu);
}

/* Drop @p conn (the engine's, or one being set up), after the watchdog
 * forgot its socket. */
static void destroy_conn(amqp_engine *e, amqp_connection_state_t conn)
{
    set_io_fd(e, -1);
    amqp_destroy_connection(conn);
}

/* The text of a server exception (connection.close or channel.close). */
static const char *reply_text(const amqp_rpc_reply_t *r, char *buf,
                              size_t size)
{
    amqp_bytes_t t = {0};
    if (r->reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
        t = ((amqp_connection_close_t *)r->reply.decoded)->reply_text;
    } else if (r->reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
        t = ((amqp_channel_close_t *)r->reply.decoded)->reply_text;
    }
    snprintf(buf, size, "%.*s", (int)t.len,
             t.bytes ? (const char *)t.bytes : "server exception");
    return buf;
}

/* Connect, log in and open the publish and admin channels; the new
 * connection becomes e->conn with the next generation. Never puts the
 * credentials in a message. */
static sl_status connect_once(amqp_engine *e, sl_diag *diag)
{
    char *url = sl_strdup(e->server);
    if (url == NULL) {
        return SL_NOMEM;
    }
    sl_status st = SL_OK;
    char *user = NULL, *password = NULL;
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    amqp_connection_state_t conn = NULL;
    if (amqp_parse_url(url, &ci) != AMQP_STATUS_OK) {
        st = sl_diag_set(diag, SL_INVALID, "bad AMQP URL");
        goto fail;
    }
    if ((st = credentials(e, &ci, &user, &password, diag)) != SL_OK) {
        goto fail;
    }
    conn = amqp_new_connection();
    if (conn == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    amqp_socket_t *sock =
        e->tls ? tls_socket(e, conn, diag) : amqp_tcp_socket_new(conn);
    if (sock == NULL) {
        st = diag && diag->msg[0] ? diag->status : SL_NOMEM;
        goto fail;
    }
    struct timeval tv = {CONNECT_TIMEOUT_S, 0};
    amqp_set_handshake_timeout(conn, &tv);
    int rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tv);
    if (rc != AMQP_STATUS_OK) {
        st = sl_diag_set(
            diag, SL_UNAVAILABLE, "cannot connect to RabbitMQ at %s:%d%s: %s%s",
            ci.host, ci.port, e->tls ? " (TLS)" : "", amqp_error_string2(rc),
            rc == AMQP_STATUS_SSL_HOSTNAME_VERIFY_FAILED
                ? " (the server certificate must name the URL's host; "
                  "rabbitmq-c matches DNS names only, so an IP address "
                  "needs verify=peer)"
            : rc == AMQP_STATUS_SSL_PEER_VERIFY_FAILED
                ? " (the server certificate is not signed by cacert)"
                : "");
        goto fail;
    }
    fcntl(amqp_get_sockfd(conn), F_SETFD, FD_CLOEXEC);
    set_io_fd(e, amqp_get_sockfd(conn));
    /* rabbitmq-c announces only authentication_failure_close and
     * exchange_exchange_bindings; without these the broker neither tells
     * a consumer that its queue went away (basic.cancel) nor that it
     * blocks publishers (connection.blocked). rabbitmq-c merges them with
     * its own. */
    amqp_table_entry_t caps[4];
    const char *const cap_names[] = {"consumer_cancel_notify",
                                     "connection.blocked", "basic.nack",
                                     "publisher_confirms"};
    for (int i = 0; i < 4; i++) {
        caps[i].key = bytes_of(cap_names[i]);
        caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
        caps[i].value.value.boolean = 1;
    }
    amqp_table_entry_t props_en[2];
    props_en[0].key = bytes_of("capabilities");
    props_en[0].value.kind = AMQP_FIELD_KIND_TABLE;
    props_en[0].value.value.table =
        (amqp_table_t){.num_entries = 4, .entries = caps};
    props_en[1].key = bytes_of("connection_name");
    props_en[1].value.kind = AMQP_FIELD_KIND_UTF8;
    props_en[1].value.value.bytes = bytes_of("sluice");
    amqp_table_t props = {.num_entries = 2, .entries = props_en};
    amqp_rpc_reply_t r = amqp_login_with_properties(
        conn, ci.vhost, 0, FRAME_MAX, e->heartbeat_s, &props,
        AMQP_SASL_METHOD_PLAIN, user, password);
    if (r.reply_type != AMQP_RESPONSE_NORMAL) {
        char why[256];
        st = sl_diag_set(
            diag, SL_UNAVAILABLE,
            "RabbitMQ at %s:%d refused the login of user '%s' (vhost "
            "'%s'): %s%s",
            ci.host, ci.port, user, ci.vhost,
            r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION
                ? amqp_error_string2(r.library_error)
                : reply_text(&r, why, sizeof why),
            e->tls && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
                    r.library_error == AMQP_STATUS_SSL_ERROR
                ? " (TLS: the broker may have refused the client "
                  "certificate)"
                : "");
        goto fail;
    }
    pthread_mutex_lock(&e->mu);
    e->hb_now_s = (uint16_t)amqp_get_heartbeat(conn);
    pthread_mutex_unlock(&e->mu);
    e->conn = conn;
    if ((st = open_publish_channel(e)) != SL_OK ||
        (st = open_channel(e, ADMIN_CH)) != SL_OK) {
        e->conn = NULL;
        st = sl_diag_set(diag, st, "cannot open AMQP channels");
        goto fail;
    }
    pthread_mutex_lock(&e->mu);
    e->gen++;
    pthread_mutex_unlock(&e->mu);
    sl__secret_free(user);
    sl__secret_free(password);
    sl_free(url);
    return SL_OK;
fail:
    if (conn != NULL) {
        destroy_conn(e, conn);
    }
    sl__secret_free(user);
    sl__secret_free(password);
    sl_free(url);
    return st;
}

/* The watchdog: see amqp_engine.send_since. A write to a broker that
 * stopped reading (frozen, or a network that drops everything) waits in
 * rabbitmq-c without a deadline; after a heartbeat interval without
 * progress and without anything new to read from the broker (which sends
 * a heartbeat every half interval, also while it holds us back for flow
 * control), the socket is shut down, which ends the write with an error: the connection is lost
 * and reconnected. Also bounds close(): a write still stuck when the
 * confirms' deadline passed is cut short. */
static void *watchdog_main(void *arg)
{
    amqp_engine *e = arg;
    uint64_t since_seen = 0;
    int last_unread = -1;
    pthread_mutex_lock(&e->mu);
    while (!e->wd_stop) {
        struct timespec until;
        sl__deadline_after(&until, WATCHDOG_TICK_MS);
        pthread_cond_timedwait(&e->wd_cv, &e->mu, &until);
        uint64_t since =
            atomic_load_explicit(&e->send_since, memory_order_relaxed);
        if (e->wd_stop || since == 0 || e->io_fd < 0) {
            since_seen = 0;
            continue;
        }
        int unread = 0;
        if (ioctl(e->io_fd, FIONREAD, &unread) != 0) {
            unread = -1;
        }
        if (since != since_seen || unread != last_unread) {
            /* A new write, or the broker sent something: alive. */
            since_seen = since;
            last_unread = unread;
            e->wd_progress_ms = sl_time_mono_ms();
            continue;
        }
        uint64_t now = sl_time_mono_ms();
        /* RabbitMQ sends a heartbeat every half interval: one interval
         * without a byte from it is two missed heartbeats, its own rule
         * for a dead peer. */
        uint64_t limit = (uint64_t)e->hb_now_s * 1000;
        bool stuck = e->hb_now_s > 0 && !e->blocked &&
                     now - e->wd_progress_ms >= limit;
        bool closing = e->stopping && now >= e->stop_by_ms;
        if (stuck || closing) {
            sl_logf(SL_LOG_WARN, LOG,
                    "writing to RabbitMQ at %s made no progress for %" PRIu64
                    " ms%s; dropping the connection",
                    e->host, now - e->wd_progress_ms,
                    closing ? " (closing)" : "");
            shutdown(e->io_fd, SHUT_RDWR);
            e->io_fd = -1; /* once per connection */
            since_seen = 0;
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* True when the user info of @p server ("scheme://user:pass@...") has a
 * password. */
static bool url_has_password(const char *server)
{
    const char *auth = strstr(server, "://");
    const char *at = strrchr(server, '@');
    if (auth == NULL || at == NULL || at < auth) {
        return false;
    }
    const char *colon = strchr(auth + 3, ':');
    return colon != NULL && colon < at;
}

/* Everything amqp_open reads from the URL (parameters, host, TLS files),
 * without connecting: shared by amqp_open and the parse-only check. The
 * URL without its query goes to *server_out. */
static sl_status parse_engine_url(amqp_engine *e, const char *url,
                                  char **server_out, sl_diag *diag)
{
    sl_status st = SL_NOMEM;
    const char *q = strchr(url, '?');
    char *server = q ? sl_strndup(url, (size_t)(q - url)) : sl_strdup(url);
    if (server == NULL) {
        goto fail;
    }
    if ((st = parse_query(e, q ? q + 1 : NULL, diag)) != SL_OK) {
        goto fail;
    }
    /* amqp_parse_url cuts its argument up: parse a copy. */
    char *parsed = sl_strdup(server);
    if (parsed == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    struct amqp_connection_info ci;
    amqp_default_connection_info(&ci);
    if (amqp_parse_url(parsed, &ci) != AMQP_STATUS_OK) {
        st = sl_diag_set(diag, SL_INVALID,
                         "bad AMQP URL (expected "
                         "amqp[s]://user:pass@host:port/vhost)");
        sl_free(parsed);
        goto fail;
    }
    e->tls = ci.ssl;
    if (e->password_ref != NULL && url_has_password(server)) {
        st = sl_diag_set(diag, SL_INVALID,
                         "engine URL: a password in the user info and "
                         "password= both given");
        sl_free(parsed);
        goto fail;
    }
    e->host = sl_strdup(ci.host);
    sl_free(parsed);
    if (e->host == NULL) {
        st = SL_NOMEM;
        goto fail;
    }
    if ((st = check_tls_params(e, diag)) != SL_OK) {
        goto fail;
    }
    *server_out = server;
    return SL_OK;
fail:
    sl_free(server);
    return st;
}

/* Parse-only check of an engine URL (sl_engine_check_url). */
static sl_status amqp_check_url(const char *url, sl_diag *diag)
{
    amqp_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->wake[0] = e->wake[1] = -1;
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    sl__cond_init_mono(&e->wd_cv);
    char *server = NULL;
    sl_status st = parse_engine_url(e, url, &server, diag);
    sl_free(server);
    amqp_close(&e->base);
    return st;
}

static sl_status amqp_open(const char *url, const sl_engine_opts *opts,
                           sl_engine **out, sl_diag *diag)
{
    amqp_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->base.drv = &sl__amqp_driver;
    e->opts = *opts;
    e->clock = opts->clock ? opts->clock : sl_clock_system();
    e->wake[0] = e->wake[1] = -1;
    e->io_fd = -1;
    e->heartbeat_s = DEFAULT_HEARTBEAT_S;
    e->next_ch = FIRST_SUB_CH;
    /* Message uids tell apart the messages of a queue that every process
     * publishes to: seeded from the kernel, not from values (time, pid)
     * that two containers started together share. */
    if (getrandom(&e->uid_state, sizeof e->uid_state, 0) !=
        (ssize_t)sizeof e->uid_state) {
        e->uid_state = (sl_time_mono_ms() << 20) ^ ((uint64_t)getpid() << 1) ^
                       (uint64_t)(uintptr_t)e ^ sl_time_wall_ms();
    }
    if (e->uid_state == 0) {
        e->uid_state = 88172645463325252ULL;
    }
    pthread_mutex_init(&e->mu, NULL);
    pthread_cond_init(&e->cv, NULL);
    sl__cond_init_mono(&e->wd_cv);
    char *server = NULL;
    sl_status st = parse_engine_url(e, url, &server, diag);
    if (st != SL_OK) {
        goto fail;
    }
    if ((st = sl__dedup_create(DEDUP_MAX_IDS,
                               opts->dedup_window_ms ? opts->dedup_window_ms
                                                     : DEFAULT_DEDUP_WINDOW_MS,
                               &e->dedup)) != SL_OK) {
        goto fail;
    }
    sl_queue_opts qo = {.capacity = REQ_CAPACITY, .overflow = SL_QUEUE_BLOCK};
    if ((st = sl_queue_create(&qo, &e->reqs)) != SL_OK) {
        goto fail;
    }
    if (pipe(e->wake) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "pipe: %s", strerror(errno));
        goto fail;
    }
    fcntl(e->wake[0], F_SETFL, O_NONBLOCK);
    fcntl(e->wake[1], F_SETFL, O_NONBLOCK);
    fcntl(e->wake[0], F_SETFD, FD_CLOEXEC);
    fcntl(e->wake[1], F_SETFD, FD_CLOEXEC);
    e->server = server;
    server = NULL;
    e->rng = e->uid_state | 1;
    if ((st = connect_once(e, diag)) != SL_OK) {
        goto fail;
    }
    if (pthread_create(&e->wd_thread, NULL, watchdog_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start the watchdog");
        goto fail;
    }
    e->wd_started = true;
    if (pthread_create(&e->io_thread, NULL, io_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start the I/O thread");
        goto fail;
    }
    e->io_started = true;
    *out = &e->base;
    return SL_OK;
fail:
    sl_free(server);
    amqp_close(&e->base);
    return st;
}

static void amqp_close(sl_engine *base)
{
    amqp_engine *e = (amqp_engine *)base;
    if (e->io_started) {
        /* Publishers wait for outstanding confirms (bounded). */
        pthread_mutex_lock(&e->mu);
        e->stop_by_ms = sl_time_mono_ms() + API_WAIT_MS;
        e->stopping = true;
        pthread_mutex_unlock(&e->mu);
        wake_io(e);
        pthread_join(e->io_thread, NULL);
    }
    if (e->wd_started) {
        pthread_mutex_lock(&e->mu);
        e->wd_stop = true;
        pthread_cond_broadcast(&e->wd_cv);
        pthread_mutex_unlock(&e->mu);
        pthread_join(e->wd_thread, NULL);
    }
    if (e->conn != NULL) {
        /* Still connected (the I/O thread drops a lost connection). */
        amqp_connection_close(e->conn, AMQP_REPLY_SUCCESS);
        destroy_conn(e, e->conn);
        e->conn = NULL;
    }
    if (e->reqs != NULL) {
        void *item;
        while (sl_queue_pop(e->reqs, &item, 0) == SL_OK) {
            fail_req(e, item);
        }
        sl_queue_destroy(e->reqs);
    }
    if (e->wake[0] >= 0) {
        close(e->wake[0]);
        close(e->wake[1]);
    }
    for (achan *c = e->chans, *next; c; c = next) {
        next = c->next;
        sl_free(c->name);
        sl_free(c->exchange);
        sl_free(c);
    }
    for (agroup *g = e->groups, *next; g; g = next) {
        next = g->next;
        sl_free(g->queue);
        sl_free(g->channel);
        sl_free(g);
    }
    for (aqueue *q = e->queues, *next; q; q = next) {
        next = q->next;
        sl_free(q->queue);
        sl_free(q->exchange);
        sl_free(q->dlx);
        sl_free(q);
    }
    sl__dedup_destroy(e->dedup);
    sl_free(e->ns);
    sl_free(e->host);
    sl_free(e->server);
    sl_free(e->user_ref);
    sl_free(e->password_ref);
    sl_free(e->cacert);
    sl_free(e->cert);
    sl_free(e->key);
    pthread_cond_destroy(&e->wd_cv);
    pthread_cond_destroy(&e->cv);
    pthread_mutex_destroy(&e->mu);
    sl_free(e);
}

const sl_driver sl__amqp_driver = {
    .name = "rabbitmq",
    .scheme = "amqp", /* amqp:// and amqps:// */
    .check_url = amqp_check_url,
    .open = amqp_open,
    .close = amqp_close,
    .is_ready = amqp_is_ready,
    .declare_channel = amqp_declare_channel,
    .declare_group = amqp_declare_group,
    .publish = amqp_publish,
    .subscribe = amqp_subscribe,
    .fetch = amqp_fetch,
    .interrupt = amqp_interrupt,
    .in_flight = amqp_in_flight,
    .unsubscribe = amqp_unsubscribe,
    .settle = amqp_settle,
    .ack_many = amqp_ack_many,
    .depth = amqp_depth,
    .browse = amqp_browse,
};
