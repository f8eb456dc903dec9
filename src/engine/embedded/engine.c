/* The embedded engine: channels, groups and deliveries in one process.
 *
 * All state lives in memory under one mutex. With a store ("embedded:DIR")
 * every change is also written behind by a writer thread, one SQLite
 * transaction per batch (group commit): whatever accumulated while the last
 * commit ran goes into the next. Publish confirms fire after the batch that
 * holds the event commits. A fetch returns only after the batch holding the
 * incremented attempt counts commits, so a delivery that crashes the process
 * is counted and a poison event cannot loop forever.
 *
 * "embedded::memory:" runs without a store: confirms fire at once.
 *
 * Object lifetimes: a message (emb_msg) is shared by the entries (emb_entry,
 * one per group) that still hold it. In store mode the writer owns the
 * freeing of settled entries and unreferenced messages, because it may still
 * have to delete their rows; in memory mode they are freed at once.
 */
#include "core/waiter.h"
#include "engine/dedup.h"
#include "engine/driver.h"
#include "engine/embedded/embedded.h"
#include "engine/embedded/ingress.h"
#include "engine/embedded/store.h"
#include "sluice/alloc.h"
#include "sluice/log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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
    emb_entry *prev, *next; /* ready list, or the holder's in-flight list */
    size_t heap_idx;
    bool in_db;
    bool dirty;
    emb_entry *dirty_next;
};

struct emb_msg {
    sl_event *ev;
    emb_channel *ch;
    int64_t seq;
    uint32_t refs;      /* live entries */
    uint8_t *body;      /* encoded event until its row is written */
    size_t body_len;
    sl_publish_cb cb;   /* confirm, fired once by the writer */
    void *cb_ctx;
    bool in_db;
    bool dirty;
    emb_msg *dirty_next;
    uint32_t nslots;    /* entries allocated below */
    uint32_t ev_bytes;  /* encoded size, while ev is resident (store mode) */
    uint32_t size;      /* counted in each group's bytes (max_bytes): the
                           encoded size; 0 in memory mode when the channel
                           had no max_bytes at publish */
    emb_entry entries[]; /* one per group; live as long as the message */
};

typedef struct entry_list {
    emb_entry *head, *tail;
    uint64_t n;
} entry_list;

struct emb_group {
    char *name;
    emb_channel *ch;
    emb_channel *dlq; /* NULL for the dlq group of a dead-letter channel */
    int64_t gid;
    uint32_t max_attempts;
    entry_list ready;
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
    entry_list flight;
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
    int64_t next_gid; /* memory mode; the store assigns its own */
    size_t resident; /* store mode: encoded bytes of events in memory */
    size_t budget;   /* beyond it, committed events are spilled */
    emb_msg *graveyard; /* memory mode: consumed, freed by the next publish */
    size_t ngraveyard;
    bool closing;

    /* Store mode only. */
    emb_store *store;
    pthread_t writer;
    bool writer_started;
    pthread_cond_t writer_cv; /* work for the writer */
    pthread_cond_t commit_cv; /* a batch committed */
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

static uint64_t now_ms(emb_engine *e)
{
    return sl_clock_now_ms(e->clock);
}

static void list_push_tail(entry_list *l, emb_entry *e)
{
    e->next = NULL;
    e->prev = l->tail;
    if (l->tail) {
        l->tail->next = e;
    } else {
        l->head = e;
    }
    l->tail = e;
    l->n++;
}

static void list_push_head(entry_list *l, emb_entry *e)
{
    e->prev = NULL;
    e->next = l->head;
    if (l->head) {
        l->head->prev = e;
    } else {
        l->tail = e;
    }
    l->head = e;
    l->n++;
}

static void list_remove(entry_list *l, emb_entry *e)
{
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        l->head = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    } else {
        l->tail = e->prev;
    }
    e->prev = e->next = NULL;
    l->n--;
}

/* ---- delayed heap ------------------------------------------------------- */

static void heap_swap(emb_group *g, size_t a, size_t b)
{
    emb_entry *t = g->heap[a];
    g->heap[a] = g->heap[b];
    g->heap[b] = t;
    g->heap[a]->heap_idx = a;
    g->heap[b]->heap_idx = b;
}

static void heap_up(emb_group *g, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (g->heap[p]->visible_at <= g->heap[i]->visible_at) {
            break;
        }
        heap_swap(g, i, p);
        i = p;
    }
}

static void heap_down(emb_group *g, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < g->heap_n && g->heap[l]->visible_at < g->heap[m]->visible_at) {
            m = l;
        }
        if (r < g->heap_n && g->heap[r]->visible_at < g->heap[m]->visible_at) {
            m = r;
        }
        if (m == i) {
            return;
        }
        heap_swap(g, i, m);
        i = m;
    }
}

static sl_status heap_push(emb_group *g, emb_entry *e)
{
    if (g->heap_n == g->heap_cap) {
        size_t cap = g->heap_cap ? g->heap_cap * 2 : 64;
        emb_entry **h = sl_realloc(g->heap, cap * sizeof *h);
        if (h == NULL) {
            return SL_NOMEM;
        }
        g->heap = h;
        g->heap_cap = cap;
    }
    e->heap_idx = g->heap_n;
    g->heap[g->heap_n++] = e;
    heap_up(g, e->heap_idx);
    return SL_OK;
}

static emb_entry *heap_pop(emb_group *g)
{
    emb_entry *top = g->heap[0];
    g->heap_n--;
    if (g->heap_n > 0) {
        g->heap[0] = g->heap[g->heap_n];
        g->heap[0]->heap_idx = 0;
        heap_down(g, 0);
    }
    return top;
}

/* ---- write-behind bookkeeping (store mode) ------------------------------ */

static void mark_msg(emb_engine *e, emb_msg *m)
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

static void mark_entry(emb_engine *e, emb_entry *en)
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

/* Entries live inside their message's allocation: one malloc per published
 * event however many groups it goes to, and no per-entry free. */
static void msg_free(emb_msg *m)
{
    sl_event_unref(m->ev);
    sl_free(m->body);
    sl_free(m);
}

/* Free a list of messages linked through dirty_next. */
static void free_msgs(emb_msg *m)
{
    while (m != NULL) {
        emb_msg *next = m->dirty_next;
        msg_free(m);
        m = next;
    }
}

/* Memory mode: a message nobody references any more. Consumers free what
 * producers allocated; done on the consumer's thread, every free would take
 * the producer's malloc arena lock against the producer's own mallocs. So
 * the message waits in a graveyard that the next publish frees on its own
 * thread. The graveyard is bounded: past GRAVEYARD_MAX the caller gets the
 * whole list to free itself (after the lock). */
#define GRAVEYARD_MAX 4096

static emb_msg *bury(emb_engine *e, emb_msg *m)
{
    m->dirty_next = e->graveyard;
    e->graveyard = m;
    if (++e->ngraveyard < GRAVEYARD_MAX) {
        return NULL;
    }
    emb_msg *all = e->graveyard;
    e->graveyard = NULL;
    e->ngraveyard = 0;
    return all;
}

/* An entry leaves its group for good. Returns a list of messages to free
 * once the lock is released (memory mode), else NULL. */
static emb_msg *entry_done_deferred(emb_engine *e, emb_entry *en)
{
    en->where = AT_DONE;
    emb_msg *m = en->m;
    en->g->bytes -= m->size;
    m->refs--;
    if (e->store != NULL) {
        mark_entry(e, en);
        if (m->refs == 0) {
            mark_msg(e, m);
        }
        return NULL;
    }
    return m->refs == 0 ? bury(e, m) : NULL;
}

static void entry_done(emb_engine *e, emb_entry *en)
{
    free_msgs(entry_done_deferred(e, en));
}

