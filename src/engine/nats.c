/* The NATS JetStream engine ("nats://host:port"), on nats.c.
 *
 * Mapping (docs/engines/nats.md):
 *
 *   channel  -> a stream, subject "sluice.[NS.]<channel>", interest
 *               retention (an event leaves once every group acked it),
 *               discard new with max_msgs = max_length and max_bytes =
 *               max_bytes (a refusal is SL_FULL), file storage, a
 *               duplicate window for
 *               Nats-Msg-Id = event id.
 *   group    -> a durable pull consumer: explicit ack, AckWait (URL
 *               ack_wait_ms), MaxAckPending, deliver-new. max_attempts is
 *               kept in the consumer's description and enforced at fetch;
 *               MaxDeliver is a backstop above it (its advisory is
 *               dead-lettered, reason max_deliveries) and BackOff follows
 *               the retry schedule. Pull requests are the engine's own
 *               (see nats_fetch).
 *   event    -> CloudEvents binary mode: "ce-" headers, data as payload.
 *
 * Connections: TLS and credentials from the URL (tls_ca, creds, token=
 * env:NAME, ...); secrets are read from references and never printed.
 * The idempotency store on JetStream KV is engine/nats_kv.c.
 *
 * Threads. nats.c runs its own threads; no user callback runs on them:
 * PubAcks are handed through a bounded queue to the engine's confirm
 * thread, which calls the publish callbacks. A heartbeat thread sends
 * +WPI (in progress) for deliveries held longer than a third of AckWait, so
 * a live handler keeps its delivery while one that died with its process
 * gives it back after AckWait.
 *
 * Attempts. JetStream counts every delivery; sluice does not count a
 * release (a delivery given back unstarted). The engine remembers, per
 * group and stream sequence, how many of its deliveries it released and
 * subtracts them. That memory is per process and bounded (engine/track.h).
 */
#include "core/event_internal.h"
#include "core/secret.h"
#include "engine/driver.h"
#include "engine/nats_kv.h"
#include "engine/track.h"
#include "sluice/alloc.h"
#include "sluice/log.h"
#include "sluice/queue.h"
#include "core/waiter.h"

#include <jansson.h>
#include <nats/nats.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PREFETCH 10
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_DEDUP_WINDOW_MS 120000
#define DEFAULT_ACK_WAIT_MS 30000
#define DEFAULT_MAX_ACK_PENDING 10000
#define API_WAIT_MS 5000
#define PUB_MAX_PENDING 4096 /* async publishes awaiting their PubAck */
#define PUB_SLOT_BITS 13     /* pending table: 2 x PUB_MAX_PENDING slots */
#define PUB_SLOTS (1u << PUB_SLOT_BITS)
#define OUT_SLOTS (2 * PUB_MAX_PENDING) /* outcome ring, see nout */
#define PUB_ACK_WAIT_MS API_WAIT_MS /* no PubAck by then: SL_TIMEOUT */
#define EXPIRY_SCAN_MS 250   /* how often expired publishes are looked for */
#define EXPIRY_SCAN_SLOTS 1024 /* table slots scanned per hold of pub_mu */
#define CONFIRM_WAIT_MS 1000 /* the confirm thread checks for close */
#define CONFIRM_BATCH 64     /* outcomes taken from the ring at a time */
#define FETCH_SLICE_MS 100   /* a fetch checks for interrupts this often */
#define SUBJECT_ROOT "sluice."
#define CE_PREFIX "ce-"
#define LOG "engine.nats"

/* The engine's own pull requests (nats_fetch). */
#define PULL_EXPIRES_MS 100  /* server-side life of one pull request */
#define PULL_NOWAIT_MS 50    /* ... of a no-wait pull request */
#define PULL_GRACE_MS 200    /* after its expiry, a request is over for us */
#define PULL_FLUSH_MS 100    /* longest wait for the flush of a request */
#define JS_API_PREFIX "$JS.API."
#define JS_DOMAIN_MAX 64 /* longest ?domain= */

typedef struct nats_engine nats_engine;
typedef struct nats_sub nats_sub;

/* A channel this engine knows (declared here, or looked up). Entries are
 * only added, at the head of the engine's list, and freed when it closes:
 * publishers walk the list without a lock and borrow the strings. */
typedef struct nchan {
    char *name;
    char *stream;
    char *subject;
    /* max_length or max_bytes: publishes wait for their PubAck, so that
     * a discard-new refusal is the call's SL_FULL. Redeclaring may change
     * it. */
    _Atomic bool bounded;
    struct nchan *next; /* set before the entry is published */
} nchan;

/* An asynchronous publish waiting for its PubAck: a slot of the engine's
 * pending table (open addressing on the message's address). */
typedef struct npub {
    natsMsg *msg; /* the key (nats.c owns the message); NULL: free slot */
    sl_publish_cb cb;
    void *ctx;
    /* Monotonic ms after which the publish is reported SL_TIMEOUT; 0 once
     * it was: the entry stays while nats.c still holds the message. */
    uint64_t deadline_ms;
    bool cb_any_thread; /* SL__PUBLISH_CB_ANY_THREAD: called on the PubAck */
} npub;

/* A PubAck's outcome on its way from nats.c's thread to the confirm
 * thread. */
typedef struct nconfirm {
    sl_publish_cb cb;
    void *ctx;
    sl_status st;
} nconfirm;

/* What the engine remembers about a delivery it gave back. */
/* key: hash of stream and consumer; id: stream sequence. */
typedef sl_track track;

/* A group this process consumes: the server's max-deliveries advisory
 * for its consumer is listened to (see on_max_deliveries). Kept until the
 * engine closes. */
typedef struct nadv {
    nats_engine *eng;
    char *channel;
    char *group;
    char *stream;
    char *durable;
    uint64_t stream_created_ns; /* see plain_id() */
    uint64_t key;
    natsSubscription *sub;
    struct nadv *next;
} nadv;

typedef struct ndelivery {
    sl_delivery base;
    natsMsg *msg;
    nats_sub *sub;
    uint64_t seq;
    uint64_t held_since; /* mono ms; for the heartbeat */
    struct ndelivery *prev, *next;
} ndelivery;

/* The last ack ack_many sent for one group (engine->ack_marks). */
typedef struct ack_mark {
    uint64_t key;  /* the group's (nats_sub.key) */
    char *reply;   /* its ack subject */
    size_t cap;    /* bytes at reply */
    bool dirty;    /* acks were sent since the last confirmation */
    struct ack_mark *next;
} ack_mark;

struct nats_sub {
    sl_subscription base;
    nats_engine *eng;
    /* A plain synchronous subscription on "<inbox>.*": the deliveries and
     * status messages of this subscription's pull requests, each sent with
     * the reply subject "<inbox>.<request id>" (see nats_fetch). */
    natsSubscription *ns;
    char inbox[96];
    char *next_subject; /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable> */
    /* The one pull request outstanding, owned by the fetching thread. */
    uint64_t req_seq;   /* last request id sent */
    uint64_t req_id;    /* the live request, 0: none */
    uint32_t req_left;  /* deliveries it may still bring */
    bool req_nowait;    /* answered at once (404 when empty) */
    uint64_t req_until; /* mono ms: over by then, answered or not */
    char *channel;
    char *group;
    char *stream;
    char *durable;
    uint64_t stream_created_ns; /* see plain_id() */
    uint64_t key;
    uint32_t prefetch;
    uint32_t max_attempts;
    pthread_mutex_t mu;
    ndelivery *flight; /* unsettled deliveries */
    uint32_t nflight;
    _Atomic bool interrupted;
    nats_sub *next; /* engine's list */
};

struct nats_engine {
    sl_engine base;
    sl_engine_opts opts;
    const sl_clock *clock;
    natsConnection *nc;
    jsCtx *js;
    char *ns;          /* namespace from ?ns=, or NULL */
    /* JetStream API prefix: "$JS.API." or, with ?domain=D, "$JS.D.API."
     * (the domain's API, as from a leaf node; nats.c is told the domain
     * for its own requests). */
    char api[sizeof "$JS..API." + JS_DOMAIN_MAX];
    char domain[JS_DOMAIN_MAX + 1];
    int64_t ack_wait_ms;
    int64_t max_ack_pending;
    int64_t replicas;
    int64_t max_deliver; /* ?max_deliver=N; 0 = 2 x max_attempts + 20 */
    bool memory;       /* ?storage=memory */

    pthread_mutex_t mu;
    _Atomic(nchan *) chans; /* added to under mu, read without it */
    sl_track_table tracks; /* remembered released / nak'ed deliveries */
    /* Acks sent by ack_many are confirmed when something reads what they
     * change (depth, browse, close): per group, the ack subject of the
     * last one is kept (ack_marks), and then acked again asking for the
     * server's answer on ack_sub. The server applies a consumer's acks in
     * order, so that answer covers every ack before it. */
    ack_mark *ack_marks;
    natsSubscription *ack_sub;
    char ack_inbox[96];
    uint64_t ack_seq;
    uint32_t acks_unconfirmed;
    uint64_t ack_last_sent_ms; /* mono ms */
    pthread_cond_t ack_cv;
    nats_sub *subs;
    nadv *advs;
    /* Asynchronous subscriptions (ack_sub, advisories) whose handler may
     * still run: close waits for their completion callbacks. */
    uint32_t async_live;
    pthread_cond_t async_cv;
    bool closing;
    pthread_cond_t hb_cv;

    /* Asynchronous publishes, under pub_mu alone: a publish and its PubAck
     * take no other lock. */
    pthread_mutex_t pub_mu;
    pthread_cond_t confirm_cv; /* outcomes to call, or closing */
    bool pubs_ready;           /* pub_mu, confirm_cv and the arrays exist */
    /* Messages nats.c holds for this engine (its pending map is a subset):
     * PUB_SLOTS slots, ntable in use, nexpired of them already reported
     * SL_TIMEOUT. A publish is admitted while ntable + nout is below
     * PUB_MAX_PENDING; an expiry adds an outcome without freeing its slot,
     * so nout stays below OUT_SLOTS. */
    npub *pubs;
    uint32_t ntable, nexpired;
    /* Outcomes waiting for their callback, in PubAck order: a ring of
     * OUT_SLOTS. A publishing thread calls those that came back while it
     * was in nats_publish; the confirm thread the others. */
    nconfirm *outcomes;
    uint32_t out_head, nout;
    uint32_t scan_next; /* where the next expiry scan starts */
    /* Threads in nats_publish, which take outcomes as they leave (added to
     * without the lock, taken from under it). */
    _Atomic uint32_t publishing;
    bool confirm_waiting; /* the confirm thread sleeps on confirm_cv */
    bool pub_closing;
    pthread_t confirm_thread;
    bool confirm_started;
    pthread_t hb_thread;
    bool hb_started;
    bool lib_held; /* counted in lib_users */
};

/* nats.c's library state (its timer and garbage-collector threads) lives
 * while at least one engine is open: the last close tears it down, so a
 * process without open engines has no hidden threads (fork stays safe). */
static pthread_mutex_t lib_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned lib_users;

static natsStatus lib_ref(void)
{
    pthread_mutex_lock(&lib_mu);
    natsStatus s = NATS_OK;
    if (lib_users == 0) {
        s = nats_Open(-1);
    }
    if (s == NATS_OK) {
        lib_users++;
    }
    pthread_mutex_unlock(&lib_mu);
    return s;
}

static void lib_unref(void)
{
    pthread_mutex_lock(&lib_mu);
    if (lib_users > 0 && --lib_users == 0) {
        nats_CloseAndWait(2000);
    }
    pthread_mutex_unlock(&lib_mu);
}

/* ---- helpers ---------------------------------------------------------------- */

static uint64_t wall_ms(nats_engine *e)
{
    return sl_clock_now_ms(e->clock);
}

static uint64_t fnv1a(const char *a, const char *b)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *p = a; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    h = (h ^ '/') * 1099511628211ULL;
    for (const char *p = b; *p; p++) {
        h = (h ^ (unsigned char)*p) * 1099511628211ULL;
    }
    return h ? h : 1;
}

/* Stream and consumer names allow [A-Za-z0-9_-]; channel names also have
 * '.'. '-' escapes: "--" is '-', "-u" is '_', and '_' stands for '.', so
 * distinct channels never share a stream. */
