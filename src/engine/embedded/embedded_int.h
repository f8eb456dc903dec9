/* The embedded engine's internals, shared by the files of its folder.
 *
 * Files by concern: engine.c (URL, open, close, declaring, lookup),
 * publish.c (enqueueing, settling entries, freeing messages), consume.c
 * (subscriptions, fetch, settle, spilling, inspection), writer.c (the
 * write-behind thread), recovery.c (loading a store at open), store.c (the
 * SQLite store), ingress.c (other processes' publishes: the ingress
 * database, the thread that drains it and the client engine).
 *
 * Locking: one mutex per engine (emb_engine.mu) guards everything below,
 * the lists, heaps, counters and dirty lists; functions named *_locked and
 * those documented "lock held" expect it held. Critical sections are list
 * operations: events are encoded and decoded, messages freed and confirms
 * called outside it. Fetchers wait on their group's cv, the writer on
 * writer_cv (and commit_wait_cv during commit_interval_ms), fetchers on
 * commit_cv for the batch holding their attempt counts, the ingress thread
 * on ingress_cv between polls. Lock order: emb_engine.mu, then SQLite's own
 * (the store is used by the writer alone, outside mu, apart from declaring
 * and reading spilled bodies, which happen with mu held).
 *
 * Object lifetimes: a message (emb_msg) is shared by the entries (emb_entry,
 * one per group) that still hold it. In store mode the writer owns the
 * freeing of settled entries and unreferenced messages, because it may still
 * have to delete their rows; in memory mode they are freed at once (through
 * the graveyard, see sl__emb_entry_done_deferred).
 */
#ifndef SLUICE_ENGINE_EMBEDDED_INT_H
#define SLUICE_ENGINE_EMBEDDED_INT_H

#include "core/list.h"
#include "engine/dedup.h"
#include "engine/driver.h"
#include "engine/embedded/embedded.h"
#include "engine/embedded/ingress.h"
#include "engine/embedded/store.h"

#include <pthread.h>

#define DEFAULT_PREFETCH 10
#define DEFAULT_MAX_ATTEMPTS 5
#define DEFAULT_DEDUP_WINDOW_MS 120000
#define DEFAULT_DEDUP_MAX_IDS 100000

typedef struct emb_engine emb_engine;
typedef struct emb_channel emb_channel;
typedef struct emb_group emb_group;
typedef struct emb_msg emb_msg;
typedef struct emb_entry emb_entry;
typedef struct emb_sub emb_sub;

typedef enum entry_where {
    AT_READY,
    AT_DELAYED,
    AT_FLIGHT,
    AT_DONE,
} entry_where;

struct emb_entry {
    sl_delivery base; /* what fetch hands out */
    emb_msg *m;
    emb_group *g;
    emb_sub *sub;        /* holder while AT_FLIGHT */
    uint32_t attempts;   /* deliveries so far, crashes included */
    uint64_t visible_at; /* AT_DELAYED: wall ms */
    entry_where where;
    sl_list_node link; /* ready list, or the holder's in-flight list */
    size_t heap_idx;
    bool in_db;
    bool dirty;
    emb_entry *dirty_next;
};

struct emb_msg {
    sl_event *ev;
    emb_channel *ch;
    int64_t seq;
    uint32_t refs; /* live entries */
    uint8_t *body; /* encoded event until its row is written */
    size_t body_len;
    sl_publish_cb cb; /* confirm, fired once by the writer */
    void *cb_ctx;
    bool in_db;
    bool dirty;
    emb_msg *dirty_next;
    uint32_t nslots;     /* entries allocated below */
    uint32_t ev_bytes;   /* encoded size, while ev is resident (store mode) */
    uint32_t size;       /* counted in each group's bytes (max_bytes): the
                            encoded size; 0 in memory mode when the channel
                            had no max_bytes at publish */
    emb_entry entries[]; /* one per group; live as long as the message */
};

struct emb_group {
    char *name;
    emb_channel *ch;
    emb_channel *dlq; /* NULL for the dlq group of a dead-letter channel */
    int64_t gid;
    uint32_t max_attempts;
    sl_list ready;
    emb_entry **heap; /* delayed, min-heap by visible_at */
    size_t heap_n, heap_cap;
    uint64_t in_flight;
    uint64_t bytes;    /* sizes of the messages of its entries (max_bytes) */
    pthread_cond_t cv; /* fetchers wait here */
};

struct emb_channel {
    char *name;
    uint64_t max_length;
    uint64_t max_bytes;
    emb_group **groups;
    size_t ngroups;
};

struct emb_sub {
    sl_subscription base;
    emb_engine *eng;
    emb_group *g;
    uint32_t prefetch;
    sl_list flight;
    bool interrupted;
};

struct emb_engine {
    sl_engine base;
    pthread_mutex_t mu;
    sl_engine_opts opts;
    const sl_clock *clock;
    emb_channel **channels;
    size_t nchannels;
    sl_dedup *dedup;
    int64_t next_seq;
    int64_t next_gid;   /* memory mode; the store assigns its own */
    size_t resident;    /* store mode: encoded bytes of events in memory */
    size_t budget;      /* beyond it, committed events are spilled */
    emb_msg *graveyard; /* memory mode: consumed, freed by the next publish */
    size_t ngraveyard;
    bool closing;

    /* Store mode only. */
    emb_store *store;
    pthread_t writer;
    bool writer_started;
    pthread_cond_t writer_cv;      /* work for the writer */
    pthread_cond_t commit_cv;      /* a batch committed */
    pthread_cond_t commit_wait_cv; /* commit_interval_ms sleeps; close */
    emb_msg *dirty_msgs, **dirty_msgs_tail;
    emb_entry *dirty_entries, **dirty_entries_tail;
    uint64_t batch_next; /* batch that takes changes made now */
    uint64_t batch_done; /* last committed batch */
    sl_status store_err; /* sticky: the store failed */