/* ---- lookup -------------------------------------------------------------- */

static emb_channel *find_channel(emb_engine *e, const char *name)
{
    for (size_t i = 0; i < e->nchannels; i++) {
        if (strcmp(e->channels[i]->name, name) == 0) {
            return e->channels[i];
        }
    }
    return NULL;
}

static emb_group *find_group(emb_channel *ch, const char *name)
{
    for (size_t i = 0; i < ch->ngroups; i++) {
        if (strcmp(ch->groups[i]->name, name) == 0) {
            return ch->groups[i];
        }
    }
    return NULL;
}

static emb_group *find_gid(emb_engine *e, int64_t gid)
{
    for (size_t i = 0; i < e->nchannels; i++) {
        emb_channel *ch = e->channels[i];
        for (size_t j = 0; j < ch->ngroups; j++) {
            if (ch->groups[j]->gid == gid) {
                return ch->groups[j];
            }
        }
    }
    return NULL;
}

static uint64_t group_count(const emb_group *g)
{
    return g->ready.n + g->heap_n + g->in_flight;
}

/* ---- declaring ------------------------------------------------------------ */

static sl_status add_channel(emb_engine *e, const char *name,
                             uint64_t max_length, uint64_t max_bytes,
                             emb_channel **out)
{
    emb_channel *ch = find_channel(e, name);
    if (ch != NULL) {
        ch->max_length = max_length;
        ch->max_bytes = max_bytes;
        *out = ch;
        return SL_OK;
    }
    emb_channel **arr =
        sl_realloc(e->channels, (e->nchannels + 1) * sizeof *arr);
    if (arr == NULL) {
        return SL_NOMEM;
    }
    e->channels = arr;
    ch = sl_calloc(1, sizeof *ch);
    if (ch == NULL || (ch->name = sl_strdup(name)) == NULL) {
        sl_free(ch);
        return SL_NOMEM;
    }
    ch->max_length = max_length;
    ch->max_bytes = max_bytes;
    e->channels[e->nchannels++] = ch;
    *out = ch;
    return SL_OK;
}

static sl_status add_group(emb_engine *e, emb_channel *ch, const char *name,
                           int64_t gid, uint32_t max_attempts,
                           emb_group **out)
{
    emb_group *g = find_group(ch, name);
    if (g != NULL) {
        g->max_attempts = max_attempts;
        g->gid = gid;
        *out = g;
        return SL_OK;
    }
    emb_group **arr = sl_realloc(ch->groups, (ch->ngroups + 1) * sizeof *arr);
    if (arr == NULL) {
        return SL_NOMEM;
    }
    ch->groups = arr;
    g = sl_calloc(1, sizeof *g);
    if (g == NULL || (g->name = sl_strdup(name)) == NULL) {
        sl_free(g);
        return SL_NOMEM;
    }
    g->ch = ch;
    g->gid = gid;
    g->max_attempts = max_attempts;
    sl__cond_init_mono(&g->cv);
    ch->groups[ch->ngroups++] = g;
    *out = g;
    return SL_OK;
}

static sl_status emb_declare_channel(sl_engine *base,
                                     const sl_channel_opts *opts,
                                     sl_diag *diag)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = NULL;
    sl_status st =
        add_channel(e, opts->name, opts->max_length, opts->max_bytes, &ch);
    if (st == SL_OK && e->store != NULL) {
        st = emb_store_put_channel(e->store, opts->name, opts->max_length,
                                   opts->max_bytes, diag);
    }
    pthread_mutex_unlock(&e->mu);
    return st;
}

/* A group and, unless it is itself the keeper of a dead-letter channel, its
 * dead-letter channel with the keeper group. Called with the lock held. */
static sl_status declare_group_locked(emb_engine *e, const char *channel,
                                      const char *name, uint32_t max_attempts,
                                      bool with_dlq, emb_group **out,
                                      sl_diag *diag)
{
    emb_channel *ch = find_channel(e, channel);
    if (ch == NULL) {
        return sl_diag_set(diag, SL_NOT_FOUND,
                           "channel '%s' is not declared", channel);
    }
    int64_t gid = 0;
    emb_group *existing = find_group(ch, name);
    if (e->store != NULL) {
        sl_status st =
            emb_store_put_group(e->store, channel, name, max_attempts, &gid,
                                diag);
        if (st != SL_OK) {
            return st;
        }
    } else {
        gid = existing ? existing->gid : e->next_gid++;
    }
    emb_group *g = NULL;
    sl_status st = add_group(e, ch, name, gid, max_attempts, &g);
    if (st != SL_OK) {
        return st;
    }
    if (with_dlq && g->dlq == NULL) {
        char dlq_name[512];
        if (sl__dlq_channel_name(channel, name, dlq_name, sizeof dlq_name) !=
            SL_OK) {
            return sl_diag_set(diag, SL_TOO_LARGE, "dead-letter name too long");
        }
        emb_channel *dlq = NULL;
        if ((st = add_channel(e, dlq_name, 0, 0, &dlq)) != SL_OK) {
            return st;
        }
        if (e->store != NULL &&
            (st = emb_store_put_channel(e->store, dlq_name, 0, 0, diag)) !=
                SL_OK) {
            return st;
        }
        emb_group *keeper = NULL;
        if ((st = declare_group_locked(e, dlq_name, SL_DLQ_GROUP,
                                       UINT32_MAX, false, &keeper, diag)) !=
            SL_OK) {
            return st;
        }
        g->dlq = dlq;
    }
    *out = g;
    return SL_OK;
}

static bool is_dlq_channel(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && strcmp(name + n - 4, ".dlq") == 0;
}

static sl_status emb_declare_group(sl_engine *base, const sl_group_opts *opts,
                                   sl_diag *diag)
{
    emb_engine *e = (emb_engine *)base;
    uint32_t max_attempts =
        opts->max_attempts ? opts->max_attempts : DEFAULT_MAX_ATTEMPTS;
    pthread_mutex_lock(&e->mu);
    emb_group *g = NULL;
    sl_status st =
        declare_group_locked(e, opts->channel, opts->name, max_attempts,
                             !is_dlq_channel(opts->channel), &g, diag);
    pthread_mutex_unlock(&e->mu);
    return st;
}

/* ---- publishing ------------------------------------------------------------ */

/* Enqueue an event into every group of @p ch. Lock held. On success the
 * message owns a reference to @p ev and, in store mode, @p body. */
static sl_status enqueue_locked(emb_engine *e, emb_channel *ch, sl_event *ev,
                                uint8_t **body, size_t body_len,
                                sl_publish_cb cb, void *cb_ctx)
{
    /* The size counted against max_bytes: what the store writes, or in
     * memory mode the same measure, taken only for a bounded channel. */
    uint64_t size = body != NULL && *body != NULL ? body_len
                    : ch->max_bytes != 0          ? sl_event_encoded_size(ev)
                                                  : 0;
    for (size_t i = 0; i < ch->ngroups; i++) {
        const emb_group *g = ch->groups[i];
        if ((ch->max_length != 0 && group_count(g) >= ch->max_length) ||
            (ch->max_bytes != 0 && g->bytes + size > ch->max_bytes)) {
            return SL_FULL;
        }
    }
    emb_msg *m = sl_calloc(1, sizeof *m + ch->ngroups * sizeof(emb_entry));
    if (m == NULL) {
        return SL_NOMEM;
    }
    m->nslots = (uint32_t)ch->ngroups;
    m->ev = sl_event_ref(ev);
    m->ch = ch;
    m->seq = e->next_seq++;
    m->refs = (uint32_t)ch->ngroups;
    m->cb = cb;
    m->cb_ctx = cb_ctx;
    m->size = size > UINT32_MAX ? UINT32_MAX : (uint32_t)size;
    if (body != NULL) {
        m->body = *body;
        m->body_len = body_len;
        *body = NULL;
        m->ev_bytes = (uint32_t)body_len;
        e->resident += body_len;
    }
    for (size_t i = 0; i < ch->ngroups; i++) {
        emb_group *g = ch->groups[i];
        emb_entry *en = &m->entries[i];
        en->base.drv = &sl__embedded_driver;
        en->base.ev = m->ev;
        en->base.channel = ch->name;
        en->base.group = g->name;
        en->m = m;
        en->g = g;
        en->where = AT_READY;
        list_push_tail(&g->ready, en);
        g->bytes += m->size;
        mark_entry(e, en);
        pthread_cond_signal(&g->cv);
    }
    if (e->store != NULL) {
        mark_msg(e, m);
    } else if (m->refs == 0) {
        msg_free(m); /* no group: nobody will ever read it */
    }
    return SL_OK;
}