static char *escape_name(const char *ns, const char *name)
{
    size_t n = (ns ? strlen(ns) + 1 : 0) + strlen(name);
    char *out = sl_malloc(2 * n + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (int part = 0; part < 2; part++) {
        const char *s = part == 0 ? ns : name;
        if (s == NULL) {
            continue;
        }
        for (const char *p = s; *p; p++) {
            if (*p == '-') {
                *o++ = '-';
                *o++ = '-';
            } else if (*p == '_') {
                *o++ = '-';
                *o++ = 'u';
            } else if (*p == '.') {
                *o++ = '_';
            } else {
                *o++ = *p;
            }
        }
        if (part == 0) {
            *o++ = '_';
        }
    }
    *o = '\0';
    return out;
}

static char *subject_of(nats_engine *e, const char *channel)
{
    size_t n = strlen(SUBJECT_ROOT) + (e->ns ? strlen(e->ns) + 1 : 0) +
               strlen(channel) + 1;
    char *s = sl_malloc(n);
    if (s != NULL) {
        snprintf(s, n, "%s%s%s%s", SUBJECT_ROOT, e->ns ? e->ns : "",
                 e->ns ? "." : "", channel);
    }
    return s;
}

sl_status sl__nats_status(natsStatus s)
{
    switch (s) {
    case NATS_OK:
        return SL_OK;
    case NATS_TIMEOUT:
        return SL_TIMEOUT;
    case NATS_NOT_FOUND:
        return SL_NOT_FOUND;
    case NATS_NO_MEMORY:
        return SL_NOMEM;
    case NATS_CONNECTION_CLOSED:
    case NATS_CONNECTION_DISCONNECTED:
    case NATS_NO_SERVER:
    case NATS_STALE_CONNECTION:
    case NATS_NO_RESPONDERS:
        return SL_UNAVAILABLE;
    case NATS_INVALID_ARG:
        return SL_INVALID;
    default:
        return SL_IO;
    }
}

/* A publish refused by the server: discard-new at max_msgs is "full". */
static sl_status from_pub_error(natsStatus s, jsErrCode code, const char *txt)
{
    if (code == JSStreamStoreFailedErr ||
        (txt != NULL && (strstr(txt, "maximum messages") != NULL ||
                         strstr(txt, "maximum bytes") != NULL))) {
        return SL_FULL;
    }
    if (s == NATS_NO_RESPONDERS || code == JSStreamNotFoundErr) {
        return SL_NOT_FOUND;
    }
    return sl__nats_status(s == NATS_OK ? NATS_ERR : s);
}

/* ---- the memory of given-back deliveries ------------------------------------ */

/* Lock held. Returns the slot for (key, seq), creating it if @p create. */
static track *track_find(nats_engine *e, uint64_t key, uint64_t seq,
                         bool create)
{
    return sl__track_find(&e->tracks, key, seq, create);
}

static void track_forget(nats_engine *e, uint64_t key, uint64_t seq)
{
    pthread_mutex_lock(&e->mu);
    track *t = track_find(e, key, seq, false);
    if (t != NULL) {
        sl__track_drop(&e->tracks, t);
    }
    pthread_mutex_unlock(&e->mu);
}

static void track_nak(nats_engine *e, uint64_t key, uint64_t seq,
                      bool release, uint64_t delay_ms)
{
    pthread_mutex_lock(&e->mu);
    track *t = track_find(e, key, seq, true);
    t->released += release ? 1 : 0;
    t->nakked = true;
    t->due_ms = wall_ms(e) + delay_ms;
    pthread_mutex_unlock(&e->mu);
}

/* ---- channels ---------------------------------------------------------------- */

/* Any thread, no lock: entries are immutable once in the list but for
 * bounded, and the list only grows until the engine closes. */
static nchan *chan_find(nats_engine *e, const char *name)
{
    for (nchan *c = atomic_load_explicit(&e->chans, memory_order_acquire); c;
         c = c->next) {
        if (strcmp(c->name, name) == 0) {
            return c;
        }
    }
    return NULL;
}

static sl_status chan_remember(nats_engine *e, const char *name, bool bounded)
{
    pthread_mutex_lock(&e->mu); /* one writer at a time */
    nchan *c = chan_find(e, name);
    if (c != NULL) {
        atomic_store_explicit(&c->bounded, bounded, memory_order_relaxed);
        pthread_mutex_unlock(&e->mu);
        return SL_OK;
    }
    c = sl_calloc(1, sizeof *c);
    if (c == NULL || (c->name = sl_strdup(name)) == NULL ||
        (c->stream = escape_name(e->ns, name)) == NULL ||
        (c->subject = subject_of(e, name)) == NULL) {
        if (c != NULL) {
            sl_free(c->name);
            sl_free(c->stream);
            sl_free(c);
        }
        pthread_mutex_unlock(&e->mu);
        return SL_NOMEM;
    }
    atomic_init(&c->bounded, bounded);
    c->next = atomic_load_explicit(&e->chans, memory_order_relaxed);
    atomic_store_explicit(&e->chans, c, memory_order_release);
    pthread_mutex_unlock(&e->mu);
    return SL_OK;
}

/* The channel @p name, looking its stream up on the server when another
 * process declared it. *out lives as long as the engine. */
static sl_status chan_get(nats_engine *e, const char *name, nchan **out)
{
    nchan *c = chan_find(e, name);
    if (c != NULL) {
        *out = c;
        return SL_OK;
    }
    char *stream = escape_name(e->ns, name);
    if (stream == NULL) {
        return SL_NOMEM;
    }
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, e->js, stream, NULL, &jerr);
    sl_free(stream);
    if (s != NATS_OK) {
        return (s == NATS_NOT_FOUND || jerr == JSStreamNotFoundErr)
                   ? SL_NOT_FOUND
                   : sl__nats_status(s);
    }
    bool bounded = si->Config->MaxMsgs > 0 || si->Config->MaxBytes > 0;
    jsStreamInfo_Destroy(si);
    sl_status st = chan_remember(e, name, bounded);
    if (st != SL_OK) {
        return st;
    }
    *out = chan_find(e, name);
    return SL_OK;
}

/* A copy of what publishing needs to know about @p name. */
static sl_status chan_lookup(nats_engine *e, const char *name, char **subject)
{
    nchan *c = NULL;
    sl_status st = chan_get(e, name, &c);
    if (st != SL_OK) {
        return st;
    }
    if ((*subject = sl_strdup(c->subject)) == NULL) {
        return SL_NOMEM;
    }
    return SL_OK;
}

static sl_status put_stream(nats_engine *e, const char *name,
                            uint64_t max_length, uint64_t max_bytes,
                            sl_diag *diag)
{
    char *stream = escape_name(e->ns, name);
    char *subject = subject_of(e, name);
    if (stream == NULL || subject == NULL) {
        sl_free(stream);
        sl_free(subject);
        return SL_NOMEM;
    }
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[1] = {subject};
    cfg.Name = stream;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Retention = js_InterestPolicy;
    cfg.Discard = js_DiscardNew;
    cfg.MaxMsgs = max_length ? (int64_t)max_length : -1;
    cfg.MaxBytes = max_bytes ? (int64_t)max_bytes : -1;
    cfg.Storage = e->memory ? js_MemoryStorage : js_FileStorage;
    cfg.Replicas = e->replicas;
    cfg.Duplicates = (int64_t)(e->opts.dedup_window_ms
                                   ? e->opts.dedup_window_ms
                                   : DEFAULT_DEDUP_WINDOW_MS) *
                     1000000;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(NULL, e->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) {
        s = js_UpdateStream(NULL, e->js, &cfg, NULL, &jerr);
    }
    sl_status st = SL_OK;
    if (s != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(s),
                         "declaring stream %s for channel '%s': %s (%d)",
                         stream, name, nats_GetLastError(NULL), (int)jerr);
    }
    sl_free(stream);
    sl_free(subject);
    if (st == SL_OK) {
        st = chan_remember(e, name, max_length != 0 || max_bytes != 0);
    }
    return st;
}

static sl_status nats_declare_channel(sl_engine *base,
                                      const sl_channel_opts *opts,
                                      sl_diag *diag)
{
    return put_stream((nats_engine *)base, opts->name, opts->max_length,
                      opts->max_bytes, diag);
}

static bool is_dlq_channel(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".dlq") == 0;
}

/* The server's delivery limit for a group with @p max_attempts: the
 * URL's max_deliver, else a backstop above the engine's own count (which
 * does not count releases): 2 x max_attempts + 20, as the RabbitMQ
 * engine's x-delivery-limit. -1 (none) for a dead-letter channel's
 * keeper. */
static int64_t max_deliver_of(const nats_engine *e, uint32_t max_attempts)
{
    if (max_attempts == UINT32_MAX) {
        return -1;
    }
    if (e->max_deliver > 0) {
        return e->max_deliver;
    }
    return (int64_t)max_attempts * 2 + 20;
}

static sl_status put_consumer(nats_engine *e, const char *channel,
                              const char *group, uint32_t max_attempts,
                              const uint64_t *backoff_ms, size_t backoff_len,
                              sl_diag *diag)
{
    char *stream = escape_name(e->ns, channel);
    char *durable = escape_name(NULL, group);
    if (stream == NULL || durable == NULL) {
        sl_free(stream);
        sl_free(durable);
        return SL_NOMEM;
    }
    char desc[64];
    snprintf(desc, sizeof desc, "sluice max_attempts=%" PRIu32, max_attempts);
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = durable;
    cc.Description = desc;
    cc.AckPolicy = js_AckExplicit;
    cc.AckWait = e->ack_wait_ms * 1000000;
    /* Attempts are counted and enforced by the engine at fetch (a release
     * is not an attempt, and an event past its attempts must reach the
     * dead-letter channel). MaxDeliver is the server's backstop above
     * that; an event it stops delivering is dead-lettered by the
     * max-deliveries advisory listener (reason max_deliveries). */
    cc.MaxDeliver = max_deliver_of(e, max_attempts);
    /* BackOff: after a delivery whose holder died (no ack, no +WPI), the
     * server redelivers after the group's retry delay for that attempt,
     * never sooner than AckWait (a live holder's heartbeats assume
     * AckWait). Set only where it differs from AckWait alone; the server
     * wants fewer entries than MaxDeliver (the last one repeats). */
    int64_t backoff[32];
    size_t nb = 0;
    bool differs = false;
    if (cc.MaxDeliver > 1) {
        size_t cap = (size_t)(cc.MaxDeliver - 1) < 32
                         ? (size_t)(cc.MaxDeliver - 1)
                         : 32;
        for (; nb < backoff_len && nb < cap; nb++) {
            uint64_t ms = backoff_ms[nb] > (uint64_t)e->ack_wait_ms
                              ? backoff_ms[nb]
                              : (uint64_t)e->ack_wait_ms;
            differs = differs || ms != (uint64_t)e->ack_wait_ms;
            backoff[nb] = (int64_t)ms * 1000000;
        }
    }
    if (differs) {
        cc.BackOff = backoff;
        cc.BackOffLen = (int)nb;
    }
    cc.MaxAckPending = e->max_ack_pending;
    cc.DeliverPolicy = js_DeliverNew;
    cc.MaxWaiting = 512;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(NULL, e->js, stream, &cc, NULL, &jerr);
    if (s != NATS_OK && (jerr == JSConsumerNameExistErr ||
                         jerr == JSConsumerExistingActiveErr ||
                         jerr == JSConsumerCreateErr)) {
        s = js_UpdateConsumer(NULL, e->js, stream, &cc, NULL, &jerr);
    }
    sl_status st = SL_OK;
    if (s != NATS_OK) {
        bool missing = jerr == JSStreamNotFoundErr || s == NATS_NOT_FOUND;
        st = missing ? sl_diag_set(diag, SL_NOT_FOUND,
                                   "channel '%s' is not declared", channel)
                     : sl_diag_set(diag, sl__nats_status(s),
                                   "declaring consumer %s on %s: %s (%d)",
                                   durable, stream, nats_GetLastError(NULL),
                                   (int)jerr);
    }
    sl_free(stream);
    sl_free(durable);
    return st;
}

static sl_status nats_declare_group(sl_engine *base, const sl_group_opts *opts,
                                    sl_diag *diag)
{
    nats_engine *e = (nats_engine *)base;
    uint32_t max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    bool keeper = is_dlq_channel(opts->channel);
    sl_status st =
        put_consumer(e, opts->channel, opts->name,
                     keeper ? UINT32_MAX : max_attempts,
                     keeper ? NULL : opts->backoff_ms,
                     keeper ? 0 : opts->backoff_len, diag);
    if (st != SL_OK || keeper) {
        return st;
    }
    char dlq[512];
    if (sl__dlq_channel_name(opts->channel, opts->name, dlq, sizeof dlq) !=
        SL_OK) {
        return sl_diag_set(diag, SL_TOO_LARGE, "dead-letter name too long");
    }
    if ((st = put_stream(e, dlq, 0, 0, diag)) != SL_OK) {
        return st;
    }
    return put_consumer(e, dlq, SL_DLQ_GROUP, UINT32_MAX, NULL, 0, diag);
}

/* ---- events <-> messages ------------------------------------------------------ */

/* NATS header values cannot hold CR or LF: '%', control bytes and DEL are
 * percent-encoded, as the CloudEvents HTTP binding does. */
static bool needs_pct(unsigned char c)
{
    return c == '%' || c < 0x20 || c == 0x7f;
}

static char *pct_encode(const char *v)
{
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        n += needs_pct(*p) ? 3 : 1;
    }
    char *out = sl_malloc(n + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++) {
        if (needs_pct(*p)) {
            o += sprintf(o, "%%%02X", *p);
        } else {
            *o++ = (char)*p;
        }
    }
    *o = '\0';
    return out;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)tolower((unsigned char)c);
    return (c >= 'a' && c <= 'f') ? c - 'a' + 10 : -1;
}

static char *pct_decode(const char *v)
{
    char *out = sl_malloc(strlen(v) + 1);
    if (out == NULL) {
        return NULL;
    }
    char *o = out;
    for (const char *p = v; *p; p++) {
        int hi, lo;
        if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
            *o++ = (char)(hi * 16 + lo);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return out;
}

/* Whether @p v holds a byte that needs_pct: eight bytes at a time (a
 * header value is scanned once per publish, and byte by byte this was a
 * tenth of the engine's own instructions per event). The classic bit
 * tricks: a byte below 0x20, or equal to '%' or DEL, sets the high bit
 * of its lane; bytes of 0x80 and above never do. */
static bool any_needs_pct(const char *v)
{
    const uint64_t ones = 0x0101010101010101ULL;
    const uint64_t highs = 0x8080808080808080ULL;
    size_t n = strlen(v), i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, v + i, sizeof w);
        uint64_t pct = w ^ (ones * '%'), del = w ^ (ones * 0x7f);
        uint64_t hit = ((w - ones * 0x20) & ~w) |
                       ((pct - ones) & ~pct) | ((del - ones) & ~del);
        if (hit & highs) {
            return true;
        }
    }
    for (; i < n; i++) {
        if (needs_pct((unsigned char)v[i])) {
            return true;
        }
    }
    return false;
}

/* Most values need no encoding and go to nats.c (which copies them) as
 * they are; only the others cost an encoded copy. */
static sl_status add_header(const char *name, const char *value, void *ctx)
{
    if (!any_needs_pct(value)) {
        return sl__nats_status(natsMsgHeader_Set((natsMsg *)ctx, name, value));
    }
    char *enc = pct_encode(value);
    if (enc == NULL) {
        return SL_NOMEM;
    }
    natsStatus s = natsMsgHeader_Set((natsMsg *)ctx, name, enc);
    sl_free(enc);
    return sl__nats_status(s);
}

static sl_status event_to_msg(const sl_event *ev, const char *subject,
                              bool dedup, natsMsg **out)
{
    size_t len = 0;
    const void *data = sl_event_data(ev, &len);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, data, (int)len);
    if (s != NATS_OK) {
        return sl__nats_status(s);
    }
    sl_status st = sl_ce_to_headers(ev, CE_PREFIX, add_header, m);
    if (st == SL_OK && dedup) {
        st = sl__nats_status(natsMsgHeader_Set(m, "Nats-Msg-Id", sl_event_id(ev)));
    }
    if (st != SL_OK) {
        natsMsg_Destroy(m);
        return st;
    }
    *out = m;
    return SL_OK;
}

/* True for a "ce-" header, in any case. */
static bool is_ce_header(const char *k)
{
    return (k[0] | 0x20) == 'c' && (k[1] | 0x20) == 'e' && k[2] == '-';
}

/* The ce- headers of a delivery, read before its event is made so that
 * the event is sized for them. More than an event can hold (its
 * attributes, time, deadline and SL_EVENT_MAX_EXTENSIONS) make it
 * unreadable. */
#define CE_HEADERS_MAX (SL_ATTR_COUNT_ + 2 + SL_EVENT_MAX_EXTENSIONS)

typedef struct ce_headers {
    const char **keys; /* from nats.c; free() */
    const char *key[CE_HEADERS_MAX];
    const char *value[CE_HEADERS_MAX];
    size_t value_len[CE_HEADERS_MAX];
    size_t n;
    bool too_many;
    size_t bytes; /* the names and values, each with a NUL */
} ce_headers;

