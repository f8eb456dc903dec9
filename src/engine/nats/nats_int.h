/* The NATS JetStream engine ("nats://host:port"), on nats.c: its private
 * structs, constants, locks and the functions its files share. Nothing
 * outside src/engine/nats/ includes this header: the rest of the library
 * sees the engine through sl__nats_driver (engine/driver.h) alone, the
 * inbox included (sl_driver.inbox_store, engine/inbox_store.h).
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
 *               (see sl__nats_fetch).
 *   event    -> CloudEvents binary mode: "ce-" headers, data as payload.
 *
 * The files, by concern:
 *
 *   connection.c  URL, TLS and credentials, connect, open and close, the
 *                 asynchronous subscriptions, the driver tables
 *   topology.c    names and escaping, streams, consumers, depth, browse
 *   codec.c       natsMsg <-> event (pure: no connection, no engine)
 *   publish.c     the publish path, the pending table, PubAcks and the
 *                 confirm thread
 *   consume.c     subscribe, pull requests, fetch, unsubscribe
 *   settle.c      settle, ack batches, +WPI heartbeats, dead letters and
 *                 the max-deliveries advisory
 *   kv.c          the idempotency store on JetStream KV ("nats-kv")
 *
 * Connections: TLS and credentials from the URL (tls_ca, creds, token=
 * env:NAME, ...); secrets are read from references and never printed.
 *
 * Threads. nats.c runs its own threads; no user callback runs on them:
 * PubAcks are handed through a bounded queue to the engine's confirm
 * thread, which calls the publish callbacks. A heartbeat thread sends
 * +WPI (in progress) for deliveries held longer than a third of AckWait, so
 * a live handler keeps its delivery while one that died with its process
 * gives it back after AckWait. In all, the engine's code runs on
 *
 *   - the application's threads: open, close, declare, publish, depth,
 *     browse (any thread, concurrently but for open and close);
 *   - a consumer's fetching thread: sl__nats_fetch and unsubscribe, one
 *     thread per subscription at a time (it owns the pull request);
 *   - a consumer's workers: settle and ack_many, any thread;
 *   - nats.c's threads: the PubAck handler (sl__nats_on_pub_ack), the ack
 *     confirmations (sl__nats_on_ack_reply) and the max-deliveries
 *     advisories, each asynchronous subscription on a thread of its own;
 *   - the engine's confirm thread (sl__nats_confirm_main) and heartbeat
 *     thread (sl__nats_hb_main), started by open, joined by close.
 *
 * Locks. Three kinds, never more than two held at once:
 *
 *   nats_engine.mu   the engine's lists and tables (see the struct);
 *   nats_sub.mu      a subscription's deliveries in flight (its flight
 *                    list and their links);
 *   nats_engine.pub_mu  the publish path alone, a leaf: nothing else is
 *                    taken while it is held, and it is never taken with
 *                    one of the others held.
 *
 * Order: an engine's mu before a subscription's mu (the heartbeat thread
 * holds both); no code takes them the other way round. No lock is held
 * while a user callback runs or while the engine waits for the server.
 *
 * Attempts. JetStream counts every delivery; sluice does not count a
 * release (a delivery given back unstarted). The engine remembers, per
 * group and stream sequence, how many of its deliveries it released and
 * subtracts them. That memory is per process and bounded (engine/track.h).
 */
#ifndef SLUICE_ENGINE_NATS_INT_H
#define SLUICE_ENGINE_NATS_INT_H

#include "core/list.h"
#include "engine/driver.h"
#include "engine/track.h"
#include "sluice/engine.h"
#include "sluice/event.h"

#include <nats/nats.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
#define PUB_ACK_WAIT_MS API_WAIT_MS     /* no PubAck by then: SL_TIMEOUT */
#define EXPIRY_SCAN_MS 250     /* how often expired publishes are looked for */
#define EXPIRY_SCAN_SLOTS 1024 /* table slots scanned per hold of pub_mu */
#define CONFIRM_WAIT_MS 1000   /* the confirm thread checks for close */
#define CONFIRM_BATCH 64       /* outcomes taken from the ring at a time */
#define FETCH_SLICE_MS 100     /* a fetch checks for interrupts this often */
#define SUBJECT_ROOT "sluice."
#define CE_PREFIX "ce-"
#define LOG "engine.nats"

