/* The RabbitMQ engine ("amqp://user:pass@host:port/vhost"), on rabbitmq-c:
 * its private header, shared by the files of src/engine/amqp/.
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
 *
 * Locks and owners. Two kinds of mutex, taken in this order: the engine's
 * mu, then a subscription's mu (never the other way round).
 *
 *   amqp_engine.mu  guards the engine's lists (chans, groups, queues, subs),
 *                   the dedup window and the released-delivery tracks, the
 *                   counters (npending, gen, next_ch, uid_state) and the
 *                   state flags (blocked, dead, stopping, io_exited,
 *                   last_return_ms, stop_by_ms), and what the watchdog
 *                   shares with the I/O thread (hb_now_s, io_fd, wd_*);
 *                   cv (calls done, confirms drained) and wd_cv go with it.
 *   asub.mu         guards a subscription's buffer and flight list (buf,
 *                   flight, their deliveries' links, nlimbo), arrived,
 *                   dead, down and gen; cv wakes its fetches.
 *   I/O thread      owns the connection (conn: open and close touch it only
 *                   while the thread is not running), the unconfirmed list
 *                   (unconf_*, next_tag), rng, nrebind and each
 *                   subscription's rebind state (rebind*, ch_closed,
 *                   cancelled); only it adds or removes subscriptions
 *                   while it runs.
 *   atomics         io_sleeping, send_since, asub.cancel_asked and
 *                   asub.interrupted are read without a lock.
 *
 * Files: amqp.c (URL, open, close, the driver table), connection.c
 * (connect, login, TLS, the I/O thread, reconnect, the watchdog),
 * topology.c (declarations, the broker's refusals in sluice's terms),
 * publish.c (publish, confirms, the pending window), consume.c
 * (subscriptions, fetch, settle, retry, dead letter, rebinding), codec.c
 * (message <-> event, pure), admin.c (depth, browse).
 *
 * Internal: the rest of the library sees only sl__amqp_driver.
 */
#ifndef SLUICE_ENGINE_AMQP_INT_H
#define SLUICE_ENGINE_AMQP_INT_H

#include "core/list.h"
#include "engine/dedup.h"
#include "engine/driver.h"
#include "engine/track.h"
#include "sluice/queue.h"

#include <amqp.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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
    uint32_t gen;      /* connection it came on (asub.gen) */
    sl_list_node link; /* in asub.buf or asub.flight, under asub.mu */
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
    sl_list buf;    /* adelivery.link: received, not fetched, oldest first */
    sl_list flight; /* adelivery.link: fetched, not settled */
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
    uint32_t gen;            /* +1 per connect and per resubscription */
    uint32_t nrebind;        /* subscriptions with rebind set (I/O thread) */
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

/* A declaration the I/O thread runs (topology.c: sl__amqp_do_declare_*):
 * an exchange, a queue (bound to the exchange when both are given), or a
 * passive check that reads the queue's message count. */
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

/* sl__amqp_do_declare_retry: the retry queue of @c queue for a delay. */
typedef struct retry_args {
    const char *queue;
    uint64_t delay_ms;
    char *name; /* out */
} retry_args;

/* Entries of a publish's header table (sl__amqp_pub_properties): the
 * event's CloudEvents headers and the engine's own. */
#define PUB_MAX_HEADERS 64

/* ---- codec.c: message <-> event; no engine state, no I/O. Thread: any.
 */

/** @p b as a NUL-terminated copy (sl_free it); NULL when out of memory. */
char *sl__amqp_dup_bytes(amqp_bytes_t b);

/** Free a record of sl__amqp_pub_build (one allocation). NULL: no-op. */
void sl__amqp_pub_free(apub *p);

/**
 * The publish record of @p ev for @p exchange / @p rkey: the event's
 * CloudEvents headers, the plain properties' strings, @p uid and
 * @p attempts (the engine's headers) and @p dedup_id (may be NULL; kept
 * for the confirm), all in one allocation with the body after them.
 * *@p out is the caller's (sl__amqp_pub_free). @return SL_OK, SL_NOMEM.
 */