static void ce_headers_read(natsMsg *m, ce_headers *h)
{
    int nkeys = 0;
    h->keys = NULL;
    h->n = 0;
    h->too_many = false;
    h->bytes = 0;
    if (natsMsgHeader_Keys(m, &h->keys, &nkeys) != NATS_OK) {
        h->keys = NULL; /* no headers */
        return;
    }
    for (int i = 0; i < nkeys; i++) {
        const char *v = NULL;
        if (!is_ce_header(h->keys[i]) ||
            natsMsgHeader_Get(m, h->keys[i], &v) != NATS_OK) {
            continue;
        }
        if (h->n == CE_HEADERS_MAX) {
            h->too_many = true;
            return;
        }
        v = v ? v : "";
        size_t len = strlen(v);
        h->key[h->n] = h->keys[i];
        h->value[h->n] = v;
        h->value_len[h->n++] = len;
        h->bytes += strlen(h->keys[i]) + len + 2;
    }
}

/* The attributes of @p h into @p ev. A value without '%' (the usual case)
 * is read in place. */
static sl_status ce_headers_apply(const ce_headers *h, sl_event *ev)
{
    for (size_t i = 0; i < h->n; i++) {
        const char *v = h->value[i];
        size_t len = h->value_len[i];
        char *dec = NULL;
        if (memchr(v, '%', len) != NULL) {
            if ((v = dec = pct_decode(v)) == NULL) {
                return SL_NOMEM;
            }
            len = strlen(dec);
        }
        sl_status st = sl__ce_from_header_n(ev, strlen(CE_PREFIX), h->key[i],
                                            v, len);
        sl_free(dec);
        if (st != SL_OK) {
            return st;
        }
    }
    return SL_OK;
}

/* The id of a message that carries none (no ce-id, no Nats-Msg-Id): its
 * place in the stream, "<stream>-<stream created, ns since the
 * epoch>-<sequence>". Every delivery of the message carries the same id, so an
 * inbox recognises a redelivery. A sequence is never reused within a stream,
 * but a stream deleted and declared again starts over at 1 while an inbox
 * remembers ids for a day: the creation time keeps the two streams' ids apart.
 */
static void plain_id(char *buf, size_t size, const char *stream,
                     uint64_t created_ns, uint64_t seq)
{
    snprintf(buf, size, "%s-%" PRIu64 "-%" PRIu64, stream, created_ns, seq);
}

/* A stream's creation time, nanoseconds since the epoch (0 if unknown). */
static uint64_t created_ns_of(const jsStreamInfo *si)
{
    return si->Created > 0 ? (uint64_t)si->Created : 0;
}

/* An event from a delivered message: CloudEvents binary mode, or a plain
 * message (id from Nats-Msg-Id or plain_id(), type "nats.message",
 * source the subject). A CloudEvent whose producer left out ce-id gets
 * plain_id() too. The event is sized for its data and attributes: one
 * allocation. */
static sl_status msg_to_event(natsMsg *m, const char *stream,
                              uint64_t created_ns, uint64_t seq, sl_event **out)
{
    ce_headers h;
    ce_headers_read(m, &h);
    size_t data_len = (size_t)natsMsg_GetDataLength(m);
    /* The plain-message attributes, when there is no ce- header. */
    size_t plain = h.n == 0 ? 320 : 0;
    sl_event *ev = NULL;
    sl_status st = h.too_many
                       ? SL_FULL
                       : sl__event_create_sized(data_len + h.bytes + plain, &ev);
    if (st == SL_OK) {
        st = ce_headers_apply(&h, ev);
    }
    free((void *)h.keys); /* allocated by nats.c with malloc */
    char idbuf[320];
    if (st == SL_OK && h.n == 0) {
        const char *id = NULL;
        if (natsMsgHeader_Get(m, "Nats-Msg-Id", &id) != NATS_OK ||
            id == NULL || id[0] == '\0') {
            plain_id(idbuf, sizeof idbuf, stream, created_ns, seq);
            id = idbuf;
        }
        if ((st = sl_event_set(ev, SL_ATTR_ID, id)) == SL_OK &&
            (st = sl_event_set(ev, SL_ATTR_TYPE, "nats.message")) == SL_OK) {
            st = sl_event_set(ev, SL_ATTR_SOURCE, natsMsg_GetSubject(m));
        }
        if (st == SL_OK) {
            st = sl_ce_from_header(ev, CE_PREFIX, "ce-specversion", "1.0",
                                   NULL);
        }
    } else if (st == SL_OK && sl_event_id(ev) == NULL) {
        plain_id(idbuf, sizeof idbuf, stream, created_ns, seq);
        st = sl_event_set(ev, SL_ATTR_ID, idbuf);
    }
    if (st == SL_OK) {
        st = sl_event_set_data(ev, natsMsg_GetData(m), data_len);
    }
    if (st != SL_OK) {
        sl_event_unref(ev);
        return st;
    }
    *out = ev;
    return SL_OK;
}

/* ---- publishing ---------------------------------------------------------------- */

/* The pending table: open addressing with linear probing, at most half
 * full (ntable <= PUB_MAX_PENDING = PUB_SLOTS / 2), so a probe always
 * meets a free slot. Callers hold pub_mu. */
static uint32_t pub_home(const natsMsg *m)
{
    /* Fibonacci hashing of the address: the low bits of malloc'ed
     * addresses carry little. */
    return (uint32_t)(((uint64_t)(uintptr_t)m * 0x9E3779B97F4A7C15ULL) >>
                      (64 - PUB_SLOT_BITS));
}

static void pub_insert(nats_engine *e, natsMsg *m, sl_publish_cb cb, void *ctx,
                       uint64_t deadline_ms, bool cb_any_thread)
{
    uint32_t i = pub_home(m);
    while (e->pubs[i].msg != NULL) {
        i = (i + 1) & (PUB_SLOTS - 1);
    }
    e->pubs[i] = (npub){.msg = m,
                        .cb = cb,
                        .ctx = ctx,
                        .deadline_ms = deadline_ms,
                        .cb_any_thread = cb_any_thread};
    e->ntable++;
}

/* The slot of @p m, or PUB_SLOTS. */
static uint32_t pub_find(nats_engine *e, const natsMsg *m)
{
    for (uint32_t i = pub_home(m);; i = (i + 1) & (PUB_SLOTS - 1)) {
        if (e->pubs[i].msg == m) {
            return i;
        }
        if (e->pubs[i].msg == NULL) {
            return PUB_SLOTS;
        }
    }
}

/* Free slot @p i, moving later entries of its probe run back so that
 * every entry stays reachable from its home slot (no tombstones). */
static void pub_remove_at(nats_engine *e, uint32_t i)
{
    e->ntable--;
    if (e->pubs[i].deadline_ms == 0) {
        e->nexpired--;
    }
    uint32_t j = i;
    for (;;) {
        e->pubs[i].msg = NULL;
        uint32_t home;
        do {
            j = (j + 1) & (PUB_SLOTS - 1);
            if (e->pubs[j].msg == NULL) {
                return;
            }
            home = pub_home(e->pubs[j].msg);
            /* An entry whose home lies cyclically in (i, j] stays. */
        } while (i <= j ? (i < home && home <= j) : (i < home || home <= j));
        e->pubs[i] = e->pubs[j];
        i = j;
    }
}

static sl_status pubs_init(nats_engine *e)
{
    e->pubs = sl_calloc(PUB_SLOTS, sizeof *e->pubs);
    e->outcomes = sl_calloc(OUT_SLOTS, sizeof *e->outcomes);
    if (e->pubs == NULL || e->outcomes == NULL) {
        sl_free(e->pubs);
        sl_free(e->outcomes);
        return SL_NOMEM;
    }
    pthread_mutex_init(&e->pub_mu, NULL);
    sl__cond_init_mono(&e->confirm_cv);
    e->pubs_ready = true;
    return SL_OK;
}

/* Refuse new publishes and let the confirm thread finish what is queued. */
static void pubs_close(nats_engine *e)
{
    if (!e->pubs_ready) {
        return;
    }
    pthread_mutex_lock(&e->pub_mu);
    e->pub_closing = true;
    pthread_cond_broadcast(&e->confirm_cv);
    pthread_mutex_unlock(&e->pub_mu);
}

/* Queue an outcome for its callback (pub_mu held). */
static void outcome_put(nats_engine *e, sl_publish_cb cb, void *ctx,
                        sl_status st)
{
    e->outcomes[(e->out_head + e->nout) & (OUT_SLOTS - 1)] =
        (nconfirm){.cb = cb, .ctx = ctx, .st = st};
    e->nout++;
}

/* Take up to CONFIRM_BATCH outcomes, in order (pub_mu held). They stop
 * counting against the window before their callbacks run, so a producer
 * whose window a callback opens finds room in the engine too. */
static uint32_t outcomes_take(nats_engine *e, nconfirm *out)
{
    uint32_t n = e->nout < CONFIRM_BATCH ? e->nout : CONFIRM_BATCH;
    for (uint32_t i = 0; i < n; i++) {
        out[i] = e->outcomes[(e->out_head + i) & (OUT_SLOTS - 1)];
    }
    e->out_head = (e->out_head + n) & (OUT_SLOTS - 1);
    e->nout -= n;
    return n;
}

/* Set while a thread runs publish callbacks: a publish from inside one
 * neither takes more outcomes (no recursion) nor counts as a thread that
 * will. */
static _Thread_local bool tl_in_callbacks;

static void outcomes_call(const nconfirm *batch, uint32_t n)
{
    bool was = tl_in_callbacks;
    tl_in_callbacks = true;
    for (uint32_t i = 0; i < n; i++) {
        batch[i].cb(batch[i].st, batch[i].ctx);
    }
    tl_in_callbacks = was;
}

/* After the confirm thread and nats.c are gone: call what is left, the
 * outcomes that came back and then, as SL_TIMEOUT (unknown), the
 * publishes whose PubAck never came and that were not reported yet. */
static void pubs_fini(nats_engine *e)
{
    if (!e->pubs_ready) {
        return;
    }
    nconfirm batch[CONFIRM_BATCH];
    uint32_t n;
    while ((n = outcomes_take(e, batch)) > 0) {
        outcomes_call(batch, n);
    }
    for (uint32_t i = 0; i < PUB_SLOTS; i++) {
        if (e->pubs[i].msg != NULL && e->pubs[i].deadline_ms != 0 &&
            e->pubs[i].cb != NULL) {
            e->pubs[i].cb(SL_TIMEOUT, e->pubs[i].ctx);
        }
    }
    sl_free(e->pubs);
    sl_free(e->outcomes);
    pthread_cond_destroy(&e->confirm_cv);
    pthread_mutex_destroy(&e->pub_mu);
}

/* nats.c's thread: move the outcome from the table to the ring. The
 * confirm thread is woken only when it sleeps and no publishing thread
 * will take the outcome. A callback that is sluice's own (the producer's
 * bookkeeping when its caller gave none) runs here, without the lock. */
static void on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae,
                       void *closure)
{
    (void)js;
    nats_engine *e = closure;
    sl_status st = pa != NULL ? SL_OK
                              : from_pub_error(pae ? pae->Err : NATS_ERR,
                                               pae ? pae->ErrCode : 0,
                                               pae ? pae->ErrText : NULL);
    bool wake = false;
    npub direct = {0};
    pthread_mutex_lock(&e->pub_mu);
    uint32_t i = pub_find(e, msg);
    if (i < PUB_SLOTS) {
        npub p = e->pubs[i];
        pub_remove_at(e, i);
        /* An expired publish was reported already: its late PubAck only
         * frees the slot. */
        if (p.cb != NULL && p.deadline_ms != 0 && p.cb_any_thread) {
            direct = p;
        } else if (p.cb != NULL && p.deadline_ms != 0) {
            outcome_put(e, p.cb, p.ctx, st);
            wake = e->confirm_waiting &&
                   atomic_load_explicit(&e->publishing,
                                        memory_order_relaxed) == 0;
            if (wake) {
                e->confirm_waiting = false;
            }
        }
    }
    pthread_mutex_unlock(&e->pub_mu);
    if (wake) {
        pthread_cond_signal(&e->confirm_cv);
    }
    if (direct.cb != NULL) {
        direct.cb(st, direct.ctx);
    }
    natsMsg_Destroy(msg);
}

/* Report as SL_TIMEOUT the publishes of up to EXPIRY_SCAN_SLOTS slots
 * whose PubAck is overdue (pub_mu held); their slots stay while nats.c
 * holds the message. A scan in slices lets publishes through between
 * them; an entry that a removal moves past the scan is found the next
 * time. Returns whether the whole table was scanned. */
static bool expiry_scan(nats_engine *e, uint64_t now_ms)
{
    uint32_t end = e->scan_next + EXPIRY_SCAN_SLOTS;
    for (uint32_t i = e->scan_next; i < end; i++) {
        npub *p = &e->pubs[i];
        if (p->msg != NULL && p->deadline_ms != 0 && p->deadline_ms <= now_ms) {
            if (p->cb != NULL) {
                outcome_put(e, p->cb, p->ctx, SL_TIMEOUT);
            }
            p->deadline_ms = 0;
            e->nexpired++;
        }
    }
    e->scan_next = end & (PUB_SLOTS - 1);
    return e->scan_next == 0;
}

/* Take back from nats.c the messages of expired publishes once they are
 * all it holds (pub_mu held): their PubAcks are lost (a reconnect), and
 * nats.c would keep them until the engine closes. *out gets the messages
 * to destroy. */
static void expired_reclaim(nats_engine *e, natsMsgList *out)
{
    if (e->nexpired == 0 || e->nexpired != e->ntable ||
        js_PublishAsyncGetPendingList(out, e->js) != NATS_OK) {
        return;
    }
    for (int k = 0; k < out->Count; k++) {
        uint32_t i = pub_find(e, out->Msgs[k]);
        if (i < PUB_SLOTS) {
            pub_remove_at(e, i);
        }
    }
}

/* Calls the outcomes no publishing thread took, in PubAck order, and
 * every EXPIRY_SCAN_MS while publishes are outstanding looks for those
 * whose PubAck is overdue. */
static void *confirm_main(void *arg)
{
    nats_engine *e = arg;
    nconfirm batch[CONFIRM_BATCH];
    uint64_t scan_at = 0; /* mono ms; 0: no scan under way */
    pthread_mutex_lock(&e->pub_mu);
    for (;;) {
        uint32_t n = outcomes_take(e, batch);
        if (n > 0) {
            pthread_mutex_unlock(&e->pub_mu);
            outcomes_call(batch, n);
            pthread_mutex_lock(&e->pub_mu);
            continue;
        }
        if (e->pub_closing) {
            break;
        }
        uint64_t now = sl_time_mono_ms();
        if (e->ntable > e->nexpired && scan_at == 0) {
            scan_at = now + EXPIRY_SCAN_MS;
        }
        if (scan_at != 0 && now >= scan_at) {
            natsMsgList lost = {0};
            if (expiry_scan(e, now)) {
                expired_reclaim(e, &lost);
                scan_at = 0;
            }
            /* Between slices, publishes and PubAcks get the lock. */
            pthread_mutex_unlock(&e->pub_mu);
            natsMsgList_Destroy(&lost);
            pthread_mutex_lock(&e->pub_mu);
            continue;
        }
        uint64_t wait = CONFIRM_WAIT_MS;
        if (scan_at != 0 && scan_at - now < wait) {
            wait = scan_at - now;
        }
        struct timespec ts;
        sl__deadline_after(&ts, wait);
        e->confirm_waiting = true;
        pthread_cond_timedwait(&e->confirm_cv, &e->pub_mu, &ts);
        e->confirm_waiting = false;
    }
    pthread_mutex_unlock(&e->pub_mu);
    return NULL;
}