/* The engine's own pull requests (sl__nats_fetch). */
#define PULL_EXPIRES_MS 100 /* server-side life of one pull request */
#define PULL_NOWAIT_MS 50   /* ... of a no-wait pull request */
#define PULL_GRACE_MS 200   /* after its expiry, a request is over for us */
#define PULL_FLUSH_MS 100   /* longest wait for the flush of a request */
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
 * pending table (open addressing on the message's address). Under the
 * engine's pub_mu. */
typedef struct npub {
    natsMsg *msg; /* the key (nats.c owns the message); NULL: free slot */
    sl_publish_cb cb;
    void *ctx;
    /* Monotonic ms after which the publish is reported SL_TIMEOUT; 0 once
     * it was: the entry stays while nats.c still holds the message. */
    uint64_t deadline_ms;
    bool cb_any_thread; /* SL__PUBLISH_HINT_CB_ANY_THREAD: on the PubAck */
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
 * for its consumer is listened to (see on_max_deliveries in settle.c).
 * Kept until the engine closes; immutable once in the engine's list
 * (advs, under mu) but for sub, which close alone touches. */
typedef struct nadv {
    nats_engine *eng;
    char *channel;
    char *group;
    char *stream;
    char *durable;
    uint64_t stream_created_ns; /* see sl__nats_msg_to_event */
    uint64_t key;
    natsSubscription *sub;
    struct nadv *next;
} nadv;

/* A delivery handed to a consumer. Its place in the subscription's flight
 * list (link) and held_since are under the subscription's mu; the rest is
 * immutable until it is settled, by one worker. */
typedef struct ndelivery {
    sl_delivery base;
    natsMsg *msg;
    nats_sub *sub;
    uint64_t seq;
    uint64_t held_since; /* mono ms; for the heartbeat */
    sl_list_node link;   /* in nats_sub.flight */
} ndelivery;

/* The last ack ack_many sent for one group (engine->ack_marks, under the
 * engine's mu). */
typedef struct ack_mark {
    uint64_t key; /* the group's (nats_sub.key) */
    char *reply;  /* its ack subject */
    size_t cap;   /* bytes at reply */
    bool dirty;   /* acks were sent since the last confirmation */
    struct ack_mark *next;
} ack_mark;

/* A subscription of one group. Immutable after subscribe but for the
 * fields noted. */
struct nats_sub {
    sl_subscription base;
    nats_engine *eng;
    /* A plain synchronous subscription on "<inbox>.*": the deliveries and
     * status messages of this subscription's pull requests, each sent with
     * the reply subject "<inbox>.<request id>" (see sl__nats_fetch). */
    natsSubscription *ns;
    char inbox[96];
    char *next_subject; /* $JS.API.CONSUMER.MSG.NEXT.<stream>.<durable> */
    /* The one pull request outstanding, owned by the fetching thread (and
     * by unsubscribe, once fetching stopped); no lock. */
    uint64_t req_seq;   /* last request id sent */
    uint64_t req_id;    /* the live request, 0: none */
    uint32_t req_left;  /* deliveries it may still bring */
    bool req_nowait;    /* answered at once (404 when empty) */
    uint64_t req_until; /* mono ms: over by then, answered or not */
    char *channel;
    char *group;
    char *stream;
    char *durable;
    uint64_t stream_created_ns; /* see sl__nats_msg_to_event */
    uint64_t key;
    uint32_t prefetch;
    uint32_t max_attempts;
    pthread_mutex_t mu;       /* guards flight */
    sl_list flight;           /* ndelivery.link: unsettled deliveries */
    _Atomic bool interrupted; /* set by any thread, read by the fetcher */
    nats_sub *next;           /* engine's list, under the engine's mu */
};

/* The engine. What open sets before it returns (opts to memory) is
 * read-only afterwards and read by every thread without a lock. */
struct nats_engine {
    sl_engine base;
    sl_engine_opts opts;
    const sl_clock *clock;
    natsConnection *nc;
    jsCtx *js;
    char *ns; /* namespace from ?ns=, or NULL */
    /* JetStream API prefix: "$JS.API." or, with ?domain=D, "$JS.D.API."
     * (the domain's API, as from a leaf node; nats.c is told the domain
     * for its own requests). */
    char api[sizeof "$JS..API." + JS_DOMAIN_MAX];
    char domain[JS_DOMAIN_MAX + 1];
    int64_t ack_wait_ms;
    int64_t max_ack_pending;
    int64_t replicas;
    int64_t max_deliver; /* ?max_deliver=N; 0 = 2 x max_attempts + 20 */
    bool memory;         /* ?storage=memory */

    /* mu guards everything from here to pub_mu but chans (added to under
     * mu, read without it) and closing (written under mu; is_ready and a
     * failed fetch read it without, as a hint). hb_cv, ack_cv and
     * async_cv are waited on with mu. */
    pthread_mutex_t mu;
    _Atomic(nchan *) chans; /* added to under mu, read without it */
    sl_track_table tracks;  /* remembered released / nak'ed deliveries */
    /* Acks sent by ack_many are confirmed when something reads what they
     * change (depth, browse, close): per group, the ack subject of the
     * last one is kept (ack_marks), and then acked again asking for the
     * server's answer on ack_sub. The server applies a consumer's acks in
     * order, so that answer covers every ack before it. */
    ack_mark *ack_marks;
    natsSubscription *ack_sub; /* set by open, closed by close */
    char ack_inbox[96];        /* set by open */
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
     * was in sl__nats_publish; the confirm thread the others. */
    nconfirm *outcomes;
    uint32_t out_head, nout;
    uint32_t scan_next; /* where the next expiry scan starts */
    /* Threads in sl__nats_publish, which take outcomes as they leave
     * (added to without the lock, taken from under it). */
    _Atomic uint32_t publishing;
    bool confirm_waiting; /* the confirm thread sleeps on confirm_cv */
    bool pub_closing;
    /* The engine's threads and nats.c's library reference: open and close
     * alone. */
    pthread_t confirm_thread;
    bool confirm_started;
    pthread_t hb_thread;
    bool hb_started;
    bool lib_held; /* counted in lib_users */
};

/* ---- connection.c ---------------------------------------------------- */

/* nats.c's status in sluice's. */
sl_status sl__nats_status(natsStatus s);

/* Subscribe @p cb (in queue group @p queue, or none) so that close can
 * wait until it no longer runs: nats.c may call a handler once more after
 * natsSubscription_Unsubscribe returns. Any thread. */
natsStatus sl__nats_async_subscribe(nats_engine *e, natsSubscription **out,
                                    const char *subject, const char *queue,
                                    natsMsgHandler cb, void *closure);

/* ---- topology.c ------------------------------------------------------ */

/* The FNV-1a hash of "a/b": a group's key (stream, durable); never 0. */
uint64_t sl__nats_hash(const char *a, const char *b);

/* A stream or consumer name for channel or group @p name in namespace
 * @p ns (or none): '-' escapes, "--" is '-', "-u" is '_', '_' stands for
 * '.'. Heap; NULL when out of memory. */
char *sl__nats_escape_name(const char *ns, const char *name);

/* The channel @p name, looking its stream up on the server when another
 * process declared it. *out lives as long as the engine. Any thread. */
sl_status sl__nats_chan_get(nats_engine *e, const char *name, nchan **out);

/* The bucket of the idempotency store of group @p group on @p channel:
 * the bucket @p name with the namespace in front, or (NULL) the group's
 * own. Heap; NULL when out of memory. */
char *sl__nats_bucket_name(const nats_engine *e, const char *name,
                           const char *channel, const char *group);

/* A copy of the subject of channel @p name (heap). */
sl_status sl__nats_chan_lookup(nats_engine *e, const char *name,
                               char **subject);

sl_status sl__nats_declare_channel(sl_engine *base, const sl_channel_opts *opts,
                                   sl_diag *diag);
sl_status sl__nats_declare_group(sl_engine *base, const sl_group_opts *opts,
                                 sl_diag *diag);
sl_status sl__nats_depth(sl_engine *base, const char *channel,
                         const char *group, sl_depth *out);
sl_status sl__nats_browse(sl_engine *base, const char *channel,
                          const char *group, size_t max, sl_browse_fn fn,
                          void *ctx);

/* ---- codec.c: pure, no engine and no connection ---------------------- */

/* A message on @p subject for @p ev: its attributes as "ce-" headers
 * (values percent-encoded where a header cannot hold them), its data as
 * the payload and, with @p dedup, its id as Nats-Msg-Id. */
sl_status sl__nats_event_to_msg(const sl_event *ev, const char *subject,
                                bool dedup, natsMsg **out);

/* An event from message @p m, message @p seq of stream @p stream (created
 * at @p created_ns): CloudEvents binary mode, or a plain message (id from
 * Nats-Msg-Id or "<stream>-<created_ns>-<seq>", type "nats.message",
 * source the subject). SL_FULL when the message has more ce- headers than
 * an event holds; SL_INVALID when one is malformed; SL_NOMEM. */
sl_status sl__nats_msg_to_event(natsMsg *m, const char *stream,
                                uint64_t created_ns, uint64_t seq,
                                sl_event **out);

/* A stream's creation time, nanoseconds since the epoch (0 if unknown). */
uint64_t sl__nats_created_ns(const jsStreamInfo *si);

/* ---- publish.c ------------------------------------------------------- */

/* A publish refused by the server: discard-new at max_msgs is "full". */
sl_status sl__nats_pub_error(natsStatus s, jsErrCode code, const char *txt);

/* The pending table and outcome ring: created by open, closed (no new
 * publishes, the confirm thread finishes) and finished (what is left is
 * called) by close. */
sl_status sl__nats_pubs_init(nats_engine *e);
void sl__nats_pubs_close(nats_engine *e);
void sl__nats_pubs_fini(nats_engine *e);

/* nats.c's PubAck handler (jsOptions.PublishAsync.AckHandler). */
void sl__nats_on_pub_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa,
                         jsPubAckErr *pae, void *closure);

/* The confirm thread's main. */
void *sl__nats_confirm_main(void *arg);

sl_status sl__nats_publish(sl_engine *base, const char *channel, sl_event *ev,
                           unsigned flags, unsigned hints, sl_publish_cb cb,
                           void *ctx);

/* ---- kv.c: the idempotency store on JetStream KV ---------------------- */

/* The inbox store "nats-kv" ("nats-kv:BUCKET"), shared by every process of
 * a consumer group (docs/engines/nats.md, "Idempotency store on JetStream
 * KV"). A key per (channel, group, event id) holds one of
 *
 *   "claim <until_ms> <owner>"  a delivery of the id is being handled, by
 *                               process <owner>, until <until_ms> at the
 *                               latest (the lease; wall clock)
 *   "done <at_ms>"              handled and acknowledged
 *   "free"                      given back unhandled (RETRY, REJECT)
 *
 * A claim is taken with kvStore_Create (create-only: of two processes
 * racing on one id exactly one succeeds) or, over an expired claim or a
 * "free", with kvStore_Update at the revision read (compare and set).
 * Records expire with the bucket's TTL (the group's idempotency_ttl).
 * Keys outlive processes: what sl__nats_kv_key makes must never change.
 *
 * sl_driver.inbox_store: the table for kind "nats-kv", NULL for others. */
const sl_inbox_store_ops *sl__nats_inbox_store(sl_engine *base,
                                               const char *kind);

/* The key of event @p id under @p prefix: "e" and the id in base64url, or
 * "h" and a 128-bit FNV-1a digest of an id too long for a key. Heap; NULL
 * when out of memory. */
char *sl__nats_kv_key(const char *prefix, const char *id);

/* ---- consume.c ------------------------------------------------------- */

sl_status sl__nats_subscribe(sl_engine *base, const char *channel,
                             const char *group, const sl_subscribe_opts *opts,
                             sl_subscription **out, sl_diag *diag);
sl_status sl__nats_fetch(sl_subscription *base, sl_delivery **out, size_t max,
                         uint64_t timeout_ms, size_t *n);
void sl__nats_interrupt(sl_subscription *base);
uint32_t sl__nats_in_flight(const sl_subscription *base);
void sl__nats_unsubscribe(sl_subscription *base);

/* ---- settle.c -------------------------------------------------------- */

/* The memory of given-back deliveries (engine mu taken here). */
void sl__nats_track_forget(nats_engine *e, uint64_t key, uint64_t seq);
void sl__nats_track_nak(nats_engine *e, uint64_t key, uint64_t seq,
                        bool release, uint64_t delay_ms);

/* Settle @p m with @p body ("+ACK", "-NAK", "+TERM", ...) and wait for the
 * server's answer. No lock held. */
sl_status sl__nats_settle_sync(nats_engine *e, natsMsg *m, const char *body);

/* Dead-letter @p ev (message @p seq of @p s's group) and terminate @p m. */
sl_status sl__nats_dead_letter(nats_engine *e, nats_sub *s, natsMsg *m,
                               const sl_event *ev, uint64_t seq,
                               sl_dead_reason reason, uint32_t attempts,
                               const char *error);

void sl__nats_delivery_free(ndelivery *d);

sl_status sl__nats_settle(sl_delivery *base, sl_settle_op op, uint64_t delay_ms,
                          sl_dead_reason reason, const char *error);
sl_status sl__nats_ack_many(sl_delivery **ds, size_t n);

/* nats.c's thread: the server's answer to a confirmation of acks. */
void sl__nats_on_ack_reply(natsConnection *nc, natsSubscription *sub,
                           natsMsg *msg, void *closure);

/* Wait until the server applied every ack ack_many sent (called without
 * the engine's mu); free the marks (close). */
void sl__nats_acks_settle_wait(nats_engine *e);
void sl__nats_ack_marks_free(nats_engine *e);

/* The heartbeat thread's main. */
void *sl__nats_hb_main(void *arg);

/* Listen to the max-deliveries advisory of @p s's group, once per group
 * and process. */
void sl__nats_adv_listen(nats_engine *e, const nats_sub *s);

#endif