static sl_status emb_publish(sl_engine *base, const char *channel,
                             sl_event *ev, unsigned flags, sl_publish_cb cb,
                             void *ctx)
{
    emb_engine *e = (emb_engine *)base;
    sl_status st = sl_event_validate(ev, e->opts.max_event_size, NULL);
    if (st != SL_OK) {
        return st;
    }
    uint8_t *body = NULL;
    size_t body_len = 0;
    sl_event *stored = NULL;
    if (e->store != NULL) {
        /* The store keeps its own copy, decoded from the bytes it writes:
         * one exact-size block, so a queued event costs what it carries and
         * not the publisher's build buffers. */
        if ((st = sl_event_encode(ev, &body, &body_len)) != SL_OK) {
            return st;
        }
        if ((st = sl_event_decode(body, body_len, &stored, NULL)) != SL_OK) {
            sl_free(body);
            return st;
        }
        ev = stored;
    }
    bool confirm_now = false;
    uint64_t now = now_ms(e);
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = find_channel(e, channel);
    if (e->closing) {
        st = SL_CLOSED;
    } else if (e->store_err != SL_OK) {
        st = SL_UNAVAILABLE;
    } else if (ch == NULL) {
        st = SL_NOT_FOUND;
    } else if (!(flags & SL_PUBLISH_NO_DEDUP) &&
               sl__dedup_contains(e->dedup, ch, sl_event_id(ev), now)) {
        /* Already accepted: confirm again without enqueueing. */
        confirm_now = true;
    } else {
        st = enqueue_locked(e, ch, ev, &body, body_len,
                            e->store ? cb : NULL, ctx);
        if (st == SL_OK) {
            sl__dedup_add(e->dedup, ch, sl_event_id(ev), now);
        }
        confirm_now = st == SL_OK && e->store == NULL;
    }
    emb_msg *graveyard = e->graveyard;
    e->graveyard = NULL;
    e->ngraveyard = 0;
    pthread_mutex_unlock(&e->mu);
    free_msgs(graveyard);
    sl_free(body);
    sl_event_unref(stored);
    if (confirm_now && cb != NULL) {
        cb(SL_OK, ctx);
    }
    return st;
}

/* ---- consuming -------------------------------------------------------------- */

static sl_status emb_subscribe(sl_engine *base, const char *channel,
                               const char *group,
                               const sl_subscribe_opts *opts,
                               sl_subscription **out, sl_diag *diag)
{
    emb_engine *e = (emb_engine *)base;
    emb_sub *s = sl_calloc(1, sizeof *s);
    if (s == NULL) {
        return SL_NOMEM;
    }
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = find_channel(e, channel);
    emb_group *g = ch ? find_group(ch, group) : NULL;
    pthread_mutex_unlock(&e->mu);
    if (g == NULL) {
        sl_free(s);
        return sl_diag_set(diag, SL_NOT_FOUND,
                           "group '%s' on channel '%s' is not declared", group,
                           channel);
    }
    s->base.drv = &sl__embedded_driver;
    s->eng = e;
    s->g = g;
    s->prefetch = opts->prefetch ? opts->prefetch : DEFAULT_PREFETCH;
    *out = &s->base;
    return SL_OK;
}

/* ---- spilling (store mode) ------------------------------------------------
 *
 * Past the memory budget, a committed message whose entries are all waiting
 * (none in flight) drops its event and keeps only what ordering and
 * accounting need; the event is read back from the store when one of its
 * entries is delivered, browsed or dead-lettered. */

static void set_event(emb_msg *m, sl_event *ev)
{
    m->ev = ev;
    for (uint32_t i = 0; i < m->nslots; i++) {
        m->entries[i].base.ev = ev;
    }
}

static bool spillable(const emb_msg *m)
{
    if (m->ev == NULL || !m->in_db || m->refs == 0 || m->dirty) {
        return false;
    }
    for (uint32_t i = 0; i < m->nslots; i++) {
        if (m->entries[i].where == AT_FLIGHT) {
            return false; /* a handler may be reading it */
        }
    }
    return true;
}

static void spill(emb_engine *e, emb_msg *m)
{
    e->resident -= m->ev_bytes;
    sl_event_unref(m->ev);
    set_event(m, NULL);
}

/* Make @p m's event resident. Lock held. */
static sl_status ensure_loaded(emb_engine *e, emb_msg *m)
{
    if (m->ev != NULL) {
        return SL_OK;
    }
    uint8_t *body = NULL;
    size_t len = 0;
    sl_event *ev = NULL;
    sl_status st = emb_store_read_body(e->store, m->seq, &body, &len);
    if (st == SL_OK) {
        st = sl_event_decode(body, len, &ev, NULL);
    }
    sl_free(body);
    if (st != SL_OK) {
        sl_logf(SL_LOG_ERROR, "engine.embedded",
                "reading stored event %" PRId64 " back: %s", m->seq,
                sl_status_str(st));
        return st;
    }
    set_event(m, ev);
    m->ev_bytes = (uint32_t)len;
    e->resident += len;
    return SL_OK;
}

/* Move a settled-by-engine entry to the dead-letter channel. Lock held. */
static void dead_letter_locked(emb_engine *e, emb_entry *en,
                               sl_dead_reason reason, const char *error)
{
    emb_group *g = en->g;
    if (g->dlq != NULL && ensure_loaded(e, en->m) == SL_OK) {
        sl_event *dead = NULL;
        uint8_t *body = NULL;
        size_t len = 0;
        sl_status st = sl__dead_letter_event(en->m->ev, reason, en->attempts,
                                             error, g->ch->name, g->name,
                                             now_ms(e), &dead);
        if (st == SL_OK && e->store != NULL) {
            st = sl_event_encode(dead, &body, &len);
        }
        if (st == SL_OK) {
            st = enqueue_locked(e, g->dlq, dead, &body, len, NULL, NULL);
        }
        if (st != SL_OK) {
            sl_logf(SL_LOG_ERROR, "engine.embedded",
                    "dead-lettering %s from %s/%s failed: %s; dropped",
                    sl_event_id(en->m->ev), g->ch->name, g->name,
                    sl_status_str(st));
        }
        sl_free(body);
        sl_event_unref(dead);
    }
    entry_done(e, en);
}

static void promote_due(emb_engine *e, emb_group *g, uint64_t now)
{
    while (g->heap_n > 0 && g->heap[0]->visible_at <= now) {
        emb_entry *en = heap_pop(g);
        en->where = AT_READY;
        list_push_tail(&g->ready, en);
    }
    (void)e;
}