sl_status sl__amqp_pub_build(const sl_event *ev, const char *exchange,
                             const char *rkey, uint64_t uid, uint32_t attempts,
                             const char *dedup_id, apub **out);

/**
 * The AMQP properties of @p p's message (sl__amqp_pub_build): the header
 * table in @p entries, the plain properties, persistent delivery. @p props
 * points into @p p and @p entries and lives as long as both.
 */
void sl__amqp_pub_properties(const apub *p, amqp_basic_properties_t *props,
                             amqp_table_entry_t entries[PUB_MAX_HEADERS]);

/**
 * The event of message @p m: CloudEvents binary mode when it has
 * "cloudEvents:" headers, else its plain properties (message_id, type,
 * app_id or @p fallback_source, timestamp, correlation_id, content_type).
 * A message with no id gets a fresh UUIDv7 on every call. Headers that
 * make no attribute (a bad name or value) are skipped. *@p out holds one
 * reference, the caller's. @return SL_OK, SL_NOMEM.
 */
sl_status sl__amqp_message_to_event(const amqp_message_t *m,
                                    const char *fallback_source,
                                    sl_event **out);

/** The engine's headers of @p m: x-sluice-uid, x-delivery-count and
 * x-sluice-attempts (0 when absent, not integers or negative). */
void sl__amqp_read_counts(const amqp_message_t *m, uint64_t *uid,
                          uint32_t *delivery_count, uint32_t *base);

/* ---- topology.c */

/**
 * Rephrase the broker's refusal @p text (@p len bytes, not NUL-terminated)
 * into @p out (@p size bytes, always NUL-terminated), e.g.
 *
 *   queue 'q': x-max-length (the channel's max_length) is 1000 on the
 *   broker, the configuration wants 5000; RabbitMQ cannot change an
 *   existing queue: delete it (its messages too) or change the
 *   configuration
 *
 * RabbitMQ refuses to declare an existing exchange or queue with other
 * arguments (406 PRECONDITION_FAILED) and cannot tell a client what the
 * existing one has; its refusal names the argument and both values.
 *
 * @return true when @p text has that form; false (and @p out untouched)
 *         otherwise. Pure. Thread: any.
 */
bool sl__amqp_describe_difference(const char *text, size_t len, char *out,
                                  size_t size);
uint64_t sl__amqp_fnv1a(const char *s);
char *sl__amqp_cat4(const char *a, const char *b, const char *c, const char *d);
char *sl__amqp_exchange_name(amqp_engine *e, const char *channel);
char *sl__amqp_queue_name(amqp_engine *e, const char *channel,
                          const char *group);
achan *sl__amqp_chan_find_locked(amqp_engine *e, const char *name);
achan *sl__amqp_chan_remember(amqp_engine *e, const char *name,
                              uint64_t max_length, uint64_t max_bytes,
                              bool declared);
agroup *sl__amqp_group_find_locked(amqp_engine *e, const char *queue);
sl_status sl__amqp_do_declare_exchange(amqp_engine *e, void *arg);
sl_status sl__amqp_do_declare_queue(amqp_engine *e, void *arg);
sl_status sl__amqp_declare_channel(sl_engine *base, const sl_channel_opts *opts,
                                   sl_diag *diag);
sl_status sl__amqp_declare_group(sl_engine *base, const sl_group_opts *opts,
                                 sl_diag *diag);
sl_status sl__amqp_do_declare_retry(amqp_engine *e, void *arg);
sl_status sl__amqp_redeclare(amqp_engine *e, sl_diag *diag);

/* ---- publish.c */

uint64_t sl__amqp_next_uid(amqp_engine *e);
void sl__amqp_confirm_one(amqp_engine *e, apub *p, sl_status st);
void sl__amqp_confirm_tags(amqp_engine *e, uint64_t tag, bool multiple,
                           sl_status st);