/* A bounded channel publishes synchronously, so that a discard-new
 * refusal is the publish call's SL_FULL, as the API promises. */
static sl_status publish_sync(nats_engine *e, natsMsg *m, sl_publish_cb cb,
                              void *ctx)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = API_WAIT_MS;
    jsPubAck *pa = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_PublishMsg(&pa, e->js, m, &po, &jerr);
    jsPubAck_Destroy(pa);
    natsMsg_Destroy(m);
    if (s != NATS_OK) {
        sl_status st = from_pub_error(s, jerr, nats_GetLastError(NULL));
        if (st == SL_TIMEOUT && cb != NULL) {
            cb(SL_TIMEOUT, ctx); /* the outcome is unknown */
            return SL_OK;
        }
        return st;
    }
    if (cb != NULL) {
        cb(SL_OK, ctx);
    }
    return SL_OK;
}

/* The tail of every publish from outside a callback: leave, taking up to
 * a batch of the outcomes that came back meanwhile, and call them here. If
 * outcomes are left for nobody, wake the confirm thread. */
static void publish_leave(nats_engine *e)
{
    nconfirm batch[CONFIRM_BATCH];
    pthread_mutex_lock(&e->pub_mu);
    uint32_t left = atomic_fetch_sub(&e->publishing, 1) - 1;
    uint32_t n = outcomes_take(e, batch);
    bool wake = e->nout > 0 && left == 0 && e->confirm_waiting;
    if (wake) {
        e->confirm_waiting = false;
    }
    pthread_mutex_unlock(&e->pub_mu);
    if (wake) {
        pthread_cond_signal(&e->confirm_cv);
    }
    outcomes_call(batch, n);
}

static sl_status publish_one(nats_engine *e, const char *channel,
                             sl_event *ev, unsigned flags, sl_publish_cb cb,
                             void *ctx)
{
    sl_status st = sl_event_validate(ev, e->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    nchan *c = NULL;
    if ((st = chan_get(e, channel, &c)) != SL_OK) {
        return st;
    }
    natsMsg *m = NULL;
    st = event_to_msg(ev, c->subject, !(flags & SL_PUBLISH_NO_DEDUP), &m);
    if (st != SL_OK) {
        return st;
    }
    if (atomic_load_explicit(&c->bounded, memory_order_relaxed)) {
        return publish_sync(e, m, cb, ctx);
    }
    uint64_t deadline = sl_time_mono_ms() + PUB_ACK_WAIT_MS;
    pthread_mutex_lock(&e->pub_mu);
    st = e->pub_closing                                ? SL_CLOSED
         : e->ntable + e->nout >= PUB_MAX_PENDING ? SL_FULL
                                                     : SL_OK;
    if (st == SL_OK) {
        pub_insert(e, m, cb, ctx, deadline,
                   (flags & SL__PUBLISH_CB_ANY_THREAD) != 0);
    }
    pthread_mutex_unlock(&e->pub_mu);
    if (st != SL_OK) {
        natsMsg_Destroy(m);
        return st;
    }

    /* No MaxWait: nats.c would allocate a record per publish and walk its
     * timer over every one of them later, acknowledged or not (5 s after,
     * about 0.5 us of CPU per event, and its allocations interleaved with
     * the publisher's cost 1 us more). The engine reports overdue
     * PubAcks itself (expiry_scan). */
    natsMsg *send = m;
    natsStatus s = js_PublishMsgAsync(e->js, &send, NULL);
    if (s != NATS_OK) {
        /* Not sent: nats.c left the message to us and will not call the
         * handler; take the entry back unless it ran all the same. One
         * already reported as timed out keeps that outcome. */
        bool reported = false;
        pthread_mutex_lock(&e->pub_mu);
        uint32_t i = pub_find(e, m);
        if (i < PUB_SLOTS) {
            reported = e->pubs[i].deadline_ms == 0;
            pub_remove_at(e, i);
        }
        pthread_mutex_unlock(&e->pub_mu);
        if (i < PUB_SLOTS) {
            natsMsg_Destroy(send);
            st = reported ? SL_OK : sl__nats_status(s);
        }
    }
    return st;
}

static sl_status nats_publish(sl_engine *base, const char *channel,
                              sl_event *ev, unsigned flags, sl_publish_cb cb,
                              void *ctx)
{
    nats_engine *e = (nats_engine *)base;
    if (tl_in_callbacks) {
        return publish_one(e, channel, ev, flags, cb, ctx);
    }
    atomic_fetch_add(&e->publishing, 1);
    sl_status st = publish_one(e, channel, ev, flags, cb, ctx);
    publish_leave(e);
    return st;
}

/* ---- consuming -------------------------------------------------------------------- */

static void adv_listen(nats_engine *e, const nats_sub *s);

static sl_status nats_subscribe(sl_engine *base, const char *channel,
                                const char *group,
                                const sl_subscribe_opts *opts,
                                sl_subscription **out, sl_diag *diag)
{
    nats_engine *e = (nats_engine *)base;
    nats_sub *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    s->base.drv = &sl__nats_driver;
    s->eng = e;
    s->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    pthread_mutex_init(&s->mu, NULL);
    sl_status st = SL_NOMEM;
    if ((s->channel = sl_strdup(channel)) == NULL ||
        (s->group = sl_strdup(group)) == NULL ||
        (s->stream = escape_name(e->ns, channel)) == NULL ||
        (s->durable = escape_name(NULL, group)) == NULL) {
        goto fail;
    }
    s->key = fnv1a(s->stream, s->durable);
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus ns =
        js_GetConsumerInfo(&ci, e->js, s->stream, s->durable, NULL, &jerr);
    if (ns != NATS_OK) {
        st = (ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
              jerr == JSStreamNotFoundErr)
                 ? sl_diag_set(diag, SL_NOT_FOUND,
                               "group '%s' on channel '%s' is not declared",
                               group, channel)
                 : sl_diag_set(diag, sl__nats_status(ns), "consumer info: %s",
                               nats_GetLastError(NULL));
        goto fail;
    }
    unsigned long ma = 0;
    const char *d = ci->Config ? ci->Config->Description : NULL;
    if (d != NULL && sscanf(d, "sluice max_attempts=%lu", &ma) == 1 && ma) {
        s->max_attempts = ma > UINT32_MAX ? UINT32_MAX : (uint32_t)ma;
    } else {
        s->max_attempts = DEFAULT_MAX_ATTEMPTS;
    }
    jsConsumerInfo_Destroy(ci);
    /* The stream's creation time goes into the ids of messages that carry
     * none (plain_id). */
    jsStreamInfo *si = NULL;
    ns = js_GetStreamInfo(&si, e->js, s->stream, NULL, &jerr);
    if (ns != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(ns), "stream info %s: %s",
                         s->stream, nats_GetLastError(NULL));
        goto fail;
    }
    s->stream_created_ns = created_ns_of(si);
    jsStreamInfo_Destroy(si);
    /* Pull requests are sent by nats_fetch itself rather than through
     * natsSubscription_Fetch (see there): a plain subscription receives
     * their answers. */
    size_t nlen = strlen(e->api) + strlen("CONSUMER.MSG.NEXT..") +
                  strlen(s->stream) + strlen(s->durable) + 1;
    natsInbox *inbox = NULL;
    if ((s->next_subject = sl_malloc(nlen)) == NULL) {
        goto fail;
    }
    snprintf(s->next_subject, nlen, "%sCONSUMER.MSG.NEXT.%s.%s", e->api,
             s->stream, s->durable);
    ns = natsInbox_Create(&inbox);
    if (ns == NATS_OK) {
        char wild[sizeof s->inbox + 2];
        snprintf(s->inbox, sizeof s->inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        snprintf(wild, sizeof wild, "%s.*", s->inbox);
        ns = natsConnection_SubscribeSync(&s->ns, e->nc, wild);
    }
    if (ns == NATS_OK) {
        /* Bounded by the prefetch anyway; no slow-consumer drops. */
        ns = natsSubscription_SetPendingLimits(s->ns, -1, -1);
    }
    if (ns != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(ns), "subscribe %s/%s: %s",
                         s->stream, s->durable, natsStatus_GetText(ns));
        goto fail;
    }
    adv_listen(e, s);
    pthread_mutex_lock(&e->mu);
    s->next = e->subs;
    e->subs = s;
    pthread_mutex_unlock(&e->mu);
    *out = &s->base;
    return SL_OK;
fail:
    natsSubscription_Destroy(s->ns);
    sl_free(s->next_subject);
    sl_free(s->channel);
    sl_free(s->group);
    sl_free(s->stream);
    sl_free(s->durable);
    pthread_mutex_destroy(&s->mu);
    sl_free(s);
    return st;
}

/* Settle on the server and wait for its answer (the "ack of the ack"), so
 * that depth read right after sees it. */
static sl_status settle_sync(nats_engine *e, natsMsg *m, const char *body)
{
    const char *reply = natsMsg_GetReply(m);
    if (reply == NULL) {
        return SL_INVALID;
    }
    natsMsg *resp = NULL;
    natsStatus s = natsConnection_Request(&resp, e->nc, reply, body,
                                          (int)strlen(body), API_WAIT_MS);
    natsMsg_Destroy(resp);
    return sl__nats_status(s);
}

static void flight_add(nats_sub *s, ndelivery *d)
{
    d->prev = NULL;
    d->next = s->flight;
    if (s->flight) {
        s->flight->prev = d;
    }
    s->flight = d;
    s->nflight++;
}

static void flight_remove(nats_sub *s, ndelivery *d)
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

static void delivery_free(ndelivery *d)
{
    sl_event_unref(d->base.ev);
    natsMsg_Destroy(d->msg);
    sl_free(d);
}

/* Publish the dead letter of @p ev (from group @p group on @p channel) and
 * wait for its PubAck. @p msg_id, when set, is its Nats-Msg-Id, so that a
 * repeated attempt within the duplicate window adds nothing. */
static sl_status publish_dead_letter(nats_engine *e, const char *channel,
                                     const char *group, const sl_event *ev,
                                     sl_dead_reason reason, uint32_t attempts,
                                     const char *error, const char *msg_id)
{
    char dlq[512];
    sl_status st = sl__dlq_channel_name(channel, group, dlq, sizeof dlq);
    sl_event *dead = NULL;
    char *subject = NULL;
    natsMsg *out = NULL;
    if (st == SL_OK) {
        st = sl__dead_letter_event(ev, reason, attempts, error, channel,
                                   group, wall_ms(e), &dead);
    }
    if (st == SL_OK) {
        st = chan_lookup(e, dlq, &subject);
    }
    if (st == SL_OK) {
        st = event_to_msg(dead, subject, false, &out);
    }
    if (st == SL_OK && msg_id != NULL) {
        st = sl__nats_status(natsMsgHeader_Set(out, "Nats-Msg-Id", msg_id));
    }
    if (st == SL_OK) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = API_WAIT_MS;
        jsErrCode jerr = 0;
        natsStatus ns = js_PublishMsg(NULL, e->js, out, &po, &jerr);
        st = ns == NATS_OK ? SL_OK
                           : from_pub_error(ns, jerr, nats_GetLastError(NULL));
    }
    natsMsg_Destroy(out);
    sl_free(subject);
    sl_event_unref(dead);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG, "dead-lettering %s from %s/%s failed: %s",
                sl_event_id(ev), channel, group, sl_status_str(st));
    }
    return st;
}

/* Publish the dead letter of @p ev and terminate @p m. */
static sl_status dead_letter(nats_engine *e, nats_sub *s, natsMsg *m,
                             const sl_event *ev, uint64_t seq,
                             sl_dead_reason reason, uint32_t attempts,
                             const char *error)
{
    sl_status st = publish_dead_letter(e, s->channel, s->group, ev, reason,
                                       attempts, error, NULL);
    if (st != SL_OK) {
        /* Keep the event: it comes back after AckWait rather than being
         * lost without a dead letter. */
        return st;
    }
    track_forget(e, s->key, seq);
    return settle_sync(e, m, "+TERM");
}

/* A decimal token ending in '.': its value; false when it is not one
 * (strtoull's work without its locale and bases: this runs for every
 * delivery). */
static bool dec_token(const char *p, uint64_t *out)
{
    uint64_t v = 0;
    const char *start = p;
    for (; *p >= '0' && *p <= '9'; p++) {
        unsigned digit = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - digit) / 10) {
            return false;
        }
        v = v * 10 + digit;
    }
    *out = v;
    return p != start && *p == '.';
}

/* The stream sequence and delivery count of a delivery, from its ack
 * subject: "$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<dseq>.<ts>.
 * <pending>", or the form with domain and account hash after "ACK" (11 or
 * 12 tokens). */
static bool parse_ack_reply(const char *reply, uint64_t *seq,
                            uint64_t *delivered)
{
    if (reply == NULL || strncmp(reply, "$JS.ACK.", 8) != 0) {
        return false;
    }
    const char *tok[13];
    int n = 0;
    for (const char *p = reply; p != NULL && n < 13;) {
        tok[n++] = p;
        p = strchr(p, '.');
        p = p ? p + 1 : NULL;
    }
    if (n < 9) {
        return false;
    }
    int at = n == 9 ? 4 : 6; /* the delivery count; the sequence follows */
    return dec_token(tok[at], delivered) && dec_token(tok[at + 1], seq);
}

/* Ask the consumer for up to @p batch deliveries, answered on
 * "<inbox>.<id>". Fetching thread only. */