static sl_status emb_fetch(sl_subscription *base, sl_delivery **out,
                           size_t max, uint64_t timeout_ms, size_t *n)
{
    emb_sub *s = (emb_sub *)base;
    emb_engine *e = s->eng;
    emb_group *g = s->g;
    struct timespec until;
    sl__deadline_after(&until, timeout_ms);
    size_t got = 0;
    sl_status st = SL_OK;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        if (s->interrupted || e->closing) {
            st = SL_CLOSED;
            break;
        }
        if (e->store_err != SL_OK) {
            st = SL_UNAVAILABLE;
            break;
        }
        size_t credit = s->prefetch > s->flight.n ? s->prefetch - s->flight.n
                                                  : 0;
        if (credit == 0) {
            st = SL_FULL;
            break;
        }
        uint64_t now = now_ms(e);
        promote_due(e, g, now);
        while (got < max && got < credit && g->ready.head != NULL) {
            emb_entry *en = g->ready.head;
            list_remove(&g->ready, en);
            if (ensure_loaded(e, en->m) != SL_OK) {
                entry_done(e, en); /* unreadable: logged, dropped */
                continue;
            }
            uint64_t deadline = sl_event_deadline_ms(en->m->ev);
            if (deadline != 0 && deadline <= now) {
                dead_letter_locked(e, en, SL_DEAD_EXPIRED,
                                   "deadline passed before delivery");
                continue;
            }
            if (en->attempts >= g->max_attempts) {
                dead_letter_locked(e, en, SL_DEAD_MAX_ATTEMPTS,
                                   "delivery limit reached: the handler "
                                   "crashed or timed out on every attempt");
                continue;
            }
            en->attempts++;
            en->base.attempt = en->attempts;
            en->where = AT_FLIGHT;
            en->sub = s;
            g->in_flight++;
            list_push_tail(&s->flight, en);
            mark_entry(e, en);
            out[got++] = &en->base;
        }
        if (got > 0) {
            break;
        }
        /* Wait for a publish, a retry coming due, or the timeout. */
        struct timespec wake = until;
        if (g->heap_n > 0) {
            uint64_t due = g->heap[0]->visible_at;
            uint64_t in = due > now ? due - now : 0;
            struct timespec t;
            sl__deadline_after(&t, in);
            if (t.tv_sec < wake.tv_sec ||
                (t.tv_sec == wake.tv_sec && t.tv_nsec < wake.tv_nsec)) {
                wake = t;
            }
        }
        int rc = pthread_cond_timedwait(&g->cv, &e->mu, &wake);
        if (rc == ETIMEDOUT) {
            struct timespec cur;
            clock_gettime(CLOCK_MONOTONIC, &cur);
            if (cur.tv_sec > until.tv_sec ||
                (cur.tv_sec == until.tv_sec && cur.tv_nsec >= until.tv_nsec)) {
                promote_due(e, g, now_ms(e));
                if (g->ready.head == NULL) {
                    st = SL_EMPTY;
                    break;
                }
            }
        }
    }
    if (got > 0 && e->store != NULL) {
        /* The attempt counts must be durable before any handler runs. */
        uint64_t need = e->batch_next;
        while (e->batch_done < need && e->store_err == SL_OK) {
            pthread_cond_wait(&e->commit_cv, &e->mu);
        }
    }
    pthread_mutex_unlock(&e->mu);
    if (got > 0) {
        *n = got;
        return SL_OK;
    }
    return st;
}

static void emb_interrupt(sl_subscription *base)
{
    emb_sub *s = (emb_sub *)base;
    pthread_mutex_lock(&s->eng->mu);
    s->interrupted = true;
    pthread_cond_broadcast(&s->g->cv);
    pthread_mutex_unlock(&s->eng->mu);
}

static uint32_t emb_in_flight(const sl_subscription *base)
{
    const emb_sub *s = (const emb_sub *)base;
    pthread_mutex_lock(&s->eng->mu);
    uint32_t n = (uint32_t)s->flight.n;
    pthread_mutex_unlock(&s->eng->mu);
    return n;
}

/* Put an in-flight entry back at the head of its group's ready list. */
static void requeue_locked(emb_engine *e, emb_entry *en)
{
    emb_group *g = en->g;
    list_remove(&en->sub->flight, en);
    en->sub = NULL;
    g->in_flight--;
    en->where = AT_READY;
    list_push_head(&g->ready, en);
    mark_entry(e, en);
    pthread_cond_signal(&g->cv);
}

static void emb_unsubscribe(sl_subscription *base)
{
    emb_sub *s = (emb_sub *)base;
    emb_engine *e = s->eng;
    pthread_mutex_lock(&e->mu);
    /* Like a consumer that died: its deliveries go to the others, and the
     * attempts they used stay counted. */
    while (s->flight.tail != NULL) {
        requeue_locked(e, s->flight.tail);
    }
    pthread_mutex_unlock(&e->mu);
    sl_free(s);
}

static sl_status emb_settle(sl_delivery *d, sl_settle_op op, uint64_t delay_ms,
                            sl_dead_reason reason, const char *error)
{
    emb_entry *en = (emb_entry *)d;
    emb_sub *s = en->sub;
    if (en->where != AT_FLIGHT || s == NULL) {
        return SL_INVALID;
    }
    emb_engine *e = s->eng;
    emb_group *g = en->g;
    sl_status st = SL_OK;
    emb_msg *gone = NULL;
    pthread_mutex_lock(&e->mu);
    switch (op) {
    case SL_SETTLE_ACK:
        list_remove(&s->flight, en);
        g->in_flight--;
        gone = entry_done_deferred(e, en);
        break;
    case SL_SETTLE_DEAD:
        list_remove(&s->flight, en);
        g->in_flight--;
        dead_letter_locked(e, en, reason, error);
        break;
    case SL_SETTLE_RELEASE:
        en->attempts--; /* never started: not an attempt */
        requeue_locked(e, en);
        break;
    case SL_SETTLE_RETRY:
        if (delay_ms == 0) {
            requeue_locked(e, en);
            /* A retry goes behind what is already waiting. */
            list_remove(&g->ready, en);
            list_push_tail(&g->ready, en);
            break;
        }
        list_remove(&s->flight, en);
        en->sub = NULL;
        g->in_flight--;
        en->where = AT_DELAYED;
        en->visible_at = now_ms(e) + delay_ms;
        st = heap_push(g, en);
        if (st != SL_OK) {
            en->where = AT_READY;
            list_push_tail(&g->ready, en);
            st = SL_OK;
        }
        mark_entry(e, en);
        /* Waiters may need to wake earlier than they planned. */
        pthread_cond_broadcast(&g->cv);
        break;
    }
    pthread_mutex_unlock(&e->mu);
    free_msgs(gone);
    return st;
}

static sl_status emb_ack_many(sl_delivery **ds, size_t n)
{
    emb_entry *first = (emb_entry *)ds[0];
    if (first->sub == NULL) {
        return SL_INVALID;
    }
    emb_engine *e = first->sub->eng;
    sl_status st = SL_OK;
    /* Messages are freed after the lock is released, in chunks, to keep the
     * critical section to list operations. */
    enum { CHUNK = 64 };
    emb_msg *gone[CHUNK];
    for (size_t i = 0; i < n;) {
        size_t ngone = 0;
        pthread_mutex_lock(&e->mu);
        for (; i < n && ngone < CHUNK; i++) {
            emb_entry *en = (emb_entry *)ds[i];
            if (en == NULL || en->where != AT_FLIGHT || en->sub == NULL) {
                st = SL_INVALID;
                continue;
            }
            list_remove(&en->sub->flight, en);
            en->g->in_flight--;
            emb_msg *m = entry_done_deferred(e, en);
            if (m != NULL) {
                gone[ngone++] = m;
            }
        }
        pthread_mutex_unlock(&e->mu);
        for (size_t j = 0; j < ngone; j++) {
            free_msgs(gone[j]);
        }
    }
    return st;
}