void sl__amqp_fail_unconfirmed(amqp_engine *e, sl_status st);
sl_status sl__amqp_open_publish_channel(amqp_engine *e);
void sl__amqp_send_publish(amqp_engine *e, apub *p);
void sl__amqp_on_return(amqp_engine *e);
void sl__amqp_note_return(amqp_engine *e);
sl_status sl__amqp_submit_sync(amqp_engine *e, apub *p);
sl_status sl__amqp_publish(sl_engine *base, const char *channel, sl_event *ev,
                           unsigned flags, unsigned hints, sl_publish_cb cb,
                           void *ctx);

/* ---- consume.c */

asub *sl__amqp_sub_by_channel_locked(amqp_engine *e, uint16_t ch);
void sl__amqp_on_deliver(amqp_engine *e, uint16_t ch,
                         const amqp_basic_deliver_t *dv);
void sl__amqp_wake_fetchers(amqp_engine *e);
void sl__amqp_mark_sub_dead(amqp_engine *e, uint16_t ch);
void sl__amqp_on_broker_cancel(amqp_engine *e, uint16_t ch);
void sl__amqp_cancel_consumer(amqp_engine *e, uint16_t ch);
sl_status sl__amqp_subscribe(sl_engine *base, const char *channel,
                             const char *group, const sl_subscribe_opts *opts,
                             sl_subscription **out, sl_diag *diag);
sl_status sl__amqp_fetch(sl_subscription *base, sl_delivery **out, size_t max,
                         uint64_t timeout_ms, size_t *n);
void sl__amqp_interrupt(sl_subscription *base);
uint32_t sl__amqp_in_flight(const sl_subscription *base);
void sl__amqp_barrier(amqp_engine *e, asub *s);
void sl__amqp_release_buffered(amqp_engine *e, asub *s);
void sl__amqp_unsubscribe(sl_subscription *base);
sl_status sl__amqp_settle(sl_delivery *base, sl_settle_op op, uint64_t delay_ms,
                          sl_dead_reason reason, const char *error);
sl_status sl__amqp_ack_many(sl_delivery **ds, size_t n);
sl_status sl__amqp_resubscribe(amqp_engine *e);
void sl__amqp_rebind_due(amqp_engine *e);

/* ---- connection.c: the I/O thread and the connection. */

void sl__amqp_wake_io(amqp_engine *e);
sl_status sl__amqp_from_reply(amqp_rpc_reply_t r, uint16_t *code);
sl_status sl__amqp_push_req(amqp_engine *e, areq *r);
sl_status sl__amqp_io_call_ex(amqp_engine *e,
                              sl_status (*fn)(amqp_engine *, void *), void *arg,
                              bool always);
sl_status sl__amqp_io_call(amqp_engine *e,
                           sl_status (*fn)(amqp_engine *, void *), void *arg);
void sl__amqp_drain_enqueued(amqp_engine *e);
sl_status sl__amqp_open_channel(amqp_engine *e, uint16_t ch);
sl_status sl__amqp_check_rpc(amqp_engine *e, uint16_t ch);
void sl__amqp_fail_req(amqp_engine *e, areq *r);
bool sl__amqp_reconnect(amqp_engine *e);
void *sl__amqp_io_main(void *arg);
sl_status sl__amqp_check_tls_params(amqp_engine *e, sl_diag *diag);
void sl__amqp_destroy_conn(amqp_engine *e, amqp_connection_state_t conn);
const char *sl__amqp_reply_text(const amqp_rpc_reply_t *r, char *buf,
                                size_t size);
sl_status sl__amqp_connect_once(amqp_engine *e, sl_diag *diag);
void *sl__amqp_watchdog_main(void *arg);

/* ---- admin.c */

void sl__amqp_await_returns(amqp_engine *e);
sl_status sl__amqp_depth(sl_engine *base, const char *channel,
                         const char *group, sl_depth *out);
sl_status sl__amqp_browse(sl_engine *base, const char *channel,
                          const char *group, size_t max, sl_browse_fn fn,
                          void *ctx);
bool sl__amqp_is_ready(const sl_engine *base);

#endif