static sl_status pull_request(nats_engine *e, nats_sub *s, uint32_t batch,
                              bool no_wait)
{
    uint64_t expires_ms = no_wait ? PULL_NOWAIT_MS : PULL_EXPIRES_MS;
    uint64_t id = ++s->req_seq;
    char reply[sizeof s->inbox + 24];
    char body[128];
    snprintf(reply, sizeof reply, "%s.%" PRIu64, s->inbox, id);
    int len = snprintf(body, sizeof body,
                       "{\"batch\":%" PRIu32 ",\"expires\":%" PRIu64 "%s}",
                       batch, expires_ms * 1000000,
                       no_wait ? ",\"no_wait\":true" : "");
    natsStatus ns = natsConnection_PublishRequest(e->nc, s->next_subject,
                                                  reply, body, len);
    if (ns != NATS_OK) {
        return sl__nats_status(ns);
    }
    /* Send it now, with the acks buffered before it. Left to nats.c's
     * flusher thread it would wait a millisecond for more to write (its
     * write coalescing), and the server, with nothing asked of it, would
     * wait too: a millisecond of every batch. The flush is a PING whose
     * PONG comes once the server has read all of it, about when the first
     * answer comes; its error, if any, the answer's wait reports. */
    if (natsConnection_Status(e->nc) == NATS_CONN_STATUS_CONNECTED) {
        natsConnection_FlushTimeout(e->nc, PULL_FLUSH_MS);
    }
    s->req_id = id;
    s->req_nowait = no_wait;
    s->req_left = batch;
    s->req_until = sl_time_mono_ms() + expires_ms + PULL_GRACE_MS;
    return SL_OK;
}

/* True when messages wait in @p s's subscription, unread. */
static bool queued(nats_sub *s)
{
    int msgs = 0, bytes = 0;
    return natsSubscription_GetPending(s->ns, &msgs, &bytes) == NATS_OK &&
           msgs > 0;
}

/* The id of the request @p m answers (its subject "<inbox>.<id>"). */
static uint64_t request_of(const natsMsg *m)
{
    const char *subj = natsMsg_GetSubject((natsMsg *)m);
    const char *dot = subj ? strrchr(subj, '.') : NULL;
    return dot ? strtoull(dot + 1, NULL, 10) : 0;
}

/* A status message of the pull protocol ("NATS/1.0 404 No Messages",
 * 408 Request Timeout, 409 ..., 100 Idle Heartbeat): its code, or 0 for a
 * delivery. */
static int status_of(natsMsg *m)
{
    const char *v = NULL;
    if (natsMsg_GetDataLength(m) > 0 ||
        natsMsgHeader_Get(m, "Status", &v) != NATS_OK || v == NULL) {
        return 0;
    }
    return atoi(v);
}

/* Turn one delivered message into a delivery in out[*got], or settle it
 * here: an unreadable event is terminated, an expired one or one past its
 * attempts is dead-lettered, one beyond the prefetch is given back.
 * Takes @p m. */
static void take_message(nats_engine *e, nats_sub *s, natsMsg *m,
                         sl_delivery **out, size_t *got)
{
    uint64_t seq = 0, delivered = 0;
    if (!parse_ack_reply(natsMsg_GetReply(m), &seq, &delivered)) {
        natsMsg_Destroy(m);
        return;
    }
    pthread_mutex_lock(&s->mu);
    bool room = s->nflight < s->prefetch;
    pthread_mutex_unlock(&s->mu);
    if (!room) {
        /* Only a late answer to an earlier request can bring more than
         * the credit asked for: give it back, not counted. */
        track_nak(e, s->key, seq, true, 0);
        natsConnection_PublishString(e->nc, natsMsg_GetReply(m), "-NAK");
        natsMsg_Destroy(m);
        return;
    }
    uint32_t released = 0;
    pthread_mutex_lock(&e->mu);
    track *t = track_find(e, s->key, seq, false);
    if (t != NULL) {
        released = t->released;
        t->nakked = false;
    }
    pthread_mutex_unlock(&e->mu);
    uint32_t attempt =
        delivered > released ? (uint32_t)(delivered - released) : 1;
    sl_event *ev = NULL;
    sl_status st = msg_to_event(m, s->stream, s->stream_created_ns, seq, &ev);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "message %" PRIu64 " on %s is not a readable event "
                "(%s): terminated",
                seq, s->stream, sl_status_str(st));
        settle_sync(e, m, "+TERM");
        natsMsg_Destroy(m);
        return;
    }
    uint64_t deadline = sl_event_deadline_ms(ev);
    if (deadline != 0 && deadline <= wall_ms(e)) {
        dead_letter(e, s, m, ev, seq, SL_DEAD_EXPIRED, attempt - 1,
                    "deadline passed before delivery");
        sl_event_unref(ev);
        natsMsg_Destroy(m);
        return;
    }
    if (attempt > s->max_attempts) {
        dead_letter(e, s, m, ev, seq, SL_DEAD_MAX_ATTEMPTS, s->max_attempts,
                    "delivery limit reached: the handler crashed or "
                    "timed out on every attempt");
        sl_event_unref(ev);
        natsMsg_Destroy(m);
        return;
    }
    ndelivery *d = sl_calloc(1, sizeof *d);
    if (d == NULL) {
        settle_sync(e, m, "-NAK");
        sl_event_unref(ev);
        natsMsg_Destroy(m);
        return;
    }
    d->base.drv = &sl__nats_driver;
    d->base.ev = ev;
    d->base.attempt = attempt;
    d->base.channel = s->channel;
    d->base.group = s->group;
    d->msg = m;
    d->sub = s;
    d->seq = seq;
    d->held_since = sl_time_mono_ms();
    pthread_mutex_lock(&s->mu);
    flight_add(s, d);
    pthread_mutex_unlock(&s->mu);
    out[(*got)++] = &d->base;
}

/* Fetch with pull requests of our own, one outstanding at a time, rather
 * than natsSubscription_Fetch: in nats.c 3.4 that function compares its
 * count with a batch it has just lowered, so when messages of an earlier
 * request are already queued it can collect more than the batch and write
 * past its array (heap corruption; seen as a crash in the cluster chaos
 * test). Here a request asks for no more than the free credit, it stays
 * outstanding across calls until answered in full, ended by a status or
 * past its expiry, and a message beyond the credit (a late answer) is
 * given back. */
static sl_status nats_fetch(sl_subscription *base, sl_delivery **out,
                            size_t max, uint64_t timeout_ms, size_t *n)
{
    nats_sub *s = (nats_sub *)base;
    nats_engine *e = s->eng;
    uint64_t until = sl_time_mono_ms() + timeout_ms;
    size_t got = 0;
    bool asked = false;
    sl_status st = SL_OK;
    for (;;) {
        if (atomic_load(&s->interrupted)) {
            st = SL_CLOSED;
            break;
        }
        uint64_t now = sl_time_mono_ms();
        if (s->req_id != 0 &&
            (s->req_left == 0 || (now >= s->req_until && !queued(s)))) {
            /* Over: answered in full, or past its expiry with nothing of
             * its answer still queued here (read that first: a process
             * short of CPU must not take its own answer for a late one
             * and give it back). */
            s->req_id = 0;
        }
        if (s->req_id == 0) {
            if (got > 0) {
                break;
            }
            if (asked && now >= until) {
                st = SL_EMPTY;
                break;
            }
            pthread_mutex_lock(&s->mu);
            size_t credit =
                s->prefetch > s->nflight ? s->prefetch - s->nflight : 0;
            pthread_mutex_unlock(&s->mu);
            size_t want = max < credit ? max : credit;
            if (want == 0) {
                st = SL_FULL;
                break;
            }
            /* First ask for what is there now (no_wait: what there is
             * comes at once, then a 404/408 ends the request), so that a
             * backlog comes in one call; then, when there was nothing,
             * wait for what comes next. */
            bool no_wait = !asked || until <= now || until - now < 10;
            if ((st = pull_request(e, s, (uint32_t)want, no_wait)) !=
                SL_OK) {
                break;
            }
            asked = true;
        }
        /* A no-wait request is read until it is answered in full or
         * ended; from a waiting one, once something is in hand, take
         * only what already arrived. */
        uint64_t wait = 0;
        if (got == 0 || s->req_nowait) {
            wait = until > now ? until - now : 0;
            if (s->req_nowait) {
                wait = s->req_until > now ? s->req_until - now : 0;
            }
            if (wait > FETCH_SLICE_MS) {
                wait = FETCH_SLICE_MS;
            }
            if (s->req_until <= now) {
                wait = 0; /* only what is queued (see above) */
            } else if (s->req_until - now < wait) {
                wait = s->req_until - now;
            }
        }
        natsMsg *m = NULL;
        natsStatus ns = natsSubscription_NextMsg(&m, s->ns, (int64_t)wait);
        if (ns == NATS_TIMEOUT) {
            if (got > 0 && !s->req_nowait) {
                break;
            }
            if (sl_time_mono_ms() >= until &&
                !(s->req_id != 0 && s->req_nowait)) {
                st = SL_EMPTY;
                break;
            }
            continue;
        }
        if (ns == NATS_NO_RESPONDERS) {
            /* No JetStream to answer (a cluster without a leader). */
            s->req_id = 0;
            st = SL_UNAVAILABLE;
            break;
        }
        if (ns == NATS_SLOW_CONSUMER) {
            continue; /* reported once; nothing was dropped (no limit) */
        }
        if (ns != NATS_OK) {
            st = e->closing ? SL_CLOSED : sl__nats_status(ns);
            break;
        }
        int code = status_of(m);
        if (code != 0) {
            /* 404 / 408 / 409 end the request they answer (a status
             * arrives on the request's reply subject); 100 is an idle
             * heartbeat. */
            if (code != 100 && request_of(m) == s->req_id) {
                s->req_id = 0;
            }
            natsMsg_Destroy(m);
            continue;
        }
        /* A delivery keeps the subject it was published to: counted
         * against the live request (a late one from an earlier request
         * only ends the live one sooner; take_message keeps the bound). */
        if (s->req_id != 0 && s->req_left > 0) {
            s->req_left--;
        }
        take_message(e, s, m, out, &got);
        if (got == max) {
            break;
        }
    }
    if (got > 0) {
        *n = got;
        return SL_OK;
    }
    return st;
}

static void nats_interrupt(sl_subscription *base)
{
    nats_sub *s = (nats_sub *)base;
    atomic_store(&s->interrupted, true);
}

static uint32_t nats_in_flight(const sl_subscription *base)
{
    nats_sub *s = (nats_sub *)base;
    pthread_mutex_lock(&s->mu);
    uint32_t n = s->nflight;
    pthread_mutex_unlock(&s->mu);
    return n;
}