/* ---- inspection ------------------------------------------------------------- */

static sl_status emb_depth(sl_engine *base, const char *channel,
                           const char *group, sl_depth *out)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = find_channel(e, channel);
    emb_group *g = ch ? find_group(ch, group) : NULL;
    if (g != NULL) {
        promote_due(e, g, now_ms(e));
        out->ready = g->ready.n;
        out->delayed = g->heap_n;
        out->in_flight = g->in_flight;
    }
    pthread_mutex_unlock(&e->mu);
    return g ? SL_OK : SL_NOT_FOUND;
}

static int by_due_time(const void *a, const void *b)
{
    const emb_entry *x = *(emb_entry *const *)a;
    const emb_entry *y = *(emb_entry *const *)b;
    if (x->visible_at != y->visible_at) {
        return x->visible_at < y->visible_at ? -1 : 1;
    }
    return x->m->seq < y->m->seq ? -1 : x->m->seq > y->m->seq;
}

static sl_status emb_browse(sl_engine *base, const char *channel,
                            const char *group, size_t max, sl_browse_fn fn,
                            void *ctx)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    emb_channel *ch = find_channel(e, channel);
    emb_group *g = ch ? find_group(ch, group) : NULL;
    if (g == NULL) {
        pthread_mutex_unlock(&e->mu);
        return SL_NOT_FOUND;
    }
    /* Take references so the callback runs without the lock. */
    size_t cap = g->ready.n + g->heap_n;
    if (max != 0 && cap > max) {
        cap = max;
    }
    sl_event **evs = sl_calloc(cap ? cap : 1, sizeof *evs);
    uint32_t *att = sl_calloc(cap ? cap : 1, sizeof *att);
    size_t n = 0;
    if (evs != NULL && att != NULL) {
        for (emb_entry *en = g->ready.head; en && n < cap; en = en->next) {
            if (ensure_loaded(e, en->m) == SL_OK) {
                att[n] = en->attempts;
                evs[n++] = sl_event_ref(en->m->ev);
            }
        }
        /* Delayed retries in the order they come due (the heap array is
         * not in order). */
        emb_entry **due = sl_calloc(g->heap_n ? g->heap_n : 1, sizeof *due);
        if (due != NULL && g->heap_n > 0) {
            memcpy(due, g->heap, g->heap_n * sizeof *due);
            qsort(due, g->heap_n, sizeof *due, by_due_time);
        }
        for (size_t i = 0; due != NULL && i < g->heap_n && n < cap; i++) {
            if (ensure_loaded(e, due[i]->m) == SL_OK) {
                att[n] = due[i]->attempts;
                evs[n++] = sl_event_ref(due[i]->m->ev);
            }
        }
        sl_free(due);
    }
    pthread_mutex_unlock(&e->mu);
    if (evs == NULL || att == NULL) {
        sl_free(evs);
        sl_free(att);
        return SL_NOMEM;
    }
    bool go = true;
    for (size_t i = 0; i < n; i++) {
        if (go) {
            go = fn(evs[i], att[i], ctx);
        }
        sl_event_unref(evs[i]);
    }
    sl_free(evs);
    sl_free(att);
    return SL_OK;
}

static bool emb_is_ready(const sl_engine *base)
{
    const emb_engine *e = (const emb_engine *)base;
    return !e->closing && e->store_err == SL_OK;
}

/* ---- the writer (store mode) ---------------------------------------------- */

typedef struct batch {
    emb_op *ops;
    size_t n, cap;
    emb_msg **msgs; /* snapshot of dirty messages */
    size_t nmsgs, msgs_cap;
    emb_entry **entries;
    size_t nentries, entries_cap;
} batch;

static sl_status grow(void **arr, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap) {
        return SL_OK;
    }
    size_t c = *cap ? *cap : 256;
    while (c < need) {
        c *= 2;
    }
    void *p = sl_realloc(*arr, c * elem);
    if (p == NULL) {
        return SL_NOMEM;
    }
    *arr = p;
    *cap = c;
    return SL_OK;
}

/* Turn the dirty lists into row operations. Lock held. Messages go first so
 * that an entry's message row exists before the entry row. */
static sl_status snapshot(emb_engine *e, batch *b)
{
    b->n = b->nmsgs = b->nentries = 0;
    size_t nm = 0, ne = 0;
    for (emb_msg *m = e->dirty_msgs; m; m = m->dirty_next) {
        nm++;
    }
    for (emb_entry *en = e->dirty_entries; en; en = en->dirty_next) {
        ne++;
    }
    if (grow((void **)&b->ops, &b->cap, nm + ne, sizeof *b->ops) != SL_OK ||
        grow((void **)&b->msgs, &b->msgs_cap, nm, sizeof *b->msgs) != SL_OK ||
        grow((void **)&b->entries, &b->entries_cap, ne, sizeof *b->entries) !=
            SL_OK) {
        return SL_NOMEM;
    }
    for (emb_msg *m = e->dirty_msgs; m; m = m->dirty_next) {
        m->dirty = false;
        b->msgs[b->nmsgs++] = m;
        /* in_db changes here, not after the commit: changes made while the
         * commit runs must already see the row as written. A failed commit
         * makes the store unusable (store_err), so this never lies for
         * long. */
        if (m->refs > 0 && !m->in_db) {
            b->ops[b->n++] = (emb_op){.kind = EMB_MSG_INSERT,
                                      .seq = m->seq,
                                      .channel = m->ch->name,
                                      .body = m->body,
                                      .len = m->body_len};
            m->in_db = true;
        } else if (m->refs == 0 && m->in_db) {
            b->ops[b->n++] = (emb_op){.kind = EMB_MSG_DELETE, .seq = m->seq};
            m->in_db = false;
        }
    }
    for (emb_entry *en = e->dirty_entries; en; en = en->dirty_next) {
        en->dirty = false;
        b->entries[b->nentries++] = en;
        emb_op op = {.seq = en->m->seq,
                     .gid = en->g->gid,
                     .attempts = en->attempts,
                     .visible_at = en->where == AT_DELAYED ? en->visible_at
                                                           : 0};
        if (en->where == AT_DONE) {
            if (!en->in_db) {
                continue;
            }
            op.kind = EMB_ENTRY_DELETE;
            en->in_db = false;
        } else {
            op.kind = en->in_db ? EMB_ENTRY_UPDATE : EMB_ENTRY_INSERT;
            en->in_db = true;
        }
        b->ops[b->n++] = op;
    }
    e->dirty_msgs = NULL;
    e->dirty_msgs_tail = &e->dirty_msgs;
    e->dirty_entries = NULL;
    e->dirty_entries_tail = &e->dirty_entries;
    return SL_OK;
}

/* After the commit: drop bodies now in the database. Lock held. Settled
 * entries go with their message, which the caller frees once unreferenced
 * and after it took the confirms. */
static void settle_batch(batch *b)
{
    for (size_t i = 0; i < b->nmsgs; i++) {
        emb_msg *m = b->msgs[i];
        if (m->in_db) {
            sl_free(m->body);
            m->body = NULL;
        }
    }
}