    /* Events other processes published while we own the store. */
    emb_ingress *ingress;
    pthread_t ingress_thread;
    bool ingress_started;
    pthread_cond_t ingress_cv; /* wakes the poller at close */
};

/* ---- small helpers ------------------------------------------------------ */

static inline uint64_t now_ms(emb_engine *e)
{
    return sl_clock_now_ms(e->clock);
}

/* The entry linked by @p node (a group's ready list or a subscription's
 * in-flight list); NULL for NULL. */
static inline emb_entry *entry_of(sl_list_node *node)
{
    return SL_LIST_ENTRY_OR_NULL(node, emb_entry, link);
}

static inline uint64_t group_count(const emb_group *g)
{
    return g->ready.n + g->heap_n + g->in_flight;
}

/* ---- write-behind bookkeeping (store mode); lock held ------------------- */

static inline void mark_msg(emb_engine *e, emb_msg *m)
{
    if (e->store == NULL || m->dirty) {
        return;
    }
    m->dirty = true;
    m->dirty_next = NULL;
    *e->dirty_msgs_tail = m;
    e->dirty_msgs_tail = &m->dirty_next;
    pthread_cond_signal(&e->writer_cv);
}

static inline void mark_entry(emb_engine *e, emb_entry *en)
{
    if (e->store == NULL || en->dirty) {
        return;
    }
    en->dirty = true;
    en->dirty_next = NULL;
    *e->dirty_entries_tail = en;
    e->dirty_entries_tail = &en->dirty_next;
    pthread_cond_signal(&e->writer_cv);
}

/* ---- engine.c: lookup and declaring (lock held) ------------------------- */

emb_channel *sl__emb_find_channel(emb_engine *e, const char *name);
emb_group *sl__emb_find_group(emb_channel *ch, const char *name);
emb_group *sl__emb_find_gid(emb_engine *e, int64_t gid);
/** Add channel @p name, or update its bounds if it exists. */
sl_status sl__emb_add_channel(emb_engine *e, const char *name,
                              uint64_t max_length, uint64_t max_bytes,
                              emb_channel **out);
/** Add group @p name to @p ch, or update it if it exists. */
sl_status sl__emb_add_group(emb_engine *e, emb_channel *ch, const char *name,
                            int64_t gid, uint32_t max_attempts,
                            emb_group **out);

/* ---- publish.c ---------------------------------------------------------- */

/** Free a message and, with it, its entries. */
void sl__emb_msg_free(emb_msg *m);
/** Free a list of messages linked through dirty_next. */
void sl__emb_free_msgs(emb_msg *m);
/** An entry leaves its group for good. Lock held. Returns a list of
 * messages to free once the lock is released (memory mode), else NULL. */
emb_msg *sl__emb_entry_done_deferred(emb_engine *e, emb_entry *en);
/** sl__emb_entry_done_deferred, freeing at once. Lock held. */
void sl__emb_entry_done(emb_engine *e, emb_entry *en);
/** Enqueue an event into every group of @p ch. Lock held. On success the
 * message owns a reference to @p ev and, in store mode, @p body. */
sl_status sl__emb_enqueue_locked(emb_engine *e, emb_channel *ch, sl_event *ev,
                                 uint8_t **body, size_t body_len,
                                 sl_publish_cb cb, void *cb_ctx);
sl_status sl__emb_publish(sl_engine *base, const char *channel, sl_event *ev,
                          unsigned flags, unsigned hints, sl_publish_cb cb,
                          void *ctx);

/* ---- consume.c ---------------------------------------------------------- */

/** Add a delayed entry to its group's heap. Lock held. */
sl_status sl__emb_heap_push(emb_group *g, emb_entry *en);
/** A committed message whose event may leave memory. Lock held. */
bool sl__emb_spillable(const emb_msg *m);
/** Drop a message's event from memory (the store keeps it). Lock held. */
void sl__emb_spill(emb_engine *e, emb_msg *m);
sl_status sl__emb_subscribe(sl_engine *base, const char *channel,
                            const char *group, const sl_subscribe_opts *opts,
                            sl_subscription **out, sl_diag *diag);
sl_status sl__emb_fetch(sl_subscription *base, sl_delivery **out, size_t max,
                        uint64_t timeout_ms, size_t *n);
void sl__emb_interrupt(sl_subscription *base);
uint32_t sl__emb_in_flight(const sl_subscription *base);
void sl__emb_unsubscribe(sl_subscription *base);
sl_status sl__emb_settle(sl_delivery *d, sl_settle_op op, uint64_t delay_ms,
                         sl_dead_reason reason, const char *error);
sl_status sl__emb_ack_many(sl_delivery **ds, size_t n);
sl_status sl__emb_depth(sl_engine *base, const char *channel, const char *group,
                        sl_depth *out);
sl_status sl__emb_browse(sl_engine *base, const char *channel,
                         const char *group, size_t max, sl_browse_fn fn,
                         void *ctx);

/* ---- writer.c, recovery.c, ingress.c ------------------------------------- */

/** The write-behind thread (store mode); @p arg is the emb_engine. */
void *sl__emb_writer_main(void *arg);
/** Load what the store holds into a new engine, before its threads start. */
sl_status sl__emb_recover(emb_engine *e, const char *dir, sl_diag *diag);
/** The thread that moves other processes' events from the ingress into the
 * channels (store mode); @p arg is the emb_engine. */
void *sl__emb_ingress_main(void *arg);

#endif