static void nats_unsubscribe(sl_subscription *base)
{
    nats_sub *s = (nats_sub *)base;
    nats_engine *e = s->eng;
    pthread_mutex_lock(&e->mu);
    for (nats_sub **pp = &e->subs; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    pthread_mutex_unlock(&e->mu);
    /* Like a consumer that died: its deliveries go to the others at once
     * (not after AckWait), and the attempts they used stay counted. */
    pthread_mutex_lock(&s->mu);
    ndelivery *d = s->flight;
    s->flight = NULL;
    s->nflight = 0;
    pthread_mutex_unlock(&s->mu);
    while (d != NULL) {
        ndelivery *next = d->next;
        track_nak(e, s->key, d->seq, false, 0);
        settle_sync(e, d->msg, "-NAK");
        delivery_free(d);
        d = next;
    }
    /* Deliveries that arrived but were never fetched, and what the
     * outstanding pull request still brings until it expires (at most
     * PULL_EXPIRES_MS): given back unstarted, not counted here, rather
     * than left to wait out AckWait. */
    for (;;) {
        uint64_t now = sl_time_mono_ms();
        bool live = s->req_id != 0 && s->req_left > 0 && now < s->req_until;
        uint64_t wait = live ? s->req_until - now : 0;
        natsMsg *m = NULL;
        if (wait > FETCH_SLICE_MS) {
            wait = FETCH_SLICE_MS;
        }
        natsStatus ns = natsSubscription_NextMsg(&m, s->ns, (int64_t)wait);
        if (ns == NATS_TIMEOUT && live) {
            continue;
        }
        if (ns != NATS_OK) {
            break;
        }
        uint64_t seq = 0, delivered = 0;
        if (status_of(m) != 0) {
            if (request_of(m) == s->req_id) {
                s->req_id = 0;
            }
        } else if (parse_ack_reply(natsMsg_GetReply(m), &seq, &delivered)) {
            if (s->req_left > 0) {
                s->req_left--;
            }
            track_nak(e, s->key, seq, true, 0);
            natsConnection_PublishString(e->nc, natsMsg_GetReply(m), "-NAK");
        }
        natsMsg_Destroy(m);
    }
    natsSubscription_Unsubscribe(s->ns);
    natsSubscription_Destroy(s->ns);
    sl_free(s->next_subject);
    sl_free(s->channel);
    sl_free(s->group);
    sl_free(s->stream);
    sl_free(s->durable);
    pthread_mutex_destroy(&s->mu);
    sl_free(s);
}

static sl_status nats_settle(sl_delivery *base, sl_settle_op op,
                             uint64_t delay_ms, sl_dead_reason reason,
                             const char *error)
{
    ndelivery *d = (ndelivery *)base;
    nats_sub *s = d->sub;
    nats_engine *e = s->eng;
    pthread_mutex_lock(&s->mu);
    flight_remove(s, d);
    pthread_mutex_unlock(&s->mu);
    sl_status st = SL_OK;
    switch (op) {
    case SL_SETTLE_ACK:
        track_forget(e, s->key, d->seq);
        st = settle_sync(e, d->msg, "+ACK");
        break;
    case SL_SETTLE_DEAD:
        st = dead_letter(e, s, d->msg, d->base.ev, d->seq, reason,
                         d->base.attempt, error);
        break;
    case SL_SETTLE_RELEASE:
    case SL_SETTLE_RETRY: {
        /* A release is not an attempt; a delayed one (an id another
         * process is handling, engine/nats_kv.h) waits like a retry. */
        track_nak(e, s->key, d->seq, op == SL_SETTLE_RELEASE, delay_ms);
        char body[64];
        if (delay_ms == 0) {
            snprintf(body, sizeof body, "-NAK");
        } else {
            snprintf(body, sizeof body, "-NAK {\"delay\": %" PRIu64 "}",
                     delay_ms * 1000000);
        }
        st = settle_sync(e, d->msg, body);
        break;
    }
    }
    delivery_free(d);
    return st == SL_UNAVAILABLE || st == SL_TIMEOUT ? SL_CLOSED : st;
}

/* nats.c's thread: the server's answer to an ack sent by ack_many. */
static void on_ack_reply(natsConnection *nc, natsSubscription *sub,
                         natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nats_engine *e = closure;
    pthread_mutex_lock(&e->mu);
    if (e->acks_unconfirmed > 0) {
        e->acks_unconfirmed--;
    }
    pthread_cond_broadcast(&e->ack_cv);
    pthread_mutex_unlock(&e->mu);
    natsMsg_Destroy(msg);
}

/* Remember @p reply as the last ack sent for group @p key. */
static void ack_mark_set(nats_engine *e, uint64_t key, const char *reply)
{
    size_t len = strlen(reply) + 1;
    pthread_mutex_lock(&e->mu);
    ack_mark *a = e->ack_marks;
    while (a != NULL && a->key != key) {
        a = a->next;
    }
    if (a == NULL && (a = sl_calloc(1, sizeof *a)) != NULL) {
        a->key = key;
        a->next = e->ack_marks;
        e->ack_marks = a;
    }
    if (a != NULL && len > a->cap) {
        char *grown = sl_realloc(a->reply, len);
        if (grown != NULL) {
            a->reply = grown;
            a->cap = len;
        }
    }
    if (a != NULL && len <= a->cap) {
        memcpy(a->reply, reply, len);
        a->dirty = true;
    }
    pthread_mutex_unlock(&e->mu);
}

/* Ack again the last ack of every group that sent some since, asking for
 * the server's answer on ack_sub. Called with e->mu held; drops it while
 * publishing. */
static void ack_marks_confirm(nats_engine *e)
{
    for (ack_mark *a = e->ack_marks; a != NULL; a = a->next) {
        if (!a->dirty) {
            continue;
        }
        a->dirty = false;
        char inbox[128];
        snprintf(inbox, sizeof inbox, "%s.%" PRIu64, e->ack_inbox,
                 ++e->ack_seq);
        e->acks_unconfirmed++;
        e->ack_last_sent_ms = sl_time_mono_ms();
        /* The mark stays in the list until close, but ack_mark_set may
         * rewrite its subject once e->mu is dropped: publish a copy. */
        size_t len = strlen(a->reply) + 1;
        char *subject = sl_malloc(len);
        if (subject != NULL) {
            memcpy(subject, a->reply, len);
        }
        pthread_mutex_unlock(&e->mu);
        natsStatus s = subject != NULL
                           ? natsConnection_PublishRequestString(
                                 e->nc, subject, inbox, "+ACK")
                           : NATS_NO_MEMORY;
        sl_free(subject);
        pthread_mutex_lock(&e->mu);
        if (s != NATS_OK && e->acks_unconfirmed > 0) {
            e->acks_unconfirmed--;
        }
    }
}

/* Wait until the server applied every ack ack_many sent, so that what is
 * read next (depth, browse, another process after close) includes them.
 * An answer lost with a connection is given up on API_WAIT_MS after the
 * last confirmation was sent. */
static void acks_settle_wait(nats_engine *e)
{
    pthread_mutex_lock(&e->mu);
    ack_marks_confirm(e);
    while (e->acks_unconfirmed > 0) {
        uint64_t now = sl_time_mono_ms();
        uint64_t until = e->ack_last_sent_ms + API_WAIT_MS;
        if (now >= until) {
            e->acks_unconfirmed = 0; /* lost: the server redelivers */
            break;
        }
        struct timespec ts;
        sl__deadline_after(&ts, until - now);
        pthread_cond_timedwait(&e->ack_cv, &e->mu, &ts);
    }
    pthread_mutex_unlock(&e->mu);
}

static void ack_marks_free(nats_engine *e)
{
    while (e->ack_marks != NULL) {
        ack_mark *a = e->ack_marks;
        e->ack_marks = a->next;
        sl_free(a->reply);
        sl_free(a);
    }
}

/* True if the delivery after ds[i] (skipping NULLs) is of another
 * subscription, or there is none. */
static bool last_of_sub(sl_delivery **ds, size_t n, size_t i)
{
    const nats_sub *s = ((ndelivery *)ds[i])->sub;
    for (size_t j = i + 1; j < n; j++) {
        if (ds[j] != NULL) {
            return ((ndelivery *)ds[j])->sub != s;
        }
    }
    return true;
}

static sl_status nats_ack_many(sl_delivery **ds, size_t n)
{
    /* Plain acks, without waiting for the server: the worker goes on to
     * its next fetch at once. The last one of each group is remembered,
     * to be confirmed by the next depth, browse or close. */
    sl_status first = SL_OK;
    /* Out of flight first, one lock for each subscription's run. */
    nats_sub *locked = NULL;
    for (size_t i = 0; i < n; i++) {
        ndelivery *d = (ndelivery *)ds[i];
        if (d == NULL) {
            continue;
        }
        if (d->sub != locked) {
            if (locked != NULL) {
                pthread_mutex_unlock(&locked->mu);
            }
            locked = d->sub;
            pthread_mutex_lock(&locked->mu);
        }
        flight_remove(d->sub, d);
    }
    if (locked != NULL) {
        pthread_mutex_unlock(&locked->mu);
    }
    /* The acks in one burst, so that they leave in few writes (the
     * server reads fewer, larger packets). */
    nats_engine *e = NULL;
    for (size_t i = 0; i < n; i++) {
        ndelivery *d = (ndelivery *)ds[i];
        if (d == NULL) {
            continue;
        }
        e = d->sub->eng;
        const char *reply = natsMsg_GetReply(d->msg);
        sl_status st =
            reply == NULL
                ? SL_INVALID
                : sl__nats_status(natsConnection_PublishString(e->nc, reply, "+ACK"));
        if (st == SL_OK && last_of_sub(ds, n, i)) {
            ack_mark_set(e, d->sub->key, reply);
        }
        if (first == SL_OK && st != SL_OK) {
            first = st;
        }
    }
    /* Then what is remembered of them goes (one lock: a consumer's batch
     * is of one engine), and the deliveries. */
    if (e != NULL) {
        pthread_mutex_lock(&e->mu);
        for (size_t i = 0; i < n; i++) {
            ndelivery *d = (ndelivery *)ds[i];
            if (d == NULL) {
                continue;
            }
            if (d->sub->eng != e) {
                pthread_mutex_unlock(&e->mu);
                e = d->sub->eng;
                pthread_mutex_lock(&e->mu);
            }
            track *t = track_find(e, d->sub->key, d->seq, false);
            if (t != NULL) {
                sl__track_drop(&e->tracks, t);
            }
        }
        pthread_mutex_unlock(&e->mu);
    }
    for (size_t i = 0; i < n; i++) {
        if (ds[i] != NULL) {
            delivery_free((ndelivery *)ds[i]);
        }
    }
    return first;
}

/* ---- heartbeat: +WPI for long-held deliveries ------------------------------------- */

static void *hb_main(void *arg)
{
    nats_engine *e = arg;
    uint64_t period = (uint64_t)e->ack_wait_ms / 3;
    if (period < 10) {
        period = 10;
    }
    pthread_mutex_lock(&e->mu);
    while (!e->closing) {
        struct timespec ts;
        sl__deadline_after(&ts, period);
        pthread_cond_timedwait(&e->hb_cv, &e->mu, &ts);
        if (e->closing) {
            break;
        }
        uint64_t now = sl_time_mono_ms();
        for (nats_sub *s = e->subs; s; s = s->next) {
            pthread_mutex_lock(&s->mu);
            for (ndelivery *d = s->flight; d; d = d->next) {
                if (now - d->held_since >= period) {
                    natsConnection_PublishString(
                        e->nc, natsMsg_GetReply(d->msg), "+WPI");
                    d->held_since = now;
                }
            }
            pthread_mutex_unlock(&s->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    return NULL;
}

/* ---- asynchronous subscriptions ---------------------------------------- */

/* nats.c's thread: the handler of an asynchronous subscription has
 * returned for the last time. */
static void on_async_complete(void *closure)
{
    nats_engine *e = closure;
    pthread_mutex_lock(&e->mu);
    e->async_live--;
    pthread_cond_broadcast(&e->async_cv);
    pthread_mutex_unlock(&e->mu);
}

/* Subscribe @p cb (in queue group @p queue, or none) so that close can
 * wait until it no longer runs: nats.c may call a handler once more after
 * natsSubscription_Unsubscribe returns. */
static natsStatus async_subscribe(nats_engine *e, natsSubscription **out,
                                  const char *subject, const char *queue,
                                  natsMsgHandler cb, void *closure)
{
    natsSubscription *sub = NULL;
    natsStatus s =
        queue ? natsConnection_QueueSubscribe(&sub, e->nc, subject, queue, cb,
                                              closure)
              : natsConnection_Subscribe(&sub, e->nc, subject, cb, closure);
    if (s == NATS_OK) {
        s = natsSubscription_SetOnCompleteCB(sub, on_async_complete, e);
        if (s != NATS_OK) {
            natsSubscription_Unsubscribe(sub);
            natsSubscription_Destroy(sub);
            return s;
        }
        pthread_mutex_lock(&e->mu);
        e->async_live++;
        pthread_mutex_unlock(&e->mu);
        *out = sub;
    }
    return s;
}

/* ---- the max-deliveries advisory --------------------------------------- */

/* Dead-letter stream message @p seq of @p a's group, which the server
 * stopped delivering after @p deliveries, and make it leave the stream for
 * this group. */
static void dead_letter_undeliverable(nats_engine *e, nadv *a, uint64_t seq,
                                      uint64_t deliveries)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus ns = js_GetMsg(&m, e->js, a->stream, seq, NULL, &jerr);
    if (ns != NATS_OK) {
        if (ns == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
            return; /* gone already: every group is done with it */
        }
        sl_logf(SL_LOG_ERROR, LOG,
                "max deliveries: reading message %" PRIu64 " of %s: %s",
                seq, a->stream, natsStatus_GetText(ns));
        return;
    }
    uint32_t released = 0;
    pthread_mutex_lock(&e->mu);
    track *t = track_find(e, a->key, seq, false);
    if (t != NULL) {
        released = t->released;
    }
    pthread_mutex_unlock(&e->mu);
    uint32_t attempts = deliveries > released
                            ? (uint32_t)(deliveries - released > UINT32_MAX
                                             ? UINT32_MAX
                                             : deliveries - released)
                            : 0;
    sl_event *ev = NULL;
    sl_status st = msg_to_event(m, a->stream, a->stream_created_ns, seq, &ev);
    natsMsg_Destroy(m);
    if (st == SL_OK) {
        char error[160];
        char msg_id[320];
        snprintf(error, sizeof error,
                 "the server stopped delivering it after %" PRIu64
                 " deliveries (MaxDeliver): its handler crashed or timed "
                 "out every time",
                 deliveries);
        snprintf(msg_id, sizeof msg_id,
                 "sluice-max-deliveries-%s-%" PRIu64 "-%s-%" PRIu64, a->stream,
                 a->stream_created_ns, a->durable, seq);
        st = publish_dead_letter(e, a->channel, a->group, ev,
                                 SL_DEAD_MAX_DELIVERIES, attempts, error,
                                 msg_id);
        if (st == SL_OK) {
            sl_logf(SL_LOG_WARN, LOG,
                    "event %s of %s/%s reached the server's delivery limit "
                    "(%" PRIu64 " deliveries): dead-lettered",
                    sl_event_id(ev), a->channel, a->group, deliveries);
        }
        sl_event_unref(ev);
    } else {
        sl_logf(SL_LOG_ERROR, LOG,
                "max deliveries: message %" PRIu64 " on %s is not a readable "
                "event (%s): terminated without a dead letter",
                seq, a->stream, sl_status_str(st));
        st = SL_OK;
    }
    if (st != SL_OK) {
        return; /* stays in the stream, undelivered: logged above */
    }
    /* The delivery itself is gone with the advisory: acknowledge the
     * sequence for this consumer on its ack subject (the server keys acks
     * by stream sequence), so that interest retention lets it go. */
    char ack[512];
    snprintf(ack, sizeof ack, "$JS.ACK.%s.%s.1.%" PRIu64 ".0.0.0", a->stream,
             a->durable, seq);
    natsMsg *resp = NULL;
    ns = natsConnection_RequestString(&resp, e->nc, ack, "+TERM",
                                      API_WAIT_MS);
    natsMsg_Destroy(resp);
    if (ns != NATS_OK) {
        sl_logf(SL_LOG_ERROR, LOG,
                "max deliveries: terminating message %" PRIu64
                " of %s/%s: %s",
                seq, a->channel, a->group, natsStatus_GetText(ns));
    }
    track_forget(e, a->key, seq);
}

/* nats.c's thread (this subscription's own): the server stopped delivering
 * a message of a group this process consumes, at the consumer's
 * MaxDeliver. It does so only when it would deliver it once more, so some
 * process of the group is fetching; the queue group gives each advisory
 * to one of them. The work here is the engine's own (stream get, publish,
 * ack), not a user callback. */
static void on_max_deliveries(natsConnection *nc, natsSubscription *sub,
                              natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    nadv *a = closure;
    nats_engine *e = a->eng;
    json_error_t jerr;
    json_t *root = json_loadb(natsMsg_GetData(msg),
                              (size_t)natsMsg_GetDataLength(msg), 0, &jerr);
    natsMsg_Destroy(msg);
    json_t *jseq = json_object_get(root, "stream_seq");
    json_t *jdel = json_object_get(root, "deliveries");
    uint64_t seq = json_is_integer(jseq) ? (uint64_t)json_integer_value(jseq)
                                         : 0;
    uint64_t deliveries =
        json_is_integer(jdel) ? (uint64_t)json_integer_value(jdel) : 0;
    json_decref(root);
    pthread_mutex_lock(&e->mu);
    bool closing = e->closing;
    pthread_mutex_unlock(&e->mu);
    if (seq == 0 || closing) {
        return;
    }
    dead_letter_undeliverable(e, a, seq, deliveries);
}

/* Listen to the max-deliveries advisory of @p s's group, once per group
 * and process. A failure is logged, not fatal: the fetch-side count still
 * dead-letters crash loops. */
static void adv_listen(nats_engine *e, const nats_sub *s)
{
    pthread_mutex_lock(&e->mu);
    for (nadv *a = e->advs; a; a = a->next) {
        if (a->key == s->key && strcmp(a->stream, s->stream) == 0 &&
            strcmp(a->durable, s->durable) == 0) {
            pthread_mutex_unlock(&e->mu);
            return;
        }
    }
    nadv *a = sl_calloc(1, sizeof *a);
    if (a == NULL || (a->channel = sl_strdup(s->channel)) == NULL ||
        (a->group = sl_strdup(s->group)) == NULL ||
        (a->stream = sl_strdup(s->stream)) == NULL ||
        (a->durable = sl_strdup(s->durable)) == NULL) {
        if (a != NULL) {
            sl_free(a->channel);
            sl_free(a->group);
            sl_free(a->stream);
            sl_free(a);
        }
        pthread_mutex_unlock(&e->mu);
        return;
    }
    a->eng = e;
    a->key = s->key;
    a->stream_created_ns = s->stream_created_ns;
    a->next = e->advs;
    e->advs = a;
    pthread_mutex_unlock(&e->mu);
    char subject[600];
    snprintf(subject, sizeof subject,
             "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.%s.%s", a->stream,
             a->durable);
    natsStatus ns = async_subscribe(e, &a->sub, subject,
                                    "sluice-max-deliveries",
                                    on_max_deliveries, a);
    if (ns != NATS_OK) {
        sl_logf(SL_LOG_WARN, LOG,
                "cannot listen to the max-deliveries advisory of %s/%s: %s",
                a->channel, a->group, natsStatus_GetText(ns));
    }
}

/* ---- for the idempotency store on JetStream KV (engine/nats_kv.c) ------ */

bool sl__nats_is(const sl_engine *eng)
{
    return eng != NULL && eng->drv == &sl__nats_driver;
}

jsCtx *sl__nats_js(sl_engine *eng)
{
    return ((nats_engine *)eng)->js;
}

/* The per-group bucket's name, "inbox-<stream>-g<consumer>" (escape_name
 * never writes "-g", so distinct groups never share one), or a named
 * bucket with the namespace in front. */
char *sl__nats_bucket_name(const sl_engine *eng, const char *name,
                           const char *channel, const char *group)
{
    const nats_engine *e = (const nats_engine *)eng;
    if (name != NULL) {
        size_t n = (e->ns ? strlen(e->ns) + 1 : 0) + strlen(name) + 1;
        char *b = sl_malloc(n);
        if (b != NULL) {
            snprintf(b, n, "%s%s%s", e->ns ? e->ns : "", e->ns ? "_" : "",
                     name);
        }
        return b;
    }
    char *stream = escape_name(e->ns, channel);
    char *durable = escape_name(NULL, group);
    char *b = NULL;
    if (stream != NULL && durable != NULL) {
        size_t n = strlen("inbox--g") + strlen(stream) + strlen(durable) + 1;
        if ((b = sl_malloc(n < 40 ? 40 : n)) != NULL) {
            if (n <= 200) {
                snprintf(b, n, "inbox-%s-g%s", stream, durable);
            } else {
                /* Too long for a stream name: a digest instead. */
                snprintf(b, 40, "inbox-h%016" PRIx64, fnv1a(stream, durable));
            }
        }
    }
    sl_free(stream);
    sl_free(durable);
    return b;
}

int sl__nats_replicas(const sl_engine *eng)
{
    return (int)((const nats_engine *)eng)->replicas;
}

bool sl__nats_memory_storage(const sl_engine *eng)
{
    return ((const nats_engine *)eng)->memory;
}

/* ---- inspection -------------------------------------------------------------------- */

static sl_status nats_depth(sl_engine *base, const char *channel,
                            const char *group, sl_depth *out)
{
    nats_engine *e = (nats_engine *)base;
    acks_settle_wait(e);
    char *stream = escape_name(e->ns, channel);
    char *durable = escape_name(NULL, group);
    if (stream == NULL || durable == NULL) {
        sl_free(stream);
        sl_free(durable);
        return SL_NOMEM;
    }
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus ns =
        js_GetConsumerInfo(&ci, e->js, stream, durable, NULL, &jerr);
    uint64_t key = fnv1a(stream, durable);
    sl_free(stream);
    sl_free(durable);
    if (ns != NATS_OK) {
        return (ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
                jerr == JSStreamNotFoundErr)
                   ? SL_NOT_FOUND
                   : sl__nats_status(ns);
    }
    uint64_t pending = ci->NumPending;
    uint64_t floor = ci->AckFloor.Stream;
    uint64_t ack_pending =
        ci->NumAckPending > 0 ? (uint64_t)ci->NumAckPending : 0;
    jsConsumerInfo_Destroy(ci);
    /* The server counts a delivery given back (nak'ed, maybe with a delay)
     * as ack-pending until it goes out again; what this engine gave back
     * is split out as ready or delayed. */
    uint64_t now = wall_ms(e), waiting = 0, delayed = 0;
    pthread_mutex_lock(&e->mu);
    for (size_t i = 0; i < SL_TRACK_MAX; i++) {
        track *t = &e->tracks.slots[i];
        if (t->key != key || !t->nakked) {
            continue;
        }
        if (t->id <= floor) {
            sl__track_drop(&e->tracks, t); /* acked since, wherever it went */
        } else if (t->due_ms > now) {
            delayed++;
        } else {
            waiting++;
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (waiting + delayed > ack_pending) {
        uint64_t over = waiting + delayed - ack_pending;
        waiting = waiting > over ? waiting - over : 0;
        if (waiting + delayed > ack_pending) {
            delayed = ack_pending - waiting;
        }
    }
    out->ready = pending + waiting;
    out->delayed = delayed;
    out->in_flight = ack_pending - waiting - delayed;
    return SL_OK;
}

static sl_status nats_browse(sl_engine *base, const char *channel,
                             const char *group, size_t max, sl_browse_fn fn,
                             void *ctx)
{
    nats_engine *e = (nats_engine *)base;
    acks_settle_wait(e);
    char *stream = escape_name(e->ns, channel);
    char *durable = escape_name(NULL, group);
    if (stream == NULL || durable == NULL) {
        sl_free(stream);
        sl_free(durable);
        return SL_NOMEM;
    }
    sl_status st = SL_OK;
    jsConsumerInfo *ci = NULL;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus ns =
        js_GetConsumerInfo(&ci, e->js, stream, durable, NULL, &jerr);
    if (ns == NATS_OK) {
        ns = js_GetStreamInfo(&si, e->js, stream, NULL, &jerr);
    }
    if (ns != NATS_OK) {
        st = (ns == NATS_NOT_FOUND || jerr == JSConsumerNotFoundErr ||
              jerr == JSStreamNotFoundErr)
                 ? SL_NOT_FOUND
                 : sl__nats_status(ns);
        goto done;
    }
    /* The group's events are the stream's messages past its ack floor that
     * it has not acked: read them without delivering (stream get). */
    uint64_t from = ci->AckFloor.Stream + 1;
    if (from < si->State.FirstSeq) {
        from = si->State.FirstSeq;
    }
    uint64_t last = si->State.LastSeq;
    size_t seen = 0;
    for (uint64_t seq = from; seq <= last && (max == 0 || seen < max);
         seq++) {
        natsMsg *m = NULL;
        ns = js_GetMsg(&m, e->js, stream, seq, NULL, &jerr);
        if (ns != NATS_OK) {
            continue; /* deleted (acked by every group) */
        }
        sl_event *ev = NULL;
        if (msg_to_event(m, stream, created_ns_of(si), seq, &ev) == SL_OK) {
            seen++;
            bool go = fn(ev, 0, ctx);
            sl_event_unref(ev);
            if (!go) {
                natsMsg_Destroy(m);
                break;
            }
        }
        natsMsg_Destroy(m);
    }
done:
    jsConsumerInfo_Destroy(ci);
    jsStreamInfo_Destroy(si);
    sl_free(stream);
    sl_free(durable);
    return st;
}

static bool nats_is_ready(const sl_engine *base)
{
    const nats_engine *e = (const nats_engine *)base;
    return !e->closing &&
           natsConnection_Status(e->nc) == NATS_CONN_STATUS_CONNECTED;
}

/* ---- open / close --------------------------------------------------------------------- */

static void nats_close(sl_engine *base);

/* ---- credentials and TLS ----------------------------------------------- */

/* Connection options of the URL that are not the engine's: TLS and
 * credentials. Paths and references, never secrets: a secret is read
 * from its reference at connect time and wiped afterwards. */
typedef struct conn_opts {
    bool tls;          /* tls:// or ?tls=true */
    char *tls_ca;      /* PEM file of the CAs that sign the server */
    char *tls_cert;    /* client certificate chain (PEM) ... */
    char *tls_key;     /* ... and its key, for servers that verify clients */
    char *tls_hostname; /* name expected in the server certificate */
    char *user;        /* with password */
    char *password;    /* env:NAME or file:PATH */
    char *token;       /* env:NAME or file:PATH */
    char *creds;       /* a credentials file (user JWT and nkey seed) */
    char *nkey;        /* a user's public nkey (U...) ... */
    char *nkey_seed;   /* ... and the file of its seed */
} conn_opts;

static void conn_opts_fini(conn_opts *co)
{
    sl_free(co->tls_ca);
    sl_free(co->tls_cert);
    sl_free(co->tls_key);
    sl_free(co->tls_hostname);
    sl_free(co->user);
    sl_free(co->password);
    sl_free(co->token);
    sl_free(co->creds);
    sl_free(co->nkey);
    sl_free(co->nkey_seed);
    memset(co, 0, sizeof *co);
}

/* A secret from its reference (core/secret.h), with the parameter it is
 * for in the message: "engine URL: token: environment variable X is not
 * set". The message names the variable or the file, never the secret. */
static sl_status read_secret(const char *what, const char *ref, char **out,
                             sl_diag *diag)
{
    sl_diag d = {0};
    sl_status st = sl__secret_read(ref, out, &d);
    if (st != SL_OK) {
        return sl_diag_set(diag, st, "engine URL: %s: %s", what, d.msg);
    }
    return SL_OK;
}

/* @p url for messages, its credentials hidden (core/secret.h). */
static const char *redact_url(const char *url, char *buf, size_t size)
{
    return sl__secret_redact_url(url, buf, size);
}

/* nats.c's last error without its "(file.c:123): " prefix, or NULL when
 * it says no more than @p s. */
static const char *last_error(natsStatus s)
{
    const char *t = nats_GetLastError(NULL);
    if (t != NULL && t[0] == '(') {
        const char *close = strstr(t, "): ");
        if (close != NULL) {
            t = close + 3;
        }
    }
    if (t == NULL || t[0] == '\0' || strcmp(t, natsStatus_GetText(s)) == 0) {
        return NULL;
    }
    return t;
}

static bool truthy(const char *v)
{
    return strcmp(v, "true") == 0 || strcmp(v, "1") == 0 ||
           strcmp(v, "yes") == 0;
}

/* "nats://host:port?ns=x&ack_wait_ms=N&max_ack_pending=N&replicas=N&
 * storage=memory&tls_ca=PATH&token=env:NAME...". The server URL (without
 * the query) goes to nats.c; TLS and credentials to @p co. */
static sl_status parse_url(nats_engine *e, const char *url, char **server,
                           conn_opts *co, sl_diag *diag)
{
    const char *q = strchr(url, '?');
    *server = q ? sl_strndup(url, (size_t)(q - url)) : sl_strdup(url);
    if (*server == NULL) {
        return SL_NOMEM;
    }
    co->tls = strncmp(url, "tls://", 6) == 0;
    const char *p = q ? q + 1 : NULL;
    while (p != NULL && *p) {
        const char *amp = strchr(p, '&');
        size_t len = amp ? (size_t)(amp - p) : strlen(p);
        char kv[1024];
        if (len >= sizeof kv) {
            return sl_diag_set(diag, SL_INVALID, "engine URL parameter too "
                                                 "long");
        }
        memcpy(kv, p, len);
        kv[len] = '\0';
        char *eq = strchr(kv, '=');
        const char *val = eq ? eq + 1 : "";
        if (eq) {
            *eq = '\0';
        }
        char *end = NULL;
        long long num = strtoll(val, &end, 10);
        bool is_num = end != val && *end == '\0' && num > 0;
        char **str = NULL; /* a string option */
        if (strcmp(kv, "tls_ca") == 0) {
            str = &co->tls_ca;
        } else if (strcmp(kv, "tls_cert") == 0) {
            str = &co->tls_cert;
        } else if (strcmp(kv, "tls_key") == 0) {
            str = &co->tls_key;
        } else if (strcmp(kv, "tls_hostname") == 0) {
            str = &co->tls_hostname;
        } else if (strcmp(kv, "user") == 0) {
            str = &co->user;
        } else if (strcmp(kv, "password") == 0) {
            str = &co->password;
        } else if (strcmp(kv, "token") == 0) {
            str = &co->token;
        } else if (strcmp(kv, "creds") == 0) {
            str = &co->creds;
        } else if (strcmp(kv, "nkey") == 0) {
            str = &co->nkey;
        } else if (strcmp(kv, "nkey_seed") == 0) {
            str = &co->nkey_seed;
        }
        if (str != NULL) {
            if (val[0] == '\0') {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: %s needs a value", kv);
            }
            if ((strcmp(kv, "password") == 0 || strcmp(kv, "token") == 0) &&
                !sl__secret_is_ref(val)) {
                /* Name the parameter only: its value is the secret. */
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: %s must be a reference, "
                                   "env:NAME or file:PATH (a secret in the "
                                   "URL would be logged)",
                                   kv);
            }
            sl_free(*str);
            if ((*str = sl_strdup(val)) == NULL) {
                return SL_NOMEM;
            }
            if (strncmp(kv, "tls_", 4) == 0) {
                co->tls = true;
            }
        } else if (strcmp(kv, "tls") == 0) {
            co->tls = truthy(val);
        } else if (strcmp(kv, "ns") == 0 && val[0] != '\0') {
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
        } else if (strcmp(kv, "domain") == 0 && val[0] != '\0') {
            size_t n = strlen(val);
            for (const char *c = val; *c; c++) {
                if (!isalnum((unsigned char)*c) && *c != '-' && *c != '_') {
                    n = 0;
                }
            }
            if (n == 0 || n > JS_DOMAIN_MAX) {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL: domain must be 1-%d of "
                                   "[A-Za-z0-9_-]",
                                   JS_DOMAIN_MAX);
            }
            memcpy(e->domain, val, n + 1);
        } else if (strcmp(kv, "ack_wait_ms") == 0 && is_num) {
            e->ack_wait_ms = num;
        } else if (strcmp(kv, "max_ack_pending") == 0 && is_num) {
            e->max_ack_pending = num;
        } else if (strcmp(kv, "replicas") == 0 && is_num && num <= 5) {
            e->replicas = num;
        } else if (strcmp(kv, "max_deliver") == 0 && is_num &&
                   num <= 100000) {
            e->max_deliver = num;
        } else if (strcmp(kv, "storage") == 0 &&
                   (strcmp(val, "memory") == 0 || strcmp(val, "file") == 0)) {
            e->memory = strcmp(val, "memory") == 0;
        } else {
            char shown[512];
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL '%s': unknown parameter or bad "
                               "value '%s' (expected ns, domain, "
                               "ack_wait_ms, "
                               "max_ack_pending, max_deliver, replicas, "
                               "storage, tls, tls_ca, tls_cert, tls_key, "
                               "tls_hostname, user, password, token, creds, "
                               "nkey, nkey_seed)",
                               redact_url(*server, shown, sizeof shown), kv);
        }
        p += len + (amp ? 1 : 0);
    }
    if ((co->tls_cert == NULL) != (co->tls_key == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: tls_cert and tls_key go together");
    }
    if ((co->nkey == NULL) != (co->nkey_seed == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: nkey (the public key) and nkey_seed "
                           "(its seed file) go together");
    }
    if ((co->user == NULL) != (co->password == NULL)) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: user and password go together");
    }
    int kinds = (co->user != NULL) + (co->token != NULL) +
                (co->creds != NULL) + (co->nkey != NULL);
    if (kinds > 1) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL: give one of user/password, token, "
                           "creds, nkey/nkey_seed");
    }
    return SL_OK;
}