static void *writer_main(void *arg)
{
    emb_engine *e = arg;
    batch b = {0};
    typedef struct confirm {
        sl_publish_cb cb;
        void *ctx;
    } confirm;
    confirm *confirms = NULL;
    size_t confirms_cap = 0;

    pthread_mutex_lock(&e->mu);
    for (;;) {
        while (e->dirty_msgs == NULL && e->dirty_entries == NULL &&
               !e->closing) {
            pthread_cond_wait(&e->writer_cv, &e->mu);
        }
        if (e->dirty_msgs == NULL && e->dirty_entries == NULL) {
            break; /* closing, nothing left to write */
        }
        if (e->opts.commit_interval_ms > 0 && !e->closing) {
            /* Trade latency for fewer, larger commits (fsyncs). */
            struct timespec ts;
            sl__deadline_after(&ts, e->opts.commit_interval_ms);
            pthread_cond_timedwait(&e->commit_wait_cv, &e->mu, &ts);
        }
        uint64_t this_batch = e->batch_next++;
        sl_status st = snapshot(e, &b);
        pthread_mutex_unlock(&e->mu);

        sl_diag diag = {0};
        if (st == SL_OK) {
            st = emb_store_apply(e->store, b.ops, b.n, &diag);
        }
        if (st != SL_OK) {
            sl_logf(SL_LOG_ERROR, "engine.embedded", "store write failed: %s",
                    diag.msg[0] ? diag.msg : sl_status_str(st));
        }

        pthread_mutex_lock(&e->mu);
        /* Collect confirms before freeing anything. */
        size_t nconf = 0;
        if (grow((void **)&confirms, &confirms_cap, b.nmsgs + 1,
                 sizeof *confirms) == SL_OK) {
            for (size_t i = 0; i < b.nmsgs; i++) {
                if (b.msgs[i]->cb != NULL) {
                    confirms[nconf++] =
                        (confirm){b.msgs[i]->cb, b.msgs[i]->cb_ctx};
                    b.msgs[i]->cb = NULL;
                }
            }
        }
        settle_batch(&b);
        /* Free messages no entry references and no dirty list holds; past
         * the budget, spill the newest committed ones. */
        for (size_t i = b.nmsgs; i-- > 0;) {
            emb_msg *m = b.msgs[i];
            if (m->refs == 0 && !m->dirty) {
                if (m->ev != NULL) {
                    e->resident -= m->ev_bytes;
                }
                msg_free(m);
            } else if (st == SL_OK && e->resident > e->budget &&
                       spillable(m)) {
                spill(e, m);
            }
        }
        if (st != SL_OK) {
            e->store_err = st;
        }
        e->batch_done = this_batch;
        pthread_cond_broadcast(&e->commit_cv);
        pthread_mutex_unlock(&e->mu);
        for (size_t i = 0; i < nconf; i++) {
            confirms[i].cb(st == SL_OK ? SL_OK : SL_IO, confirms[i].ctx);
        }
        pthread_mutex_lock(&e->mu);
        if (st != SL_OK) {
            /* Wake every fetcher so they see the failure. */
            for (size_t i = 0; i < e->nchannels; i++) {
                for (size_t j = 0; j < e->channels[i]->ngroups; j++) {
                    pthread_cond_broadcast(&e->channels[i]->groups[j]->cv);
                }
            }
        }
    }
    pthread_mutex_unlock(&e->mu);
    sl_free(b.ops);
    sl_free(b.msgs);
    sl_free(b.entries);
    sl_free(confirms);
    return NULL;
}

/* ---- recovery ----------------------------------------------------------------- */

typedef struct load_ctx {
    emb_engine *e;
    emb_msg *cur; /* message whose entries come next */
    uint64_t loaded;
} load_ctx;

static sl_status load_channel(const char *name, uint64_t max_length,
                              uint64_t max_bytes, void *ctx)
{
    load_ctx *lc = ctx;
    emb_channel *ch = NULL;
    return add_channel(lc->e, name, max_length, max_bytes, &ch);
}

static sl_status load_group(const char *channel, const char *name, int64_t gid,
                            uint32_t max_attempts, void *ctx)
{
    load_ctx *lc = ctx;
    emb_channel *ch = find_channel(lc->e, channel);
    if (ch == NULL) {
        return SL_OK; /* orphan row */
    }
    emb_group *g = NULL;
    return add_group(lc->e, ch, name, gid, max_attempts, &g);
}

static void link_dlqs(emb_engine *e)
{
    for (size_t i = 0; i < e->nchannels; i++) {
        emb_channel *ch = e->channels[i];
        for (size_t j = 0; j < ch->ngroups; j++) {
            char name[512];
            if (sl__dlq_channel_name(ch->name, ch->groups[j]->name, name,
                                     sizeof name) == SL_OK) {
                ch->groups[j]->dlq = find_channel(e, name);
            }
        }
    }
}

static sl_status load_message(int64_t seq, const char *channel,
                              const uint8_t *body, size_t len, void *ctx)
{
    load_ctx *lc = ctx;
    emb_channel *ch = find_channel(lc->e, channel);
    sl_event *ev = NULL;
    lc->cur = NULL;
    if (ch == NULL || sl_event_decode(body, len, &ev, NULL) != SL_OK) {
        sl_logf(SL_LOG_WARN, "engine.embedded",
                "skipping unreadable stored message %" PRId64, seq);
        return SL_OK;
    }
    emb_msg *m = sl_calloc(1, sizeof *m + ch->ngroups * sizeof(emb_entry));
    if (m == NULL) {
        sl_event_unref(ev);
        return SL_NOMEM;
    }
    m->nslots = (uint32_t)ch->ngroups;
    m->ev = ev;
    m->ev_bytes = (uint32_t)len;
    m->size = (uint32_t)len;
    lc->e->resident += len;
    m->ch = ch;
    m->seq = seq;
    m->in_db = true;
    lc->cur = m;
    /* Recovered ids are known ids: a producer retrying an unknown outcome
     * after the crash is deduplicated. */
    sl__dedup_add(lc->e->dedup, ch, sl_event_id(ev), now_ms(lc->e));
    return SL_OK;
}

static sl_status load_entry(int64_t seq, int64_t gid, uint32_t attempts,
                            uint64_t visible_at, void *ctx)
{
    load_ctx *lc = ctx;
    emb_msg *m = lc->cur;
    emb_group *g = find_gid(lc->e, gid);
    if (m == NULL || m->seq != seq || g == NULL || g->ch != m->ch ||
        m->refs == m->nslots) {
        return SL_OK;
    }
    emb_entry *en = &m->entries[m->refs];
    en->base.drv = &sl__embedded_driver;
    en->base.ev = m->ev;
    en->base.channel = m->ch->name;
    en->base.group = g->name;
    en->m = m;
    en->g = g;
    en->attempts = attempts;
    en->in_db = true;
    m->refs++;
    g->bytes += m->size;
    lc->loaded++;
    if (visible_at > now_ms(lc->e)) {
        en->where = AT_DELAYED;
        en->visible_at = visible_at;
        return heap_push(g, en);
    }
    en->where = AT_READY;
    list_push_tail(&g->ready, en);
    return SL_OK;
}

/* Messages whose every entry is gone are dropped (a crash between the entry
 * delete and the message delete). */
static void drop_unreferenced(emb_engine *e, emb_msg *m)
{
    if (m != NULL && m->refs == 0) {
        mark_msg(e, m);
    }
}

/* Message callback that first retires the previous message if unused. */
static sl_status load_message_chain(int64_t seq, const char *channel,
                                    const uint8_t *body, size_t len, void *ctx)
{
    load_ctx *lc = ctx;
    drop_unreferenced(lc->e, lc->cur);
    return load_message(seq, channel, body, len, ctx);
}

/* ---- ingress (store mode) ------------------------------------------------------- */

#define INGRESS_BATCH 256
#define INGRESS_IDLE_MS 20

/* Confirms of one ingress batch. */
typedef struct ingress_wait {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t pending;
    bool failed;
} ingress_wait;

static void ingress_confirm(sl_status st, void *ctx)
{
    ingress_wait *w = ctx;
    pthread_mutex_lock(&w->mu);
    w->pending--;
    w->failed |= st != SL_OK;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
}