/* Parse-only check of an engine URL (sl_engine_check_url): what
 * nats_open rejects before connecting, and the files the URL names, which
 * must be readable. nats.c itself is not started for a check. */
static sl_status nats_check_url(const char *url, sl_diag *diag)
{
    nats_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    char *server = NULL;
    conn_opts co = {0};
    sl_status st = parse_url(e, url, &server, &co, diag);
    const char *const keys[] = {"tls_ca", "tls_cert", "tls_key", "creds",
                                "nkey_seed"};
    const char *const files[] = {co.tls_ca, co.tls_cert, co.tls_key, co.creds,
                                 co.nkey_seed};
    for (size_t i = 0; st == SL_OK && i < sizeof keys / sizeof keys[0]; i++) {
        if (files[i] != NULL && access(files[i], R_OK) != 0) {
            st = sl_diag_set(diag, SL_CONFIG, "engine URL: %s file %s: %s",
                             keys[i], files[i], strerror(errno));
        }
    }
    conn_opts_fini(&co);
    sl_free(server);
    sl_free(e->ns);
    sl_free(e);
    return st;
}

/* TLS and credentials to nats.c. The secrets read here are wiped at
 * once: nats.c keeps its own copies. */
static sl_status apply_conn_opts(natsOptions *no, const conn_opts *co,
                                 sl_diag *diag)
{
    natsStatus s = NATS_OK;
    const char *step = "";
    if (co->tls) {
        step = "TLS";
        s = natsOptions_SetSecure(no, true);
    }
    if (s == NATS_OK && co->tls_ca != NULL) {
        step = "tls_ca";
        s = natsOptions_LoadCATrustedCertificates(no, co->tls_ca);
    }
    if (s == NATS_OK && co->tls_cert != NULL) {
        step = "tls_cert/tls_key";
        s = natsOptions_LoadCertificatesChain(no, co->tls_cert, co->tls_key);
    }
    if (s == NATS_OK && co->tls_hostname != NULL) {
        step = "tls_hostname";
        s = natsOptions_SetExpectedHostname(no, co->tls_hostname);
    }
    if (s == NATS_OK && co->creds != NULL) {
        step = "creds";
        s = natsOptions_SetUserCredentialsFromFiles(no, co->creds, NULL);
    }
    if (s == NATS_OK && co->nkey != NULL) {
        step = "nkey_seed";
        s = natsOptions_SetNKeyFromSeed(no, co->nkey, co->nkey_seed);
    }
    if (s != NATS_OK) {
        /* nats.c's text names files and what is wrong with them. */
        const char *why = last_error(s);
        return sl_diag_set(diag, SL_INVALID, "engine URL: %s: %s%s%s", step,
                           natsStatus_GetText(s), why ? ": " : "",
                           why ? why : "");
    }
    sl_status st = SL_OK;
    char *secret = NULL;
    if (co->password != NULL) {
        if ((st = read_secret("password", co->password, &secret, diag)) ==
            SL_OK) {
            s = natsOptions_SetUserInfo(no, co->user, secret);
        }
    } else if (co->token != NULL) {
        if ((st = read_secret("token", co->token, &secret, diag)) == SL_OK) {
            s = natsOptions_SetToken(no, secret);
        }
    }
    sl__secret_free(secret);
    if (st == SL_OK && s != NATS_OK) {
        st = sl_diag_set(diag, sl__nats_status(s), "engine URL: credentials: %s",
                         natsStatus_GetText(s));
    }
    return st;
}