static sl_status emb_publish(sl_engine *base, const char *channel,
                             sl_event *ev, unsigned flags, sl_publish_cb cb,
                             void *ctx);

/* Move events from the ingress into the channels, oldest first. A row is
 * deleted only after the store committed its event; a crash in between
 * re-ingests it, and the dedup window (recovered ids included) drops it. */
static void *ingress_main(void *arg)
{
    emb_engine *e = arg;
    emb_ingress_row rows[INGRESS_BATCH];
    ingress_wait w = {.pending = 0};
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    for (;;) {
        pthread_mutex_lock(&e->mu);
        bool closing = e->closing;
        pthread_mutex_unlock(&e->mu);
        if (closing) {
            break;
        }
        size_t n = 0;
        emb_ingress_read(e->ingress, rows, INGRESS_BATCH, &n);
        size_t done = 0;
        bool full = false;
        for (; done < n; done++) {
            sl_event *ev = NULL;
            sl_diag diag = {0};
            if (sl_event_decode(rows[done].body, rows[done].len, &ev,
                                &diag) != SL_OK) {
                sl_logf(SL_LOG_ERROR, "engine.embedded",
                        "ingress row %" PRId64 " unreadable (%s): dropped",
                        rows[done].seq, diag.msg);
                continue;
            }
            pthread_mutex_lock(&w.mu);
            w.pending++;
            pthread_mutex_unlock(&w.mu);
            sl_status st = emb_publish(&e->base, rows[done].channel, ev,
                                       rows[done].flags, ingress_confirm, &w);
            sl_event_unref(ev);
            if (st != SL_OK) {
                pthread_mutex_lock(&w.mu);
                w.pending--;
                pthread_mutex_unlock(&w.mu);
            }
            if (st == SL_FULL || st == SL_CLOSED || st == SL_UNAVAILABLE) {
                full = true; /* leave it for later, in order */
                break;
            }
            if (st != SL_OK) {
                sl_logf(SL_LOG_ERROR, "engine.embedded",
                        "ingress event for %s refused: %s; dropped",
                        rows[done].channel, sl_status_str(st));
            }
        }
        pthread_mutex_lock(&w.mu);
        while (w.pending > 0) {
            pthread_cond_wait(&w.cv, &w.mu);
        }
        bool failed = w.failed;
        w.failed = false;
        pthread_mutex_unlock(&w.mu);
        if (done > 0 && !failed) {
            emb_ingress_delete_upto(e->ingress, rows[done - 1].seq);
        }
        emb_ingress_rows_free(rows, n);
        if (n < INGRESS_BATCH || full || failed) {
            struct timespec ts;
            sl__deadline_after(&ts, INGRESS_IDLE_MS);
            pthread_mutex_lock(&e->mu);
            if (!e->closing) {
                pthread_cond_timedwait(&e->ingress_cv, &e->mu, &ts);
            }
            pthread_mutex_unlock(&e->mu);
        }
    }
    pthread_mutex_destroy(&w.mu);
    pthread_cond_destroy(&w.cv);
    return NULL;
}

/* ---- open / close ------------------------------------------------------------ */

static void emb_close(sl_engine *base);

/* The in-memory engine's two spellings. "memory://" is the one YAML takes
 * unquoted ("embedded::memory:" ends with a colon, which YAML reads as a
 * mapping), and it cannot be mistaken for a directory: "embedded:DIR" is
 * always a path. */
#define MEMORY_SCHEME "memory://"
#define MEMORY_PATH ":memory:"

/* "embedded:DIR[?sync=...]", "embedded::memory:[?...]" or
 * "memory://[?...]". *dir is NULL for the in-memory engine; *sync is
 * written only when the URL sets it. */
static sl_status parse_url(const char *url, sl_sync_mode *sync, char **dir,
                           sl_diag *diag)
{
    bool memory = strncmp(url, MEMORY_SCHEME, strlen(MEMORY_SCHEME)) == 0;
    const char *rest =
        url + (memory ? strlen(MEMORY_SCHEME) : strlen("embedded:"));
    const char *q = strchr(rest, '?');
    size_t path_len = q ? (size_t)(q - rest) : strlen(rest);
    if (q != NULL) {
        const char *p = q + 1;
        while (*p) {
            const char *amp = strchr(p, '&');
            size_t len = amp ? (size_t)(amp - p) : strlen(p);
            if (len == 9 && strncmp(p, "sync=full", 9) == 0) {
                *sync = SL_SYNC_FULL;
            } else if (len == 11 && strncmp(p, "sync=normal", 11) == 0) {
                *sync = SL_SYNC_NORMAL;
            } else if (len == 8 && strncmp(p, "sync=off", 8) == 0) {
                *sync = SL_SYNC_OFF;
            } else {
                return sl_diag_set(diag, SL_INVALID,
                                   "engine URL '%s': unknown parameter '%.*s' "
                                   "(expected sync=full|normal|off)",
                                   url, (int)len, p);
            }
            p += len + (amp ? 1 : 0);
        }
    }
    if (memory) {
        if (path_len != 0) {
            return sl_diag_set(diag, SL_INVALID,
                               "engine URL '%s': memory:// takes no path "
                               "(for a store on disk: embedded:DIR)",
                               url);
        }
        *dir = NULL;
        return SL_OK;
    }
    if (path_len == strlen(MEMORY_PATH) &&
        strncmp(rest, MEMORY_PATH, path_len) == 0) {
        *dir = NULL;
        return SL_OK;
    }
    if (path_len == 0) {
        return sl_diag_set(diag, SL_INVALID,
                           "engine URL '%s' has no path (embedded:./data, or "
                           "memory:// for no store)",
                           url);
    }
    *dir = sl_strndup(rest, path_len);
    return *dir ? SL_OK : SL_NOMEM;
}

/* The store directory can be used: it is a writable directory, or the
 * closest directory above it that exists is writable (open creates the
 * rest). Checked without creating anything. */
static sl_status check_store_dir(const char *url, const char *dir,
                                 sl_diag *diag)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s", dir) >= (int)sizeof path) {
        return sl_diag_set(diag, SL_INVALID, "engine URL '%s': path too long",
                           url);
    }
    for (;;) {
        struct stat sb;
        if (stat(path, &sb) == 0) {
            if (!S_ISDIR(sb.st_mode)) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "engine URL '%s': %s is not a directory",
                                   url, path);
            }
            if (access(path, W_OK | X_OK) != 0) {
                return sl_diag_set(diag, SL_CONFIG,
                                   "engine URL '%s': directory %s: %s", url,
                                   path, strerror(errno));
            }
            return SL_OK;
        }
        if (errno != ENOENT) {
            return sl_diag_set(diag, SL_CONFIG, "engine URL '%s': %s: %s", url,
                               path, strerror(errno));
        }
        char *slash = strrchr(path, '/');
        while (slash != NULL && slash > path && slash[1] == '\0') {
            *slash = '\0'; /* a trailing slash */
            slash = strrchr(path, '/');
        }
        if (slash == NULL) {
            snprintf(path, sizeof path, ".");
        } else if (slash == path) {
            snprintf(path, sizeof path, "/");
        } else {
            *slash = '\0';
        }
    }
}

/* Parse-only check of an engine URL (sl_engine_check_url). */
static sl_status emb_check_url(const char *url, sl_diag *diag)
{
    sl_sync_mode sync = SL_SYNC_NORMAL;
    char *dir = NULL;
    sl_status st = parse_url(url, &sync, &dir, diag);
    if (st == SL_OK && dir != NULL) {
        st = check_store_dir(url, dir, diag);
    }
    sl_free(dir);
    return st;
}

/* A store exists in @p dir: its database file is there. */
static bool store_exists(const char *dir)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/sluice.db", dir);
    return access(path, F_OK) == 0;
}

static sl_status emb_open(const char *url, const sl_engine_opts *opts,
                          sl_engine **out, sl_diag *diag)
{
    emb_engine *e = sl_calloc(1, sizeof *e);
    if (e == NULL) {
        return SL_NOMEM;
    }
    e->base.drv = &sl__embedded_driver;
    e->opts = *opts;
    e->clock = opts->clock ? opts->clock : sl_clock_system();
    e->next_seq = 1;
    e->next_gid = 1;
    e->budget = opts->memory_budget ? opts->memory_budget : 256 * 1024;
    e->batch_next = 1; /* batch 0 is "nothing yet", already done */
    e->dirty_msgs_tail = &e->dirty_msgs;
    e->dirty_entries_tail = &e->dirty_entries;
    /* Critical sections are short and contended by producer and consumer
     * threads: spin briefly before sleeping in the kernel. */
    pthread_mutexattr_t ma;
    pthread_mutexattr_init(&ma);
    pthread_mutexattr_settype(&ma, PTHREAD_MUTEX_ADAPTIVE_NP);
    pthread_mutex_init(&e->mu, &ma);
    pthread_mutexattr_destroy(&ma);
    pthread_cond_init(&e->writer_cv, NULL);
    pthread_cond_init(&e->commit_cv, NULL);
    sl__cond_init_mono(&e->ingress_cv); /* timed waits use CLOCK_MONOTONIC */
    sl__cond_init_mono(&e->commit_wait_cv);

    char *dir = NULL;
    sl_status st = parse_url(url, &e->opts.sync, &dir, diag);
    if (st != SL_OK) {
        goto fail;
    }
    if (dir != NULL && opts->open_existing && !store_exists(dir)) {
        st = sl_diag_set(diag, SL_NOT_FOUND,
                         "no embedded store in %s (nothing was created)", dir);
        goto fail;
    }
    st = sl__dedup_create(DEFAULT_DEDUP_MAX_IDS,
                          opts->dedup_window_ms ? opts->dedup_window_ms
                                                : DEFAULT_DEDUP_WINDOW_MS,
                          &e->dedup);
    if (st != SL_OK) {
        goto fail;
    }
    if (dir != NULL) {
        st = emb_store_open(dir, e->opts.sync, &e->store, diag);
        if (st == SL_EXISTS) {
            /* Another process owns the store: publish through its ingress
             * and read what it committed. */
            sl_engine_opts co = e->opts;
            emb_close(&e->base);
            st = sl__embedded_client_open(dir, &co, out, diag);
            sl_free(dir);
            return st;
        }
        if (st != SL_OK) {
            goto fail;
        }
        load_ctx lc = {e, NULL, 0};
        emb_store_visitor v = {load_channel, load_group, load_message_chain,
                               load_entry};
        int64_t max_seq = 0;
        st = emb_store_load(e->store, &v, &lc, &max_seq, diag);
        if (st != SL_OK) {
            goto fail;
        }
        drop_unreferenced(e, lc.cur);
        link_dlqs(e);
        e->next_seq = max_seq + 1;
        if (lc.loaded > 0) {
            sl_logf(SL_LOG_INFO, "engine.embedded",
                    "recovered %" PRIu64 " pending deliveries from %s",
                    lc.loaded, dir);
        }
        if (pthread_create(&e->writer, NULL, writer_main, e) != 0) {
            st = sl_diag_set(diag, SL_INTERNAL, "cannot start writer thread");
            goto fail;
        }
        e->writer_started = true;
        if ((st = emb_ingress_open(dir, &e->ingress, diag)) != SL_OK) {
            goto fail;
        }
        if (pthread_create(&e->ingress_thread, NULL, ingress_main, e) != 0) {
            st = sl_diag_set(diag, SL_INTERNAL, "cannot start ingress thread");
            goto fail;
        }
        e->ingress_started = true;
    }
    sl_free(dir);
    *out = &e->base;
    return SL_OK;
fail:
    sl_free(dir);
    emb_close(&e->base);
    return st;
}

static void free_group(emb_engine *e, emb_group *g)
{
    (void)e;
    for (emb_entry *en = g->ready.head, *next; en; en = next) {
        next = en->next;
        if (--en->m->refs == 0) {
            msg_free(en->m);
        }
    }
    for (size_t i = 0; i < g->heap_n; i++) {
        emb_entry *en = g->heap[i];
        if (--en->m->refs == 0) {
            msg_free(en->m);
        }
    }
    sl_free(g->heap);
    pthread_cond_destroy(&g->cv);
    sl_free(g->name);
    sl_free(g);
}

static void emb_close(sl_engine *base)
{
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    e->closing = true;
    pthread_cond_broadcast(&e->writer_cv);
    for (size_t i = 0; i < e->nchannels; i++) {
        for (size_t j = 0; j < e->channels[i]->ngroups; j++) {
            pthread_cond_broadcast(&e->channels[i]->groups[j]->cv);
        }
    }
    pthread_cond_broadcast(&e->ingress_cv);
    pthread_cond_broadcast(&e->commit_wait_cv);
    pthread_mutex_unlock(&e->mu);
    if (e->ingress_started) {
        pthread_join(e->ingress_thread, NULL);
    }
    emb_ingress_close(e->ingress);
    if (e->writer_started) {
        pthread_join(e->writer, NULL); /* writes what is left */
    }
    /* Anything still on the dirty lists (the store failed) is only memory. */
    for (emb_entry *en = e->dirty_entries, *next; en; en = next) {
        next = en->dirty_next;
        en->dirty = false;
    }
    for (emb_msg *m = e->dirty_msgs, *next; m; m = next) {
        next = m->dirty_next;
        m->dirty = false;
        if (m->cb != NULL) {
            m->cb(SL_CLOSED, m->cb_ctx);
            m->cb = NULL;
        }
        if (m->refs == 0) {
            msg_free(m);
        }
    }
    for (size_t i = 0; i < e->nchannels; i++) {
        emb_channel *ch = e->channels[i];
        for (size_t j = 0; j < ch->ngroups; j++) {
            free_group(e, ch->groups[j]);
        }
        sl_free(ch->groups);
        sl_free(ch->name);
        sl_free(ch);
    }
    sl_free(e->channels);
    free_msgs(e->graveyard);
    sl__dedup_destroy(e->dedup);
    emb_store_close(e->store);
    pthread_cond_destroy(&e->writer_cv);
    pthread_cond_destroy(&e->commit_cv);
    pthread_cond_destroy(&e->ingress_cv);
    pthread_cond_destroy(&e->commit_wait_cv);
    pthread_mutex_destroy(&e->mu);
    sl_free(e);
}

size_t sl__embedded_resident_bytes(sl_engine *base)
{
    if (base->drv != &sl__embedded_driver) {
        return 0;
    }
    emb_engine *e = (emb_engine *)base;
    pthread_mutex_lock(&e->mu);
    size_t n = e->resident;
    pthread_mutex_unlock(&e->mu);
    return n;
}

const sl_driver sl__embedded_driver = {
    .name = "embedded",
    .scheme = "embedded:",
    .alias = MEMORY_SCHEME,
    .check_url = emb_check_url,
    .open = emb_open,
    .close = emb_close,
    .is_ready = emb_is_ready,
    .declare_channel = emb_declare_channel,
    .declare_group = emb_declare_group,
    .publish = emb_publish,
    .subscribe = emb_subscribe,
    .fetch = emb_fetch,
    .interrupt = emb_interrupt,
    .in_flight = emb_in_flight,
    .unsubscribe = emb_unsubscribe,
    .settle = emb_settle,
    .ack_many = emb_ack_many,
    .depth = emb_depth,
    .browse = emb_browse,
};