/* "nats://h1:p1,h2:p2,..." (a cluster): every server to nats.c, which
 * connects to one and reconnects to another when it goes away. Hosts
 * after the first may omit the scheme. */
static natsStatus set_servers(natsOptions *no, const char *server)
{
    if (strchr(server, ',') == NULL) {
        return natsOptions_SetURL(no, server);
    }
    const char *servers[16];
    char *urls[16] = {0};
    int n = 0;
    natsStatus s = NATS_OK;
    for (const char *p = server; *p && s == NATS_OK;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (n == 16) {
            s = NATS_INVALID_ARG;
            break;
        }
        const char *sep = strstr(p, "://");
        bool scheme = sep != NULL && (size_t)(sep - p) < len;
        /* A host without a scheme takes the first URL's (tls:// too). */
        const char *dflt =
            strncmp(server, "tls://", 6) == 0 ? "tls://" : "nats://";
        size_t size = len + (scheme ? 0 : strlen(dflt)) + 1;
        if ((urls[n] = sl_malloc(size)) == NULL) {
            s = NATS_NO_MEMORY;
            break;
        }
        snprintf(urls[n], size, "%s%.*s", scheme ? "" : dflt, (int)len, p);
        servers[n] = urls[n];
        n++;
        p += len + (comma ? 1 : 0);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetServers(no, servers, n);
    }
    for (int i = 0; i < n; i++) {
        sl_free(urls[i]);
    }
    return s;
}

static sl_status nats_open(const char *url, const sl_engine_opts *opts,
                           sl_engine **out, sl_diag *diag)
{
    nats_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->base.drv = &sl__nats_driver;
    e->opts = *opts;
    e->clock = opts->clock ? opts->clock : sl_clock_system();
    e->ack_wait_ms = DEFAULT_ACK_WAIT_MS;
    e->max_ack_pending = DEFAULT_MAX_ACK_PENDING;
    e->replicas = 1;
    pthread_mutex_init(&e->mu, NULL);
    sl__cond_init_mono(&e->hb_cv);
    sl__cond_init_mono(&e->ack_cv);
    sl__cond_init_mono(&e->async_cv);
    char *server = NULL;
    natsOptions *no = NULL;
    conn_opts co = {0};
    sl_status st = parse_url(e, url, &server, &co, diag);
    if (st != SL_OK) {
        goto fail;
    }
    if (e->domain[0] != '\0') {
        snprintf(e->api, sizeof e->api, "$JS.%s.API.", e->domain);
    } else {
        snprintf(e->api, sizeof e->api, "%s", JS_API_PREFIX);
    }
    if ((st = pubs_init(e)) != SL_OK) {
        goto fail;
    }
    natsStatus s = lib_ref();
    if (s != NATS_OK) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start nats.c: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    e->lib_held = true;
    s = natsOptions_Create(&no);
    if (s == NATS_OK) {
        s = set_servers(no, server);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetName(no, "sluice");
    }
    if (s == NATS_OK) {
        s = natsOptions_SetTimeout(no, 2000);
    }
    if (s == NATS_OK) {
        s = natsOptions_SetMaxReconnect(no, -1); /* reconnect forever */
    }
    if (s == NATS_OK) {
        s = natsOptions_SetReconnectWait(no, 250);
    }
    if (s != NATS_OK) {
        st = sl_diag_set(diag, SL_INVALID, "engine URL: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    if ((st = apply_conn_opts(no, &co, diag)) != SL_OK) {
        goto fail;
    }
    if ((s = natsConnection_Connect(&e->nc, no)) != NATS_OK) {
        /* The URL may carry credentials: name the servers without them.
         * nats.c's last error says why (a TLS verification failure, an
         * authorization violation); it holds no secret of ours. */
        char shown[512];
        const char *why = last_error(s);
        bool tls_fail = why != NULL && (strstr(why, "SSL") != NULL ||
                                        strstr(why, "certificate") != NULL);
        st = sl_diag_set(diag, SL_UNAVAILABLE,
                         "cannot connect to NATS at %s: %s%s%s%s",
                         redact_url(server, shown, sizeof shown),
                         natsStatus_GetText(s), why ? " (" : "",
                         why ? why : "", why ? ")" : "");
        const char *hint = NULL;
        if (tls_fail) {
            hint = "; check tls_ca (the CA that signed the server's "
                   "certificate) and tls_hostname";
        } else if (co.tls && co.tls_cert == NULL &&
                   s == NATS_PROTOCOL_ERROR) {
            /* The server closed the connection after the handshake. */
            hint = "; the server may want a client certificate (tls_cert, "
                   "tls_key)";
        }
        size_t n = strlen(diag ? diag->msg : "");
        if (hint != NULL && diag != NULL && n + 1 < sizeof diag->msg) {
            snprintf(diag->msg + n, sizeof diag->msg - n, "%s", hint);
        }
        goto fail;
    }
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = API_WAIT_MS;
    if (e->domain[0] != '\0') {
        jo.Domain = e->domain;
    }
    jo.PublishAsync.MaxPending = PUB_MAX_PENDING;
    jo.PublishAsync.AckHandler = on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = e;
    if ((s = natsConnection_JetStream(&e->js, e->nc, &jo)) != NATS_OK) {
        st = sl_diag_set(diag, SL_UNAVAILABLE, "JetStream context: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    jsAccountInfo *ai = NULL;
    jsErrCode jerr = 0;
    if ((s = js_GetAccountInfo(&ai, e->js, NULL, &jerr)) != NATS_OK) {
        st = e->domain[0] != '\0'
                 ? sl_diag_set(diag, SL_UNAVAILABLE,
                               "no JetStream answers in domain '%s' "
                               "(%sINFO): %s",
                               e->domain, e->api, natsStatus_GetText(s))
                 : sl_diag_set(diag, SL_UNAVAILABLE,
                               "the NATS server has no JetStream: %s",
                               natsStatus_GetText(s));
        goto fail;
    }
    jsAccountInfo_Destroy(ai);
    natsInbox *inbox = NULL;
    if ((s = natsInbox_Create(&inbox)) == NATS_OK) {
        snprintf(e->ack_inbox, sizeof e->ack_inbox, "%s", (const char *)inbox);
        natsInbox_Destroy(inbox);
        char wild[128];
        snprintf(wild, sizeof wild, "%s.*", e->ack_inbox);
        s = async_subscribe(e, &e->ack_sub, wild, NULL, on_ack_reply, e);
    }
    if (s != NATS_OK) {
        st = sl_diag_set(diag, SL_UNAVAILABLE, "ack inbox: %s",
                         natsStatus_GetText(s));
        goto fail;
    }
    if (pthread_create(&e->confirm_thread, NULL, confirm_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start confirm thread");
        goto fail;
    }
    e->confirm_started = true;
    if (pthread_create(&e->hb_thread, NULL, hb_main, e) != 0) {
        st = sl_diag_set(diag, SL_INTERNAL, "cannot start heartbeat thread");
        goto fail;
    }
    e->hb_started = true;
    conn_opts_fini(&co);
    natsOptions_Destroy(no);
    sl_free(server);
    *out = &e->base;
    return SL_OK;
fail:
    conn_opts_fini(&co);
    natsOptions_Destroy(no);
    sl_free(server);
    nats_close(&e->base);
    return st;
}

static void nats_close(sl_engine *base)
{
    nats_engine *e = (nats_engine *)base;
    if (e->js != NULL) {
        /* Publishers wait for outstanding confirms. */
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = API_WAIT_MS;
        js_PublishAsyncComplete(e->js, &po);
    }
    if (e->ack_sub != NULL) {
        /* Another process opened next sees this one's acks applied. */
        acks_settle_wait(e);
    }
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->hb_cv);
    pthread_mutex_unlock(&e->mu);
    pubs_close(e); /* wakes the confirm thread */
    if (e->hb_started) {
        pthread_join(e->hb_thread, NULL);
    }
    if (e->confirm_started) {
        pthread_join(e->confirm_thread, NULL); /* calls what is queued */
    }
    /* Close the asynchronous subscriptions and wait until their handlers
     * returned for good (they use e): at most the requests an advisory
     * handler may be in (3 x API_WAIT_MS). */
    if (e->ack_sub != NULL) {
        natsSubscription_Unsubscribe(e->ack_sub);
    }
    for (nadv *a = e->advs; a; a = a->next) {
        if (a->sub != NULL) {
            natsSubscription_Unsubscribe(a->sub);
        }
    }
    struct timespec until;
    sl__deadline_after(&until, 3 * API_WAIT_MS + 1000);
    pthread_mutex_lock(&e->mu);
    while (e->async_live > 0 &&
           pthread_cond_timedwait(&e->async_cv, &e->mu, &until) == 0) {
    }
    bool quiet = e->async_live == 0;
    pthread_mutex_unlock(&e->mu);
    natsSubscription_Destroy(e->ack_sub);
    ack_marks_free(e);
    for (nadv *a = e->advs, *next; a; a = next) {
        next = a->next;
        natsSubscription_Destroy(a->sub);
        sl_free(a->channel);
        sl_free(a->group);
        sl_free(a->stream);
        sl_free(a->durable);
        sl_free(a);
    }
    e->advs = NULL;
    if (e->js != NULL) {
        jsCtx_Destroy(e->js);
    }
    if (e->nc != NULL) {
        natsConnection_Close(e->nc);
        natsConnection_Destroy(e->nc);
    }
    pubs_fini(e); /* what came back, then unknown outcomes */
    for (nchan *c = e->chans, *next; c; c = next) {
        next = c->next;
        sl_free(c->name);
        sl_free(c->stream);
        sl_free(c->subject);
        sl_free(c);
    }
    sl_free(e->ns);
    if (!quiet) {
        /* A handler still running would use freed memory: keep it (and
         * nats.c's library state). */
        sl_logf(SL_LOG_ERROR, LOG, "closing: a subscription handler did not "
                                   "return; engine state leaked");
        return;
    }
    if (e->lib_held) {
        lib_unref();
    }
    pthread_cond_destroy(&e->hb_cv);
    pthread_cond_destroy(&e->ack_cv);
    pthread_cond_destroy(&e->async_cv);
    pthread_mutex_destroy(&e->mu);
    sl_free(e);
}

#define NATS_DRIVER_OPS                                                        \
    .check_url = nats_check_url, .open = nats_open, .close = nats_close,       \
    .is_ready = nats_is_ready, .declare_channel = nats_declare_channel,        \
    .declare_group = nats_declare_group, .publish = nats_publish,              \
    .subscribe = nats_subscribe, .fetch = nats_fetch,                          \
    .interrupt = nats_interrupt, .in_flight = nats_in_flight,                  \
    .unsubscribe = nats_unsubscribe, .settle = nats_settle,                    \
    .ack_many = nats_ack_many, .depth = nats_depth, .browse = nats_browse

/* "tls://..." opens the same engine with TLS on (its engine, subscriptions
 * and deliveries then use sl__nats_driver). */
const sl_driver sl__nats_tls_driver = {
    .name = "nats",
    .scheme = "tls://",
    NATS_DRIVER_OPS,
};

const sl_driver sl__nats_driver = {
    .name = "nats",
    .scheme = "nats://",
    .check_url = nats_check_url,
    .open = nats_open,
    .close = nats_close,
    .is_ready = nats_is_ready,
    .declare_channel = nats_declare_channel,
    .declare_group = nats_declare_group,
    .publish = nats_publish,
    .subscribe = nats_subscribe,
    .fetch = nats_fetch,
    .interrupt = nats_interrupt,
    .in_flight = nats_in_flight,
    .unsubscribe = nats_unsubscribe,
    .settle = nats_settle,
    .ack_many = nats_ack_many,
    .depth = nats_depth,
    .browse = nats_browse,
};
